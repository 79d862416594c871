"""What every policy and the placer share about the cluster (steps 4 and 5, pure).

- which nodes a job may run on (node selector, required node affinity, taints and
  tolerations, `unschedulable`),
  computed once per distinct node shape and job signature so that 16,000 nodes cost one
  pass, not one pass per job;
- the budget a policy spends while it hands out tasks: the cluster's free capacity and the
  capacity of the nodes each kind of job may use;
- input checks that name the job, the field and the fix;
- admission of jobs at their minimum, all or nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from optimus.affinity import NodeRequirements, NodeSelectorTerm
from optimus.scheduling.types import Allocation, JobView, NodeView, Resources, Taint, Toleration

#: Tolerance for float comparisons of resource amounts (bytes of memory are large numbers,
#: fractional CPUs small: a relative-plus-absolute slack keeps both honest).
EPS = 1e-9

#: A job's signature for eligibility: its node selector (sorted items), tolerations and
#: required node affinity terms.
JobSignature = tuple[
    tuple[tuple[str, str], ...], tuple[Toleration, ...], tuple[NodeSelectorTerm, ...]
]

NOT_ADMITTED = Allocation(0, 0)

#: Taint effects that keep pods off a node; PreferNoSchedule is only a preference.
_HARD_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def tolerates(tolerations: Iterable[Toleration], taint: Taint) -> bool:
    """Kubernetes semantics: a toleration matches a taint when the keys match (an empty key
    with operator Exists matches every key), the values match (or the operator is Exists)
    and the effects match (an empty effect matches every effect)."""
    for toleration in tolerations:
        if toleration.key and toleration.key != taint.key:
            continue
        if not toleration.key and toleration.operator != "Exists":
            continue
        if toleration.operator != "Exists" and toleration.value != taint.value:
            continue
        if toleration.effect and toleration.effect != taint.effect:
            continue
        return True
    return False


def node_accepts(
    labels: Mapping[str, str],
    taints: Iterable[Taint],
    unschedulable: bool,
    selector: Mapping[str, str],
    tolerations: Iterable[Toleration],
    affinity: tuple[NodeSelectorTerm, ...] = (),
) -> bool:
    """True when a new pod with this selector, these tolerations and this required node
    affinity may go on the node (terms on node names, which the placer never sees per node,
    are refused by validate_jobs)."""
    if unschedulable:
        return False
    wanted = NodeRequirements(tuple(selector.items()), affinity)
    if not wanted.matches_labels("", labels):
        return False
    tolerations = tuple(tolerations)
    return all(
        tolerates(tolerations, taint) for taint in taints if taint.effect in _HARD_EFFECTS
    )


def job_signature(job: JobView) -> JobSignature:
    return (tuple(sorted(job.node_selector.items())), tuple(job.tolerations),
            tuple(job.node_affinity))


def free_triple(node: NodeView) -> tuple[float, float, float]:
    """The node's free (gpu, cpu, memory), never negative (over-used nodes have none)."""
    a, u = node.allocatable, node.used
    return max(a.gpu - u.gpu, 0.0), max(a.cpu - u.cpu, 0.0), max(a.memory - u.memory, 0.0)


def triple(resources: Resources) -> tuple[float, float, float]:
    return resources.gpu, resources.cpu, resources.memory


def fits(need: Sequence[float], have: Sequence[float]) -> bool:
    return all(n <= h + EPS * max(1.0, abs(h)) for n, h in zip(need, have, strict=True))


@dataclass
class _NodeShape:
    """Nodes that look alike to every job: same labels, hard taints and schedulability."""

    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    unschedulable: bool
    members: list[int]
    free: list[float]


class ClusterIndex:
    """Nodes grouped by shape, with the eligibility of each job signature cached."""

    def __init__(self, nodes: Sequence[NodeView]) -> None:
        self.nodes = nodes
        self.shapes: list[_NodeShape] = []
        self.shape_of_node: list[int] = []
        #: each node's free (gpu, cpu, memory), in input order
        self.node_free: list[tuple[float, float, float]] = []
        by_key: dict[object, int] = {}
        total = [0.0, 0.0, 0.0]
        seen: set[str] = set()
        for position, node in enumerate(nodes):
            if node.name in seen:
                raise ValueError(f"node {node.name!r} is listed twice; give each node once")
            seen.add(node.name)
            key = (
                frozenset(node.labels.items()) if node.labels else None,
                node.taints,
                node.unschedulable,
            )
            shape_id = by_key.get(key)
            if shape_id is None:
                shape_id = by_key[key] = len(self.shapes)
                self.shapes.append(
                    _NodeShape(node.labels, node.taints, node.unschedulable, [], [0.0, 0.0, 0.0])
                )
            shape = self.shapes[shape_id]
            shape.members.append(position)
            self.shape_of_node.append(shape_id)
            free = free_triple(node)
            self.node_free.append(free)
            for r in range(3):
                shape.free[r] += free[r]
                if not node.unschedulable:
                    total[r] += free[r]
        #: free capacity of all schedulable nodes: the denominator of dominant shares
        self.total_free = Resources(*total)
        self._eligible: dict[JobSignature, tuple[bool, ...]] = {}

    def eligible_shapes(self, signature: JobSignature) -> tuple[bool, ...]:
        cached = self._eligible.get(signature)
        if cached is None:
            selector, tolerations, affinity = dict(signature[0]), signature[1], signature[2]
            cached = tuple(
                node_accepts(s.labels, s.taints, s.unschedulable, selector, tolerations,
                             affinity)
                for s in self.shapes
            )
            self._eligible[signature] = cached
        return cached

    def eligible_free(self, signature: JobSignature) -> list[float]:
        """The free capacity summed over the nodes a job with this signature may use."""
        total = [0.0, 0.0, 0.0]
        for shape, ok in zip(self.shapes, self.eligible_shapes(signature), strict=True):
            if ok:
                for r in range(3):
                    total[r] += shape.free[r]
        return total

    def node_eligible(self, signature: JobSignature, position: int) -> bool:
        return self.eligible_shapes(signature)[self.shape_of_node[position]]


class Budget:
    """Capacity left while a policy hands out tasks.

    A job may only use the nodes its signature accepts (its pool). Every pool keeps its own
    budget, and a job's tasks count against its pool and against every pool that contains
    it (the whole cluster is one of them): a job pinned to the A100 nodes uses up capacity
    that the jobs allowed everywhere can no longer have. For nested pools this is exactly
    what aggregate capacity can promise; placement still decides the fit on each node.
    """

    def __init__(self, index: ClusterIndex, jobs: Sequence[JobView]) -> None:
        total = triple(index.total_free)
        self.left = list(total)
        self.tolerance = [EPS * max(1.0, abs(v)) for v in total]
        schedulable = frozenset(
            i for i, shape in enumerate(index.shapes) if not shape.unschedulable
        )
        pools: dict[frozenset[int], list[float]] = {schedulable: self.left}
        pool_of: dict[JobSignature, frozenset[int]] = {}
        for job in jobs:
            signature = job_signature(job)
            if signature not in pool_of:
                eligible = index.eligible_shapes(signature)
                pool = frozenset(i for i, ok in enumerate(eligible) if ok)
                pool_of[signature] = pool
                if pool not in pools:
                    pools[pool] = index.eligible_free(signature)
        # the budgets each signature's tasks count against: its pool and all that contain it
        by_signature = {
            signature: [left for other, left in pools.items() if pool <= other]
            for signature, pool in pool_of.items()
        }
        self._budgets: dict[str, list[list[float]]] = {
            job.id: by_signature[job_signature(job)] for job in jobs
        }

    def pools_of(self, job_id: str) -> list[list[float]]:
        """The budgets (free gpu, cpu, memory) a job's tasks count against."""
        return self._budgets[job_id]

    def fits(self, job_id: str, need: Sequence[float]) -> bool:
        tol = self.tolerance
        n0, n1, n2 = need[0] - tol[0], need[1] - tol[1], need[2] - tol[2]
        for left in self._budgets[job_id]:
            if n0 > left[0] or n1 > left[1] or n2 > left[2]:
                return False
        return True

    def take(self, job_id: str, need: Sequence[float]) -> None:
        for left in self._budgets[job_id]:
            left[0] -= need[0]
            left[1] -= need[1]
            left[2] -= need[2]

    def try_take(self, job_id: str, need: Sequence[float]) -> bool:
        if not self.fits(job_id, need):
            return False
        self.take(job_id, need)
        return True


def validate_jobs(jobs: Sequence[JobView]) -> None:
    """Raise ValueError naming the job and the field for inputs no policy can work with."""
    seen: set[str] = set()
    for job in jobs:
        if job.id in seen:
            raise ValueError(f"job {job.id!r} is listed twice; job ids must be unique")
        seen.add(job.id)
        for role, low, high in (
            ("ps", job.min_ps, job.max_ps),
            ("workers", job.min_workers, job.max_workers),
        ):
            if low < 0 or high < low:
                raise ValueError(
                    f"job {job.id!r}: min_{role}={low}, max_{role}={high}; "
                    f"need 0 <= min_{role} <= max_{role}"
                )
        if any(term.match_fields for term in job.node_affinity):
            raise ValueError(
                f"job {job.id!r}: node_affinity selects nodes by name (matchFields); the "
                "placer picks the nodes, so select them by label (matchExpressions)")
        if job.max_ps + job.max_workers == 0:
            raise ValueError(f"job {job.id!r}: max_ps + max_workers is 0; allow at least one task")
        requests = (("ps_request", job.ps_request), ("worker_request", job.worker_request))
        for role, request in requests:
            values = triple(request)
            if any(v < 0 or not math.isfinite(v) for v in values):
                raise ValueError(
                    f"job {job.id!r}: {role}={request} has a negative or non-finite amount; "
                    "requests must be finite and >= 0"
                )


def clip(allocation: Allocation, job: JobView) -> Allocation:
    """The allocation moved inside the job's bounds."""
    return Allocation(
        min(max(allocation.ps, job.min_ps), job.max_ps),
        min(max(allocation.workers, job.min_workers), job.max_workers),
    )


def in_bounds(allocation: Allocation, job: JobView) -> bool:
    return (
        job.min_ps <= allocation.ps <= job.max_ps
        and job.min_workers <= allocation.workers <= job.max_workers
    )


def pinned(job: JobView, allocation: Allocation) -> JobView:
    """The job with both bounds set to `allocation`: the policy must give exactly that (a
    probe, or a job kept where it is) or nothing."""
    return replace(job, min_ps=allocation.ps, max_ps=allocation.ps,
                   min_workers=allocation.workers, max_workers=allocation.workers)


def is_running(job: JobView) -> bool:
    return job.current is not None and job.current.ps + job.current.workers > 0


def demand_triple(job: JobView, ps: int, workers: int) -> tuple[float, float, float]:
    p, w = job.ps_request, job.worker_request
    return (
        p.gpu * ps + w.gpu * workers,
        p.cpu * ps + w.cpu * workers,
        p.memory * ps + w.memory * workers,
    )


def arrival_order(jobs: Sequence[JobView]) -> list[JobView]:
    """Higher priority first, then first come first served (ties by id, for determinism)."""
    return sorted(jobs, key=lambda job: (-job.priority, job.arrival, job.id))


def start_round(
    jobs: Sequence[JobView],
    nodes: Sequence[NodeView],
    order: Callable[[Sequence[JobView]], list[JobView]] = arrival_order,
) -> tuple[list[JobView], ClusterIndex, Budget]:
    """What every policy does first: check the jobs, put them in the policy's order, and
    index the nodes with a fresh budget, so that all policies count capacity alike."""
    validate_jobs(jobs)
    ordered = order(jobs)
    index = ClusterIndex(nodes)
    return ordered, index, Budget(index, ordered)


def minimum(job: JobView) -> Allocation:
    """The smallest allocation a job runs with: its min counts, or one worker (one PS for a
    job without workers) when both minimums are 0, since an empty job is a queued job."""
    if job.min_ps + job.min_workers > 0:
        return Allocation(job.min_ps, job.min_workers)
    return Allocation(0, 1) if job.max_workers > 0 else Allocation(1, 0)


def admit(
    jobs_in_order: Iterable[JobView],
    budget: Budget,
    size: Mapping[str, Allocation] | None = None,
) -> dict[str, Allocation]:
    """Give each job, in the given order, its size (default: its minimum) whole or not at
    all; a job that does not fit is skipped (Allocation(0, 0)) and later jobs still get a
    chance, as the Kubernetes scheduler would do."""
    result: dict[str, Allocation] = {}
    for job in jobs_in_order:
        want = size[job.id] if size is not None else minimum(job)
        if want.ps + want.workers > 0 and budget.try_take(
            job.id, demand_triple(job, want.ps, want.workers)
        ):
            result[job.id] = want
        else:
            result[job.id] = NOT_ADMITTED
    return result


def requested_size(job: JobView) -> Allocation:
    """What the user asked for (the fixed-size baselines' size), within bounds; the minimum
    when nothing (or nothing non-empty) was asked."""
    if job.requested is not None:
        size = clip(job.requested, job)
        if size.ps + size.workers > 0:
            return size
    return minimum(job)

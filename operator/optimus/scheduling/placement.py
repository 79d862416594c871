"""Step 5, placement: a node for every PS and worker of every allocated job (pure).

The rule, after the Optimus paper's theorem: a job goes on the fewest nodes that can hold
it with its PS and its workers each spread evenly over them (node i of k gets p//k or
p//k + 1 PS and w//k or w//k + 1 workers; the +1s go to different nodes where possible,
so that no node holds more than one task above the others). No node's GPUs, CPUs or
memory are ever over-committed; node selectors, required node affinity (the pod templates'
nodeSelectorTerms, optimus.affinity), NoSchedule/NoExecute taints (unless
tolerated) and cordoned nodes are respected.

Order, chosen for packing and stability:
1. jobs whose allocation is unchanged keep their previous nodes when these are still
   valid (no pod moves); a job that changes only its worker count, or only its PS count,
   and can do so in place (its JobView's `resize_costs`) keeps its staying tasks where
   they are, the added ones going to its own nodes first, then first fit (`extend`),
   because a running pod that had to move would turn the change in place into a restart;
2. the rest go most constrained first (fewest eligible nodes), then largest first
   (dominant share of the job's demand, then task count), each on the first nodes that
   fit in a fixed node order (bigger nodes first): first-fit decreasing, a good
   bin-packing heuristic;
3. a job that cannot be placed whole keeps its previous placement (then with its previous
   counts) when that is still valid, or is reported in `unplaceable`; never half-placed.

`spread_place` is the other rule, for comparisons only: what the Kubernetes default scheduler
does with these pods (each task on the node with the most free resources left), which is how
the Optimus paper's baselines were placed. The operator always uses `place`.

Scale: the free resources live in numpy arrays; each kind of job (node selector, node
affinity and tolerations) has a pool of candidate nodes from which full nodes are dropped,
and a job is first tried on the pool's first `WINDOW` nodes, then on the whole pool, so
that the common case costs a few vector operations over a small window.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from optimus.scheduling.cluster import (
    ClusterIndex,
    JobSignature,
    arrival_order,
    demand_triple,
    job_signature,
    triple,
)
from optimus.scheduling.types import (
    Allocation,
    JobPlacement,
    JobView,
    NodeView,
    Placement,
    Resources,
)

#: How many candidate nodes a job is tried on before the whole pool is scanned.
WINDOW = 256
#: How many nodes after a cursor are checked one by one before vector operations.
_PEEK = 8
_EPS = 1e-9

#: (number of nodes, PS per node, workers per node)
_Bundle = tuple[int, int, int]


def even_spread(ps: int, workers: int, k: int) -> list[_Bundle]:
    """The PS and workers per node when a job is spread evenly over k nodes: the extra PS
    go to the first nodes, the extra workers to the last ones, so they share a node only
    when there are more extras than nodes. Largest bundle first; no empty bundle when
    k <= ps + workers."""
    qp, rp = divmod(ps, k)
    qw, rw = divmod(workers, k)
    both = max(0, rp + rw - k)
    ps_only, workers_only = rp - both, rw - both
    rest = k - both - ps_only - workers_only
    bundles = [
        (both, qp + 1, qw + 1),
        (ps_only, qp + 1, qw),
        (workers_only, qp, qw + 1),
        (rest, qp, qw),
    ]
    return [b for b in bundles if b[0] > 0]


class _Pool:
    """The candidate nodes of one job signature, in first-fit order, full ones dropped.

    `cursors` remember, per demand, how many leading members cannot hold it: free
    resources only shrink, so those nodes never will, and the next search starts there;
    `most_fits` bounds how many members can hold it at all, for the same reason.
    """

    def __init__(self, members: np.ndarray, free: np.ndarray, deaths: int) -> None:
        self.members = members
        #: the most of each resource any member had at the start (free only shrinks)
        self.most = tuple(free[:, members].max(axis=1).tolist()) if members.size else (0.0,) * 3
        self.deaths_seen = deaths
        self.cursors: dict[tuple[float, float, float], int] = {}
        #: per demand, how many members could hold it at the last whole-pool search
        self.most_fits: dict[tuple[float, float, float], int] = {}

    def compact(self, alive: np.ndarray, deaths: int) -> None:
        keep = alive[self.members]
        before = np.concatenate(([0], np.cumsum(keep)))
        self.cursors = {need: int(before[c]) for need, c in self.cursors.items()}
        self.members = self.members[keep]
        self.deaths_seen = deaths


class _Placer:
    def __init__(self, nodes: Sequence[NodeView], min_task: np.ndarray) -> None:
        self.nodes = nodes
        self.index = ClusterIndex(nodes)
        n = len(nodes)
        self.free = np.array(self.index.node_free, dtype=float).reshape(n, 3).T
        self.free = np.ascontiguousarray(self.free)
        allocatable = np.array(
            [triple(node.allocatable) for node in nodes], dtype=float
        ).reshape(n, 3).T
        #: each node's allocatable (gpu, cpu, memory), one row per resource
        self.allocatable = allocatable
        biggest = allocatable.max(axis=1) if n else np.zeros(3)
        self.tolerance: tuple[float, float, float] = tuple(  # type: ignore[assignment]
            float(v) for v in _EPS * np.maximum(biggest, 1.0)
        )
        #: the same free resources as Python lists, for reading a few nodes at a time
        self.free_lists = [row.tolist() for row in self.free]
        self.position = {node.name: i for i, node in enumerate(nodes)}
        self.names = [node.name for node in nodes]
        # first-fit order: bigger nodes first (GPUs, then CPUs, then memory), input order
        self.order = np.lexsort((np.arange(n), -allocatable[2], -allocatable[1], -allocatable[0]))
        self.min_task = min_task.tolist()
        self.alive = self.fit_mask(np.arange(n), min_task)
        self.deaths = 0
        self.pools: dict[JobSignature, _Pool] = {}

    def fit_mask(self, positions: np.ndarray, need: Sequence[float] | np.ndarray) -> np.ndarray:
        """Which of these nodes have room for `need` (one bundle of tasks)."""
        f, t = self.free, self.tolerance
        return (
            (f[0, positions] >= need[0] - t[0])
            & (f[1, positions] >= need[1] - t[1])
            & (f[2, positions] >= need[2] - t[2])
        )

    def eligible(self, signature: JobSignature) -> np.ndarray:
        """Which nodes accept a job with this signature (selector, taints, cordons)."""
        shapes = np.array(self.index.eligible_shapes(signature), dtype=bool)
        shape_of = np.array(self.index.shape_of_node, dtype=np.int64)
        return shapes[shape_of] if shapes.size else np.zeros(0, dtype=bool)

    def pool(self, signature: JobSignature) -> _Pool:
        pool = self.pools.get(signature)
        if pool is None:
            eligible = self.eligible(signature)
            members = self.order[eligible[self.order] & self.alive[self.order]]
            pool = self.pools[signature] = _Pool(members, self.free, self.deaths)
        elif self.deaths - pool.deaths_seen >= WINDOW // 4:
            pool.compact(self.alive, self.deaths)
        return pool

    def commit(self, job: JobView, counts: Mapping[int, tuple[int, int]]) -> None:
        """Take the job's tasks off the free resources of its nodes (a few nodes: plain
        Python beats vector operations here), and drop nodes that can no longer hold
        even the smallest task from the pools."""
        free_gpu, free_cpu, free_memory = self.free
        list_gpu, list_cpu, list_memory = self.free_lists
        low_gpu, low_cpu, low_memory = (
            need - tol for need, tol in zip(self.min_task, self.tolerance, strict=True)
        )
        alive = self.alive
        for position, (ps, workers) in counts.items():
            gpu, cpu, memory = demand_triple(job, ps, workers)
            left_gpu = list_gpu[position] = list_gpu[position] - gpu
            left_cpu = list_cpu[position] = list_cpu[position] - cpu
            left_memory = list_memory[position] = list_memory[position] - memory
            free_gpu[position] = left_gpu
            free_cpu[position] = left_cpu
            free_memory[position] = left_memory
            if alive[position] and (
                left_gpu < low_gpu or left_cpu < low_cpu or left_memory < low_memory
            ):
                alive[position] = False
                self.deaths += 1

    def _room(self, job: JobView, position: int, ps: int, workers: int) -> bool:
        """Whether the node at `position` has room for `ps` PS and `workers` workers of job."""
        gpu, cpu, memory = demand_triple(job, ps, workers)
        return not (
            gpu - self.tolerance[0] > self.free_lists[0][position]
            or cpu - self.tolerance[1] > self.free_lists[1][position]
            or memory - self.tolerance[2] > self.free_lists[2][position]
        )

    def _counts(self, job: JobView, placement: JobPlacement
                ) -> dict[int, tuple[int, int]] | None:
        """(PS, workers) per node position of `placement` when every node exists, accepts
        the job and has room for its tasks there; else None. Reserves nothing."""
        ps_on = Counter(placement.ps_nodes)
        workers_on = Counter(placement.worker_nodes)
        counts: dict[int, tuple[int, int]] = {}
        signature = job_signature(job)
        for name in set(ps_on) | set(workers_on):
            position = self.position.get(name)
            if (position is None or not self.index.node_eligible(signature, position)
                    or not self._room(job, position, ps_on[name], workers_on[name])):
                return None
            counts[position] = (ps_on[name], workers_on[name])
        return counts

    def keep(self, job: JobView, old: JobPlacement) -> bool:
        """Reserve a previous placement if all its nodes exist, still accept the job and
        have room for its tasks."""
        counts = self._counts(job, old)
        if counts is None:
            return False
        self.commit(job, counts)
        return True

    def extend(self, job: JobView, old: JobPlacement, allocation: Allocation
               ) -> JobPlacement | None:
        """The job's previous placement at `allocation` with nothing running moved: fewer
        PS or workers, the highest ranks leave; more, the added ones go to the job's own
        nodes first (in the order its tasks use them), then to the first pool members with
        room. Reserved and returned, or None (nothing reserved) when it does not fit."""
        kept = JobPlacement(old.ps_nodes[:allocation.ps], old.worker_nodes[:allocation.workers])
        counts = self._counts(job, kept)
        if counts is None:
            return None
        candidates = [self.position[n] for n in dict.fromkeys(old.worker_nodes + old.ps_nodes)]
        candidates += [int(n) for n in self.pool(job_signature(job)).members
                       if int(n) not in counts]
        added: dict[str, list[str]] = {"ps": [], "worker": []}
        for role, have, want in (("ps", len(kept.ps_nodes), allocation.ps),
                                 ("worker", len(kept.worker_nodes), allocation.workers)):
            for position in candidates:
                while have + len(added[role]) < want:
                    ps_here, workers_here = counts.get(position, (0, 0))
                    more = (ps_here + 1, workers_here) if role == "ps" else (
                        ps_here, workers_here + 1)
                    if not self._room(job, position, *more):
                        break
                    counts[position] = more
                    added[role].append(self.names[position])
            if have + len(added[role]) < want:
                return None
        self.commit(job, counts)
        return JobPlacement(kept.ps_nodes + tuple(added["ps"]),
                            kept.worker_nodes + tuple(added["worker"]))

    def place_new(self, job: JobView, allocation: Allocation) -> JobPlacement | None:
        """The fewest nodes that hold the job evenly spread, first fit; None if none do.

        The first try is the smallest k the pool's biggest node allows, on a window of the
        pool; only if that fails is the whole pool searched, for each k in turn. The
        per-demand cursors make repeated searches cheap: a demand that fitted nowhere
        starts past the end next time."""
        ps, workers = allocation.ps, allocation.workers
        pool = self.pool(job_signature(job))
        demand = demand_triple(job, ps, workers)
        k_low = 1
        for r in range(3):
            if demand[r] > self.tolerance[r]:
                if pool.most[r] <= 0:
                    return None
                k_low = max(k_low, math.ceil(demand[r] / pool.most[r] - 1e-9))
        if k_low > ps + workers:
            return None
        chosen = self._search(job, pool, even_spread(ps, workers, k_low), WINDOW)
        k = k_low
        while chosen is None and k <= ps + workers:
            chosen = self._search(job, pool, even_spread(ps, workers, k), None)
            k += 1
        if chosen is None:
            return None
        self.commit(job, {position: (p, w) for position, p, w in chosen})
        return JobPlacement(
            tuple(self.names[pos] for pos, p_here, _ in chosen for _ in range(p_here)),
            tuple(self.names[pos] for pos, _, w_here in chosen for _ in range(w_here)),
        )

    def _first_fits(
        self, pool: _Pool, need: tuple[float, float, float], count: int, taken: set[int],
        window: int | None, spare: tuple[float, float, float] | None = None,
    ) -> list[int] | None:
        """The first `count` pool members outside `taken` with room for `need`, searched
        from need's cursor in growing chunks (at most `window` members when given). With
        `spare`, nodes that could not hold `spare` go first, so that the nodes which can
        are left for it."""
        if pool.most_fits.get(need, count) < count:
            return None  # a whole-pool search already found fewer such nodes
        members = pool.members
        start = pool.cursors.get(need, 0)
        stop = members.size if window is None else min(members.size, start + window)
        if spare is not None:
            candidates = members[start:stop]
            fit = self.fit_mask(candidates, need)
            if window is None:
                pool.most_fits[need] = int(fit.sum())
            spare_fit = self.fit_mask(candidates, spare)
            ranked = np.concatenate(
                (np.flatnonzero(fit & ~spare_fit), np.flatnonzero(fit & spare_fit))
            )
            nodes = [n for n in candidates[ranked[: count + len(taken)]].tolist()
                     if n not in taken][:count]
            return nodes if len(nodes) == count else None
        found: list[int] = []
        position, chunk, leading, seen = start, WINDOW, True, 0
        # Most searches end within a few members of the cursor: look at those one by one
        # before paying for vector operations.
        gpu, cpu, memory = self.free_lists
        n0, n1, n2 = need[0] - self.tolerance[0], need[1] - self.tolerance[1], need[2] - (
            self.tolerance[2]
        )
        for node in members[start:min(stop, start + _PEEK)].tolist():
            position += 1
            if gpu[node] >= n0 and cpu[node] >= n1 and memory[node] >= n2:
                seen += 1
                if leading:
                    pool.cursors[need] = position - 1
                    leading = False
                if node not in taken:
                    found.append(node)
                    if len(found) == count:
                        return found
            elif leading:
                pool.cursors[need] = position
        while position < stop and len(found) < count:
            candidates = members[position:min(stop, position + chunk)]
            hits = np.flatnonzero(self.fit_mask(candidates, need))
            seen += hits.size
            if leading:  # members before the first fit will never fit: move the cursor
                pool.cursors[need] = position + (int(hits[0]) if hits.size else candidates.size)
                leading = hits.size == 0
            for node in candidates[hits[: count + len(taken)]].tolist():
                if node not in taken:
                    found.append(node)
                    if len(found) == count:
                        break
            position += candidates.size
            chunk *= 2
        if len(found) < count and window is None:
            pool.most_fits[need] = seen  # free space only shrinks: never more than this
        return found if len(found) == count else None

    def _search(
        self, job: JobView, pool: _Pool, bundles: list[_Bundle], window: int | None
    ) -> list[tuple[int, int, int]] | None:
        """First-fit nodes for each bundle of an even spread, largest bundle first, or
        None. The bundles are nested (each holds at least the tasks of the next) except
        the one with an extra PS and the one with an extra worker: the first of those
        two takes nodes that cannot hold the second before nodes that can. With that,
        searching the whole pool (window None) finds nodes whenever any exist."""
        needs = [demand_triple(job, p, w) for _, p, w in bundles]
        for b in range(len(bundles) - 1):  # the bigger demand first when one holds the other
            if _holds(needs[b + 1], needs[b]) and not _holds(needs[b], needs[b + 1]):
                needs[b], needs[b + 1] = needs[b + 1], needs[b]
                bundles = [*bundles[:b], bundles[b + 1], bundles[b], *bundles[b + 2:]]
        picked: list[tuple[int, int, int]] = []
        taken: set[int] = set()
        for b, (count, p, w) in enumerate(bundles):
            spare = None
            if b + 1 < len(bundles) and not _holds(needs[b], needs[b + 1]):
                spare = needs[b + 1]
            nodes = self._first_fits(pool, needs[b], count, taken, window, spare)
            if nodes is None:
                return None
            taken.update(nodes)
            picked.extend((node, p, w) for node in nodes)
        return picked


def _holds(big: Sequence[float], small: Sequence[float]) -> bool:
    """True when a node with room for `big` has room for `small`."""
    return all(x >= y for x, y in zip(big, small, strict=True))


def _order_key(
    placer: _Placer, job: JobView, allocation: Allocation, total: Resources
) -> tuple[int, float, int, str]:
    """Most constrained first (fewest eligible nodes: a job pinned to a few nodes by its
    selector goes before jobs that may go anywhere), then largest first."""
    pool_size = placer.pool(job_signature(job)).members.size
    share = job.demand(allocation).dominant_share(total)
    return (pool_size, -share, -(allocation.ps + allocation.workers), job.id)


def _start(
    allocations: Mapping[str, Allocation],
    jobs: Sequence[JobView],
    nodes: Sequence[NodeView],
    previous: Placement | None,
) -> tuple[_Placer, dict[str, JobPlacement], list[tuple[JobView, Allocation]]]:
    """What both placements do first: check the allocations, index the nodes, and keep the
    previous placement of every job whose allocation did not change (no pod moves).
    Returns the placer, the kept placements and the jobs still to place."""
    by_id = {job.id: job for job in jobs}
    todo: list[tuple[JobView, Allocation]] = []
    for job_id, allocation in allocations.items():
        job = by_id.get(job_id)
        if job is None:
            raise ValueError(f"allocation for unknown job {job_id!r}; pass its JobView in jobs")
        if allocation.ps < 0 or allocation.workers < 0:
            raise ValueError(f"job {job_id!r}: negative allocation {allocation}")
        if allocation.ps + allocation.workers > 0:
            todo.append((job, allocation))
    old_jobs: Mapping[str, JobPlacement] = previous.jobs if previous is not None else {}
    tasks = [
        triple(request)
        for job, a in todo
        for request, n in ((job.ps_request, a.ps), (job.worker_request, a.workers))
        if n
    ]
    min_task = np.min(np.array(tasks), axis=0) if tasks else np.zeros(3)
    placer = _Placer(nodes, min_task)
    placed: dict[str, JobPlacement] = {}
    fresh: list[tuple[JobView, Allocation]] = []
    for job, allocation in todo:
        old = old_jobs.get(job.id)
        if (
            old is not None
            and (len(old.ps_nodes), len(old.worker_nodes)) == (allocation.ps, allocation.workers)
            and placer.keep(job, old)
        ):
            placed[job.id] = old
            continue
        if old is not None and _changes_in_place(job, old, allocation):
            extended = placer.extend(job, old, allocation)
            if extended is not None:
                placed[job.id] = extended
                continue
        fresh.append((job, allocation))
    return placer, placed, fresh


def _changes_in_place(job: JobView, old: JobPlacement, allocation: Allocation) -> bool:
    """Whether the move from `old` to `allocation` changes one count, of a kind the job
    changes in place (so its running pods should stay where they are)."""
    costs = job.resize_costs
    ps, workers = len(old.ps_nodes), len(old.worker_nodes)
    if costs is None or allocation.workers <= 0:
        return False
    if ps == allocation.ps:
        return costs.worker_change is not None and workers != allocation.workers
    return (costs.ps_change is not None and workers == allocation.workers
            and allocation.ps > 0)


def _finish(
    placer: _Placer,
    placed: dict[str, JobPlacement],
    fresh: Sequence[tuple[JobView, Allocation]],
    previous: Placement | None,
    place_one: Callable[[JobView, Allocation], JobPlacement | None],
) -> Placement:
    """Place the remaining jobs in the given order with `place_one`; a job that does not fit
    whole keeps its previous placement when that is still valid, else is unplaceable."""
    old_jobs: Mapping[str, JobPlacement] = previous.jobs if previous is not None else {}
    unplaceable: list[str] = []
    for job, allocation in fresh:
        placement = place_one(job, allocation)
        if placement is not None:
            placed[job.id] = placement
            continue
        old = old_jobs.get(job.id)
        if old is not None and placer.keep(job, old):
            placed[job.id] = old
        else:
            unplaceable.append(job.id)
    return Placement(placed, tuple(sorted(unplaceable)))


def place(
    allocations: Mapping[str, Allocation],
    jobs: Sequence[JobView],
    nodes: Sequence[NodeView],
    previous: Placement | None = None,
) -> Placement:
    """Place every job with a non-empty allocation whole, or list it as unplaceable.

    A job absent from `allocations` or allocated Allocation(0, 0) is not placed. A job that
    keeps its previous placement because the new allocation did not fit is placed with its
    previous counts, which then differ from its allocation."""
    placer, placed, fresh = _start(allocations, jobs, nodes, previous)
    total = placer.index.total_free
    fresh.sort(key=lambda item: _order_key(placer, item[0], item[1], total))
    return _finish(placer, placed, fresh, previous, placer.place_new)


def spread_place(
    allocations: Mapping[str, Allocation],
    jobs: Sequence[JobView],
    nodes: Sequence[NodeView],
    previous: Placement | None = None,
) -> Placement:
    """Place jobs as the Kubernetes default scheduler would: every task on the least
    allocated node. A model for comparisons, not what the operator does.

    Why it exists: in the Optimus paper the baselines (DRF, Tetris, ...) ran with the
    default scheduler's placement, and part of Optimus's gain there is its own placement
    (`place`: fewest nodes, even spread), since a job whose PS and workers span more nodes
    sends more traffic over the network. With `spread_place` the simulator can reproduce
    that setting (optimus.simulation's `baseline_placement`).

    The rule, kube-scheduler's NodeResourcesFit filter with LeastAllocated scoring: the
    tasks of a job go one at a time, its PS first (by rank), then its workers, each to the
    eligible node with room for it whose score is highest, where the score is the mean,
    over the resources the task requests (GPU, CPU, memory), of the fraction of the node's
    allocatable left free after the task; ties go to the first node by name (kube-scheduler
    rounds scores to integers and breaks ties at random; here placement is deterministic).
    The scheduler's other scoring plugins (balanced allocation, affinity, topology spread)
    and its node sampling are left out. Beyond kube-scheduler, a job is placed whole or
    not at all, jobs go in arrival order (higher priority first), and the rest matches
    `place`: node selectors, NoSchedule/NoExecute taints and cordons respected, no node
    over-committed, a job whose allocation did not change keeps its previous nodes, and a
    job that cannot be placed whole keeps its previous placement when still valid (with
    its previous counts) or is listed in `unplaceable`."""
    placer, placed, fresh = _start(allocations, jobs, nodes, previous)
    rank = {job.id: i for i, job in enumerate(arrival_order([job for job, _ in fresh]))}
    fresh.sort(key=lambda item: rank[item[0].id])
    name_rank = np.empty(len(nodes), dtype=np.int64)
    name_rank[sorted(range(len(nodes)), key=placer.names.__getitem__)] = np.arange(len(nodes))

    def place_one(job: JobView, allocation: Allocation) -> JobPlacement | None:
        chosen = _least_allocated(placer, job, allocation, name_rank)
        if chosen is None:
            return None
        ps_nodes, worker_nodes = chosen
        counts: dict[int, tuple[int, int]] = {}
        for position in ps_nodes:
            p, w = counts.get(position, (0, 0))
            counts[position] = (p + 1, w)
        for position in worker_nodes:
            p, w = counts.get(position, (0, 0))
            counts[position] = (p, w + 1)
        placer.commit(job, counts)
        return JobPlacement(
            tuple(placer.names[pos] for pos in ps_nodes),
            tuple(placer.names[pos] for pos in worker_nodes),
        )

    return _finish(placer, placed, fresh, previous, place_one)


def _least_allocated(
    placer: _Placer, job: JobView, allocation: Allocation, name_rank: np.ndarray
) -> tuple[list[int], list[int]] | None:
    """The node of each PS and each worker of the job, chosen one task at a time by
    LeastAllocated scoring on a scratch copy of the free resources (so that a job that
    does not fit whole takes nothing); None when some task fits nowhere."""
    eligible = placer.eligible(job_signature(job))
    free = placer.free.copy()
    tolerance = np.array(placer.tolerance)[:, None]
    chosen: tuple[list[int], list[int]] = ([], [])
    for nodes_of_role, request, count in (
        (chosen[0], job.ps_request, allocation.ps),
        (chosen[1], job.worker_request, allocation.workers),
    ):
        need = np.array(triple(request), dtype=float)
        asked = need > 0
        if not asked.any():  # a task that asks for nothing: score it on every resource
            asked = np.ones(3, dtype=bool)
        allocatable = placer.allocatable[asked]
        capacity = np.where(allocatable > 0, allocatable, np.inf)  # 0: no such resource
        for _ in range(count):
            left = free - need[:, None]
            fit = eligible & (left >= -tolerance).all(axis=0)
            if not fit.any():
                return None
            score = np.where(fit, (np.maximum(left[asked], 0.0) / capacity).mean(axis=0),
                             -np.inf)
            best = np.flatnonzero(score >= score.max() - _EPS)
            position = int(best[np.argmin(name_rank[best])])
            free[:, position] -= need
            nodes_of_role.append(position)
    return chosen

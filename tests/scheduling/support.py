"""Builders and hypothesis strategies for the scheduling tests: jobs whose remaining time
is a plain callable (perfect or diminishing scaling), nodes, and random clusters."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st
from optimus.affinity import NodeSelectorRequirement, NodeSelectorTerm
from optimus.scheduling import (
    Allocation,
    JobView,
    NodeView,
    Placement,
    Resources,
    Taint,
    Toleration,
)
from optimus.scheduling.cluster import node_accepts

GiB = 2.0**30
WORKER = Resources(gpu=1, cpu=4, memory=16 * GiB)
PS = Resources(gpu=0, cpu=2, memory=8 * GiB)


def node(
    name: str, gpu: float = 4, cpu: float = 16, memory: float = 64 * GiB, **kw: Any
) -> NodeView:
    return NodeView(name, Resources(gpu, cpu, memory), **kw)


def scaling(work: float, overhead: float = 0.0) -> Callable[[int, int], float]:
    """Remaining time of a job with `work` worker-seconds left: work / w, plus a PS
    bottleneck overhead * w / p (inf without a worker, or without a PS when it has one)."""

    def remaining_time(ps: int, workers: int) -> float:
        if workers == 0:
            return math.inf
        time = work / workers
        if overhead:
            time += overhead * workers / ps if ps else math.inf
        return time

    return remaining_time


def job(
    job_id: str,
    work: float = 1000.0,
    *,
    arrival: float = 0.0,
    min_ps: int = 0,
    max_ps: int = 0,
    min_workers: int = 1,
    max_workers: int = 8,
    overhead: float = 0.0,
    remaining_time: Callable[[int, int], float] | None = None,
    ps_request: Resources = PS,
    worker_request: Resources = WORKER,
    **kw: Any,
) -> JobView:
    return JobView(
        id=job_id,
        arrival=arrival,
        ps_request=ps_request,
        worker_request=worker_request,
        min_ps=min_ps,
        max_ps=max_ps,
        min_workers=min_workers,
        max_workers=max_workers,
        remaining_time=remaining_time or scaling(work, overhead),
        **kw,
    )


def demand(jobs: Sequence[JobView], allocations: dict[str, Allocation]) -> Resources:
    total = Resources()
    for j in jobs:
        total = total + j.demand(allocations[j.id])
    return total


def free(nodes: Sequence[NodeView]) -> Resources:
    total = Resources()
    for n in nodes:
        if not n.unschedulable:
            total = total + n.free
    return total


# ---- hypothesis strategies ------------------------------------------------------------


def _remaining_time(kind: str, work: float, overhead: float) -> Callable[[int, int], float]:
    """Scaling jobs, and the awkward ones: never finishing, NaN at 2 workers, flat."""
    base = scaling(work, overhead)

    def remaining_time(ps: int, workers: int) -> float:
        if kind == "inf":
            return math.inf
        if kind == "nan" and workers == 2:
            return math.nan
        if kind == "flat":
            return work
        return base(ps, workers)

    return remaining_time

LABELS = ("a100", "v100")
TAINT = Taint("dedicated", "inference", "NoSchedule")
TOLERATION = Toleration("dedicated", "Equal", "inference", "NoSchedule")


@st.composite
def affinities(draw: st.DrawFn) -> tuple[NodeSelectorTerm, ...]:
    """Required node affinity terms on the nodes' labels: the accelerator and a GPU count."""
    def expression() -> NodeSelectorRequirement:
        if draw(st.booleans()):
            operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
            values = () if operator in ("Exists", "DoesNotExist") else tuple(
                draw(st.lists(st.sampled_from(LABELS), min_size=1, max_size=2)))
            return NodeSelectorRequirement("acc", operator, values)  # type: ignore[arg-type]
        return NodeSelectorRequirement("gpus", draw(st.sampled_from(["Gt", "Lt"])),
                                       (str(draw(st.integers(0, 8))),))

    return tuple(NodeSelectorTerm(tuple(expression() for _ in range(draw(st.integers(1, 2)))))
                 for _ in range(draw(st.integers(1, 2))))


@st.composite
def nodes_strategy(draw: st.DrawFn, max_nodes: int = 12, plain: bool = False) -> list[NodeView]:
    count = draw(st.integers(1, max_nodes))
    out = []
    for i in range(count):
        gpu = draw(st.sampled_from([0, 1, 2, 4, 8]))
        cpu = draw(st.sampled_from([4, 8, 16, 32]))
        memory = draw(st.sampled_from([16, 32, 64, 128])) * GiB
        used = Resources(
            draw(st.integers(0, gpu)), draw(st.integers(0, cpu // 2)), 0.0
        ) if draw(st.booleans()) else Resources()
        out.append(NodeView(
            f"n{i}", Resources(gpu, cpu, memory), used=used,
            labels={} if plain else {"acc": draw(st.sampled_from(LABELS)),
                                     **({"gpus": str(gpu)} if draw(st.booleans()) else {})},
            taints=() if plain or draw(st.integers(0, 4)) != 0 else (TAINT,),
            unschedulable=False if plain else draw(st.integers(0, 6)) == 0,
        ))
    return out


@st.composite
def jobs_strategy(draw: st.DrawFn, max_jobs: int = 10, plain: bool = False) -> list[JobView]:
    count = draw(st.integers(1, max_jobs))
    out = []
    for i in range(count):
        allreduce = draw(st.booleans())
        min_ps = 0 if allreduce else draw(st.integers(0, 2))
        max_ps = 0 if allreduce else draw(st.integers(max(min_ps, 1), 4))
        min_workers = draw(st.integers(0, 2))
        max_workers = draw(st.integers(max(min_workers, 1), 8))
        kind = draw(st.sampled_from(["scaling", "inf", "nan", "flat"]))
        work = draw(st.floats(1.0, 1e6))
        overhead = 0.0 if allreduce else draw(st.floats(0.0, 100.0))
        rt = _remaining_time(kind, work, overhead)
        out.append(JobView(
            id=f"j{i}",
            arrival=draw(st.floats(0, 100)),
            ps_request=Resources(0, draw(st.sampled_from([1, 2, 4])), 4 * GiB),
            worker_request=Resources(
                draw(st.sampled_from([0, 1, 2])), draw(st.sampled_from([1, 2, 4])),
                draw(st.sampled_from([4, 8, 16])) * GiB,
            ),
            min_ps=min_ps, max_ps=max_ps, min_workers=min_workers, max_workers=max_workers,
            remaining_time=rt,
            current=draw(st.one_of(st.none(), st.builds(
                Allocation, st.integers(min_ps, max_ps), st.integers(min_workers, max_workers)
            ))),
            priority=draw(st.integers(0, 1)),
            attained_service=draw(st.floats(0, 1e5)),
            node_selector={} if plain or draw(st.integers(0, 3)) else {
                "acc": draw(st.sampled_from(LABELS))
            },
            tolerations=() if plain or draw(st.booleans()) else (TOLERATION,),
            node_affinity=() if plain or draw(st.integers(0, 2)) else draw(affinities()),
            requested=draw(st.one_of(st.none(), st.builds(
                Allocation, st.integers(0, 5), st.integers(0, 10)
            ))),
        ))
    return out


def check_placement(
    placement: Placement,
    allocations: dict[str, Allocation],
    jobs: Sequence[JobView],
    nodes: Sequence[NodeView],
    previous: Placement | None = None,
) -> None:
    """The placement invariants: no over-commit, whole or nothing, eligible nodes only,
    even spread of new placements, every non-empty job placed or unplaceable."""
    by_id = {j.id: j for j in jobs}
    by_name = {n.name: n for n in nodes}
    used = {n.name: Resources() for n in nodes}
    wanted = {k for k, a in allocations.items() if a.ps + a.workers > 0}
    assert set(placement.jobs) | set(placement.unplaceable) == wanted
    assert not set(placement.jobs) & set(placement.unplaceable)
    for job_id, where in placement.jobs.items():
        j, a = by_id[job_id], allocations[job_id]
        kept = previous is not None and previous.jobs.get(job_id) == where
        if not kept:  # new placements carry the allocation exactly, evenly spread
            assert (len(where.ps_nodes), len(where.worker_nodes)) == (a.ps, a.workers)
            names = where.nodes
            ps_counts = [where.ps_nodes.count(n) for n in names]
            worker_counts = [where.worker_nodes.count(n) for n in names]
            assert max(ps_counts) - min(ps_counts) <= 1, where
            assert max(worker_counts) - min(worker_counts) <= 1, where
        for name in where.ps_nodes:
            used[name] = used[name] + j.ps_request
        for name in where.worker_nodes:
            used[name] = used[name] + j.worker_request
        for name in where.nodes:
            n = by_name[name]
            assert node_accepts(n.labels, n.taints, n.unschedulable, j.node_selector,
                                j.tolerations, j.node_affinity), (job_id, name)
    for name, amount in used.items():
        assert amount.fits_in(by_name[name].free, eps=1e-6), (name, amount, by_name[name])

"""Step 4, the baseline policies the Optimus allocator is measured against (pure).

All share the Policy interface, the input checks and the all-or-nothing admission of
`optimus.scheduling.cluster`, so that the simulator runs each on the very same inputs:

- `drf`: dominant resource fairness by progressive filling, growing jobs up to their max;
- `tetris`: multi-resource packing (alignment of a job's demand with the free resources)
  plus a shortest-remaining-work term, as in the Tetris paper (Grandl et al., SIGCOMM'14);
- `tiresias`: Tiresias's discretised 2D least-attained-service (Gu et al., NSDI'19);
- `fixed`: what the user asked for, first come first served (the default Kubernetes way).

Tetris, Tiresias and fixed are not elastic: a job gets its requested size or waits.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from optimus.scheduling.cluster import (
    NOT_ADMITTED,
    admit,
    demand_triple,
    minimum,
    requested_size,
    start_round,
    triple,
)
from optimus.scheduling.greedy import remaining
from optimus.scheduling.types import Allocation, JobView, NodeView


def _target_ratio(job: JobView) -> float:
    """PS per worker that DRF keeps while it grows a job: the requested ratio, else the
    minimum's, else one PS per worker."""
    for size in (job.requested, Allocation(job.min_ps, job.min_workers)):
        if size is not None and size.workers > 0 and size.ps + size.workers > 0:
            return size.ps / size.workers
    return 1.0


@dataclass
class DrfPolicy:
    """Dominant resource fairness by progressive filling: admit every job at its minimum
    in arrival order, then repeatedly give one task to the job with the smallest dominant
    share (a PS while its PS/worker ratio is below the target, else a worker), until every
    job is at its max or nothing more fits. Remaining times play no part: DRF is fair, not
    fast."""

    name: str = "drf"

    def allocate(
        self, jobs: list[JobView], nodes: list[NodeView], *, now: float
    ) -> dict[str, Allocation]:
        del now
        ordered, index, budget = start_round(jobs, nodes)
        total = index.total_free
        result = admit(ordered, budget)
        heap: list[tuple[float, int]] = []
        for i, job in enumerate(ordered):
            a = result[job.id]
            if a != NOT_ADMITTED:
                heap.append((job.demand(a).dominant_share(total), i))
        heapq.heapify(heap)
        while heap:
            _, i = heapq.heappop(heap)
            job = ordered[i]
            a = result[job.id]
            # PS follow the workers in the target ratio: a PS only while below it
            ps_allowed = a.ps < job.max_ps and a.ps < math.ceil(_target_ratio(job) * a.workers)
            options = []
            if ps_allowed:
                options.append(Allocation(a.ps + 1, a.workers))
            if a.workers < job.max_workers:
                options.append(Allocation(a.ps, a.workers + 1))
            for grown in options:
                task = triple(job.ps_request if grown.ps > a.ps else job.worker_request)
                if budget.try_take(job.id, task):
                    result[job.id] = grown
                    heapq.heappush(heap, (job.demand(grown).dominant_share(total), i))
                    break
        return result


@dataclass
class FixedPolicy:
    """Each job gets what it asked for (`requested`, else its minimum), first come first
    served; a job that does not fit waits and later ones may pass it."""

    name: str = "fixed"

    def allocate(
        self, jobs: list[JobView], nodes: list[NodeView], *, now: float
    ) -> dict[str, Allocation]:
        del now
        ordered, _, budget = start_round(jobs, nodes)
        return admit(ordered, budget, {job.id: requested_size(job) for job in ordered})


@dataclass
class TiresiasPolicy:
    """Discretised two-dimensional least-attained-service (Tiresias's 2D-LAS).

    A job's attained service (GPU-seconds, `JobView.attained_service`) puts it in one of
    a few queues (`queue_thresholds` are the upper edges); lower queues go first, first
    come first served within a queue, and each job runs at its requested size or waits.
    """

    queue_thresholds: tuple[float, ...] = (3600.0, 36000.0)
    name: str = "tiresias"

    def __post_init__(self) -> None:
        if list(self.queue_thresholds) != sorted(self.queue_thresholds):
            raise ValueError(
                f"queue_thresholds={self.queue_thresholds}; give increasing GPU-seconds"
            )

    def queue(self, job: JobView) -> int:
        return sum(job.attained_service >= edge for edge in self.queue_thresholds)

    def allocate(
        self, jobs: list[JobView], nodes: list[NodeView], *, now: float
    ) -> dict[str, Allocation]:
        del now
        ordered, _, budget = start_round(jobs, nodes, order=lambda jobs: sorted(
            jobs, key=lambda job: (self.queue(job), -job.priority, job.arrival, job.id)
        ))
        return admit(ordered, budget, {job.id: requested_size(job) for job in ordered})


@dataclass
class TetrisPolicy:
    """Tetris's packing with its shortest-remaining-work term, one job at a time.

    Each round scores every waiting job that fits at its requested size (else at its
    minimum): alignment = demand . free (both as fractions of the cluster), plus
    srtf_weight * eps * (-remaining work), remaining work = remaining time * dominant
    share, eps = mean alignment / mean remaining work as in the paper so that both terms
    count alike; the best job is admitted and the free resources shrink. Jobs are gang
    scheduled, so a job's tasks are packed together rather than one by one.
    """

    srtf_weight: float = 1.0
    name: str = "tetris"

    def allocate(
        self, jobs: list[JobView], nodes: list[NodeView], *, now: float
    ) -> dict[str, Allocation]:
        del now
        ordered, index, budget = start_round(jobs, nodes)
        total = np.array(triple(index.total_free))
        scale = np.where(total > 0, total, 1.0)
        result = {job.id: NOT_ADMITTED for job in ordered}
        # Two candidate sizes per job (requested, then minimum): row 2*i and 2*i + 1.
        sizes = [s for job in ordered for s in (requested_size(job), minimum(job))]
        need = np.array(
            [demand_triple(job, s.ps, s.workers) for job in ordered
             for s in (requested_size(job), minimum(job))]
        ).reshape(-1, 3)
        times = np.array(
            [remaining(job, s.ps, s.workers) for job, s in zip(
                (j for j in ordered for _ in (0, 1)), sizes, strict=True)]
        )
        finite = times[np.isfinite(times)]
        times = np.where(np.isfinite(times), times, 2 * finite.max() if finite.size else 1.0)
        fraction = need / scale
        work = times * fraction.max(axis=1)
        alive = np.ones(len(sizes), dtype=bool)
        while alive.any():
            free = np.maximum(np.array(budget.left), 0.0)
            alive &= np.all(need <= free + 1e-9 * np.maximum(free, 1.0), axis=1)
            # a job's minimum counts only while its requested size does not fit
            usable = alive.copy()
            usable[1::2] &= ~alive[0::2]
            rows = np.flatnonzero(usable)
            if rows.size == 0:
                break
            alignment = fraction[rows] @ (free / scale)
            eps = alignment.mean() / work[rows].mean() if work[rows].mean() > 0 else 0.0
            score = alignment - self.srtf_weight * eps * work[rows]
            chosen = None
            for row in rows[np.argsort(-score, kind="stable")]:
                job = ordered[row // 2]
                if budget.try_take(job.id, need[row]):
                    chosen = row
                    break
                alive[row] = False  # its node pool is full: it never fits again
            if chosen is None:
                break
            result[ordered[chosen // 2].id] = sizes[chosen]
            alive[2 * (chosen // 2): 2 * (chosen // 2) + 2] = False
        return result



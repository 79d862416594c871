"""Plain frozen types that steps 4 (allocate) and 5 (place) of a scheduling round work on.

The operator builds them from its snapshot (optimus.kube), the simulator from its simulated
cluster (optimus.simulation), and external harnesses by hand: the allocator only needs each
job's remaining time as a callable of (ps, workers), never a fitted model in particular.
`Resources` lives in the leaf module optimus.resources (the CRD types use it too) and is
re-exported here with the other types the allocator works on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from optimus.affinity import NodeSelectorTerm, Taint, Toleration
from optimus.resources import ZERO, Resources

#: Remaining wall-clock seconds a job needs if it ran with (ps, workers) from now on.
#: It may return math.inf for configurations that can make no progress.
RemainingTime = Callable[[int, int], float]


@dataclass(frozen=True)
class Allocation:
    """How many parameter servers and workers a job runs with (ps == 0 for all-reduce)."""

    ps: int
    workers: int


@dataclass(frozen=True)
class ResizeCosts:
    """What moving a running job costs it, per kind of move (seconds without progress):
    a worker-count change the job makes in place, a PS-count change it makes in place, and
    a checkpoint-restart (every other move). None: the job cannot make that kind of move
    in place, so it restarts. The operator measures each per job; the simulator takes them
    from its configuration."""

    restart: float
    worker_change: float | None = None
    ps_change: float | None = None

    def seconds(self, current: Allocation, new: Allocation) -> float:
        """The cost of going from `current` to `new` (one count changes: its in-place kind
        when the job has one; anything else: a restart)."""
        if current == new:
            return 0.0
        if current.ps == new.ps and self.worker_change is not None:
            return self.worker_change
        if current.workers == new.workers and self.ps_change is not None:
            return self.ps_change
        return self.restart


@dataclass(frozen=True)
class JobView:
    """What the allocator and the placer know of one job.

    `remaining_time(p, w)` is the whole knowledge of the job's future; `attained_service`
    (GPU-seconds, or CPU-seconds for CPU jobs) serves the Tiresias baseline, and
    `progress` (fraction of the job done, 0..1) serves the JCT-aware Optimus policy.
    """

    id: str
    arrival: float
    ps_request: Resources
    worker_request: Resources
    min_ps: int
    max_ps: int
    min_workers: int
    max_workers: int
    remaining_time: RemainingTime
    current: Allocation | None = None
    mode: str = "ps-sync"
    priority: int = 0
    progress: float = 0.0
    attained_service: float = 0.0
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    #: the required node affinity of the job's pods: the terms are ORed, each term's
    #: expressions ANDed (Kubernetes' nodeSelectorTerms); empty means any node
    node_affinity: tuple[NodeSelectorTerm, ...] = ()
    #: requested counts for the "fixed" baseline (what the user asked for); defaults to min
    requested: Allocation | None = None
    #: what each kind of move costs this job (None: the policy's one restart cost)
    resize_costs: ResizeCosts | None = None
    #: how far remaining_time can be trusted (optimus.models.confidence): the relative error
    #: band of its speed answer at (ps, workers) (None: exact, as an oracle's). A policy
    #: that weighs it (PolicyTraits.weighs_uncertainty) moves a running job only for a gain
    #: beyond it
    speed_band: Callable[[int, int], float] | None = None

    def demand(self, allocation: Allocation) -> Resources:
        return self.ps_request.scale(allocation.ps) + self.worker_request.scale(
            allocation.workers
        )


@dataclass(frozen=True)
class NodeView:
    """A node's allocatable resources, what is already used there by pods the scheduler does
    not manage, and its labels and taints."""

    name: str
    allocatable: Resources
    used: Resources = ZERO
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False

    @property
    def free(self) -> Resources:
        return self.allocatable - self.used


@dataclass(frozen=True)
class JobPlacement:
    """The node of every PS (by rank) and every worker (by rank) of one job."""

    ps_nodes: tuple[str, ...]
    worker_nodes: tuple[str, ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.ps_nodes) | set(self.worker_nodes)))


@dataclass(frozen=True)
class Placement:
    """Placement of every job that could be placed whole; the rest are listed, never
    half-placed."""

    jobs: Mapping[str, JobPlacement]
    unplaceable: tuple[str, ...] = ()


class Policy(Protocol):
    """A scheduling policy: Optimus, Optimus-paper, and the baselines share this shape."""

    name: str

    def allocate(
        self, jobs: list[JobView], nodes: list[NodeView], *, now: float
    ) -> dict[str, Allocation]: ...

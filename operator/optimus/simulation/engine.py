"""The simulation loop: a simulated cluster runs a trace under one policy (pure).

It replaces steps 1, 2 and 6 of a scheduling round (snapshot, observe, act) with a simulated
cluster and runs steps 3-5 with the operator's own code: `optimus.simulation.knowledge` fits
the operator's models, `optimus.scheduling.allocate` and `place` decide. Time advances in
scheduling intervals; within an interval every job runs at its true speed under its
placement (optimus.simulation.physics), so a job's completion time is exact, not rounded to
a tick. As under the operator, a new job triggers a round at once (the next periodic round
follows an interval later), and the resources of a job that finishes between two rounds
are handed out at the next round.

Costs and rules:
* a job that starts, resumes, or changes its PS/worker counts or nodes pays `restart_cost`
  seconds of wall time with its resources held and no progress; a change of configuration
  of a running job (including a preemption to zero) counts as one resize;
* learning policies (`optimus`, `optimus-paper`) run a new job at its minimum, then at probe
  configurations (`optimus.models.propose_probes`, within a probe box), until its
  speed model can be fitted, by the operator's rules (optimus.scheduling.probes: a probe
  fits beside what the others hold, and only while it can still pay for itself): the
  job's bounds are pinned to the probe for that round;
* `oracle` gives every policy the true remaining epochs and the true speed table;
* every policy is placed by Optimus's placement (`optimus.scheduling.place`) unless
  `baseline_placement` is "spread": then the non-Optimus policies (drf, tetris, tiresias,
  fixed) are placed as the Kubernetes default scheduler would (`spread_place`), the setting
  of the Optimus paper's baselines, and pay the physics' network slowdown when that puts a
  job on more nodes than the fewest;
* randomness (observation noise) comes from one generator per job seeded by (seed, index of
  the job in the trace's (arrival, name) order): the same seed gives the same result.

Conservation is checked every round: a policy or placement that over-commits a node raises
SimulationError.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optimus.models.loss import ConvergenceRule, LossParams, loss_at
from optimus.models.speed import PROBE_BOX, SpeedMode, parse_mode, probes_within_box
from optimus.scheduling import allocate, place, spread_place
from optimus.scheduling.cluster import pinned
from optimus.scheduling.probes import MAX_PROBE_CHOICES, fit_probes, probe_pays_back
from optimus.scheduling.types import (
    Allocation,
    JobPlacement,
    JobView,
    NodeView,
    Placement,
    Resources,
)
from optimus.simulation.inputs import SimulationInputError, TraceJob
from optimus.simulation.knowledge import LOSS_REFIT_GROWTH, LearnedJob
from optimus.simulation.physics import (
    curve_for_epochs,
    fewest_nodes_cross_fraction,
    network_factor,
)
from optimus.simulation.speeds import SpeedSurface

GIB = 1024.0**3
PS_MEMORY = 4 * GIB
WORKER_MEMORY = 8 * GIB
#: policies that learn their models online (and so probe new jobs)
LEARNING_POLICIES = frozenset({"optimus", "optimus-paper"})
DEFAULT_BATCH_SIZE = 32
#: policies always placed by Optimus's own placement, whatever `baseline_placement` says
OPTIMUS_POLICIES = frozenset({"optimus", "optimus-paper"})
#: how the other policies may be placed (SimulationConfig.baseline_placement)
BASELINE_PLACEMENTS: Mapping[str, Callable[..., Placement]] = {
    "optimus": place,  # fewest nodes, even spread: what the operator does
    "spread": spread_place,  # the Kubernetes default scheduler (the paper's baselines)
}


class SimulationError(RuntimeError):
    """The simulation cannot go on: a policy broke an invariant or jobs can never finish."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    allocatable: Resources
    bandwidth_gbps: float = 10.0


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[NodeSpec, ...]

    @staticmethod
    def uniform(nodes: int, gpus: float, cpus: float, *, memory_gib: float = 512.0,
                bandwidth_gbps: float = 10.0) -> Cluster:
        width = len(str(max(nodes - 1, 0)))
        return Cluster(tuple(
            NodeSpec(f"node-{i:0{width}d}", Resources(gpus, cpus, memory_gib * GIB),
                     bandwidth_gbps)
            for i in range(nodes)))

    @property
    def total(self) -> Resources:
        total = Resources()
        for node in self.nodes:
            total = total + node.allocatable
        return total


@dataclass(frozen=True)
class SimulationConfig:
    policy: str = "optimus"
    interval: float = 60.0
    restart_cost: float = 30.0
    seed: int = 0
    oracle: bool = False
    #: relative noise (standard deviation) of a speed sample and of a loss point
    speed_noise: float = 0.05
    loss_noise: float = 0.01
    rule: ConvergenceRule = field(default_factory=ConvergenceRule)
    #: learned jobs refit their loss model when their loss points grew by this factor
    loss_refit_growth: float = LOSS_REFIT_GROWTH
    #: probe configurations stay within this many PS and workers while that box has any
    #: left (None: the job's bounds); the default is the operator's (models.PROBE_BOX)
    probe_max_ps: int | None = PROBE_BOX[0]
    probe_max_workers: int | None = PROBE_BOX[1]
    #: run a round as soon as a job arrives, as the operator does (a new TrainingJob forces
    #: a round); otherwise new jobs wait for the next interval
    round_on_arrival: bool = True
    #: give up when a job is still unfinished this long after the last arrival
    horizon: float = 180 * 86400.0
    #: extra keyword options for the policy (e.g. OptimusConfig fields)
    policy_options: Mapping[str, Any] = field(default_factory=dict)
    #: placement of the non-Optimus policies (BASELINE_PLACEMENTS): "optimus" places every
    #: policy alike; "spread" places drf, tetris, tiresias and fixed as the Kubernetes
    #: default scheduler would, as in the paper's experiments
    baseline_placement: str = "optimus"


@dataclass(frozen=True)
class JobOutcome:
    job: str
    arrival: float
    start: float | None
    finish: float | None
    resizes: int
    starts: int
    gpu_seconds: float
    #: wall time spent starting and restarting (resources held, no progress)
    restart_seconds: float

    @property
    def jct(self) -> float:
        return math.inf if self.finish is None else self.finish - self.arrival


@dataclass(frozen=True)
class Round:
    """One scheduling round: what ran, and the largest share of any node's GPUs, CPUs and
    memory that the placement used (conservation says <= 1)."""

    time: float
    running: int
    waiting: int
    gpus: float
    cpus: float
    peak_node_share: float


@dataclass(frozen=True)
class SimulationResult:
    policy: str
    config: SimulationConfig
    cluster_total: Resources
    outcomes: tuple[JobOutcome, ...]
    rounds: tuple[Round, ...]


@dataclass
class _Job:
    """One job's evolving state inside a simulation (mutable, private to `simulate`)."""

    trace: TraceJob
    surface: SpeedSurface
    loss: LossParams
    mode: SpeedMode
    batch_size: int
    min_ps: int
    max_ps: int
    max_workers: int
    ps_request: Resources
    worker_request: Resources
    rng: np.random.Generator
    learned: LearnedJob | None
    done: float = 0.0
    placement: JobPlacement | None = None
    blocked_until: float = 0.0
    resizes: int = 0
    starts: int = 0
    first_start: float | None = None
    finish: float | None = None
    gpu_seconds: float = 0.0
    restart_seconds: float = 0.0
    attained: float = 0.0
    next_loss_epoch: int = 1
    c_min: dict[tuple[int, int], float] = field(default_factory=dict)


def job_requests(job: TraceJob) -> tuple[Resources, Resources]:
    """(per PS, per worker) resource requests of a trace job."""
    return (Resources(0.0, job.cpus_per_ps, PS_MEMORY),
            Resources(job.gpus_per_worker, job.cpus_per_worker, WORKER_MEMORY))


def job_bounds(job: TraceJob, surface: SpeedSurface) -> tuple[int, int, int, int]:
    """(min_ps, max_ps, min_workers, max_workers): the trace's, defaulting to the measured
    range of the job's model (a speed table says nothing beyond it)."""
    if job.mode == "allreduce":
        min_ps = max_ps = 0
    else:
        min_ps = job.min_ps if job.min_ps is not None else max(1, surface.ps_min)
        max_ps = job.max_ps if job.max_ps is not None else max(min_ps, surface.ps_max)
    max_workers = (job.max_workers if job.max_workers is not None
                   else max(job.min_workers, surface.workers_max))
    return min_ps, max_ps, job.min_workers, max_workers


def check_fits(jobs: Sequence[TraceJob], surfaces: Mapping[str, SpeedSurface],
               cluster: Cluster, source: str = "trace") -> None:
    """Raise SimulationInputError for a job that can never run on the cluster: one worker
    (or PS) larger than every node, or its minimum (or requested) configuration larger than
    the whole cluster."""
    largest = Resources(max(n.allocatable.gpu for n in cluster.nodes),
                        max(n.allocatable.cpu for n in cluster.nodes),
                        max(n.allocatable.memory for n in cluster.nodes))
    total = cluster.total
    for job in jobs:
        ps_request, worker_request = job_requests(job)
        min_ps, _, min_workers, _ = job_bounds(job, surfaces[job.model])
        for role, request in (("worker", worker_request), ("parameter server", ps_request)):
            if not request.fits_in(largest):
                raise SimulationInputError(
                    source, job.line or None,
                    f"job {job.job}: one {role} needs {_show(request)} but the largest node "
                    f"has {_show(largest)}",
                    "lower gpus_per_worker/cpus_per_* or use bigger nodes "
                    "(--gpus-per-node, --cpus-per-node)")
        configurations = [("minimum", min_ps, min_workers)]
        if job.workers is not None:
            configurations.append(("requested", job.ps or 0, job.workers))
        for what, ps, workers in configurations:
            demand = ps_request.scale(ps) + worker_request.scale(workers)
            if not demand.fits_in(total):
                raise SimulationInputError(
                    source, job.line or None,
                    f"job {job.job}: its {what} configuration ({ps} PS, {workers} workers) "
                    f"needs {_show(demand)} but the cluster has {_show(total)}",
                    "lower min_ps/min_workers (or ps/workers) or add nodes (--nodes)")


def _show(resources: Resources) -> str:
    return (f"{resources.gpu:g} GPUs, {resources.cpu:g} CPUs, "
            f"{resources.memory / GIB:g} GiB")


def simulate(jobs: Sequence[TraceJob], surfaces: Mapping[str, SpeedSurface], cluster: Cluster,
             config: SimulationConfig,
             on_round: Callable[[float, int, int], None] | None = None) -> SimulationResult:
    """Run the trace to completion under `config.policy` (module docstring).

    `on_round(time, finished, total)` is called after every round (for progress bars).
    """
    if config.interval <= 0:
        raise ValueError("the scheduling interval must be positive")
    if config.restart_cost < 0:
        raise ValueError("the restart cost must be >= 0")
    placer = BASELINE_PLACEMENTS.get(config.baseline_placement)
    if placer is None:
        raise ValueError(f"unknown baseline placement {config.baseline_placement!r}; choose "
                         f"one of {', '.join(BASELINE_PLACEMENTS)}")
    if config.policy in OPTIMUS_POLICIES:
        placer = place
    check_fits(jobs, surfaces, cluster)
    ordered = sorted(jobs, key=lambda j: (j.arrival, j.job))
    learning = config.policy in LEARNING_POLICIES and not config.oracle
    states = [_new_job(job, index, surfaces[job.model], config)
              for index, job in enumerate(ordered)]
    node_views = [NodeView(node.name, node.allocatable) for node in cluster.nodes]
    node_specs = {node.name: node for node in cluster.nodes}
    node_shape = max((node.allocatable for node in cluster.nodes), key=lambda r: (r.gpu, r.cpu))
    options = dict(config.policy_options)
    if config.policy == "optimus":  # the operator knows what a restart costs: tell the policy
        options.setdefault("restart_cost_seconds", config.restart_cost)
    interval = config.interval
    pending = list(states)
    pending.reverse()  # pop() from the end = next arrival
    active: list[_Job] = []
    finished = 0
    rounds: list[Round] = []
    previous = Placement({})
    time = 0.0
    last_arrival = ordered[-1].arrival if ordered else 0.0
    while pending or active:
        if not active and pending and pending[-1].trace.arrival > time:
            next_arrival = pending[-1].trace.arrival
            time = (next_arrival if config.round_on_arrival
                    else math.ceil(next_arrival / interval) * interval)
        while pending and pending[-1].trace.arrival <= time:
            active.append(pending.pop())
        if time > last_arrival + config.horizon:
            stuck = ", ".join(state.trace.job for state in active[:5])
            raise SimulationError(
                f"{len(active)} job(s) still unfinished {config.horizon:g} s after the last "
                f"arrival under {config.policy} (e.g. {stuck}); the policy starves them")
        views = [_view(state) for state in active]
        if learning:
            views = _pin_probes(active, views, node_views, config)
        allocations = allocate(views, node_views, config.policy, now=time, **options)
        placement = placer(allocations, views, node_views, previous)
        peak = _check_conservation(placement, active, cluster)
        end = time + interval
        if config.round_on_arrival and pending and pending[-1].trace.arrival < end:
            end = pending[-1].trace.arrival  # a new job triggers a round at once
        gpus_in_use = cpus_in_use = 0.0
        running = 0
        still_active: list[_Job] = []
        for state in active:
            new = placement.jobs.get(state.trace.job)
            _apply_placement(state, new, time, config.restart_cost)
            if state.placement is not None:
                running += 1
                demand = _demand(state)
                gpus_in_use += demand.gpu
                cpus_in_use += demand.cpu
                _advance(state, time, end, node_specs, node_shape, config)
            if state.finish is None:
                still_active.append(state)
            else:
                finished += 1
        rounds.append(Round(time, running, len(active) - running, gpus_in_use, cpus_in_use,
                            peak))
        previous = Placement({state.trace.job: state.placement for state in still_active
                              if state.placement is not None})
        active = still_active
        time = end
        if on_round is not None:
            on_round(time, finished, len(states))
    outcomes = tuple(
        JobOutcome(s.trace.job, s.trace.arrival, s.first_start, s.finish, s.resizes, s.starts,
                   s.gpu_seconds, s.restart_seconds)
        for s in states)
    return SimulationResult(config.policy, config, cluster.total, outcomes, tuple(rounds))


def _new_job(job: TraceJob, index: int, surface: SpeedSurface,
             config: SimulationConfig) -> _Job:
    min_ps, max_ps, _, max_workers = job_bounds(job, surface)
    ps_request, worker_request = job_requests(job)
    mode = parse_mode(job.mode)
    batch = job.batch_size or DEFAULT_BATCH_SIZE
    rule = ConvergenceRule(config.rule.loss_delta, config.rule.window,
                           max(config.rule.max_epochs, math.ceil(job.epochs)))
    loss = job.loss or curve_for_epochs(job.epochs, rule.loss_delta, rule.window)
    learned = None if config.oracle else LearnedJob(mode, float(batch), job.dataset_size, rule,
                                                    config.loss_refit_growth)
    return _Job(job, surface, loss, mode, batch, min_ps, max_ps, max_workers, ps_request,
                worker_request, np.random.default_rng([config.seed, index]), learned)


def _view(state: _Job) -> JobView:
    job = state.trace
    learned = state.learned
    remaining_time: Callable[[int, int], float]
    if learned is None:
        remaining_time = _true_remaining_time(state)
        progress = state.done / job.epochs
    else:
        remaining_time = _learned_remaining_time(learned, state.done, job.dataset_size)
        # the latest estimate; remaining_time refits first, so this may lag one round
        progress = state.done / (state.done + learned.remaining_epochs(state.done))
    current = None
    if state.placement is not None:
        current = Allocation(len(state.placement.ps_nodes), len(state.placement.worker_nodes))
    requested = Allocation(job.ps or 0, job.workers) if job.workers is not None else None
    return JobView(
        id=job.job, arrival=job.arrival, ps_request=state.ps_request,
        worker_request=state.worker_request, min_ps=state.min_ps, max_ps=state.max_ps,
        min_workers=job.min_workers, max_workers=state.max_workers,
        remaining_time=remaining_time,
        current=current, mode=job.mode, progress=progress, attained_service=state.attained,
        requested=requested)


def _true_remaining_time(state: _Job) -> Callable[[int, int], float]:
    work = max(0.0, state.trace.epochs - state.done) * state.trace.dataset_size  # samples left
    speed = state.surface.samples_per_sec

    def remaining_time(ps: int, workers: int) -> float:
        rate = speed(ps, workers)
        return work / rate if rate > 0 else math.inf

    return remaining_time


def _learned_remaining_time(learned: LearnedJob, done: float,
                            dataset_size: float) -> Callable[[int, int], float]:
    """The remaining time from the job's learned models, refitted on first use in a round:
    policies that never ask (DRF, fixed, Tiresias) cost no model fits."""
    work: list[float] = []

    def remaining_time(ps: int, workers: int) -> float:
        if not work:
            learned.refit(done)
            work.append(learned.remaining_epochs(done) * dataset_size)
        rate = learned.samples_per_sec(ps, workers)
        return work[0] / rate if rate > 0 else math.inf

    return remaining_time


def _pin_probes(states: Sequence[_Job], views: Sequence[JobView],
                nodes: Sequence[NodeView], config: SimulationConfig) -> list[JobView]:
    """The views with each learning job's bounds pinned to its probe, as the operator does
    (optimus.kube.plan: `assess`, then `fit_probes_to_capacity`), with the rules both share
    (optimus.scheduling.probes): a job that has not run yet starts at its minimum; a running
    job stays where it is until that configuration is measured, then moves to the first of
    `probes_within_box`' configurations that fits beside what the others hold, or, when
    none fits or too little time is left to repay a probe, is left to the policy."""
    pins: dict[str, Allocation] = {}
    wanted: dict[str, tuple[Allocation, ...]] = {}
    for state, view in zip(states, views, strict=True):
        learned = state.learned
        if learned is None or not learned.needs_probes():
            continue
        seen = learned.configurations
        if state.placement is None:
            first = _probes(state, seen, config, 1) if seen else []
            pins[view.id] = Allocation(*first[0]) if first else Allocation(
                state.min_ps, state.trace.min_workers)
            continue
        here = (len(state.placement.ps_nodes), len(state.placement.worker_nodes))
        if here not in seen:  # still measuring (or restarting into) this configuration
            pins[view.id] = Allocation(*here)
        elif probe_pays_back(view.remaining_time(*here), config.restart_cost):
            probes = _probes(state, seen, config, MAX_PROBE_CHOICES)
            if probes:
                wanted[view.id] = tuple(Allocation(*p) for p in probes)
    for job_id, probe in fit_probes(views, nodes, wanted).items():
        if probe is not None:
            pins[job_id] = probe
    return [pinned(view, pins[view.id]) if view.id in pins else view for view in views]


def _probes(state: _Job, seen: set[tuple[int, int]], config: SimulationConfig,
            count: int) -> list[tuple[int, int]]:
    """The job's next probe configurations, best first (the operator's choice)."""
    return probes_within_box(state.min_ps, state.max_ps, state.trace.min_workers,
                             state.max_workers, seen, count, state.mode,
                             box=(config.probe_max_ps, config.probe_max_workers))


def _demand(state: _Job) -> Resources:
    assert state.placement is not None
    return (state.ps_request.scale(len(state.placement.ps_nodes))
            + state.worker_request.scale(len(state.placement.worker_nodes)))


def _check_conservation(placement: Placement, active: Sequence[_Job], cluster: Cluster) -> float:
    by_id = {state.trace.job: state for state in active}
    used: dict[str, list[float]] = {}
    for job_id, job_placement in placement.jobs.items():
        state = by_id.get(job_id)
        if state is None:
            raise SimulationError(f"the placement names job {job_id}, which is not running")
        for nodes, request in ((job_placement.ps_nodes, state.ps_request),
                               (job_placement.worker_nodes, state.worker_request)):
            for node in nodes:
                total = used.setdefault(node, [0.0, 0.0, 0.0])
                total[0] += request.gpu
                total[1] += request.cpu
                total[2] += request.memory
    peak = 0.0
    for spec in cluster.nodes:
        gpu, cpu, memory = used.pop(spec.name, (0.0, 0.0, 0.0))
        load = Resources(gpu, cpu, memory)
        if not load.fits_in(spec.allocatable):
            raise SimulationError(
                f"node {spec.name} over-committed: {_show(load)} placed on "
                f"{_show(spec.allocatable)}")
        peak = max(peak, load.dominant_share(spec.allocatable))
    if used:
        raise SimulationError(f"the placement uses unknown nodes {sorted(used)}")
    return peak


def _same_configuration(a: JobPlacement, b: JobPlacement) -> bool:
    return (sorted(a.ps_nodes) == sorted(b.ps_nodes)
            and sorted(a.worker_nodes) == sorted(b.worker_nodes))


def _apply_placement(state: _Job, new: JobPlacement | None, now: float,
                     restart_cost: float) -> None:
    if new is not None and not new.worker_nodes:
        new = None
    old = state.placement
    if old is None and new is None:
        return
    if old is not None and new is not None and _same_configuration(old, new):
        state.placement = new
        return
    if old is not None:
        state.resizes += 1
    if new is not None:
        state.starts += 1
        state.blocked_until = now + restart_cost
        if state.first_start is None:
            state.first_start = now
    state.placement = new


def _advance(state: _Job, start: float, end: float, nodes: Mapping[str, NodeSpec],
             node_shape: Resources, config: SimulationConfig) -> None:
    """Run a placed job over [start, end): progress, observations, attained service."""
    placement = state.placement
    assert placement is not None
    ps, workers = len(placement.ps_nodes), len(placement.worker_nodes)
    key = (ps, workers)
    if key not in state.c_min:
        state.c_min[key] = fewest_nodes_cross_fraction(
            ps, workers, state.ps_request, state.worker_request, node_shape)
    bandwidth = min(nodes[name].bandwidth_gbps for name in placement.nodes)
    speed = (state.surface.samples_per_sec(ps, workers)
             * network_factor(placement, bandwidth, state.c_min[key]))
    job = state.trace
    run_from = min(max(start, state.blocked_until), end)
    state.restart_seconds += run_from - start
    run_time = end - run_from
    held_until = end
    if speed > 0 and run_time > 0:
        need = (job.epochs - state.done) * job.dataset_size / speed
        if need <= run_time:
            state.finish = run_from + need
            state.done = job.epochs
            run_time = need
            held_until = state.finish
        else:
            state.done += run_time * speed / job.dataset_size
    gpus = _demand(state).gpu
    state.gpu_seconds += gpus * (held_until - start)
    state.attained += (gpus or _demand(state).cpu) * (held_until - start)
    learned = state.learned
    if learned is None or state.finish is not None:
        return
    if run_time > 0 and speed > 0:
        noise = math.exp(config.speed_noise * float(state.rng.standard_normal()))
        learned.observe_speed(ps if state.mode != "allreduce" else 0, workers,
                              speed / state.batch_size * noise)
    while state.next_loss_epoch <= state.done:
        epoch = state.next_loss_epoch
        loss = loss_at(state.loss, epoch) * (
            1.0 + config.loss_noise * float(state.rng.standard_normal()))
        learned.observe_loss(float(epoch), max(0.0, loss))
        state.next_loss_epoch += 1

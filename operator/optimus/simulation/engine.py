"""The simulation loop: a simulated cluster runs a trace under one policy (pure).

It replaces steps 1, 2 and 6 of a scheduling round (snapshot, observe, act) with a simulated
cluster and runs steps 3-5 with the operator's own round (`optimus.round.run_round`: the
fit, the pins, the policy, keep-running and placement): this module builds the round's
inputs from its simulated state (`round_job`, `observation`) and applies the round's
placement; it keeps only the clock and the physics. Time advances in
scheduling intervals; within an interval every job runs at its true speed under its
placement (optimus.simulation.physics), so a job's completion time is exact, not rounded to
a tick. As under the operator, a new job triggers a round at once (the next periodic round
follows an interval later), and the resources of a job that finishes between two rounds
are handed out at the next round.

Costs and rules:
* a job that starts, resumes, or changes its PS/worker counts or nodes pays `restart_cost`
  seconds of wall time with its resources held and no progress, except a change of one
  count that its mode makes in place (`in_place_worker_change_cost` for the modes in
  optimus_worker.contract.IN_PLACE_WORKER_CHANGE_MODES, `in_place_ps_change_cost` for the
  PS modes; None: a restart), which pays that instead; the round charges each job the same
  per-kind costs (`resize_costs`, JobView.resize_costs); a change of configuration of a
  running job (including a preemption to zero) counts as one resize;
* what the simulated Prometheus reports after an interval a job ran (`observation`): its
  loss at every epoch it finished (with `loss_noise`), and its speed as the workers'
  summed step rate averaged over the intervals its current generation ran (each interval's
  rate with `speed_noise`), as the operator measures a generation, and its epoch size
  (the operator measures it within a job's first interval);
* a job that is restarting (within `restart_cost` of its start or resize) is held at its
  allocation, as the operator holds a job whose new pods do not all run yet;
* the policies that learn online (PolicyTraits.learns_online) run a new job at its minimum,
  then at probe configurations until its speed model can be fitted (optimus.round.pins);
* knowledge is pooled across the jobs of one model, mode and batch size
  (optimus.round.store.KnowledgeStore, passed to every round): every round's speed
  observations are pooled (`optimus.round.pool_observations`) and a finished job's epochs
  and epoch size are remembered, the priors of later jobs of its kind (switched off by
  `pool_speed`, `convergence_prior`, `calibrate_speed`, for the ablations);
* `oracle` gives every policy the true remaining epochs and the true speed table;
* every policy is placed by Optimus's placement (`optimus.scheduling.place`) unless
  `baseline_placement` is "spread": then the policies not always placed by Optimus
  (PolicyTraits.optimus_placement) are placed as the Kubernetes default scheduler would
  (`spread_place`), the setting of the Optimus paper's baselines, and pay the physics'
  network slowdown when that puts a job on more nodes than the fewest;
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
from optimus_worker.contract import IN_PLACE_PS_CHANGE_MODES, IN_PLACE_WORKER_CHANGE_MODES

from optimus.models.loss import ConvergenceRule, LossParams, loss_at
from optimus.models.speed import PROBE_BOX, SpeedMode, SpeedParams, StepSplit, parse_mode
from optimus.round import (
    JobDecision,
    JobObservation,
    KnowledgeStore,
    ModelMemory,
    Oracle,
    RoundJob,
    SchedulingSettings,
    pool_finished,
    pool_observations,
    run_round,
    summed_steps_per_second,
)
from optimus.scheduling.types import (
    Allocation,
    JobPlacement,
    JobView,
    NodeView,
    Placement,
    ResizeCosts,
    Resources,
)
from optimus.simulation.inputs import SimulationInputError, TraceJob
from optimus.simulation.physics import (
    curve_for_epochs,
    emulated_split,
    equation_of_surface,
    fewest_nodes_cross_fraction,
    network_factor,
    true_model_speed,
)
from optimus.simulation.speeds import SpeedSurface

GIB = 1024.0**3
PS_MEMORY = 4 * GIB
WORKER_MEMORY = 8 * GIB
DEFAULT_BATCH_SIZE = 32
#: the simulator's refit cadence (optimus.round.SchedulingSettings): refit the loss model
#: when its points grew by this factor (3, 9, 27, 81 points), the speed model after this
#: many new samples at configurations already seen. The operator refits on every change;
#: a fit costs ~10 ms, and a 1,000-job simulation would spend minutes refitting estimates
#: that barely move between epochs
LOSS_REFIT_GROWTH = 3.0
SPEED_REFIT_SAMPLES = 8


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
    #: the pause of a worker-count change made in place (modes in
    #: IN_PLACE_WORKER_CHANGE_MODES), and of a PS-count change made in place (PS modes);
    #: None: those moves restart too
    in_place_worker_change_cost: float | None = None
    in_place_ps_change_cost: float | None = None
    seed: int = 0
    oracle: bool = False
    #: relative noise (standard deviation) of a speed sample and of a loss point
    speed_noise: float = 0.05
    loss_noise: float = 0.01
    rule: ConvergenceRule = field(default_factory=ConvergenceRule)
    #: the refit cadence of learned models (see LOSS_REFIT_GROWTH)
    loss_refit_growth: float = LOSS_REFIT_GROWTH
    speed_refit_samples: int = SPEED_REFIT_SAMPLES
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
    #: knowledge pooled across jobs of one model, mode and batch (optimus.round.store):
    #: the kind's speed model and finished jobs' epochs as a new job's priors
    pool_speed: bool = True
    convergence_prior: bool = True
    calibrate_speed: bool = True
    #: the simulated workers report their step split and the round seeds its speed fit
    #: with it (optimus.round.knowledge.white_box_prior)
    white_box_prior: bool = True
    #: a running job moves only for a gain beyond its knowledge's error bands
    #: (SchedulingSettings.value_of_information)
    value_of_information: bool = True


def resize_costs(config: SimulationConfig, mode: str) -> ResizeCosts:
    """What each kind of move costs a job of `mode` in this simulation."""
    return ResizeCosts(
        restart=config.restart_cost,
        worker_change=(config.in_place_worker_change_cost
                       if mode in IN_PLACE_WORKER_CHANGE_MODES else None),
        ps_change=(config.in_place_ps_change_cost
                   if mode in IN_PLACE_PS_CHANGE_MODES else None))


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
    #: the resizes by cause (`resize_cause`): "probe", "move", "squeeze", "placement"
    resize_causes: Mapping[str, int] = field(default_factory=dict)

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
    #: the knowledge pooled across jobs when the trace ended (optimus.round.store)
    store: KnowledgeStore = field(default_factory=KnowledgeStore)


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
    rule: ConvergenceRule
    #: what the round's fit step remembers of the job (optimus.round.ModelMemory)
    model: ModelMemory
    done: float = 0.0
    placement: JobPlacement | None = None
    blocked_until: float = 0.0
    resizes: int = 0
    resize_causes: dict[str, int] = field(default_factory=dict)
    starts: int = 0
    first_start: float | None = None
    finish: float | None = None
    gpu_seconds: float = 0.0
    restart_seconds: float = 0.0
    attained: float = 0.0
    next_loss_epoch: int = 1
    c_min: dict[tuple[int, int], float] = field(default_factory=dict)
    #: loss points (epoch, loss) reported since the last round
    new_loss_points: list[tuple[float, float]] = field(default_factory=list)
    #: the current generation's summed step rates, one per interval it ran (noisy)
    generation_speeds: list[float] = field(default_factory=list)
    #: the speed equation fitted to the true surface, for the step split (physics), and
    #: the split of the current generation's steps
    equation: SpeedParams | None = None
    split: StepSplit | None = None


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


def settings_for(config: SimulationConfig) -> SchedulingSettings:
    """The round's settings for a simulation (optimus.round.SchedulingSettings)."""
    return SchedulingSettings(
        policy=config.policy, policy_options=config.policy_options,
        restart_cost_seconds=config.restart_cost, loss_refit_growth=config.loss_refit_growth,
        speed_refit_samples=config.speed_refit_samples,
        probe_box=(config.probe_max_ps, config.probe_max_workers),
        baseline_placement=config.baseline_placement, pool_speed=config.pool_speed,
        convergence_prior=config.convergence_prior, calibrate_speed=config.calibrate_speed,
        white_box_prior=config.white_box_prior,
        value_of_information=config.value_of_information)


def simulate(jobs: Sequence[TraceJob], surfaces: Mapping[str, SpeedSurface], cluster: Cluster,
             config: SimulationConfig,
             on_round: Callable[[float, int, int], None] | None = None, *,
             store: KnowledgeStore | None = None) -> SimulationResult:
    """Run the trace to completion under `config.policy` (module docstring).

    `on_round(time, finished, total)` is called after every round (for progress bars);
    `store` is the knowledge pooled before the trace starts (as `optimus fit store` seeds
    the operator's), by default none.
    """
    if config.interval <= 0:
        raise ValueError("the scheduling interval must be positive")
    if config.restart_cost < 0:
        raise ValueError("the restart cost must be >= 0")
    settings = settings_for(config)
    check_fits(jobs, surfaces, cluster)
    ordered = sorted(jobs, key=lambda j: (j.arrival, j.job))
    states = [new_job_state(job, index, surfaces[job.model], config)
              for index, job in enumerate(ordered)]
    node_views = [NodeView(node.name, node.allocatable) for node in cluster.nodes]
    node_specs = {node.name: node for node in cluster.nodes}
    node_shape = max((node.allocatable for node in cluster.nodes), key=lambda r: (r.gpu, r.cpu))
    interval = config.interval
    pending = list(states)
    pending.reverse()  # pop() from the end = next arrival
    active: list[_Job] = []
    finished = 0
    rounds: list[Round] = []
    store = store or KnowledgeStore()  # what finished and running jobs taught, per kind
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
        round_jobs = [round_job(state, time, config.oracle,
                                resize_costs(config, state.trace.mode)) for state in active]
        observed = {state.trace.job: observation(state) for state in active}
        outcome = run_round(round_jobs, observed, node_views, settings, now=time, store=store)
        store = pool_observations(store, round_jobs, observed)
        for state in active:
            state.model = outcome.jobs[state.trace.job].model
            state.new_loss_points.clear()
        placement = outcome.placement
        peak = _check_conservation(placement, active, cluster)
        end = time + interval
        if config.round_on_arrival and pending and pending[-1].trace.arrival < end:
            end = pending[-1].trace.arrival  # a new job triggers a round at once
        gpus_in_use = cpus_in_use = 0.0
        running = 0
        still_active: list[_Job] = []
        views = {view.id: view for view in outcome.views}
        for index, state in enumerate(active):
            new = placement.jobs.get(state.trace.job)
            resizes = state.resizes
            _apply_placement(state, new, time, resize_costs(config, state.trace.mode))
            if state.resizes > resizes:
                cause = resize_cause(views[state.trace.job], outcome.jobs[state.trace.job])
                state.resize_causes[cause] = state.resize_causes.get(cause, 0) + 1
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
                # what the operator sees: the epoch it converged at (an oracle run's jobs
                # teach nothing)
                store = pool_finished(store, round_jobs[index], state.done,
                                      state.trace.dataset_size)
        rounds.append(Round(time, running, len(active) - running, gpus_in_use, cpus_in_use,
                            peak))
        active = still_active
        time = end
        if on_round is not None:
            on_round(time, finished, len(states))
    outcomes = tuple(
        JobOutcome(s.trace.job, s.trace.arrival, s.first_start, s.finish, s.resizes, s.starts,
                   s.gpu_seconds, s.restart_seconds, dict(s.resize_causes))
        for s in states)
    return SimulationResult(config.policy, config, cluster.total, outcomes, tuple(rounds),
                            store)


def new_job_state(job: TraceJob, index: int, surface: SpeedSurface,
                  config: SimulationConfig) -> _Job:
    min_ps, max_ps, _, max_workers = job_bounds(job, surface)
    ps_request, worker_request = job_requests(job)
    mode = parse_mode(job.mode)
    batch = job.batch_size or DEFAULT_BATCH_SIZE
    rule = ConvergenceRule(config.rule.loss_delta, config.rule.window,
                           max(config.rule.max_epochs, math.ceil(job.epochs)))
    loss = job.loss or curve_for_epochs(job.epochs, rule.loss_delta, rule.window)
    return _Job(job, surface, loss, mode, batch, min_ps, max_ps, max_workers, ps_request,
                worker_request, np.random.default_rng([config.seed, index]), rule,
                ModelMemory())


def round_job(state: _Job, now: float, oracle: bool,
              costs: ResizeCosts | None = None) -> RoundJob:
    """The job as the round sees it (optimus.round.RoundJob): its trace's bounds and
    requests, where it runs, the model memory of its observations, what each kind of move
    costs it; with `oracle`, the truth instead."""
    job = state.trace
    current = None
    if state.placement is not None:
        current = Allocation(len(state.placement.ps_nodes), len(state.placement.worker_nodes))
    requested = Allocation(job.ps or 0, job.workers) if job.workers is not None else None
    view = JobView(
        id=job.job, arrival=job.arrival, ps_request=state.ps_request,
        worker_request=state.worker_request, min_ps=state.min_ps, max_ps=state.max_ps,
        min_workers=job.min_workers, max_workers=state.max_workers,
        remaining_time=_true_remaining_time(state),
        current=current, mode=job.mode, attained_service=state.attained,
        requested=requested, resize_costs=costs)
    truth = Oracle(max(0.0, job.epochs - state.done), view.remaining_time) if oracle else None
    return RoundJob(view=view, batch_size=state.batch_size, rule=state.rule, model=state.model,
                    epochs_done=state.done, placement=state.placement,
                    hold=state.placement is not None and state.blocked_until > now,
                    oracle=truth, kind=job.model)


def observation(state: _Job) -> JobObservation | None:
    """What the simulated Prometheus reports of the job since the last round (module
    docstring); None when it reports nothing new."""
    speeds = state.generation_speeds
    if not speeds and not state.new_loss_points:
        return None
    return JobObservation(
        loss_points=tuple(state.new_loss_points), epoch=state.done,
        speed=sum(speeds) / len(speeds) if speeds else None,
        samples_per_epoch=state.trace.dataset_size, series=1,
        split=state.split if speeds else None)


def resize_cause(view: JobView, decision: JobDecision) -> str:
    """Why a running job (`view`: as the policy saw it, its current allocation) was resized
    by the round's `decision`: "placement" (same counts, other nodes), "probe" (pinned to a
    probe), "move" (the policy moved it where it predicts less time left) or "squeeze"
    (the policy left it where it predicts more: shrunk to make room for others)."""
    current, new = view.current, decision.allocation
    if current is None or new == current:
        return "placement"
    if decision.pin is not None and decision.pin == new and decision.knowledge.probing:
        return "probe"
    if new.workers and view.remaining_time(new.ps, new.workers) < view.remaining_time(
            current.ps, current.workers):
        return "move"
    return "squeeze"


def _true_remaining_time(state: _Job) -> Callable[[int, int], float]:
    work = max(0.0, state.trace.epochs - state.done) * state.trace.dataset_size  # samples left
    speed = state.surface.samples_per_sec

    def remaining_time(ps: int, workers: int) -> float:
        rate = speed(ps, workers)
        return work / rate if rate > 0 else math.inf

    return remaining_time


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


def _counts(placement: JobPlacement) -> Allocation:
    return Allocation(len(placement.ps_nodes), len(placement.worker_nodes))


def _apply_placement(state: _Job, new: JobPlacement | None, now: float,
                     costs: ResizeCosts) -> None:
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
    state.generation_speeds.clear()  # a new generation is measured afresh
    if new is not None:
        state.starts += 1
        cost = costs.restart
        if old is not None:
            before, after = _counts(old), _counts(new)
            # the same counts on other nodes is a restart (new pods), not an in-place change
            cost = costs.seconds(before, after) if before != after else costs.restart
        state.blocked_until = now + cost
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
    if config.oracle or state.finish is not None:
        return
    if run_time > 0 and speed > 0:
        noise = math.exp(config.speed_noise * float(state.rng.standard_normal()))
        state.generation_speeds.append(summed_steps_per_second(
            speed * noise, state.batch_size, workers, state.mode))
        if config.white_box_prior:
            if state.equation is None:
                state.equation = equation_of_surface(state.surface, state.mode,
                                                     state.batch_size)
            if state.equation is not None:
                table = state.surface.samples_per_sec(ps, workers)
                state.split = emulated_split(
                    state.equation, ps, workers,
                    true_model_speed(table, state.mode, state.batch_size, workers),
                    true_model_speed(speed * noise, state.mode, state.batch_size, workers),
                    bandwidth)
    while state.next_loss_epoch <= state.done:
        epoch = state.next_loss_epoch
        loss = loss_at(state.loss, epoch) * (
            1.0 + config.loss_noise * float(state.rng.standard_normal()))
        state.new_loss_points.append((float(epoch), max(0.0, loss)))
        state.next_loss_epoch += 1

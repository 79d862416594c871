"""Pure: what the demo's jobs would have taken on their fixed initial allocations, by running
the project's trace-driven simulator (optimus.simulation) on them.

From the final TrainingJob objects, the cluster's node list and the timelines the demo
recorded while polling (phase, allocation and epoch over time), `fixed_allocation_estimates`
builds one simulation and runs it under the `fixed` policy:

* one TraceJob per finished job: arrival = its creation time relative to the first job's;
  its fixed size = the first allocation it trained with (min = max = requested); epochs =
  the epochs it actually trained (status.progress.epoch at the end, else the fitted
  convergence epoch); dataset_size = status.model.samplesPerEpoch; batch size and mode from
  its spec; per-pod GPU and CPU requests from its spec's templates (optimus.api.spec);
* one SpeedSurface per job over its spec's PS/worker bounds, tabulating `rate_from_status`:
  the speed the operator measured at a configuration (status.model.speedSamples), else its
  fitted speed model (status.model.speed); where it has neither, the nearest measured
  configuration (as the simulator's own surfaces do outside their measurements);
* the Cluster from the nodes' allocatable GPUs, CPUs and memory (optimus.kube.snapshot,
  as the operator reads them). The simulator charges every pod a fixed memory (TraceJob has
  no memory column), so node memory is scaled by the largest ratio of that charge to a demo
  pod's real request: whatever fits the real nodes fits the simulated ones. Node bandwidth is
  loopback-sized: the local cluster's nodes share one host, and the measured speeds already
  include whatever their traffic cost;
* restart_cost = the median over the jobs of what a start really cost in the demo: from
  creation (or the end of a wait in the Queued phase) to the first poll that showed training
  progress. The simulator takes one restart cost for all jobs; the median is robust to one
  job whose start was slowed by its neighbours' starts. It includes the operator's lag in
  seeing progress, which the actual completion time pays too, at the end (the operator
  notices convergence at its next round); interval = the operator's interval.

The fixed policy never resizes, so resize downtime is absent from the estimate, and jobs that
do not fit side by side at their initial sizes queue as they would have.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from optimus.api.spec import SpecError, TrainingJobSpec, parse_spec
from optimus.kube.snapshot import node_views
from optimus.models.errors import ModelError
from optimus.models.speed import SpeedParams, parse_mode, samples_per_second
from optimus.round import batch_scope, samples_per_step
from optimus.scheduling.types import Resources
from optimus.simulation import (
    Cluster,
    NodeSpec,
    SimulationConfig,
    SimulationError,
    SimulationInputError,
    SpeedSurface,
    TraceJob,
    simulate,
)
from optimus.simulation.engine import job_requests

from e2e.demo.summary import completion_seconds
from e2e.demo.table import _mapping, _number, parse_time

#: Phases in which a job trains at its current allocation.
TRAINING_PHASES = frozenset({"Running", "Probing"})
#: The phase of a job waiting for resources (its wait is the cluster's, not a start cost).
QUEUED_PHASE = "Queued"
#: Node bandwidth handed to the simulator: the local cluster's nodes are processes on one
#: host, so cross-node traffic costs nothing the measured speeds do not already include.
LOOPBACK_BANDWIDTH_GBPS = 1e6

Rate = Callable[[int, int], float]


@dataclass(frozen=True)
class Observation:
    """A job's phase, allocation and epoch (status.progress.epoch) as seen at `t` (seconds
    since the job was created)."""

    t: float
    phase: str
    ps: int | None
    workers: int | None
    epoch: float | None = None


def initial_allocation(timeline: Sequence[Observation]) -> tuple[int, int] | None:
    """The first allocation the job trained with."""
    for seen in timeline:
        if seen.phase in TRAINING_PHASES and seen.ps is not None and seen.workers is not None:
            return seen.ps, seen.workers
    return None


def start_seconds(timeline: Sequence[Observation]) -> float | None:
    """What the job's start cost: from its creation, or from the last poll that saw it
    Queued, to the first poll that saw it training with progress (epoch > 0); None when it
    never showed progress."""
    waited_until = 0.0
    for seen in timeline:
        if seen.phase == QUEUED_PHASE:
            waited_until = seen.t
        elif (seen.phase in TRAINING_PHASES and seen.epoch is not None and seen.epoch > 0):
            return max(0.0, seen.t - waited_until)
    return None


def speed_params_from_status(obj: Mapping[str, Any]) -> SpeedParams | None:
    """The job's fitted speed model from status.model.speed ({mode, theta}), in the unit and
    batch scope the operator fits it with (optimus.round.batch_scope); None when the
    operator has not fitted one."""
    spec = _mapping(obj.get("spec"))
    speed = _mapping(_mapping(_mapping(obj.get("status")).get("model")).get("speed"))
    theta = speed.get("theta")
    batch = _number(spec.get("globalBatchSize"))
    if not isinstance(theta, list) or not theta or batch is None:
        return None
    values = [_number(t) for t in theta]
    if any(v is None for v in values):
        return None
    try:
        mode = parse_mode(str(speed.get("mode") or spec.get("mode") or "ps-sync"))
    except ModelError:
        return None
    return SpeedParams(mode, batch, tuple(v for v in values if v is not None),
                       batch_scope=batch_scope(mode))


def measured_speeds(obj: Mapping[str, Any]) -> dict[tuple[int, int], float]:
    """Mean measured speed (the speed model's unit) per (ps, workers), from
    status.model.speedSamples."""
    found: dict[tuple[int, int], list[float]] = {}
    samples = _mapping(_mapping(obj.get("status")).get("model")).get("speedSamples")
    for sample in samples if isinstance(samples, list) else ():
        if not isinstance(sample, list) or len(sample) != 3:
            continue
        ps, workers, speed = (_number(v) for v in sample)
        if ps is None or workers is None or speed is None or speed <= 0 or workers < 1:
            continue
        found.setdefault((int(ps), int(workers)), []).append(speed)
    return {config: sum(v) / len(v) for config, v in found.items()}


def rate_from_status(obj: Mapping[str, Any]) -> Rate | None:
    """Samples/s at (ps, workers): what the operator measured there when it ran there
    (status.model.speedSamples), else its fitted speed model; None with neither."""
    spec = _mapping(obj.get("spec"))
    batch = _number(spec.get("globalBatchSize"))
    mode = str(spec.get("mode") or "ps-sync")
    measured = measured_speeds(obj)
    params = speed_params_from_status(obj)
    if batch is None or (not measured and params is None):
        return None

    def rate(ps: int, workers: int) -> float:
        if (ps, workers) in measured:
            return measured[(ps, workers)] * samples_per_step(mode, int(batch), workers)
        if params is not None:
            return samples_per_second(params, ps, workers)
        raise ModelError(f"no measurement or fitted model at (ps={ps}, workers={workers})")

    return rate


# ---- the simulation's inputs ------------------------------------------------------------

def _spec(obj: Mapping[str, Any]) -> TrainingJobSpec | None:
    try:
        return parse_spec(obj.get("spec"))
    except SpecError:
        return None


def trained_epochs(obj: Mapping[str, Any]) -> float | None:
    """The epochs the job trained to finish: status.progress.epoch at the end, else its
    fitted convergence epoch (status.model.convergedEpoch)."""
    status = _mapping(obj.get("status"))
    for value in (_number(_mapping(status.get("progress")).get("epoch")),
                  _number(_mapping(status.get("model")).get("convergedEpoch"))):
        if value is not None and value > 0:
            return value
    return None


def speed_surface(name: str, obj: Mapping[str, Any], around: tuple[int, int]
                  ) -> SpeedSurface | None:
    """The job's speed (samples/s) on every integer configuration of its spec's bounds (and
    `around`, its fixed size): `rate_from_status` where it answers, else the nearest
    configuration the operator measured. None when neither answers at `around`."""
    spec = _spec(obj)
    rate = rate_from_status(obj)
    if spec is None or rate is None:
        return None
    ps_min = min(spec.parameter_servers.min, around[0])
    ps_max = max(spec.parameter_servers.max, around[0])
    workers_min = min(spec.workers.min, around[1])
    workers_max = max(spec.workers.max, around[1])
    measured = sorted(measured_speeds(obj))

    def speed(ps: int, workers: int) -> float:
        try:
            return rate(ps, workers)
        except (ModelError, ZeroDivisionError):
            if not measured:
                return math.nan
            nearest = min(measured, key=lambda c: ((c[0] - ps) ** 2 + (c[1] - workers) ** 2, c))
            return rate(*nearest)

    if not (math.isfinite(at := speed(*around)) and at > 0):
        return None
    grid = np.array([[speed(p, w) for w in range(workers_min, workers_max + 1)]
                     for p in range(ps_min, ps_max + 1)], dtype=np.float64)
    grid = np.where(np.isfinite(grid) & (grid > 0), grid, 0.0)
    return SpeedSurface(name, ps_min, ps_max, workers_min, workers_max, grid)


def trace_job(name: str, obj: Mapping[str, Any], arrival: float,
              size: tuple[int, int]) -> TraceJob | None:
    """The job as the simulator's trace row, pinned to `size` (ps, workers); None when its
    spec, epochs trained or samples per epoch are unknown."""
    spec = _spec(obj)
    epochs = trained_epochs(obj)
    dataset = _number(_mapping(_mapping(obj.get("status")).get("model")).get("samplesPerEpoch"))
    if spec is None or epochs is None or dataset is None or dataset <= 0:
        return None
    ps, workers = size
    return TraceJob(
        job=name, arrival=arrival, model=name, epochs=epochs, dataset_size=dataset,
        mode=spec.mode, batch_size=spec.global_batch_size,
        min_ps=ps, max_ps=ps, min_workers=workers, max_workers=workers,
        gpus_per_worker=spec.workers.request.gpu, ps=ps, workers=workers,
        cpus_per_ps=spec.parameter_servers.request.cpu,
        cpus_per_worker=spec.workers.request.cpu,
    )


def memory_scale(jobs: Sequence[tuple[TraceJob, TrainingJobSpec]]) -> float:
    """The largest ratio of the simulator's per-pod memory charge to a pod's real memory
    request (1 when no pod requests memory)."""
    ratios = []
    for job, spec in jobs:
        ps_charge, worker_charge = job_requests(job)
        for count, charge, group in ((job.ps or 0, ps_charge, spec.parameter_servers),
                                     (job.workers or 0, worker_charge, spec.workers)):
            if count > 0 and group.request.memory > 0:
                ratios.append(charge.memory / group.request.memory)
    return max(ratios, default=1.0)


def simulation_cluster(raw_nodes: Sequence[Mapping[str, Any]], memory_factor: float = 1.0
                       ) -> Cluster:
    """The schedulable nodes, as the operator reads them (allocatable GPUs, CPUs, memory),
    with memory multiplied by `memory_factor` and loopback bandwidth."""
    return Cluster(tuple(
        NodeSpec(view.name, Resources(view.allocatable.gpu, view.allocatable.cpu,
                                      view.allocatable.memory * memory_factor),
                 LOOPBACK_BANDWIDTH_GBPS)
        for view in node_views(raw_nodes, []) if not view.unschedulable))


# ---- the estimate -----------------------------------------------------------------------

@dataclass(frozen=True)
class FixedEstimate:
    """Per job, its simulated completion time on its fixed initial allocation (None where the
    job could not be simulated), and the restart cost and interval the simulation used."""

    seconds: Mapping[str, float | None]
    restart_cost: float | None
    interval: float
    simulated: int

    def of(self, obj: Mapping[str, Any]) -> float | None:
        return self.seconds.get(str(_mapping(obj.get("metadata")).get("name", "")))


def fixed_allocation_estimates(jobs: Sequence[Mapping[str, Any]],
                               raw_nodes: Sequence[Mapping[str, Any]],
                               timelines: Mapping[str, Sequence[Observation]], *,
                               interval: float) -> FixedEstimate:
    """Simulate the finished `jobs` under the fixed policy on `raw_nodes` (module docstring).

    A job that cannot be described (no timeline, progress, speed or samples per epoch) is
    left out of the simulation and gets None; when no start was observed or the simulator
    refuses the inputs, every job gets None."""
    named = {str(_mapping(o.get("metadata")).get("name", "")): o for o in jobs}
    finished = {n: o for n, o in named.items() if completion_seconds(o) is not None}
    seconds: dict[str, float | None] = dict.fromkeys(named)
    created = {n: parse_time(_mapping(o.get("metadata")).get("creationTimestamp"))
               for n, o in finished.items()}
    known = [c for c in created.values() if c is not None]
    starts = [s for n in finished if (s := start_seconds(timelines.get(n, ()))) is not None]
    if not known or not starts:
        return FixedEstimate(seconds, None, interval, 0)
    first = min(known)
    restart_cost = statistics.median(starts)
    trace: list[tuple[TraceJob, TrainingJobSpec]] = []
    surfaces: dict[str, SpeedSurface] = {}
    for name, obj in sorted(finished.items()):
        size = initial_allocation(timelines.get(name, ()))
        when, spec = created[name], _spec(obj)
        if size is None or when is None or spec is None:
            continue
        job = trace_job(name, obj, (when - first).total_seconds(), size)
        surface = speed_surface(name, obj, size)
        if job is not None and surface is not None:
            trace.append((job, spec))
            surfaces[name] = surface
    if not trace:
        return FixedEstimate(seconds, restart_cost, interval, 0)
    cluster = simulation_cluster(raw_nodes, memory_scale(trace))
    config = SimulationConfig(policy="fixed", interval=interval, restart_cost=restart_cost,
                              oracle=True)  # the fixed policy asks no model; skip learning
    try:
        result = simulate([job for job, _ in trace], surfaces, cluster, config)
    except (SimulationError, SimulationInputError, ValueError):
        return FixedEstimate(seconds, restart_cost, interval, 0)
    for outcome in result.outcomes:
        seconds[outcome.job] = outcome.jct if math.isfinite(outcome.jct) else None
    return FixedEstimate(seconds, restart_cost, interval, len(trace))


def describe_method(estimate: FixedEstimate) -> str:
    """The summary's one-line account of how the fixed-allocation figures were made."""
    cost = ("?" if estimate.restart_cost is None else f"{estimate.restart_cost:.0f} s")
    return ("the trace-driven simulator (optimus.simulation, policy fixed) replaying the "
            f"{estimate.simulated} finished job(s) at their initial allocation on this "
            "cluster's nodes: same arrivals, epochs trained and samples per epoch; speeds "
            "measured by the operator, else its fitted model; restart cost "
            f"{cost} (median measured start), interval {estimate.interval:g} s "
            "(e2e/demo/fixed.py)")

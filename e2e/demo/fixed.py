"""Pure: what a job would have taken on its fixed initial allocation, from its fitted model.

The demo records each job's phase and allocation every time it polls (a timeline). Time a
job spent training at an allocation (p, w) is worth, on the initial allocation (p0, w0),
that time multiplied by rate(p, w) / rate(p0, w0), where rate is the job's training speed
in samples per second: what the operator measured at (p, w) (status.model.speedSamples)
or, where it has no measurement, its fitted speed model (status.model.speed); time spent
resizing is worth nothing (a fixed allocation never restarts), and time before the job
first trained (admission, pod start) is the same in both worlds. Units cancel in the
ratio, so the estimate needs no dataset size. The jobs of the demo fit the cluster side by
side at their initial sizes, so the fixed world has no queueing to add.

This is the simulator's physics reduced to the one thing that differs between the two
worlds (the allocation over time), applied to the jobs' own measurements and models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optimus.kube.plan import batch_scope, samples_per_step
from optimus.models.errors import ModelError
from optimus.models.speed import SpeedParams, parse_mode, samples_per_second

from e2e.demo.table import _mapping, _number

#: Phases in which a job trains at its current allocation.
TRAINING_PHASES = frozenset({"Running", "Probing"})
#: Phases in which a job makes no progress because of a resize (absent in the fixed world).
RESIZE_PHASES = frozenset({"Resizing"})

Rate = Callable[[int, int], float]


@dataclass(frozen=True)
class Observation:
    """A job's phase and allocation as seen at `t` (seconds since the job was created)."""

    t: float
    phase: str
    ps: int | None
    workers: int | None


def initial_allocation(timeline: Sequence[Observation]) -> tuple[int, int] | None:
    """The first allocation the job trained with."""
    for seen in timeline:
        if seen.phase in TRAINING_PHASES and seen.ps is not None and seen.workers is not None:
            return seen.ps, seen.workers
    return None


def fixed_allocation_seconds(timeline: Sequence[Observation], rate: Rate,
                             end: float | None = None) -> float | None:
    """The job's completion time had it kept its initial allocation throughout.

    `timeline` is ordered by t; each observation's state holds until the next one (and the
    last until `end`, the completion time, when given). None when the job never trained or
    the model gives no positive rate at an allocation it used.
    """
    initial = initial_allocation(timeline)
    if initial is None:
        return None
    try:
        base = rate(*initial)
    except (ModelError, ZeroDivisionError):
        return None
    if not (math.isfinite(base) and base > 0):
        return None
    points = list(timeline)
    stops = [seen.t for seen in points[1:]] + [end if end is not None else points[-1].t]
    total = max(0.0, points[0].t)  # creation to first observation: the same in both worlds
    trained = False
    for seen, stop in zip(points, stops, strict=True):
        span = max(0.0, stop - seen.t)
        if seen.phase in TRAINING_PHASES and seen.ps is not None and seen.workers is not None:
            trained = True
            try:
                speed = rate(seen.ps, seen.workers)
            except (ModelError, ZeroDivisionError):
                return None
            if not (math.isfinite(speed) and speed >= 0):
                return None
            total += span * speed / base
        elif seen.phase in RESIZE_PHASES:
            continue
        elif not trained:
            total += span  # waiting to start: the same with a fixed allocation
    return total


def speed_params_from_status(obj: Mapping[str, Any]) -> SpeedParams | None:
    """The job's fitted speed model from status.model.speed ({mode, theta}), in the unit and
    batch scope the operator fits it with (optimus.kube.plan.batch_scope); None when the
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

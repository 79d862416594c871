"""Pure: what a job would have taken on its fixed initial allocation, from its fitted model.

The demo records each job's phase and allocation every time it polls (a timeline). Time a
job spent training at an allocation (p, w) is worth, on the initial allocation (p0, w0),
that time multiplied by rate(p, w) / rate(p0, w0), where rate is the job's fitted speed
model (status.model.speed, optimus.models.speed) in samples per second; time spent
resizing is worth nothing (a fixed allocation never restarts), and time before the job
first trained (admission, pod start) is the same in both worlds. Units cancel in the
ratio, so the estimate needs no dataset size. The jobs of the demo fit the cluster side by
side at their initial sizes, so the fixed world has no queueing to add.

This is the simulator's physics reduced to the one thing that differs between the two
worlds (the allocation over time), applied to the jobs' own fitted models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    """The job's fitted speed model from status.model.speed ({mode, theta}), with its
    globalBatchSize as the (global) batch; None when the operator has not fitted one."""
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
                       batch_scope="global")


def rate_from_status(obj: Mapping[str, Any]) -> Rate | None:
    """samples/s at (p, w) from the job's fitted speed model, or None without one."""
    params = speed_params_from_status(obj)
    if params is None:
        return None
    return lambda ps, workers: samples_per_second(params, ps, workers)

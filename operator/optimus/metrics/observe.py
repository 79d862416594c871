"""Step 2 of a scheduling round: what every running job did since the last rounds, from
Prometheus, as typed observations (loss per epoch, progress, speed per generation; the
types are the round's, optimus.round.observation).

Four range queries cover all jobs at once, whatever their number (labels from
optimus_worker.contract; every expression aggregates by namespace, job and generation):
  steps   sum of the workers' step counters   -> speed (summed worker steps/s; the fit
                                                 step converts it to the model's unit)
  samples sum of the workers' sample counters -> samples per epoch
  epoch   the chief's fractional epoch gauge  -> progress; pairs each loss with its epoch
  loss    the chief's last-epoch loss gauge   -> loss per epoch
Three more cover the step split of every job (the white-box speed prior's input):
  phase_seconds  the step-seconds histograms' sums by phase (workers' compute and
                 communication, the PS's update)
  phase_count    their counts by phase
  bytes          the workers' exchanged-bytes counters
  -> per step of one worker: mean compute, communication, update seconds and bytes, over
     the speed's window (optimus.models.StepSplit).
The conversion from series to observations is pure (`observations_from_series`).
A generation's pods never restart (a failed pod means a new generation), so its counters
only grow, and a speed is the increase over the time its pods have run after a warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from optimus_worker import contract

from optimus.metrics.prometheus import PrometheusClient, Series
from optimus.models import StepSplit
from optimus.round.observation import JobKey, JobObservation, SpeedWindow

_BY: Final = f"{contract.LABEL_NAMESPACE}, {contract.LABEL_JOB}, {contract.LABEL_GENERATION}"
_WORKERS: Final = f'{contract.LABEL_ROLE}="worker"'
_CHIEF: Final = f'{contract.LABEL_ROLE}="worker", {contract.LABEL_RANK}="0"'
QUERY_STEPS: Final = f"sum by ({_BY}) ({contract.METRIC_STEPS}_total{{{_WORKERS}}})"
QUERY_SAMPLES: Final = f"sum by ({_BY}) ({contract.METRIC_SAMPLES}_total{{{_WORKERS}}})"
QUERY_EPOCH: Final = f"max by ({_BY}) ({contract.METRIC_EPOCH}{{{_CHIEF}}})"
QUERY_LOSS: Final = f"max by ({_BY}) ({contract.METRIC_LOSS}{{{_CHIEF}}})"
QUERIES: Final = {"steps": QUERY_STEPS, "samples": QUERY_SAMPLES, "epoch": QUERY_EPOCH,
                  "loss": QUERY_LOSS}
_BY_PHASE: Final = f"{_BY}, {contract.LABEL_PHASE}"
QUERY_PHASE_SECONDS: Final = f"sum by ({_BY_PHASE}) ({contract.METRIC_STEP_SECONDS}_sum)"
QUERY_PHASE_COUNT: Final = f"sum by ({_BY_PHASE}) ({contract.METRIC_STEP_SECONDS}_count)"
QUERY_BYTES: Final = f"sum by ({_BY}) ({contract.METRIC_STEP_BYTES}_total{{{_WORKERS}}})"
SPLIT_QUERIES: Final = {"phase_seconds": QUERY_PHASE_SECONDS, "phase_count": QUERY_PHASE_COUNT,
                        "bytes": QUERY_BYTES}


@dataclass(frozen=True)
class ObservedSeries:
    """The four range results, keyed by (namespace, job) then generation."""

    steps: Mapping[JobKey, Mapping[int, Series]] = field(default_factory=dict)
    samples: Mapping[JobKey, Mapping[int, Series]] = field(default_factory=dict)
    epoch: Mapping[JobKey, Mapping[int, Series]] = field(default_factory=dict)
    loss: Mapping[JobKey, Mapping[int, Series]] = field(default_factory=dict)
    #: the split's series: phase -> (namespace, job) -> generation
    phase_seconds: Mapping[str, Mapping[JobKey, Mapping[int, Series]]] = field(
        default_factory=dict)
    phase_count: Mapping[str, Mapping[JobKey, Mapping[int, Series]]] = field(
        default_factory=dict)
    bytes: Mapping[JobKey, Mapping[int, Series]] = field(default_factory=dict)


def group_series(series: Sequence[Series]) -> dict[JobKey, dict[int, Series]]:
    grouped: dict[JobKey, dict[int, Series]] = {}
    for s in series:
        key = (s.labels.get(contract.LABEL_NAMESPACE, ""), s.labels.get(contract.LABEL_JOB, ""))
        try:
            generation = int(s.labels.get(contract.LABEL_GENERATION, "0"))
        except ValueError:
            continue
        if s.points:
            grouped.setdefault(key, {})[generation] = s
    return grouped


def group_by_phase(series: Sequence[Series]) -> dict[str, dict[JobKey, dict[int, Series]]]:
    phases: dict[str, list[Series]] = {}
    for s in series:
        phases.setdefault(s.labels.get(contract.LABEL_PHASE, ""), []).append(s)
    return {phase: group_series(members) for phase, members in phases.items()}


def _window_increase(series: Series | None, low: float, high: float) -> float:
    """The increase of a summed counter over [low, high] (its longest rise there)."""
    if series is None:
        return 0.0
    return _increase(longest_rise([p for p in series.points if low <= p[0] <= high]))[0]


def step_split(key: JobKey, data: ObservedSeries, generation: int, low: float,
               high: float) -> StepSplit | None:
    """The mean split of one worker's step of `generation` over [low, high] (None without
    a measured compute and communication phase)."""
    def per_event(phase: str) -> float | None:
        total = _window_increase(data.phase_seconds.get(phase, {}).get(key, {}).get(
            generation), low, high)
        count = _window_increase(data.phase_count.get(phase, {}).get(key, {}).get(
            generation), low, high)
        return total / count if count > 0 and total >= 0 else None

    compute = per_event(contract.PHASE_COMPUTE)
    communication = per_event(contract.PHASE_COMMUNICATION)
    if compute is None or communication is None or compute + communication <= 0:
        return None
    steps = _window_increase(data.phase_count.get(contract.PHASE_COMPUTE, {}).get(key, {}).get(
        generation), low, high)
    moved = _window_increase(data.bytes.get(key, {}).get(generation), low, high)
    return StepSplit(compute, communication, bytes_per_step=moved / steps if steps else 0.0,
                     update_seconds=per_event(contract.PHASE_UPDATE) or 0.0)


def longest_rise(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The longest run (in time) over which a summed counter never falls. A sum over a
    generation's workers falls when one worker's series goes away (its pod stopped for a
    resize, or one scrape failed); after that it no longer counts the whole generation."""
    best: list[tuple[float, float]] = []
    start = 0
    for i in range(1, len(points) + 1):
        if i == len(points) or points[i][1] < points[i - 1][1]:
            run = list(points[start:i])
            if not best or run[-1][0] - run[0][0] > best[-1][0] - best[0][0]:
                best = run
            start = i
    return best


def _increase(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(increase of a monotone series, seconds it spans)."""
    if len(points) < 2:
        return 0.0, 0.0
    return points[-1][1] - points[0][1], points[-1][0] - points[0][0]


def loss_per_epoch(epoch: Series, loss: Series) -> list[tuple[float, float]]:
    """(k, loss) for every whole epoch k >= 1 seen: the last loss reported while the chief
    had finished exactly k epochs (the loss gauge holds the mean of the last finished one)."""
    epochs = dict(epoch.points)
    by_epoch: dict[float, float] = {}
    for t, value in loss.points:
        done = epochs.get(t)
        if done is None or not math.isfinite(done):
            continue
        k = float(math.floor(done + 1e-9))
        if k >= 1 and value >= 0:
            by_epoch[k] = value
    return sorted(by_epoch.items())


def observe_job(
    key: JobKey, data: ObservedSeries, window: SpeedWindow | None, min_span: float
) -> JobObservation:
    """One job's observation from the grouped series (pure)."""
    generations = set(data.epoch.get(key, {})) | set(data.steps.get(key, {}))
    if not generations:
        return JobObservation()
    newest = max(generations)
    loss_points: dict[float, float] = {}
    for generation, epoch_series in sorted(data.epoch.get(key, {}).items()):
        loss_series = data.loss.get(key, {}).get(generation)
        if loss_series is not None:
            loss_points.update(loss_per_epoch(epoch_series, loss_series))
    epoch_s = data.epoch.get(key, {}).get(newest)
    loss_s = data.loss.get(key, {}).get(newest)
    steps_s = data.steps.get(key, {}).get(newest)
    speed = None
    span = 0.0
    samples_per_epoch = None
    split = None
    if window is not None:
        # A synchronous generation trains only once all its workers have joined and the
        # chief has restored the checkpoint, which on a busy node can take longer than the
        # warm-up: measure from its first step. Before it, the step counters have not
        # moved, and the chief's epoch gauge still jumps from 0 to the checkpoint's epoch.
        measured = data.steps.get(key, {}).get(window.generation)
        points = [p for p in measured.points if p[0] >= window.since] if measured else []
        first = next((i for i, p in enumerate(points) if p[1] > 0), None)
        if first is not None:
            rise = longest_rise(points[max(0, first - 1):])
            increase, span = _increase(rise)
            if span >= min_span and increase > 0:
                speed = increase / span
                split = step_split(key, data, window.generation, rise[0][0], rise[-1][0])
            samples = data.samples.get(key, {}).get(window.generation)
            epochs = data.epoch.get(key, {}).get(window.generation)
            if samples is not None and epochs is not None:
                low, high = points[first][0], rise[-1][0]
                counted = longest_rise([p for p in samples.points if low <= p[0] <= high])
                d_samples, _ = _increase(counted)
                d_epochs, _ = _increase([p for p in epochs.points if counted and
                                         counted[0][0] <= p[0] <= counted[-1][0]])
                if d_samples > 0 and d_epochs > 0.05:
                    samples_per_epoch = d_samples / d_epochs
    return JobObservation(
        first_step_at=first_step_at(steps_s),
        generation=newest,
        loss_points=tuple(sorted(loss_points.items())),
        epoch=epoch_s.last if epoch_s else None,
        step=steps_s.last if steps_s else None,
        loss=loss_s.last if loss_s else None,
        speed=speed,
        speed_span=span,
        samples_per_epoch=samples_per_epoch,
        series=sum(len(getattr(data, name).get(key, {})) for name in QUERIES),
        split=split,
    )


def first_step_at(steps: Series | None) -> float | None:
    """The time of the first sample in which a generation's summed step counters are above
    0, when an earlier sample saw them at 0 (so the step happened within one sample step
    before it); None otherwise. A generation's counters start at 0 with its processes."""
    if steps is None or not steps.points or steps.points[0][1] > 0:
        return None
    return next((t for t, value in steps.points if value > 0), None)


def observations_from_series(
    results: Mapping[str, Sequence[Series]],
    windows: Mapping[JobKey, SpeedWindow | None],
    *,
    min_span: float,
) -> dict[JobKey, JobObservation]:
    """Every job in `windows` with what the results say about it (pure)."""
    data = ObservedSeries(
        **{name: group_series(results.get(name, ())) for name in QUERIES},
        phase_seconds=group_by_phase(results.get("phase_seconds", ())),
        phase_count=group_by_phase(results.get("phase_count", ())),
        bytes=group_series(results.get("bytes", ())))
    return {key: observe_job(key, data, window, min_span) for key, window in windows.items()}


async def fetch_observations(
    client: PrometheusClient,
    windows: Mapping[JobKey, SpeedWindow | None],
    *,
    now: float,
    lookback: float,
    min_span: float,
) -> dict[JobKey, JobObservation]:
    """Run the range queries (QUERIES and SPLIT_QUERIES) over [now - lookback, now] and
    observe every job. Raises PrometheusError when Prometheus cannot answer."""
    step = min(15.0, max(1.0, lookback / 300.0))
    results = {
        name: await client.query_range(expr, start=now - lookback, end=now, step=step)
        for name, expr in {**QUERIES, **SPLIT_QUERIES}.items()
    }
    return observations_from_series(results, windows, min_span=min_span)

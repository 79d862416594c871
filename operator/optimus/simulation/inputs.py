"""The simulator's inputs as typed objects: a job trace and a measured speed table.

Both arrive as CSV text (the CLI reads the files; nothing here does I/O) and become frozen
dataclasses once, here, with every problem reported as a `SimulationInputError` that names
the source, the line and the fix. The speed table's failing measurements (zero or near-zero
speed) are dropped explicitly and listed, never silently hidden.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from optimus.models.loss import LossParams

#: the modes a trace may name (the TrainingJob's `mode`)
MODES = ("ps-sync", "ps-async", "allreduce")

TRACE_REQUIRED = ("job", "arrival", "model", "epochs", "dataset_size")
TRACE_OPTIONAL = (
    "mode", "batch_size", "min_ps", "max_ps", "min_workers", "max_workers", "gpus_per_worker",
    "loss_b0", "loss_b1", "loss_b2",
    # additive columns beyond the contract: what the user asked for (the `fixed` and
    # DRF baselines use it) and the CPU request of each task
    "ps", "workers", "cpus_per_ps", "cpus_per_worker",
)
SPEED_REQUIRED = ("model", "ps", "workers", "samples_per_sec")

#: a measured speed below this fraction of the median of its measured grid neighbours is a
#: failing configuration (the run crashed or stalled), not a point on the speed curve
FAILING_FRACTION = 0.25


class SimulationInputError(ValueError):
    """A bad trace or speed table: the message names the source, the line and the fix."""

    def __init__(self, source: str, line: int | None, problem: str, fix: str) -> None:
        where = f"{source} line {line}" if line is not None else source
        super().__init__(f"{where}: {problem}; {fix}")
        self.source = source
        self.line = line


@dataclass(frozen=True)
class TraceJob:
    """One job of a trace. `epochs` is how many epochs the job truly needs to converge;
    `dataset_size` is samples per epoch; `model` names rows of the speed table."""

    job: str
    arrival: float
    model: str
    epochs: float
    dataset_size: float
    mode: str = "ps-sync"
    batch_size: int | None = None
    min_ps: int | None = None
    max_ps: int | None = None
    min_workers: int = 1
    max_workers: int | None = None
    gpus_per_worker: float = 1.0
    loss: LossParams | None = None
    ps: int | None = None
    workers: int | None = None
    cpus_per_ps: float = 2.0
    cpus_per_worker: float = 4.0
    line: int = 0


@dataclass(frozen=True)
class SpeedRow:
    """One measured configuration: the job's total samples per second at (ps, workers)."""

    model: str
    ps: int
    workers: int
    samples_per_sec: float
    batch_size: int | None = None
    line: int = 0


@dataclass(frozen=True)
class DroppedRow:
    row: SpeedRow
    reason: str


@dataclass(frozen=True)
class SpeedTable:
    """Measured speeds by model (failing rows already removed and listed in `dropped`)."""

    rows: Mapping[str, tuple[SpeedRow, ...]]
    dropped: tuple[DroppedRow, ...] = ()
    source: str = "speeds"

    def batch_size(self, model: str) -> int | None:
        sizes = {row.batch_size for row in self.rows.get(model, ()) if row.batch_size}
        return min(sizes) if sizes else None


def _reader(text: str, source: str, required: Iterable[str]) -> csv.DictReader[str]:
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in (reader.fieldnames or [])]
    if not header:
        raise SimulationInputError(source, 1, "the file is empty",
                                   f"write a header line with {', '.join(required)}")
    reader.fieldnames = header
    missing = [name for name in required if name not in header]
    if missing:
        raise SimulationInputError(
            source, 1, f"missing column(s) {', '.join(missing)}",
            f"the header needs {', '.join(required)} (found {', '.join(header)})",
        )
    return reader


def _cell(record: Mapping[str, str | None], name: str) -> str:
    value = record.get(name)
    return value.strip() if value is not None else ""


def _number(record: Mapping[str, str | None], name: str, source: str, line: int,
            *, minimum: float | None = None, positive: bool = False) -> float:
    text = _cell(record, name)
    try:
        value = float(text)
    except ValueError:
        raise SimulationInputError(source, line, f"{name} is {text!r}, not a number",
                                   f"write a number in the {name} column") from None
    if not math.isfinite(value):
        raise SimulationInputError(source, line, f"{name} is {text}",
                                   f"write a finite number in the {name} column")
    if positive and value <= 0:
        raise SimulationInputError(source, line, f"{name} is {text}",
                                   f"{name} must be greater than 0")
    if minimum is not None and value < minimum:
        raise SimulationInputError(source, line, f"{name} is {text}",
                                   f"{name} must be at least {minimum:g}")
    return value


def _integer(record: Mapping[str, str | None], name: str, source: str, line: int,
             *, minimum: int) -> int:
    value = _number(record, name, source, line, minimum=minimum)
    if value != int(value):
        raise SimulationInputError(source, line, f"{name} is {value:g}",
                                   f"{name} must be a whole number")
    return int(value)


def _optional_int(record: Mapping[str, str | None], name: str, source: str, line: int,
                  minimum: int) -> int | None:
    return _integer(record, name, source, line, minimum=minimum) if _cell(record, name) else None


def parse_speed_table(text: str, source: str = "speeds.csv") -> SpeedTable:
    """Parse `model,ps,workers,samples_per_sec[,batch_size]` (extra columns ignored) and drop
    failing measurements: non-positive speeds, and speeds below FAILING_FRACTION of the median
    of their measured neighbours on the (ps, workers) grid."""
    reader = _reader(text, source, SPEED_REQUIRED)
    by_model: dict[str, dict[tuple[int, int], SpeedRow]] = {}
    for record in reader:
        line = reader.line_num
        model = _cell(record, "model")
        if not model:
            raise SimulationInputError(source, line, "model is empty", "name the model")
        ps = _integer(record, "ps", source, line, minimum=0)
        workers = _integer(record, "workers", source, line, minimum=1)
        speed = _number(record, "samples_per_sec", source, line)
        batch = (_integer(record, "batch_size", source, line, minimum=1)
                 if _cell(record, "batch_size") else None)
        key = (ps, workers)
        if key in by_model.setdefault(model, {}):
            raise SimulationInputError(
                source, line, f"{model} at ps={ps}, workers={workers} is measured twice",
                "keep one row per (model, ps, workers)")
        by_model[model][key] = SpeedRow(model, ps, workers, speed, batch, line)
    if not by_model:
        raise SimulationInputError(source, None, "no speed rows", "add measured rows")
    kept: dict[str, tuple[SpeedRow, ...]] = {}
    dropped: list[DroppedRow] = []
    for model, grid in sorted(by_model.items()):
        good: list[SpeedRow] = []
        for row in sorted(grid.values(), key=lambda r: (r.ps, r.workers)):
            reason = _failing_reason(row, grid)
            if reason:
                dropped.append(DroppedRow(row, reason))
            else:
                good.append(row)
        if not good:
            raise SimulationInputError(source, None, f"every row of {model} is a failing run",
                                       f"add working measurements of {model}")
        kept[model] = tuple(good)
    return SpeedTable(kept, tuple(dropped), source)


def _failing_reason(row: SpeedRow, grid: Mapping[tuple[int, int], SpeedRow]) -> str:
    if row.samples_per_sec <= 0:
        return f"speed {row.samples_per_sec:g} is not positive"
    ps_values = sorted({p for p, _ in grid})
    worker_values = sorted({w for _, w in grid})
    pi, wi = ps_values.index(row.ps), worker_values.index(row.workers)
    neighbours = [
        grid[(ps_values[i], worker_values[j])].samples_per_sec
        for i in (pi - 1, pi, pi + 1) for j in (wi - 1, wi, wi + 1)
        if (i, j) != (pi, wi) and 0 <= i < len(ps_values) and 0 <= j < len(worker_values)
        and (ps_values[i], worker_values[j]) in grid
    ]
    positive = [speed for speed in neighbours if speed > 0]
    if positive and row.samples_per_sec < FAILING_FRACTION * statistics.median(positive):
        return (f"speed {row.samples_per_sec:g} is below {FAILING_FRACTION:g} x the median "
                f"{statistics.median(positive):g} of its measured neighbours")
    return ""


def parse_trace(text: str, speeds: SpeedTable, source: str = "trace.csv") -> tuple[TraceJob, ...]:
    """Parse a job trace; every job must name a model of `speeds`. Jobs come back ordered by
    (arrival, name), the simulator's deterministic order."""
    reader = _reader(text, source, TRACE_REQUIRED)
    jobs: list[TraceJob] = []
    seen: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        name = _cell(record, "job")
        if not name:
            raise SimulationInputError(source, line, "job is empty", "give every job a name")
        if name in seen:
            raise SimulationInputError(source, line, f"job {name!r} repeats line {seen[name]}",
                                       "give every job a unique name")
        seen[name] = line
        model = _cell(record, "model")
        if model not in speeds.rows:
            known = ", ".join(sorted(speeds.rows))
            raise SimulationInputError(
                source, line, f"unknown model {model!r}",
                f"use a model of {speeds.source} ({known}) or add its rows there")
        mode = _cell(record, "mode") or "ps-sync"
        if mode not in MODES:
            raise SimulationInputError(source, line, f"mode is {mode!r}",
                                       f"use one of {', '.join(MODES)}")
        arrival = _number(record, "arrival", source, line, minimum=0)
        epochs = _number(record, "epochs", source, line, positive=True)
        dataset_size = _number(record, "dataset_size", source, line, positive=True)
        loss_cells = [_cell(record, f"loss_b{i}") for i in range(3)]
        loss = None
        if any(loss_cells):
            b0, b1, b2 = (_number(record, f"loss_b{i}", source, line, minimum=0)
                          for i in range(3))
            if b0 <= 0 or b1 <= 0:
                raise SimulationInputError(source, line, "loss_b0 and loss_b1 must be > 0",
                                           "give a decreasing loss curve 1/(b0*k+b1)+b2")
            loss = LossParams(b0, b1, b2)
        allreduce = mode == "allreduce"
        min_ps = _optional_int(record, "min_ps", source, line, 0)
        max_ps = _optional_int(record, "max_ps", source, line, 0)
        if allreduce and (min_ps or max_ps):
            raise SimulationInputError(source, line, "an allreduce job has no parameter servers",
                                       "leave min_ps and max_ps empty or 0")
        job = TraceJob(
            job=name, arrival=arrival, model=model, epochs=epochs, dataset_size=dataset_size,
            mode=mode,
            batch_size=_optional_int(record, "batch_size", source, line, 1),
            min_ps=0 if allreduce else min_ps,
            max_ps=0 if allreduce else max_ps,
            min_workers=_optional_int(record, "min_workers", source, line, 1) or 1,
            max_workers=_optional_int(record, "max_workers", source, line, 1),
            gpus_per_worker=(_number(record, "gpus_per_worker", source, line, minimum=0)
                             if _cell(record, "gpus_per_worker") else 1.0),
            loss=loss,
            ps=_optional_int(record, "ps", source, line, 0),
            workers=_optional_int(record, "workers", source, line, 1),
            cpus_per_ps=(_number(record, "cpus_per_ps", source, line, positive=True)
                         if _cell(record, "cpus_per_ps") else 2.0),
            cpus_per_worker=(_number(record, "cpus_per_worker", source, line, minimum=0)
                             if _cell(record, "cpus_per_worker") else 4.0),
            line=line,
        )
        _check_bounds(job, source)
        jobs.append(job)
    if not jobs:
        raise SimulationInputError(source, None, "the trace has no jobs", "add job rows")
    return tuple(sorted(jobs, key=lambda j: (j.arrival, j.job)))


def _check_bounds(job: TraceJob, source: str) -> None:
    pairs = (("min_ps", job.min_ps, "max_ps", job.max_ps),
             ("min_workers", job.min_workers, "max_workers", job.max_workers))
    for low_name, low, high_name, high in pairs:
        if low is not None and high is not None and low > high:
            raise SimulationInputError(source, job.line, f"{low_name} {low} > {high_name} {high}",
                                       f"make {low_name} at most {high_name}")
    if job.mode != "allreduce" and job.max_ps == 0:
        raise SimulationInputError(source, job.line, "max_ps is 0 for a parameter-server job",
                                   "allow at least one PS, or use mode allreduce")

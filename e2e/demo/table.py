"""Pure: TrainingJob objects (as the API returns them) -> rows -> the demo's live rich table.

A row is read from the job's status, with every field optional: a job the operator has not
seen yet shows dashes, not an error. Times are compared with an injected `now`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

FINISHED_PHASES = frozenset({"Succeeded", "Failed", "Invalid"})
PHASE_STYLES = {
    "Succeeded": "bold green",
    "Failed": "bold red",
    "Invalid": "bold red",
    "Resizing": "yellow",
    "Running": "cyan",
    "Probing": "magenta",
    "Queued": "dim",
    "Pending": "dim",
}


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as Kubernetes writes it ("...Z"), or None if absent/malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class JobRow:
    """What the live table shows of one TrainingJob."""

    name: str
    phase: str
    ps: int | None
    workers: int | None
    epoch: float | None
    max_epochs: int | None
    loss: float | None
    eta_seconds: float | None  # predicted seconds until completion, from status.model
    resizes: int

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES


def resize_count(obj: Mapping[str, Any], events_resizes: int | None = None) -> int:
    """Resizes of a job: counted from its events when known, else from the allocation's
    generation (the first generation is the initial allocation, not a resize)."""
    if events_resizes is not None:
        return events_resizes
    allocation = _mapping(_mapping(obj.get("status")).get("allocation"))
    generation = _number(allocation.get("generation"))
    return max(0, int(generation) - 1) if generation is not None else 0


def row_from_object(obj: Mapping[str, Any], now: datetime,
                    events_resizes: int | None = None) -> JobRow:
    """One row from a TrainingJob object; `now` turns the predicted completion into an ETA."""
    metadata = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    allocation = _mapping(status.get("allocation"))
    progress = _mapping(status.get("progress"))
    model = _mapping(status.get("model"))
    ps = _number(allocation.get("ps"))
    workers = _number(allocation.get("workers"))
    max_epochs = _number(_mapping(spec.get("convergence")).get("maxEpochs"))
    completion = parse_time(model.get("estimatedCompletionTime"))
    phase = str(status.get("phase") or "Pending")
    epoch = _number(progress.get("epoch"))
    loss = _number(progress.get("loss"))
    if loss == 0.0 and (epoch is None or epoch < 1):
        loss = None  # the workers report an epoch's mean loss once the first epoch ends
    eta = None
    if completion is not None and phase not in FINISHED_PHASES:
        eta = max(0.0, (completion - now).total_seconds())
    return JobRow(
        name=str(metadata.get("name", "?")),
        phase=phase,
        ps=int(ps) if ps is not None else None,
        workers=int(workers) if workers is not None else None,
        epoch=epoch,
        max_epochs=int(max_epochs) if max_epochs is not None else None,
        loss=loss,
        eta_seconds=eta,
        resizes=resize_count(obj, events_resizes),
    )


def format_duration(seconds: float | None) -> str:
    """12s, 3m05s, 1h02m; a dash when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _epoch(row: JobRow) -> str:
    if row.epoch is None:
        return "-"
    return f"{row.epoch:.1f}" + (f"/{row.max_epochs}" if row.max_epochs else "")


def render_table(rows: Iterable[JobRow], title: str = "TrainingJobs") -> Table:
    """The live table: one line per job, sorted by name."""
    table = Table(title=title, title_justify="left", expand=False)
    for header, justify in (("job", "left"), ("phase", "left"), ("PS", "right"),
                            ("workers", "right"), ("epoch", "right"), ("loss", "right"),
                            ("ETA", "right"), ("resizes", "right")):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in sorted(rows, key=lambda r: r.name):
        table.add_row(
            row.name,
            Text(row.phase, style=PHASE_STYLES.get(row.phase, "")),
            _count(row.ps),
            _count(row.workers),
            _epoch(row),
            "-" if row.loss is None else f"{row.loss:.4f}",
            "done" if row.finished else format_duration(row.eta_seconds),
            str(row.resizes),
        )
    return table

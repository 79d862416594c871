"""Pure: what the demo reports once the jobs are done.

From the final TrainingJob objects and the Kubernetes events: each job's completion time
(creation to its Succeeded/Failed condition), the resizes the operator made and why (its
events' messages), the model fit errors (status.model.fitError), and what the same job would
have taken with its fixed initial allocation (an estimator injected by the caller: the demo
passes the simulator's answer, see e2e.demo.fixed; None when the job could not be simulated),
and, for `--json`, one object with all of it (`summary_json`), each resize's path and pause
from the allocations the demo saw (status.allocation of every generation, `Pause`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from e2e.demo.table import FINISHED_PHASES, _mapping, _number, format_duration, parse_time

TRAININGJOB_KIND = "TrainingJob"
#: Condition types that mark the end of a job (the operator's, per notes/trainingjob.md).
TERMINAL_CONDITIONS = ("Succeeded", "Converged", "Failed")


@dataclass(frozen=True)
class ResizeEvent:
    """One resize the operator recorded as an event on a TrainingJob."""

    job: str
    at: datetime | None
    reason: str
    message: str


def is_resize_reason(reason: str) -> bool:
    """The operator's resize events (Resized, Resizing, ...), not its failures to resize."""
    lowered = reason.lower()
    return lowered.startswith("resiz") and "fail" not in lowered


def resizes_from_events(events: Iterable[Mapping[str, Any]]) -> dict[str, list[ResizeEvent]]:
    """The resize events of every TrainingJob, oldest first, keyed by job name.

    An event repeated by the API server (same reason and message, `count` > 1) is one
    resize per occurrence.
    """
    found: dict[str, list[ResizeEvent]] = {}
    for event in events:
        involved = _mapping(event.get("involvedObject") or event.get("regarding"))
        reason = str(event.get("reason") or "")
        if involved.get("kind") != TRAININGJOB_KIND or not is_resize_reason(reason):
            continue
        at = (parse_time(event.get("lastTimestamp")) or parse_time(event.get("eventTime"))
              or parse_time(_mapping(event.get("metadata")).get("creationTimestamp")))
        count = _number(event.get("count"))
        occurrences = max(1, int(count)) if count is not None else 1
        name = str(involved.get("name", "?"))
        item = ResizeEvent(job=name, at=at, reason=reason,
                           message=str(event.get("message") or event.get("note") or ""))
        found.setdefault(name, []).extend([item] * occurrences)
    for items in found.values():
        items.sort(key=lambda e: (e.at is None, e.at or datetime.min))
    return found


def finished_at(obj: Mapping[str, Any]) -> datetime | None:
    """When the job reached a terminal condition (True), or None if it has not."""
    conditions = _mapping(obj.get("status")).get("conditions")
    if not isinstance(conditions, list):
        return None
    by_type = {str(c.get("type")): c for c in conditions if isinstance(c, Mapping)}
    for kind in TERMINAL_CONDITIONS:
        condition = by_type.get(kind)
        if condition is not None and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def completion_seconds(obj: Mapping[str, Any]) -> float | None:
    """Job completion time: from creation to the terminal condition, in seconds."""
    created = parse_time(_mapping(obj.get("metadata")).get("creationTimestamp"))
    end = finished_at(obj)
    if created is None or end is None:
        return None
    return max(0.0, (end - created).total_seconds())


@dataclass(frozen=True)
class Pause:
    """One resize as status.allocation recorded it: the generation it rolled out, in place
    or by restart (resizeKind), the training time it cost (pauseSeconds) and the time until
    the job trained at the new size (resizeSeconds); None where not measured."""

    generation: int
    kind: str
    pause_seconds: float | None
    resize_seconds: float | None

    @property
    def path(self) -> str:
        return "restart" if self.kind in ("", "Restart") else "in-place"


def pauses_from_allocations(allocations: Iterable[Mapping[str, Any]]) -> tuple[Pause, ...]:
    """Every resize among the allocations a job went through (the newest sighting of each
    generation wins; its first generation is a start, not a resize), oldest first."""
    newest: dict[int, Mapping[str, Any]] = {}
    for allocation in allocations:
        generation = _number(allocation.get("generation"))
        if generation is not None and generation >= 1:
            newest[int(generation)] = allocation
    return tuple(Pause(g, str(a.get("resizeKind") or "Restart"),
                       _number(a.get("pauseSeconds")), _number(a.get("resizeSeconds")))
                 for g, a in sorted(newest.items()))


@dataclass(frozen=True)
class JobOutcome:
    name: str
    phase: str
    jct_seconds: float | None
    resizes: tuple[ResizeEvent, ...]
    loss_fit_error: float | None
    speed_fit_error: float | None
    fixed_seconds: float | None  # the same job on its fixed initial allocation
    #: the operator's measurement of the job's last restart (status.allocation.restartSeconds)
    restart_seconds: float | None = None
    #: every resize's path and pause (`pauses_from_allocations`)
    pauses: tuple[Pause, ...] = ()


FixedEstimator = Callable[[Mapping[str, Any]], float | None]


def outcomes(jobs: Sequence[Mapping[str, Any]], events: Iterable[Mapping[str, Any]],
             fixed_estimator: FixedEstimator,
             allocations: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
             ) -> list[JobOutcome]:
    """One outcome per job, sorted by name; `allocations`: every status.allocation seen
    of each job (for the pauses; the final one is always counted)."""
    resizes = resizes_from_events(events)
    result = []
    for obj in jobs:
        name = str(_mapping(obj.get("metadata")).get("name", "?"))
        status = _mapping(obj.get("status"))
        fit_error = _mapping(_mapping(status.get("model")).get("fitError"))
        result.append(JobOutcome(
            name=name,
            phase=str(status.get("phase") or "Pending"),
            jct_seconds=completion_seconds(obj),
            resizes=tuple(resizes.get(name, ())),
            loss_fit_error=_number(fit_error.get("loss")),
            speed_fit_error=_number(fit_error.get("speed")),
            fixed_seconds=fixed_estimator(obj),
            restart_seconds=_number(_mapping(status.get("allocation")).get("restartSeconds")),
            pauses=pauses_from_allocations([*(allocations or {}).get(name, ()),
                                            _mapping(status.get("allocation"))]),
        ))
    return sorted(result, key=lambda o: o.name)


@dataclass(frozen=True)
class Totals:
    """Average and total JCT of the finished jobs, actual and with fixed allocations.

    The fixed-allocation figures cover the same jobs as the actual ones; when any finished
    job has no fixed estimate, they are None rather than an average of a different set.
    """

    finished: int
    total: int
    avg_jct: float | None
    sum_jct: float | None
    avg_fixed: float | None
    sum_fixed: float | None

    @property
    def elastic_vs_fixed(self) -> float | None:
        """The fixed allocations' simulated total JCT over the measured one (the same jobs,
        so it equals `speedup`)."""
        if self.sum_jct is None or self.sum_fixed is None or self.sum_jct <= 0:
            return None
        return self.sum_fixed / self.sum_jct

    @property
    def speedup(self) -> float | None:
        """Average JCT with fixed allocations divided by the actual one (> 1: Optimus won)."""
        if self.avg_jct is None or self.avg_fixed is None or self.avg_jct <= 0:
            return None
        return self.avg_fixed / self.avg_jct


def totals(results: Sequence[JobOutcome]) -> Totals:
    done = [o for o in results if o.jct_seconds is not None and o.phase in FINISHED_PHASES]
    jcts = [o.jct_seconds for o in done if o.jct_seconds is not None]
    fixed = [o.fixed_seconds for o in done if o.fixed_seconds is not None]
    have_fixed = bool(done) and len(fixed) == len(done)
    return Totals(
        finished=len(done), total=len(results),
        avg_jct=statistics.fmean(jcts) if jcts else None,
        sum_jct=sum(jcts) if jcts else None,
        avg_fixed=statistics.fmean(fixed) if have_fixed else None,
        sum_fixed=sum(fixed) if have_fixed else None,
    )


def _error(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_summary(results: Sequence[JobOutcome], fixed_method: str) -> Group:
    """The summary: a table of outcomes, the resizes and why, and the comparison."""
    table = Table(title="Summary", title_justify="left")
    for header in ("job", "phase", "completion", "resizes", "last restart", "loss fit err",
                   "speed fit err", "fixed alloc (sim.)"):
        table.add_column(header, justify="left" if header in ("job", "phase") else "right")
    for o in results:
        table.add_row(o.name, o.phase, format_duration(o.jct_seconds), str(len(o.resizes)),
                      format_duration(o.restart_seconds), _error(o.loss_fit_error),
                      _error(o.speed_fit_error), format_duration(o.fixed_seconds))
    parts: list[Any] = [table]
    lines = Text()
    for o in results:
        for event in o.resizes:
            when = event.at.strftime("%H:%M:%S") if event.at else "--:--:--"
            lines.append(f"  {when} {o.name}: ", style="bold")
            lines.append(f"{event.reason}: {event.message}\n")
    parts.append(Text("Resizes and why (from the events):", style="bold"))
    parts.append(lines if lines.plain else Text("  none\n"))
    t = totals(results)
    verdict = Text(f"{t.finished}/{t.total} jobs finished; average JCT "
                   f"{format_duration(t.avg_jct)}, total {format_duration(t.sum_jct)}")
    if t.avg_fixed is not None:
        verdict.append(f"; with fixed initial allocations (simulated): average "
                       f"{format_duration(t.avg_fixed)}, total {format_duration(t.sum_fixed)}")
        if t.speedup is not None:
            verdict.append(f" -> {t.speedup:.2f}x", style="bold")
    verdict.append(f"\nFixed-allocation estimate: {fixed_method}")
    parts.append(verdict)
    return Group(*parts)


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def summary_json(results: Sequence[JobOutcome]) -> dict[str, Any]:
    """What `python -m e2e.demo --json` prints: per job its phase, completion time, fixed
    allocation estimate, resizes and their pauses; the totals and "elastic_vs_fixed" (the
    fixed allocations' simulated total JCT over the elastic run's measured total)."""
    t = totals(results)
    return {
        "jobs": {o.name: {
            "phase": o.phase,
            "completion_s": _rounded(o.jct_seconds),
            "fixed_s": _rounded(o.fixed_seconds),
            "resizes": len(o.pauses),
            "pauses": [{"generation": p.generation, "path": p.path, "kind": p.kind,
                        "pause_s": p.pause_seconds, "resize_s": p.resize_seconds}
                       for p in o.pauses],
        } for o in results},
        "total_jct_s": _rounded(t.sum_jct),
        "fixed_total_jct_s": _rounded(t.sum_fixed),
        "elastic_vs_fixed": _rounded(t.elastic_vs_fixed, 3),
    }

"""The demo's summary: completion times, resizes from events, totals, the comparison
(the fixed-allocation simulation itself: test_demo_fixed.py)."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from e2e.demo.summary import (
    JobOutcome,
    completion_seconds,
    is_resize_reason,
    outcomes,
    render_summary,
    resizes_from_events,
    totals,
)


def event(job: str, reason: str, message: str, at: str, kind: str = "TrainingJob",
          count: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"involvedObject": {"kind": kind, "name": job}, "reason": reason,
                             "message": message, "lastTimestamp": at}
    if count is not None:
        found["count"] = count
    return found


def finished_job(name: str, created: str, ended: str | None, phase: str = "Succeeded",
                 condition: str = "Succeeded", **status: Any) -> dict[str, Any]:
    conditions = [{"type": "Scheduled", "status": "True",
                   "lastTransitionTime": created}]
    if ended is not None:
        conditions.append({"type": condition, "status": "True", "lastTransitionTime": ended})
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"mode": "ps-sync", "globalBatchSize": 64},
            "status": {"phase": phase, "conditions": conditions, **status}}


def test_resize_events_are_grouped_by_job_oldest_first() -> None:
    events = [
        event("a", "Resized", "1x2 -> 1x1", "2026-11-22T08:03:00Z"),
        event("a", "Resized", "1x1 -> 1x2", "2026-11-22T08:01:00Z"),
        event("b", "Resizing", "1x1 -> 2x3", "2026-11-22T08:02:00Z", count=2),
        event("a", "ResizeFailed", "checkpoint timed out", "2026-11-22T08:04:00Z"),
        event("a", "Scheduled", "placed", "2026-11-22T08:00:00Z"),
        event("a-g1-worker-0", "Resized", "pod event", "2026-11-22T08:00:00Z", kind="Pod"),
    ]
    found = resizes_from_events(events)
    assert [e.message for e in found["a"]] == ["1x1 -> 1x2", "1x2 -> 1x1"]
    assert len(found["b"]) == 2  # an event the API server counted twice
    assert set(found) == {"a", "b"}


@pytest.mark.parametrize(("reason", "is_resize"), [
    ("Resize", True), ("Resized", True), ("Resizing", True), ("ResizeFailed", False),
    ("ResizingFailed", False), ("Scheduled", False), ("PodFailed", False),
])
def test_which_reasons_are_resizes(reason: str, is_resize: bool) -> None:
    assert is_resize_reason(reason) is is_resize


def test_completion_is_creation_to_the_terminal_condition() -> None:
    obj = finished_job("a", "2026-11-22T08:00:00Z", "2026-11-22T08:03:30Z")
    assert completion_seconds(obj) == 210
    assert completion_seconds(finished_job("b", "2026-11-22T08:00:00Z", None,
                                           phase="Running")) is None
    failed = finished_job("c", "2026-11-22T08:00:00Z", "2026-11-22T08:00:10Z",
                          phase="Failed", condition="Failed")
    assert completion_seconds(failed) == 10


def test_outcomes_and_totals_compare_the_same_jobs() -> None:
    jobs = [
        finished_job("b", "2026-11-22T08:00:00Z", "2026-11-22T08:02:00Z",
                     model={"fitError": {"loss": 0.02, "speed": 0.11}}),
        finished_job("a", "2026-11-22T08:00:00Z", "2026-11-22T08:04:00Z"),
    ]
    fixed = {"a": 300.0, "b": 180.0}
    results = outcomes(jobs, [event("a", "Resized", "1x1 -> 1x3", "2026-11-22T08:01:00Z")],
                       lambda obj: fixed[obj["metadata"]["name"]])
    assert [o.name for o in results] == ["a", "b"]
    assert (results[1].loss_fit_error, results[1].speed_fit_error) == (0.02, 0.11)
    assert len(results[0].resizes) == 1 and not results[1].resizes
    t = totals(results)
    assert (t.finished, t.total, t.avg_jct, t.sum_jct) == (2, 2, 180.0, 360.0)
    assert (t.avg_fixed, t.sum_fixed) == (240.0, 480.0)
    assert t.speedup == pytest.approx(240 / 180)


def test_totals_refuse_to_compare_different_sets_of_jobs() -> None:
    results = [JobOutcome("a", "Succeeded", 100.0, (), None, None, 150.0),
               JobOutcome("b", "Succeeded", 50.0, (), None, None, None),
               JobOutcome("c", "Running", None, (), None, None, 10.0)]
    t = totals(results)
    assert (t.finished, t.avg_jct, t.avg_fixed, t.speedup) == (2, 75.0, None, None)


def test_the_summary_renders_jobs_resizes_and_the_comparison() -> None:
    results = [JobOutcome("a", "Succeeded", 100.0, tuple(resizes_from_events(
        [event("a", "Resized", "1x1 -> 1x3: gain 40 s, cost 10 s", "2026-11-22T08:01:00Z")]
    )["a"]), 0.01, 0.2, 150.0, restart_seconds=17.0)]
    console = Console(width=140, record=True, color_system=None)
    console.print(render_summary(results, "the method"))
    text = console.export_text()
    assert "last restart" in text and "17s" in text
    assert "1x1 -> 1x3: gain 40 s, cost 10 s" in text
    assert "1.50x" in text and "the method" in text and "0.200" in text

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


def test_the_json_summary_has_each_jobs_completion_resizes_pauses_and_the_ratio() -> None:
    import json

    from e2e.demo.summary import summary_json
    # recorded: the allocations the demo's polls saw (one generation seen twice, the pause
    # measured in the second sighting), the final objects and the fixed estimates
    seen = {"a": [
        {"generation": 0, "workers": 1},
        {"generation": 1, "workers": 3, "resizeKind": "InPlaceWorkerChange"},
        {"generation": 1, "workers": 3, "resizeKind": "InPlaceWorkerChange",
         "pauseSeconds": 0.42, "resizeSeconds": 6.1},
    ]}
    jobs = [
        finished_job("a", "2026-11-22T08:00:00Z", "2026-11-22T08:04:00Z", allocation={
            "generation": 2, "workers": 2, "resizeKind": "Restart", "pauseSeconds": 38.0,
            "resizeSeconds": 38.0, "restartSeconds": 38.0}),
        finished_job("b", "2026-11-22T08:00:00Z", "2026-11-22T08:02:00Z",
                     allocation={"generation": 0, "workers": 1}),
    ]
    fixed = {"a": 300.0, "b": 180.0}
    results = outcomes(jobs, [], lambda obj: fixed[obj["metadata"]["name"]], seen)
    out = json.loads(json.dumps(summary_json(results)))
    assert set(out) == {"jobs", "total_jct_s", "fixed_total_jct_s", "elastic_vs_fixed"}
    assert out["jobs"]["a"] == {
        "phase": "Succeeded", "completion_s": 240.0, "fixed_s": 300.0, "resizes": 2,
        "pauses": [
            {"generation": 1, "path": "in-place", "kind": "InPlaceWorkerChange",
             "pause_s": 0.42, "resize_s": 6.1},
            {"generation": 2, "path": "restart", "kind": "Restart", "pause_s": 38.0,
             "resize_s": 38.0}]}
    assert out["jobs"]["b"]["resizes"] == 0 and out["jobs"]["b"]["pauses"] == []
    assert (out["total_jct_s"], out["fixed_total_jct_s"]) == (360.0, 480.0)
    # the summary table's ratio: the same jobs, so total over total is its average ratio
    assert out["elastic_vs_fixed"] == pytest.approx(totals(results).speedup, abs=1e-3)
    assert out["elastic_vs_fixed"] == pytest.approx(480 / 360, abs=1e-3)


def test_the_json_summary_has_no_ratio_without_every_fixed_estimate() -> None:
    from e2e.demo.summary import summary_json
    results = [JobOutcome("a", "Succeeded", 100.0, (), None, None, None)]
    out = summary_json(results)
    assert out["elastic_vs_fixed"] is None and out["fixed_total_jct_s"] is None


def test_the_demo_takes_json() -> None:
    from e2e.demo.run import parse_args
    assert parse_args(["--json"]).json and not parse_args([]).json

"""The demo's summary: completion times, resizes from events, totals, fixed-allocation estimate."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus.models.errors import ModelError
from optimus.models.speed import samples_per_second
from rich.console import Console

from e2e.demo.fixed import (
    Observation,
    fixed_allocation_seconds,
    initial_allocation,
    measured_speeds,
    rate_from_status,
    speed_params_from_status,
)
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
    )["a"]), 0.01, 0.2, 150.0)]
    console = Console(width=140, record=True, color_system=None)
    console.print(render_summary(results, "the method"))
    text = console.export_text()
    assert "1x1 -> 1x3: gain 40 s, cost 10 s" in text
    assert "1.50x" in text and "the method" in text and "0.200" in text


# ---- the fixed-allocation estimate --------------------------------------------------------

def timeline(*points: tuple[float, str, int | None, int | None]) -> list[Observation]:
    return [Observation(*p) for p in points]


def linear_rate(ps: int, workers: int) -> float:
    return float(workers)


def test_a_job_that_never_resized_takes_the_same_time() -> None:
    seen = timeline((2, "Pending", None, None), (10, "Running", 1, 2), (60, "Running", 1, 2))
    assert fixed_allocation_seconds(seen, linear_rate, end=100) == 100


def test_time_on_a_faster_allocation_counts_more_and_resizing_counts_nothing() -> None:
    # 10 s starting, 20 s at w=1, 5 s resizing, 30 s at w=3: fixed = 10 + 20 + 90.
    seen = timeline((0, "Pending", None, None), (10, "Running", 1, 1),
                    (30, "Resizing", 1, 1), (35, "Running", 1, 3))
    assert fixed_allocation_seconds(seen, linear_rate, end=65) == 120
    assert initial_allocation(seen) == (1, 1)


def test_no_estimate_without_training_or_a_usable_model() -> None:
    assert fixed_allocation_seconds(timeline((0, "Queued", None, None)), linear_rate) is None
    assert fixed_allocation_seconds(timeline((0, "Running", 1, 1)), lambda p, w: 0.0) is None
    assert fixed_allocation_seconds(timeline((0, "Running", 1, 1), (5, "Running", 1, 2)),
                                    lambda p, w: math.nan if w == 2 else 1.0) is None


@given(st.lists(st.tuples(st.floats(0.1, 100), st.integers(1, 8)), min_size=1, max_size=20))
def test_growing_never_makes_the_fixed_world_faster(spans: list[tuple[float, int]]) -> None:
    """With a speed that grows with w and a job that starts at w = 1, the fixed-allocation
    estimate is at least the actual time spent training."""
    t, points = 0.0, list[Observation]()
    for span, workers in spans:
        points.append(Observation(t, "Running", 1, 1 if not points else workers))
        t += span
    estimate = fixed_allocation_seconds(points, linear_rate, end=t)
    assert estimate is not None and estimate >= t - 1e-6


def test_the_rate_comes_from_the_fitted_speed_model_in_status() -> None:
    obj = finished_job("a", "2026-11-22T08:00:00Z", None, phase="Running",
                       model={"speed": {"mode": "ps-sync",
                                        "theta": [0.001, 0.01, 0.002, 0.003, 0.001]}})
    params = speed_params_from_status(obj)
    # The operator's convention: sync speeds are job steps/s of the whole global batch.
    assert params is not None and params.batch_scope == "per-worker" and params.batch_size == 64
    rate = rate_from_status(obj)
    assert rate is not None and rate(1, 2) == pytest.approx(samples_per_second(params, 1, 2))
    obj["status"]["model"]["speed"]["theta"] = ["x"]
    assert rate_from_status(obj) is None
    del obj["status"]["model"]
    assert rate_from_status(obj) is None


def test_measured_speeds_win_over_the_model_where_the_job_ran() -> None:
    obj = finished_job("a", "2026-11-22T08:00:00Z", None, phase="Running",
                       model={"speedSamples": [[1, 1, 2.0], [1, 1, 4.0], [1, 2, 5.0],
                                               [1, "x", 9.0], [0, 0, -1]]})
    assert measured_speeds(obj) == {(1, 1): 3.0, (1, 2): 5.0}
    rate = rate_from_status(obj)
    assert rate is not None
    assert (rate(1, 1), rate(1, 2)) == (3.0 * 64, 5.0 * 64)  # job steps of the global batch
    with pytest.raises(ModelError):
        rate(2, 3)  # neither measured nor modelled
    seen = timeline((0, "Running", 1, 1), (10, "Running", 1, 2))
    assert fixed_allocation_seconds(seen, rate, end=20) == pytest.approx(10 + 10 * 5 / 3)
    assert fixed_allocation_seconds(timeline((0, "Running", 1, 1), (10, "Running", 2, 3)),
                                    rate, end=20) is None

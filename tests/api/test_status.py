"""Conditions, the derived phase, the pure status transitions and the status diff."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus.api import conditions as c
from optimus.api.status import (
    MAX_LOSS_SAMPLES,
    MAX_SPEED_SAMPLES,
    AllocationStatus,
    ModelStatus,
    ProgressStatus,
    TrainingJobStatus,
    merge_loss_samples,
    merge_speed_sample,
    parse_status,
    status_patch,
    with_allocation,
    with_condition,
    with_progress,
)

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def test_setting_a_condition_twice_changes_nothing() -> None:
    status, changed = with_condition(TrainingJobStatus(), c.VALID, "True", c.REASON_SPEC_VALID,
                                     "ok", now=T0, generation=1)
    assert changed
    again, changed = with_condition(status, c.VALID, "True", c.REASON_SPEC_VALID, "ok",
                                    now=T1, generation=1)
    assert not changed
    assert again is status


def test_transition_time_moves_only_when_status_flips() -> None:
    status, _ = with_condition(TrainingJobStatus(), c.METRICS, "True",
                               c.REASON_METRICS_OBSERVED, "", now=T0, generation=1)
    status, changed = with_condition(status, c.METRICS, "True", c.REASON_METRICS_OBSERVED,
                                     "new message", now=T1, generation=1)
    assert changed
    assert c.find(status.conditions, c.METRICS).last_transition_time == T0  # type: ignore[union-attr]
    status, _ = with_condition(status, c.METRICS, "False", c.REASON_METRICS_UNAVAILABLE,
                               "down", now=T1, generation=1)
    assert c.find(status.conditions, c.METRICS).last_transition_time == T1  # type: ignore[union-attr]


PHASE_TABLE = [
    ([], c.PENDING),
    ([(c.VALID, "False", c.REASON_INVALID_SPEC)], c.INVALID),
    ([(c.VALID, "True", c.REASON_SPEC_VALID)], c.PENDING),
    ([(c.VALID, "True", ""), (c.SCHEDULED, "False", c.REASON_QUEUED)], c.QUEUED),
    ([(c.VALID, "True", ""), (c.SCHEDULED, "True", c.REASON_PROBING)], c.PROBING),
    ([(c.VALID, "True", ""), (c.SCHEDULED, "True", c.REASON_ALLOCATED)], c.RUNNING),
    ([(c.VALID, "True", ""), (c.SCHEDULED, "True", c.REASON_ALLOCATED),
      (c.RESIZING, "True", c.REASON_RESIZE)], c.RESIZING_PHASE),
    ([(c.VALID, "True", ""), (c.SCHEDULED, "True", c.REASON_ALLOCATED),
      (c.RESIZING, "True", c.REASON_RESIZE), (c.SUCCEEDED, "True", c.REASON_CONVERGED)],
     c.SUCCEEDED_PHASE),
    ([(c.VALID, "True", ""), (c.SUCCEEDED, "False", ""),
      (c.FAILED, "True", c.REASON_RESTART_LIMIT)], c.FAILED_PHASE),
    ([(c.VALID, "True", ""), (c.METRICS, "False", c.REASON_METRICS_UNAVAILABLE),
      (c.SCHEDULED, "True", c.REASON_ALLOCATED)], c.RUNNING),
]


@pytest.mark.parametrize(("conds", "phase"), PHASE_TABLE)
def test_phase_is_derived_from_conditions(conds: list[tuple[str, str, str]], phase: str) -> None:
    status = TrainingJobStatus()
    for type_, value, reason in conds:
        status, _ = with_condition(status, type_, value, reason, "", now=T0,  # type: ignore[arg-type]
                                   generation=1)
    assert status.phase == phase
    assert c.derive_phase(status.conditions) == phase


def _full_status() -> TrainingJobStatus:
    status, _ = with_condition(TrainingJobStatus(), c.VALID, "True", c.REASON_SPEC_VALID, "",
                               now=T0, generation=3)
    return replace(
        status,
        allocation=AllocationStatus(2, 3, 4, ("n1", "n2"), ("n1", "n1", "n2"), "probe", T0, T1),
        model=ModelStatus(loss=(0.5, 1.0, 0.1), speed_mode="ps-sync",
                          speed_theta=(0.1, 0.2, 0.0, 0.0, 0.01),
                          loss_samples=((1.0, 0.9), (2.0, 0.5)),
                          speed_samples=((1, 1, 3.0), (1, 2, 5.0)), samples_per_epoch=600.0,
                          remaining_epochs=4.0, converged_epoch=6.0, confidence=0.8,
                          estimated_completion_time=T1, fit_error_loss=0.01,
                          fit_error_speed=0.05),
        progress=ProgressStatus(2.5, 40, 0.5, 7.5, T1),
        restarts=1,
        selector="optimus.dev/job=mnist,optimus.dev/role=worker",
    )


def test_status_round_trips_through_its_dict() -> None:
    status = _full_status()
    assert parse_status(status.to_dict()) == status
    assert status.allocation is not None and status.allocation.nodes == ("n1", "n2")


def test_lenient_parsing_drops_garbage() -> None:
    parsed = parse_status({"conditions": [{"status": "True"}, "x"], "allocation": {"ps": "?"},
                           "model": {"lossSamples": [[1, "a"], [2, 0.5]]}, "progress": 3})
    assert parsed.conditions == ()
    assert parsed.allocation is None
    assert parsed.model.loss_samples == ((2.0, 0.5),)
    assert parsed.progress is None


def test_patch_holds_only_changed_fields() -> None:
    status = _full_status()
    raw = status.to_dict()
    assert status_patch(raw, status) is None
    moved, changed = with_progress(status, ProgressStatus(3.0, 50, 0.4, 7.0, T1))
    assert changed
    assert set(status_patch(raw, moved) or {}) == {"progress"}
    dropped, changed = with_allocation(status, None)
    assert changed
    assert status_patch(raw, dropped) == {"allocation": None}
    assert status_patch({"kopf": {"x": 1}, **raw}, status) is None


def test_patch_from_nothing_writes_everything() -> None:
    patch = status_patch(None, TrainingJobStatus())
    assert patch is not None and patch["phase"] == c.PENDING


@given(st.lists(st.tuples(st.integers(0, 1000).map(float), st.floats(0, 10)), max_size=400),
       st.lists(st.tuples(st.integers(0, 1000).map(float), st.floats(0, 10)), max_size=50))
def test_loss_history_is_sorted_unique_and_bounded(
    old: list[tuple[float, float]], new: list[tuple[float, float]]
) -> None:
    merged = merge_loss_samples(tuple(old), new)
    epochs = [e for e, _ in merged]
    assert epochs == sorted(set(epochs))
    assert len(merged) <= MAX_LOSS_SAMPLES
    if new:
        assert (new[-1][0], dict(new)[new[-1][0]]) in merged or len(set(epochs)) == 200


@given(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8), st.floats(0.1, 10)),
                max_size=80))
def test_speed_history_keeps_one_point_per_configuration(
    points: list[tuple[int, int, float]]
) -> None:
    merged: tuple[tuple[int, int, float], ...] = ()
    for p, w, s in points:
        merged = merge_speed_sample(merged, p, w, s)
        assert merged[-1] == (p, w, s)
    configs = [(p, w) for p, w, _ in merged]
    assert len(configs) == len(set(configs)) <= MAX_SPEED_SAMPLES

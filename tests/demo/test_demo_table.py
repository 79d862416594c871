"""The demo's live table: rows read from raw TrainingJob objects, rendering, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from e2e.demo.table import (
    JobRow,
    format_duration,
    parse_time,
    render_table,
    resize_count,
    row_from_object,
)

NOW = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)


def job(name: str = "mnist-mlp", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "optimus.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name, "creationTimestamp": "2026-11-22T07:55:00Z"},
        "spec": {"convergence": {"maxEpochs": 12}},
        "status": status,
    }


def test_a_running_job_fills_every_column() -> None:
    obj = job(phase="Running",
              allocation={"ps": 1, "workers": 3, "generation": 3},
              progress={"epoch": 4.25, "step": 120, "loss": 0.31234},
              model={"estimatedCompletionTime": "2026-11-22T08:02:05Z"})
    row = row_from_object(obj, NOW)
    assert row == JobRow(name="mnist-mlp", phase="Running", ps=1, workers=3, epoch=4.25,
                         max_epochs=12, loss=0.31234, eta_seconds=125.0, resizes=2)
    assert not row.finished


def test_a_job_the_operator_has_not_seen_shows_dashes() -> None:
    obj = job()
    del obj["status"]
    row = row_from_object(obj, NOW)
    assert (row.phase, row.ps, row.workers, row.epoch, row.loss, row.eta_seconds,
            row.resizes) == ("Pending", None, None, None, None, None, 0)


@pytest.mark.parametrize("bad", ["", "yesterday", 42, None, "2026-13-45T00:00:00Z"])
def test_malformed_times_are_unknown_not_errors(bad: object) -> None:
    assert parse_time(bad) is None
    obj = job(phase="Running", model={"estimatedCompletionTime": bad})
    assert row_from_object(obj, NOW).eta_seconds is None


def test_non_numbers_in_status_are_ignored() -> None:
    obj = job(phase="Running", allocation={"ps": "two", "workers": True},
              progress={"epoch": float("nan"), "loss": "low"})
    row = row_from_object(obj, NOW)
    assert (row.ps, row.workers, row.epoch, row.loss) == (None, None, None, None)


def test_an_eta_in_the_past_is_zero_and_a_finished_job_has_none() -> None:
    past = {"estimatedCompletionTime": "2026-11-22T07:59:00Z"}
    assert row_from_object(job(phase="Running", model=past), NOW).eta_seconds == 0.0
    done = row_from_object(job(phase="Succeeded", model=past), NOW)
    assert done.finished and done.eta_seconds is None


def test_resizes_come_from_events_when_known_else_from_the_generation() -> None:
    obj = job(allocation={"generation": 4})
    assert resize_count(obj) == 3
    assert resize_count(obj, events_resizes=1) == 1
    assert resize_count(job(allocation={"generation": 0})) == 0


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (float("inf"), "-"), (0, "0s"), (59.4, "59s"), (60, "1m00s"),
    (125, "2m05s"), (3600, "1h00m"), (7322, "2h02m"),
])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=1e6))
def test_format_duration_never_fails_and_is_short(seconds: float) -> None:
    assert 1 <= len(format_duration(seconds)) <= 8


def test_the_rendered_table_has_every_job_and_column_sorted_by_name() -> None:
    rows = [
        row_from_object(job("tiny-cnn", phase="Queued"), NOW),
        row_from_object(job("digits", phase="Succeeded", allocation={"ps": 1, "workers": 2},
                            progress={"epoch": 12.0, "loss": 0.05}), NOW),
    ]
    console = Console(width=120, record=True, color_system=None)
    console.print(render_table(rows))
    text = console.export_text()
    for header in ("job", "phase", "PS", "workers", "epoch", "loss", "ETA", "resizes"):
        assert header in text
    assert text.index("digits") < text.index("tiny-cnn")
    assert "12.0/12" in text and "0.0500" in text and "done" in text


def test_eta_is_relative_to_the_injected_now() -> None:
    obj = job(phase="Running", model={"estimatedCompletionTime": "2026-11-22T08:10:00Z"})
    assert row_from_object(obj, NOW).eta_seconds == 600
    later = NOW + timedelta(minutes=5)
    assert row_from_object(obj, later).eta_seconds == 300


def test_a_zero_loss_before_the_first_epoch_ends_is_unknown() -> None:
    early = job(phase="Running", progress={"epoch": 0.4, "loss": 0.0})
    assert row_from_object(early, NOW).loss is None
    later = job(phase="Running", progress={"epoch": 1.2, "loss": 0.0})
    assert row_from_object(later, NOW).loss == 0.0

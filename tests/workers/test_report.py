"""optimus_worker.report, the lines a user's own script adds: the same series the
library's workers export, and nothing at all outside a TrainingJob's pod."""

from __future__ import annotations

from dataclasses import replace

import pytest
from optimus_worker import contract, report
from prometheus_client import generate_latest

ENV = contract.PodEnv(
    job="mine", namespace="ml", role="worker", rank=1, num_ps=0, num_workers=2,
    mode="allreduce", rendezvous="mine-g0-worker-0.mine.ml.svc:29500",
    checkpoint_dir="/ckpt/mine", generation=3, metrics_port=9400, control_port=9401,
    checkpoint_interval_steps=50, task="", global_batch_size=64, max_epochs=5)


def _series(reporter: report.Reporter) -> dict[str, float]:
    """name{job,...} -> value of the reporter's exported samples, by metric name."""
    values: dict[str, float] = {}
    for family in reporter.metrics.registry.collect():
        for sample in family.samples:
            if sample.labels.get(contract.LABEL_JOB) == "mine" and not sample.name.endswith(
                    ("_created", "_bucket", "_count", "_sum")):
                values[sample.name] = sample.value
                assert sample.labels[contract.LABEL_GENERATION] == "3"
                assert sample.labels[contract.LABEL_RANK] == "1"
    return values


@pytest.mark.parametrize("per_pod", [1, 4])
def test_a_report_updates_the_series_the_operator_reads(per_pod: int) -> None:
    reporter = report.Reporter(replace(ENV, local_world_size=per_pod), serve=False)
    reporter.report(samples=32, loss=1.5, epoch=0.25)
    reporter.report(samples=32, loss=1.25, epoch=0.5, steps=2)
    reporter.checkpointed(40)
    series = _series(reporter)
    assert series[f"{contract.METRIC_SAMPLES}_total"] == 64 * per_pod
    assert series[f"{contract.METRIC_STEPS}_total"] == 3
    assert series[contract.METRIC_EPOCH] == 0.5
    assert series[contract.METRIC_LOSS] == 1.25
    assert series[contract.METRIC_CHECKPOINT_STEP] == 40
    assert b"optimus_worker_training_loss" in generate_latest(reporter.metrics.registry)


@pytest.mark.parametrize("call", [{"samples": -1}, {"samples": 1, "steps": -1},
                                  {"samples": 1, "epoch": -0.5}])
def test_bad_reports_are_refused(call: dict[str, float]) -> None:
    reporter = report.Reporter(ENV, serve=False)
    with pytest.raises(ValueError, match="report"):
        reporter.report(**call)  # type: ignore[arg-type]


def test_outside_a_trainingjob_reporting_does_nothing(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    for name in ENV.to_env():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(report, "_reporter", None)
    monkeypatch.setattr(report, "_disabled", False)
    report.report(samples=10, loss=1.0, epoch=0.1)
    report.checkpointed(5)
    assert report.reporter() is None
    assert "reporting off" in capsys.readouterr().err

"""The operator's own metrics: names from names.py, per-job series that go away with the
job, and phase counts that cover every phase."""

from __future__ import annotations

from optimus.api.conditions import PHASES
from optimus.metrics import names
from optimus.metrics.exporter import JobGauges, OperatorMetrics
from prometheus_client import generate_latest


def _text(metrics: OperatorMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_series_use_the_shared_names() -> None:
    metrics = OperatorMetrics()
    metrics.step_duration("fit", 0.01)
    metrics.round_done("ok")
    metrics.resized("ml", "a")
    metrics.prometheus_failed()
    metrics.set_phases(["Running", "Running", "Queued"])
    metrics.set_cluster_gpus(3, 8)
    metrics.set_jobs({("ml", "a"): JobGauges(ps=1, workers=3, gpus=3, remaining_seconds=60,
                                             fit_error_loss=0.01)})
    text = _text(metrics)
    for name in (names.OP_ROUND_SECONDS + "_bucket", names.OP_ROUNDS + "_total",
                 names.OP_RESIZES + "_total", names.OP_PROM_FAILURES + "_total",
                 names.OP_JOBS_BY_PHASE, names.OP_CLUSTER_GPUS, names.OP_ALLOCATED_WORKERS,
                 names.OP_REMAINING_SECONDS, names.OP_FIT_ERROR):
        assert name in text, name
    assert f'{names.OP_JOBS_BY_PHASE}{{phase="Running"}} 2.0' in text
    assert all(f'phase="{phase}"' in text for phase in PHASES)
    assert f'{names.OP_CLUSTER_GPUS}{{state="free"}} 5.0' in text


def test_job_series_disappear_with_the_job() -> None:
    metrics = OperatorMetrics()
    metrics.set_jobs({("ml", "a"): JobGauges(ps=1, workers=1, remaining_seconds=5)})
    metrics.set_jobs({("ml", "b"): JobGauges(ps=1, workers=2)})
    text = _text(metrics)
    assert 'job="a"' not in text
    assert f'{names.OP_ALLOCATED_WORKERS}{{job="b",namespace="ml"}} 2.0' in text
    assert f'{names.OP_REMAINING_SECONDS}{{' not in text


def test_the_restart_cost_in_use_is_exported() -> None:
    metrics = OperatorMetrics()
    metrics.restart_cost(17.5)
    assert f"{names.OP_RESTART_COST} 17.5" in _text(metrics)

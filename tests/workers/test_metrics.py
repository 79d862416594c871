"""A task's series: relabelled after a resize in place, the old generation's series gone."""

from __future__ import annotations

from optimus_worker import contract
from optimus_worker.metrics import TaskMetrics


def _series(metrics: TaskMetrics) -> dict[tuple[str, str, str], float]:
    return {(s.name, s.labels[contract.LABEL_RANK], s.labels[contract.LABEL_GENERATION]): s.value
            for family in metrics.registry.collect() for s in family.samples
            if s.name in (contract.METRIC_EPOCH, contract.METRIC_CHECKPOINT_STEP,
                          f"{contract.METRIC_STEPS}_total")}


def test_relabel_moves_every_series_to_the_new_rank_and_generation() -> None:
    env = contract.PodEnv(
        job="j", namespace="n", role="worker", rank=2, num_ps=0, num_workers=3,
        mode="allreduce", rendezvous="127.0.0.1:1", checkpoint_dir="/c", generation=4,
        metrics_port=0, control_port=0, checkpoint_interval_steps=5, task="mlp",
        global_batch_size=8, max_epochs=1)
    metrics = TaskMetrics(env)
    metrics.steps.inc(3)
    metrics.epoch.set(1.5)
    metrics.checkpoint_step.set(40)
    metrics.relabel(1, 5)
    metrics.steps.inc()
    assert _series(metrics) == {
        (f"{contract.METRIC_STEPS}_total", "1", "5"): 1.0,  # a new generation counts anew
        (contract.METRIC_EPOCH, "1", "5"): 1.5,
        (contract.METRIC_CHECKPOINT_STEP, "1", "5"): 40.0,
    }

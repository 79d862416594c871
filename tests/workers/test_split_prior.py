"""The white-box speed prior on real workers: the step split measured by a ps-sync job's
processes at one configuration predicts the measured speed of another within 20%.

Real PS and worker processes (optimus_worker.local on 127.0.0.1) train the shipped `mlp`
task with emulated accelerator time per sample, as the local cluster's GPU nodes set it
(optimus_worker.emulation): configuration A runs, its speed and the split its processes
export (compute, communication, bytes; the PS's update) are read from their metrics, the
operator's own prior (optimus.round.knowledge.white_box_prior) predicts configuration B,
then B runs and is measured. About 25 s on 2 cores.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest
from optimus.models import StepSplit, predict_speed
from optimus.round.knowledge import white_box_prior
from optimus_worker import contract
from optimus_worker.local import LocalJob
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.processes
BATCH = 64  # the global batch: each of w workers computes 64/w samples a step
SECONDS_PER_SAMPLE = 0.003  # emulated accelerator time: 192 ms a step on one worker
WARM_UP_STEPS = 4
WINDOW_S = 4.0
A, B = (1, 1), (1, 4)


def _scrape(port: int) -> dict[tuple[str, str], float]:
    """(series name, phase or "") -> value, summed over the task's series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, sample.labels.get(contract.LABEL_PHASE, ""))
            values[key] = values.get(key, 0.0) + sample.value
    return values


def _per_event(before: Mapping[tuple[str, str], float],
               after: Mapping[tuple[str, str], float], phase: str) -> float:
    name = contract.METRIC_STEP_SECONDS
    count = after[(f"{name}_count", phase)] - before[(f"{name}_count", phase)]
    assert count > 0, f"no {phase} phase measured"
    return (after[(f"{name}_sum", phase)] - before[(f"{name}_sum", phase)]) / count


def _measure(tmp_path: Path, ps: int, workers: int) -> tuple[float, StepSplit]:
    """Job steps per second at (ps, workers) after a warm-up, and the mean split of a step
    of the chief and the PS over the same window."""
    job = LocalJob(task="mlp", mode="ps-sync", num_ps=ps, num_workers=workers, epochs=1,
                   checkpoint_dir=tmp_path / f"ckpt-{ps}-{workers}", global_batch_size=BATCH,
                   checkpoint_interval=10_000, log_dir=tmp_path / f"logs-{ps}-{workers}",
                   extra_env={contract.ENV_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE:
                              str(SECONDS_PER_SAMPLE)})
    job.start()
    try:
        chief, server = job.process("worker", 0), job.process("ps", 0)
        first = job.wait_step(WARM_UP_STEPS, timeout=60)["step"]
        started = time.monotonic()
        worker_before, ps_before = _scrape(chief.metrics_port), _scrape(server.metrics_port)
        time.sleep(WINDOW_S)
        status = job.wait_until(lambda s: s is not None, timeout=10)
        assert status is not None
        elapsed = time.monotonic() - started
        worker_after, ps_after = _scrape(chief.metrics_port), _scrape(server.metrics_port)
    finally:
        job.stop()
    steps = worker_after[(f"{contract.METRIC_STEPS}_total", "")] - worker_before[
        (f"{contract.METRIC_STEPS}_total", "")]
    assert steps >= 5 and status["step"] > first, "the job barely stepped"
    moved = worker_after[(f"{contract.METRIC_STEP_BYTES}_total", "")] - worker_before[
        (f"{contract.METRIC_STEP_BYTES}_total", "")]
    split = StepSplit(
        compute_seconds=_per_event(worker_before, worker_after, contract.PHASE_COMPUTE),
        communication_seconds=_per_event(worker_before, worker_after,
                                         contract.PHASE_COMMUNICATION),
        bytes_per_step=moved / steps,
        update_seconds=_per_event(ps_before, ps_after, contract.PHASE_UPDATE))
    # ps-sync: every worker steps once per job step, so the chief's rate is the job's
    return steps / elapsed, split


def test_the_split_of_one_configuration_predicts_another_within_20_percent(
        tmp_path: Path) -> None:
    speed_a, split_a = _measure(tmp_path, *A)
    assert split_a.bytes_per_step > 0 and split_a.update_seconds > 0
    prior = white_box_prior("ps-sync", BATCH, (*A, split_a), [(*A, speed_a)])
    assert prior is not None
    predicted = predict_speed(prior, *B)
    speed_b, _ = _measure(tmp_path, *B)
    report = (f"A={A}: {speed_a:.2f} steps/s, split {split_a}; B={B}: predicted "
              f"{predicted:.2f}, measured {speed_b:.2f} steps/s")
    print(report)
    # the test tells something: B is not simply A's speed again
    assert abs(speed_a / speed_b - 1) > 0.2, report
    assert abs(predicted / speed_b - 1) <= 0.2, report

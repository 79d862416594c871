"""Whole jobs as local processes: equivalence, elasticity, failures, metrics, control.

Each test starts a real world of PS and worker processes with the local runner on a tiny
task (12 steps per epoch), so it checks what a pod does, not a model of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
from optimus_worker import contract
from optimus_worker.checkpoint import load_latest
from optimus_worker.local import LocalJob
from optimus_worker.net import free_port
from optimus_worker.reference import train_reference
from optimus_worker.task import load_task
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.processes
REPO = Path(__file__).resolve().parents[2]
TINY = "tests.workers.tiny_task:tiny"
SLOW = "tests.workers.tiny_task:slow_tiny"
HOOKED = "tests.workers.tiny_task:hooked_tiny"
STEPS_PER_EPOCH = 12  # 384 samples, global batch 32
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _job(tmp_path: Path, task: str, mode: contract.Mode, ps: int, workers: int, epochs: int,
         interval: int = 5) -> LocalJob:
    return LocalJob(task=task, mode=mode, num_ps=ps, num_workers=workers, epochs=epochs,
                    checkpoint_dir=tmp_path / "ckpt", global_batch_size=32,
                    checkpoint_interval=interval, log_dir=tmp_path / "logs", extra_env=ENV)


def _assert_matches_reference(tmp_path: Path, steps: int, task: str = TINY) -> None:
    ckpt = load_latest(tmp_path / "ckpt")
    assert ckpt is not None and ckpt.step == steps
    reference = train_reference(load_task(task), 32, steps)
    for name, value in reference.params.items():
        assert torch.allclose(ckpt.params[name], value, atol=2e-5), name
    losses = [s / n for _, (s, n) in sorted(ckpt.losses.items())]
    assert losses == pytest.approx(reference.epoch_losses, abs=1e-5)


def _run(job: LocalJob) -> dict:
    job.start()
    try:
        job.run_to_end(timeout=120, max_restarts=0)
    finally:
        job.stop()
    return job.summary()


@pytest.mark.parametrize(("mode", "ps", "workers"), [("ps-sync", 2, 3), ("allreduce", 0, 2)])
def test_distributed_training_matches_single_process(
        tmp_path: Path, mode: contract.Mode, ps: int, workers: int) -> None:
    summary = _run(_job(tmp_path, TINY, mode, ps, workers, epochs=2))
    _assert_matches_reference(tmp_path, 2 * STEPS_PER_EPOCH)
    assert (summary["samples_seen"], summary["samples_repeated"],
            summary["samples_skipped"]) == (2 * 384, 0, 0)


def test_the_hooks_apply_in_all_reduce_as_in_the_reference(tmp_path: Path) -> None:
    """lr schedule, exact clipping, mixed precision (float32 on CPU): the distributed run
    equals one process applying them; the chief evaluated after every epoch."""
    _run(_job(tmp_path, HOOKED, "allreduce", 0, 2, epochs=2))
    _assert_matches_reference(tmp_path, 2 * STEPS_PER_EPOCH, HOOKED)
    plain = train_reference(load_task(TINY), 32, 2 * STEPS_PER_EPOCH)
    hooked = train_reference(load_task(HOOKED), 32, 2 * STEPS_PER_EPOCH)
    assert any(not torch.allclose(plain.params[n], hooked.params[n]) for n in plain.params)
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("*worker-0*"))
    assert "evaluation after epoch 1: accuracy" in log and "evaluation after epoch 2" in log


def test_async_converges(tmp_path: Path) -> None:
    summary = _run(_job(tmp_path, TINY, "ps-async", 2, 2, epochs=6))
    losses = summary["epoch_losses"]
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0]
    assert summary["samples_repeated"] == summary["samples_skipped"] == 0


def test_resize_mid_epoch_keeps_steps_losses_and_samples(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "optimus_worker.local", "--task", SLOW, "--mode",
               "ps-sync", "--ps", "1", "--workers", "2", "--epochs", "4",
               "--global-batch-size", "32", "--checkpoint-interval", "100",
               "--checkpoint-dir", str(tmp_path / "ckpt"), "--timeout", "150",
               "--resize-after-steps", "4", "--to-ps", "2", "--to-workers", "3",
               "--resize-after-steps", "26", "--to-ps", "1", "--to-workers", "1", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=170,
                          env={**os.environ, **ENV}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    steps = 4 * STEPS_PER_EPOCH
    assert result["steps"] == steps and result["epochs"] == 4.0
    assert (result["samples_seen"], result["samples_repeated"],
            result["samples_skipped"]) == (4 * 384, 0, 0)
    assert [(r["from"], r["to"]) for r in result["resizes"]] == [([1, 2], [2, 3]),
                                                                 ([2, 3], [1, 1])]
    assert result["resizes"][0]["at_step"] % STEPS_PER_EPOCH != 0  # in the middle of an epoch
    reference = train_reference(load_task(TINY), 32, steps)
    assert result["epoch_losses"] == pytest.approx(reference.epoch_losses, abs=1e-5)
    assert result["final_loss"] == pytest.approx(reference.epoch_losses[-1], abs=1e-5)


def test_kill_9_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path: Path) -> None:
    job = _job(tmp_path, SLOW, "ps-sync", 1, 2, epochs=4, interval=5)
    job.start()
    try:
        seen = job.wait_step(14, timeout=90)["step"]
        job.process("worker", 1).popen.send_signal(signal.SIGKILL)
        restarts = job.run_to_end(timeout=120, max_restarts=1)
    finally:
        job.stop()
    assert len(restarts) == 1
    resumed = restarts[0]["resumed_step"]
    assert resumed % 5 == 0 and resumed >= seen - seen % 5  # the newest checkpoint survived
    assert restarts[0]["lost_steps"] <= 5 + (restarts[0]["failed_at_step"] - seen)
    summary = job.summary()
    assert summary["steps"] == 4 * STEPS_PER_EPOCH
    assert summary["samples_repeated"] == summary["samples_skipped"] == 0
    _assert_matches_reference(tmp_path, 4 * STEPS_PER_EPOCH)


def _get(url: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=60) as answer:
        return bytes(answer.read())


def _scrape(port: int) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    text = _get(f"http://127.0.0.1:{port}/metrics").decode()
    return [(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def test_metrics_control_and_sigterm(tmp_path: Path) -> None:
    job = _job(tmp_path, SLOW, "ps-sync", 1, 2, epochs=20, interval=1000)
    job.start()
    try:
        job.wait_step(STEPS_PER_EPOCH + 2, timeout=90)
        chief = job.process("worker", 0)
        samples = _scrape(chief.metrics_port)
        identity = {"job": "local", "namespace": "local", "role": "worker", "rank": "0",
                    "generation": "0"}
        for series in (contract.METRIC_LOSS, contract.METRIC_EPOCH,
                       f"{contract.METRIC_SAMPLES}_total", f"{contract.METRIC_STEPS}_total",
                       contract.METRIC_STALENESS, contract.METRIC_CHECKPOINT_STEP):
            assert (series, identity) in [(n, dict(lb)) for n, lb, _ in samples], series
        phases = {dict(lb).get(contract.LABEL_PHASE) for n, lb, v in samples
                  if n == f"{contract.METRIC_STEP_SECONDS}_count" and v > 0}
        assert phases == {"compute", "communication"}
        loss = next(v for n, _, v in samples if n == contract.METRIC_LOSS)
        assert 0 < loss < 2  # the first epoch's mean loss, from all workers
        ps_roles = {dict(lb)["role"] for n, lb, _ in _scrape(job.process("ps", 0).metrics_port)
                    if n == f"{contract.METRIC_STEPS}_total"}
        assert ps_roles == {"ps"}

        base = f"http://127.0.0.1:{job.control_port}"
        status = json.loads(_get(base + contract.CONTROL_STATUS_PATH))
        assert set(status) == {"epoch", "step", "loss"} and status["loss"] > 0
        saved = json.loads(_get(base + contract.CONTROL_CHECKPOINT_PATH, "POST"))
        assert saved["step"] > status["step"] and Path(saved["path"]).is_file()
        ckpt = load_latest(tmp_path / "ckpt")
        assert ckpt is not None and ckpt.step >= saved["step"]
        assert saved["epoch"] == pytest.approx(saved["step"] / STEPS_PER_EPOCH)

        worker = job.process("worker", 1).popen
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    finally:
        job.stop()


@pytest.mark.parametrize(("drop", "override", "names"), [
    (contract.ENV_RANK, {}, contract.ENV_RANK),
    (None, {contract.ENV_MODE: "ring"}, contract.ENV_MODE),
])
def test_bad_environment_exits_with_a_clear_message(
        drop: str | None, override: dict[str, str], names: str) -> None:
    env = contract.PodEnv(
        job="j", namespace="n", role="worker", rank=0, num_ps=1, num_workers=1,
        mode="ps-sync", rendezvous="127.0.0.1:1", checkpoint_dir="/nonexistent",
        generation=0, metrics_port=0, control_port=0, checkpoint_interval_steps=5,
        task="mlp", global_batch_size=8, max_epochs=1).to_env()
    env.update(override)
    if drop:
        del env[drop]
    done = subprocess.run([sys.executable, "-m", "optimus_worker"], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("OPTIMUS_")} | env)
    assert done.returncode == 2
    assert names in done.stderr and "optimus_worker:" in done.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_allreduce_on_cuda_with_nccl(tmp_path: Path) -> None:
    _run(_job(tmp_path, TINY, "allreduce", 0, 1, epochs=1))
    ckpt = load_latest(tmp_path / "ckpt")
    assert ckpt is not None and ckpt.step == STEPS_PER_EPOCH
    reference = train_reference(load_task(TINY), 32, STEPS_PER_EPOCH)
    for name, value in reference.params.items():
        assert torch.allclose(ckpt.params[name], value, atol=1e-4), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ps_sync_workers_on_cuda(tmp_path: Path) -> None:
    _run(_job(tmp_path, TINY, "ps-sync", 1, 1, epochs=1))
    _assert_matches_reference(tmp_path, STEPS_PER_EPOCH)


@pytest.mark.parametrize(("task", "cause"), [
    ("nosuch.module:attr", "cannot import 'nosuch.module'"),
    ("", "no task: set OPTIMUS_TASK"),
])
def test_a_task_that_cannot_load_says_why_in_the_termination_message(
        tmp_path: Path, task: str, cause: str) -> None:
    why = tmp_path / "termination-log"
    env = contract.PodEnv(
        job="j", namespace="n", role="worker", rank=0, num_ps=1, num_workers=1,
        mode="ps-sync", rendezvous="127.0.0.1:1", checkpoint_dir=str(tmp_path),
        generation=0, metrics_port=0, control_port=0, checkpoint_interval_steps=5,
        task=task, global_batch_size=8, max_epochs=1, termination_log=str(why)).to_env()
    done = subprocess.run([sys.executable, "-m", "optimus_worker"], capture_output=True,
                          text=True, timeout=120, check=False,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("OPTIMUS_")} | env)
    assert done.returncode == 2
    assert cause in done.stderr and cause in why.read_text()


def test_an_all_reduce_pod_with_two_accelerators_runs_a_process_for_each(
        tmp_path: Path) -> None:
    """LOCAL_WORLD_SIZE=2: the pod's first process starts two, a world of two that trains
    what one process would (the reference); only LOCAL_RANK 0 checkpoints."""
    env = contract.PodEnv(
        job="j", namespace="n", role="worker", rank=0, num_ps=0, num_workers=1,
        mode="allreduce", rendezvous=f"127.0.0.1:{free_port('127.0.0.1')}",
        checkpoint_dir=str(tmp_path / "ckpt"), generation=0,
        metrics_port=free_port("127.0.0.1"), control_port=free_port("127.0.0.1"),
        checkpoint_interval_steps=5, task=TINY, global_batch_size=32, max_epochs=1,
        local_world_size=2).to_env()
    done = subprocess.run([sys.executable, "-m", "optimus_worker"], capture_output=True,
                          text=True, timeout=180, check=False,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("OPTIMUS_")} | ENV | env
                          | {contract.ENV_POD_IP: "127.0.0.1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gloo world of 2 up" in done.stderr
    assert "[j g0 worker-0.1 +" in done.stderr  # the second process of the pod
    _assert_matches_reference(tmp_path, STEPS_PER_EPOCH)

"""Resizing an all-reduce job in place, with real worker processes (the local runner).

A 1 -> 3 -> 2 worker change happens in the running job: no checkpoint is written or read
on the way, the added workers get the chief's state by broadcast, the removed one exits
0, and the job's sample ledger, losses and final weights are those of an unresized run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from optimus_worker.checkpoint import checkpoint_step, complete_checkpoints
from optimus_worker.local import InPlaceFailed

from tests.workers.test_processes import (
    ENV,
    SLOW,
    STEPS_PER_EPOCH,
    _assert_matches_reference,
    _job,
)

pytestmark = pytest.mark.processes
EPOCHS = 10  # long enough that a loaded host still switches before the end


def test_allreduce_workers_change_in_place(tmp_path: Path) -> None:
    job = _job(tmp_path, SLOW, "allreduce", 0, 1, epochs=EPOCHS, interval=1000)
    job.start()
    try:
        job.prewarm(2)  # the added workers' processes, torch loaded, as for a restart
        job.wait_step(4, timeout=90)
        grow = job.resize_in_place(3, timeout=90)
        job.wait_step(grow["at_step"] + 3, timeout=90)
        shrink = job.resize_in_place(2, timeout=90)
        job.run_to_end(timeout=120, max_restarts=0)
    finally:
        job.stop()
        job.release_standby()
    steps = EPOCHS * STEPS_PER_EPOCH
    assert [(r["from"], r["to"], r["path"]) for r in (grow, shrink)] == [
        ([0, 1], [0, 3], "in-place"), ([0, 3], [0, 2], "in-place")]
    assert 4 <= grow["at_step"] < shrink["at_step"] < steps
    # the only checkpoint is the final one: nothing was written or read to resize
    assert [checkpoint_step(p) for p in complete_checkpoints(tmp_path / "ckpt")] == [steps]
    summary = job.summary()
    assert (summary["samples_seen"], summary["samples_repeated"],
            summary["samples_skipped"]) == (EPOCHS * 384, 0, 0)
    # the loss goes on where it was (no jump back), and the weights are those of one process
    _assert_matches_reference(tmp_path, steps)
    print(f"in-place pauses (request to the first step at the new size): "
          f"1->3 {grow['seconds']:.2f}s (switch {grow['switch_s']:.3f}s), "
          f"3->2 {shrink['seconds']:.2f}s (switch {shrink['switch_s']:.3f}s)")


def test_a_worker_killed_after_joining_in_place_is_replaced_from_the_checkpoint(
        tmp_path: Path) -> None:
    job = _job(tmp_path, SLOW, "allreduce", 0, 1, epochs=6, interval=5)
    job.start()
    try:
        job.prewarm(1)
        job.wait_step(3, timeout=90)
        grow = job.resize_in_place(2, timeout=90)
        with pytest.raises(InPlaceFailed, match="already has 2 workers"):  # refused: unchanged
            job.resize_in_place(2, timeout=90)
        assert (job.num_workers, job.generation) == (2, 1)
        job.wait_step(grow["at_step"] + 6, timeout=90)  # a checkpoint of the new membership
        job.process("worker", 1).popen.send_signal(signal.SIGKILL)
        restarts = job.run_to_end(timeout=120, max_restarts=1)
    finally:
        job.stop()
        job.release_standby()
    assert len(restarts) == 1 and restarts[0]["resumed_step"] > grow["at_step"]
    summary = job.summary()
    assert (summary["samples_repeated"], summary["samples_skipped"]) == (0, 0)
    _assert_matches_reference(tmp_path, 6 * STEPS_PER_EPOCH)


def test_the_runner_cli_resizes_in_place(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "optimus_worker.local", "--task", SLOW, "--mode",
               "allreduce", "--workers", "1", "--epochs", "6", "--global-batch-size", "32",
               "--checkpoint-interval", "100", "--checkpoint-dir", str(tmp_path / "ckpt"),
               "--timeout", "150", "--in-place", "--resize-after-steps", "3",
               "--to-workers", "2", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=170,
                          env={**os.environ, **ENV}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(r["from"], r["to"], r["path"]) for r in result["resizes"]] == [
        ([0, 1], [0, 2], "in-place")]
    assert (result["samples_repeated"], result["samples_skipped"]) == (0, 0)

"""Resizing a PS-mode job's workers in place, with real processes (the local runner).

A 1 -> 3 -> 2 worker change happens in the running job: no PS restarts, no checkpoint is
written or read on the way, the added workers pull the parameters from the PS, the removed
one hands its ledger over and exits 0. ps-sync is deterministic given the data plan, so the
resized run's losses and weights are those of an unresized run of the same seed (the
single-process reference, which the unresized distributed run equals too:
test_processes.test_distributed_training_matches_single_process). The tolerance is the
one for that unresized run, 1e-5 on the losses and 2e-5 on the weights: the w workers'
weighted partial gradients are summed in another order than one batch's mean, which moves
float32 results by ~1e-7 a step; a switch that skipped, repeated or mis-weighted a
single sample moves them by more than 1e-3.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from optimus_worker.checkpoint import checkpoint_step, complete_checkpoints
from optimus_worker.local import InPlaceFailed, LocalJob

from tests.workers.test_processes import SLOW, STEPS_PER_EPOCH, _assert_matches_reference, _job

pytestmark = pytest.mark.processes
EPOCHS = 10  # 120 steps: room for both changes on a loaded host


def _grow_and_shrink(job: LocalJob) -> tuple[dict, dict]:
    job.wait_step(4, timeout=90)
    grow = job.resize_in_place(3, timeout=90)
    job.wait_step(grow["at_step"] + 3, timeout=90)
    shrink = job.resize_in_place(2, timeout=90)
    return grow, shrink


def _check_changes(grow: dict, shrink: dict, tmp_path: Path) -> None:
    assert [(r["from"], r["to"], r["path"]) for r in (grow, shrink)] == [
        ([1, 1], [1, 3], "in-place"), ([1, 3], [1, 2], "in-place")]
    assert 4 <= grow["at_step"] < shrink["at_step"] < EPOCHS * STEPS_PER_EPOCH
    # the only checkpoint is the final one: nothing was written or read to resize
    assert [checkpoint_step(p) for p in complete_checkpoints(tmp_path / "ckpt")] == [
        EPOCHS * STEPS_PER_EPOCH]


def test_ps_sync_workers_change_in_place_as_an_unresized_run(tmp_path: Path) -> None:
    job = _job(tmp_path, SLOW, "ps-sync", 1, 1, epochs=EPOCHS, interval=1000)
    job.start()
    job.prewarm(2)  # the added workers' processes, torch loaded, as for a restart
    try:
        grow, shrink = _grow_and_shrink(job)
        ps_process = job.process("ps", 0).popen
        job.run_to_end(timeout=120, max_restarts=0)  # a leaver exiting non-0 fails here
    finally:
        job.stop()
        job.release_standby()
    _check_changes(grow, shrink, tmp_path)
    assert ps_process.returncode == 0 and job.generation == 2  # the same PS served throughout
    summary = job.summary()
    assert (summary["samples_seen"], summary["samples_repeated"],
            summary["samples_skipped"]) == (EPOCHS * 384, 0, 0)
    _assert_matches_reference(tmp_path, EPOCHS * STEPS_PER_EPOCH)
    print(f"ps-sync in-place pauses: 1->3 {grow['seconds']:.2f}s, 3->2 {shrink['seconds']:.2f}s")


def test_ps_async_workers_change_in_place_after_a_newcomer_never_came(tmp_path: Path) -> None:
    job = _job(tmp_path, SLOW, "ps-async", 1, 1, epochs=EPOCHS, interval=1000)
    job.start()
    job.prewarm(2)
    try:
        job.wait_step(2, timeout=90)
        # announced, never started: the chief answers 503 and the job trains on unchanged
        with pytest.raises(InPlaceFailed, match=r"HTTP 503 .*did not join within 1s"):
            job.resize_in_place(2, timeout=60, join_timeout=1, start_added=False)
        assert (job.num_workers, job.generation) == (1, 0)
        failed_at = job.wait_step(0, timeout=10)["step"]
        job.wait_step(failed_at + 2, timeout=60)
        grow, shrink = _grow_and_shrink(job)
        job.run_to_end(timeout=120, max_restarts=0)
    finally:
        job.stop()
        job.release_standby()
    _check_changes(grow, shrink, tmp_path)
    summary = job.summary()
    assert (summary["samples_seen"], summary["samples_repeated"],
            summary["samples_skipped"]) == (EPOCHS * 384, 0, 0)
    losses = summary["epoch_losses"]
    assert len(losses) == EPOCHS and losses[-1] < 0.5 * losses[0]


def test_ps_sync_ps_change_in_place_as_an_unresized_run(tmp_path: Path) -> None:
    """1 -> 2 -> 1 PS with 2 workers: the blocks move with their optimizer state (Adam's
    moments and step) at a pause, so the run stays the unresized one to the same tolerance."""
    job = _job(tmp_path, SLOW, "ps-sync", 1, 2, epochs=EPOCHS, interval=1000)
    job.start()
    job.prewarm(1)  # the added PS's process, torch loaded
    try:
        job.wait_step(4, timeout=90)
        grow = job.resize_in_place(2, num_ps=2, timeout=90)
        added_ps = job.process("ps", 1).popen
        job.wait_step(grow["at_step"] + 3, timeout=90)
        shrink = job.resize_in_place(2, num_ps=1, timeout=90)  # waits for PS 1 to exit 0
        job.run_to_end(timeout=120, max_restarts=0)
    finally:
        job.stop()
        job.release_standby()
    assert [(r["from"], r["to"], r["path"]) for r in (grow, shrink)] == [
        ([1, 2], [2, 2], "in-place"), ([2, 2], [1, 2], "in-place")]
    assert added_ps.returncode == 0
    assert [checkpoint_step(p) for p in complete_checkpoints(tmp_path / "ckpt")] == [
        EPOCHS * STEPS_PER_EPOCH]
    summary = job.summary()
    assert (summary["samples_seen"], summary["samples_repeated"],
            summary["samples_skipped"]) == (EPOCHS * 384, 0, 0)
    _assert_matches_reference(tmp_path, EPOCHS * STEPS_PER_EPOCH)
    print(f"ps-sync PS change in place: 1->2 {grow['seconds']:.2f}s, 2->1 {shrink['seconds']:.2f}s")

"""Scenario 3: a resize loses nothing.

In the cluster: a job free to grow is resized by the operator (probing and growing); a
recorder reads its step from the chief worker's control endpoint all along, and across every
resize the step never falls below the newest checkpoint; every checkpoint's own sample
ledger (the workers' accounting) shows no sample skipped or trained twice.

With the workers' local runner: a resize in the middle of an epoch (1x2 -> 2x3, one epoch),
whose JSON report counts repeated and skipped samples (the workers' own accounting): both
zero.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from e2e.scenarios.checks import generations, step_regressions
from e2e.scenarios.conftest import MakeStack
from e2e.scenarios.helpers import (
    StepRecorder,
    apply_job,
    checkpoint_dir,
    checkpoint_problems,
    describe,
    generation,
    job_manifest,
    wait_job,
)
from e2e.simgpu import TASK_MLP, on_repository_path

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(500)]


def test_resizes_in_the_cluster_lose_no_steps_beyond_the_last_checkpoint(
        make_stack: MakeStack) -> None:
    stack = make_stack(nodes=1, gpus_per_node=4)
    name = "elastic"
    # emulated GPU time gives the job a floor of about 8 s an epoch per worker, so that on
    # any machine it lasts long enough for the operator to probe and resize it twice; the
    # convergence rule is out of the way (maxEpochs ends it)
    apply_job(stack.kubectl, on_repository_path(job_manifest(
        name, stack.workdir / "checkpoints", task=TASK_MLP, max_epochs=8, ps=(1, 2),
        workers=(1, 3), batch=32, interval_steps=10,
        convergence={"lossDelta": 1e-6, "window": 3})))
    recorder = StepRecorder(stack, name).start()
    try:
        final = wait_job(stack, name, ("Succeeded",), timeout=400)
    finally:
        samples = recorder.stop()
    assert samples, f"never read the chief's step\n{describe(stack, name)}"
    seen = generations(samples)
    assert generation(final) >= 2 and len(seen) >= 2, (
        f"the operator never resized the job (generations seen {seen})\n"
        f"{describe(stack, name)}")
    assert step_regressions(samples) == []
    # the operator timed the last restart, from its decision to the first step after it
    measured = (final.get("status") or {}).get("allocation", {}).get("restartSeconds")
    assert isinstance(measured, int | float) and 0 < measured < 300, (
        f"status.allocation.restartSeconds = {measured!r}\n{describe(stack, name)}")
    steps, problems = checkpoint_problems(checkpoint_dir(stack, name))
    assert steps, "no complete checkpoint was kept"
    assert problems == []
    print(f"resize-lossless: generations {seen}, {len(samples)} step samples, final step "
          f"{samples[-1].step}, checkpoints at steps {steps}, last restart {measured} s")


def test_the_local_runner_counts_no_sample_skipped_or_repeated_across_a_resize() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "optimus_worker.local", "--task", "mlp", "--mode", "ps-sync",
         "--ps", "1", "--workers", "2", "--epochs", "1", "--global-batch-size", "128",
         "--resize-after-steps", "7",
         "--to-ps", "2", "--to-workers", "3", "--json"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["samples_repeated"] == 0 and report["samples_skipped"] == 0, report
    assert [r["from"] for r in report["resizes"]] == [[1, 2]], report
    assert [r["to"] for r in report["resizes"]] == [[2, 3]], report
    assert report["samples_seen"] > 0 and report["epochs"] >= 1, report
    print(f"local runner: {report}")

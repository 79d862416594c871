"""Scenario 3: a resize loses nothing.

In the cluster: a job free to grow is resized by the operator (probing and growing), then
its bounds are narrowed so that it is resized a second time; a recorder reads its step
from the chief worker's control endpoint all along, and across every resize the step never
falls below the newest checkpoint; every checkpoint's own sample ledger (the workers'
accounting) shows no sample skipped or trained twice.

The same question outside a cluster (the workers' local runner resizing 1x2 -> 2x3 in the
middle of an epoch, its own accounting counting no sample repeated or skipped, and its
losses equal to one process's) is answered by tests/workers/test_processes.py
(test_resize_mid_epoch_keeps_steps_losses_and_samples).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.scenarios.checks import generations, step_regressions
from e2e.scenarios.conftest import PROBING_OPERATOR, MakeStack
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
    stack = make_stack(nodes=1, gpus_per_node=4, operator=PROBING_OPERATOR)
    name = "elastic"
    max_epochs = 8
    # emulated GPU time gives the job a floor of about 8 s an epoch per worker, so that on
    # any machine it lasts long enough for the operator to probe and resize it twice; the
    # convergence rule is out of the way (maxEpochs ends it)
    apply_job(stack.kubectl, on_repository_path(job_manifest(
        name, stack.workdir / "checkpoints", task=TASK_MLP, max_epochs=max_epochs, ps=(1, 2),
        workers=(1, 3), batch=32, interval_steps=10,
        convergence={"lossDelta": 1e-6, "window": 3})))
    recorder = StepRecorder(stack, name).start()
    shortened: list[int] = []

    narrowed: list[bool] = []

    def end_after_two_resizes(obj: dict[str, Any]) -> None:
        """Once the chief has stepped in generation 1 (the operator's own first resize),
        its bounds are narrowed to 1 PS x 1 worker, which it must resize to (the operator
        may well have sized it right at once, and the test needs two resizes); once the
        chief has stepped in generation 2, the job ends with the epoch it is in: the
        epochs after prove nothing more."""
        stepped = max((s.generation for s in list(recorder.samples)), default=0)
        if not narrowed and stepped >= 1:
            narrowed.append(True)
            stack.kubectl.run("patch", "trainingjob", name, "--type=merge", "-p", json.dumps(
                {"spec": {"parameterServers": {"max": 1}, "workers": {"max": 1}}}))
        if shortened or stepped < 2:
            return
        epoch = float(((obj.get("status") or {}).get("progress") or {}).get("epoch") or 0)
        shortened.append(min(max_epochs, int(epoch) + 1))
        stack.kubectl.run("patch", "trainingjob", name, "--type=merge", "-p", json.dumps(
            {"spec": {"convergence": {"maxEpochs": shortened[0]}}}))

    try:
        final = wait_job(stack, name, ("Succeeded",), timeout=400,
                         on_poll=end_after_two_resizes)
    finally:
        samples = recorder.stop()
    assert samples, f"never read the chief's step\n{describe(stack, name)}"
    seen = generations(samples)
    assert generation(final) >= 2 and len(seen) >= 2, (
        f"the operator never resized the job (generations seen {seen})\n"
        f"{describe(stack, name)}")
    assert step_regressions(samples) == []
    # the operator timed the last resize, from its decision to the first step after it
    # (restartSeconds for a restart, resizeSeconds for a change made in place)
    allocation = (final.get("status") or {}).get("allocation", {})
    measured = allocation.get("restartSeconds", allocation.get("resizeSeconds"))
    assert isinstance(measured, int | float) and 0 < measured < 300, (
        f"status.allocation = {allocation!r}\n{describe(stack, name)}")
    steps, problems = checkpoint_problems(checkpoint_dir(stack, name))
    assert steps, "no complete checkpoint was kept"
    assert problems == []
    print(f"resize-lossless: generations {seen}, {len(samples)} step samples, final step "
          f"{samples[-1].step}, checkpoints at steps {steps}, last restart {measured} s, "
          f"maxEpochs lowered to {shortened or '-'}")


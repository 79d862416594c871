"""Scenario 4: faults. One job lives through four of them, in this order:

1. the operator is killed (SIGKILL) while the job is resizing, and started again;
2. a worker process is killed with SIGKILL (its pid from the local cluster's kubelet);
3. Prometheus is stopped for two scheduling rounds (no resize may happen blind), then
   started again;
4. every pod on the node of the job's chief worker is deleted at once.

After each, the job recovers (its step advances past where it was); at the end it finishes,
its step never fell below its newest checkpoint, and every complete checkpoint loads with a
clean sample ledger (none lost or corrupted).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from e2e.scenarios.checks import step_regressions
from e2e.scenarios.conftest import PROBING_OPERATOR, MakeStack, needs_local_cluster
from e2e.scenarios.helpers import (
    StepRecorder,
    apply_job,
    checkpoint_dir,
    checkpoint_problems,
    describe,
    generation,
    job_manifest,
    phase,
    running_pods,
    wait_job,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(540)]

NAME = "sturdy"
#: Long enough to outlive the faults; lowered with a patch once they are done.
LONG_EPOCHS = 400


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def _chief(stack: Any) -> dict[str, Any] | None:
    for pod in running_pods(stack.kubectl, NAME):
        labels = pod["metadata"].get("labels", {})
        if labels.get("optimus.dev/role") == "worker" and labels.get("optimus.dev/rank") == "0":
            return pod
    return None


def _advances(stack: Any, recorder: StepRecorder, what: str, by: int = 5,
              timeout: float = 120) -> None:
    """Wait until the job's step is `by` past the highest step seen so far."""
    start = max((s.step for s in recorder.samples), default=0)
    wait_until(stack, f"the job to recover after {what} (step past {start + by})",
               lambda: recorder.samples and recorder.samples[-1].step >= start + by
               and phase(stack.kubectl.trainingjob(NAME)) not in ("Failed",),
               timeout=timeout, interval=0.5)


def test_a_job_survives_operator_worker_prometheus_and_node_faults(
        make_stack: MakeStack) -> None:
    stack = make_stack(nodes=2, gpus_per_node=2, operator=PROBING_OPERATOR)
    needs_local_cluster(stack)
    apply_job(stack.kubectl, job_manifest(NAME, stack.workdir / "checkpoints",
                                          max_epochs=LONG_EPOCHS, ps=(1, 1), workers=(1, 2),
                                          batch=32, interval_steps=10))
    recorder = StepRecorder(stack, NAME, interval=0.3).start()
    timeline: list[str] = []
    try:
        # 1. The operator dies mid-resize (the job probes or grows soon after it starts).
        wait_until(stack, "the job to be resizing", lambda: phase(
            stack.kubectl.trainingjob(NAME)) == "Resizing", timeout=150, interval=0.2)
        assert stack.operator is not None
        stack.operator.kill()
        timeline.append(f"killed the operator mid-resize at step "
                        f"{max((s.step for s in recorder.samples), default=0)}")
        time.sleep(2)
        stack.operator.start()
        wait_job(stack, NAME, ("Running", "Probing"), timeout=120)
        _advances(stack, recorder, "the operator's restart")

        # 2. kill -9 a worker process.
        chief = _chief(stack)
        assert chief is not None, describe(stack, NAME)
        restarts = int((stack.kubectl.trainingjob(NAME).get("status") or {}).get("restarts")
                       or 0)
        pid = stack.cluster.pod_pid(stack.config.namespace, chief["metadata"]["name"])
        assert pid is not None, "the kubelet knows no process for the chief"
        os.kill(pid, signal.SIGKILL)
        timeline.append(f"kill -9 worker pid {pid} ({chief['metadata']['name']})")
        _advances(stack, recorder, "kill -9 of a worker")
        restarts_after = int(stack.kubectl.trainingjob(NAME)["status"].get("restarts") or 0)
        timeline.append(f"restarts {restarts} -> {restarts_after}")

        # 3. Prometheus away for two rounds: no resize, a MetricsAvailable=False condition.
        interval = stack.config.operator.interval_seconds
        generation_before = generation(stack.kubectl.trainingjob(NAME))
        stack.prometheus.stop()
        blind_seen = False
        until = time.monotonic() + 2 * interval + 2
        while time.monotonic() < until:
            obj = stack.kubectl.trainingjob(NAME)
            blind_seen = blind_seen or _condition(obj, "MetricsAvailable") == "False"
            assert generation(obj) == generation_before, "resized while blind"
            time.sleep(0.5)
        stack.prometheus.start()
        stack.prometheus.wait_ready(60)
        assert blind_seen, f"no MetricsAvailable=False while Prometheus was down\n" \
                           f"{describe(stack, NAME)}"
        wait_until(stack, "MetricsAvailable to come back", lambda: _condition(
            stack.kubectl.trainingjob(NAME), "MetricsAvailable") == "True", timeout=60)
        timeline.append("Prometheus stopped for two rounds: no resize, condition cleared")
        _advances(stack, recorder, "Prometheus's return")

        # 4. Every pod on the chief's node deleted at once.
        chief = _chief(stack)
        assert chief is not None
        node = chief["spec"]["nodeName"]
        stack.cluster.kill_node_pods(node)
        timeline.append(f"deleted the pods of node {node}")
        _advances(stack, recorder, f"losing node {node}'s pods")

        # Done with faults: let it finish at the end of the epoch it is in.
        epoch = float(stack.kubectl.trainingjob(NAME)["status"]["progress"]["epoch"])
        stack.kubectl.run("patch", "trainingjob", NAME, "--type=merge", "-p",
                          f'{{"spec": {{"convergence": {{"maxEpochs": {int(epoch) + 1}}}}}}}')
        wait_job(stack, NAME, ("Succeeded",), timeout=180)
    finally:
        samples = recorder.stop()
        print("faults: " + "; ".join(timeline))
    assert step_regressions(samples) == []
    steps, problems = checkpoint_problems(checkpoint_dir(stack, NAME))
    assert steps and problems == [], problems
    assert steps == sorted(steps)

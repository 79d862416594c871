"""Scenario: the operator resizes an all-reduce job in place, and a failure in the middle
of a resize in place falls back to checkpoint-restart with nothing lost.

One stack (one node, a 2 s scheduling interval, a 20 s in-place timeout) and one job of
the library's mlp task in all-reduce mode, resized by its bounds (a patch of
spec.workers.min/max forces the allocation within a round), in this order:

1. grown 1 -> 2 and 2. shrunk 2 -> 1 in place: the chief's pod is never replaced,
   status.allocation records the path and the pause, the removed worker's pod goes after
   it exited;
3. grown 1 -> 2 with the operator killed (SIGKILL) right after it created the added pod,
   and started again: the chief switches without it (the request was posted) and the new
   operator finds the job stepping under the new generation; had the request not been
   posted, no step at the new size within the timeout restarts the job instead;
4. grown 2 -> 3 with a running worker killed (SIGKILL) while the added worker joins: the
   job restarts from its checkpoint (a new generation of every pod; one counted restart).

It ends with its step never below its newest checkpoint and every checkpoint's sample
ledger clean: no sample skipped or trained twice. A second job, ps-sync with 1 PS, has its
PS grown 1 -> 2 in place (the chief's and the PS 0's pods never replaced, the added PS
joining the running job), with the same checks at its end.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from e2e.demo.stack import Stack
from e2e.scenarios.checks import step_regressions
from e2e.scenarios.conftest import FAST_OPERATOR, MakeStack, needs_local_cluster
from e2e.scenarios.helpers import (
    StepRecorder,
    apply_job,
    checkpoint_dir,
    checkpoint_problems,
    describe,
    job_manifest,
    job_pods,
    wait_job,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(200)]

OPERATOR = replace(FAST_OPERATOR, interval_seconds=2.0,
                   extra_env={"OPTIMUS_IN_PLACE_TIMEOUT_SECONDS": "20"})
LONG_EPOCHS = 200


@pytest.fixture(scope="module")
def stack(make_stack: MakeStack) -> Iterator[Stack]:
    stack = make_stack(nodes=1, gpus_per_node=4, operator=OPERATOR)
    needs_local_cluster(stack)
    yield stack


def _allocation(stack: Stack, name: str) -> dict[str, Any]:
    return dict((stack.kubectl.trainingjob(name).get("status") or {}).get("allocation") or {})


def _resizing(stack: Stack, name: str) -> dict[str, Any]:
    for condition in (stack.kubectl.trainingjob(name).get("status") or {}).get(
            "conditions") or ():
        if condition.get("type") == "Resizing":
            return dict(condition)
    return {}


def _workers(stack: Stack, name: str, count: int) -> None:
    stack.kubectl.run("patch", "trainingjob", name, "--type=merge", "-p", json.dumps(
        {"spec": {"workers": {"min": count, "max": count}}}))


def _pods(stack: Stack, name: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in job_pods(stack.kubectl, name)
            if not p["metadata"].get("deletionTimestamp")}


def _start(stack: Stack, name: str, workers: int, mode: str = "allreduce",
           ps: int = 0) -> StepRecorder:
    apply_job(stack.kubectl, job_manifest(
        name, stack.workdir / "checkpoints", max_epochs=LONG_EPOCHS, mode=mode,
        ps=(ps, ps), workers=(workers, workers), batch=32, interval_steps=10))
    recorder = StepRecorder(stack, name, interval=0.3).start()
    wait_until(stack, f"{name} to train", lambda: len(recorder.samples) >= 2
               and recorder.samples[-1].step > 5, timeout=60, interval=0.3)
    return recorder


def _finish(stack: Stack, name: str, recorder: StepRecorder) -> dict[str, Any]:
    """End the job with the epoch it is in; check its steps and its checkpoints."""
    try:
        epoch = float(stack.kubectl.trainingjob(name)["status"]["progress"]["epoch"])
        stack.kubectl.run("patch", "trainingjob", name, "--type=merge", "-p", json.dumps(
            {"spec": {"convergence": {"maxEpochs": int(epoch) + 1}}}))
        final = wait_job(stack, name, ("Succeeded",), timeout=90)
    finally:
        samples = recorder.stop()
    assert step_regressions(samples) == []
    steps, problems = checkpoint_problems(checkpoint_dir(stack, name))
    assert steps and problems == [], problems
    return final


def _settled(stack: Stack, name: str, workers: int, what: str) -> dict[str, Any]:
    return dict(wait_until(stack, what, lambda: (
        a := _allocation(stack, name)).get("workers") == workers and a.get("runningSince")
        and a, timeout=60, interval=0.3))


def _generation_pod(stack: Stack, name: str, generation: int, rank: int) -> str:
    pod = f"{name}-g{generation}-worker-{rank}"
    wait_until(stack, f"pod {pod}", lambda: pod in _pods(stack, name), timeout=30,
               interval=0.1)
    return pod


def test_an_allreduce_job_resized_in_place_survives_a_killed_operator_and_worker(
        stack: Stack) -> None:
    name = "in-place"
    began = time.monotonic()
    timeline: list[str] = []
    recorder = _start(stack, name, 1)
    chief = _pods(stack, name)[f"{name}-g0-worker-0"]["metadata"]["uid"]
    try:
        # 1. grow 1 -> 2 in place: the chief's pod stays, the pause is measured
        _workers(stack, name, 2)
        grown = wait_until(stack, "the grow in place to be measured", lambda: (
            a := _allocation(stack, name)).get("workers") == 2 and a.get("runningSince")
            and a.get("resizeSeconds") is not None and a, timeout=60, interval=0.3)
        assert grown["resizeKind"] == "InPlaceWorkerChange", describe(stack, name)
        assert grown["podGenerations"]["workers"] == [0, 1]
        timeline.append(f"grow 1 -> 2 in place: at the new size {grown['resizeSeconds']} s "
                        f"after the decision, paused {grown.get('pauseSeconds')} s")
        # 2. shrink 2 -> 1 in place: the removed worker's pod goes once it exited
        _workers(stack, name, 1)
        shrunk = _settled(stack, name, 1, "the shrink in place to settle")
        assert shrunk["resizeKind"] == "InPlaceWorkerChange" and shrunk["generation"] == 2
        wait_until(stack, "the removed worker's pod to go",
                   lambda: set(_pods(stack, name)) == {f"{name}-g0-worker-0"}, timeout=30)
        assert _pods(stack, name)[f"{name}-g0-worker-0"]["metadata"]["uid"] == chief
        timeline.append(f"shrink 2 -> 1 in place: paused {shrunk.get('pauseSeconds')} s")
        # 3. grow 1 -> 2 with the operator killed once it created the added pod
        _workers(stack, name, 2)
        _generation_pod(stack, name, 3, 1)
        assert stack.operator is not None
        stack.operator.kill()
        time.sleep(1)
        stack.operator.start()
        regrown = _settled(stack, name, 2, "the job to run at 2 workers after the operator "
                                           "restart")
        timeline.append(f"operator killed mid grow 1 -> 2: generation {regrown['generation']}"
                        f" by {regrown['resizeKind']}")
        # 4. grow 2 -> 3 with a running worker killed while the added one joins: a restart
        _workers(stack, name, 3)
        _generation_pod(stack, name, regrown["generation"] + 1, 2)
        assert stack.cluster is not None
        victim = f"{name}-g{regrown['podGenerations']['workers'][1]}-worker-1"
        pid = wait_until(stack, "the running worker's pid", lambda: stack.cluster.pod_pid(
            stack.config.namespace, victim), timeout=10, interval=0.1)
        os.kill(pid, signal.SIGKILL)
        restarted = wait_until(stack, "a restart of every pod", lambda: (
            a := _allocation(stack, name)).get("resizeKind") == "Restart"
            and a.get("workers") == 3 and a.get("runningSince") and a, timeout=60,
            interval=0.3)
        assert restarted["podGenerations"]["workers"] == [restarted["generation"]] * 3
        timeline.append(f"worker {victim} killed mid grow 2 -> 3: restarted as generation "
                        f"{restarted['generation']}")
    finally:
        final = _finish(stack, name, recorder)
        print("in-place: " + "; ".join(timeline) + f"; resizeCosts "
              f"{final['status'].get('resizeCosts')}, restarts "
              f"{final['status'].get('restarts')}; {time.monotonic() - began:.1f} s")
    assert final["status"].get("restarts") == 1
    assert "InPlaceWorkerChange" in (final["status"].get("resizeCosts") or {})


def test_a_ps_sync_job_grows_its_ps_in_place(stack: Stack) -> None:
    name = "ps-in-place"
    began = time.monotonic()
    recorder = _start(stack, name, 1, mode="ps-sync", ps=1)
    kept = {pod: _pods(stack, name)[pod]["metadata"]["uid"]
            for pod in (f"{name}-g0-ps-0", f"{name}-g0-worker-0")}
    try:
        stack.kubectl.run("patch", "trainingjob", name, "--type=merge", "-p", json.dumps(
            {"spec": {"parameterServers": {"min": 2, "max": 2}}}))
        grown = wait_until(stack, "the PS grow in place to be measured", lambda: (
            a := _allocation(stack, name)).get("ps") == 2 and a.get("runningSince")
            and a.get("resizeSeconds") is not None and a, timeout=60, interval=0.3)
        assert grown["resizeKind"] == "InPlacePSChange", describe(stack, name)
        assert grown["podGenerations"] == {"ps": [0, 1], "workers": [0]}
        pods = _pods(stack, name)
        assert {pod: pods[pod]["metadata"]["uid"] for pod in kept} == kept
        assert f"{name}-g1-ps-1" in pods
        # the job steps on at 2 PS (past the switch)
        step = recorder.samples[-1].step
        wait_until(stack, "a step at 2 PS", lambda: recorder.samples[-1].step > step + 5,
                   timeout=30, interval=0.3)
    finally:
        final = _finish(stack, name, recorder)
        print(f"ps-in-place: grow PS 1 -> 2 in place: at the new size "
              f"{_allocation(stack, name).get('resizeSeconds')} s after the decision, paused "
              f"{_allocation(stack, name).get('pauseSeconds')} s; resizeCosts "
              f"{final['status'].get('resizeCosts')}; {time.monotonic() - began:.1f} s")
    assert final["status"].get("restarts", 0) == 0
    assert "InPlacePSChange" in (final["status"].get("resizeCosts") or {})

"""Scenario 2: contention. Two jobs compete for a 3-GPU node: the first grows while alone,
the operator shrinks it when the second arrives so that the second can run and grow, and
both finish. Then the same two jobs run again in the same harness with a fixed allocation
(min == max == their initial size, so nothing is resized), and the elastic run's total and
average JCT must beat the fixed run's: measured, not assumed.

The jobs train the `mlp` example on simulated GPUs whose compute time is emulated
(e2e/simgpu.py): on a machine whose pods all share two host cores, more workers
could not make a job faster otherwise, and the question would be moot.

The comparison doubles the scenario's time, so CI runs the elastic part (shrink-to-grow,
both finish) and the fixed-allocation comparison runs with E2E_CONTENTION_FULL=1 (the
README's end-to-end section says so).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import pytest

from e2e.demo.stack import Stack
from e2e.demo.summary import completion_seconds
from e2e.scenarios.checks import JctComparison, capacity_violations
from e2e.scenarios.conftest import FAST_OPERATOR, MakeStack
from e2e.scenarios.helpers import (
    allocation,
    apply_job,
    describe,
    job_manifest,
    phase,
)
from e2e.simgpu import TASK_MLP, on_repository_path

FULL = os.environ.get("E2E_CONTENTION_FULL") == "1"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800 if FULL else 420)]

GPUS = 3
#: Short jobs in CI; the full comparison runs longer jobs, which can repay their probing
#: and resize costs (E2E_CONTENTION_EPOCHS overrides either).
EPOCHS = int(os.environ.get("E2E_CONTENTION_EPOCHS", "20" if FULL else "6"))
#: What a resize really costs on the local cluster (checkpoint, new processes, torch import).
RESTART_COST_SECONDS = 15.0
#: The second job arrives once the first has grown, or after this many seconds.
SECOND_AFTER_SECONDS = 60.0


def _manifests(stack: Stack, suffix: str, workers: tuple[int, int]) -> list[dict[str, Any]]:
    return [on_repository_path(job_manifest(
                f"{job}{suffix}", stack.workdir / "checkpoints", task=TASK_MLP,
                max_epochs=EPOCHS, ps=(1, 1), workers=workers, batch=256, interval_steps=10))
            for job in ("first", "second")]


Timeline = dict[str, list[tuple[float, tuple[int, int] | None]]]


def _run_pair(stack: Stack, suffix: str, workers: tuple[int, int],
              second_at: float | None = None) -> tuple[list[float], Timeline, float]:
    """Apply the first job, then the second once the first has grown (or a minute has
    passed; or at `second_at` seconds, to repeat another run's arrivals); poll both until
    they finish. Returns their JCTs, allocation timelines and the second's arrival."""
    first, second = _manifests(stack, suffix, workers)
    names = [first["metadata"]["name"], second["metadata"]["name"]]
    timelines: dict[str, list[tuple[float, tuple[int, int] | None]]] = {n: [] for n in names}
    began = time.monotonic()
    apply_job(stack.kubectl, first)
    applied_second = False
    arrival = 0.0
    deadline = began + (900 if FULL else 300)
    final: dict[str, dict[str, Any]] = {}
    nodes = stack.kubectl.items("nodes")
    while time.monotonic() < deadline:
        now = time.monotonic() - began
        # The pods bound to the node never ask for more GPUs than it has.
        assert capacity_violations(stack.kubectl.items("pods"), nodes) == [], describe(stack)
        for obj in stack.kubectl.trainingjobs():
            name = obj["metadata"]["name"]
            if name in timelines:
                timelines[name].append((now, allocation(obj)))
                final[name] = obj
        grown = any(a is not None and a[1] > workers[0] for _, a in timelines[names[0]])
        due = (now >= second_at) if second_at is not None else (
            grown or now > SECOND_AFTER_SECONDS)
        if not applied_second and due:
            apply_job(stack.kubectl, second)
            applied_second, arrival = True, now
        if applied_second and len(final) == 2 and all(
                phase(o) in ("Succeeded", "Failed") for o in final.values()):
            break
        time.sleep(1)
    assert [phase(final.get(n, {})) for n in names] == ["Succeeded", "Succeeded"], (
        f"not both Succeeded in time\n{describe(stack)}")
    jcts = [completion_seconds(final[n]) for n in names]
    assert all(j is not None for j in jcts)
    return [j for j in jcts if j is not None], timelines, arrival


@pytest.fixture(scope="module")
def elastic(make_stack: MakeStack) -> tuple[Stack, list[float], Timeline, float]:
    stack = make_stack(nodes=1, gpus_per_node=GPUS,
                       operator=replace(FAST_OPERATOR, restart_cost_seconds=RESTART_COST_SECONDS))
    jcts, timelines, arrival = _run_pair(stack, "", workers=(1, GPUS))
    return stack, jcts, timelines, arrival


def test_the_operator_shrinks_the_first_job_to_grow_the_second(
        elastic: tuple[Stack, list[float], Timeline, float]) -> None:
    stack, jcts, timelines, _ = elastic
    first = [(t, a) for t, a in timelines["first"] if a is not None]
    second = [(t, a) for t, a in timelines["second"] if a is not None]
    peak_first = max(a[1] for _, a in first)
    assert peak_first >= 2, f"the first job never grew: {first}\n{describe(stack)}"
    second_start = second[0][0]
    shrunk = [a[1] for t, a in first if t >= second_start and a[1] < peak_first]
    assert shrunk, f"the first job was never shrunk for the second: {first}"
    assert max(a[1] for _, a in second) >= 1
    print(f"contention: elastic JCTs {jcts}; first job peaked at {peak_first} workers and "
          f"was shrunk to {min(shrunk)} when the second arrived; second peaked at "
          f"{max(a[1] for _, a in second)}")


@pytest.mark.skipif(not FULL, reason="the fixed-allocation comparison doubles the run time: "
                                     "set E2E_CONTENTION_FULL=1")
def test_elastic_beats_a_fixed_allocation_of_the_same_jobs(
        elastic: tuple[Stack, list[float], Timeline, float]) -> None:
    stack, elastic_jcts, _, arrival = elastic
    fixed_jcts, timelines, _ = _run_pair(stack, "-fixed", workers=(1, 1), second_at=arrival)
    for name, timeline in timelines.items():
        assert {a for _, a in timeline if a is not None} <= {(1, 1)}, (name, timeline)
    comparison = JctComparison(tuple(elastic_jcts), tuple(fixed_jcts))
    print(f"contention: {comparison.describe()}")
    assert comparison.elastic_total < comparison.fixed_total, comparison.describe()
    assert comparison.elastic_average < comparison.fixed_average, comparison.describe()

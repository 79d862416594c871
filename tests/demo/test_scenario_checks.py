"""The scenarios' pure invariants: step regressions, node capacity, field names, JCTs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2e.scenarios.checks import (
    JctComparison,
    StepSample,
    capacity_violations,
    generations,
    names_field,
    pod_requests,
    step_regressions,
)


def s(t: float, gen: int, step: int, ckpt: int | None = None) -> StepSample:
    return StepSample(t, gen, step, ckpt)


def test_a_resume_from_the_newest_checkpoint_is_fine() -> None:
    samples = [s(0, 1, 10, 0), s(1, 1, 25, 20), s(2, 1, 28, 20), s(3, 2, 20, 20), s(4, 2, 30)]
    assert step_regressions(samples) == []
    assert generations(samples) == [1, 2]


def test_losing_checkpointed_steps_is_reported() -> None:
    samples = [s(0, 1, 25, 20), s(1, 2, 12, 20)]
    [problem] = step_regressions(samples)
    assert "from 25 to 12" in problem and "checkpoint at step 20" in problem


def test_without_a_checkpoint_a_restart_from_zero_is_allowed() -> None:
    assert step_regressions([s(0, 1, 7), s(1, 2, 0)]) == []


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=30))
def test_a_never_decreasing_step_count_never_regresses(steps: list[int]) -> None:
    samples = [s(i, 1, step, 0) for i, step in enumerate(sorted(steps))]
    assert step_regressions(samples) == []


def pod(node: str | None, phase: str = "Running", **requests: Any) -> dict[str, Any]:
    return {"spec": {"nodeName": node, "containers": [
        {"resources": {"requests": {k.replace("_", "."): v for k, v in requests.items()}}}]},
        "status": {"phase": phase}}


def node(name: str, gpu: int = 4, cpu: str = "8", memory: str = "32Gi") -> dict[str, Any]:
    return {"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": gpu}}}


def gpu_pod(node_name: str | None, gpus: int, phase: str = "Running") -> dict[str, Any]:
    return {"spec": {"nodeName": node_name, "containers": [
        {"resources": {"requests": {"cpu": "500m"}, "limits": {"nvidia.com/gpu": gpus}}}]},
        "status": {"phase": phase}}


def test_requests_sum_containers_and_limits_stand_in() -> None:
    assert pod_requests(gpu_pod("a", 2)) == {"cpu": 0.5, "memory": 0.0, "nvidia.com/gpu": 2.0}


def test_capacity_counts_only_bound_unfinished_pods() -> None:
    pods = [gpu_pod("a", 3), gpu_pod("a", 1), gpu_pod("a", 4, phase="Succeeded"),
            gpu_pod(None, 8), gpu_pod("b", 4)]
    assert capacity_violations(pods, [node("a"), node("b")]) == []
    [problem] = capacity_violations([*pods, gpu_pod("b", 1)], [node("a"), node("b")])
    assert "node b" in problem and "nvidia.com/gpu" in problem
    assert capacity_violations([pod("a", memory="40Gi")], [node("a")])


@pytest.mark.parametrize(("message", "path", "named"), [
    ('spec.workers.min: Invalid value: 5: must be <= max', "spec.workers.min", True),
    ("spec.globalBatchSize in body must be of type integer", "spec.globalBatchSize", True),
    ('Unsupported value: "ring"', "spec.mode", False),
    ("mode must be one of ps-sync", "spec.mode", True),
])
def test_names_field(message: str, path: str, named: bool) -> None:
    assert names_field(message, path) is named


def test_jct_comparison() -> None:
    comparison = JctComparison(elastic=(100.0, 50.0), fixed=(120.0, 90.0))
    assert comparison.elastic_total == 150 and comparison.fixed_average == 105
    assert "average 75.0 s" in comparison.describe()

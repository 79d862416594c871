"""The baseline policies: each one's defining behaviour on a small table-driven case."""

from __future__ import annotations

import pytest
from optimus.scheduling import POLICY_NAMES, Allocation, Resources, allocate, get_policy

from .support import job, node

ROOMY = {"cpu": 1000.0, "memory": 1e15}


def test_policy_names() -> None:
    assert POLICY_NAMES[0] == "optimus"
    assert set(POLICY_NAMES) == {"optimus", "optimus-paper", "drf", "tetris", "tiresias", "fixed"}
    for name in POLICY_NAMES:
        assert get_policy(name).name == name


def test_drf_shares_equally_and_keeps_the_ps_ratio() -> None:
    nodes = [node("n0", gpu=8, **ROOMY)]
    jobs = [
        job("a", min_ps=1, max_ps=8, max_workers=16, requested=Allocation(1, 2)),
        job("b", min_ps=1, max_ps=8, max_workers=16, arrival=1, requested=Allocation(1, 2)),
    ]
    result = allocate(jobs, nodes, "drf")
    assert result["a"].workers == result["b"].workers == 4  # 8 GPUs split evenly
    for a in result.values():
        assert a.ps == 2  # one PS per two workers, as requested


def test_drf_ignores_remaining_time_and_fills_to_max() -> None:
    nodes = [node("n0", gpu=8, **ROOMY)]
    # more workers do not help this job at all; DRF still gives it its max
    flat = job("flat", max_workers=3, remaining_time=lambda p, w: 100.0)
    assert allocate([flat], nodes, "drf")["flat"] == Allocation(0, 3)
    assert allocate([flat], nodes, "optimus")["flat"] == Allocation(0, 1)


def test_fixed_gives_the_requested_size_first_come_first_served() -> None:
    nodes = [node("n0", gpu=6, **ROOMY)]
    jobs = [
        job("first", requested=Allocation(0, 4), arrival=0),
        job("second", requested=Allocation(0, 4), arrival=1),  # waits: 4 + 4 > 6
        job("third", requested=Allocation(0, 99), max_workers=2, arrival=2),  # clipped to 2
    ]
    assert allocate(jobs, nodes, "fixed") == {
        "first": Allocation(0, 4),
        "second": Allocation(0, 0),
        "third": Allocation(0, 2),
    }


def test_tiresias_runs_the_least_attained_service_first() -> None:
    nodes = [node("n0", gpu=4, **ROOMY)]
    jobs = [
        job("old-hog", requested=Allocation(0, 4), arrival=0, attained_service=50_000),
        job("newcomer", requested=Allocation(0, 4), arrival=10, attained_service=0),
    ]
    assert allocate(jobs, nodes, "tiresias") == {
        "old-hog": Allocation(0, 0),
        "newcomer": Allocation(0, 4),
    }
    # within one queue it is first come first served
    same_queue = [
        job("a", requested=Allocation(0, 4), arrival=0, attained_service=100),
        job("b", requested=Allocation(0, 4), arrival=10, attained_service=0),
    ]
    assert allocate(same_queue, nodes, "tiresias")["a"] == Allocation(0, 4)
    # the queue edges are an option
    assert allocate(same_queue, nodes, "tiresias", queue_thresholds=(50.0,))["b"] == (
        Allocation(0, 4)
    )
    with pytest.raises(ValueError, match="increasing"):
        get_policy("tiresias", queue_thresholds=(10.0, 5.0))


def test_tetris_prefers_the_job_that_packs_better() -> None:
    # Free: 4 GPUs, 16 CPUs. A wants all 4 GPUs and 4 CPUs (aligned with the free
    # vector: 1.25); B wants no GPU and all 16 CPUs (1.0). Only one fits beside the other.
    nodes = [node("n0", gpu=4, cpu=16, memory=1e15)]
    a = job("a", requested=Allocation(0, 4), worker_request=Resources(1, 1, 0))
    b = job("b", min_workers=4, requested=Allocation(0, 4), worker_request=Resources(0, 4, 0),
            arrival=-1)
    result = allocate([a, b], nodes, "tetris", srtf_weight=0.0)
    assert result == {"a": Allocation(0, 4), "b": Allocation(0, 0)}


def test_tetris_srtf_term_prefers_the_shorter_job() -> None:
    nodes = [node("n0", gpu=4, **ROOMY)]
    long = job("long", work=1e6, requested=Allocation(0, 4), arrival=0)
    short = job("short", work=1e3, requested=Allocation(0, 4), arrival=1)
    assert allocate([long, short], nodes, "tetris") == {
        "long": Allocation(0, 0),
        "short": Allocation(0, 4),
    }


def test_tetris_falls_back_to_the_minimum() -> None:
    nodes = [node("n0", gpu=3, **ROOMY)]
    j = job("j", min_workers=2, requested=Allocation(0, 4))
    assert allocate([j], nodes, "tetris")["j"] == Allocation(0, 2)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_a_job_with_zero_minimums_still_gets_a_task(policy: str) -> None:
    nodes = [node("n0", gpu=4, **ROOMY)]
    j = job("j", min_workers=0, max_workers=4)
    assert allocate([j], nodes, policy)["j"].workers >= 1

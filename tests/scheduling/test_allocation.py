"""Step 4: the Optimus greedy allocator, its JCT-aware weighting, the restart-cost rule,
and the invariants every policy keeps on random clusters."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimus.scheduling import (
    POLICY_NAMES,
    Allocation,
    OptimusConfig,
    Resources,
    allocate,
    get_policy,
    marginal_gain,
)
from optimus.scheduling.greedy import (
    PAPER_CONFIG,
    gain_function,
    greedy_reference,
    remaining,
)

from .support import demand, free, job, jobs_strategy, node, nodes_strategy

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- the gain -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t_now", "t_next", "share", "exponent", "expected"),
    [
        (100.0, 50.0, 0.5, 0.0, 100.0),  # the paper: absolute cut per share
        (100.0, 50.0, 0.5, 1.0, (1 / 50 - 1 / 100) / 0.5),  # completion-rate gain
        (100.0, 50.0, 1.0, 0.5, 50 / math.sqrt(5000)),
        (math.inf, 50.0, 1.0, 1.0, math.inf),  # from no progress to some
        (math.inf, math.inf, 1.0, 0.0, 0.0),
        (50.0, 60.0, 1.0, 0.0, 0.0),  # slower is no gain
        (50.0, math.nan, 1.0, 0.0, 0.0),
        (0.0, 0.0, 1.0, 1.0, 0.0),  # finished: nothing to cut
    ],
)
def test_marginal_gain(
    t_now: float, t_next: float, share: float, exponent: float, expected: float
) -> None:
    assert marginal_gain(t_now, t_next, share, exponent) == pytest.approx(expected)


_TIMES = st.one_of(
    st.floats(0, 1e7), st.sampled_from([0.0, 1e-9, 1e-6, 2e-6, math.inf, math.nan])
)


@given(t_now=_TIMES, t_next=_TIMES, share=st.floats(0, 1),
       exponent=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_the_fast_gain_is_the_gain(
    t_now: float, t_next: float, share: float, exponent: float
) -> None:
    fast = gain_function(exponent)(t_now, t_next, share)
    slow = marginal_gain(t_now, t_next, share, exponent)
    assert fast == slow or (math.isclose(fast, slow, rel_tol=1e-12))


# ---- JCT-aware vs the paper's rule: who gets the contested worker ------------------------


@pytest.mark.parametrize(
    ("policy", "winner"),
    [("optimus", "short"), ("optimus-paper", "long")],
)
def test_jct_aware_gives_the_contested_worker_to_the_short_job(policy: str, winner: str) -> None:
    # Room for three workers: each job's minimum (one) plus one more. Both jobs scale
    # perfectly; the long one has 10x the work, so the paper's absolute cut favours it and
    # the completion-rate gain favours the job that will finish first.
    jobs = [job("long", work=10_000.0, arrival=0), job("short", work=1_000.0, arrival=1)]
    nodes = [node("n0", gpu=3, cpu=100, memory=1e15)]
    result = allocate(jobs, nodes, policy)
    loser = "long" if winner == "short" else "short"
    assert result[winner] == Allocation(0, 2)
    assert result[loser] == Allocation(0, 1)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_jct_exponent_is_the_knob(exponent: float) -> None:
    jobs = [job("long", work=10_000.0), job("short", work=1_000.0, arrival=1)]
    nodes = [node("n0", gpu=3, cpu=100, memory=1e15)]
    result = allocate(jobs, nodes, "optimus", jct_exponent=exponent)
    # exponent 0 is the paper (long wins); above 0.5 (the relative cut, a tie for jobs of
    # the same shape) the short job wins
    assert result["short" if exponent > 0 else "long"].workers == 2


# ---- the greedy itself --------------------------------------------------------------


def test_jobs_start_at_their_minimum_all_or_nothing_in_arrival_order() -> None:
    nodes = [node("n0", gpu=4, cpu=100, memory=1e15)]
    jobs = [
        job("first", min_workers=3, max_workers=3, arrival=0),
        job("second", min_workers=2, max_workers=4, arrival=1),  # does not fit: 3 + 2 > 4
        job("third", min_workers=1, max_workers=1, arrival=2),
    ]
    result = allocate(jobs, nodes)
    assert result == {
        "first": Allocation(0, 3),
        "second": Allocation(0, 0),
        "third": Allocation(0, 1),
    }


def test_grows_until_no_gain() -> None:
    # a job whose time stops improving after 3 workers gets 3 although 8 would fit
    jobs = [job("j", remaining_time=lambda p, w: 100.0 / min(w, 3) if w else math.inf)]
    result = allocate(jobs, [node("n0", gpu=8, cpu=100, memory=1e15)])
    assert result["j"] == Allocation(0, 3)


def test_ps_and_workers_both_grow_when_both_help() -> None:
    jobs = [job("j", work=10_000.0, overhead=50.0, min_ps=1, max_ps=8, max_workers=8)]
    result = allocate(jobs, [node("n0", gpu=8, cpu=64, memory=1e15)], "optimus-paper")
    assert result["j"].ps >= 2 and result["j"].workers == 8


def test_remaining_time_inf_or_nan_is_handled() -> None:
    nodes = [node("n0", gpu=8, cpu=100, memory=1e15)]
    jobs = [
        job("never", remaining_time=lambda p, w: math.inf),  # admitted, never grown
        job("needs-two", remaining_time=lambda p, w: math.inf if w < 2 else 100.0 / w,
            arrival=1),
        job("nan", remaining_time=lambda p, w: math.nan, arrival=2),
    ]
    result = allocate(jobs, nodes)
    assert result["never"] == Allocation(0, 1)
    assert result["nan"] == Allocation(0, 1)
    assert result["needs-two"].workers == 6  # all GPUs the other two minimums left


def test_selector_pool_bounds_the_allocation() -> None:
    nodes = [
        node("a100", gpu=2, cpu=100, memory=1e15, labels={"acc": "a100"}),
        node("v100", gpu=8, cpu=100, memory=1e15, labels={"acc": "v100"}),
    ]
    jobs = [job("pinned", max_workers=8, node_selector={"acc": "a100"})]
    assert allocate(jobs, nodes)["pinned"] == Allocation(0, 2)


def test_nested_pools_share_capacity() -> None:
    # the pinned job uses the A100 node's GPUs; the job allowed everywhere then cannot
    # count them again
    nodes = [
        node("a100", gpu=2, cpu=100, memory=1e15, labels={"acc": "a100"}),
        node("v100", gpu=2, cpu=100, memory=1e15, labels={"acc": "v100"}),
    ]
    jobs = [
        job("pinned", max_workers=8, node_selector={"acc": "a100"}),
        job("anywhere", max_workers=8, arrival=1),
    ]
    result = allocate(jobs, nodes)
    assert result["pinned"].workers + result["anywhere"].workers == 4
    assert result["pinned"].workers <= 2


def test_tainted_and_cordoned_nodes_only_count_for_tolerating_jobs() -> None:
    from .support import TAINT, TOLERATION

    nodes = [
        node("tainted", gpu=4, cpu=100, memory=1e15, taints=(TAINT,)),
        node("cordoned", gpu=4, cpu=100, memory=1e15, unschedulable=True),
        node("plain", gpu=1, cpu=100, memory=1e15),
    ]
    assert allocate([job("j")], nodes)["j"] == Allocation(0, 1)
    assert allocate([job("t", tolerations=(TOLERATION,))], nodes)["t"] == Allocation(0, 5)


def test_bad_input_names_the_job_and_field() -> None:
    nodes = [node("n0")]
    with pytest.raises(ValueError, match="'dup' is listed twice"):
        allocate([job("dup"), job("dup")], nodes)
    with pytest.raises(ValueError, match="'j': min_workers=3, max_workers=2"):
        allocate([job("j", min_workers=3, max_workers=2)], nodes)
    with pytest.raises(ValueError, match="worker_request"):
        allocate([job("j", worker_request=Resources(-1, 1, 1))], nodes)

    def broken(p: int, w: int) -> float:
        raise ZeroDivisionError("boom")

    with pytest.raises(ValueError, match=r"'b': remaining_time\(0, 1\) raised ZeroDivisionError"):
        allocate([job("b", remaining_time=broken)], nodes)
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        get_policy("nope")
    with pytest.raises(ValueError, match="bad option"):
        get_policy("drf", restart_cost_seconds=3)
    with pytest.raises(ValueError, match="restart_cost_seconds"):
        OptimusConfig(restart_cost_seconds=-1)
    with pytest.raises(ValueError, match="min_relative_gain"):
        OptimusConfig(min_relative_gain=1.0)


# ---- the restart cost ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t_at_3", "cost", "relative", "expected_workers"),
    [
        (80.0, 30.0, 0.0, 2),  # 80 + 30 >= 100: the grow does not pay for its restart
        (60.0, 30.0, 0.0, 3),  # 60 + 30 < 100: it does
        (80.0, 19.0, 0.0, 3),  # cheaper restarts make the same grow worth it
        (80.0, 20.0, 0.0, 2),  # equality is not enough: strictly shorter
        (65.0, 30.0, 0.1, 2),  # 65 + 30 < 100 but not < 90: within the hysteresis
        (55.0, 30.0, 0.1, 3),  # 55 + 30 < 90: beyond it
        (59.0, 30.0, None, 3),  # the default hysteresis is 10 %: 89 < 90
        (61.0, 30.0, None, 2),  # 91 is not < 90
    ],
)
def test_a_running_job_moves_only_when_the_move_pays_for_its_restart(
    t_at_3: float, cost: float, relative: float | None, expected_workers: int
) -> None:
    times = {1: 300.0, 2: 100.0, 3: t_at_3}
    running = job("r", max_workers=3, remaining_time=lambda p, w: times.get(w, math.inf),
                  current=Allocation(0, 2))
    nodes = [node("n0", gpu=8, cpu=100, memory=1e15)]
    options = {} if relative is None else {"min_relative_gain": relative}
    result = allocate([running], nodes, "optimus", restart_cost_seconds=cost, **options)
    assert result["r"] == Allocation(0, expected_workers)
    # the paper's rule ignores restarts and always grows
    assert allocate([running], nodes, "optimus-paper")["r"] == Allocation(0, 3)


def test_a_not_worth_it_grow_frees_room_for_a_queued_job() -> None:
    times = {1: 300.0, 2: 100.0, 3: 95.0}
    running = job("r", max_workers=3, remaining_time=lambda p, w: times.get(w, math.inf),
                  current=Allocation(0, 2), arrival=0)
    # the newcomer gains less per GPU than r's third worker (under the paper's rule), so
    # the greedy hands that GPU to r first; r's grow does not pay for its restart and is
    # reverted, and the GPU goes to the newcomer after all
    newcomer = job("new", min_workers=2, max_workers=3, arrival=1,
                   remaining_time=lambda p, w: {2: 1e4, 3: 1e4 - 1}.get(w, math.inf))
    nodes = [node("n0", gpu=5, cpu=100, memory=1e15)]
    result = allocate([running, newcomer], nodes, "optimus", jct_aware=False)
    assert result == {"r": Allocation(0, 2), "new": Allocation(0, 3)}


def test_a_shrink_forced_by_capacity_still_happens() -> None:
    # r runs on all 4 GPUs; a higher-priority job needs 2: r must shrink, restart or not,
    # even though it is about to finish (250 s left, under one restart cost)
    running = job("r", max_workers=4, current=Allocation(0, 4), arrival=5)
    urgent = job("u", min_workers=2, max_workers=2, priority=1, arrival=10)
    nodes = [node("n0", gpu=4, cpu=100, memory=1e15)]
    result = allocate([running, urgent], nodes, "optimus", restart_cost_seconds=1e9)
    assert result == {"r": Allocation(0, 2), "u": Allocation(0, 2)}


@pytest.mark.parametrize(("finishing_restarts", "kept"), [(1.0, True), (0.0, False)])
def test_a_job_about_to_finish_is_not_shrunk_for_a_newcomer(finishing_restarts: float,
                                                            kept: bool) -> None:
    # r finishes in 9 s on its 4 GPUs; shrinking it to make room would cost it a 10 s
    # restart and 29 s at one worker, while the newcomer's own restart means the room
    # helps it no sooner than r finishing frees it (a resize seen in the demo)
    times = {1: 29.0, 2: 16.0, 3: 12.0, 4: 9.0}
    running = job("r", max_workers=4, current=Allocation(0, 4), arrival=0,
                  remaining_time=lambda p, w: times.get(w, math.inf))
    newcomer = job("n", max_workers=4, arrival=5)
    nodes = [node("n0", gpu=4, cpu=100, memory=1e15)]
    result = allocate([running, newcomer], nodes, "optimus", restart_cost_seconds=10.0,
                      finishing_restarts=finishing_restarts)
    assert (result["r"] == Allocation(0, 4)) is kept
    assert (result["n"] == Allocation(0, 0)) is kept  # else the newcomer took r's room
    assert demand([running, newcomer], result).fits_in(free(nodes))


def test_current_outside_the_bounds_is_not_kept() -> None:
    running = job("r", min_workers=3, max_workers=4, current=Allocation(0, 1))
    result = allocate([running], [node("n0", gpu=4, cpu=100, memory=1e15)],
                      restart_cost_seconds=1e9)
    assert 3 <= result["r"].workers <= 4


# ---- properties on random clusters -----------------------------------------------------


@PROPERTY
@given(nodes=nodes_strategy(), jobs=jobs_strategy(), policy=st.sampled_from(POLICY_NAMES))
def test_every_policy_stays_within_capacity_and_bounds(policy: str, nodes, jobs) -> None:  # type: ignore[no-untyped-def]
    result = allocate(jobs, nodes, policy, now=1000.0)
    assert set(result) == {j.id for j in jobs}
    for j in jobs:
        a = result[j.id]
        assert a == Allocation(0, 0) or (
            j.min_ps <= a.ps <= j.max_ps and j.min_workers <= a.workers <= j.max_workers
        ), (j, a)
    assert demand(jobs, result).fits_in(free(nodes), eps=1e-6)


@PROPERTY
@given(nodes=nodes_strategy(), jobs=jobs_strategy())
def test_every_policy_is_deterministic_on_the_same_inputs(nodes, jobs) -> None:  # type: ignore[no-untyped-def]
    for name in POLICY_NAMES:
        assert allocate(jobs, nodes, name) == allocate(list(reversed(jobs)), nodes, name)


@PROPERTY
@given(nodes=nodes_strategy(plain=True), jobs=jobs_strategy(plain=True),
       exponent=st.sampled_from([0.0, 1.0]))
def test_the_heap_gives_exactly_the_naive_greedy(nodes, jobs, exponent: float) -> None:  # type: ignore[no-untyped-def]
    config = OptimusConfig(keep_running=False, jct_exponent=exponent)
    assert greedy_reference(jobs, nodes, config) == allocate(
        jobs, nodes, "optimus", keep_running=False, jct_exponent=exponent
    )
    assert greedy_reference(jobs, nodes, PAPER_CONFIG) == allocate(jobs, nodes, "optimus-paper")


@PROPERTY
@given(nodes=nodes_strategy(plain=True), jobs=jobs_strategy(plain=True), cost=st.floats(0, 1e4))
def test_running_jobs_move_only_when_it_pays_or_they_must(nodes, jobs, cost: float) -> None:  # type: ignore[no-untyped-def]
    result = allocate(jobs, nodes, "optimus", restart_cost_seconds=cost)
    for j in jobs:
        now, new = j.current, result[j.id]
        if now is None or now.ps + now.workers == 0 or new == now:
            continue
        if not (j.min_ps <= now.ps <= j.max_ps and j.min_workers <= now.workers <= j.max_workers):
            continue
        if new != Allocation(0, 0):
            t_new = remaining(j, new.ps, new.workers)  # NaN counts as inf (no progress)
            t_now = remaining(j, now.ps, now.workers)
            if t_new + cost < t_now:
                continue  # the move pays for its restart
        # otherwise the job could not keep its current allocation: it did not fit
        others = demand([x for x in jobs if x.id != j.id], result)
        assert not (others + j.demand(now)).fits_in(free(nodes), eps=0.0), (j.id, now, new)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_empty_inputs(policy: str) -> None:
    assert allocate([], [], policy) == {}
    assert allocate([job("a")], [], policy) == {"a": Allocation(0, 0)}

"""Step 5: placement invariants (no over-commit, whole or nothing, fewest nodes, even
spread, selectors and taints), stability of previous placements, and random clusters; and
`spread_place`, the model of the Kubernetes default scheduler's spreading that the
simulator can give the baselines (least allocated node per task)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimus.scheduling import (
    Allocation,
    JobPlacement,
    NodeView,
    Placement,
    ResizeCosts,
    Resources,
    Taint,
    Toleration,
    allocate,
    even_spread,
    place,
    spread_place,
)
from optimus.scheduling.cluster import tolerates

from .support import (
    PS,
    TAINT,
    TOLERATION,
    WORKER,
    GiB,
    check_placement,
    job,
    jobs_strategy,
    node,
    nodes_strategy,
)

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("ps", "workers", "k", "expected"),
    [
        (4, 8, 2, [(2, 2, 4)]),
        (1, 3, 2, [(1, 1, 1), (1, 0, 2)]),  # extra PS and extra worker on different nodes
        (3, 3, 2, [(1, 2, 1), (1, 1, 2)]),
        (2, 2, 3, [(1, 1, 1), (1, 1, 0), (1, 0, 1)]),  # more extras than nodes: one gets both
        (0, 5, 3, [(2, 0, 2), (1, 0, 1)]),
        (2, 1, 3, [(2, 1, 0), (1, 0, 1)]),
    ],
)
def test_even_spread(ps: int, workers: int, k: int, expected: list[tuple[int, int, int]]) -> None:
    bundles = even_spread(ps, workers, k)
    assert bundles == expected
    assert sum(n for n, _, _ in bundles) == k
    assert sum(n * p for n, p, _ in bundles) == ps
    assert sum(n * w for n, _, w in bundles) == workers


@given(ps=st.integers(0, 30), workers=st.integers(0, 30), data=st.data())
def test_even_spread_properties(ps: int, workers: int, data: st.DataObject) -> None:
    if ps + workers == 0:
        return
    k = data.draw(st.integers(1, ps + workers))
    bundles = even_spread(ps, workers, k)
    assert sum(n for n, _, _ in bundles) == k
    assert sum(n * p for n, p, _ in bundles) == ps
    assert sum(n * w for n, _, w in bundles) == workers
    assert all(p + w > 0 for _, p, w in bundles)  # no empty node
    tasks = [p + w for _, p, w in bundles]
    assert max(tasks) - min(tasks) <= 2
    if ps % k + workers % k <= k:  # then no node holds more than one task above another
        assert max(tasks) - min(tasks) <= 1


@pytest.mark.parametrize(
    ("workers", "ps", "node_gpus", "expected_nodes"),
    [
        (4, 0, 4, 1),  # fits one node
        (5, 0, 4, 2),  # fewest nodes is 2, split 3 + 2
        (8, 2, 4, 2),
        (12, 0, 4, 3),
        (3, 1, 8, 1),
    ],
)
def test_fewest_nodes_on_an_empty_cluster(
    workers: int, ps: int, node_gpus: int, expected_nodes: int
) -> None:
    nodes = [node(f"n{i}", gpu=node_gpus, cpu=64, memory=1e15) for i in range(6)]
    j = job("j", min_ps=ps, max_ps=ps, min_workers=workers, max_workers=workers)
    allocations = {"j": Allocation(ps, workers)}
    placement = place(allocations, [j], nodes)
    assert len(placement.jobs["j"].nodes) == expected_nodes
    check_placement(placement, allocations, [j], nodes)


def test_a_partly_used_cluster_takes_more_nodes_but_never_over_commits() -> None:
    nodes = [
        node("n0", gpu=4, cpu=64, memory=1e15, used=WORKER.scale(3)),
        node("n1", gpu=4, cpu=64, memory=1e15, used=WORKER.scale(2)),
        node("n2", gpu=4, cpu=64, memory=1e15, used=WORKER.scale(2)),
    ]
    j = job("j", min_workers=4, max_workers=4)
    placement = place({"j": Allocation(0, 4)}, [j], nodes)
    assert sorted(placement.jobs["j"].nodes) == ["n1", "n2"]  # 2 + 2, not 1 + 2 + 1
    check_placement(placement, {"j": Allocation(0, 4)}, [j], nodes)


def test_whole_or_nothing() -> None:
    nodes = [node("n0", gpu=2, cpu=64, memory=1e15), node("n1", gpu=1, cpu=64, memory=1e15)]
    big = job("big", min_workers=4, max_workers=4)
    small = job("small", min_workers=3, max_workers=3)
    allocations = {"big": Allocation(0, 4), "small": Allocation(0, 3)}
    placement = place(allocations, [big, small], nodes)
    assert placement.unplaceable == ("big",)
    assert len(placement.jobs["small"].worker_nodes) == 3
    check_placement(placement, allocations, [big, small], nodes)


def _labelled_tainted_cordoned() -> list[NodeView]:
    """One a100 node and three v100 ones: tainted NoSchedule, cordoned, and softly tainted
    (PreferNoSchedule, which does not keep pods off)."""
    return [
        node("a100", gpu=8, cpu=64, memory=1e15, labels={"acc": "a100"}),
        node("tainted", gpu=8, cpu=64, memory=1e15, labels={"acc": "v100"}, taints=(TAINT,)),
        node("cordoned", gpu=8, cpu=64, memory=1e15, labels={"acc": "v100"},
             unschedulable=True),
        node("soft", gpu=8, cpu=64, memory=1e15, labels={"acc": "v100"},
             taints=(Taint("spot", "", "PreferNoSchedule"),)),
    ]


def test_selectors_taints_and_cordons() -> None:
    nodes = _labelled_tainted_cordoned()
    jobs = [
        job("pinned", min_workers=2, max_workers=2, node_selector={"acc": "v100"}),
        job("tolerant", min_workers=8, max_workers=8, node_selector={"acc": "v100"},
            tolerations=(TOLERATION,), arrival=1),
        job("impossible", min_workers=1, max_workers=1, node_selector={"acc": "tpu"}),
    ]
    allocations = {"pinned": Allocation(0, 2), "tolerant": Allocation(0, 8),
                   "impossible": Allocation(0, 1)}
    placement = place(allocations, jobs, nodes)
    assert placement.jobs["pinned"].nodes == ("soft",)
    assert placement.jobs["tolerant"].nodes == ("tainted",)  # "soft" has only 6 GPUs left
    assert placement.unplaceable == ("impossible",)
    check_placement(placement, allocations, jobs, nodes)


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        (Toleration("k", "Equal", "v", "NoSchedule"), Taint("k", "v", "NoSchedule"), True),
        (Toleration("k", "Equal", "x", "NoSchedule"), Taint("k", "v", "NoSchedule"), False),
        (Toleration("k", "Exists", "", ""), Taint("k", "v", "NoExecute"), True),
        (Toleration("", "Exists", "", ""), Taint("any", "v", "NoSchedule"), True),
        (Toleration("", "Equal", "", ""), Taint("any", "", "NoSchedule"), False),
        (Toleration("k", "Equal", "v", "NoExecute"), Taint("k", "v", "NoSchedule"), False),
        (Toleration("other", "Exists", "", ""), Taint("k", "", "NoSchedule"), False),
    ],
)
def test_toleration_semantics(toleration: Toleration, taint: Taint, expected: bool) -> None:
    assert tolerates([toleration], taint) is expected


def test_unchanged_jobs_keep_their_nodes() -> None:
    nodes = [node(f"n{i}", gpu=4, cpu=64, memory=1e15) for i in range(3)]
    j = job("j", min_workers=2, max_workers=4)
    previous = Placement({"j": JobPlacement((), ("n2", "n2"))})
    placement = place({"j": Allocation(0, 2)}, [j], nodes, previous)
    assert placement.jobs["j"] == previous.jobs["j"]  # not moved to n0 although first-fit
    # a resize is placed afresh
    resized = place({"j": Allocation(0, 3)}, [j], nodes, previous)
    assert resized.jobs["j"] == JobPlacement((), ("n0", "n0", "n0"))


def test_a_job_that_cannot_grow_keeps_its_previous_placement() -> None:
    nodes = [node("n0", gpu=2, cpu=64, memory=1e15)]
    j = job("j", min_workers=1, max_workers=8)
    previous = Placement({"j": JobPlacement((), ("n0", "n0"))})
    placement = place({"j": Allocation(0, 3)}, [j], nodes, previous)
    assert placement.jobs["j"] == previous.jobs["j"]
    assert placement.unplaceable == ()


def test_a_previous_placement_on_a_gone_or_full_node_is_not_kept() -> None:
    nodes = [node("n0", gpu=2, cpu=64, memory=1e15)]
    j = job("j", min_workers=1, max_workers=8)
    gone = Placement({"j": JobPlacement((), ("n9", "n9", "n9"))})
    assert place({"j": Allocation(0, 3)}, [j], nodes, gone).unplaceable == ("j",)
    full = [node("n0", gpu=2, cpu=64, memory=1e15, used=WORKER)]
    kept = Placement({"j": JobPlacement((), ("n0", "n0"))})
    assert place({"j": Allocation(0, 3)}, [j], full, kept).unplaceable == ("j",)


def test_queued_jobs_are_not_placed_and_unknown_jobs_are_an_error() -> None:
    nodes = [node("n0")]
    j = job("j")
    assert place({"j": Allocation(0, 0)}, [j], nodes) == Placement({}, ())
    with pytest.raises(ValueError, match="unknown job 'ghost'"):
        place({"ghost": Allocation(0, 1)}, [j], nodes)


def test_ps_and_workers_spread_evenly_together() -> None:
    nodes = [node(f"n{i}", gpu=4, cpu=14, memory=1e15) for i in range(4)]
    j = job("j", min_ps=2, max_ps=2, min_workers=6, max_workers=6)
    placement = place({"j": Allocation(2, 6)}, [j], nodes)
    where = placement.jobs["j"]
    # 6 workers * 4 CPUs + 2 PS * 2 CPUs = 28 CPUs: two nodes of 14, one PS and 3 workers each
    assert len(where.nodes) == 2
    for name in where.nodes:
        assert (where.ps_nodes.count(name), where.worker_nodes.count(name)) == (1, 3)
    assert PS.cpu == 2 and WORKER.cpu == 4


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=nodes_strategy(), jobs=jobs_strategy(), policy=st.sampled_from(
    ["optimus", "optimus-paper", "drf", "tetris", "tiresias", "fixed"]))
def test_placement_invariants_on_random_clusters(nodes, jobs, policy: str) -> None:  # type: ignore[no-untyped-def]
    allocations = allocate(jobs, nodes, policy)
    placement = place(allocations, jobs, nodes)
    check_placement(placement, allocations, jobs, nodes)
    # placing again with the result as the previous placement keeps every placed job
    again = place(allocations, jobs, nodes, placement)
    check_placement(again, allocations, jobs, nodes, placement)
    for job_id, where in placement.jobs.items():
        assert again.jobs[job_id] == where


@PROPERTY
@given(nodes=nodes_strategy(plain=True, max_nodes=6), data=st.data())
def test_fewest_nodes_for_a_single_job(nodes, data: st.DataObject) -> None:  # type: ignore[no-untyped-def]
    workers = data.draw(st.integers(1, 12))
    ps = data.draw(st.integers(0, 3))
    j = job("j", min_ps=ps, max_ps=ps, min_workers=workers, max_workers=workers)
    allocations = {"j": Allocation(ps, workers)}
    placement = place(allocations, [j], nodes)
    check_placement(placement, allocations, [j], nodes)
    # brute force: the smallest k for which some k nodes hold an even spread (bundles
    # assigned greedily, biggest bundles to the roomiest nodes) is what place() found
    best = _fewest_by_brute_force(j, ps, workers, nodes)
    if best is None:
        assert placement.unplaceable == ("j",)
    else:
        assert len(placement.jobs["j"].nodes) == best


def _fewest_by_brute_force(j, ps: int, workers: int, nodes) -> int | None:  # type: ignore[no-untyped-def]
    from itertools import permutations

    for k in range(1, min(len(nodes), ps + workers) + 1):
        bundles = [
            (p, w) for count, p, w in even_spread(ps, workers, k) for _ in range(count)
        ]
        for chosen in permutations(nodes, k):
            if all(
                j.demand(Allocation(p, w)).fits_in(n.free, eps=1e-6)
                for (p, w), n in zip(bundles, chosen, strict=True)
            ):
                return k
    return None


def test_memory_bytes_never_over_commit_by_rounding() -> None:
    gib = 2.0**30
    nodes = [node("n0", gpu=8, cpu=64, memory=3 * 16 * gib)]
    j = job("j", min_workers=3, max_workers=4)
    placement = place({"j": Allocation(0, 4)}, [j], nodes)
    assert placement.unplaceable == ("j",)  # 4 * 16 GiB > 48 GiB
    assert not math.isnan(nodes[0].free.memory)


# ---- spread_place: the Kubernetes default scheduler's LeastAllocated spreading ----------


@pytest.mark.parametrize(
    ("used_workers", "ps", "workers", "expected_ps", "expected_workers", "packed"),
    [
        # empty identical nodes: one task per node, ties by name
        ([0, 0, 0, 0], 0, 4, (), ("n0", "n1", "n2", "n3"), 1),
        # each task to the least loaded node left at that moment (n2, then n1 ties n2)
        ([3, 1, 0, 2], 0, 3, (), ("n2", "n1", "n2"), 1),
        # the PS first; the workers then avoid its node, which has less free
        ([0, 0, 0], 1, 2, ("n0",), ("n1", "n2"), 1),
        # more tasks than nodes: round robin by load
        ([0, 0], 2, 4, ("n0", "n1"), ("n0", "n1", "n0", "n1"), 2),
    ],
)
def test_spread_puts_each_task_on_the_least_allocated_node(
    used_workers: list[int], ps: int, workers: int,
    expected_ps: tuple[str, ...], expected_workers: tuple[str, ...], packed: int,
) -> None:
    nodes = [node(f"n{i}", used=WORKER.scale(u)) for i, u in enumerate(used_workers)]
    j = job("j", min_ps=ps, max_ps=ps, min_workers=workers, max_workers=workers)
    allocations = {"j": Allocation(ps, workers)}
    placement = spread_place(allocations, [j], nodes)
    assert placement.jobs["j"] == JobPlacement(expected_ps, expected_workers)
    check_placement(placement, allocations, [j], nodes)  # even here: identical task sizes
    # Optimus's placement packs the same job on the fewest nodes instead
    assert len(place(allocations, [j], nodes).jobs["j"].nodes) == packed


def test_spread_scores_only_the_resources_a_task_asks_for() -> None:
    # n0's GPUs are mostly taken, n1's CPUs and memory: the PS (no GPU) goes to n0 (scored
    # on CPU and memory only; counting the GPU too would send it to n1), the worker to n1
    nodes = [node("n0", used=Resources(gpu=3)),
             node("n1", used=Resources(cpu=4, memory=16 * GiB))]
    j = job("j", min_ps=1, max_ps=1, min_workers=1, max_workers=1)
    placement = spread_place({"j": Allocation(1, 1)}, [j], nodes)
    assert placement.jobs["j"] == JobPlacement(("n0",), ("n1",))


def test_spread_respects_selectors_taints_and_cordons() -> None:
    nodes = _labelled_tainted_cordoned()
    jobs = [
        job("pinned", min_workers=2, max_workers=2, node_selector={"acc": "v100"}),
        job("tolerant", min_workers=4, max_workers=4, node_selector={"acc": "v100"},
            tolerations=(TOLERATION,), arrival=1),
        job("anywhere", min_workers=6, max_workers=6, arrival=2),
        job("impossible", min_workers=1, max_workers=1, node_selector={"acc": "tpu"}),
    ]
    allocations = {"pinned": Allocation(0, 2), "tolerant": Allocation(0, 4),
                   "anywhere": Allocation(0, 6), "impossible": Allocation(0, 1)}
    placement = spread_place(allocations, jobs, nodes)
    assert placement.jobs["pinned"].nodes == ("soft",)
    # "soft" holds 2 workers already: the tolerant job's first 2 go to the tainted node
    assert placement.jobs["tolerant"].worker_nodes == ("tainted", "tainted", "soft", "tainted")
    # never the cordoned node (the emptiest) nor the tainted one (not tolerated): a100 fills
    # up to soft's level, then the two take turns
    assert placement.jobs["anywhere"].worker_nodes == (
        "a100", "a100", "a100", "a100", "soft", "a100")
    assert placement.unplaceable == ("impossible",)


def test_spread_places_a_job_whole_or_not_at_all() -> None:
    nodes = [node("n0", gpu=2, cpu=64, memory=1e15), node("n1", gpu=1, cpu=64, memory=1e15)]
    big = job("big", min_workers=4, max_workers=4)
    small = job("small", min_workers=3, max_workers=3, arrival=1)
    allocations = {"big": Allocation(0, 4), "small": Allocation(0, 3)}
    placement = spread_place(allocations, [big, small], nodes)
    assert placement.unplaceable == ("big",)  # went first, took nothing
    assert sorted(placement.jobs["small"].worker_nodes) == ["n0", "n0", "n1"]


def test_spread_keeps_unchanged_jobs_and_places_resized_ones_afresh() -> None:
    nodes = [node(f"n{i}", gpu=4, cpu=64, memory=1e15) for i in range(3)]
    j = job("j", min_workers=2, max_workers=4)
    previous = Placement({"j": JobPlacement((), ("n2", "n2"))})
    kept = spread_place({"j": Allocation(0, 2)}, [j], nodes, previous)
    assert kept.jobs["j"] == previous.jobs["j"]  # not spread out although n0, n1 are emptier
    resized = spread_place({"j": Allocation(0, 3)}, [j], nodes, previous)
    assert resized.jobs["j"] == JobPlacement((), ("n0", "n1", "n2"))
    full = [node("n0", gpu=2, cpu=64, memory=1e15)]
    small = Placement({"j": JobPlacement((), ("n0", "n0"))})
    grown = spread_place({"j": Allocation(0, 3)}, [j], full, small)
    assert grown.jobs["j"] == small.jobs["j"] and grown.unplaceable == ()


def test_spread_orders_jobs_by_priority_then_arrival() -> None:
    nodes = [node("n0", gpu=1, cpu=64, memory=1e15)]
    early = job("early", min_workers=1, max_workers=1, arrival=0)
    urgent = job("urgent", min_workers=1, max_workers=1, arrival=5, priority=1)
    allocations = {"early": Allocation(0, 1), "urgent": Allocation(0, 1)}
    placement = spread_place(allocations, [early, urgent], nodes)
    assert set(placement.jobs) == {"urgent"} and placement.unplaceable == ("early",)


@PROPERTY
@given(nodes=nodes_strategy(), jobs=jobs_strategy(), policy=st.sampled_from(
    ["optimus", "drf", "tetris", "tiresias", "fixed"]))
def test_spread_never_over_commits_on_random_clusters(nodes, jobs, policy: str) -> None:  # type: ignore[no-untyped-def]
    allocations = allocate(jobs, nodes, policy)
    placement = spread_place(allocations, jobs, nodes)
    # check_placement with the placement as its own previous: every invariant but the even
    # spread, which is Optimus's rule, not the default scheduler's (no over-commit, whole
    # or nothing, eligible nodes only, every non-empty job placed or unplaceable)
    check_placement(placement, allocations, jobs, nodes, placement)
    for job_id, where in placement.jobs.items():  # with no previous, exactly the allocation
        a = allocations[job_id]
        assert (len(where.ps_nodes), len(where.worker_nodes)) == (a.ps, a.workers)
    # placing again with the result as the previous placement keeps every placed job
    again = spread_place(allocations, jobs, nodes, placement)
    check_placement(again, allocations, jobs, nodes, placement)
    for job_id, where in placement.jobs.items():
        assert again.jobs[job_id] == where



# ---- a worker change made in place keeps the running pods where they are -------------------
def _in_place(j):  # type: ignore[no-untyped-def]
    return replace(j, resize_costs=ResizeCosts(30.0, worker_change=1.0))


def test_a_worker_change_in_place_keeps_the_running_pods_and_fills_the_jobs_nodes_first() -> None:
    nodes = [node(f"n{i}", gpu=4, cpu=64, memory=1e15) for i in range(3)]
    j = _in_place(job("j", min_workers=1, max_workers=8))
    previous = Placement({"j": JobPlacement((), ("n2", "n2"))})
    # afresh this would be n0 x 3 (first fit, test_unchanged_jobs_keep_their_nodes)
    grown = place({"j": Allocation(0, 3)}, [j], nodes, previous)
    assert grown.jobs["j"] == JobPlacement((), ("n2", "n2", "n2"))
    # past the job's node: the rest first fit, the running ranks still in place
    wide = place({"j": Allocation(0, 6)}, [j], nodes, previous)
    assert wide.jobs["j"] == JobPlacement((), ("n2",) * 4 + ("n0",) * 2)
    # a shrink: the highest ranks leave
    before = Placement({"j": JobPlacement((), ("n1", "n2", "n2"))})
    assert place({"j": Allocation(0, 2)}, [j], nodes, before).jobs["j"] == JobPlacement(
        (), ("n1", "n2"))


def test_a_job_that_restarts_for_a_worker_change_is_placed_afresh() -> None:
    nodes = [node(f"n{i}", gpu=4, cpu=64, memory=1e15) for i in range(3)]
    j = job("j", min_workers=1, max_workers=8)  # no in-place worker change
    previous = Placement({"j": JobPlacement((), ("n2", "n2"))})
    assert place({"j": Allocation(0, 3)}, [j], nodes, previous).jobs["j"] == JobPlacement(
        (), ("n0", "n0", "n0"))


def test_a_worker_change_in_place_that_does_not_fit_is_placed_afresh() -> None:
    # the job's node is gone: extending is impossible, the fresh placement still works
    nodes = [node(f"n{i}", gpu=4, cpu=64, memory=1e15) for i in range(2)]
    j = _in_place(job("j", min_workers=1, max_workers=8))
    gone = Placement({"j": JobPlacement((), ("n9", "n9"))})
    assert place({"j": Allocation(0, 3)}, [j], nodes, gone).jobs["j"] == JobPlacement(
        (), ("n0", "n0", "n0"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=nodes_strategy(), jobs=jobs_strategy(), data=st.data())
def test_worker_changes_in_place_never_over_commit(  # type: ignore[no-untyped-def]
        nodes, jobs, data: st.DataObject) -> None:
    jobs = [_in_place(j) for j in jobs]
    by_id = {j.id: j for j in jobs}
    by_name = {n.name: n for n in nodes}
    placement = place(allocate(jobs, nodes, "fixed"), jobs, nodes)
    changed = {job_id: Allocation(len(where.ps_nodes), data.draw(
        st.integers(1, len(where.worker_nodes) + 3), label=job_id))
        for job_id, where in placement.jobs.items()}
    again = place(changed, jobs, nodes, placement)
    used = {n.name: Resources() for n in nodes}
    for job_id, where in again.jobs.items():
        j, old = by_id[job_id], placement.jobs[job_id]
        for names, request in ((where.ps_nodes, j.ps_request), (where.worker_nodes,
                                                                 j.worker_request)):
            for name in names:
                used[name] = used[name] + request
        if len(where.worker_nodes) != changed[job_id].workers:
            assert where == old  # could not be placed at its new size: kept as it was
    for name, amount in used.items():  # nothing over-committed
        assert amount.fits_in(by_name[name].free, eps=1e-6), (name, amount)


def test_a_ps_change_in_place_keeps_the_workers_and_the_staying_ps() -> None:
    nodes = [node(f"n{i}", gpu=4, cpu=64, memory=1e15) for i in range(3)]
    j = replace(job("j", min_ps=1, max_ps=4, min_workers=1, max_workers=8),
                resize_costs=ResizeCosts(30.0, ps_change=1.0))
    previous = Placement({"j": JobPlacement(("n2",), ("n1", "n2"))})
    grown = place({"j": Allocation(2, 2)}, [j], nodes, previous)
    assert grown.jobs["j"] == JobPlacement(("n2", "n1"), ("n1", "n2"))
    before = Placement({"j": JobPlacement(("n2", "n1"), ("n1", "n2"))})
    assert place({"j": Allocation(1, 2)}, [j], nodes, before).jobs["j"] == previous.jobs["j"]

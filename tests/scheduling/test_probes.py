"""The probe rules the operator and the simulator share (optimus.scheduling.probes)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimus.scheduling import Allocation, JobView, NodeView
from optimus.scheduling.probes import PROBE_PAYBACK_RESTARTS, fit_probes, probe_pays_back

from .support import demand, free, job, jobs_strategy, node, nodes_strategy


@pytest.mark.parametrize(("remaining", "cost", "pays"), [
    (PROBE_PAYBACK_RESTARTS * 30.0, 30.0, True),  # exactly enough time left
    (PROBE_PAYBACK_RESTARTS * 30.0 - 1, 30.0, False),
    (0.0, 30.0, False),
    (float("inf"), 30.0, True),  # unknown remaining time: keep probing
    (0.0, 0.0, True),  # restarts are free: a probe always pays
])
def test_a_probe_pays_back_only_with_enough_time_left(remaining: float, cost: float,
                                                      pays: bool) -> None:
    assert probe_pays_back(remaining, cost) is pays


def _pair(gpus: int) -> tuple[list[JobView], list[NodeView], dict[str, tuple[Allocation, ...]]]:
    # "old" holds 2 workers; "new" runs 1 and would measure 3, then 2
    old = job("old", max_workers=4, current=Allocation(0, 2), arrival=0)
    new = job("new", max_workers=4, current=Allocation(0, 1), arrival=1)
    return [old, new], [node("n0", gpu=gpus, cpu=100, memory=1e15)], {
        "new": (Allocation(0, 3), Allocation(0, 2))}


@pytest.mark.parametrize(("gpus", "chosen"), [
    (6, Allocation(0, 3)),  # room for the first choice
    (4, Allocation(0, 2)),  # only the second fits beside what "old" holds
    (3, None),  # only by shrinking "old": no probe, the job is left to the policy
])
def test_a_probe_fits_beside_what_the_others_hold(gpus: int, chosen: Allocation | None) -> None:
    jobs, nodes, wanted = _pair(gpus)
    assert fit_probes(jobs, nodes, wanted) == {"new": chosen}


def test_earlier_jobs_choose_their_probes_first() -> None:
    first = job("a", max_workers=4, current=Allocation(0, 1), arrival=0)
    second = job("b", max_workers=4, current=Allocation(0, 1), arrival=1)
    wanted = {"a": (Allocation(0, 3), Allocation(0, 2)), "b": (Allocation(0, 3),
                                                               Allocation(0, 2))}
    nodes = [node("n0", gpu=5, cpu=100, memory=1e15)]
    # reversed input order: the policy's order (arrival), not the caller's, decides
    assert fit_probes([second, first], nodes, wanted) == {"a": Allocation(0, 3),
                                                          "b": Allocation(0, 2)}


def test_nothing_to_probe() -> None:
    jobs, nodes, _ = _pair(4)
    assert fit_probes(jobs, nodes, {}) == {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=nodes_strategy(plain=True), jobs=jobs_strategy(plain=True), data=st.data())
def test_probes_take_only_what_the_others_leave(nodes, jobs, data) -> None:  # type: ignore[no-untyped-def]
    running = [j for j in jobs if j.current is not None]
    probing = data.draw(st.lists(st.sampled_from(running), unique_by=lambda j: j.id)
                        if running else st.just([]))
    wanted = {j.id: tuple(Allocation(data.draw(st.integers(j.min_ps, j.max_ps)),
                                     data.draw(st.integers(j.min_workers, j.max_workers)))
                          for _ in range(data.draw(st.integers(1, 3))))
              for j in probing}
    chosen = fit_probes(jobs, nodes, wanted)
    assert set(chosen) == set(wanted)
    assert all(probe is None or probe in wanted[k] for k, probe in chosen.items())
    none = Allocation(0, 0)
    others = {j.id: none if j.id in wanted else j.current or Allocation(j.min_ps, j.min_workers)
              for j in jobs}
    if demand(jobs, others).fits_in(free(nodes), eps=1e-6):
        # the others keep what they hold (no neighbour shrinks), and the probes fit beside it
        with_probes = {**others, **{k: probe or none for k, probe in chosen.items()}}
        assert demand(jobs, with_probes).fits_in(free(nodes), eps=1e-6)

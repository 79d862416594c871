"""Per-kind resize costs in the simulator: a worker change its mode makes in place pays
`in_place_worker_change_cost`, everything else `restart_cost`, and the round the simulator
runs is charged the same costs (optimus.scheduling.types.ResizeCosts)."""

from __future__ import annotations

import pytest
from optimus.scheduling.types import Allocation, ResizeCosts
from optimus.simulation.engine import SimulationConfig, resize_costs, simulate
from optimus.simulation.generator import generate_trace

from tests.simulation.test_sim_engine import CLUSTER, SURFACES, TABLE

TRACE = generate_trace(TABLE, jobs=12, mean_interarrival=300.0, seed=11, epochs=(12, 30),
                       hours=(0.2, 1.0))


@pytest.mark.parametrize(("mode", "worker_change", "ps_change"), [
    ("allreduce", 2.0, None),
    ("ps-sync", 2.0, 3.0),
    ("ps-async", 2.0, 3.0),
])
def test_the_config_gives_each_mode_its_kinds(mode: str, worker_change: float | None,
                                              ps_change: float | None) -> None:
    config = SimulationConfig(restart_cost=40.0, in_place_worker_change_cost=2.0,
                              in_place_ps_change_cost=3.0)
    assert resize_costs(config, mode) == ResizeCosts(40.0, worker_change, ps_change)
    # unset: every move is a restart
    assert resize_costs(SimulationConfig(restart_cost=40.0), mode) == ResizeCosts(40.0)


@pytest.mark.parametrize(("current", "new", "seconds"), [
    (Allocation(0, 2), Allocation(0, 4), 2.0),  # a worker change, made in place
    (Allocation(1, 2), Allocation(2, 2), 40.0),  # a PS change: this job restarts for it
    (Allocation(1, 2), Allocation(2, 3), 40.0),  # both: a restart
    (Allocation(1, 2), Allocation(1, 2), 0.0),
])
def test_a_move_costs_its_kind(current: Allocation, new: Allocation, seconds: float) -> None:
    assert ResizeCosts(40.0, worker_change=2.0).seconds(current, new) == seconds


def test_changes_in_place_are_charged_their_own_price() -> None:
    # the generated trace is ps-sync, whose PS changes the config prices at 1 s in place
    config = SimulationConfig(policy="optimus", restart_cost=45.0, round_on_arrival=False,
                              in_place_ps_change_cost=1.0)
    result = simulate(TRACE, SURFACES, CLUSTER, config)
    in_place_moves = 0
    for outcome in result.outcomes:
        # rounds every 60 s cut no pause short: each start or move is charged in full, a
        # restart (the first start among them) 45 s, a change in place 1 s
        restarts = next((a for a in range(1, outcome.starts + 1) if outcome.restart_seconds
                         == pytest.approx(45.0 * a + 1.0 * (outcome.starts - a))), None)
        assert restarts is not None, outcome
        in_place_moves += outcome.starts - restarts
    assert in_place_moves > 0, "no change was made in place: the test proves nothing"
    # the same trace with every move a restart: every start and move pays 45 s
    restart_only = simulate(TRACE, SURFACES, CLUSTER, SimulationConfig(
        policy="optimus", restart_cost=45.0, round_on_arrival=False))
    assert all(o.restart_seconds == pytest.approx(45.0 * o.starts)
               for o in restart_only.outcomes)

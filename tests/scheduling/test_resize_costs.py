"""The allocator charges a running job the cost of the kind of move it would make
(JobView.resize_costs: a worker change in place, a PS change in place, a restart) instead
of the one restart cost, and the one restart cost when the job has none."""

from __future__ import annotations

import math

import pytest
from optimus.scheduling import Allocation, ResizeCosts, allocate

from .support import job, node

TIMES = {1: 300.0, 2: 100.0, 3: 80.0}  # growing 2 -> 3 saves 20 s


@pytest.mark.parametrize(("costs", "expected_workers"), [
    (None, 2),  # the policy's 30 s restart: 80 + 30 >= 90, it stays
    (ResizeCosts(restart=30.0), 2),  # the same, said by the job
    (ResizeCosts(restart=30.0, worker_change=5.0), 3),  # in place: 80 + 5 < 90, it grows
    (ResizeCosts(restart=30.0, ps_change=0.0), 2),  # a PS change in place does not help
    (ResizeCosts(restart=1.0), 3),  # its own cheap restart: it grows
])
def test_a_running_job_pays_the_cost_of_the_kind_of_move(
        costs: ResizeCosts | None, expected_workers: int) -> None:
    running = job("r", max_workers=3, remaining_time=lambda p, w: TIMES.get(w, math.inf),
                  current=Allocation(0, 2), resize_costs=costs)
    nodes = [node("n0", gpu=8, cpu=100, memory=1e15)]
    result = allocate([running], nodes, "optimus", restart_cost_seconds=30.0)
    assert result["r"] == Allocation(0, expected_workers)

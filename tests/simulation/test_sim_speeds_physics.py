"""Speed surfaces (interpolated ground truth), network slowdown and generated loss curves."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from optimus.models.loss import ConvergenceRule, converged_epoch
from optimus.scheduling.types import JobPlacement, Resources
from optimus.simulation.inputs import SpeedRow
from optimus.simulation.physics import (
    cross_fraction,
    curve_for_epochs,
    fewest_nodes_cross_fraction,
    network_factor,
)
from optimus.simulation.speeds import surface_from_rows

ROWS = [SpeedRow("m", p, w, s) for p, w, s in [
    (1, 1, 10.0), (1, 3, 20.0), (3, 1, 14.0), (3, 3, 30.0), (5, 1, 15.0), (1, 5, 18.0)]]


def test_surface_is_exact_at_measured_points_and_linear_between() -> None:
    surface = surface_from_rows(ROWS)
    for row in ROWS:
        assert surface.samples_per_sec(row.ps, row.workers) == row.samples_per_sec
    assert surface.samples_per_sec(2, 1) == 12.0  # halfway between 10 and 14
    assert surface.samples_per_sec(1, 2) == 15.0


def test_surface_clamps_outside_the_measured_range() -> None:
    surface = surface_from_rows(ROWS)
    assert surface.samples_per_sec(0, 1) == surface.samples_per_sec(1, 1)
    assert surface.samples_per_sec(50, 50) == surface.samples_per_sec(5, 5)
    assert surface.samples_per_sec(3, 0) == 0.0
    # (5, 5) lies outside the measured points' hull: the nearest measurement answers
    assert surface.samples_per_sec(5, 5) in {row.samples_per_sec for row in ROWS}


def test_one_dimensional_rows_interpolate_along_workers() -> None:
    rows = [SpeedRow("r", 0, 1, 10.0), SpeedRow("r", 0, 5, 30.0)]
    surface = surface_from_rows(rows)
    assert surface.samples_per_sec(0, 3) == 20.0
    assert surface.samples_per_sec(0, 9) == 30.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8), st.floats(1, 100)),
                min_size=1, max_size=20, unique_by=lambda t: (t[0], t[1])),
       st.integers(0, 12), st.integers(1, 12))
def test_surface_stays_within_measured_speeds(points: list[tuple[int, int, float]], ps: int,
                                              workers: int) -> None:
    surface = surface_from_rows([SpeedRow("h", p, w, s) for p, w, s in points])
    speeds = [s for _, _, s in points]
    value = surface.samples_per_sec(ps, workers)
    assert min(speeds) - 1e-9 <= value <= max(speeds) + 1e-9


def test_cross_fraction() -> None:
    assert cross_fraction(("a", "a"), ("a", "a", "a")) == 0.0
    assert cross_fraction(("a", "b"), ("a", "b")) == 0.5
    assert cross_fraction(("a",), ("b", "b")) == 1.0
    assert cross_fraction((), ("a", "a")) == 0.0
    assert cross_fraction((), ("a", "b", "a", "b")) == 0.5


def test_network_factor_penalises_spread_placements_only() -> None:
    node = Resources(8, 64, 1e12)
    ps_request, worker_request = Resources(0, 2, 1), Resources(1, 4, 1)
    c_min = fewest_nodes_cross_fraction(2, 4, ps_request, worker_request, node)
    assert c_min == 0.0
    packed = JobPlacement(("a", "a"), ("a", "a", "a", "a"))
    spread = JobPlacement(("a", "b"), ("c", "c", "d", "d"))
    assert network_factor(packed, 10.0, c_min) == 1.0
    slow = network_factor(spread, 10.0, c_min)
    assert math.isclose(slow, 1 / 1.5)
    assert network_factor(spread, 1.0, c_min) < slow  # slower network, bigger penalty
    # a job too big for one node was measured across two: that spread costs nothing extra
    c_two = fewest_nodes_cross_fraction(2, 12, ps_request, worker_request, node)
    assert c_two == 0.5
    assert network_factor(JobPlacement(("a", "b"), ("a",) * 6 + ("b",) * 6), 10.0, c_two) == 1


@settings(max_examples=80, deadline=None)
@given(st.integers(11, 300), st.sampled_from([0.01, 0.05, 0.2]), st.sampled_from([5, 10]))
def test_generated_loss_curve_converges_at_the_trace_epochs(epochs: int, delta: float,
                                                            window: int) -> None:
    curve = curve_for_epochs(epochs, delta, window)
    rule = ConvergenceRule(delta, window, 10_000)
    assert converged_epoch(curve, rule) == max(epochs, window + 1)
    assert curve.b0 > 0 and curve.b1 > 0

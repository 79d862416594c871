"""The simulator's step split (optimus.simulation.physics.emulated_split): the white-box
prior seeded from it predicts the surface it was emulated from."""

from __future__ import annotations

import numpy as np
import pytest
from optimus.models import SpeedParams, predict_speed, prior_from_split
from optimus.simulation.physics import emulated_split, equation_of_surface, true_model_speed
from optimus.simulation.speeds import SpeedSurface

BATCH = 32
TRUTH = SpeedParams("ps-sync", float(BATCH), (0.01, 0.05, 0.2, 0.01, 0.0))


def _surface() -> SpeedSurface:
    grid = np.array([[predict_speed(TRUTH, p, w) * BATCH for w in range(1, 9)]
                     for p in range(1, 7)])  # samples/s: job steps/s of M samples
    return SpeedSurface("synthetic", 1, 6, 1, 8, grid)


def test_the_split_of_a_surface_seeds_a_prior_that_predicts_it() -> None:
    surface = _surface()
    equation = equation_of_surface(surface, "ps-sync", BATCH)
    assert equation is not None
    speed = true_model_speed(surface.samples_per_sec(2, 3), "ps-sync", BATCH, 3)
    split = emulated_split(equation, 2, 3, speed, speed, bandwidth_gbps=10.0)
    assert split is not None and split.bandwidth == pytest.approx(10e9 / 8)
    assert split.step_seconds == pytest.approx(1.0 / speed)
    prior = prior_from_split("ps-sync", BATCH, 2, 3, split)
    errors = [abs(predict_speed(prior, p, w) / predict_speed(TRUTH, p, w) - 1)
              for p in range(1, 7) for w in range(1, 9)]
    assert max(errors) < 0.03  # the surface fit is shrunk a little, not exact


def test_a_slower_placement_adds_to_the_communication_only() -> None:
    surface = _surface()
    equation = equation_of_surface(surface, "ps-sync", BATCH)
    assert equation is not None
    speed = true_model_speed(surface.samples_per_sec(2, 4), "ps-sync", BATCH, 4)
    fast = emulated_split(equation, 2, 4, speed, speed, 10.0)
    slow = emulated_split(equation, 2, 4, speed, speed * 0.8, 10.0)
    assert fast is not None and slow is not None
    assert slow.compute_seconds == pytest.approx(fast.compute_seconds)
    assert slow.communication_seconds == pytest.approx(
        fast.communication_seconds + 1.0 / (0.8 * speed) - 1.0 / speed)

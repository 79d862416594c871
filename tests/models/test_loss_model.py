"""The loss model: recovery, scale, outliers, the convergence rule and its confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from optimus.models import (
    ConvergenceRule,
    LossParams,
    ModelError,
    converged_epoch,
    estimate_convergence,
    fit_loss,
    loss_at,
)

TRUE = LossParams(b0=0.05, b1=0.5, b2=0.3)


def _curve(params: LossParams, epochs: np.ndarray) -> np.ndarray:
    return np.array([loss_at(params, float(k)) for k in epochs])


def _max_relative_gap(fitted: LossParams, truth: LossParams, epochs: np.ndarray) -> float:
    return float(np.max(np.abs(_curve(fitted, epochs) / _curve(truth, epochs) - 1)))


curves = st.builds(
    LossParams,
    b0=st.floats(min_value=0.01, max_value=1.0),
    b1=st.floats(min_value=0.2, max_value=5.0),
    b2=st.floats(min_value=0.0, max_value=1.0),
)


@settings(max_examples=40, deadline=None)
@given(
    truth=curves,
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    noise=st.floats(min_value=0.0, max_value=0.01),
    seed=st.integers(0, 2**16),
)
def test_fit_recovers_a_known_curve_from_noisy_points(
    truth: LossParams, scale: float, noise: float, seed: int
) -> None:
    epochs = np.arange(0.0, 40.0)
    rng = np.random.default_rng(seed)
    scaled = LossParams(truth.b0 / scale, truth.b1 / scale, truth.b2 * scale)
    losses = _curve(scaled, epochs) * (1 + noise * rng.normal(size=len(epochs)))
    fit = fit_loss(epochs, losses)
    assert min(fit.params.b0, fit.params.b1, fit.params.b2) >= 0
    assert _max_relative_gap(fit.params, scaled, epochs) <= 4 * noise + 0.01
    assert fit.points_used + fit.points_rejected == len(epochs)
    assert 0 <= fit.rmse <= 4 * noise + 0.01


def test_exact_points_recover_the_parameters() -> None:
    epochs = np.arange(0.0, 30.0)
    fit = fit_loss(epochs, _curve(TRUE, epochs))
    assert (fit.params.b0, fit.params.b1, fit.params.b2) == pytest.approx(
        (TRUE.b0, TRUE.b1, TRUE.b2), rel=1e-4
    )
    assert fit.points_rejected == 0 and fit.rmse < 1e-6


@settings(max_examples=30, deadline=None)
@given(factor=st.floats(min_value=1e-4, max_value=1e4), seed=st.integers(0, 2**16))
def test_the_fit_is_scale_free(factor: float, seed: int) -> None:
    epochs = np.arange(0.0, 25.0)
    losses = _curve(TRUE, epochs) * (1 + 0.01 * np.random.default_rng(seed).normal(size=25))
    base = fit_loss(epochs, losses)
    scaled = fit_loss(epochs, losses * factor)
    assert scaled.points_rejected == base.points_rejected
    assert scaled.rmse == pytest.approx(base.rmse, rel=1e-3, abs=1e-9)
    assert _max_relative_gap(scaled.params, LossParams(
        base.params.b0 / factor, base.params.b1 / factor, base.params.b2 * factor
    ), epochs) < 1e-3


@settings(max_examples=40, deadline=None)
@given(
    positions=st.sets(st.integers(3, 36), min_size=1, max_size=5),
    kinds=st.lists(st.sampled_from(["nan", "inf", "spike", "dip"]), min_size=5, max_size=5),
)
def test_outliers_are_rejected_and_counted(positions: set[int], kinds: list[str]) -> None:
    epochs = np.arange(0.0, 40.0)
    losses = _curve(TRUE, epochs)
    for position, kind in zip(sorted(positions), kinds, strict=False):
        losses[position] = {
            "nan": math.nan,
            "inf": math.inf,
            "spike": losses[position] * 3,
            "dip": losses[position] * 0.5,
        }[kind]
    fit = fit_loss(epochs, losses)
    assert fit.points_rejected == len(positions)
    assert fit.points_used == len(epochs) - len(positions)
    assert _max_relative_gap(fit.params, TRUE, epochs) < 0.01


def test_recent_points_weigh_more() -> None:
    """A curve whose regime changes halfway (e.g. a learning-rate drop): with recency weight
    the fit follows the recent half more closely than a uniform fit does."""
    early = _curve(LossParams(0.05, 0.5, 0.6), np.arange(0.0, 20.0))
    late = _curve(LossParams(0.2, 0.5, 0.2), np.arange(20.0, 40.0))
    epochs = np.arange(0.0, 40.0)
    losses = np.concatenate([early, late])

    def late_error(weight: float) -> float:
        fitted = fit_loss(epochs, losses, recency_weight=weight).params
        return float(np.mean(np.abs(_curve(fitted, epochs[30:]) - losses[30:])))

    assert late_error(30.0) < late_error(1.0)


def test_a_flat_history_is_a_documented_fallback_not_an_error() -> None:
    fit = fit_loss([0, 1, 2, 3, 4], [0.7] * 5)
    assert fit.params.b0 == 0
    assert loss_at(fit.params, 100) == pytest.approx(0.7)
    estimate = estimate_convergence(fit, ConvergenceRule(window=10), epochs_done=4)
    assert estimate.converged_epoch == 10 and estimate.remaining_epochs == 6


@pytest.mark.parametrize(
    ("epochs", "losses", "message"),
    [
        ([0, 1], [1.0, 0.9], "3 epochs"),
        ([0, 0, 0, 1], [1.0, 0.9, 0.8, 0.7], "2 distinct"),
        ([0, 1, 2, 3], [1.0, math.nan, math.nan, 0.5], "3 epochs"),
        ([0, 1, 2], [1.0, 0.9], "one loss per epoch"),
        ([0, 1, -2], [1.0, 0.9, 0.8], "epoch"),
        ([0, 1, math.nan], [1.0, 0.9, 0.8], "epoch"),
        ([0, 1, 2], [1.0, -0.9, 0.8], "negative"),
        ([], [], "0 distinct"),
    ],
)
def test_degenerate_histories_raise_a_clear_model_error(
    epochs: list[float], losses: list[float], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        fit_loss(epochs, losses)


def test_recency_weight_must_be_positive() -> None:
    with pytest.raises(ModelError, match="recency_weight"):
        fit_loss([0, 1, 2], [1.0, 0.9, 0.8], recency_weight=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss_delta": 0}, "loss_delta"),
        ({"window": 0}, "window"),
        ({"max_epochs": 0}, "max_epochs"),
    ],
)
def test_bad_rules_raise(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        ConvergenceRule(**kwargs)  # type: ignore[arg-type]


def _brute_force_epoch(params: LossParams, rule: ConvergenceRule) -> int:
    for k in range(rule.window, rule.max_epochs + 1):
        if loss_at(params, k - rule.window) - loss_at(params, k) < rule.loss_delta:
            return k
    return rule.max_epochs


@settings(max_examples=200, deadline=None)
@given(
    params=curves,
    delta=st.floats(min_value=1e-4, max_value=0.5),
    window=st.integers(1, 30),
    max_epochs=st.integers(1, 3000),
)
def test_converged_epoch_is_the_first_epoch_the_rule_holds(
    params: LossParams, delta: float, window: int, max_epochs: int
) -> None:
    rule = ConvergenceRule(delta, window, max_epochs)
    epoch = converged_epoch(params, rule)
    assert epoch == min(_brute_force_epoch(params, rule), max_epochs)


def test_rule_defaults_are_the_papers() -> None:
    assert ConvergenceRule() == ConvergenceRule(loss_delta=0.05, window=10, max_epochs=100)
    # l(k-10) - l(k) < 0.05 first at k = 59 for TRUE (checked by brute force too).
    assert converged_epoch(TRUE, ConvergenceRule()) == _brute_force_epoch(TRUE, ConvergenceRule())


@settings(max_examples=40, deadline=None)
@given(truth=curves, seed=st.integers(0, 2**16), cut=st.integers(5, 39))
def test_confidence_is_bounded_and_grows_as_the_curve_is_seen(
    truth: LossParams, seed: int, cut: int
) -> None:
    epochs = np.arange(0.0, 40.0)
    losses = _curve(truth, epochs) * (1 + 0.002 * np.random.default_rng(seed).normal(size=40))
    rule = ConvergenceRule(loss_delta=0.01)
    early = estimate_convergence(fit_loss(epochs[:cut], losses[:cut]), rule, cut - 1)
    full_fit = fit_loss(epochs, losses)
    full = estimate_convergence(full_fit, rule, 39)
    for estimate, done in ((early, cut - 1), (full, 39)):
        assert 0.0 <= estimate.confidence <= 1.0
        assert estimate.remaining_epochs == max(0.0, estimate.converged_epoch - done)
        assert estimate.converged_epoch <= rule.max_epochs
    # Same fit, more epochs done: never less confident.
    assume(full.converged_epoch > 0)
    later = estimate_convergence(full_fit, rule, 60)
    assert later.confidence >= full.confidence


def test_a_noisy_fit_is_less_confident() -> None:
    epochs = np.arange(0.0, 40.0)
    clean = _curve(TRUE, epochs)
    noisy = clean * (1 + 0.05 * np.random.default_rng(1).normal(size=40))
    rule = ConvergenceRule()
    assert (
        estimate_convergence(fit_loss(epochs, noisy), rule, 39).confidence
        < estimate_convergence(fit_loss(epochs, clean), rule, 39).confidence
    )

"""The resource-speed model: recovery from noisy synthetic data, units, degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optimus.models import (
    THETA_NAMES,
    ModelError,
    SpeedMode,
    SpeedParams,
    SpeedSample,
    fit_speed,
    parse_mode,
    predict_speed,
    remaining_seconds,
    samples_per_second,
)

GRID = [(p, w) for p in range(1, 13) for w in range(1, 13)]
TRAIN = [(p, w) for p, w in GRID if (p * 7 + w * 3) % 5 == 0]  # 28 scattered configurations


def _true_speed(mode: SpeedMode, theta: tuple[float, ...], batch: float, p: int, w: int) -> float:
    return predict_speed(SpeedParams(mode, batch, theta), p, w)


def _samples(
    mode: SpeedMode,
    theta: tuple[float, ...],
    batch: float,
    configs: list[tuple[int, int]],
    noise: float,
    seed: int,
) -> list[SpeedSample]:
    rng = np.random.default_rng(seed)
    return [
        SpeedSample(p, w, _true_speed(mode, theta, batch, p, w) * (1 + noise * rng.normal()))
        for p, w in configs
    ]


def _mape(params: SpeedParams, theta: tuple[float, ...], configs: list[tuple[int, int]]) -> float:
    truth = SpeedParams(params.mode, params.batch_size, theta)
    errors = [abs(predict_speed(params, p, w) / predict_speed(truth, p, w) - 1) for p, w in configs]
    return float(np.mean(errors))


positive = st.floats(min_value=0.01, max_value=1.0)
maybe_zero = st.one_of(st.just(0.0), positive)


@settings(max_examples=40, deadline=None)
@given(
    theta=st.tuples(
        st.floats(min_value=1e-3, max_value=0.05), positive, positive, maybe_zero, maybe_zero
    ),
    batch=st.sampled_from([16.0, 32.0, 128.0]),
    noise=st.floats(min_value=0.0, max_value=0.03),
    seed=st.integers(0, 2**16),
)
def test_sync_fit_recovers_known_model_from_noisy_samples(
    theta: tuple[float, ...], batch: float, noise: float, seed: int
) -> None:
    params = fit_speed(_samples("ps-sync", theta, batch, TRAIN, noise, seed), "sync", batch)
    assert params.mode == "ps-sync" and all(t >= 0 for t in params.theta)
    assert _mape(params, theta, GRID) <= 2 * noise + 0.03


@settings(max_examples=40, deadline=None)
@given(
    theta=st.tuples(positive, positive, maybe_zero, maybe_zero),
    noise=st.floats(min_value=0.0, max_value=0.03),
    seed=st.integers(0, 2**16),
)
def test_async_fit_recovers_known_model_from_noisy_samples(
    theta: tuple[float, ...], noise: float, seed: int
) -> None:
    params = fit_speed(_samples("ps-async", theta, 32.0, TRAIN, noise, seed), "async", 32.0)
    assert _mape(params, theta, GRID) <= 2 * noise + 0.03


@settings(max_examples=40, deadline=None)
@given(
    theta=st.tuples(st.floats(min_value=1e-3, max_value=0.05), positive, maybe_zero, maybe_zero),
    noise=st.floats(min_value=0.0, max_value=0.03),
    seed=st.integers(0, 2**16),
)
def test_allreduce_fit_recovers_known_model_with_ps_fixed_at_zero(
    theta: tuple[float, ...], noise: float, seed: int
) -> None:
    configs = [(0, w) for w in range(1, 17)]
    params = fit_speed(_samples("allreduce", theta, 64.0, configs, noise, seed), "allreduce", 64.0)
    assert _mape(params, theta, configs) <= 2 * noise + 0.03
    # p plays no part in all-reduce.
    assert predict_speed(params, 0, 4) == predict_speed(params, 7, 4)


@pytest.mark.parametrize(
    ("mode", "theta"),
    [
        ("ps-sync", (0.01, 0.2, 0.5, 0.02, 0.03)),
        ("ps-async", (0.3, 0.4, 0.02, 0.01)),
    ],
)
def test_exact_samples_and_no_shrinkage_recover_theta(
    mode: SpeedMode, theta: tuple[float, ...]
) -> None:
    samples = _samples(mode, theta, 32.0, TRAIN, 0.0, 0)
    params = fit_speed(samples, mode, 32.0, shrinkage=0.0)
    assert params.theta == pytest.approx(theta, rel=1e-6, abs=1e-9)
    assert set(params.named()) == set(THETA_NAMES[mode])


def test_allreduce_exact_samples_give_exact_predictions() -> None:
    """All-reduce's M/w and (w-1)/w terms are collinear with 1: theta is not unique, but
    every theta that fits gives the same predictions."""
    theta = (0.01, 0.1, 0.3, 0.02)
    configs = [(0, w) for w in range(1, 13)]
    params = fit_speed(_samples("allreduce", theta, 32.0, configs, 0.0, 0), "allreduce", 32.0,
                       shrinkage=0.0)
    assert _mape(params, theta, [(0, w) for w in range(1, 33)]) < 1e-9


def test_shrinkage_matters_only_with_few_samples() -> None:
    theta = (0.01, 0.2, 0.5, 0.02, 0.03)
    many = _samples("ps-sync", theta, 32.0, GRID, 0.0, 0)
    assert _mape(fit_speed(many, "sync", 32.0), theta, GRID) < 0.01


def test_speed_unit_is_fitted_directly_and_batch_scale_is_absorbed() -> None:
    """f(p, w) is fitted to steps/s as given; M's scale only rescales t0."""
    theta = (0.01, 0.2, 0.5, 0.02, 0.03)
    samples = _samples("ps-sync", theta, 32.0, TRAIN, 0.0, 0)
    per_worker = fit_speed(samples, "sync", 32.0, shrinkage=0.0)
    doubled = fit_speed(samples, "sync", 64.0, shrinkage=0.0)
    assert doubled.theta[0] == pytest.approx(per_worker.theta[0] / 2)
    for p, w in GRID:
        assert predict_speed(doubled, p, w) == pytest.approx(predict_speed(per_worker, p, w))


def test_samples_per_second_follows_the_batch_scope() -> None:
    theta = (0.01, 0.2, 0.5, 0.02, 0.03)
    per_worker = SpeedParams("ps-sync", 32.0, theta)
    global_batch = SpeedParams("ps-sync", 32.0, theta, batch_scope="global")
    steps = predict_speed(per_worker, 2, 4)
    assert samples_per_second(per_worker, 2, 4) == pytest.approx(steps * 32.0)
    assert samples_per_second(global_batch, 2, 4) == pytest.approx(steps * 32.0 / 4)


def test_async_equation_matches_the_paper() -> None:
    theta = (0.3, 0.4, 0.02, 0.01)
    params = SpeedParams("ps-async", 32.0, theta)
    p, w = 3, 5
    expected = w / (theta[0] + theta[1] * w / p + theta[2] * w + theta[3] * p)
    assert predict_speed(params, p, w) == pytest.approx(expected)


def test_sync_equation_matches_the_paper() -> None:
    theta = (0.01, 0.2, 0.5, 0.02, 0.03)
    params = SpeedParams("ps-sync", 64.0, theta)
    p, w = 3, 5
    expected = 1 / (theta[0] * 64 / w + theta[1] + theta[2] * w / p + theta[3] * w + theta[4] * p)
    assert predict_speed(params, p, w) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "mode"),
    [("sync", "ps-sync"), ("PS-SYNC", "ps-sync"), ("async", "ps-async"), ("ps-async", "ps-async"),
     ("allreduce", "allreduce"), ("dist_sync", "ps-sync")],
)
def test_mode_spellings(text: str, mode: str) -> None:
    assert parse_mode(text) == mode


def _good(n: int = 6) -> list[SpeedSample]:
    return [SpeedSample(p, w, 1.0 + p / w) for p, w in TRAIN[:n]]


@pytest.mark.parametrize(
    ("samples", "mode", "batch", "message"),
    [
        ([], "sync", 32.0, "distinct"),
        (_good(4), "sync", 32.0, "at least 5"),
        ([SpeedSample(2, 3, 1.0)] * 10, "sync", 32.0, "1 distinct"),
        ([*_good(), SpeedSample(2, 2, 0.0)], "sync", 32.0, "failing"),
        ([*_good(), SpeedSample(2, 2, -1.0)], "sync", 32.0, "positive"),
        ([*_good(), SpeedSample(2, 2, math.nan)], "sync", 32.0, "positive"),
        ([*_good(), SpeedSample(2, 2, math.inf)], "sync", 32.0, "finite"),
        ([*_good(), SpeedSample(0, 2, 1.0)], "sync", 32.0, "allreduce"),
        ([*_good(), SpeedSample(1, 0, 1.0)], "async", 32.0, ">= 1 worker"),
        (_good(), "sync", 0.0, "batch_size"),
        (_good(), "sync", math.nan, "batch_size"),
        (_good(), "ring", 32.0, "unknown speed mode"),
    ],
)
def test_degenerate_input_raises_a_clear_model_error(
    samples: list[SpeedSample], mode: str, batch: float, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        fit_speed(samples, mode, batch)


def test_predict_rejects_configurations_outside_the_model() -> None:
    params = fit_speed(_good(), "sync", 32.0)
    with pytest.raises(ModelError, match="parameter server"):
        predict_speed(params, 0, 3)
    with pytest.raises(ModelError, match="worker"):
        predict_speed(params, 1, 0)


def test_a_model_without_time_at_a_configuration_is_an_error_not_inf() -> None:
    params = SpeedParams("allreduce", 32.0, (0.0, 0.0, 0.0, 1.0))
    with pytest.raises(ModelError, match="no time per step"):
        predict_speed(params, 0, 1)


@settings(max_examples=30, deadline=None)
@given(
    speeds=st.lists(st.floats(min_value=1e-3, max_value=1e4), min_size=6, max_size=6),
    p=st.integers(1, 64),
    w=st.integers(1, 64),
)
def test_predictions_are_always_positive_and_finite(speeds: list[float], p: int, w: int) -> None:
    samples = [SpeedSample(cp, cw, s) for (cp, cw), s in zip(TRAIN[:6], speeds, strict=True)]
    for mode in ("ps-sync", "ps-async"):
        speed = predict_speed(fit_speed(samples, mode, 32.0), p, w)
        assert math.isfinite(speed) and speed > 0


def test_remaining_seconds_is_epochs_times_samples_over_throughput() -> None:
    params = SpeedParams("ps-sync", 32.0, (0.01, 0.2, 0.5, 0.02, 0.03))
    seconds = remaining_seconds(params, 2, 4, remaining_epochs=3, samples_per_epoch=6400)
    assert seconds == pytest.approx(3 * 6400 / samples_per_second(params, 2, 4))
    # More epochs or more samples per epoch never take less time.
    assert remaining_seconds(params, 2, 4, 4, 6400) > seconds
    assert remaining_seconds(params, 2, 4, 0, 6400) == 0.0


def test_remaining_seconds_is_infinite_where_no_progress_is_possible() -> None:
    params = SpeedParams("ps-sync", 32.0, (0.01, 0.2, 0.5, 0.02, 0.03))
    assert remaining_seconds(params, 0, 4, 3, 6400) == math.inf
    assert remaining_seconds(params, 2, 0, 3, 6400) == math.inf
    with pytest.raises(ModelError, match="samples_per_epoch"):
        remaining_seconds(params, 2, 4, 3, 0)
    with pytest.raises(ModelError, match="remaining_epochs"):
        remaining_seconds(params, 2, 4, math.nan, 6400)

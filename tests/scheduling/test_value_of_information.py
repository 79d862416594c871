"""Value of information: the error bands derived from the fits (optimus.models.confidence),
the move rule that weighs them (optimus.scheduling.greedy.move_pays), the probe rule
(optimus.scheduling.probes.probe_pays_back), and how the round hands them to a policy that
weighs them (PolicyTraits.weighs_uncertainty)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimus.models import SpeedParams
from optimus.models.confidence import (
    EXTRAPOLATION_FACTOR,
    PRIOR_BAND_FEW,
    UNKNOWN_BAND,
    convergence_band,
    speed_band,
)
from optimus.round.knowledge import Knowledge, Oracle
from optimus.scheduling import POLICY_TRAITS, Allocation, allocate
from optimus.scheduling.greedy import move_pays
from optimus.scheduling.probes import MAX_WORK_BAND, PROBE_PAYBACK_RESTARTS, probe_pays_back

from .support import job, jobs_strategy, node, nodes_strategy

SOURCES = ("oracle", "measured", "model", "extrapolated", "nearest", "unknown")
times = st.floats(0.0, 1e7, allow_nan=False)
bands = st.floats(0.0, 2.0, allow_nan=False)
errors = st.floats(0.0, 3.0, allow_nan=False)


# ---- the bands -------------------------------------------------------------------------


@given(st.sampled_from(SOURCES), st.one_of(st.none(), errors), st.integers(0, 50),
       st.integers(1, 5))
def test_every_band_is_within_zero_and_unknown(source: str, error: float | None,
                                               configs: int, parameters: int) -> None:
    band = speed_band(source, error, configs, parameters)  # type: ignore[arg-type]
    assert 0.0 <= band <= UNKNOWN_BAND
    if source == "oracle":
        assert band == 0.0
    if source in ("nearest", "unknown") or error is None:
        assert band == UNKNOWN_BAND or source == "oracle"


@given(errors, st.integers(1, 50), st.integers(1, 5))
def test_a_measurement_is_never_less_certain_than_the_model_nor_the_model_than_a_guess(
        error: float, configs: int, parameters: int) -> None:
    ladder = [speed_band(s, error, configs, parameters)  # type: ignore[arg-type]
              for s in SOURCES]
    assert ladder == sorted(ladder)


@given(st.floats(0.0, 0.2), st.integers(1, 40), st.integers(1, 5))
def test_more_configurations_never_widen_the_model_band(error: float, configs: int,
                                                        parameters: int) -> None:
    assert (speed_band("model", error, configs + 1, parameters)
            <= speed_band("model", error, configs, parameters))


def test_the_band_numbers() -> None:
    assert speed_band("measured", 0.1, 10, 5) == pytest.approx(0.1)
    assert speed_band("model", 0.1, 5, 5) == pytest.approx(0.1 * math.sqrt(2))
    assert speed_band("extrapolated", 0.1, 5, 5) == pytest.approx(
        EXTRAPOLATION_FACTOR * 0.1 * math.sqrt(2))
    assert speed_band("model", math.nan, 5, 5) == UNKNOWN_BAND


def test_convergence_bands() -> None:
    assert convergence_band(oracle=True, confidence=None) == 0.0
    assert convergence_band(oracle=False, confidence=None) == UNKNOWN_BAND
    assert convergence_band(oracle=False, confidence=0.8) == pytest.approx(0.2)
    assert convergence_band(oracle=False, confidence=None, from_prior=True,
                            prior_epochs=(30.0,)) == PRIOR_BAND_FEW
    # finished jobs at 20 and 40 epochs: mean 30, sample deviation 14.1
    assert convergence_band(oracle=False, confidence=None, from_prior=True,
                            prior_epochs=(20.0, 40.0)) == pytest.approx(math.sqrt(200) / 30)
    assert convergence_band(oracle=False, confidence=None, from_prior=True,
                            prior_epochs=(30.0, 30.0, 30.0)) == 0.0


def _knowledge(**fields: object) -> Knowledge:
    speed = SpeedParams("ps-sync", 32.0, (1.0, 0.1, 0.1, 0.01, 0.01), "per-worker")
    base = Knowledge(speed=speed, remaining_epochs=10.0, samples_per_epoch=1000.0,
                     measured={(1, 1): 1.0, (2, 2): 2.0}, speed_error=0.1,
                     fit_configs=frozenset({(1, 1), (2, 2), (1, 2), (2, 1), (2, 3)}))
    return replace(base, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("knowledge", "config", "source"), [
    (_knowledge(), (2, 2), "measured"),
    (_knowledge(), (1, 3), "model"),  # inside the fitted configurations' box
    (_knowledge(), (4, 2), "extrapolated"),  # more PS than any fitted configuration
    (_knowledge(speed=None), (4, 2), "unknown"),
    (_knowledge(speed=None, speed_samples=((1, 1, 1.0),)), (4, 2), "nearest"),
    (_knowledge(oracle=Oracle(1.0, lambda p, w: 1.0)), (4, 2), "oracle"),
])
def test_where_an_answer_comes_from(knowledge: Knowledge, config: tuple[int, int],
                                    source: str) -> None:
    assert knowledge.speed_source(*config) == source
    band = knowledge.speed_band(*config)
    assert band == speed_band(source, knowledge.speed_error,  # type: ignore[arg-type]
                              len(knowledge.fit_configs), 5)


# ---- the move rule ---------------------------------------------------------------------


@given(times, times, st.floats(0.0, 1e4), st.floats(0.0, 0.9))
def test_a_zero_band_is_the_restart_rule(t_now: float, t_next: float, cost: float,
                                         hysteresis: float) -> None:
    assert move_pays(t_now, t_next, cost, hysteresis, 0.0) is (
        t_next + cost < t_now * (1.0 - hysteresis))


@given(times, times, st.floats(0.0, 1e4), st.floats(0.0, 0.9), bands, bands)
def test_a_wider_band_never_lets_a_move_pass_that_a_narrower_one_stops(
        t_now: float, t_next: float, cost: float, hysteresis: float, a: float,
        b: float) -> None:
    narrow, wide = sorted((a, b))
    if move_pays(t_now, t_next, cost, hysteresis, wide):
        assert move_pays(t_now, t_next, cost, hysteresis, narrow)


def _running(band: float | None) -> list:
    # 2 -> 3 workers cuts the remaining time 100 -> 60 s: 60 + 10 < 90 passes the 10 %
    # hysteresis, and 60 * (1 + band) + 10 < 90 passes a band below 1/3
    times = {1: 300.0, 2: 100.0, 3: 60.0}
    return [job("r", max_workers=3, remaining_time=lambda p, w: times.get(w, math.inf),
                current=Allocation(0, 2),
                speed_band=None if band is None else (lambda p, w: band))]


@pytest.mark.parametrize(("band", "workers"), [
    (None, 3),  # exact knowledge (an oracle's): the restart rule alone
    (0.0, 3),
    (0.3, 3),  # 78 + 10 < 90
    (0.34, 2),  # 80.4 + 10 >= 90: the gain is within the band, the job stays
    (UNKNOWN_BAND, 2),
])
def test_a_move_within_the_band_does_not_happen(band: float | None, workers: int) -> None:
    nodes = [node("n0", gpu=8, cpu=100, memory=1e15)]
    result = allocate(_running(band), nodes, "optimus", restart_cost_seconds=10.0)
    assert result["r"] == Allocation(0, workers)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs_strategy(max_jobs=6, plain=True), nodes_strategy(), bands, bands)
def test_a_wider_band_never_makes_more_moves(jobs: list, nodes: list, a: float,
                                             b: float) -> None:
    narrow, wide = sorted((a, b))

    def moves(band: float) -> set[str]:
        views = [replace(j, speed_band=lambda p, w, band=band: band) for j in jobs]
        result = allocate(views, nodes, "optimus", restart_cost_seconds=5.0)
        return {j.id for j in views if j.current is not None
                and j.current.ps + j.current.workers > 0 and result[j.id] != j.current}

    assert len(moves(wide)) <= len(moves(narrow))


def test_only_the_policy_that_weighs_uncertainty_is_told_the_bands() -> None:
    assert POLICY_TRAITS["optimus"].weighs_uncertainty
    assert not any(POLICY_TRAITS[name].weighs_uncertainty
                   for name in ("optimus-paper", "drf", "tetris", "tiresias", "fixed"))


# ---- the probe rule --------------------------------------------------------------------


@given(times, st.floats(0.0, 1e4))
def test_an_unknown_speed_and_exact_work_is_the_rule_before_the_bands(
        remaining: float, cost: float) -> None:
    assert probe_pays_back(remaining, cost) is (
        not remaining < PROBE_PAYBACK_RESTARTS * cost)
    assert probe_pays_back(remaining, cost, UNKNOWN_BAND, 0.0) is probe_pays_back(
        remaining, cost)


@given(times, st.floats(0.0, 1e4), bands, bands, bands, bands)
def test_narrower_bands_never_start_a_probe_that_wider_ones_do_not(
        remaining: float, cost: float, s1: float, s2: float, w1: float, w2: float) -> None:
    speed_narrow, speed_wide = sorted((s1, s2))
    work_narrow, work_wide = sorted((w1, w2))
    # a narrower speed band promises less; a wider work band leaves less time surely left
    if probe_pays_back(remaining, cost, speed_narrow, work_narrow):
        assert probe_pays_back(remaining, cost, speed_wide, work_narrow)
    if probe_pays_back(remaining, cost, speed_narrow, work_wide):
        assert probe_pays_back(remaining, cost, speed_narrow, work_narrow)


@pytest.mark.parametrize(("remaining", "speed", "work", "pays"), [
    (1000.0, 0.2, 0.0, True),  # saves 200 s >= 4 restarts of 30 s
    (1000.0, 0.1, 0.0, False),  # 100 s < 120 s
    (1000.0, 0.2, 0.5, False),  # only half the time is sure: 100 s
    (1000.0, 0.2, 0.9, False),  # the work band counts at most MAX_WORK_BAND
    (2000.0, 0.2, 0.9, True),  # 2000 * (1 - 0.5) * 0.2 = 200 s
    (math.inf, 0.0, 0.0, True),  # an unknown remaining time keeps probing
])
def test_a_probe_repays_its_restarts_by_its_expected_saving(
        remaining: float, speed: float, work: float, pays: bool) -> None:
    assert MAX_WORK_BAND == 0.5
    assert probe_pays_back(remaining, 30.0, speed, work) is pays


@settings(max_examples=20, deadline=None)
@given(jobs_strategy(max_jobs=4, plain=True), nodes_strategy())
def test_without_bands_the_allocation_is_the_one_before(jobs: list, nodes: list) -> None:
    zero = [replace(j, speed_band=lambda p, w: 0.0) for j in jobs]
    assert (allocate(zero, nodes, "optimus", restart_cost_seconds=5.0)
            == allocate(jobs, nodes, "optimus", restart_cost_seconds=5.0))

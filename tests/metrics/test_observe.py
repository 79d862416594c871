"""Prometheus series into observations: loss per epoch, speed of the measured generation
after its warm-up, samples per epoch, and the query names from the worker contract."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus.metrics.observe import (
    QUERIES,
    SPLIT_QUERIES,
    SpeedWindow,
    first_step_at,
    longest_rise,
    loss_per_epoch,
    observations_from_series,
)
from optimus.metrics.prometheus import PrometheusError, Series, parse_result
from optimus_worker import contract

KEY = ("ml", "mnist")


def _labels(generation: int) -> dict[str, str]:
    return {"namespace": "ml", "job": "mnist", "generation": str(generation)}


def _series(generation: int, points: list[tuple[float, float]]) -> Series:
    return Series(_labels(generation), tuple(points))


def test_queries_use_the_contract_names() -> None:
    assert f"{contract.METRIC_STEPS}_total" in QUERIES["steps"]
    assert f"{contract.METRIC_SAMPLES}_total" in QUERIES["samples"]
    assert contract.METRIC_EPOCH in QUERIES["epoch"]
    assert contract.METRIC_LOSS in QUERIES["loss"]
    for expr in QUERIES.values():
        assert "by (namespace, job, generation)" in expr


def test_loss_is_paired_with_whole_epochs() -> None:
    epoch = _series(0, [(t, t * 0.5) for t in range(10)])  # 0.0 .. 4.5 epochs
    loss = _series(0, [(t, 9.0 if t < 2 else 1.0 / (t // 2)) for t in range(10)])
    assert loss_per_epoch(epoch, loss) == [(1.0, 1.0), (2.0, 0.5), (3.0, 1 / 3), (4.0, 0.25)]


def test_speed_counts_only_after_the_warm_up_of_the_measured_generation() -> None:
    steps = [_series(1, [(t, 100.0 + 5 * t) for t in range(0, 50)]),
             _series(2, [(t, 0.0 if t < 55 else 10.0 * (t - 55)) for t in range(50, 80)])]
    samples = [_series(2, [(t, 0.0 if t < 55 else 640.0 * (t - 55)) for t in range(50, 80)])]
    epoch = [_series(2, [(t, 0.0 if t < 55 else 0.1 * (t - 55)) for t in range(50, 80)])]
    results = {"steps": steps, "samples": samples, "epoch": epoch, "loss": []}
    obs = observations_from_series(results, {KEY: SpeedWindow(2, since=60.0)}, min_span=5)[KEY]
    assert obs.generation == 2
    assert obs.speed == pytest.approx(10.0)
    assert obs.samples_per_epoch == pytest.approx(6400.0)
    assert obs.epoch == pytest.approx(2.4)
    short = observations_from_series(results, {KEY: SpeedWindow(2, since=76.0)}, min_span=5)
    assert short[KEY].speed is None  # not measured long enough yet


def test_speed_counts_from_the_first_step_when_the_workers_join_after_the_warm_up() -> None:
    # the pods ran at t=50 and the warm-up ended at 55, but the workers joined at t=62
    steps = [_series(3, [(t, 0.0 if t <= 62 else 4.0 * (t - 62)) for t in range(50, 90)])]
    results = {"steps": steps, "samples": [], "epoch": [], "loss": []}
    obs = observations_from_series(results, {KEY: SpeedWindow(3, since=55.0)}, min_span=5)
    assert obs[KEY].speed == pytest.approx(4.0)  # not diluted by the 7 s of waiting
    waiting = {"steps": [_series(3, [(t, 0.0) for t in range(50, 90)])], "samples": [],
               "epoch": [], "loss": []}
    assert observations_from_series(waiting, {KEY: SpeedWindow(3, since=55.0)},
                                    min_span=5)[KEY].speed is None


def test_samples_per_epoch_ignores_the_epoch_gauge_jumping_to_the_checkpoint() -> None:
    # a new generation: its pods run at t=50, the chief restores epoch 3.0 at t=58 and the
    # first step lands at t=59; 1,600 samples a second, 0.1 epoch a second from then on
    steps = [_series(4, [(t, 0.0 if t < 59 else 10.0 * (t - 58)) for t in range(50, 90)])]
    samples = [_series(4, [(t, 0.0 if t < 59 else 1600.0 * (t - 58)) for t in range(50, 90)])]
    epoch = [_series(4, [(t, 0.0 if t < 58 else 3.0 + 0.1 * max(0, t - 58))
                         for t in range(50, 90)])]
    results = {"steps": steps, "samples": samples, "epoch": epoch, "loss": []}
    obs = observations_from_series(results, {KEY: SpeedWindow(4, since=55.0)}, min_span=5)
    assert obs[KEY].samples_per_epoch == pytest.approx(16000.0)
    assert obs[KEY].speed == pytest.approx(10.0)


def test_a_worker_leaving_ends_the_measurement_instead_of_dragging_it_down() -> None:
    # two workers of 5 steps/s each from t=60; at t=80 one stops (its series goes away),
    # and the sum falls to the other's count; at t=85 the other stops too
    def summed(t: int, per_worker: float) -> float:
        one = per_worker * max(0, min(t, 85) - 60)
        return one + (per_worker * max(0, t - 60) if t < 80 else 0.0)
    steps = [_series(2, [(t, summed(t, 5.0)) for t in range(58, 86)])]
    samples = [_series(2, [(t, summed(t, 320.0)) for t in range(58, 86)])]
    epoch = [_series(2, [(t, 0.04 * max(0, t - 60)) for t in range(58, 86)])]
    results = {"steps": steps, "samples": samples, "epoch": epoch, "loss": []}
    obs = observations_from_series(results, {KEY: SpeedWindow(2, since=58.0)}, min_span=5)
    assert obs[KEY].speed == pytest.approx(10.0)
    assert obs[KEY].samples_per_epoch == pytest.approx(16000.0)


@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=0, max_size=30))
def test_thelongest_rise_never_falls_and_is_a_contiguous_run(values: list[float]) -> None:
    points = [(float(t), v) for t, v in enumerate(values)]
    rise = longest_rise(points)
    assert all(b[1] >= a[1] for a, b in pairwise(rise))
    if points:
        start = points.index(rise[0])
        assert points[start:start + len(rise)] == rise


def test_unknown_jobs_observe_nothing() -> None:
    obs = observations_from_series({}, {KEY: None}, min_span=1)[KEY]
    assert obs.series == 0 and obs.epoch is None and obs.speed is None


@given(st.lists(st.floats(min_value=0, max_value=50), min_size=1, max_size=60))
def test_loss_points_have_unique_whole_epochs(progress: list[float]) -> None:
    epochs = sorted(progress)
    epoch = _series(0, [(float(t), e) for t, e in enumerate(epochs)])
    loss = _series(0, [(float(t), 1.0) for t in range(len(epochs))])
    points = loss_per_epoch(epoch, loss)
    ks = [k for k, _ in points]
    assert ks == sorted(set(ks)) and all(k >= 1 and k == int(k) for k in ks)


def test_result_parsing() -> None:
    vector = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"job": "a"}, "value": [1.5, "2"]}]}}
    assert parse_result(vector) == [Series({"job": "a"}, ((1.5, 2.0),))]
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[1, "1"], [2, "NaN"], [3, "3"]]}]}}
    assert parse_result(matrix)[0].points == ((1.0, 1.0), (3.0, 3.0))
    with pytest.raises(PrometheusError, match="bad_data"):
        parse_result({"status": "error", "errorType": "bad_data", "error": "parse error"})


@pytest.mark.parametrize(("points", "first"), [
    ([(10.0, 0.0), (11.0, 0.0), (12.0, 3.0), (13.0, 9.0)], 12.0),  # seen at 0, then stepping
    ([(10.0, 2.0), (11.0, 5.0)], None),  # already stepping in the first sample: unknown when
    ([(10.0, 0.0), (11.0, 0.0)], None),  # not stepping yet
    ([], None),
])
def test_the_first_step_is_timed_only_when_seen_from_before_it(
        points: list[tuple[float, float]], first: float | None) -> None:
    assert first_step_at(_series(3, points)) == first
    assert first_step_at(None) is None


def test_the_observation_times_the_newest_generations_first_step() -> None:
    old = _series(1, [(0.0, 0.0), (1.0, 4.0), (2.0, 8.0)])
    new = _series(2, [(5.0, 0.0), (6.0, 0.0), (7.0, 2.0)])
    (observation,) = observations_from_series({"steps": [old, new]}, {KEY: None},
                                              min_span=1.0).values()
    assert observation.generation == 2 and observation.first_step_at == 7.0


def _phase(generation: int, phase: str, points: list[tuple[float, float]]) -> Series:
    return Series({**_labels(generation), contract.LABEL_PHASE: phase}, tuple(points))


def test_the_split_is_the_mean_per_step_over_the_speed_window() -> None:
    # generation 2 steps from t=60 at 2 worker steps/s: each takes 0.3 s of compute and
    # 0.2 s of communication and moves 4 MB; its PS updates take 0.01 s each. Before the
    # window (t < 60) a warm-up step of 5 s compute must not count.
    ts = range(56, 90)

    def rate(per_second: float, t: int, offset: float = 0.0) -> float:
        return offset + per_second * max(0, t - 60)

    steps = [_series(2, [(t, rate(2.0, t)) for t in ts])]
    seconds = [_phase(2, "compute", [(t, rate(0.6, t, 5.0)) for t in ts]),
               _phase(2, "communication", [(t, rate(0.4, t)) for t in ts]),
               _phase(2, "update", [(t, rate(0.01, t)) for t in ts])]
    counts = [_phase(2, "compute", [(t, rate(2.0, t, 1.0)) for t in ts]),
              _phase(2, "communication", [(t, rate(2.0, t, 1.0)) for t in ts]),
              _phase(2, "update", [(t, rate(1.0, t)) for t in ts])]
    moved = [_series(2, [(t, rate(8e6, t, 4e6)) for t in ts])]
    results = {"steps": steps, "samples": [], "epoch": [], "loss": [],
               "phase_seconds": seconds, "phase_count": counts, "bytes": moved}
    obs = observations_from_series(results, {KEY: SpeedWindow(2, since=58.0)}, min_span=5)
    split = obs[KEY].split
    assert split is not None
    assert split.compute_seconds == pytest.approx(0.3)
    assert split.communication_seconds == pytest.approx(0.2)
    assert split.update_seconds == pytest.approx(0.01)
    assert split.bytes_per_step == pytest.approx(4e6)
    without = observations_from_series({**results, "phase_seconds": []},
                                       {KEY: SpeedWindow(2, since=58.0)}, min_span=5)
    assert without[KEY].split is None  # no split measured: none invented


def test_split_queries_use_the_contract_names() -> None:
    assert f"{contract.METRIC_STEP_SECONDS}_sum" in SPLIT_QUERIES["phase_seconds"]
    assert f"{contract.METRIC_STEP_SECONDS}_count" in SPLIT_QUERIES["phase_count"]
    assert f"{contract.METRIC_STEP_BYTES}_total" in SPLIT_QUERIES["bytes"]
    for expr in SPLIT_QUERIES.values():
        assert "by (namespace, job, generation" in expr

"""Knowledge pooled across jobs (optimus.round.store) and its use as a new job's prior in
the fit step: pooled means, the kind's model, the convergence prior, the calibration by
measurements, and the pin of a new job the kind's knowledge can size."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus.models import ConvergenceRule, SpeedParams, predict_speed, samples_per_second
from optimus.round import (
    FitJob,
    JobObservation,
    Knowledge,
    KnowledgeStore,
    RoundJob,
    fit_job,
    kind_key,
    pool_observations,
    samples_per_step,
)
from optimus.round.pins import pin
from optimus.round.store import PRIOR_LOSS_POINTS
from optimus.scheduling import Allocation, Resources
from optimus.scheduling.types import JobView

MODE, BATCH, SCOPE = "ps-sync", 64, "per-worker"
KEY = kind_key("resnet", MODE, BATCH)
TRUTH = SpeedParams(MODE, float(BATCH), (0.002, 0.05, 0.03, 0.01, 0.02), SCOPE)
CONFIGS = [(p, w) for p in (1, 2, 4) for w in (1, 2, 4, 8)]
RULE = ConvergenceRule(loss_delta=0.02, window=3, max_epochs=100)


def _truth_store() -> KnowledgeStore:
    return KnowledgeStore().with_speed(
        KEY, MODE, BATCH, SCOPE, [(p, w, predict_speed(TRUTH, p, w)) for p, w in CONFIGS])


def _new_job(prior: KnowledgeStore | None, current: Allocation | None = None,
             epochs_done: float = 0.0) -> FitJob:
    return FitJob(MODE, BATCH, RULE, (1, 4, 1, 8), current, epochs_done,
                  prior=prior.get(KEY) if prior else None)


@given(speeds=st.lists(st.floats(0.1, 100.0), min_size=1, max_size=20))
def test_a_kind_pools_the_mean_speed_and_count_per_configuration(speeds: list[float]) -> None:
    store = KnowledgeStore()
    for speed in speeds:
        store = store.with_speed(KEY, MODE, BATCH, SCOPE, [(1, 2, speed)])
    entry = store.get(KEY)
    assert entry is not None
    (sample,) = entry.samples
    assert (sample.ps, sample.workers, sample.count) == (1, 2, len(speeds))
    assert sample.speed == pytest.approx(sum(speeds) / len(speeds))


def test_the_kind_s_model_is_fitted_once_it_has_enough_configurations() -> None:
    few = KnowledgeStore().with_speed(
        KEY, MODE, BATCH, SCOPE, [(p, w, predict_speed(TRUTH, p, w)) for p, w in CONFIGS[:3]])
    assert few.get(KEY).theta is None  # type: ignore[union-attr]
    entry = _truth_store().get(KEY)
    assert entry is not None and entry.theta is not None
    speed = entry.speed(SCOPE)
    assert speed is not None
    for p, w in CONFIGS:
        assert predict_speed(speed, p, w) == pytest.approx(predict_speed(TRUTH, p, w), rel=0.05)


def test_a_key_holds_one_mode_and_batch_and_bad_samples_are_refused() -> None:
    store = _truth_store()
    with pytest.raises(ValueError, match="kind_key"):
        store.with_speed(KEY, MODE, 32, SCOPE, [(1, 1, 1.0)])
    with pytest.raises(ValueError, match="speed > 0"):
        store.with_speed(KEY, MODE, BATCH, SCOPE, [(1, 1, 0.0)])
    with pytest.raises(ValueError, match="epochs"):
        store.with_finished(KEY, MODE, BATCH, 0.0)


@given(epochs=st.lists(st.floats(1.0, 100.0), min_size=1, max_size=10),
       done=st.floats(0.0, 120.0))
def test_the_convergence_prior_is_the_mean_left_over_the_jobs_that_converged_later(
        epochs: list[float], done: float) -> None:
    store = KnowledgeStore()
    for e in epochs:
        store = store.with_finished(KEY, MODE, BATCH, e, 1000.0)
    entry = store.get(KEY)
    assert entry is not None
    later = [e - done for e in epochs if e > done]
    left = entry.remaining_epochs(done)
    if not later:
        assert left is None
    else:
        assert left is not None and min(later) - 1e-9 <= left <= max(later) + 1e-9
    assert entry.samples_per_epoch == pytest.approx(1000.0)


def test_a_new_job_of_a_known_kind_starts_from_the_kind_s_model_and_does_not_probe() -> None:
    store = _truth_store()
    _, known = fit_job(_new_job(store), None, now=0.0)
    assert known.speed is not None and not known.probing
    _, alone = fit_job(_new_job(store), None, now=0.0, pool_speed=False)
    assert alone.speed is None and alone.probing


def test_its_own_sample_and_the_pooled_ones_give_a_fit_at_its_first_configuration() -> None:
    store = _truth_store()
    speed = predict_speed(TRUTH, 1, 2) * 0.9  # its placement is a little slower
    observed = JobObservation(speed=speed * 2, samples_per_epoch=6400.0)  # summed steps
    _, known = fit_job(_new_job(store, Allocation(1, 2)), observed, now=0.0)
    assert known.speed is not None
    # calibrated: where it measured, its own measurement answers
    assert known.seconds_per_sample(1, 2, BATCH, MODE) == pytest.approx(
        1.0 / (speed * samples_per_step(MODE, BATCH, 2)))


def test_the_convergence_prior_answers_until_the_loss_model_has_its_points() -> None:
    store = KnowledgeStore().with_finished(KEY, MODE, BATCH, 30.0).with_finished(
        KEY, MODE, BATCH, 50.0)
    _, prior = fit_job(_new_job(store, epochs_done=10.0), None, now=0.0)
    assert prior.remaining_epochs == pytest.approx(30.0)  # mean of 20 and 40
    _, none = fit_job(_new_job(store, epochs_done=10.0), None, now=0.0,
                      convergence_prior=False)
    assert none.remaining_epochs == pytest.approx(90.0)  # maxEpochs minus the epochs done
    assert PRIOR_LOSS_POINTS > 3  # the loss model's first fits are the noisiest


@given(ratio=st.floats(0.5, 2.0), ps=st.integers(1, 4), workers=st.integers(1, 8))
def test_calibration_scales_the_model_by_its_ratio_at_the_nearest_measurement(
        ratio: float, ps: int, workers: int) -> None:
    measured = {(1, 2): predict_speed(TRUTH, 1, 2) * ratio}
    knowledge = Knowledge(speed=TRUTH, measured=measured)
    got = 1.0 / knowledge.seconds_per_sample(ps, workers, BATCH, MODE)
    assert got == pytest.approx(ratio * samples_per_second(TRUTH, ps, workers))
    assert 1.0 / Knowledge(speed=TRUTH).seconds_per_sample(ps, workers, BATCH, MODE) == \
        pytest.approx(samples_per_second(TRUTH, ps, workers))


def _view(current: Allocation | None) -> JobView:
    return JobView(id="j", arrival=0.0, ps_request=Resources(0, 2, 1), worker_request=Resources(
        1, 4, 1), min_ps=1, max_ps=4, min_workers=1, max_workers=8,
        remaining_time=lambda p, w: math.inf, current=current, mode=MODE)


def test_a_new_job_is_pinned_to_its_minimum_unless_the_kind_s_knowledge_sizes_it() -> None:
    sized = Knowledge(speed=TRUTH, samples_per_epoch=6400.0, remaining_epochs=10.0)
    assert pin(_view(None), sized, hold=False, learns=True) is None
    assert pin(_view(None), Knowledge(speed=TRUTH), hold=False, learns=True) == Allocation(1, 1)
    assert pin(_view(None), Knowledge(), hold=False, learns=True) == Allocation(1, 1)


def test_pool_observations_pools_running_jobs_of_a_kind_in_the_model_unit() -> None:
    def job(kind: str, current: Allocation | None) -> RoundJob:
        return RoundJob(view=_view(current), batch_size=BATCH, rule=RULE, kind=kind)

    observed = {"j": JobObservation(speed=8.0)}  # summed worker steps/s over 2 workers
    store = pool_observations(KnowledgeStore(), [job("resnet", Allocation(1, 2))], observed)
    entry = store.get(KEY)
    assert entry is not None and [(s.ps, s.workers, s.speed) for s in entry.samples] == [
        (1, 2, 4.0)]  # job steps/s of a synchronous job
    assert pool_observations(KnowledgeStore(), [job("", Allocation(1, 2))], observed).kinds == {}
    assert pool_observations(KnowledgeStore(), [job("resnet", None)], observed).kinds == {}

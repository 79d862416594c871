"""The round's fit step (optimus.round.knowledge): the speed units, the answers before a
model can be fitted, the epoch floor and the refit cadence."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus.api.status import ModelStatus
from optimus.models import ConvergenceRule
from optimus.round import (
    MIN_REMAINING_EPOCHS,
    FitJob,
    JobObservation,
    Knowledge,
    ModelMemory,
    fit_job,
    model_speed,
    samples_per_step,
    summed_steps_per_second,
)
from optimus.scheduling import Allocation

RULE = ConvergenceRule(loss_delta=0.02, window=3, max_epochs=20)
NOW = 1_800_000_000.0
HERE = Allocation(1, 2)


def _job(model: ModelMemory | None = None, current: Allocation | None = HERE,
         epochs_done: float = 2.0) -> FitJob:
    return FitJob("ps-sync", 64, RULE, (1, 4, 1, 8), current, epochs_done,
                  model or ModelMemory())


@given(samples=st.floats(1.0, 1e5), workers=st.integers(1, 16),
       mode=st.sampled_from(("ps-sync", "ps-async", "allreduce")))
def test_an_observed_speed_in_the_model_unit_gives_back_the_samples_per_second(
        samples: float, workers: int, mode: str) -> None:
    # what the step counters show, converted to the model's unit, times the samples of
    # one unit step, is the job's samples/s again, in every mode
    summed = summed_steps_per_second(samples, 64, workers, mode)
    unit = model_speed(mode, summed, workers)
    assert unit * samples_per_step(mode, 64, workers) == pytest.approx(samples)


def test_with_no_speed_measured_the_time_is_unknown() -> None:
    knowledge = Knowledge(remaining_epochs=3.0, samples_per_epoch=6400.0)
    assert knowledge.remaining_time(64, "ps-sync")(1, 4) == math.inf


def test_with_no_epoch_size_the_time_is_unknown_and_with_no_epochs_left_it_is_zero() -> None:
    measured = ((1, 1, 5.0),)
    assert Knowledge(remaining_epochs=3.0, speed_samples=measured).remaining_time(
        64, "ps-sync")(1, 1) == math.inf
    assert Knowledge(remaining_epochs=0.0, samples_per_epoch=6400.0,
                     speed_samples=measured).remaining_time(64, "ps-sync")(1, 1) == 0.0


def test_of_equally_near_measurements_the_smallest_configuration_answers() -> None:
    # (1, 2) is as near to (1, 1) as to (1, 3); the smaller one answers, however fast
    knowledge = Knowledge(remaining_epochs=1.0, samples_per_epoch=6400.0,
                          speed_samples=((1, 3, 9.0), (1, 1, 2.0)))
    assert knowledge.remaining_time(64, "ps-sync")(1, 2) == pytest.approx(6400 / (2.0 * 64))


def _converged_loss(epochs: int) -> tuple[tuple[float, float], ...]:
    return tuple((float(k), 0.5) for k in range(1, epochs + 1))  # flat: converged already


@pytest.mark.parametrize(("epochs_done", "remaining"), [
    (5.0, MIN_REMAINING_EPOCHS),  # the fit calls it converged; it still runs: the floor
    (19.8, pytest.approx(0.2)),  # but never beyond what maxEpochs leaves
])
def test_the_epoch_floor_applies_to_the_estimate_within_max_epochs(
        epochs_done: float, remaining: float) -> None:
    _, knowledge = fit_job(_job(epochs_done=epochs_done),
                           JobObservation(loss_points=_converged_loss(5)), now=NOW)
    assert knowledge.estimate is not None and knowledge.estimate.remaining_epochs == 0.0
    assert knowledge.remaining_epochs == remaining


def _speeds(configs: list[tuple[int, int]], scale: float = 1.0) -> tuple[
        tuple[int, int, float], ...]:
    return tuple((p, w, scale / (0.02 / w + 0.01 + 0.002 * w / p + 0.001 * w))
                 for p, w in configs)


FITTED = [(1, 1), (1, 2), (2, 1), (1, 4), (2, 3), (2, 4)]


@pytest.mark.parametrize(("refit_samples", "since", "refits"), [
    (1, 0, True),  # the operator's cadence: every change
    (8, 0, False),  # the simulator's: a known configuration waits for 8 samples
    (8, 7, True),
])
def test_the_speed_model_is_refitted_at_the_cadence(refit_samples: int, since: int,
                                                    refits: bool) -> None:
    first, _ = fit_job(_job(ModelMemory(ModelStatus(speed_samples=_speeds(FITTED)))), None,
                       now=NOW)
    assert first.status.speed_theta is not None
    memory = ModelMemory(first.status, speed_observations_since_fit=since)
    # a new measurement at a configuration already seen, twice as fast
    seen = JobObservation(speed=2 * 2 * _speeds([(1, 2)])[0][2])
    after, _ = fit_job(_job(memory), seen, now=NOW, speed_refit_samples=refit_samples)
    assert after.status.speed_samples != first.status.speed_samples
    assert (after.status.speed_theta != first.status.speed_theta) == refits
    assert after.speed_observations_since_fit == (0 if refits else since + 1)


def test_a_new_configuration_refits_the_speed_model_at_any_cadence() -> None:
    first, _ = fit_job(_job(ModelMemory(ModelStatus(speed_samples=_speeds(FITTED)))), None,
                       now=NOW)
    seen = JobObservation(speed=3 * _speeds([(1, 3)], 1.5)[0][2])
    after, _ = fit_job(_job(ModelMemory(first.status), current=Allocation(1, 3)), seen,
                       now=NOW, speed_refit_samples=8)
    assert after.status.speed_theta != first.status.speed_theta


@pytest.mark.parametrize(("growth", "points_at_fit", "refits"), [
    (1.0, 5, True), (3.0, 5, False), (3.0, 2, True)])
def test_the_loss_model_is_refitted_at_the_cadence(growth: float, points_at_fit: int,
                                                   refits: bool) -> None:
    curve = tuple((float(k), 1.0 / (0.3 * k + 1) + 0.05) for k in range(1, 6))
    first, _ = fit_job(_job(ModelMemory(ModelStatus(loss_samples=curve))), None, now=NOW)
    assert first.status.loss is not None and first.loss_points_at_fit == 5
    memory = ModelMemory(first.status, loss_points_at_fit=points_at_fit)
    later = JobObservation(loss_points=((6.0, 0.9),))  # an outlier: a refit moves the fit
    after, _ = fit_job(_job(memory), later, now=NOW, loss_refit_growth=growth)
    assert (after.status.loss != first.status.loss) == refits


def test_only_a_learning_policy_gets_probes() -> None:
    _, learning = fit_job(_job(), None, now=NOW, learns=True)
    _, other = fit_job(_job(), None, now=NOW, learns=False)
    assert learning.probing and learning.probes
    assert not other.probing and other.probes == ()


def test_a_measured_split_fits_the_speed_model_from_the_first_configuration() -> None:
    from optimus.models import SpeedParams, StepSplit, predict_speed

    # a bandwidth-bound ps-sync job: 1/speed = t0*M/w + t1 + t2*w/p (t3 = t4 = 0)
    truth = SpeedParams("ps-sync", 64.0, (0.004, 0.02, 0.1, 0.0, 0.0))
    at_here = predict_speed(truth, HERE.ps, HERE.workers)  # job steps/s
    split = StepSplit(0.004 * 64 / HERE.workers, 0.02 + 0.1 * HERE.workers / HERE.ps,
                      update_seconds=0.02)
    observed = JobObservation(speed=at_here * HERE.workers, split=split,
                              samples_per_epoch=6400.0)
    model, knowledge = fit_job(_job(), observed, now=NOW)
    assert knowledge.speed is not None and not knowledge.probing
    for ps, workers in ((1, 1), (4, 8), (2, 6)):
        assert predict_speed(knowledge.speed, ps, workers) == pytest.approx(
            predict_speed(truth, ps, workers), rel=0.02)
    assert model.split == (HERE.ps, HERE.workers, split)  # remembered for later rounds
    # the ablation: without the white-box prior one configuration fits nothing
    _, blind = fit_job(_job(), observed, now=NOW, white_box=False)
    assert blind.speed is None and blind.probing

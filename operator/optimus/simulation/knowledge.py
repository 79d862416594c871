"""What a policy knows about a simulated job: step 3 of a round (fit), as the operator does it.

A learned job keeps the noisy observations the operator would have collected from
Prometheus (one speed sample per interval it ran, in steps/s of its actual placement; one
loss point per finished epoch) and fits the operator's own models to them
(`optimus.models.fit_speed`, `fit_loss`, `estimate_convergence`). Its remaining time for
(p, w) is the estimated remaining epochs times the dataset size over the fitted samples/s.
An oracle job answers the same questions from the simulator's ground truth instead.

Fallbacks, before a model can be fitted (stated so they are not mistaken for knowledge):
* speed, with fewer distinct configurations than the speed model has parameters: the mean
  speed observed at the nearest configuration run so far, or, with none, one step per
  second per worker (a flat guess; learning policies are pinned to probe configurations
  meanwhile, so their allocation does not depend on it);
* remaining epochs, with fewer than 3 epochs seen: the job's max_epochs minus epochs done.
A job still running has at least `MIN_REMAINING_EPOCHS` left, as far as any policy can tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optimus.models.errors import ModelError
from optimus.models.loss import ConvergenceRule, estimate_convergence, fit_loss
from optimus.models.speed import (
    THETA_NAMES,
    SpeedMode,
    SpeedParams,
    SpeedSample,
    fit_speed,
    samples_per_second,
)

MIN_REMAINING_EPOCHS = 0.5
#: default: refit the loss model when the number of loss points has grown by this factor
#: (3, 9, 27, 81 points). The operator refits every round; a fit costs ~10 ms, and a
#: 1,000-job simulation would spend minutes refitting estimates that barely move between
#: epochs (with 20-80 epochs per job, factor 3 fits about 3 times per job, factor 2 about 4)
LOSS_REFIT_GROWTH = 3.0
#: refit the speed model after this many new samples at configurations already seen
SPEED_REFIT_SAMPLES = 8


@dataclass
class LearnedJob:
    """The observations of one job and the models fitted to them (mutable, per simulation)."""

    mode: SpeedMode
    batch_size: float
    dataset_size: float
    rule: ConvergenceRule
    loss_refit_growth: float = LOSS_REFIT_GROWTH
    speed_sums: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    loss_epochs: list[float] = field(default_factory=list)
    loss_values: list[float] = field(default_factory=list)
    speed_params: SpeedParams | None = None
    converged_epoch: float | None = None
    confidence: float = 0.0
    _speed_samples_at_fit: int = 0
    _configurations_at_fit: int = 0
    _loss_points_at_fit: int = 0
    #: speed_samples, counted as they arrive: refit() asks on every first use in a round
    _speed_sample_count: int = 0
    _cache: dict[tuple[int, int], float] = field(default_factory=dict)

    # ---- observations ---------------------------------------------------------------
    def observe_speed(self, ps: int, workers: int, steps_per_sec: float) -> None:
        entry = self.speed_sums.setdefault((ps, workers), [0.0, 0.0])
        entry[0] += steps_per_sec
        entry[1] += 1.0
        self._speed_sample_count += 1

    def observe_loss(self, epoch: float, loss: float) -> None:
        self.loss_epochs.append(epoch)
        self.loss_values.append(loss)

    @property
    def configurations(self) -> set[tuple[int, int]]:
        return set(self.speed_sums)

    @property
    def speed_samples(self) -> int:
        return self._speed_sample_count

    def needs_probes(self) -> int:
        """How many more distinct configurations the speed model needs to be fitted."""
        return max(0, len(THETA_NAMES[self.mode]) - len(self.speed_sums))

    # ---- fitting ----------------------------------------------------------------------
    def refit(self, epochs_done: float) -> None:
        """Refit what has new data (at the cadence of the module's constants)."""
        samples = self.speed_samples
        if self.needs_probes() == 0 and (
            self.speed_params is None
            or len(self.speed_sums) > self._configurations_at_fit
            or samples - self._speed_samples_at_fit >= SPEED_REFIT_SAMPLES
        ):
            self._fit_speed()
        points = len(self.loss_epochs)
        if points >= 3 and points >= self._loss_points_at_fit * self.loss_refit_growth:
            self._fit_loss(epochs_done)

    def _fit_speed(self) -> None:
        mean = [SpeedSample(p, w, total / count)
                for (p, w), (total, count) in sorted(self.speed_sums.items())]
        try:
            self.speed_params = fit_speed(mean, self.mode, self.batch_size)
        except ModelError:
            return
        self._speed_samples_at_fit = self.speed_samples
        self._configurations_at_fit = len(self.speed_sums)
        self._cache.clear()

    def _fit_loss(self, epochs_done: float) -> None:
        try:
            fit = fit_loss(self.loss_epochs, self.loss_values)
            estimate = estimate_convergence(fit, self.rule, epochs_done)
        except ModelError:
            return
        self._loss_points_at_fit = len(self.loss_epochs)
        self.converged_epoch = estimate.converged_epoch
        self.confidence = estimate.confidence

    # ---- answers ----------------------------------------------------------------------
    def remaining_epochs(self, epochs_done: float) -> float:
        target = self.converged_epoch if self.converged_epoch is not None else float(
            self.rule.max_epochs)
        return max(MIN_REMAINING_EPOCHS, target - epochs_done)

    def samples_per_sec(self, ps: int, workers: int) -> float:
        key = (ps, workers)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if self.speed_params is not None:
            try:
                value = samples_per_second(self.speed_params, ps, workers)
            except ModelError:
                value = 0.0
        elif self.speed_sums:
            nearest = min(self.speed_sums,
                          key=lambda c: (abs(c[0] - ps) + abs(c[1] - workers), c))
            total, count = self.speed_sums[nearest]
            value = total / count * self.batch_size
        else:
            value = float(workers) * self.batch_size
        self._cache[key] = value
        return value

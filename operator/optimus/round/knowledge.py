"""Step 3 of a scheduling round, the fit (pure): one job's observation merged into its model
memory, the loss and speed models refitted at the round's cadence, and what they imply
(`Knowledge`: remaining epochs, seconds per sample at any configuration, the probes still
worth measuring). The operator and the simulator both call `fit_job`; only the cadence
differs, and it is a setting (`SchedulingSettings.loss_refit_growth`,
`speed_refit_samples`), not a second implementation.

Rules where no model can answer yet (docs/design-notes.md says why each way):
* no speed measured at all: a configuration's time is unknown, math.inf (no gain is ever
  invented; a learning policy keeps such a job pinned to its probe meanwhile);
* speed measured but not fitted: the nearest measured configuration (by |dps| + |dw|; of
  equally near ones the smallest, (ps, workers) ascending, whatever their noisy speeds);
* epochs: the loss model's estimate, at least MIN_REMAINING_EPOCHS while the job runs
  (the fit may call it converged before the job stops), never more than maxEpochs allows;
  with no loss fit yet, maxEpochs minus the epochs done;
* epoch size unknown: the remaining time is unknown (math.inf).

Speed units. The model is fitted in one unit per mode. Synchronous jobs (ps-sync,
allreduce) are measured in *job* steps per second (one step = the global batch M over all
workers, i.e. the workers' summed step rate divided by w), so that the equation's t0*M/w is
the compute of one worker's share and samples/s = speed * M (batch scope "per-worker" of
the models, with the whole step's batch M). Asynchronous jobs are measured in summed worker
steps per second, each of M/w samples (batch scope "global"). With a fixed global batch,
only this reading lets a synchronous job gain from more workers. An observation's speed is
always the workers' summed step rate; `model_speed` converts it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from optimus.api.status import ModelStatus, iso, merge_loss_samples, merge_speed_sample
from optimus.models import (
    THETA_NAMES,
    BatchScope,
    ConvergenceEstimate,
    ConvergenceRule,
    LossFit,
    LossParams,
    ModelError,
    SpeedMode,
    SpeedParams,
    SpeedSample,
    StepSplit,
    estimate_convergence,
    fit_loss,
    fit_speed,
    predict_speed,
    prior_from_split,
    probes_within_box,
    samples_per_second,
)
from optimus.models.confidence import (
    UNKNOWN_BAND,
    SpeedSource,
    convergence_band,
    speed_band,
)
from optimus.round.observation import JobObservation
from optimus.round.store import PRIOR_LOSS_POINTS, KindKnowledge
from optimus.scheduling.probes import MAX_PROBE_CHOICES
from optimus.scheduling.types import Allocation, RemainingTime

#: a job still running has at least this many epochs left, as far as any policy can tell
MIN_REMAINING_EPOCHS = 0.5


def batch_scope(mode: str) -> BatchScope:
    return "global" if mode == "ps-async" else "per-worker"


def samples_per_step(mode: str, batch: int, workers: int) -> float:
    return batch / workers if mode == "ps-async" else float(batch)


def model_speed(mode: str, summed_steps_per_second: float, workers: int) -> float:
    """The speed model's unit from the workers' summed step rate (module docstring)."""
    return summed_steps_per_second if mode == "ps-async" else summed_steps_per_second / workers


def summed_steps_per_second(samples_per_sec: float, batch: int, workers: int, mode: str) -> float:
    """What the workers' step counters show for a job processing `samples_per_sec`: each
    worker step is one batch share M/w (asynchronous) or, for a synchronous job, a job step
    of M samples is w worker steps; either way w * samples/s / M."""
    del mode  # the same in every mode; named so a caller states what it converts
    return workers * samples_per_sec / batch


@dataclass(frozen=True)
class ModelMemory:
    """What the fit step remembers of a job between rounds: the samples and fitted
    parameters (`status`, which the operator keeps in the TrainingJob's status) and the
    refit cadence's bookkeeping. At the operator's cadence (refit on every change) the
    bookkeeping is never read, so it is not persisted."""

    status: ModelStatus = field(default_factory=ModelStatus)
    #: loss points when the loss model was last fitted
    loss_points_at_fit: int = 0
    #: speed observations merged since the speed model was last fitted
    speed_observations_since_fit: int = 0
    #: the newest step split measured, with the (ps, workers) it was measured at: the
    #: white-box prior's input (the operator observes it again every round, so it is not
    #: persisted either)
    split: tuple[int, int, StepSplit] | None = None


@dataclass(frozen=True)
class Oracle:
    """The truth about a job, for the simulator's oracle runs: the fit is skipped."""

    remaining_epochs: float
    remaining_time: RemainingTime


@dataclass(frozen=True)
class Knowledge:
    """What the models say about a job after the fit step."""

    loss_fit: LossFit | None = None
    speed: SpeedParams | None = None
    estimate: ConvergenceEstimate | None = None
    epochs_done: float = 0.0
    remaining_epochs: float = 0.0
    samples_per_epoch: float | None = None
    probing: bool = False
    next_probe: tuple[int, int] | None = None
    #: the configurations still worth measuring, best first (next_probe is the first)
    probes: tuple[tuple[int, int], ...] = ()
    speed_samples: tuple[tuple[int, int, float], ...] = ()
    oracle: Oracle | None = None
    #: measured speeds (model unit) by configuration that calibrate the model: the kind's
    #: pooled means, the job's own samples over them (empty: the model alone)
    measured: Mapping[tuple[int, int], float] = field(default_factory=dict)
    #: the speed fit's relative residual RMSE over the samples it was fitted to (None: no
    #: fit), and the distinct configurations of those samples: what the error bands of
    #: its answers are derived from (`speed_band`)
    speed_error: float | None = None
    fit_configs: frozenset[tuple[int, int]] = frozenset()
    #: the relative error band of remaining_epochs (optimus.models.confidence)
    convergence_band: float = UNKNOWN_BAND

    def speed_source(self, ps: int, workers: int) -> SpeedSource:
        """Where the answer at (ps, workers) comes from (see `seconds_per_sample`): a
        measurement there, the model between the fitted configurations or beyond them,
        the nearest measurement (no model), or nothing."""
        if self.oracle is not None:
            return "oracle"
        if (ps, workers) in self.measured:
            return "measured"
        if self.speed is not None:
            configs = self.fit_configs or frozenset(self.measured)
            if configs and (min(p for p, _ in configs) <= ps <= max(p for p, _ in configs)
                            and min(w for _, w in configs) <= workers
                            <= max(w for _, w in configs)):
                return "model"
            return "extrapolated"
        return "nearest" if self.speed_samples else "unknown"

    def speed_band(self, ps: int, workers: int) -> float:
        """The relative error band of the speed answer at (ps, workers)
        (optimus.models.confidence.speed_band of its `speed_source`)."""
        source = self.speed_source(ps, workers)
        parameters = len(THETA_NAMES[cast(SpeedMode, self.speed.mode)]) if self.speed else 0
        return speed_band(source, self.speed_error, len(self.fit_configs), parameters)

    def seconds_per_sample(self, ps: int, workers: int, batch: int, mode: str) -> float:
        """1 / samples per second at (ps, workers): a measurement there (`measured`); the
        fitted model, calibrated by its ratio to the nearest measurement (`measured`: the
        equation's misfit is local, and the nearest measurement knows it); or, with no
        model, the nearest measured configuration; or math.inf with no measurement."""
        here = self.measured.get((ps, workers))
        if here is not None and here > 0:
            return 1.0 / (here * samples_per_step(mode, batch, workers))
        try:
            if self.speed is not None:
                scale = 1.0
                if self.measured:
                    (p0, w0), v0 = min(self.measured.items(), key=lambda kv: (
                        abs(kv[0][0] - ps) + abs(kv[0][1] - workers), kv[0]))
                    model0 = samples_per_second(self.speed, p0, w0)
                    if model0 > 0:
                        scale = v0 * samples_per_step(mode, batch, w0) / model0
                return 1.0 / (scale * samples_per_second(self.speed, ps, workers))
        except (ModelError, ZeroDivisionError):
            return math.inf
        if not self.speed_samples:
            return math.inf
        _, w, steps = min(self.speed_samples,
                          key=lambda s: (abs(s[0] - ps) + abs(s[1] - workers), s[0], s[1]))
        return 1.0 / (steps * samples_per_step(mode, batch, w)) if steps > 0 else math.inf

    def remaining_time(self, batch: int, mode: str) -> RemainingTime:
        """Seconds left at any (ps, workers) (module docstring for the unknowns)."""
        if self.oracle is not None:
            return self.oracle.remaining_time
        if self.remaining_epochs <= 0:
            return lambda ps, workers: 0.0
        if not self.samples_per_epoch:
            return lambda ps, workers: math.inf
        work = self.remaining_epochs * self.samples_per_epoch
        known: dict[tuple[int, int], float] = {}  # the allocator asks many times a round

        def remaining(ps: int, workers: int) -> float:
            key = (ps, workers)
            value = known.get(key)
            if value is None:
                value = known[key] = work * self.seconds_per_sample(ps, workers, batch, mode)
            return value
        return remaining

    @property
    def progress(self) -> float:
        """The fraction of the job done, as far as the models tell (0 with nothing known)."""
        total = self.epochs_done + self.remaining_epochs
        return min(1.0, self.epochs_done / total) if total > 0 else 0.0


@dataclass(frozen=True)
class FitJob:
    """What the fit step needs to know of a job besides its observation."""

    mode: str
    batch_size: int
    rule: ConvergenceRule
    #: the spec's bounds (min_ps, max_ps, min_workers, max_workers), for the probes
    bounds: tuple[int, int, int, int]
    #: what it runs with now (None: not running), where a speed observation was measured
    current: Allocation | None
    epochs_done: float
    model: ModelMemory = field(default_factory=ModelMemory)
    oracle: Oracle | None = None
    #: what jobs of the same kind taught (optimus.round.store), None: nothing
    prior: KindKnowledge | None = None


def _relative_rmse(speed: SpeedParams, samples: Sequence[SpeedSample]) -> float | None:
    try:
        errors = [predict_speed(speed, s.ps, s.workers) / s.speed - 1.0 for s in samples]
    except ModelError:
        return None
    return math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else None


def white_box_prior(mode: str, batch: int, split: tuple[int, int, StepSplit] | None,
                    speed_samples: Sequence[tuple[int, int, float]]) -> SpeedParams | None:
    """The speed equation seeded from the job's own step split (optimus.models.
    prior_from_split), its level set by the speed measured where the split was (a step
    also spends time outside its compute and exchange: data, metrics, checkpoint pauses);
    None without a split or when it cannot seed one."""
    if split is None:
        return None
    ps, workers, measured_split = split
    try:
        prior = prior_from_split(mode, batch, ps, workers, measured_split,
                                 batch_scope=batch_scope(mode))
        there = [v for p, w, v in speed_samples if (p, w) == (ps, workers) and v > 0]
        if there:
            level = predict_speed(prior, ps, workers) / there[-1]
            prior = SpeedParams(prior.mode, prior.batch_size,
                                tuple(t * level for t in prior.theta), prior.batch_scope)
    except ModelError:
        return None
    return prior


def fit_job(
    job: FitJob,
    observation: JobObservation | None,
    *,
    now: float,
    loss_refit_growth: float = 1.0,
    speed_refit_samples: int = 1,
    probe_box: tuple[int | None, int | None] | None = None,
    learns: bool = True,
    pool_speed: bool = True,
    convergence_prior: bool = True,
    calibrate_speed: bool = True,
    white_box: bool = True,
) -> tuple[ModelMemory, Knowledge]:
    """The job's model memory after this round's observation, and what it implies.

    A model with enough data is fitted when it has no parameters yet; then the loss model
    is refitted when its points changed and number at least `loss_refit_growth` times those
    of the last fit, the speed model when its samples changed and a configuration is new or
    `speed_refit_samples` observations arrived since the last fit (1.0 and 1: every change,
    the operator's cadence). A failed refit keeps
    the previous parameters. With `job.prior` (optimus.round.store), `pool_speed` fits the
    speed model over the job's own samples plus the kind's pooled ones at the
    configurations the job has not measured (so a new job starts from the kind's model and
    need not probe), `calibrate_speed` calibrates that model by the measurements
    (`Knowledge.measured`), and `convergence_prior` takes the remaining epochs from the
    kind's finished jobs until the loss model has PRIOR_LOSS_POINTS points, and the epoch
    size from them until the job measured its own. With `white_box`, the newest step
    split the job measured (`white_box_prior`) seeds the speed fit: the fit is made from
    the first measured configuration on, pulled towards that prior (its pull fades as
    samples accumulate), so a job need not probe before its first prediction. Probes are
    proposed
    only for a policy that `learns`. The ETA
    (status.model.estimatedCompletionTime) is `now` plus the predicted remaining time at
    `job.current`."""
    if job.oracle is not None:
        return job.model, Knowledge(epochs_done=job.epochs_done,
                                    remaining_epochs=job.oracle.remaining_epochs,
                                    oracle=job.oracle, convergence_band=0.0)
    mode, batch, old = job.mode, job.batch_size, job.model.status
    current = job.current
    loss_samples = merge_loss_samples(old.loss_samples,
                                      observation.loss_points if observation else ())
    speed_samples = old.speed_samples
    since = job.model.speed_observations_since_fit
    if (observation is not None and observation.speed is not None and current is not None
            and observation.speed > 0 and current.workers > 0):
        speed_samples = merge_speed_sample(
            speed_samples, current.ps, current.workers,
            model_speed(mode, observation.speed, current.workers))
        since += 1
    split = job.model.split
    if (observation is not None and observation.split is not None and current is not None
            and current.workers > 0):
        split = (current.ps, current.workers, observation.split)
    samples_per_epoch = (observation.samples_per_epoch if observation and
                         observation.samples_per_epoch else old.samples_per_epoch)

    # loss
    loss_fit: LossFit | None = None
    loss_error = old.fit_error_loss
    points_at_fit = job.model.loss_points_at_fit
    if len(loss_samples) >= 3 and (old.loss is None or (
            loss_samples != old.loss_samples
            and len(loss_samples) >= loss_refit_growth * points_at_fit)):
        try:
            loss_fit = fit_loss([e for e, _ in loss_samples], [v for _, v in loss_samples])
            loss_error = loss_fit.rmse
            points_at_fit = len(loss_samples)
        except ModelError:
            loss_fit = None
    if loss_fit is None and old.loss is not None:
        loss_fit = LossFit(LossParams(*old.loss), len(loss_samples), 0, loss_error or 0.0,
                           loss_samples[-1][0] if loss_samples else 0.0)

    # speed
    samples = [SpeedSample(p, w, s) for p, w, s in speed_samples]
    configs = {(p, w) for p, w, _ in speed_samples}
    new_config = bool(configs - {(p, w) for p, w, _ in old.speed_samples})
    prior = job.prior if pool_speed else None
    if prior is not None:  # the kind's samples where the job measured nothing itself
        samples += [s for s in prior.speed_samples() if (s.ps, s.workers) not in configs]
    speed: SpeedParams | None = None
    speed_error = old.fit_error_speed
    # the white-box prior stands in for the configurations the job (and its kind) has not
    # measured: with enough of them, measurements alone decide the fit
    enough = len(THETA_NAMES[cast(SpeedMode, mode)])
    few = len({(s.ps, s.workers) for s in samples}) < enough
    seed = (white_box_prior(mode, batch, split, speed_samples) if white_box and few
            else None)
    if seed is not None:
        enough = 1
    if prior is not None and not configs and prior.theta is not None:
        speed = prior.speed(batch_scope(mode))  # nothing of its own yet: the kind's model
        speed_error = _relative_rmse(speed, samples) if speed else None
    elif len({(s.ps, s.workers) for s in samples}) >= enough and (
            old.speed_theta is None or (speed_samples != old.speed_samples and (
                new_config or since >= speed_refit_samples))):
        try:
            speed = fit_speed(samples, mode, batch, batch_scope=batch_scope(mode),
                              prior=seed)
            speed_error = _relative_rmse(speed, samples)
            since = 0
        except ModelError:
            speed = None
    if speed is None and old.speed_theta is not None and old.speed_mode == mode:
        speed = SpeedParams(mode, float(batch), old.speed_theta, batch_scope(mode))  # type: ignore[arg-type]
    min_ps, max_ps, min_w, max_w = job.bounds
    probes = probes_within_box(
        min_ps, max_ps, min_w, max_w, configs, MAX_PROBE_CHOICES, mode,
        **({} if probe_box is None else {"box": probe_box}),
    ) if learns and speed is None else []
    probing = speed is None and bool(probes)

    measured: dict[tuple[int, int], float] = {}
    if prior is not None and calibrate_speed:
        measured = {(s.ps, s.workers): s.speed for s in prior.samples}
        measured.update({(p, w): v for p, w, v in speed_samples})
    rule = job.rule
    epochs_done = job.epochs_done
    estimate = None
    if loss_fit is not None:
        try:
            estimate = estimate_convergence(loss_fit, rule, epochs_done)
        except ModelError:
            estimate = None
    left = max(0.0, rule.max_epochs - epochs_done)
    remaining_epochs = (min(left, max(MIN_REMAINING_EPOCHS, estimate.remaining_epochs))
                        if estimate else left)
    epochs_band = convergence_band(oracle=False,
                                   confidence=estimate.confidence if estimate else None)
    if convergence_prior and job.prior is not None and len(loss_samples) < PRIOR_LOSS_POINTS:
        guess = job.prior.remaining_epochs(epochs_done)
        if guess is not None:
            remaining_epochs = min(left, max(MIN_REMAINING_EPOCHS, guess))
            epochs_band = convergence_band(
                oracle=False, confidence=None, from_prior=True,
                prior_epochs=tuple(e for e in job.prior.finished_epochs if e > epochs_done))
    knowledge = Knowledge(
        loss_fit=loss_fit,
        speed=speed,
        estimate=estimate,
        epochs_done=epochs_done,
        remaining_epochs=remaining_epochs,
        samples_per_epoch=samples_per_epoch or (
            job.prior.samples_per_epoch if job.prior is not None and convergence_prior
            else None),
        probing=probing,
        next_probe=probes[0] if probes else None,
        probes=tuple(probes),
        speed_samples=speed_samples,
        measured=measured,
        speed_error=speed_error if speed is not None else None,
        fit_configs=frozenset((s.ps, s.workers) for s in samples) if speed is not None
        else frozenset(),
        convergence_band=epochs_band,
    )
    eta = ""
    if current is not None and samples_per_epoch:
        seconds = knowledge.remaining_time(batch, mode)(current.ps, current.workers)
        if math.isfinite(seconds):
            eta = iso(now + seconds)
    status = ModelStatus(
        loss=(loss_fit.params.b0, loss_fit.params.b1, loss_fit.params.b2) if loss_fit else None,
        speed_mode=mode if speed else "",
        speed_theta=speed.theta if speed else None,
        loss_samples=loss_samples,
        speed_samples=speed_samples,
        samples_per_epoch=samples_per_epoch,
        remaining_epochs=remaining_epochs,
        converged_epoch=estimate.converged_epoch if estimate else None,
        confidence=estimate.confidence if estimate else None,
        estimated_completion_time=eta,
        fit_error_loss=loss_error if loss_fit else None,
        fit_error_speed=speed_error if speed else None,
    )
    return ModelMemory(status, points_at_fit, since, split), knowledge

"""Steps 3 to 6 of a scheduling round for the operator, pure: from the snapshot (step 1)
and the observations (step 2) to each job's new status and what to do with its pods. The
fit, the pins, allocation, keep-running and placement are the round's, shared with the
simulator (optimus.round); this module keeps what only the operator has: conditions,
events, and turning the round's decisions into statuses and pod actions. No I/O here:
optimus.kube.controller runs it, times each step, writes the statuses and carries the
actions out.

Per job, `assess` applies these rules in order (RULES; each a small pure function; a rule
that settles the job ends the sequence):
  invalid spec        -> Valid=False (a Warning event on the change), pods deleted
  oversized pods      -> Valid=False too when a job that never ran asks, per pod, for more
                         than any node has (it would queue forever); re-checked every round
  valid spec          -> Valid=True (a Normal event when it was fixed)
  finished            -> nothing but deleting leftover pods
  suspended           -> spec.suspend: Suspended=True, the allocation given up, pods deleted
                         (after a checkpoint); cleared: Resumed, a new start (`suspended`)
  measure pause       -> the generation's measured pause, once it trains at its size: a
                         restart's from the first step Prometheus shows, an in-place one's
                         from the controller's answer (`InPlaceAttempt`); kept per kind of
                         resize in status.resizeCosts (`measure_pause`)
  observe             -> status.progress (a restoring generation's step 0 ignored)
  fit                 -> status.model (bounded samples, fitted params; optimus.round)
  metrics             -> MetricsAvailable; while False the job is held (never resized on
                         missing data)
  completion          -> Succeeded (convergence rule or maxEpochs), pods deleted
  pod failure         -> a new generation of the same size, up to spec.restartLimit, then Failed
                         with the failed pod's termination message (`failure_message`) and
                         Resizing=False
  in-place outcome    -> a resize in place that was refused, timed out, or left no answer
                         (an operator restart) within in_place_timeout_seconds falls back to
                         checkpoint-restart: a new generation of every pod (`fallback`)
  resize progress     -> Resizing=False once every pod of the allocation runs (or a
                         ResizeStuck warning)
  schedulable         -> the round's job: held while restarting, busy, resizing or blind
Then the round (optimus.round.schedule) pins, allocates and places every schedulable job at
once, and `decide` turns the result into new allocations (a new generation when the counts
change), Scheduled conditions, events and actions.

The path of a resize (`resize_kind`, `in_place_move`): a move that changes one count of a
job that runs the library (not spec.command), one process per pod, whose pods all run and
whose staying pods keep their nodes, is made in place when its mode changes that count in
place: the workers (optimus_worker.contract.IN_PLACE_WORKER_CHANGE_MODES, kind
InPlaceWorkerChange) or the PS (contract.IN_PLACE_PS_CHANGE_MODES, kind InPlacePSChange).
In place (action "in-place") the controller creates the added pods, posts the membership
to the chief, retires the removed pods once they exited; the surviving pods keep their
names, so the allocation records each rank's pod generation. Everything else, a move of
both counts, pod failures and node loss included, is a checkpoint-restart (action "roll").
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from optimus_worker import contract

from optimus.api import conditions as cond
from optimus.api.spec import GPU_RESOURCE, JobMeta, SpecError, TrainingJob
from optimus.api.status import (
    RESIZE_IN_PLACE_PS,
    RESIZE_IN_PLACE_WORKERS,
    RESIZE_RESTART,
    AllocationStatus,
    PriorStatus,
    ProgressStatus,
    TrainingJobStatus,
    iso,
    parse_time,
    status_patch,
    with_allocation,
    with_condition,
    with_model,
    with_progress,
)
from optimus.kube.builders import processes_per_pod, worker_selector
from optimus.kube.snapshot import PodSnapshot, job_view, oversized_request
from optimus.models import loss_at, predict_speed
from optimus.models.errors import ModelError
from optimus.round import (
    FittedJob,
    JobObservation,
    Knowledge,
    KnowledgeStore,
    ModelMemory,
    RoundJob,
    RoundOutcome,
    SchedulingSettings,
    SpeedWindow,
    fit_round_job,
    pool_finished,
    pool_observations,
    schedule,
)
from optimus.scheduling import NodeView
from optimus.scheduling.types import Allocation, JobPlacement, ResizeCosts

__all__ = ["Knowledge"]  # re-exported: a Decision carries one

Action = Literal["none", "roll", "in-place", "delete"]
#: the measured restarts needed before they replace the configured restart cost: the first
#: measurement counts (a 10 s prior must not price restarts that measured 40 s)
MIN_MEASURED_RESTARTS = 1


@dataclass(frozen=True)
class RoundSettings:
    policy: str = "optimus"
    restart_cost_seconds: float = 30.0
    #: a generation's first seconds (process start, first batches) do not count for speed
    speed_warmup_seconds: float = 10.0
    #: a speed is measured over at least this many seconds
    speed_span_seconds: float = 20.0
    #: a running job without any series for this long gets MetricsAvailable=False
    metrics_grace_seconds: float = 60.0
    #: a generation whose pods do not all run this long after it was decided is reported
    #: (Resizing reason ResizeStuck and a Warning event)
    resize_timeout_seconds: float = 300.0
    #: the extended resource counted as GPUs (OPTIMUS_ACCELERATOR_RESOURCE)
    accelerator_resource: str = GPU_RESOURCE
    #: what a worker change in place is charged before one is measured (the cluster's
    #: measured ones replace it, then the job's own)
    in_place_cost_seconds: float = 5.0
    #: what a PS change in place is charged before one is measured (likewise replaced)
    in_place_ps_cost_seconds: float = 5.0
    #: a resize in place whose outcome is unknown (the operator restarted during it) and
    #: that shows no step at the new size this long after the decision falls back to a
    #: restart; the controller's wait for the chief's answer is bounded by it too (0: no
    #: resize is made in place)
    in_place_timeout_seconds: float = 150.0
    #: the cluster's measured cost of each kind of resize (`learned_resize_costs`), the
    #: cost of a job that has not measured its own
    learned_costs: tuple[tuple[str, float], ...] = ()
    #: seed a job's speed fit from its step split (SchedulingSettings.white_box_prior)
    white_box_prior: bool = True

    @property
    def scheduling(self) -> SchedulingSettings:
        """The round's settings (optimus.round) at the operator's cadence."""
        return SchedulingSettings(policy=self.policy,
                                  restart_cost_seconds=self.restart_cost_seconds,
                                  white_box_prior=self.white_box_prior)


@dataclass(frozen=True)
class InPlaceAttempt:
    """What the controller's last resize in place of a job came to (it keeps this in
    memory; the next round's `in_place_outcome` and `measure_pause` turn it into status)."""

    generation: int
    ok: bool
    error: str = ""
    #: when the chief answered that the job trains at the new size (ok only)
    answered_at: float | None = None
    #: how long the chief's switch at the step boundary took (ok only)
    switch_seconds: float | None = None


@dataclass(frozen=True)
class JobState:
    """One TrainingJob as the snapshot saw it."""

    meta: JobMeta
    raw_status: Mapping[str, Any] | None
    status: TrainingJobStatus
    job: TrainingJob | None
    error: SpecError | None
    pods: tuple[PodSnapshot, ...] = ()
    #: the act step is still working on this job's pods (from the previous round)
    busy: bool = False
    #: the controller's last resize in place of this job (None: none since it started)
    in_place: InPlaceAttempt | None = None


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Context:
    """What every rule of `assess` may read besides the job."""

    observation: JobObservation | None
    metrics_error: str | None
    now: float
    settings: RoundSettings
    nodes: Sequence[NodeView] = ()
    #: knowledge pooled across jobs (optimus.round.store), the priors of the fit
    store: KnowledgeStore | None = None


@dataclass(frozen=True)
class Assessed:
    """A job after `assess` (and, between its rules, a job being assessed): its status so
    far and how the round may treat it."""

    state: JobState
    status: TrainingJobStatus
    events: tuple[Event, ...] = ()
    schedulable: bool = False
    fitted: FittedJob | None = None
    action: Action = "none"
    restart: bool = False
    #: why a resize in place is given up: the job restarts at its allocation's size
    fallback: str = ""
    blind: bool = False
    #: a rule settled the job: the rules after it do not apply
    final: bool = False

    @property
    def key(self) -> str:
        return self.state.meta.key

    @property
    def knowledge(self) -> Knowledge:
        return self.fitted.knowledge if self.fitted is not None else Knowledge()

    @property
    def round_job(self) -> RoundJob | None:
        return self.fitted.job if self.fitted is not None else None

    @property
    def has_pods(self) -> bool:
        return any(not p.deleting for p in self.state.pods)

    @property
    def current_pods(self) -> list[PodSnapshot]:
        """The live pods of the allocation (each rank's pod of its recorded generation)."""
        allocation = self.status.allocation
        if allocation is None:
            return []
        desired = desired_pods(self.state.meta, allocation)
        return [p for p in self.state.pods if p.name in desired and not p.deleting]

    def condition(self, ctx: Context, type_: str, value: cond.ConditionStatus, reason: str,
                  message: str = "") -> tuple[Assessed, bool]:
        status, changed = with_condition(self.status, type_, value, reason, message,
                                         now=iso(ctx.now), generation=self.state.meta.generation)
        return replace(self, status=status), changed

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> Assessed:
        return replace(self, events=(*self.events, Event(type_, reason, message)))

    def done(self) -> Assessed:
        """Settled: its pods (if any) are deleted and nothing else applies."""
        return replace(self, final=True, action="delete" if self.has_pods else "none")


@dataclass(frozen=True)
class Decision:
    """The outcome of a round for one job: its new status (and the patch to write), what
    to do with its pods, and the events to record."""

    meta: JobMeta
    status: TrainingJobStatus
    patch: dict[str, Any] | None
    action: Action
    events: tuple[Event, ...] = ()
    previous: AllocationStatus | None = None
    knowledge: Knowledge = field(default_factory=Knowledge)
    job: TrainingJob | None = None

    def predictions(self) -> tuple[float | None, float | None]:
        """(remaining seconds, steps/s) the models predict at the job's allocation."""
        allocation, job, k = self.status.allocation, self.job, self.knowledge
        if allocation is None or job is None:
            return None, None
        remaining: float | None = None
        if k.samples_per_epoch:
            remaining = k.remaining_time(job.spec.global_batch_size, job.spec.mode)(
                allocation.ps, allocation.workers)
            remaining = remaining if math.isfinite(remaining) else None
        speed: float | None = None
        if k.speed is not None:
            try:
                speed = predict_speed(k.speed, allocation.ps, allocation.workers)
            except ModelError:
                speed = None
        return remaining, speed


def speed_window(status: TrainingJobStatus, settings: RoundSettings) -> SpeedWindow | None:
    """Which generation to measure and from when: its pods' start plus the warm-up."""
    allocation = status.allocation
    started = parse_time(allocation.running_since) if allocation else None
    if allocation is None or started is None:
        return None
    return SpeedWindow(allocation.generation, started + settings.speed_warmup_seconds)


# ---- step 3: the rules of `assess` ---------------------------------------------------------
def desired_pods(meta: JobMeta, allocation: AllocationStatus) -> set[str]:
    """The names of the allocation's pods (each rank's of its recorded generation)."""
    return {
        *(contract.pod_name(meta.name, "ps", r, g)
          for r, g in enumerate(allocation.pod_generations("ps"))),
        *(contract.pod_name(meta.name, "worker", r, g)
          for r, g in enumerate(allocation.pod_generations("worker"))),
    }


def _pods_differ(state: JobState, allocation: AllocationStatus) -> bool:
    live = {p.name for p in state.pods if not p.deleting}
    return live != desired_pods(state.meta, allocation)


def invalid_spec(a: Assessed, ctx: Context) -> Assessed:
    """A spec that cannot be read: Valid=False, pods deleted."""
    if a.state.job is not None:
        return a
    message = str(a.state.error) if a.state.error else "the spec could not be read"
    a, changed = a.condition(ctx, cond.VALID, "False", cond.REASON_INVALID_SPEC, message)
    if changed:
        a = a.event("Warning", cond.REASON_INVALID_SPEC, message)
    return a.done()


def oversized_pods(a: Assessed, ctx: Context) -> Assessed:
    """A job that never started and whose pods fit no node would queue forever."""
    assert a.state.job is not None
    oversized = (None if a.state.status.allocation is not None
                 else oversized_request(a.state.job, ctx.nodes,
                                        ctx.settings.accelerator_resource))
    if oversized is None:
        return a
    a, changed = a.condition(ctx, cond.VALID, "False", cond.REASON_EXCEEDS_NODE_CAPACITY,
                             oversized)
    if changed:
        a = a.event("Warning", cond.REASON_EXCEEDS_NODE_CAPACITY, oversized)
    return a.done()


def valid_spec(a: Assessed, ctx: Context) -> Assessed:
    fixed = a.state.status.phase == cond.INVALID
    a, changed = a.condition(ctx, cond.VALID, "True", cond.REASON_SPEC_VALID, "the spec is valid")
    return a.event("Normal", cond.REASON_SPEC_VALID, "the spec was fixed") if (
        changed and fixed) else a


def finished(a: Assessed, ctx: Context) -> Assessed:
    return a.done() if a.status.phase in cond.FINISHED_PHASES else a


def suspended(a: Assessed, ctx: Context) -> Assessed:
    """The suspend rule (spec.suspend, the convention of Kubernetes Jobs and Kueue): a
    suspended job gives its allocation up and its pods are stopped (the controller asks
    the chief for a checkpoint first; a script of its own checkpoints on SIGTERM), and it
    stays Suspended until spec.suspend is false. Then the condition turns False (reason
    Resumed) and the job starts again like a new one, at its minimum, from its newest
    checkpoint."""
    job = a.state.job
    assert job is not None
    if not job.spec.suspend:
        if cond.is_true(a.status.conditions, cond.SUSPENDED):
            message = "spec.suspend is false: the job restarts from its newest checkpoint"
            a, _ = a.condition(ctx, cond.SUSPENDED, "False", cond.REASON_RESUMED, message)
            a = a.event("Normal", cond.REASON_RESUMED, message)
        return a
    message = ("spec.suspend is true: the pods were stopped after a checkpoint; set it to "
               "false to resume")
    a, changed = a.condition(ctx, cond.SUSPENDED, "True", cond.REASON_SUSPENDED, message)
    if changed:
        a = a.event("Normal", cond.REASON_SUSPENDED, message)
    status, _ = with_allocation(a.status, None)
    a = replace(a, status=status)
    for type_ in (cond.SCHEDULED, cond.RESIZING):
        if cond.find(a.status.conditions, type_) is not None:
            a, _ = a.condition(ctx, type_, "False", cond.REASON_SUSPENDED, "the job is suspended")
    return a.done()


def measure_pause(a: Assessed, ctx: Context) -> Assessed:
    """What this generation's resize cost, once, when it trains at its size: a restart's
    time from the decision to its first step (Prometheus); in place, the chief's switch
    time and the time to its answer (the controller's `InPlaceAttempt`), or, when the
    operator restarted during it, the first step Prometheus shows. Kept in
    status.allocation and, per kind, in status.resizeCosts (what the allocator charges
    the job's next move of that kind), with an event saying the path and the pause."""
    allocation = a.status.allocation
    if allocation is None or allocation.generation < 1 or (
            allocation.resize_seconds is not None or allocation.restart_seconds is not None):
        return a
    kind = allocation.resize_kind or RESIZE_RESTART
    attempt = a.state.in_place
    pause: float | None
    if allocation.in_place:
        decided = parse_time(allocation.updated_at)
        if (attempt is not None and attempt.generation == allocation.generation
                and attempt.ok and attempt.answered_at is not None and decided is not None):
            took: float | None = round(max(0.0, attempt.answered_at - decided), 1)
            pause = attempt.switch_seconds
        else:
            took = measured_restart_seconds(allocation, ctx.observation)
            pause = None
        if took is None:
            return a
        new = replace(allocation, resize_seconds=took, pause_seconds=(
            None if pause is None else round(pause, 3)))
    else:
        took = measured_restart_seconds(allocation, ctx.observation)
        if took is None:
            return a
        pause = took
        new = replace(allocation, restart_seconds=took, pause_seconds=took, resize_seconds=took)
    status, _ = with_allocation(a.status, new)
    if pause is not None:
        costs = {**dict(status.resize_costs), kind: round(pause, 3)}
        status = replace(status, resize_costs=tuple(sorted(costs.items())))
    a = replace(a, status=status)
    path = "in place" if allocation.in_place else "by restart"
    paused = "" if pause is None else f", training paused {pause:.1f} s"
    return a.event("Normal", cond.REASON_RESIZE_PAUSE,
                   f"generation {allocation.generation} "
                   f"({_size(allocation.ps, allocation.workers)}) resized {path}: at the new "
                   f"size {took:.1f} s after the decision{paused}")


def observe_progress(a: Assessed, ctx: Context) -> Assessed:
    """status.progress from the observation. A new generation's pods report step 0 until
    they have restored the checkpoint: that reading is not the job's progress, and showing
    it would make the epoch jump back to 0."""
    progress, observation = a.status.progress, ctx.observation
    if observation is None or observation.epoch is None:
        return a
    if (progress is not None and not (observation.step or 0) > 0
            and observation.epoch < progress.epoch):
        return a
    status, _ = with_progress(a.status, ProgressStatus(
        epoch=round(observation.epoch, 4),
        step=int(observation.step or 0),
        loss=observation.loss,
        speed=observation.speed if observation.speed is not None else (
            progress.speed if progress else None),
        updated_at=iso(ctx.now),
    ))
    return replace(a, status=status)


def _arrival(meta: JobMeta) -> float:
    return parse_time(meta.created) or 0.0


def _unknown(ps: int, workers: int) -> float:
    return math.inf


def round_job(a: Assessed, *, hold: bool = False,
              settings: RoundSettings | None = None) -> RoundJob:
    """The job as the round (optimus.round) sees it, from its spec and status."""
    job = a.state.job
    assert job is not None
    allocation, progress = a.status.allocation, a.status.progress
    current = None if allocation is None else (
        JobPlacement(allocation.ps_nodes, allocation.worker_nodes))
    view = job_view(job, _unknown, arrival=_arrival(a.state.meta), current=None if (
        allocation is None) else _counts(allocation))
    # the ETA counts from the newest progress, so that it moves only when the job does
    observed_at = parse_time(progress.updated_at if progress else (
        allocation.running_since if allocation else ""))
    view = replace(view, resize_costs=resize_costs(a.status, job, settings or RoundSettings()))
    return RoundJob(view=view, batch_size=job.spec.global_batch_size,
                    rule=job.spec.convergence.rule(), model=ModelMemory(a.status.model),
                    epochs_done=progress.epoch if progress else 0.0, placement=current,
                    hold=hold, eta_from=observed_at, kind=job.spec.kind)


def _counts(allocation: AllocationStatus) -> Allocation:
    return Allocation(allocation.ps, allocation.workers)


def fit_models(a: Assessed, ctx: Context) -> Assessed:
    """status.model: the round's fit step (optimus.round) on this round's observation."""
    job = round_job(a, settings=ctx.settings)
    fitted = fit_round_job(job, ctx.observation, now=ctx.now,
                           settings=ctx.settings.scheduling, store=ctx.store)
    status, _ = with_model(a.status, replace(fitted.model.status,
                                             prior=prior_status(job, ctx.store)))
    return replace(a, status=status, fitted=fitted)


def prior_status(job: RoundJob, store: KnowledgeStore | None) -> PriorStatus | None:
    """status.model.prior: what the job's kind had pooled when the fit ran (None: nothing)."""
    key = job.kind_key
    entry = store.get(key) if store is not None and key is not None else None
    if entry is None or key is None:
        return None
    return PriorStatus(kind=key, finished_jobs=len(entry.finished_epochs),
                       speed_samples=entry.observations, configurations=len(entry.samples),
                       speed_model=entry.theta is not None)


def learn(store: KnowledgeStore, assessed: Sequence[Assessed],
          observations: Mapping[tuple[str, str], JobObservation]) -> KnowledgeStore:
    """The store after a round, fed exactly as the simulator feeds it (optimus.round): every
    fitted job's speed observation pooled (`pool_observations`), and every job that
    succeeded this round remembered with the epochs it trained and its epoch size
    (`pool_finished`)."""
    fitted = [a for a in assessed if a.fitted is not None]
    jobs = [a.fitted.job for a in fitted if a.fitted is not None]
    store = pool_observations(store, jobs, {
        job.id: observations.get((a.state.meta.namespace, a.state.meta.name))
        for a, job in zip(fitted, jobs, strict=True)})
    for a, job in zip(fitted, jobs, strict=True):
        if (a.status.phase == cond.SUCCEEDED_PHASE
                and a.state.status.phase != cond.SUCCEEDED_PHASE
                and a.status.progress is not None):
            store = pool_finished(store, job, a.status.progress.epoch,
                                  a.status.model.samples_per_epoch)
    return store


def metrics(a: Assessed, ctx: Context) -> Assessed:
    """MetricsAvailable; a job without metrics is blind and held where it is."""
    allocation, observation = a.status.allocation, ctx.observation
    started = parse_time(allocation.running_since) if allocation else None
    if ctx.metrics_error is not None:
        if allocation is not None:
            a, _ = a.condition(ctx, cond.METRICS, "False", cond.REASON_METRICS_UNAVAILABLE,
                               f"{ctx.metrics_error}; keeping the current allocation until "
                               f"metrics return")
        return replace(a, blind=True)
    if observation is not None and observation.series:
        a, _ = a.condition(ctx, cond.METRICS, "True", cond.REASON_METRICS_OBSERVED,
                           "the job's metrics are scraped")
        return a
    if started is not None and ctx.now - started > ctx.settings.metrics_grace_seconds:
        a, _ = a.condition(ctx, cond.METRICS, "False", cond.REASON_METRICS_UNAVAILABLE,
                           f"no series from the job's pods since they started "
                           f"({allocation.running_since if allocation else '?'}); check that "
                           f"Prometheus scrapes their '{contract.METRICS_PORT_NAME}' port")
        return replace(a, blind=True)
    return a


def completion(a: Assessed, ctx: Context) -> Assessed:
    """Succeeded at maxEpochs, when the chief worker finished, or by the convergence rule."""
    job = a.state.job
    assert job is not None
    rule = job.spec.convergence
    progress = a.status.progress
    epochs_done = progress.epoch if progress else 0.0
    chief = next((p for p in a.current_pods if p.role == "worker" and p.rank == 0), None)
    estimate = a.knowledge.estimate
    if epochs_done >= rule.max_epochs:
        reason, message = cond.REASON_MAX_EPOCHS, f"reached maxEpochs={rule.max_epochs}"
    elif chief is not None and chief.phase == "Succeeded":
        reason, message = cond.REASON_MAX_EPOCHS, "the chief worker finished training"
    elif (estimate is not None and estimate.remaining_epochs <= 0
          and epochs_done >= rule.window):
        reason, message = cond.REASON_CONVERGED, (
            f"the fitted loss drops less than {rule.loss_delta} over {rule.window} epochs "
            f"(epoch {epochs_done:.1f})")
    else:
        return a
    a, _ = a.condition(ctx, cond.SUCCEEDED, "True", reason, message)
    a, _ = a.condition(ctx, cond.RESIZING, "False", cond.REASON_PODS_RUNNING, "finished")
    return a.event("Normal", cond.SUCCEEDED, message).done()


def pod_failure(a: Assessed, ctx: Context) -> Assessed:
    """A failed or vanished pod: a new generation of the same size (a restart), up to
    spec.restartLimit, then Failed."""
    job, allocation = a.state.job, a.status.allocation
    assert job is not None
    if allocation is None or a.state.busy:
        return a
    current = a.current_pods
    failed_pods = [p for p in current if p.phase == "Failed"]
    failed = [p.name for p in failed_pods]
    missing = (bool(allocation.running_since)
               and len(current) < allocation.ps + allocation.workers)
    if not failed and not missing:
        return a
    what = (f"pod(s) {', '.join(sorted(failed))} failed" if failed
            else "pods of the running generation disappeared")
    what += failure_message(failed_pods)
    if a.status.restarts >= job.spec.restart_limit:
        message = f"{what}; restartLimit {job.spec.restart_limit} reached"
        a, _ = a.condition(ctx, cond.FAILED, "True", cond.REASON_RESTART_LIMIT, message)
        if cond.find(a.status.conditions, cond.RESIZING) is not None:
            # a failed job rolls nothing out
            a, _ = a.condition(ctx, cond.RESIZING, "False", cond.REASON_JOB_FAILED,
                               "the job failed")
        return a.event("Warning", cond.REASON_RESTART_LIMIT, message).done()
    a = replace(a, restart=True, status=replace(a.status, restarts=a.status.restarts + 1))
    return a.event("Warning", cond.REASON_POD_FAILED,
                   f"{what}; restarting from the last checkpoint "
                   f"({a.status.restarts}/{job.spec.restart_limit})")


def in_place_outcome(a: Assessed, ctx: Context) -> Assessed:
    """A resize in place that will not happen falls back to checkpoint-restart: the
    controller's attempt failed (the chief refused it, did not answer in time, or the
    request could not be sent), or, with no attempt known (the operator restarted during
    it), the job shows no step at the new size in_place_timeout_seconds after the
    decision. A failed pod is `pod_failure`'s (a counted restart)."""
    allocation = a.status.allocation
    if (allocation is None or not allocation.in_place or allocation.running_since
            or a.restart or a.state.busy):
        return a
    attempt = a.state.in_place
    if attempt is not None and attempt.generation == allocation.generation:
        if attempt.ok:
            return a
        why = attempt.error or "the resize in place failed"
    else:
        decided = parse_time(allocation.updated_at)
        timeout = ctx.settings.in_place_timeout_seconds
        observed = ctx.observation
        trains = (observed is not None and observed.generation == allocation.generation
                  and (observed.step or 0) > 0)  # the workers step under the new generation
        if (trains or allocation.resize_seconds is not None or decided is None
                or ctx.now - decided < timeout):
            return a
        why = (f"no step at {_size(allocation.ps, allocation.workers)} within {timeout:.0f} s "
               f"of the decision (the operator restarted during the resize)")
    message = (f"resize in place to generation {allocation.generation} failed: {why}; "
               f"restarting from the checkpoint instead")
    a, _ = a.condition(ctx, cond.RESIZING, "True", cond.REASON_IN_PLACE_FAILED, message)
    return replace(a.event("Warning", cond.REASON_IN_PLACE_FAILED, message), fallback=why)


def _retired(a: Assessed, allocation: AllocationStatus) -> bool:
    """Every live pod outside the allocation has exited: a resize in place's removed
    workers or PS leave after the switch and are deleted only then."""
    desired = desired_pods(a.state.meta, allocation)
    return all(p.phase in ("Succeeded", "Failed") for p in a.state.pods
               if p.name not in desired and not p.deleting)


def resize_progress(a: Assessed, ctx: Context) -> Assessed:
    """Resizing=False once every pod of the generation runs (and nothing else does); a
    ResizeStuck warning when they do not within resize_timeout_seconds."""
    allocation = a.status.allocation
    if allocation is None or a.restart or a.fallback or a.state.busy:
        return a
    current = a.current_pods
    if not _pods_differ(a.state, allocation) and all(p.phase == "Running" for p in current):
        if not allocation.running_since:
            status, _ = with_allocation(a.status, replace(allocation,
                                                          running_since=iso(ctx.now)))
            a = replace(a, status=status)
        a, _ = a.condition(ctx, cond.RESIZING, "False", cond.REASON_PODS_RUNNING,
                           "every pod of the allocation is running")
        return a
    stuck = stuck_resize(allocation, current, ctx.now, ctx.settings)
    if stuck:
        a, changed = a.condition(ctx, cond.RESIZING, "True", cond.REASON_RESIZE_STUCK, stuck)
        if changed:
            a = a.event("Warning", cond.REASON_RESIZE_STUCK, stuck)
    return a


def schedulable(a: Assessed, ctx: Context) -> Assessed:
    """The job goes to the round, held where it is while it restarts, its pod work is in
    flight, its resize has not settled or its metrics are missing; its pods are rolled
    when they are not the allocation's."""
    allocation = a.status.allocation
    settled = (allocation is not None and bool(allocation.running_since)
               and not cond.is_true(a.status.conditions, cond.RESIZING))
    hold = a.restart or bool(a.fallback) or a.state.busy or not settled or a.blind
    assert a.fitted is not None
    fitted = replace(a.fitted, job=replace(a.fitted.job, hold=hold))
    roll = allocation is not None and not a.state.busy and _pods_differ(a.state, allocation)
    if roll and allocation is not None and allocation.in_place:
        # in place the pods outside the allocation are the removed workers or PS: deleted
        # once they exited, never while they may still train (their switch is the chief's)
        roll = _retired(a, allocation)
    return replace(a, schedulable=True, fitted=fitted, action="roll" if roll else "none",
                   final=True)


Rule = Callable[[Assessed, Context], Assessed]
#: the rules of `assess`, in order (the module docstring's table)
RULES: tuple[Rule, ...] = (invalid_spec, oversized_pods, valid_spec, finished, suspended,
                           measure_pause, observe_progress, fit_models, metrics, completion,
                           pod_failure, in_place_outcome, resize_progress, schedulable)


def assess(
    state: JobState,
    observation: JobObservation | None,
    *,
    metrics_error: str | None,
    now: float,
    settings: RoundSettings,
    nodes: Sequence[NodeView] = (),
    store: KnowledgeStore | None = None,
) -> Assessed:
    """Everything about one job that does not depend on the other jobs: RULES in order
    until one settles it. `metrics_error` is set when Prometheus could not be asked at all;
    `nodes` are the cluster's, to tell a job that fits no node at all (none: not checked);
    `store` holds the knowledge pooled across jobs, the priors of the fit."""
    ctx = Context(observation, metrics_error, now, settings, nodes, store)
    a = Assessed(state, state.status)
    for rule in RULES:
        a = rule(a, ctx)
        if a.final:
            break
    return a


def schedule_assessed(assessed: Sequence[Assessed], nodes: Sequence[NodeView], *,
                      now: float, settings: RoundSettings) -> RoundOutcome:
    """Steps 4 and 5 (with the pins and keep-running) over every schedulable job: the
    round's `schedule` (optimus.round)."""
    fitted = [a.fitted for a in assessed if a.schedulable and a.fitted is not None]
    return schedule(fitted, nodes, settings.scheduling, now=now)


#: the longest failure cause carried into a condition and an event (the end is kept)
MAX_FAILURE_MESSAGE = 1000


def failure_message(failed: Sequence[PodSnapshot]) -> str:
    """Why the failed pods failed, from their termination messages (what the worker wrote,
    or the log tail the kubelet fell back to), for the condition and the event: ": <the
    first failed pod's message>" in pod-name order, or "" when no pod said."""
    for pod in sorted(failed, key=lambda p: p.name):
        text = " ".join(pod.message.split())
        if text:
            if len(text) > MAX_FAILURE_MESSAGE:
                text = "..." + text[-MAX_FAILURE_MESSAGE:]
            return f": {pod.name}: {text}"
    return ""


def measured_restart_seconds(allocation: AllocationStatus,
                             observation: JobObservation | None) -> float | None:
    """What the allocation's generation cost as a restart, when it can first be told: the
    seconds from its decision to its first training step (`first_step_at`, from the step
    counters in Prometheus). None when it is already recorded, when the generation is a
    job's first (its start is not a restart, and may include an image pull), or when the
    observation is of another generation or has not seen the first step."""
    if (allocation.restart_seconds is not None or allocation.generation < 1
            or observation is None or observation.generation != allocation.generation
            or observation.first_step_at is None):
        return None
    decided = parse_time(allocation.updated_at)
    if decided is None:
        return None
    return round(max(0.0, observation.first_step_at - decided), 1)


def learned_resize_costs(states: Sequence[JobState]) -> tuple[tuple[str, float], ...]:
    """The cluster's cost of each kind of resize, for the jobs that have not measured
    their own: the median over the jobs that have (status.resizeCosts), from the first
    measurement on."""
    measured: dict[str, list[float]] = {}
    for state in states:
        for kind, seconds in state.status.resize_costs:
            measured.setdefault(kind, []).append(seconds)
    return tuple(sorted((kind, float(statistics.median(values)))
                        for kind, values in measured.items()))


def learned_restart_cost(states: Sequence[JobState], configured: float) -> float:
    """The restart cost the round uses: the median of the restarts measured on this cluster
    (each job's current generation, `measured_restart_seconds`) from the first one
    (MIN_MEASURED_RESTARTS), else the configured value. A restart's cost is mostly the
    cluster's (pod start, process start, checkpoint restore), so one value for all jobs
    that have not measured their own (`resize_costs`); the median keeps one slow start (a
    busy node) from moving it."""
    measured = [s.status.allocation.restart_seconds for s in states
                if s.status.allocation is not None
                and s.status.allocation.restart_seconds is not None]
    if len(measured) < MIN_MEASURED_RESTARTS:
        return configured
    return float(statistics.median(measured))


def stuck_resize(allocation: AllocationStatus, current: Sequence[PodSnapshot], now: float,
                 settings: RoundSettings) -> str:
    """Why the generation's resize is stuck ('' while it is not): its pods have not all run
    within `resize_timeout_seconds` of the decision (a pod that cannot be scheduled or
    started, say). The message lists the pods that do not run, so that it stays the same
    from round to round and the Warning is posted once."""
    decided = parse_time(allocation.updated_at)
    if allocation.running_since or decided is None or (
            now - decided < settings.resize_timeout_seconds):
        return ""
    waiting = sorted(f"{p.name} ({p.phase})" for p in current if p.phase != "Running")
    missing = allocation.ps + allocation.workers - len(current)
    if missing > 0:
        waiting.append(f"{missing} not created")
    if not waiting:
        return ""
    return (f"generation {allocation.generation} is not running "
            f"{settings.resize_timeout_seconds:.0f} s after it was decided: "
            f"{', '.join(waiting)}; see the pods' events (kubectl describe pod)")


# ---- step 6: decisions ---------------------------------------------------------------------
def _size(ps: int, workers: int) -> str:
    return f"{ps} PS x {workers} worker{'s' if workers != 1 else ''}"


def decide(
    assessed: Sequence[Assessed],
    outcome: RoundOutcome,
    *,
    now: float,
    settings: RoundSettings,
) -> list[Decision]:
    """Each job's decision from its assessment and the round's outcome."""
    return [_decide_one(a, outcome, now, settings) for a in assessed]


def _decide_one(a: Assessed, outcome: RoundOutcome, now: float,
                settings: RoundSettings) -> Decision:
    ctx = Context(None, None, now, settings)
    # status.selector (the scale subresource's labelSelectorPath) is written every round
    a = replace(a, status=replace(a.status, selector=worker_selector(a.state.meta.name)))
    previous = a.status.allocation
    job = a.state.job
    decided = outcome.jobs.get(a.key) if a.schedulable else None
    if decided is not None:
        a = replace(a, fitted=replace(a.fitted, knowledge=decided.knowledge)) if (
            a.fitted is not None) else a
    if decided is not None and job is not None:
        placed = decided.placement
        if placed is None and previous is not None and (a.restart or a.fallback):
            placed = JobPlacement(previous.ps_nodes, previous.worker_nodes)
        if placed is None:
            if previous is None:
                a, _ = a.condition(
                    ctx, cond.SCHEDULED, "False", cond.REASON_QUEUED,
                    f"waiting for room for its minimum "
                    f"({_size(job.spec.parameter_servers.min, job.spec.workers.min)})")
        else:
            a = _allocate(a, ctx, placed, previous)
    return Decision(
        meta=a.state.meta,
        status=a.status,
        patch=status_patch(a.state.raw_status, a.status),
        action=a.action,
        events=a.events,
        previous=previous,
        knowledge=a.knowledge,
        job=job,
    )


@dataclass(frozen=True)
class InPlaceMove:
    """A move the running job makes in place: its kind (RESIZE_IN_PLACE_WORKERS or
    RESIZE_IN_PLACE_PS) and every rank's node, the staying ranks on theirs."""

    kind: str
    ps_nodes: tuple[str, ...]
    worker_nodes: tuple[str, ...]


def _staying_first(current: tuple[str, ...], placed: tuple[str, ...]) -> tuple[str, ...] | None:
    """The placed nodes ordered so that the ranks that stay (the lowest) keep their nodes;
    None when one of them would have to move."""
    staying = current[:len(placed)]
    added = Counter(placed)
    added.subtract(staying)
    if any(n < 0 for n in added.values()):
        return None
    return (*staying, *sorted(added.elements()))


def in_place_move(job: TrainingJob, previous: AllocationStatus,
                  placed: JobPlacement) -> InPlaceMove | None:
    """How the move from `previous` to `placed` is made in place, else None (a restart).
    In place: exactly one count changes and the job's mode changes that count in place
    (contract.IN_PLACE_WORKER_CHANGE_MODES for the workers, IN_PLACE_PS_CHANGE_MODES for
    the PS), the job runs the library with one process per pod, its pods all run, and the
    ranks that stay (PS 0 and worker 0 always do) keep their nodes."""
    ps, workers = len(placed.ps_nodes), len(placed.worker_nodes)
    if ps == previous.ps:
        kind, modes = RESIZE_IN_PLACE_WORKERS, contract.IN_PLACE_WORKER_CHANGE_MODES
    else:
        kind, modes = RESIZE_IN_PLACE_PS, contract.IN_PLACE_PS_CHANGE_MODES
    if ((ps, workers) == (previous.ps, previous.workers)
            or (ps != previous.ps and workers != previous.workers)
            or job.spec.mode not in modes or job.spec.runs_command
            or processes_per_pod(job, "worker") != 1 or not previous.running_since):
        return None
    ps_nodes = _staying_first(previous.ps_nodes, placed.ps_nodes)
    worker_nodes = _staying_first(previous.worker_nodes, placed.worker_nodes)
    if ps_nodes is None or worker_nodes is None:
        return None
    return InPlaceMove(kind, ps_nodes, worker_nodes)


def _pod_generations(previous: AllocationStatus, role: str, count: int,
                     generation: int) -> tuple[int, ...]:
    """Each rank's pod generation after a move in place: the staying ranks keep their pods,
    the added ones are of the new generation."""
    staying = previous.pod_generations(role)[:count]
    return (*staying, *[generation] * (count - len(staying)))


def _allocate(a: Assessed, ctx: Context, placed: JobPlacement,
              previous: AllocationStatus | None) -> Assessed:
    """The job placed at `placed`: a new generation when its counts change (or it restarts
    or starts), in place when it can be (`in_place_move`), and the Scheduled condition."""
    counts = (len(placed.ps_nodes), len(placed.worker_nodes))
    probing = a.knowledge.probing
    job = a.state.job
    assert job is not None
    if previous is None or a.restart or a.fallback or counts != (previous.ps,
                                                                 previous.workers):
        reason = ("restart after a resize in place failed" if a.fallback else
                  "probe" if probing else
                  "restart after a pod failure" if a.restart else "allocation")
        generation = previous.generation + 1 if previous else 0
        move = (None if previous is None or a.restart or a.fallback
                or ctx.settings.in_place_timeout_seconds <= 0
                else in_place_move(job, previous, placed))
        if move is None or previous is None:
            new = AllocationStatus(
                ps=counts[0], workers=counts[1], generation=generation,
                ps_nodes=placed.ps_nodes, worker_nodes=placed.worker_nodes,
                reason=reason, updated_at=iso(ctx.now),
                resize_kind="" if previous is None else RESIZE_RESTART)
            action: Action = "roll"
        else:
            new = AllocationStatus(
                ps=counts[0], workers=counts[1], generation=generation,
                ps_nodes=move.ps_nodes, worker_nodes=move.worker_nodes,
                reason=reason, updated_at=iso(ctx.now), resize_kind=move.kind,
                ps_generations=_pod_generations(previous, "ps", counts[0], generation),
                worker_generations=_pod_generations(previous, "worker", counts[1],
                                                    generation))
            action = "in-place"
        status, _ = with_allocation(a.status, new)
        a = replace(a, status=status, action=action)
        if previous is not None:
            message = _resize_message(a, previous, new, ctx.settings)
            reason_ = (cond.REASON_POD_FAILED if a.restart else
                       cond.REASON_IN_PLACE_FAILED if a.fallback else
                       cond.REASON_RESIZE_IN_PLACE if new.in_place else cond.REASON_RESIZE)
            a, _ = a.condition(ctx, cond.RESIZING, "True", reason_, message)
            if not a.restart and not a.fallback:
                a = a.event("Normal", "Resized", message)
        else:
            a = a.event("Normal", "Started",
                        f"started with {_size(*counts)} on {', '.join(new.nodes)}")
    allocation = a.status.allocation
    assert allocation is not None
    a, _ = a.condition(ctx, cond.SCHEDULED, "True",
                       cond.REASON_PROBING if probing else cond.REASON_ALLOCATED,
                       f"{_size(allocation.ps, allocation.workers)} on "
                       f"{', '.join(allocation.nodes)}")
    return a


def _resize_message(a: Assessed, old: AllocationStatus, new: AllocationStatus,
                    settings: RoundSettings) -> str:
    path = "in place" if new.in_place else "by restart"
    text = (f"{_size(old.ps, old.workers)} -> {_size(new.ps, new.workers)} {path} "
            f"(generation {new.generation}, {new.reason})")
    job = a.state.job
    if a.fallback:
        return f"{text}: the resize in place failed: {a.fallback}"
    if job is None or a.knowledge.probing or a.restart:
        return text
    remaining = a.knowledge.remaining_time(job.spec.global_batch_size, job.spec.mode)
    before, after = remaining(old.ps, old.workers), remaining(new.ps, new.workers)
    if math.isfinite(before) and math.isfinite(after):
        # the cost of the path taken: a move the job could make in place but whose
        # placement moved a running pod is a restart
        costs = resize_costs(a.status, job, settings)
        cost = costs.seconds(_counts(old), _counts(new)) if new.in_place else costs.restart
        text += (f": predicted remaining {before:.0f} s -> {after:.0f} s "
                 f"(gain {before - after:.0f} s), resize cost {cost:.0f} s")
    return text


def resize_costs(status: TrainingJobStatus, job: TrainingJob,
                 settings: RoundSettings) -> ResizeCosts:
    """What each kind of move costs this job: its own newest measurement of the kind
    (status.resizeCosts), else the cluster's (`learned_resize_costs`, in the settings),
    else the configured restart cost and in-place priors. The job's worker change and PS
    change are restarts unless its mode can make them in place (`in_place_move`)."""
    learned = dict(settings.learned_costs)

    def cost(kind: str, prior: float, modes: frozenset[str]) -> float | None:
        if (job.spec.mode not in modes or job.spec.runs_command
                or processes_per_pod(job, "worker") != 1
                or settings.in_place_timeout_seconds <= 0):
            return None
        own = status.resize_cost(kind)
        return own if own is not None else learned.get(kind, prior)

    restart = status.resize_cost(RESIZE_RESTART)
    return ResizeCosts(
        restart=restart if restart is not None else learned.get(
            RESIZE_RESTART, settings.restart_cost_seconds),
        worker_change=cost(RESIZE_IN_PLACE_WORKERS, settings.in_place_cost_seconds,
                           contract.IN_PLACE_WORKER_CHANGE_MODES),
        ps_change=cost(RESIZE_IN_PLACE_PS, settings.in_place_ps_cost_seconds,
                       contract.IN_PLACE_PS_CHANGE_MODES))


def fitted_loss_now(knowledge: Knowledge) -> float | None:
    if knowledge.loss_fit is None:
        return None
    value = loss_at(knowledge.loss_fit.params, knowledge.epochs_done)
    return value if math.isfinite(value) else None

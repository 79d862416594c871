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
  restart cost        -> the generation's measured restart, once its first step shows
  observe             -> status.progress (a restoring generation's step 0 ignored)
  fit                 -> status.model (bounded samples, fitted params; optimus.round)
  metrics             -> MetricsAvailable; while False the job is held (never resized on
                         missing data)
  completion          -> Succeeded (convergence rule or maxEpochs), pods deleted
  pod failure         -> a new generation of the same size, up to spec.restartLimit, then Failed
                         with the failed pod's termination message (`failure_message`) and
                         Resizing=False
  resize progress     -> Resizing=False once every pod of the generation runs (or a
                         ResizeStuck warning)
  schedulable         -> the round's job: held while restarting, busy, resizing or blind
Then the round (optimus.round.schedule) pins, allocates and places every schedulable job at
once, and `decide` turns the result into new allocations (a new generation when the counts
change), Scheduled conditions, events and actions.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from optimus_worker import contract

from optimus.api import conditions as cond
from optimus.api.spec import GPU_RESOURCE, JobMeta, SpecError, TrainingJob
from optimus.api.status import (
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
from optimus.kube.builders import worker_selector
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
from optimus.scheduling.types import Allocation, JobPlacement

__all__ = ["Knowledge"]  # re-exported: a Decision carries one

Action = Literal["none", "roll", "delete"]
#: the measured restarts needed before they replace the configured restart cost
MIN_MEASURED_RESTARTS = 3


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

    @property
    def scheduling(self) -> SchedulingSettings:
        """The round's settings (optimus.round) at the operator's cadence."""
        return SchedulingSettings(policy=self.policy,
                                  restart_cost_seconds=self.restart_cost_seconds)


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
        allocation = self.status.allocation
        return [p for p in self.state.pods if allocation and
                p.generation == allocation.generation and not p.deleting]

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
def _desired_pods(meta: JobMeta, allocation: AllocationStatus) -> set[str]:
    return {
        *(contract.pod_name(meta.name, "ps", r, allocation.generation)
          for r in range(allocation.ps)),
        *(contract.pod_name(meta.name, "worker", r, allocation.generation)
          for r in range(allocation.workers)),
    }


def _pods_differ(state: JobState, allocation: AllocationStatus) -> bool:
    live = {p.name for p in state.pods if not p.deleting}
    return live != _desired_pods(state.meta, allocation)


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


def restart_cost(a: Assessed, ctx: Context) -> Assessed:
    """What this generation's restart cost, once, when its first step shows."""
    allocation = a.status.allocation
    cost = (None if allocation is None
            else measured_restart_seconds(allocation, ctx.observation))
    if allocation is None or cost is None:
        return a
    status, _ = with_allocation(a.status, replace(allocation, restart_seconds=cost))
    return replace(a, status=status)


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


def round_job(a: Assessed, *, hold: bool = False) -> RoundJob:
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
    return RoundJob(view=view, batch_size=job.spec.global_batch_size,
                    rule=job.spec.convergence.rule(), model=ModelMemory(a.status.model),
                    epochs_done=progress.epoch if progress else 0.0, placement=current,
                    hold=hold, eta_from=observed_at, kind=job.spec.kind)


def _counts(allocation: AllocationStatus) -> Allocation:
    return Allocation(allocation.ps, allocation.workers)


def fit_models(a: Assessed, ctx: Context) -> Assessed:
    """status.model: the round's fit step (optimus.round) on this round's observation."""
    job = round_job(a)
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


def resize_progress(a: Assessed, ctx: Context) -> Assessed:
    """Resizing=False once every pod of the generation runs (and nothing else does); a
    ResizeStuck warning when they do not within resize_timeout_seconds."""
    allocation = a.status.allocation
    if allocation is None or a.restart or a.state.busy:
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
    hold = a.restart or a.state.busy or not settled or a.blind
    assert a.fitted is not None
    fitted = replace(a.fitted, job=replace(a.fitted.job, hold=hold))
    roll = allocation is not None and not a.state.busy and _pods_differ(a.state, allocation)
    return replace(a, schedulable=True, fitted=fitted, action="roll" if roll else "none",
                   final=True)


Rule = Callable[[Assessed, Context], Assessed]
#: the rules of `assess`, in order (the module docstring's table)
RULES: tuple[Rule, ...] = (invalid_spec, oversized_pods, valid_spec, finished, suspended,
                           restart_cost, observe_progress, fit_models, metrics, completion,
                           pod_failure, resize_progress, schedulable)


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


def learned_restart_cost(states: Sequence[JobState], configured: float) -> float:
    """The restart cost the round uses: the median of the restarts measured on this cluster
    (each job's current generation, `measured_restart_seconds`) once there are
    MIN_MEASURED_RESTARTS of them, else the configured value. A restart's cost is mostly
    the cluster's (pod start, process start, checkpoint restore), so one value for all jobs;
    the median keeps one slow start (a busy node) from moving it."""
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
        if placed is None and previous is not None and a.restart:
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


def _allocate(a: Assessed, ctx: Context, placed: JobPlacement,
              previous: AllocationStatus | None) -> Assessed:
    """The job placed at `placed`: a new generation when its counts change (or it restarts
    or starts), and the Scheduled condition."""
    counts = (len(placed.ps_nodes), len(placed.worker_nodes))
    probing = a.knowledge.probing
    if previous is None or a.restart or counts != (previous.ps, previous.workers):
        reason = ("probe" if probing else
                  "restart after a pod failure" if a.restart else "allocation")
        new = AllocationStatus(
            ps=counts[0], workers=counts[1],
            generation=previous.generation + 1 if previous else 0,
            ps_nodes=placed.ps_nodes, worker_nodes=placed.worker_nodes,
            reason=reason, updated_at=iso(ctx.now),
        )
        status, _ = with_allocation(a.status, new)
        a = replace(a, status=status, action="roll")
        if previous is not None:
            message = _resize_message(a, previous, new, ctx.settings)
            a, _ = a.condition(ctx, cond.RESIZING, "True",
                               cond.REASON_POD_FAILED if a.restart else cond.REASON_RESIZE,
                               message)
            if not a.restart:
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
    text = (f"{_size(old.ps, old.workers)} -> {_size(new.ps, new.workers)} "
            f"(generation {new.generation}, {new.reason})")
    job = a.state.job
    if job is None or a.knowledge.probing or a.restart:
        return text
    remaining = a.knowledge.remaining_time(job.spec.global_batch_size, job.spec.mode)
    before, after = remaining(old.ps, old.workers), remaining(new.ps, new.workers)
    if math.isfinite(before) and math.isfinite(after):
        text += (f": predicted remaining {before:.0f} s -> {after:.0f} s "
                 f"(gain {before - after:.0f} s), restart cost "
                 f"{settings.restart_cost_seconds:.0f} s")
    return text


def fitted_loss_now(knowledge: Knowledge) -> float | None:
    if knowledge.loss_fit is None:
        return None
    value = loss_at(knowledge.loss_fit.params, knowledge.epochs_done)
    return value if math.isfinite(value) else None

"""Steps 3 to 5 of a scheduling round and the decisions of step 6, pure: from the snapshot
(step 1) and the observations (step 2) to each job's new status and what to do with its
pods. No I/O here: optimus.kube.controller runs it, times each step, writes the statuses
and carries the actions out.

Per job, in order (`assess`):
  invalid spec        -> Valid=False (a Warning event on the change), pods deleted
  oversized pods      -> Valid=False too when a job that never ran asks, per pod, for more
                         than any node has (it would queue forever); re-checked every round
  finished            -> nothing but deleting leftover pods
  suspended           -> spec.suspend: Suspended=True, the allocation given up, pods deleted
                         (after a checkpoint); cleared: Resumed, a new start (`suspended`)
  observe + fit       -> status.progress and status.model (bounded samples, fitted params)
  metrics             -> MetricsAvailable; while False the job is pinned (never resized on
                         missing data)
  completion          -> Succeeded (convergence rule or maxEpochs), pods deleted
  pod failure         -> a new generation of the same size, up to spec.restartLimit, then Failed
                         with the failed pod's termination message (`failure_message`) and
                         Resizing=False (`stop_resizing`)
  resize progress     -> Resizing=False once every pod of the generation runs
  pin                 -> probing jobs get their next probe, new jobs their minimum, jobs that
                         are resizing or blind keep their allocation; the rest are free
Then the policy allocates (step 4) and the placer places (step 5) every schedulable job at
once, and `decide` turns the result into new allocations (a new generation when the counts
change), Scheduled conditions, events and actions.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from optimus_worker import contract

from optimus.api import conditions as cond
from optimus.api.spec import GPU_RESOURCE, JobMeta, SpecError, TrainingJob
from optimus.api.status import (
    AllocationStatus,
    ModelStatus,
    ProgressStatus,
    TrainingJobStatus,
    iso,
    merge_loss_samples,
    merge_speed_sample,
    parse_time,
    status_patch,
    with_allocation,
    with_condition,
    with_model,
    with_progress,
)
from optimus.kube.snapshot import PodSnapshot, job_view, oversized_request
from optimus.metrics.observe import JobObservation, SpeedWindow
from optimus.models import (
    THETA_NAMES,
    BatchScope,
    ConvergenceEstimate,
    LossFit,
    LossParams,
    ModelError,
    SpeedParams,
    SpeedSample,
    estimate_convergence,
    fit_loss,
    fit_speed,
    loss_at,
    predict_speed,
    probes_within_box,
    samples_per_second,
)
from optimus.scheduling import Allocation, JobPlacement, JobView, NodeView, Placement
from optimus.scheduling.probes import MAX_PROBE_CHOICES, fit_probes, probe_pays_back
from optimus.scheduling.types import RemainingTime

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
class Knowledge:
    """What the models say about a job after the fit step."""

    loss_fit: LossFit | None = None
    speed: SpeedParams | None = None
    estimate: ConvergenceEstimate | None = None
    epochs_done: float = 0.0
    remaining_epochs: float = 0.0
    samples_per_epoch: float | None = None
    probing: bool = True
    next_probe: tuple[int, int] | None = None
    #: the configurations still worth measuring, best first (next_probe is the first)
    probes: tuple[tuple[int, int], ...] = ()
    speed_samples: tuple[tuple[int, int, float], ...] = ()

    def seconds_per_sample(self, ps: int, workers: int, batch: int, mode: str) -> float:
        """1 / samples per second at (ps, workers): the fitted model, or the nearest
        measured configuration while there is none (so no gain is ever invented)."""
        try:
            if self.speed is not None:
                return 1.0 / samples_per_second(self.speed, ps, workers)
        except (ModelError, ZeroDivisionError):
            return math.inf
        if not self.speed_samples:
            return math.inf
        _, w, steps = min(self.speed_samples,
                          key=lambda s: (abs(s[0] - ps) + abs(s[1] - workers), -s[2]))
        return 1.0 / (steps * samples_per_step(mode, batch, w)) if steps > 0 else math.inf

    def remaining_time(self, batch: int, mode: str) -> RemainingTime:
        work = self.remaining_epochs * (self.samples_per_epoch or 0.0)

        def remaining(ps: int, workers: int) -> float:
            if work <= 0:
                return 0.0
            return work * self.seconds_per_sample(ps, workers, batch, mode)
        return remaining


@dataclass(frozen=True)
class Assessed:
    """A job after `assess`: its status so far and how the allocator may treat it."""

    state: JobState
    status: TrainingJobStatus
    events: tuple[Event, ...] = ()
    schedulable: bool = False
    pin: Allocation | None = None
    knowledge: Knowledge = field(default_factory=Knowledge)
    action: Action = "none"
    restart: bool = False

    @property
    def key(self) -> str:
        return self.state.meta.key


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


# ---- step 3: observe -> fit ---------------------------------------------------------------
# The speed unit fed to the speed model. Synchronous jobs (ps-sync, allreduce) are measured
# in *job* steps per second (one step = the global batch M over all workers, i.e. the
# workers' summed step rate divided by w), so that the equation's t0*M/w is the compute of
# one worker's share and samples/s = speed * M (batch scope "per-worker" of the models,
# with the whole step's batch M). Asynchronous jobs are measured in summed worker steps per
# second, each of M/w samples (batch scope "global"). With a fixed global batch, only this
# reading lets a synchronous job gain from more workers.
def batch_scope(mode: str) -> BatchScope:
    return "global" if mode == "ps-async" else "per-worker"


def samples_per_step(mode: str, batch: int, workers: int) -> float:
    return batch / workers if mode == "ps-async" else float(batch)


def model_speed(mode: str, summed_steps_per_second: float, workers: int) -> float:
    """The speed model's unit from the workers' summed step rate (see above)."""
    return summed_steps_per_second if mode == "ps-async" else summed_steps_per_second / workers


def speed_window(status: TrainingJobStatus, settings: RoundSettings) -> SpeedWindow | None:
    """Which generation to measure and from when: its pods' start plus the warm-up."""
    allocation = status.allocation
    started = parse_time(allocation.running_since) if allocation else None
    if allocation is None or started is None:
        return None
    return SpeedWindow(allocation.generation, started + settings.speed_warmup_seconds)


def _relative_rmse(speed: SpeedParams, samples: Sequence[SpeedSample]) -> float | None:
    try:
        errors = [predict_speed(speed, s.ps, s.workers) / s.speed - 1.0 for s in samples]
    except ModelError:
        return None
    return math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else None


def fit_job(
    job: TrainingJob,
    model: ModelStatus,
    observation: JobObservation | None,
    allocation: AllocationStatus | None,
    epochs_done: float,
    now: float,
) -> tuple[ModelStatus, Knowledge]:
    """The job's model status after this round's observation, and what it implies.
    Parameters are refitted only when their samples changed; the ETA is `now` plus the
    predicted remaining time."""
    spec = job.spec
    loss_samples = merge_loss_samples(model.loss_samples,
                                      observation.loss_points if observation else ())
    speed_samples = model.speed_samples
    if (observation is not None and observation.speed is not None and allocation is not None
            and observation.speed > 0):
        speed_samples = merge_speed_sample(
            speed_samples, allocation.ps, allocation.workers,
            model_speed(spec.mode, observation.speed, allocation.workers))
    samples_per_epoch = (observation.samples_per_epoch if observation and
                         observation.samples_per_epoch else model.samples_per_epoch)

    loss_fit: LossFit | None = None
    loss_error = model.fit_error_loss
    if loss_samples == model.loss_samples and model.loss is not None:
        loss_fit = LossFit(LossParams(*model.loss), len(loss_samples), 0, loss_error or 0.0,
                           loss_samples[-1][0] if loss_samples else 0.0)
    elif len(loss_samples) >= 3:
        try:
            loss_fit = fit_loss([e for e, _ in loss_samples], [v for _, v in loss_samples])
            loss_error = loss_fit.rmse
        except ModelError:
            loss_fit = None

    mode = spec.mode
    samples = [SpeedSample(p, w, s) for p, w, s in speed_samples]
    configs = {(p, w) for p, w, _ in speed_samples}
    speed: SpeedParams | None = None
    speed_error = model.fit_error_speed
    if speed_samples == model.speed_samples and model.speed_theta is not None:
        speed = SpeedParams(mode, float(spec.global_batch_size), model.speed_theta,
                            batch_scope(mode))
    elif len(configs) >= len(THETA_NAMES[mode]):
        try:
            speed = fit_speed(samples, mode, spec.global_batch_size,
                              batch_scope=batch_scope(mode))
            speed_error = _relative_rmse(speed, samples)
        except ModelError:
            speed = None
    probes = probes_within_box(
        spec.parameter_servers.min, spec.parameter_servers.max, spec.workers.min,
        spec.workers.max, configs, MAX_PROBE_CHOICES, mode,
    ) if speed is None else []
    probing = speed is None and bool(probes)

    rule = spec.convergence.rule()
    estimate = estimate_convergence(loss_fit, rule, epochs_done) if loss_fit else None
    left = max(0.0, rule.max_epochs - epochs_done)
    remaining_epochs = min(left, estimate.remaining_epochs) if estimate else left
    knowledge = Knowledge(
        loss_fit=loss_fit,
        speed=speed,
        estimate=estimate,
        epochs_done=epochs_done,
        remaining_epochs=remaining_epochs,
        samples_per_epoch=samples_per_epoch,
        probing=probing,
        next_probe=probes[0] if probes else None,
        probes=tuple(probes),
        speed_samples=speed_samples,
    )
    eta = ""
    if allocation is not None and samples_per_epoch:
        seconds = knowledge.remaining_time(spec.global_batch_size, mode)(allocation.ps,
                                                                         allocation.workers)
        if math.isfinite(seconds):
            eta = iso(now + seconds)
    new_model = ModelStatus(
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
    return new_model, knowledge


# ---- per-job assessment -------------------------------------------------------------------
class _Status:
    """Accumulates condition changes on one status (keeps the call sites short)."""

    def __init__(self, status: TrainingJobStatus, now: float, generation: int) -> None:
        self.value = status
        self.now = iso(now)
        self.generation = generation

    def set(self, type_: str, value: cond.ConditionStatus, reason: str, message: str = "") -> bool:
        self.value, changed = with_condition(self.value, type_, value, reason, message,
                                             now=self.now, generation=self.generation)
        return changed


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


def _clip(allocation: Allocation, job: TrainingJob) -> Allocation:
    ps, workers = job.spec.parameter_servers, job.spec.workers
    return Allocation(min(max(allocation.ps, ps.min), ps.max),
                      min(max(allocation.workers, workers.min), workers.max))


def assess(
    state: JobState,
    observation: JobObservation | None,
    *,
    metrics_error: str | None,
    now: float,
    settings: RoundSettings,
    nodes: Sequence[NodeView] = (),
) -> Assessed:
    """Everything about one job that does not depend on the other jobs (see the module
    docstring). `metrics_error` is set when Prometheus could not be asked at all; `nodes`
    are the cluster's, to tell a job that fits no node at all (none: not checked)."""
    meta = state.meta
    st = _Status(state.status, now, meta.generation)
    events: list[Event] = []
    has_pods = any(not p.deleting for p in state.pods)
    if state.job is None:
        message = str(state.error) if state.error else "the spec could not be read"
        if st.set(cond.VALID, "False", cond.REASON_INVALID_SPEC, message):
            events.append(Event("Warning", cond.REASON_INVALID_SPEC, message))
        return Assessed(state, st.value, tuple(events), action="delete" if has_pods else "none")
    job = state.job
    # a job that never started and whose pods fit no node would queue forever
    oversized = None if state.status.allocation is not None else oversized_request(
        job, nodes, settings.accelerator_resource)
    if oversized is not None:
        if st.set(cond.VALID, "False", cond.REASON_EXCEEDS_NODE_CAPACITY, oversized):
            events.append(Event("Warning", cond.REASON_EXCEEDS_NODE_CAPACITY, oversized))
        return Assessed(state, st.value, tuple(events), action="delete" if has_pods else "none")
    fixed = state.status.phase == cond.INVALID
    if st.set(cond.VALID, "True", cond.REASON_SPEC_VALID, "the spec is valid") and fixed:
        events.append(Event("Normal", cond.REASON_SPEC_VALID, "the spec was fixed"))
    if st.value.phase in cond.FINISHED_PHASES:
        return Assessed(state, st.value, tuple(events), action="delete" if has_pods else "none")
    stopped = suspended(state, st, events, has_pods=has_pods)
    if stopped is not None:
        return stopped

    allocation = st.value.allocation
    current = [p for p in state.pods if allocation and p.generation == allocation.generation
               and not p.deleting]
    # observe -> what this generation's restart cost (once, when its first step shows)
    if allocation is not None:
        cost = measured_restart_seconds(allocation, observation)
        if cost is not None:
            st.value, _ = with_allocation(st.value, replace(allocation, restart_seconds=cost))
            allocation = st.value.allocation
    # observe -> progress
    progress = st.value.progress
    # A new generation's pods report step 0 until they have restored the checkpoint: that
    # reading is not the job's progress, and showing it would make the epoch jump back to 0.
    restoring = (progress is not None and observation is not None
                 and not (observation.step or 0) > 0
                 and (observation.epoch or 0.0) < progress.epoch)
    if observation is not None and observation.epoch is not None and not restoring:
        progress = ProgressStatus(
            epoch=round(observation.epoch, 4),
            step=int(observation.step or 0),
            loss=observation.loss,
            speed=observation.speed if observation.speed is not None else (
                progress.speed if progress else None),
            updated_at=st.now,
        )
        st.value, _ = with_progress(st.value, progress)
    epochs_done = progress.epoch if progress else 0.0
    # fit
    # the ETA counts from the newest progress, so that it moves only when the job does
    observed_at = parse_time(progress.updated_at if progress else (
        allocation.running_since if allocation else ""))
    model, knowledge = fit_job(job, st.value.model, observation, allocation, epochs_done,
                               observed_at or now)
    st.value, _ = with_model(st.value, model)

    # metrics
    blind = False
    started = parse_time(allocation.running_since) if allocation else None
    if metrics_error is not None:
        blind = True
        if allocation is not None:
            st.set(cond.METRICS, "False", cond.REASON_METRICS_UNAVAILABLE,
                   f"{metrics_error}; keeping the current allocation until metrics return")
    elif observation is not None and observation.series:
        st.set(cond.METRICS, "True", cond.REASON_METRICS_OBSERVED,
               "the job's metrics are scraped")
    elif started is not None and now - started > settings.metrics_grace_seconds:
        blind = True
        st.set(cond.METRICS, "False", cond.REASON_METRICS_UNAVAILABLE,
               f"no series from the job's pods since they started "
               f"({allocation.running_since if allocation else '?'}); check that "
               f"Prometheus scrapes their '{contract.METRICS_PORT_NAME}' port")

    # completion
    rule = job.spec.convergence
    chief = next((p for p in current if p.role == "worker" and p.rank == 0), None)
    done_reason = ""
    if epochs_done >= rule.max_epochs:
        done_reason, done_message = cond.REASON_MAX_EPOCHS, (
            f"reached maxEpochs={rule.max_epochs}")
    elif chief is not None and chief.phase == "Succeeded":
        done_reason, done_message = cond.REASON_MAX_EPOCHS, (
            "the chief worker finished training")
    elif (knowledge.estimate is not None and knowledge.estimate.remaining_epochs <= 0
          and epochs_done >= rule.window):
        done_reason, done_message = cond.REASON_CONVERGED, (
            f"the fitted loss drops less than {rule.loss_delta} over {rule.window} epochs "
            f"(epoch {epochs_done:.1f})")
    if done_reason:
        st.set(cond.SUCCEEDED, "True", done_reason, done_message)
        st.set(cond.RESIZING, "False", cond.REASON_PODS_RUNNING, "finished")
        events.append(Event("Normal", cond.SUCCEEDED, done_message))
        return Assessed(state, st.value, tuple(events), knowledge=knowledge,
                        action="delete" if has_pods else "none")

    # pod failures
    restart = False
    if allocation is not None and not state.busy:
        failed = [p.name for p in current if p.phase == "Failed"]
        missing = started is not None and len(current) < allocation.ps + allocation.workers
        if failed or missing:
            what = (f"pod(s) {', '.join(sorted(failed))} failed" if failed
                    else "pods of the running generation disappeared")
            what += failure_message([p for p in current if p.phase == "Failed"])
            if st.value.restarts >= job.spec.restart_limit:
                message = (f"{what}; restartLimit {job.spec.restart_limit} reached")
                st.set(cond.FAILED, "True", cond.REASON_RESTART_LIMIT, message)
                stop_resizing(st, "the job failed")
                events.append(Event("Warning", cond.REASON_RESTART_LIMIT, message))
                return Assessed(state, st.value, tuple(events), knowledge=knowledge,
                                action="delete" if has_pods else "none")
            restart = True
            st.value = replace(st.value, restarts=st.value.restarts + 1)
            events.append(Event("Warning", cond.REASON_POD_FAILED,
                                f"{what}; restarting from the last checkpoint "
                                f"({st.value.restarts}/{job.spec.restart_limit})"))

    # resize progress: every pod of the generation runs (and nothing else does)
    if (allocation is not None and not restart and not state.busy
            and not _pods_differ(state, allocation)
            and all(p.phase == "Running" for p in current)):
        if not allocation.running_since:
            st.value, _ = with_allocation(st.value, replace(allocation, running_since=st.now))
            allocation = st.value.allocation
        st.set(cond.RESIZING, "False", cond.REASON_PODS_RUNNING,
               "every pod of the allocation is running")
    elif allocation is not None and not state.busy and not restart:
        stuck = stuck_resize(allocation, current, now, settings)
        if stuck and st.set(cond.RESIZING, "True", cond.REASON_RESIZE_STUCK, stuck):
            events.append(Event("Warning", cond.REASON_RESIZE_STUCK, stuck))
    settled = (allocation is not None and bool(allocation.running_since)
               and not cond.is_true(st.value.conditions, cond.RESIZING))

    if settled and allocation is not None:
        knowledge = too_late_to_probe(knowledge, job, allocation, settings)
    # pin
    if allocation is None:
        pin: Allocation | None = spec_minimum(job)  # a new job starts at its minimum
    else:
        here = Allocation(allocation.ps, allocation.workers)
        measured = any((p, w) == (here.ps, here.workers) for p, w, _ in knowledge.speed_samples)
        if restart or state.busy or not settled or blind:
            pin = here
        elif knowledge.probing or knowledge.samples_per_epoch is None:
            pin = (Allocation(*knowledge.next_probe)
                   if measured and knowledge.next_probe is not None else here)
        else:
            pin = None
        if pin is not None:
            pin = _clip(pin, job)
    action: Action = "none"
    if allocation is not None and not state.busy and _pods_differ(state, allocation):
        action = "roll"
    return Assessed(state, st.value, tuple(events), schedulable=True, pin=pin,
                    knowledge=knowledge, action=action, restart=restart)


def suspended(state: JobState, st: _Status, events: list[Event], *,
              has_pods: bool) -> Assessed | None:
    """The suspend rule (spec.suspend, the convention of Kubernetes Jobs and Kueue): a
    suspended job gives its allocation up and its pods are stopped (the controller asks
    the chief for a checkpoint first; a script of its own checkpoints on SIGTERM), and it
    stays Suspended until spec.suspend is false. Then the condition turns False (reason
    Resumed) and the job starts again like a new one, at its minimum, from its newest
    checkpoint. None: the job is not suspended (go on assessing it)."""
    job = state.job
    assert job is not None
    if not job.spec.suspend:
        if cond.is_true(st.value.conditions, cond.SUSPENDED):
            message = "spec.suspend is false: the job restarts from its newest checkpoint"
            st.set(cond.SUSPENDED, "False", cond.REASON_RESUMED, message)
            events.append(Event("Normal", cond.REASON_RESUMED, message))
        return None
    message = ("spec.suspend is true: the pods were stopped after a checkpoint; set it to "
               "false to resume")
    if st.set(cond.SUSPENDED, "True", cond.REASON_SUSPENDED, message):
        events.append(Event("Normal", cond.REASON_SUSPENDED, message))
    st.value, _ = with_allocation(st.value, None)
    for type_ in (cond.SCHEDULED, cond.RESIZING):
        if cond.find(st.value.conditions, type_) is not None:
            st.set(type_, "False", cond.REASON_SUSPENDED, "the job is suspended")
    return Assessed(state, st.value, tuple(events), action="delete" if has_pods else "none")


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


def stop_resizing(st: _Status, why: str) -> None:
    """A finished job rolls nothing out: Resizing turns False where it was set."""
    if cond.find(st.value.conditions, cond.RESIZING) is not None:
        st.set(cond.RESIZING, "False", cond.REASON_JOB_FAILED, why)


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


def too_late_to_probe(knowledge: Knowledge, job: TrainingJob, allocation: AllocationStatus,
                      settings: RoundSettings) -> Knowledge:
    """The job's knowledge with its probing ended when its predicted remaining time at its
    current allocation is too short to repay a probe (`probe_pays_back`, the rule the
    simulator shares); from
    then on the policy judges it by what it has measured. A job whose epoch size is not
    measured yet, or whose remaining time is unknown, keeps probing."""
    if not knowledge.probing or not knowledge.samples_per_epoch:
        return knowledge
    remaining = knowledge.remaining_time(job.spec.global_batch_size, job.spec.mode)(
        allocation.ps, allocation.workers)
    if probe_pays_back(remaining, settings.restart_cost_seconds):
        return knowledge
    return replace(knowledge, probing=False, next_probe=None, probes=())


# ---- steps 4 and 5: the views the policy and the placer work on -----------------------------
def _arrival(meta: JobMeta) -> float:
    return parse_time(meta.created) or 0.0


def views(assessed: Sequence[Assessed]) -> list[JobView]:
    out = []
    for a in assessed:
        if not a.schedulable or a.state.job is None:
            continue
        job = a.state.job
        k = a.knowledge
        remaining = k.remaining_time(job.spec.global_batch_size, job.spec.mode)
        allocation = a.status.allocation
        current = Allocation(allocation.ps, allocation.workers) if allocation else None
        bounds = (a.pin.ps, a.pin.ps, a.pin.workers, a.pin.workers) if a.pin else None
        progress = 0.0
        if k.estimate is not None and k.estimate.converged_epoch > 0:
            progress = min(1.0, k.epochs_done / k.estimate.converged_epoch)
        out.append(job_view(job, remaining, current=current, arrival=_arrival(a.state.meta),
                            bounds=bounds, progress=progress))
    return out


def fit_probes_to_capacity(assessed: Sequence[Assessed],
                           nodes: Sequence[NodeView]) -> list[Assessed]:
    """Each probing job's pin moved to a probe the cluster can hold, by the rule the
    simulator shares (`optimus.scheduling.probes.fit_probes`: a probe fits beside what
    every other job holds and never shrinks a running neighbour). A job none of whose
    probes fits is left to the policy for this round (not probing), judged by its
    measurements."""
    def probing(a: Assessed) -> bool:
        allocation = a.status.allocation
        here = None if allocation is None else (allocation.ps, allocation.workers)
        return (a.pin is not None and a.knowledge.probing and here is not None
                and (a.pin.ps, a.pin.workers) != here)

    wanted = {a.key: tuple(Allocation(*p) for p in a.knowledge.probes)
              for a in assessed if probing(a)}
    # the probing jobs' views carry their spec's bounds, not their first probe
    job_views = views([replace(a, pin=None) if a.key in wanted else a for a in assessed])
    chosen = fit_probes(job_views, nodes, wanted)
    moved: dict[str, Assessed] = {}
    for a in assessed:
        if a.key not in chosen:
            continue
        assert a.state.job is not None
        probe = chosen[a.key]
        if probe is None:
            # no probe fits beside the others: the job is free, like a fitted one, judged
            # by its nearest measurement, rather than frozen at its size until room appears
            moved[a.key] = replace(a, pin=None, knowledge=replace(a.knowledge, probing=False))
        elif probe != a.pin:
            moved[a.key] = replace(a, pin=_clip(probe, a.state.job))
    return [moved.get(a.key, a) for a in assessed]


def spec_minimum(job: TrainingJob) -> Allocation:
    """The smallest allocation the job's spec allows."""
    return Allocation(job.spec.parameter_servers.min, job.spec.workers.min)


def previous_placement(assessed: Sequence[Assessed]) -> Placement:
    jobs = {}
    for a in assessed:
        allocation = a.status.allocation
        if a.schedulable and allocation is not None:
            jobs[a.key] = JobPlacement(allocation.ps_nodes, allocation.worker_nodes)
    return Placement(jobs)


def keep_running(
    assessed: Sequence[Assessed], allocations: Mapping[str, Allocation]
) -> dict[str, Allocation]:
    """The policy's allocations, except that a running job is never stopped to admit
    another one (it keeps its allocation when the policy left it none)."""
    out = dict(allocations)
    for a in assessed:
        allocation = a.status.allocation
        if a.schedulable and allocation is not None and out.get(a.key, Allocation(0, 0)) == (
            Allocation(0, 0)
        ):
            out[a.key] = Allocation(allocation.ps, allocation.workers)
    return out


# ---- step 6: decisions ---------------------------------------------------------------------
def _size(ps: int, workers: int) -> str:
    return f"{ps} PS x {workers} worker{'s' if workers != 1 else ''}"


def decide(
    assessed: Sequence[Assessed],
    placement: Placement,
    *,
    now: float,
    settings: RoundSettings,
) -> list[Decision]:
    decisions = []
    for a in assessed:
        st = _Status(a.status, now, a.state.meta.generation)
        events = list(a.events)
        action = a.action
        previous = a.status.allocation
        job = a.state.job
        if a.schedulable and job is not None:
            placed = placement.jobs.get(a.key)
            if placed is None and previous is not None and a.restart:
                placed = JobPlacement(previous.ps_nodes, previous.worker_nodes)
            if placed is None:
                if previous is None:
                    st.set(cond.SCHEDULED, "False", cond.REASON_QUEUED,
                           f"waiting for room for its minimum "
                           f"({_size(job.spec.parameter_servers.min, job.spec.workers.min)})")
            else:
                counts = (len(placed.ps_nodes), len(placed.worker_nodes))
                if previous is None or a.restart or counts != (previous.ps, previous.workers):
                    generation = previous.generation + 1 if previous else 0
                    reason = ("probe" if a.knowledge.probing else
                              "restart after a pod failure" if a.restart else "allocation")
                    new = AllocationStatus(
                        ps=counts[0], workers=counts[1], generation=generation,
                        ps_nodes=placed.ps_nodes, worker_nodes=placed.worker_nodes,
                        reason=reason, updated_at=st.now,
                    )
                    st.value, _ = with_allocation(st.value, new)
                    action = "roll"
                    if previous is not None:
                        message = _resize_message(a, previous, new, settings)
                        st.set(cond.RESIZING, "True",
                               cond.REASON_POD_FAILED if a.restart else cond.REASON_RESIZE,
                               message)
                        if not a.restart:
                            events.append(Event("Normal", "Resized", message))
                    else:
                        events.append(Event("Normal", "Started",
                                            f"started with {_size(*counts)} on "
                                            f"{', '.join(new.nodes)}"))
                allocation = st.value.allocation
                assert allocation is not None
                st.set(cond.SCHEDULED, "True",
                       cond.REASON_PROBING if a.knowledge.probing else cond.REASON_ALLOCATED,
                       f"{_size(allocation.ps, allocation.workers)} on "
                       f"{', '.join(allocation.nodes)}")
        decisions.append(Decision(
            meta=a.state.meta,
            status=st.value,
            patch=status_patch(a.state.raw_status, st.value),
            action=action,
            events=tuple(events),
            previous=previous,
            knowledge=a.knowledge,
            job=job,
        ))
    return decisions


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

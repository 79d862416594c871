"""Steps 3 to 5 of a scheduling round as one pure function, shared by the operator
(optimus.kube.plan, optimus.kube.controller) and the simulator (optimus.simulation.engine):

    outcome = run_round(jobs, observations, nodes, settings, now=t)

  3 fit       every job's observation merged into its model memory (`fit_job`)
    pins      new, probing, restarting, busy, resizing and blind jobs held (optimus.round.pins)
  4 allocate  the policy over every job (PolicyTraits say what it needs and does)
    keep      a running job is never stopped to admit another (unless the policy preempts)
  5 place     a node for every pod: Optimus's placement, or the Kubernetes default
              scheduler's spread for a baseline when `baseline_placement` says so

The operator decides its status rules between the fit and the pins (completion, pod
failures, resizes settling), so it calls the two halves itself: `fit_round_job` per job,
then `schedule` with the jobs still schedulable; `run_round` is exactly that composition.
What stays outside: the operator's conditions, events and pod actions (optimus.kube.plan),
the simulator's clock and physics (optimus.simulation.engine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from optimus.models import ConvergenceRule
from optimus.models.speed import PROBE_BOX
from optimus.round.knowledge import (
    FitJob,
    Knowledge,
    ModelMemory,
    Oracle,
    batch_scope,
    fit_job,
    model_speed,
    summed_steps_per_second,
)
from optimus.round.observation import JobObservation
from optimus.round.pins import fit_probes_to_capacity, pin, too_late_to_probe
from optimus.round.store import KnowledgeStore, kind_key
from optimus.scheduling.cluster import pinned
from optimus.scheduling.placement import place, spread_place
from optimus.scheduling.policies import policy_for_round, policy_traits
from optimus.scheduling.types import Allocation, JobPlacement, JobView, NodeView, Placement

#: how the policies that are not always placed by Optimus's placement may be placed
BASELINE_PLACEMENTS: Mapping[str, Callable[..., Placement]] = {
    "optimus": place,  # fewest nodes, even spread: what the operator does
    "spread": spread_place,  # the Kubernetes default scheduler (the paper's baselines)
}


@dataclass(frozen=True)
class SchedulingSettings:
    """How a round schedules. The defaults are the operator's."""

    policy: str = "optimus"
    #: extra keyword options for the policy (e.g. OptimusConfig fields)
    policy_options: Mapping[str, Any] = field(default_factory=dict)
    #: what one resize of a running job costs (the policies that honour it, the probes)
    restart_cost_seconds: float = 30.0
    #: refit cadence (optimus.round.knowledge.fit_job): the operator refits on every change;
    #: the simulator refits the loss model when its points grew 3x and the speed model
    #: after 8 new samples (a 1,000-job simulation would otherwise spend minutes refitting
    #: estimates that barely move between epochs)
    loss_refit_growth: float = 1.0
    speed_refit_samples: int = 1
    #: probe configurations stay within this many PS and workers while that box has any
    #: left (None: the job's bounds)
    probe_box: tuple[int | None, int | None] = PROBE_BOX
    #: placement of the policies not always placed by Optimus's (BASELINE_PLACEMENTS)
    baseline_placement: str = "optimus"
    #: knowledge pooled across jobs of a kind (optimus.round.store): the kind's speed model
    #: as a new job's prior, and its finished jobs' epochs as the convergence prior
    pool_speed: bool = True
    convergence_prior: bool = True
    #: the speed model calibrated by the kind's and the job's measurements
    #: (optimus.round.knowledge.Knowledge.measured); needs pool_speed
    calibrate_speed: bool = True
    #: the speed fit seeded from the job's own step split (white-box prior,
    #: optimus.round.knowledge.white_box_prior)
    white_box_prior: bool = True
    #: value of information (optimus.models.confidence): a policy that weighs uncertainty
    #: (PolicyTraits.weighs_uncertainty) sees each job's speed error band, and a running job
    #: moves only for a gain beyond it; a probe must repay its restarts by the saving the
    #: bands promise (optimus.round.pins.too_late_to_probe). Off: every band is 0 for
    #: moves and a probe is judged by the remaining time alone (the rules before)
    value_of_information: bool = True

    def __post_init__(self) -> None:
        policy_traits(self.policy)  # a clear error for an unknown policy
        if self.baseline_placement not in BASELINE_PLACEMENTS:
            raise ValueError(f"unknown baseline placement {self.baseline_placement!r}; "
                             f"choose one of {', '.join(BASELINE_PLACEMENTS)}")
        if not self.loss_refit_growth >= 1.0 or self.speed_refit_samples < 1:
            raise ValueError("loss_refit_growth must be >= 1 and speed_refit_samples >= 1")


@dataclass(frozen=True)
class RoundJob:
    """One job as a round sees it, from the operator's status or the simulator's state."""

    #: the spec's bounds and requests, the current allocation, arrival, attained service;
    #: the round fills in remaining_time, progress and (when pinned) the bounds
    view: JobView
    #: the global batch M (samples per job step)
    batch_size: int
    rule: ConvergenceRule
    model: ModelMemory = field(default_factory=ModelMemory)
    epochs_done: float = 0.0
    #: where it runs now (None: not running)
    placement: JobPlacement | None = None
    #: it must keep its allocation this round (restarting, pod work in flight, its resize
    #: not settled, its metrics missing)
    hold: bool = False
    #: the truth, for the simulator's oracle runs (no fit)
    oracle: Oracle | None = None
    #: the time its ETA counts from (default: the round's time)
    eta_from: float | None = None
    #: what it trains (model or task name): jobs of one kind, mode and batch size pool
    #: their knowledge (optimus.round.store); "" shares nothing
    kind: str = ""

    @property
    def id(self) -> str:
        return self.view.id

    @property
    def kind_key(self) -> str | None:
        return kind_key(self.kind, self.view.mode, self.batch_size) if self.kind else None

    def fit_input(self, store: KnowledgeStore | None = None) -> FitJob:
        v = self.view
        key = self.kind_key
        prior = store.get(key) if store is not None and key is not None else None
        return FitJob(v.mode, self.batch_size, self.rule,
                      (v.min_ps, v.max_ps, v.min_workers, v.max_workers), v.current,
                      self.epochs_done, self.model, self.oracle, prior)


@dataclass(frozen=True)
class FittedJob:
    """A job after step 3."""

    job: RoundJob
    model: ModelMemory
    knowledge: Knowledge

    @property
    def id(self) -> str:
        return self.job.id


@dataclass(frozen=True)
class JobDecision:
    """One job's outcome: its knowledge (probing ended where it had to), the pin it was
    held to, the policy's allocation (Allocation(0, 0): queued) and where it is placed
    (None: not placed this round)."""

    id: str
    model: ModelMemory
    knowledge: Knowledge
    pin: Allocation | None
    allocation: Allocation
    placement: JobPlacement | None


@dataclass(frozen=True)
class RoundOutcome:
    jobs: Mapping[str, JobDecision]
    placement: Placement
    #: the views the policy allocated (remaining time, progress and pins filled in)
    views: tuple[JobView, ...] = ()


def fit_round_job(job: RoundJob, observation: JobObservation | None, *, now: float,
                  settings: SchedulingSettings,
                  store: KnowledgeStore | None = None) -> FittedJob:
    """Step 3 for one job, at the settings' cadence, with the kind's pooled knowledge in
    `store` as its prior (as far as the settings use it)."""
    model, knowledge = fit_job(
        job.fit_input(store), observation, now=now if job.eta_from is None else job.eta_from,
        loss_refit_growth=settings.loss_refit_growth,
        speed_refit_samples=settings.speed_refit_samples,
        probe_box=settings.probe_box, learns=policy_traits(settings.policy).learns_online,
        pool_speed=settings.pool_speed, convergence_prior=settings.convergence_prior,
        calibrate_speed=settings.calibrate_speed, white_box=settings.white_box_prior)
    return FittedJob(job, model, knowledge)


def schedule(fitted: Sequence[FittedJob], nodes: Sequence[NodeView],
             settings: SchedulingSettings, *, now: float) -> RoundOutcome:
    """The pins, steps 4 and 5, and keep-running, for jobs after step 3."""
    traits = policy_traits(settings.policy)
    weighs = traits.weighs_uncertainty and settings.value_of_information
    knowledge: dict[str, Knowledge] = {}
    pins: dict[str, Allocation | None] = {}
    base: list[JobView] = []
    for f in fitted:
        job, k = f.job, f.knowledge
        view = job.view
        if view.current is not None and not job.hold:
            k = too_late_to_probe(k, view.current, job.batch_size, view.mode,
                                  settings.restart_cost_seconds,
                                  weigh_bands=settings.value_of_information)
        knowledge[f.id] = k
        pins[f.id] = pin(view, k, hold=job.hold, learns=traits.learns_online)
        base.append(replace(view, remaining_time=k.remaining_time(job.batch_size, view.mode),
                            progress=k.progress,
                            speed_band=k.speed_band if weighs and k.oracle is None else None))
    pins, knowledge = fit_probes_to_capacity(base, knowledge, pins, nodes)
    views = tuple(v if (held := pins[v.id]) is None else pinned(v, held) for v in base)
    policy = policy_for_round(settings.policy, settings.policy_options,
                              settings.restart_cost_seconds)
    allocations = policy.allocate(list(views), list(nodes), now=now)
    if not traits.preempts:
        allocations = keep_running(views, allocations)
    placer = place if traits.optimus_placement else BASELINE_PLACEMENTS[
        settings.baseline_placement]
    previous = Placement({f.id: f.job.placement for f in fitted if f.job.placement is not None})
    placement = placer(allocations, list(views), list(nodes), previous)
    decisions = {
        f.id: JobDecision(f.id, f.model, knowledge[f.id], pins[f.id],
                          allocations.get(f.id, Allocation(0, 0)), placement.jobs.get(f.id))
        for f in fitted
    }
    return RoundOutcome(decisions, placement, views)


def run_round(jobs: Sequence[RoundJob], observations: Mapping[str, JobObservation | None],
              nodes: Sequence[NodeView], settings: SchedulingSettings, *,
              now: float, store: KnowledgeStore | None = None) -> RoundOutcome:
    """Steps 3 to 5 for every job (`observations` by job id; a job without one observed
    nothing new; `store`: knowledge pooled across jobs, the priors)."""
    fitted = [fit_round_job(job, observations.get(job.id), now=now, settings=settings,
                            store=store)
              for job in jobs]
    return schedule(fitted, nodes, settings, now=now)


def keep_running(views: Sequence[JobView],
                 allocations: Mapping[str, Allocation]) -> dict[str, Allocation]:
    """The policy's allocations, except that a running job is never stopped to admit
    another one (it keeps its allocation when the policy left it none)."""
    out = dict(allocations)
    for view in views:
        if view.current is not None and out.get(view.id, Allocation(0, 0)) == Allocation(0, 0):
            out[view.id] = view.current
    return out


def pool_observations(store: KnowledgeStore, jobs: Sequence[RoundJob],
                      observations: Mapping[str, JobObservation | None]) -> KnowledgeStore:
    """The store with every running job's speed observation pooled into its kind's
    knowledge (at the configuration it was measured at, in the speed model's unit); jobs
    with no kind, not running or known from an oracle teach nothing."""
    for job in jobs:
        observed = observations.get(job.id)
        current, key = job.view.current, job.kind_key
        if (key is None or job.oracle is not None or observed is None
                or observed.speed is None or not observed.speed > 0
                or current is None or current.workers < 1):
            continue
        mode = job.view.mode
        store = store.with_speed(key, mode, job.batch_size, batch_scope(mode), [
            (current.ps, current.workers, model_speed(mode, observed.speed, current.workers))])
    return store


def pool_finished(store: KnowledgeStore, job: RoundJob, epochs: float,
                  samples_per_epoch: float | None) -> KnowledgeStore:
    """The store with a job that succeeded after `epochs` epochs (of `samples_per_epoch`
    samples, when measured) remembered as its kind's convergence prior; a job with no kind
    or known from an oracle teaches nothing."""
    key = job.kind_key
    if key is None or job.oracle is not None or not epochs > 0:
        return store
    return store.with_finished(key, job.view.mode, job.batch_size, epochs, samples_per_epoch)


def pool_measurements(store: KnowledgeStore, kind: str, mode: str, batch_size: int,
                      measured: Sequence[tuple[int, int, float]]) -> KnowledgeStore:
    """The store with past measurements of a kind pooled, as if a job of that kind, mode
    and global batch had observed them: (ps, workers, the job's total samples per second)
    each, in the speed model's unit as `pool_observations` pools a live job's (`optimus fit
    store` seeds the operator's store with it)."""
    if not kind:
        raise ValueError("pooled measurements need a kind")
    return store.with_speed(kind_key(kind, mode, batch_size), mode, batch_size,
                            batch_scope(mode), [
        (ps, workers, model_speed(mode, summed_steps_per_second(
            samples_per_sec, batch_size, workers, mode), workers))
        for ps, workers, samples_per_sec in measured])


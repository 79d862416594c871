"""The operator and the simulator decide alike: the same cluster, jobs and observations fed
through the operator's path (optimus.kube.plan: `assess`, `schedule_assessed`, `decide`, as
the controller calls them, on a snapshot built from the case) and through the simulator's
(optimus.simulation.engine: the job state it keeps, `round_job` and `observation`, then
`run_round`) give identical round outcomes: the same fit, pins, allocations and placements,
and the operator's new allocations are exactly the round's placements.

Both sides run at the same refit cadence (the operator's: every change); the cadence is a
setting of the round, not part of either path. Both start from the same knowledge pooled
across jobs (a random `KnowledgeStore` of the jobs' kind, as the operator's ConfigMap or the
simulator's loop holds it), and both pool the round's observations into it alike
(`plan.learn` against `optimus.round.pool_observations`)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimus.api import conditions as c
from optimus.api import parse_training_job
from optimus.api.spec import parse_meta
from optimus.api.status import (
    AllocationStatus,
    ModelStatus,
    TrainingJobStatus,
    iso,
    parse_status,
    with_condition,
)
from optimus.kube.plan import (
    JobState,
    RoundSettings,
    assess,
    decide,
    learn,
    schedule_assessed,
)
from optimus.kube.snapshot import PodSnapshot
from optimus.models import ConvergenceRule
from optimus.round import (
    JobObservation,
    KnowledgeStore,
    ModelMemory,
    RoundOutcome,
    kind_key,
    pool_observations,
    run_round,
)
from optimus.scheduling import NodeView, Resources
from optimus.scheduling.types import JobPlacement
from optimus.simulation.engine import (
    SimulationConfig,
    new_job_state,
    observation,
    resize_costs,
    round_job,
    settings_for,
)
from optimus.simulation.inputs import TraceJob
from optimus.simulation.speeds import SpeedSurface
from optimus_worker import contract

from tests.api.conftest import RAW_JOB

NOW = 1_800_000_000.0
GIB = 2**30
RULE = ConvergenceRule(loss_delta=0.02, window=3, max_epochs=40)
RESTART_COST = 20.0
#: the policies the operator offers (tiresias runs in the simulator only)
POLICIES = ("optimus", "optimus-paper", "drf", "tetris", "fixed")


@dataclass(frozen=True)
class Case:
    """One job of a random cluster, as both worlds would know it."""

    name: str
    arrival: float
    mode: str
    batch: int
    ps: tuple[int, int]
    workers: tuple[int, int]
    gpus_per_worker: int
    cpus_per_ps: int
    cpus_per_worker: int
    samples_per_epoch: float
    #: (ps nodes, worker nodes) it runs on now, or None when it has not started
    placement: tuple[tuple[str, ...], tuple[str, ...]] | None
    speed_samples: tuple[tuple[int, int, float], ...]
    loss_points: tuple[tuple[float, float], ...]
    epochs_done: float
    #: the workers' summed step rate observed this round (None: no speed yet)
    speed: float | None

    @property
    def key(self) -> str:
        return f"ml/{self.name}"


def _true_speed(ps: int, workers: int) -> float:
    return 1.0 / (0.02 / workers + 0.01 + 0.002 * workers / ps + 0.001 * workers)


@st.composite
def cases(draw: st.DrawFn, index: int, nodes: tuple[str, ...]) -> Case:
    mode = draw(st.sampled_from(("ps-sync", "ps-async")))
    min_ps = draw(st.integers(1, 2))
    max_ps = draw(st.integers(min_ps, 3))
    min_w = draw(st.integers(1, 2))
    max_w = draw(st.integers(min_w, 6))
    placement = None
    speed_samples: tuple[tuple[int, int, float], ...] = ()
    loss_points: tuple[tuple[float, float], ...] = ()
    epochs_done, speed = 0.0, None
    if draw(st.booleans()):  # running
        ps = draw(st.integers(min_ps, max_ps))
        workers = draw(st.integers(min_w, max_w))
        placement = (tuple(draw(st.sampled_from(nodes)) for _ in range(ps)),
                     tuple(draw(st.sampled_from(nodes)) for _ in range(workers)))
        configs = draw(st.lists(st.tuples(st.integers(min_ps, max_ps),
                                          st.integers(min_w, max_w)), max_size=6, unique=True))
        speed_samples = tuple((p, w, round(_true_speed(p, w), 3)) for p, w in configs)
        epochs_done = draw(st.integers(0, 1000)) / 100
        loss_points = tuple((float(k), round(1.0 / (0.05 * k + 1) + 0.1, 4))
                            for k in range(1, math.floor(epochs_done) + 1))
        if draw(st.booleans()):
            speed = round(workers * _true_speed(ps, workers) * draw(st.floats(0.8, 1.2)), 3)
    return Case(
        name=f"job{index}", arrival=NOW - 1000 + 10 * index, mode=mode,
        batch=draw(st.sampled_from((64, 128))), ps=(min_ps, max_ps), workers=(min_w, max_w),
        gpus_per_worker=draw(st.integers(0, 2)), cpus_per_ps=draw(st.integers(1, 2)),
        cpus_per_worker=draw(st.integers(1, 4)),
        samples_per_epoch=float(draw(st.sampled_from((6400, 60000)))),
        placement=placement, speed_samples=speed_samples, loss_points=loss_points,
        epochs_done=epochs_done, speed=speed)


#: the kind every job of a case trains (the simulator's trace model, the operator's modelKind)
KIND = "m"


@st.composite
def stores(draw: st.DrawFn) -> KnowledgeStore:
    """What earlier jobs of the kind taught, per mode and batch: pooled true speeds at some
    configurations (enough for the kind's model, or not) and finished jobs' epochs."""
    store = KnowledgeStore()
    for mode in ("ps-sync", "ps-async"):
        for batch in (64, 128):
            key = kind_key(KIND, mode, batch)
            configs = draw(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 6)),
                                    max_size=8, unique=True))
            if configs:
                store = store.with_speed(key, mode, batch, "global" if mode == "ps-async"
                                         else "per-worker",
                                         [(p, w, _true_speed(p, w)) for p, w in configs])
            for epochs in draw(st.lists(st.integers(1, 40), max_size=3)):
                store = store.with_finished(key, mode, batch, float(epochs),
                                            draw(st.sampled_from((None, 6400.0))))
    return store


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[NodeView], list[Case]]:
    count = draw(st.integers(1, 3))
    nodes = [NodeView(f"n{i}", Resources(gpu=draw(st.integers(2, 8)),
                                         cpu=draw(st.integers(8, 32)), memory=128 * GIB))
             for i in range(count)]
    names = tuple(n.name for n in nodes)
    jobs = [draw(cases(i, names)) for i in range(draw(st.integers(1, 4)))]
    return nodes, jobs


def _observation(case: Case) -> JobObservation | None:
    if case.placement is None:
        return None
    return JobObservation(generation=1, loss_points=case.loss_points, epoch=case.epochs_done,
                          step=100.0, speed=case.speed,
                          samples_per_epoch=case.samples_per_epoch, series=4)


# ---- the operator's path ---------------------------------------------------------------------
def _raw(case: Case) -> dict[str, Any]:
    raw = copy.deepcopy(RAW_JOB)
    raw["metadata"].update(name=case.name, uid=f"uid-{case.name}",
                           creationTimestamp=iso(case.arrival))
    spec = raw["spec"]
    spec.update(mode=case.mode, globalBatchSize=case.batch, modelKind=KIND,
                convergence={"lossDelta": RULE.loss_delta, "window": RULE.window,
                             "maxEpochs": RULE.max_epochs})
    ps_container = spec["parameterServers"]["template"]["spec"]["containers"][0]
    ps_container["resources"] = {"requests": {"cpu": str(case.cpus_per_ps), "memory": "4Gi"}}
    spec["parameterServers"].update(min=case.ps[0], max=case.ps[1])
    worker = spec["workers"]["template"]["spec"]["containers"][0]
    worker["resources"] = {"requests": {"cpu": str(case.cpus_per_worker), "memory": "8Gi"},
                           "limits": {"nvidia.com/gpu": case.gpus_per_worker}}
    spec["workers"].update(min=case.workers[0], max=case.workers[1])
    return raw


def _operator_state(case: Case) -> JobState:
    raw = _raw(case)
    model = ModelStatus(speed_samples=case.speed_samples,
                        samples_per_epoch=case.samples_per_epoch if case.placement else None)
    status = TrainingJobStatus(model=model)
    pods: list[PodSnapshot] = []
    if case.placement is not None:
        ps_nodes, worker_nodes = case.placement
        allocation = AllocationStatus(len(ps_nodes), len(worker_nodes), 1, ps_nodes,
                                      worker_nodes, running_since=iso(NOW - 300),
                                      updated_at=iso(NOW - 400))
        status = replace(status, allocation=allocation)
        for type_, reason in ((c.VALID, c.REASON_SPEC_VALID), (c.SCHEDULED, c.REASON_ALLOCATED),
                              (c.RESIZING, c.REASON_PODS_RUNNING)):
            status, _ = with_condition(status, type_, "False" if type_ == c.RESIZING else "True",
                                       reason, "", now=iso(NOW - 300), generation=2)
        for role, where in (("ps", ps_nodes), ("worker", worker_nodes)):
            for rank, node in enumerate(where):
                pods.append(PodSnapshot(
                    namespace="ml", name=contract.pod_name(case.name, role, rank, 1),  # type: ignore[arg-type]
                    node=node, phase="Running", request=Resources(),
                    labels={contract.POD_LABEL_MANAGED: contract.POD_LABEL_MANAGED_VALUE,
                            contract.POD_LABEL_JOB: case.name, contract.POD_LABEL_ROLE: role,
                            contract.POD_LABEL_RANK: str(rank),
                            contract.POD_LABEL_GENERATION: "1"}))
    raw_status = status.to_dict()
    return JobState(parse_meta(raw), raw_status, parse_status(raw_status),
                    parse_training_job(raw), None, tuple(pods))


def operator_path(nodes: list[NodeView], jobs: list[Case], policy: str,
                  store: KnowledgeStore = KnowledgeStore()  # noqa: B008 (frozen)
                  ) -> tuple[RoundOutcome, dict[str, AllocationStatus | None], KnowledgeStore]:
    settings = RoundSettings(policy=policy, restart_cost_seconds=RESTART_COST)
    observations = {("ml", case.name): o for case in jobs
                    if (o := _observation(case)) is not None}
    assessed = [assess(_operator_state(case), observations.get(("ml", case.name)),
                       metrics_error=None, now=NOW, settings=settings, nodes=nodes,
                       store=store) for case in jobs]
    assert all(a.schedulable for a in assessed), [a.status.phase for a in assessed]
    outcome = schedule_assessed(assessed, nodes, now=NOW, settings=settings)
    decisions = decide(assessed, outcome, now=NOW, settings=settings)
    return (outcome, {d.meta.key: d.status.allocation for d in decisions},
            learn(store, assessed, observations))


# ---- the simulator's path --------------------------------------------------------------------
def simulator_path(nodes: list[NodeView], jobs: list[Case], policy: str,
                   store: KnowledgeStore = KnowledgeStore()  # noqa: B008 (frozen)
                   ) -> tuple[RoundOutcome, KnowledgeStore]:
    # the operator's per-kind costs: a worker change its mode makes in place at the prior
    config = SimulationConfig(policy=policy, restart_cost=RESTART_COST, rule=RULE,
                              in_place_worker_change_cost=RoundSettings().in_place_cost_seconds,
                              in_place_ps_change_cost=RoundSettings().in_place_ps_cost_seconds,
                              loss_refit_growth=1.0, speed_refit_samples=1)
    surface = SpeedSurface("m", 1, 1, 1, 1, np.ones((1, 1)))
    states = []
    for index, case in enumerate(jobs):
        trace = TraceJob(case.key, case.arrival, KIND, epochs=30.0,
                         dataset_size=case.samples_per_epoch, mode=case.mode,
                         batch_size=case.batch, min_ps=case.ps[0], max_ps=case.ps[1],
                         min_workers=case.workers[0], max_workers=case.workers[1],
                         gpus_per_worker=case.gpus_per_worker, cpus_per_ps=case.cpus_per_ps,
                         cpus_per_worker=case.cpus_per_worker)
        state = new_job_state(trace, index, surface, config)
        state.model = ModelMemory(replace(
            state.model.status, speed_samples=case.speed_samples,
            samples_per_epoch=case.samples_per_epoch if case.placement else None))
        if case.placement is not None:
            state.placement = JobPlacement(*case.placement)
            state.done = case.epochs_done
            state.new_loss_points = list(case.loss_points)
            state.generation_speeds = [] if case.speed is None else [case.speed]
        states.append(state)
    round_jobs = [round_job(s, NOW, oracle=False, costs=resize_costs(config, s.trace.mode))
                  for s in states]
    observed = {s.trace.job: observation(s) for s in states}
    outcome = run_round(round_jobs, observed, nodes, settings_for(config), now=NOW,
                        store=store)
    return outcome, pool_observations(store, round_jobs, observed)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), policy=st.sampled_from(POLICIES),
       store=st.just(KnowledgeStore()) | stores())
def test_the_operator_and_the_simulator_decide_alike(
        cluster: tuple[list[NodeView], list[Case]], policy: str, store: KnowledgeStore) -> None:
    nodes, jobs = cluster
    operator, allocations, operator_store = operator_path(nodes, jobs, policy, store)
    simulator, simulator_store = simulator_path(nodes, jobs, policy, store)
    assert operator_store == simulator_store, "both pool the round's observations alike"
    assert operator.placement == simulator.placement
    assert set(operator.jobs) == set(simulator.jobs) == {case.key for case in jobs}
    for case in jobs:
        ours, theirs = operator.jobs[case.key], simulator.jobs[case.key]
        assert ours.knowledge == theirs.knowledge, case.key
        assert ours.model.status.speed_samples == theirs.model.status.speed_samples
        assert ours.model.status.loss == theirs.model.status.loss
        assert (ours.pin, ours.allocation, ours.placement) == (
            theirs.pin, theirs.allocation, theirs.placement), case.key
        # the operator's new allocation is the round's placement when the job starts or its
        # counts change; otherwise it stays where it runs
        allocation, placed = allocations[case.key], ours.placement
        if case.placement is None or (placed is not None and (
                len(placed.ps_nodes), len(placed.worker_nodes)) != (
                len(case.placement[0]), len(case.placement[1]))):
            assert allocation == (None if placed is None else replace(
                allocation, ps_nodes=placed.ps_nodes, worker_nodes=placed.worker_nodes))
        else:
            assert allocation is not None
            assert (allocation.ps_nodes, allocation.worker_nodes) == case.placement

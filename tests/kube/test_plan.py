"""The pure round (assess -> allocate -> place -> decide) on hand-made snapshots: new jobs
start at their minimum, invalid ones are marked, probes step through configurations,
fitted jobs grow into a free cluster and shrink for a newcomer, failures restart, missing
metrics freeze allocations, and a round with nothing new writes nothing."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from optimus.api import conditions as c
from optimus.api import parse_training_job
from optimus.api.spec import SpecError, parse_meta
from optimus.api.status import (
    AllocationStatus,
    ModelStatus,
    ProgressStatus,
    TrainingJobStatus,
    iso,
    parse_status,
    with_condition,
)
from optimus.kube import plan
from optimus.kube.plan import (
    MIN_MEASURED_RESTARTS,
    Assessed,
    Decision,
    JobState,
    Knowledge,
    RoundSettings,
    assess,
    decide,
    learned_restart_cost,
    measured_restart_seconds,
    schedule_assessed,
)
from optimus.kube.snapshot import PodSnapshot
from optimus.round import JobObservation
from optimus.round.pins import too_late_to_probe
from optimus.scheduling import Allocation, NodeView, Resources
from optimus.scheduling.probes import PROBE_PAYBACK_RESTARTS
from optimus_worker import contract

from tests.api.conftest import RAW_JOB

NOW = 1_800_000_000.0
SETTINGS = RoundSettings(restart_cost_seconds=0.0, speed_warmup_seconds=1,
                         speed_span_seconds=2, metrics_grace_seconds=30)
NODES = [NodeView("n1", Resources(gpu=4, cpu=8, memory=32 * 2**30)),
         NodeView("n2", Resources(gpu=4, cpu=8, memory=32 * 2**30))]


def _raw(name: str = "mnist", **spec: Any) -> dict[str, Any]:
    raw = copy.deepcopy(RAW_JOB)
    raw["metadata"].update(name=name, uid=f"uid-{name}")
    raw["spec"].update(spec)
    return raw


Pods = tuple[PodSnapshot, ...]
Observations = dict[tuple[str, str], JobObservation]


def _pods(name: str, allocation: AllocationStatus, phase: str = "Running") -> Pods:
    pods = []
    for role, count in (("ps", allocation.ps), ("worker", allocation.workers)):
        for rank in range(count):
            pods.append(PodSnapshot(
                namespace="ml", name=contract.pod_name(name, role, rank, allocation.generation),  # type: ignore[arg-type]
                node="n1", phase=phase, request=Resources(),
                labels={contract.POD_LABEL_MANAGED: contract.POD_LABEL_MANAGED_VALUE,
                        contract.POD_LABEL_JOB: name, contract.POD_LABEL_ROLE: role,
                        contract.POD_LABEL_RANK: str(rank),
                        contract.POD_LABEL_GENERATION: str(allocation.generation)},
                ip="127.0.0.9"))
    return tuple(pods)


def _state(raw: dict[str, Any], status: TrainingJobStatus | None = None,
           pods: tuple[PodSnapshot, ...] = (), busy: bool = False) -> JobState:
    raw_status = status.to_dict() if status else None
    try:
        job, error = parse_training_job(raw), None
    except SpecError as err:
        job, error = None, err
    return JobState(parse_meta(raw), raw_status, parse_status(raw_status), job, error, pods,
                    busy)


def _round(states: list[JobState], observations: Observations | None = None,
           metrics_error: str | None = None, now: float = NOW,
           nodes: list[NodeView] = NODES) -> list[Decision]:
    observations = observations or {}
    assessed = [assess(s, observations.get((s.meta.namespace, s.meta.name)),
                       metrics_error=metrics_error, now=now, settings=SETTINGS, nodes=nodes)
                for s in states]
    outcome = schedule_assessed(assessed, nodes, now=now, settings=SETTINGS)
    return decide(assessed, outcome, now=now, settings=SETTINGS)


def _running(allocation: AllocationStatus, model: ModelStatus | None = None) -> TrainingJobStatus:
    status = TrainingJobStatus(allocation=replace(allocation, running_since=iso(NOW - 100)),
                               model=model or ModelStatus())
    for type_, reason in ((c.VALID, c.REASON_SPEC_VALID), (c.SCHEDULED, c.REASON_ALLOCATED)):
        status, _ = with_condition(status, type_, "True", reason, "", now=iso(NOW - 100),
                                   generation=2)
    return status


def test_new_job_starts_at_its_minimum() -> None:
    (d,) = _round([_state(_raw())])
    allocation = d.status.allocation
    assert allocation is not None
    assert (allocation.ps, allocation.workers, allocation.generation) == (1, 1, 0)
    assert d.action == "roll"
    assert d.status.phase == c.PROBING
    assert [e.reason for e in d.events] == ["Started"]
    assert d.patch is not None and "allocation" in d.patch


def test_job_that_does_not_fit_is_queued() -> None:
    big = _raw(workers={**RAW_JOB["spec"]["workers"], "min": 9, "max": 9}, globalBatchSize=64)
    (d,) = _round([_state(big)])
    assert d.status.allocation is None
    assert d.status.phase == c.QUEUED
    assert d.action == "none"


def test_invalid_job_gets_a_condition_and_one_warning() -> None:
    bad = _raw(globalBatchSize=2)
    (d,) = _round([_state(bad)])
    assert d.status.phase == c.INVALID
    valid = c.find(d.status.conditions, c.VALID)
    assert valid is not None and "spec.globalBatchSize" in valid.message and "fix:" in valid.message
    assert [e.type for e in d.events] == ["Warning"]
    (again,) = _round([_state(bad, d.status)])
    assert again.events == () and again.patch is None  # no storm: nothing new, nothing written
    (fixed,) = _round([_state(_raw(), d.status)])
    assert fixed.status.phase == c.PROBING and fixed.action == "roll"


def test_pods_running_settle_the_resize() -> None:
    (first,) = _round([_state(_raw())])
    allocation = first.status.allocation
    assert allocation is not None
    (second,) = _round([_state(_raw(), first.status, _pods("mnist", allocation))], now=NOW + 5)
    assert second.status.allocation is not None
    assert second.status.allocation.running_since == iso(NOW + 5)
    assert second.action == "none"


def test_probe_moves_to_the_next_configuration_once_measured() -> None:
    allocation = AllocationStatus(1, 1, 0, ("n1",), ("n1",))
    status = _running(allocation)
    obs = JobObservation(generation=0, epoch=1.5, step=30, speed=10.0, speed_span=5.0,
                         samples_per_epoch=640.0, series=4)
    (d,) = _round([_state(_raw(), status, _pods("mnist", allocation))], {("ml", "mnist"): obs})
    new = d.status.allocation
    assert new is not None and new.generation == 1 and (new.ps, new.workers) != (1, 1)
    assert new.ps != new.workers  # probes stay off the diagonal
    assert d.status.model.speed_samples == ((1, 1, 10.0),)
    assert d.status.phase == c.RESIZING_PHASE
    assert d.action == "roll"


def test_a_new_generation_at_step_zero_does_not_reset_the_progress() -> None:
    allocation = AllocationStatus(1, 2, 3, ("n1",), ("n1", "n1"))
    status = replace(_running(allocation), progress=ProgressStatus(
        epoch=2.5, step=50, loss=0.4, speed=9.0, updated_at=iso(NOW - 3)))
    state = _state(_raw(), status, _pods("mnist", allocation))
    restoring = JobObservation(generation=3, epoch=0.0, step=0, series=4)
    (d,) = _round([state], {("ml", "mnist"): restoring})
    assert d.status.progress == status.progress
    # once restored, it reports from the checkpoint (a little behind is the truth)
    restored = JobObservation(generation=3, epoch=2.4, step=48, series=4)
    (d,) = _round([state], {("ml", "mnist"): restored})
    assert d.status.progress is not None and d.status.progress.epoch == 2.4
    # a job that never reported anything takes its first reading, step 0 or not
    (d,) = _round([_state(_raw(), _running(allocation), _pods("mnist", allocation))],
                  {("ml", "mnist"): restoring})
    assert d.status.progress is not None and d.status.progress.epoch == 0.0


def _fitted_model() -> ModelStatus:
    def sync_speed(p: int, w: int) -> float:
        return 1.0 / (0.002 * 64 / w + 0.01 + 0.002 * w / p + 0.001 * w + 0.001 * p)
    configs = [(1, 1), (1, 2), (2, 1), (1, 4), (2, 3), (2, 4)]
    return ModelStatus(
        loss_samples=tuple((float(k), 1 / (0.3 * k + 1) + 0.05) for k in range(1, 6)),
        speed_samples=tuple((p, w, sync_speed(p, w)) for p, w in configs),
        samples_per_epoch=6400.0,
    )


def test_fitted_job_grows_into_a_free_cluster_then_shrinks_for_a_newcomer() -> None:
    allocation = AllocationStatus(1, 1, 5, ("n1",), ("n1",))
    status = _running(allocation, _fitted_model())
    obs = JobObservation(generation=5, epoch=5.2, step=500, series=4)
    (d,) = _round([_state(_raw(), status, _pods("mnist", allocation))], {("ml", "mnist"): obs})
    grown = d.status.allocation
    assert grown is not None and grown.workers > 1 and grown.generation == 6
    assert d.status.model.speed_theta is not None and d.status.model.loss is not None
    resized = [e for e in d.events if e.reason == "Resized"]
    assert resized and "predicted remaining" in resized[0].message

    # the job runs at its new size, and a second job arrives into a full cluster
    full = AllocationStatus(2, 8, 6, ("n1", "n2"), ("n1",) * 4 + ("n2",) * 4)
    workers = {**RAW_JOB["spec"]["workers"], "max": 8}
    big = _raw(workers=workers, parameterServers={**RAW_JOB["spec"]["parameterServers"],
                                                 "max": 2})
    status = _running(full, d.status.model)
    newcomer = _raw("second")
    decisions = _round([_state(big, status, _pods("mnist", full)), _state(newcomer)],
                       {("ml", "mnist"): obs})
    first, second = decisions
    assert second.status.allocation is not None, second.status
    assert first.status.allocation is not None and first.status.allocation.workers < 8


def test_prometheus_down_freezes_allocations() -> None:
    allocation = AllocationStatus(1, 1, 5, ("n1",), ("n1",))
    status = _running(allocation, _fitted_model())
    (d,) = _round([_state(_raw(), status, _pods("mnist", allocation))],
                  metrics_error="Prometheus is unavailable")
    assert d.status.allocation == status.allocation
    metrics = c.find(d.status.conditions, c.METRICS)
    assert metrics is not None and metrics.status == "False"
    assert metrics.reason == c.REASON_METRICS_UNAVAILABLE
    assert d.action == "none"
    # metrics return: the condition clears
    obs = JobObservation(generation=5, epoch=5.2, step=500, series=4)
    (back,) = _round([_state(_raw(), d.status, _pods("mnist", allocation))],
                     {("ml", "mnist"): obs})
    assert c.find(back.status.conditions, c.METRICS).status == "True"  # type: ignore[union-attr]


def test_failed_pod_restarts_then_fails_at_the_limit() -> None:
    allocation = AllocationStatus(1, 1, 5, ("n1",), ("n1",))
    status = _running(allocation)
    pods = tuple(replace(p, phase="Failed") if p.role == "worker" else p
                 for p in _pods("mnist", allocation))
    (d,) = _round([_state(_raw(), status, pods)])
    assert d.status.restarts == 1
    assert d.status.allocation is not None and d.status.allocation.generation == 6
    assert (d.status.allocation.ps, d.status.allocation.workers) == (1, 1)
    assert d.action == "roll"
    exhausted = replace(status, restarts=3)
    (dead,) = _round([_state(_raw(), exhausted, pods)])
    assert dead.status.phase == c.FAILED_PHASE and dead.action == "delete"


def test_max_epochs_succeeds_and_deletes_pods() -> None:
    allocation = AllocationStatus(1, 1, 5, ("n1",), ("n1",))
    obs = JobObservation(generation=5, epoch=12.0, step=900, series=4)
    (d,) = _round([_state(_raw(), _running(allocation), _pods("mnist", allocation))],
                  {("ml", "mnist"): obs})
    assert d.status.phase == c.SUCCEEDED_PHASE
    assert c.find(d.status.conditions, c.SUCCEEDED).reason == c.REASON_MAX_EPOCHS  # type: ignore[union-attr]
    assert d.action == "delete"
    (later,) = _round([_state(_raw(), d.status, ())])
    assert later.action == "none" and later.patch is None


def test_busy_job_is_not_touched() -> None:
    allocation = AllocationStatus(1, 1, 5, ("n1",), ("n1",))
    status = _running(allocation, _fitted_model())
    obs = JobObservation(generation=5, epoch=5.2, step=500, series=4)
    (d,) = _round([_state(_raw(), status, (), busy=True)], {("ml", "mnist"): obs})
    assert d.status.allocation is not None and d.status.allocation.generation == 5
    assert d.action == "none"


def test_nothing_new_writes_nothing_even_rounds_later() -> None:
    allocation = AllocationStatus(1, 1, 5, ("n1",), ("n1",))
    status = _running(allocation, _fitted_model())
    pods = _pods("mnist", allocation)
    (first,) = _round([_state(_raw(), status, pods)], metrics_error=None)
    for later in (NOW + 3, NOW + 60, NOW + 600):  # no series from the pods, ever
        (again,) = _round([_state(_raw(), first.status, pods)], now=later)
        assert again.patch is None or set(again.patch) == {"conditions", "phase"}
        first = replace(first, status=again.status)
    (last,) = _round([_state(_raw(), first.status, pods)], now=NOW + 900)
    assert last.patch is None


def _worker_gpus(raw: dict[str, Any], gpus: int) -> dict[str, Any]:
    container = raw["spec"]["workers"]["template"]["spec"]["containers"][0]
    container.setdefault("resources", {}).setdefault("limits", {})["nvidia.com/gpu"] = gpus
    container["resources"].get("requests", {}).pop("nvidia.com/gpu", None)
    return raw


def test_a_job_whose_worker_fits_no_node_is_invalid_until_a_node_is_large_enough() -> None:
    raw = _worker_gpus(_raw("huge"), 1000)
    (d,) = _round([_state(raw)])
    valid = c.find(d.status.conditions, c.VALID)
    assert d.status.phase == c.INVALID and valid is not None
    assert valid.reason == c.REASON_EXCEEDS_NODE_CAPACITY
    assert "spec.workers.template" in valid.message and "nvidia.com/gpu=1000" in valid.message
    assert "offers 4" in valid.message and "fix:" in valid.message
    assert [e.type for e in d.events] == ["Warning"] and d.status.allocation is None
    # the next round changes nothing and warns no more
    (again,) = _round([_state(raw, d.status)])
    assert again.patch is None and again.events == ()
    # a node that large joins: the job is valid and starts
    big = [*NODES, NodeView("big", Resources(gpu=1000, cpu=64, memory=2**40))]
    (fits,) = _round([_state(raw, d.status)], nodes=big)
    assert fits.status.phase != c.INVALID and fits.status.allocation is not None


def test_a_running_job_is_never_invalidated_by_the_nodes_it_no_longer_fits() -> None:
    raw = _worker_gpus(_raw("runner"), 4)
    allocation = AllocationStatus(ps=1, workers=1, generation=0, ps_nodes=("n1",),
                                  worker_nodes=("n1",))
    small = [NodeView("n1", Resources(gpu=2, cpu=8, memory=32 * 2**30))]
    (d,) = _round([_state(raw, _running(allocation), _pods("runner", allocation))], nodes=small)
    assert d.status.phase != c.INVALID


def test_a_probe_that_cannot_fit_gives_way_to_one_that_does() -> None:
    # the first job holds 2 GPUs of a node; the newcomer has measured 1 x 1 and would
    # probe 3 workers first, which cannot fit beside what the first job holds
    ps_fixed = {**RAW_JOB["spec"]["parameterServers"], "max": 1}
    workers = {**RAW_JOB["spec"]["workers"], "max": 3}
    held = AllocationStatus(1, 2, 6, ("n1",), ("n1", "n1"))
    first = _state(_raw("first", parameterServers=ps_fixed, workers=workers),
                   _running(held, _fitted_model()), _pods("first", held))
    probe = AllocationStatus(1, 1, 0, ("n1",), ("n1",))
    model = ModelStatus(speed_samples=((1, 1, 5.0),), samples_per_epoch=6400.0)
    newcomer = _state(_raw("second", parameterServers=ps_fixed, workers=workers),
                      _running(probe, model), _pods("second", probe))
    seen = {("ml", "first"): JobObservation(generation=6, epoch=5.2, step=500, series=4),
            ("ml", "second"): JobObservation(generation=0, epoch=0.5, step=50, series=4)}

    def assessed_on(nodes: list[NodeView]) -> list[Assessed]:
        return [assess(s, seen[(s.meta.namespace, s.meta.name)], metrics_error=None, now=NOW,
                       settings=SETTINGS, nodes=nodes) for s in (first, newcomer)]

    # 4 GPUs: 2 are free, so the newcomer probes 2 workers instead of 3
    four = [NodeView("n1", Resources(gpu=4, cpu=16, memory=64 * 2**30))]
    assessed = assessed_on(four)
    assert assessed[1].knowledge.probes[0] == (1, 3)
    fitted = schedule_assessed(assessed, four, now=NOW, settings=SETTINGS).jobs
    assert fitted[assessed[0].key].pin is None  # fitted: free
    assert fitted[assessed[1].key].pin == Allocation(1, 2)
    first_decision, second_decision = _round([first, newcomer], seen, nodes=four)
    assert second_decision.status.allocation is not None
    assert (second_decision.status.allocation.ps, second_decision.status.allocation.workers) \
        == (1, 2)
    assert first_decision.status.allocation == first.status.allocation
    # 3 GPUs: a probe would have to shrink the first job (two restarts for it, for another
    # job's measurement): no probe fits, and the newcomer is free for the round, judged by
    # what it measured, like a fitted job
    three = [NodeView("n1", Resources(gpu=3, cpu=16, memory=64 * 2**30))]
    free = schedule_assessed(assessed_on(three), three, now=NOW, settings=SETTINGS).jobs
    assert free[assessed[0].key].pin == fitted[assessed[0].key].pin
    assert free[assessed[1].key].pin is None and not free[assessed[1].key].knowledge.probing
    first_decision, second_decision = _round([first, newcomer], seen, nodes=three)
    assert second_decision.status.allocation == newcomer.status.allocation
    assert first_decision.status.allocation == first.status.allocation
    assert first_decision.action == "none" and second_decision.action == "none"


@pytest.mark.parametrize(("restarts_left", "epoch_size_known", "probing", "still_probing"), [
    (PROBE_PAYBACK_RESTARTS * 2, True, True, True),  # long to go: the probe pays
    (PROBE_PAYBACK_RESTARTS / 2, True, True, False),  # near the end: it cannot any more
    (0.0, True, True, False),  # nothing left at all
    (PROBE_PAYBACK_RESTARTS / 2, False, True, True),  # no epoch size: remaining unknown
    (PROBE_PAYBACK_RESTARTS / 2, True, False, False),  # not probing: unchanged
])
def test_a_job_stops_probing_when_a_probe_can_no_longer_pay_for_its_restarts(
        restarts_left: float, epoch_size_known: bool, probing: bool,
        still_probing: bool) -> None:
    job = parse_training_job(_raw("late"))
    here = AllocationStatus(1, 1, 3, ("n1",), ("n1",))
    settings = replace(SETTINGS, restart_cost_seconds=10.0)
    base = Knowledge(remaining_epochs=1.0, samples_per_epoch=6400.0, probing=probing,
                     next_probe=(1, 2) if probing else None,
                     probes=((1, 2), (2, 1)) if probing else (),
                     speed_samples=((1, 1, 5.0),))
    one_epoch = base.remaining_time(job.spec.global_batch_size, job.spec.mode)(1, 1)
    epochs = restarts_left * settings.restart_cost_seconds / one_epoch
    knowledge = replace(base, remaining_epochs=epochs,
                        samples_per_epoch=6400.0 if epoch_size_known else None)
    out = too_late_to_probe(knowledge, Allocation(here.ps, here.workers),
                            job.spec.global_batch_size, job.spec.mode,
                            settings.restart_cost_seconds)
    assert out.probing == still_probing
    if still_probing or not probing:
        assert out == knowledge  # nothing else changes either
    else:
        assert out.next_probe is None and out.probes == ()
        assert out.speed_samples == knowledge.speed_samples


@pytest.mark.parametrize(("decided_ago", "stuck"), [(100.0, False), (400.0, True)])
def test_a_resize_whose_pods_never_run_is_reported_once(decided_ago: float,
                                                         stuck: bool) -> None:
    settings = replace(SETTINGS, resize_timeout_seconds=300.0)
    allocation = AllocationStatus(1, 2, 4, ("n1",), ("n1", "n1"),
                                  updated_at=iso(NOW - decided_ago))
    status, _ = with_condition(TrainingJobStatus(allocation=allocation), c.RESIZING, "True",
                               c.REASON_RESIZE, "1 PS x 1 worker -> 1 PS x 2 workers",
                               now=iso(NOW - decided_ago), generation=2)
    pods = _pods("stuck", allocation, phase="Pending")[:2]  # one worker was never created
    state = _state(_raw("stuck"), status, pods)
    (a,) = [assess(state, None, metrics_error=None, now=NOW, settings=settings, nodes=NODES)]
    resizing = next(x for x in a.status.conditions if x.type == c.RESIZING)
    assert resizing.status == "True"
    warnings = [e for e in a.events if e.reason == c.REASON_RESIZE_STUCK]
    if not stuck:
        assert resizing.reason == c.REASON_RESIZE and warnings == []
        return
    assert resizing.reason == c.REASON_RESIZE_STUCK
    assert len(warnings) == 1 and warnings[0].type == "Warning"
    for name in (p.name for p in pods):
        assert name in warnings[0].message
    assert "1 not created" in warnings[0].message
    assert a.action == "roll"  # the missing pod is still created; nothing is torn down
    # the next round says the same thing: no second Warning
    again = assess(_state(_raw("stuck"), a.status, pods), None, metrics_error=None,
                   now=NOW + 4, settings=settings, nodes=NODES)
    assert not [e for e in again.events if e.reason == c.REASON_RESIZE_STUCK]
    # once the pods run, the resize is over
    running = _pods("stuck", allocation)
    done = assess(_state(_raw("stuck"), a.status, running), None, metrics_error=None,
                  now=NOW + 8, settings=settings, nodes=NODES)
    resizing = next(x for x in done.status.conditions if x.type == c.RESIZING)
    assert (resizing.status, resizing.reason) == ("False", c.REASON_PODS_RUNNING)


# ---- the measured restart cost ----------------------------------------------------------------
RESIZED = AllocationStatus(1, 2, 3, ("n1",), ("n1", "n1"), updated_at=iso(NOW - 60))


@pytest.mark.parametrize(("allocation", "observation", "seconds"), [
    (RESIZED, JobObservation(generation=3, first_step_at=NOW - 42), 18.0),
    (RESIZED, JobObservation(generation=3), None),  # no step yet
    (RESIZED, JobObservation(generation=2, first_step_at=NOW - 42), None),  # the old pods
    (RESIZED, None, None),
    (replace(RESIZED, restart_seconds=11.0), JobObservation(generation=3,
                                                            first_step_at=NOW - 42), None),
    (replace(RESIZED, generation=0), JobObservation(generation=0, first_step_at=NOW - 42),
     None),  # a job's first start is not a restart
    (replace(RESIZED, updated_at=""), JobObservation(generation=3, first_step_at=NOW - 42),
     None),
])
def test_a_restart_is_timed_from_its_decision_to_its_first_step(
        allocation: AllocationStatus, observation: JobObservation | None,
        seconds: float | None) -> None:
    assert measured_restart_seconds(allocation, observation) == seconds


def test_the_round_records_the_restart_once_in_the_allocation() -> None:
    state = _state(_raw("mnist"), _running(RESIZED), _pods("mnist", RESIZED))
    seen = {("ml", "mnist"): JobObservation(generation=3, epoch=2.0, step=10, series=4,
                                            first_step_at=NOW - 42)}
    (decision,) = _round([state], seen)
    assert decision.status.allocation is not None
    assert decision.status.allocation.restart_seconds == 18.0
    assert decision.patch is not None and decision.patch["allocation"]["restartSeconds"] == 18.0


@pytest.mark.parametrize(("measured", "cost"), [
    ((), 30.0),  # nothing measured: the configured value
    ((40.0,), 40.0),  # the first measurement counts at once (issue 16: not the prior)
    ((12.0, 14.0), 13.0),
    ((12.0, 14.0, 40.0), 14.0),  # the median: one slow start does not move it
    ((12.0, 14.0, 16.0, 18.0), 15.0),
])
def test_the_round_uses_the_measured_restart_cost_once_there_are_enough(
        measured: tuple[float, ...], cost: float) -> None:
    assert MIN_MEASURED_RESTARTS == 1
    states = [_state(_raw(f"j{i}"), _running(replace(RESIZED, restart_seconds=seconds)))
              for i, seconds in enumerate(measured)]
    states.append(_state(_raw("never-resized"), _running(replace(RESIZED, generation=0))))
    assert learned_restart_cost(states, configured=30.0) == cost


def test_a_failed_job_says_why_and_stops_resizing() -> None:
    allocation = AllocationStatus(1, 1, 5, ("n1",), ("n1",))
    status, _ = with_condition(replace(_running(allocation), restarts=3), c.RESIZING, "True",
                               c.REASON_POD_FAILED, "", now=iso(NOW - 50), generation=2)
    why = "worker: optimus_worker: task 'nosuch.module:attr': cannot import 'nosuch.module'"
    pods = tuple(replace(p, phase="Failed", message=why) if p.role == "worker" else p
                 for p in _pods("mnist", allocation))
    (dead,) = _round([_state(_raw(), status, pods)])
    failed = c.find(dead.status.conditions, c.FAILED)
    assert failed is not None and "cannot import 'nosuch.module'" in failed.message
    assert contract.pod_name("mnist", "worker", 0, 5) in failed.message
    assert [e.message for e in dead.events if e.reason == c.REASON_RESTART_LIMIT] == [
        failed.message]
    resizing = c.find(dead.status.conditions, c.RESIZING)
    assert resizing is not None and resizing.status == "False"
    assert dead.status.phase == c.FAILED_PHASE


@pytest.mark.parametrize(("messages", "expected"), [
    ((), ""),
    (("",), ""),
    (("a:\n  Traceback\n  ImportError: x",), ": p0: a: Traceback ImportError: x"),
    (("", "later"), ": p1: later"),
    (("x" * 2000,), ": p0: ..." + "x" * plan.MAX_FAILURE_MESSAGE),
])
def test_the_failure_message_is_the_first_failed_pods_cause(
        messages: tuple[str, ...], expected: str) -> None:
    pods = [PodSnapshot("ml", f"p{i}", "n1", "Failed", Resources(), message=m)
            for i, m in enumerate(messages)]
    assert plan.failure_message(pods) == expected


def test_suspend_stops_the_pods_frees_the_room_and_resume_restarts_at_the_minimum() -> None:
    allocation = AllocationStatus(1, 3, 4, ("n1",), ("n1", "n1", "n2"))
    pods = _pods("mnist", allocation)
    (suspended,) = _round([_state(_raw(suspend=True), _running(allocation), pods)])
    assert suspended.status.phase == c.SUSPENDED_PHASE
    assert suspended.action == "delete" and suspended.status.allocation is None
    assert [e.reason for e in suspended.events] == [c.REASON_SUSPENDED]
    scheduled = c.find(suspended.status.conditions, c.SCHEDULED)
    assert scheduled is not None and scheduled.status == "False"
    # kept while suspended: nothing to do once the pods are gone, the room is another's
    other = _state(_raw("other"))
    held, newcomer = _round([_state(_raw(suspend=True), suspended.status, ()), other])
    assert held.action == "none" and held.patch is None and held.events == ()
    assert newcomer.status.allocation is not None
    # resumed: a new start at the minimum, from the newest checkpoint
    (resumed,) = _round([_state(_raw(), held.status, ())])
    assert resumed.status.phase != c.SUSPENDED_PHASE
    assert [e.reason for e in resumed.events] == [c.REASON_RESUMED, "Started"]
    assert resumed.status.allocation is not None and resumed.action == "roll"
    assert (resumed.status.allocation.ps, resumed.status.allocation.workers) == (1, 1)


def test_a_job_created_suspended_never_starts() -> None:
    (d,) = _round([_state(_raw(suspend=True))])
    assert d.status.phase == c.SUSPENDED_PHASE
    assert d.status.allocation is None and d.action == "none"

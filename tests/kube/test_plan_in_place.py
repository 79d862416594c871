"""The pure half of a resize in place (optimus.kube.plan): which path a move takes, the
allocation that records each rank's pod generation, the fallback to checkpoint-restart
(a failed attempt, no answer after an operator restart, a failed pod), the measured pause
per kind of resize, and the per-job costs the allocator is charged."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from optimus.api import conditions as c
from optimus.api import parse_training_job
from optimus.api.spec import parse_meta
from optimus.api.status import (
    RESIZE_IN_PLACE_PS,
    RESIZE_IN_PLACE_WORKERS,
    RESIZE_RESTART,
    AllocationStatus,
    ModelStatus,
    TrainingJobStatus,
    iso,
    parse_status,
    with_condition,
)
from optimus.kube.builders import build_pods
from optimus.kube.plan import (
    Decision,
    InPlaceAttempt,
    InPlaceMove,
    JobState,
    RoundSettings,
    assess,
    decide,
    desired_pods,
    in_place_move,
    learned_resize_costs,
    resize_costs,
    schedule_assessed,
)
from optimus.kube.snapshot import PodSnapshot
from optimus.round import JobObservation
from optimus.scheduling import Allocation, JobPlacement, NodeView, Resources
from optimus_worker import contract

from tests.api.conftest import RAW_JOB

NOW = 1_800_000_000.0
SETTINGS = RoundSettings(restart_cost_seconds=0.0, speed_warmup_seconds=1,
                         speed_span_seconds=2, metrics_grace_seconds=30,
                         in_place_timeout_seconds=60.0)
NODES = [NodeView("n1", Resources(gpu=4, cpu=8, memory=32 * 2**30))]


def _raw(mode: str = "allreduce", **spec: Any) -> dict[str, Any]:
    raw = copy.deepcopy(RAW_JOB)
    raw["spec"]["mode"] = mode
    if mode == "allreduce":
        del raw["spec"]["parameterServers"]
    if "command" in spec:
        del raw["spec"]["task"]
    raw["spec"].update(spec)
    return raw


def _pod(role: str, rank: int, generation: int, phase: str = "Running") -> PodSnapshot:
    return PodSnapshot(
        namespace="ml", name=contract.pod_name("mnist", role, rank, generation),  # type: ignore[arg-type]
        node="n1", phase=phase, request=Resources(),
        labels={contract.POD_LABEL_MANAGED: contract.POD_LABEL_MANAGED_VALUE,
                contract.POD_LABEL_JOB: "mnist", contract.POD_LABEL_ROLE: role,
                contract.POD_LABEL_RANK: str(rank),
                contract.POD_LABEL_GENERATION: str(generation)},
        ip="127.0.0.9")


def _pods(allocation: AllocationStatus, phase: str = "Running") -> tuple[PodSnapshot, ...]:
    return tuple(_pod(role, rank, g, phase) for role in ("ps", "worker")
                 for rank, g in enumerate(allocation.pod_generations(role)))


def _status(allocation: AllocationStatus, *, settled: bool = True) -> TrainingJobStatus:
    status = TrainingJobStatus(allocation=replace(
        allocation, running_since=iso(NOW - 100) if settled else ""))
    for type_, reason in ((c.VALID, c.REASON_SPEC_VALID), (c.SCHEDULED, c.REASON_ALLOCATED)):
        status, _ = with_condition(status, type_, "True", reason, "", now=iso(NOW - 100),
                                   generation=1)
    return status


def _state(raw: dict[str, Any], status: TrainingJobStatus, pods: tuple[PodSnapshot, ...],
           *, busy: bool = False, attempt: InPlaceAttempt | None = None) -> JobState:
    raw_status = status.to_dict()
    return JobState(parse_meta(raw), raw_status, parse_status(raw_status),
                    parse_training_job(raw), None, pods, busy, attempt)


def _round(state: JobState, observation: JobObservation | None = None,
           now: float = NOW) -> Decision:
    a = assess(state, observation, metrics_error=None, now=now, settings=SETTINGS,
               nodes=NODES)
    outcome = schedule_assessed([a], NODES, now=now, settings=SETTINGS)
    (decision,) = decide([a], outcome, now=now, settings=SETTINGS)
    return decision


RUNNING = AllocationStatus(0, 2, 4, (), ("n1", "n1"), running_since=iso(NOW - 100))


# ---- the path -----------------------------------------------------------------------------
RUNNING_PS = replace(RUNNING, ps=1, ps_nodes=("n1",))


def _workers(previous: AllocationStatus, nodes: tuple[str, ...]) -> InPlaceMove:
    return InPlaceMove(RESIZE_IN_PLACE_WORKERS, previous.ps_nodes, nodes)


def _ps(nodes: tuple[str, ...], previous: AllocationStatus = RUNNING_PS) -> InPlaceMove:
    return InPlaceMove(RESIZE_IN_PLACE_PS, nodes, previous.worker_nodes)


@pytest.mark.parametrize(("raw", "previous", "placed", "move"), [
    # all-reduce, the library's loop: grow and shrink in place, the staying ranks first
    (_raw(), RUNNING, JobPlacement((), ("n1",) * 3), _workers(RUNNING, ("n1",) * 3)),
    (_raw(), replace(RUNNING, worker_nodes=("a", "b")), JobPlacement((), ("c", "b", "a")),
     _workers(RUNNING, ("a", "b", "c"))),
    (_raw(), replace(RUNNING, workers=3, worker_nodes=("a", "b", "c")),
     JobPlacement((), ("b", "a")), _workers(RUNNING, ("a", "b"))),
    # a staying rank would move: restart
    (_raw(), replace(RUNNING, workers=3, worker_nodes=("a", "b", "c")),
     JobPlacement((), ("c", "a")), None),
    (_raw(), RUNNING, JobPlacement((), ("n1", "n1")), None),  # same counts: no move
    (_raw(command=["python", "own.py"]), RUNNING, JobPlacement((), ("n1",) * 3), None),
    (_raw("ps-sync"), RUNNING_PS, JobPlacement(("n1",), ("n1",) * 3),
     _workers(RUNNING_PS, ("n1",) * 3)),  # PS modes: in place too
    (_raw("ps-sync"), RUNNING_PS, JobPlacement(("n2",), ("n1",) * 3), None),  # the PS moves
    (_raw(), replace(RUNNING, running_since=""), JobPlacement((), ("n1",) * 3), None),
    # a PS change: the added PS anywhere, PS 0 and every worker where they are
    (_raw("ps-sync"), RUNNING_PS, JobPlacement(("n1", "n1"), ("n1", "n1")),
     _ps(("n1", "n1"))),
    (_raw("ps-async"), replace(RUNNING_PS, ps_nodes=("a",)), JobPlacement(("b", "a"),
                                                                          ("n1", "n1")),
     _ps(("a", "b"))),
    (_raw("ps-sync"), replace(RUNNING_PS, ps=2, ps_nodes=("a", "b")),
     JobPlacement(("a",), ("n1", "n1")), _ps(("a",))),  # shrink: PS 1 leaves
    (_raw("ps-sync"), replace(RUNNING_PS, ps=2, ps_nodes=("a", "b")),
     JobPlacement(("b",), ("n1", "n1")), None),  # PS 0 would move
    (_raw("ps-sync"), replace(RUNNING_PS, worker_nodes=("a", "b")),
     JobPlacement(("n1", "n1"), ("a", "c")), None),  # a worker would move
    (_raw("ps-sync"), RUNNING_PS, JobPlacement(("n1", "n1"), ("n1",) * 3), None),  # both
    (_raw("ps-sync"), replace(RUNNING_PS, running_since=""),
     JobPlacement(("n1", "n1"), ("n1", "n1")), None),
])
def test_a_move_is_made_in_place_only_when_the_job_can_follow_it(
        raw: dict[str, Any], previous: AllocationStatus, placed: JobPlacement,
        move: InPlaceMove | None) -> None:
    assert in_place_move(parse_training_job(raw), previous, placed) == move


def test_the_paths_follow_the_contracts_declarations(monkeypatch: pytest.MonkeyPatch) -> None:
    job = parse_training_job(_raw("ps-async"))
    grow_workers = JobPlacement(("n1",), ("n1",) * 3)
    grow_ps = JobPlacement(("n1", "n1"), ("n1",) * 2)
    monkeypatch.setattr(contract, "IN_PLACE_WORKER_CHANGE_MODES", frozenset({"allreduce"}))
    monkeypatch.setattr(contract, "IN_PLACE_PS_CHANGE_MODES", frozenset({"ps-sync"}))
    assert in_place_move(job, RUNNING_PS, grow_workers) is None
    assert in_place_move(job, RUNNING_PS, grow_ps) is None
    monkeypatch.setattr(contract, "IN_PLACE_PS_CHANGE_MODES", frozenset({"ps-async"}))
    assert in_place_move(job, RUNNING_PS, grow_ps) == _ps(("n1", "n1"))
    assert in_place_move(job, RUNNING_PS, grow_workers) is None  # a PS mode is no worker one
    costs = resize_costs(TrainingJobStatus(), job, SETTINGS)
    assert costs.worker_change is None and costs.ps_change is not None


def test_a_zero_in_place_timeout_turns_resizing_in_place_off() -> None:
    from tests.kube.test_plan import _fitted_model
    status = replace(_status(RUNNING), model=_fitted_model())
    state = _state(_raw(), status, _pods(RUNNING))
    off = replace(SETTINGS, in_place_timeout_seconds=0.0)
    a = assess(state, JobObservation(generation=4, epoch=3.0, step=300, series=4),
               metrics_error=None, now=NOW, settings=off, nodes=NODES)
    (d,) = decide([a], schedule_assessed([a], NODES, now=NOW, settings=off), now=NOW,
                  settings=off)
    assert d.action == "roll" and d.status.allocation is not None
    assert d.status.allocation.resize_kind == RESIZE_RESTART
    assert resize_costs(status, parse_training_job(_raw()), off).worker_change is None


def _grown(decision: Decision) -> AllocationStatus:
    allocation = decision.status.allocation
    assert allocation is not None
    return allocation


def _grow_in_place(attempt: InPlaceAttempt | None = None) -> tuple[JobState, Decision]:
    """A running 2-worker all-reduce job the round grows (the in-place cost is 0)."""
    from tests.kube.test_plan import _fitted_model
    status = replace(_status(RUNNING), model=_fitted_model())
    state = _state(_raw(), status, _pods(RUNNING), attempt=attempt)
    decision = _round(state, JobObservation(generation=4, epoch=3.0, step=300, series=4))
    return state, decision


def test_the_round_grows_an_allreduce_job_in_place_keeping_the_running_pods() -> None:
    _, d = _grow_in_place()
    new = _grown(d)
    assert new.workers > 2 and new.generation == 5 and new.resize_kind == RESIZE_IN_PLACE_WORKERS
    assert new.worker_generations == (4, 4, *[5] * (new.workers - 2))
    assert d.action == "in-place"
    resizing = c.find(d.status.conditions, c.RESIZING)
    assert resizing is not None and resizing.reason == c.REASON_RESIZE_IN_PLACE
    assert "in place" in resizing.message
    (event,) = [e for e in d.events if e.reason == "Resized"]
    assert "in place" in event.message and "resize cost" in event.message
    # the pods: the running ones keep their names, the added ones join the chief's store
    assert {p.name for p in _pods(RUNNING)} <= desired_pods(parse_meta(_raw()), new)
    bodies = build_pods(parse_training_job(_raw()), new)
    added = [b for b in bodies if b["metadata"]["labels"][contract.POD_LABEL_GENERATION] == "5"]
    assert len(added) == new.workers - 2
    env = {e["name"]: e.get("value") for e in added[0]["spec"]["containers"][0]["env"]}
    assert env[contract.ENV_JOIN_IN_PLACE] == "1"
    assert env[contract.ENV_RENDEZVOUS].startswith(contract.pod_name("mnist", "worker", 0, 4))
    assert env[contract.ENV_NUM_WORKERS] == str(new.workers)
    assert env[contract.ENV_GENERATION] == "5"
    # the status round-trips with the per-rank generations
    assert parse_status(d.status.to_dict()).allocation == new


RUNNING_PS_JOB = AllocationStatus(1, 2, 4, ("n1",), ("n1", "n1"),
                                  running_since=iso(NOW - 100))


def _ps_raw(mode: str = "ps-sync") -> dict[str, Any]:
    """A PS-mode job whose workers are fixed at 2: the round can only change its PS."""
    return _raw(mode, workers={**RAW_JOB["spec"]["workers"], "min": 2, "max": 2})


def _ps_bound_model() -> ModelStatus:
    """A ps-sync job's fitted models whose speed is bound by its PS: a 2nd PS pays."""
    def speed(p: int, w: int) -> float:
        return 1.0 / (0.002 * 64 / w + 0.01 + 0.03 * w / p + 0.001 * w + 0.001 * p)
    configs = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (2, 3)]
    return ModelStatus(
        loss_samples=tuple((float(k), 1 / (0.3 * k + 1) + 0.05) for k in range(1, 6)),
        speed_samples=tuple((p, w, speed(p, w)) for p, w in configs),
        samples_per_epoch=6400.0)


def test_the_round_grows_a_ps_jobs_ps_in_place_keeping_the_running_pods() -> None:
    mode = "ps-sync"
    status = replace(_status(RUNNING_PS_JOB), model=_ps_bound_model())
    state = _state(_ps_raw(mode), status, _pods(RUNNING_PS_JOB))
    d = _round(state, JobObservation(generation=4, epoch=3.0, step=300, series=4))
    new = _grown(d)
    assert (new.ps, new.workers, new.generation) == (2, 2, 5)
    assert new.resize_kind == RESIZE_IN_PLACE_PS and d.action == "in-place"
    assert new.ps_generations == (4, 5) and new.worker_generations == (4, 4)
    resizing = c.find(d.status.conditions, c.RESIZING)
    assert resizing is not None and resizing.reason == c.REASON_RESIZE_IN_PLACE
    assert "1 PS x 2 workers -> 2 PS x 2 workers in place" in resizing.message
    # the running pods keep their names; the added PS joins the running chief's job
    assert {p.name for p in _pods(RUNNING_PS_JOB)} <= desired_pods(parse_meta(_raw()), new)
    bodies = build_pods(parse_training_job(_ps_raw(mode)), new)
    (added,) = [b for b in bodies
                if b["metadata"]["labels"][contract.POD_LABEL_GENERATION] == "5"]
    assert added["metadata"]["name"] == contract.pod_name("mnist", "ps", 1, 5)
    env = {e["name"]: e.get("value") for e in added["spec"]["containers"][0]["env"]}
    assert env[contract.ENV_JOIN_IN_PLACE] == "1"
    assert (env[contract.ENV_ROLE], env[contract.ENV_RANK]) == ("ps", "1")
    assert (env[contract.ENV_NUM_PS], env[contract.ENV_NUM_WORKERS]) == ("2", "2")
    assert env[contract.ENV_GENERATION] == "5"
    assert env[contract.ENV_RENDEZVOUS].startswith(contract.pod_name("mnist", "worker", 0, 4))
    assert parse_status(d.status.to_dict()).allocation == new


def test_a_ps_change_is_measured_under_its_own_kind_and_the_removed_ps_retired() -> None:
    shrunk = AllocationStatus(1, 2, 5, ("n1",), ("n1", "n1"), updated_at=iso(NOW - 10),
                              resize_kind=RESIZE_IN_PLACE_PS, ps_generations=(4,),
                              worker_generations=(4, 4))
    status = _status(shrunk, settled=False)
    leaver = _pod("ps", 1, 4)
    ok = InPlaceAttempt(5, ok=True, answered_at=NOW - 7, switch_seconds=0.12)
    still = _round(_state(_ps_raw(), status, (*_pods(shrunk), leaver), attempt=ok))
    assert still.action == "none" and not _grown(still).running_since
    assert still.status.resize_cost(RESIZE_IN_PLACE_PS) == 0.12
    assert still.status.resize_cost(RESIZE_IN_PLACE_WORKERS) is None
    assert (_grown(still).resize_seconds, _grown(still).pause_seconds) == (3.0, 0.12)
    gone = _round(_state(_ps_raw(), still.status, (*_pods(shrunk),
                                                   replace(leaver, phase="Succeeded")),
                         attempt=ok))
    assert gone.action == "roll" and gone.status.restarts == 0


def test_a_refused_ps_change_falls_back_to_a_restart_of_every_pod() -> None:
    grown = AllocationStatus(2, 2, 5, ("n1", "n1"), ("n1", "n1"), updated_at=iso(NOW - 10),
                             resize_kind=RESIZE_IN_PLACE_PS, ps_generations=(4, 5),
                             worker_generations=(4, 4))
    attempt = InPlaceAttempt(5, ok=False, error="the chief answered 503: PS 1 did not join")
    d = _round(_state(_ps_raw(), _status(grown, settled=False), _pods(grown),
                      attempt=attempt))
    new = _grown(d)
    assert new.generation == 6 and new.resize_kind == RESIZE_RESTART
    assert (new.ps_generations, new.worker_generations) == ((), ())
    assert d.action == "roll" and d.status.restarts == 0
    assert c.find(d.status.conditions, c.RESIZING).reason == c.REASON_IN_PLACE_FAILED  # type: ignore[union-attr]


def _in_flight(workers: int = 3) -> AllocationStatus:
    return AllocationStatus(0, workers, 5, (), ("n1",) * workers, updated_at=iso(NOW - 10),
                            resize_kind=RESIZE_IN_PLACE_WORKERS,
                            worker_generations=(4, 4, *[5] * (workers - 2))[:workers])


def test_a_switched_resize_is_measured_then_settles_once_the_removed_pods_are_gone() -> None:
    allocation = _in_flight()
    status = _status(allocation, settled=False)
    attempt = InPlaceAttempt(5, ok=True, answered_at=NOW - 4, switch_seconds=0.31)
    d = _round(_state(_raw(), status, _pods(allocation), attempt=attempt))
    measured = _grown(d)
    assert (measured.resize_seconds, measured.pause_seconds) == (6.0, 0.31)
    assert measured.restart_seconds is None
    assert d.status.resize_cost(RESIZE_IN_PLACE_WORKERS) == 0.31
    (pause,) = [e for e in d.events if e.reason == c.REASON_RESIZE_PAUSE]
    assert "in place" in pause.message and "0.3 s" in pause.message
    assert measured.running_since  # every pod of the allocation runs
    assert c.find(d.status.conditions, c.RESIZING).status == "False"  # type: ignore[union-attr]


def test_removed_workers_are_deleted_only_after_they_exited() -> None:
    shrunk = AllocationStatus(0, 2, 5, (), ("n1", "n1"), updated_at=iso(NOW - 10),
                              resize_kind=RESIZE_IN_PLACE_WORKERS, worker_generations=(4, 4))
    status = _status(shrunk, settled=False)
    leaver = _pod("worker", 2, 4)
    ok = InPlaceAttempt(5, ok=True, answered_at=NOW - 4, switch_seconds=0.2)
    still = _round(_state(_raw(), status, (*_pods(shrunk), leaver), attempt=ok))
    assert still.action == "none" and not _grown(still).running_since
    gone = _round(_state(_raw(), status, (*_pods(shrunk), replace(leaver, phase="Succeeded")),
                         attempt=ok))
    assert gone.action == "roll"  # the controller deletes the exited pod
    # an exited leaver is no failure
    assert gone.status.restarts == 0


@pytest.mark.parametrize("attempt", [
    InPlaceAttempt(5, ok=False, error="the chief answered 503: the added workers did not join"),
    InPlaceAttempt(5, ok=False, error="no answer from the chief within 60 s"),
])
def test_a_failed_attempt_falls_back_to_a_restart_of_every_pod(
        attempt: InPlaceAttempt) -> None:
    allocation = _in_flight()
    d = _round(_state(_raw(), _status(allocation, settled=False), _pods(allocation),
                      attempt=attempt))
    new = _grown(d)
    assert new.generation == 6 and new.resize_kind == RESIZE_RESTART
    assert new.workers == 3 and new.worker_generations == ()
    assert d.action == "roll" and d.status.restarts == 0  # a fallback is not a pod failure
    resizing = c.find(d.status.conditions, c.RESIZING)
    assert resizing is not None and resizing.reason == c.REASON_IN_PLACE_FAILED
    assert attempt.error in resizing.message
    assert [e.reason for e in d.events if e.type == "Warning"] == [c.REASON_IN_PLACE_FAILED]


def test_after_an_operator_restart_the_resize_waits_for_the_switch_then_falls_back() -> None:
    allocation = _in_flight()
    state = _state(_raw(), _status(allocation, settled=False), _pods(allocation))
    waiting = _round(state, now=NOW)  # decided 10 s ago, the timeout is 60 s
    assert _grown(waiting).generation == 5 and waiting.action == "none"
    # the switch happened meanwhile: Prometheus shows the new generation's first step
    switched = _round(state, JobObservation(generation=5, first_step_at=NOW - 3, series=4),
                      now=NOW + 100)
    assert _grown(switched).generation == 5 and _grown(switched).resize_seconds == 7.0
    # the workers step under the new generation (the first step itself unseen): switched
    trains = _round(state, JobObservation(generation=5, step=40, series=4), now=NOW + 100)
    assert _grown(trains).generation == 5 and trains.action == "none"
    # no step at the new size by the timeout: restart
    late = _round(state, now=NOW + 100)
    assert _grown(late).generation == 6 and _grown(late).resize_kind == RESIZE_RESTART
    assert "operator restarted" in c.find(  # type: ignore[union-attr]
        late.status.conditions, c.RESIZING).message


def test_a_pod_failing_during_the_resize_is_a_counted_restart() -> None:
    allocation = _in_flight()
    pods = tuple(replace(p, phase="Failed") if p.name.endswith("worker-1") else p
                 for p in _pods(allocation))
    d = _round(_state(_raw(), _status(allocation, settled=False), pods,
                      attempt=InPlaceAttempt(5, ok=False, error="connection reset")))
    assert _grown(d).generation == 6 and d.status.restarts == 1
    assert c.find(d.status.conditions, c.RESIZING).reason == c.REASON_POD_FAILED  # type: ignore[union-attr]


def test_the_job_is_held_while_its_resize_is_in_flight() -> None:
    allocation = _in_flight()
    d = _round(_state(_raw(), _status(allocation, settled=False), _pods(allocation),
                      busy=True))
    assert _grown(d) == allocation and d.action == "none"


# ---- the costs ------------------------------------------------------------------------------
def test_each_kind_of_move_is_charged_its_own_measured_cost() -> None:
    settings = replace(SETTINGS, restart_cost_seconds=30.0, in_place_cost_seconds=5.0)
    job = parse_training_job(_raw())
    prior = resize_costs(TrainingJobStatus(), job, settings)
    assert (prior.restart, prior.worker_change) == (30.0, 5.0)
    # the cluster's measurements replace the priors, the job's own replace the cluster's
    cluster = replace(settings, learned_costs=((RESIZE_IN_PLACE_WORKERS, 2.0),
                                               (RESIZE_RESTART, 40.0)))
    assert resize_costs(TrainingJobStatus(), job, cluster).restart == 40.0
    own = TrainingJobStatus(resize_costs=((RESIZE_IN_PLACE_WORKERS, 0.4),))
    costs = resize_costs(own, job, cluster)
    assert (costs.worker_change, costs.restart) == (0.4, 40.0)
    assert costs.seconds(Allocation(0, 2), Allocation(0, 4)) == 0.4
    # a PS-mode job changes its workers in place too
    ps_job = resize_costs(own, parse_training_job(_raw("ps-sync")), cluster)
    assert ps_job.seconds(Allocation(1, 2), Allocation(1, 4)) == 0.4
    # a job running its own script cannot: it pays a restart for a worker change
    script = resize_costs(own, parse_training_job(_raw(command=["python", "own.py"])), cluster)
    assert script.worker_change is None
    assert script.seconds(Allocation(0, 2), Allocation(0, 4)) == 40.0


def test_a_ps_change_is_charged_its_own_cost_in_the_modes_that_make_it_in_place() -> None:
    settings = replace(SETTINGS, restart_cost_seconds=30.0, in_place_cost_seconds=5.0,
                       in_place_ps_cost_seconds=8.0)
    ps_job = parse_training_job(_raw("ps-sync"))
    prior = resize_costs(TrainingJobStatus(), ps_job, settings)
    assert (prior.restart, prior.worker_change, prior.ps_change) == (30.0, 5.0, 8.0)
    cluster = replace(settings, learned_costs=((RESIZE_IN_PLACE_PS, 0.5),))
    assert resize_costs(TrainingJobStatus(), ps_job, cluster).ps_change == 0.5
    own = TrainingJobStatus(resize_costs=((RESIZE_IN_PLACE_PS, 0.2), (RESIZE_RESTART, 40.0)))
    costs = resize_costs(own, ps_job, cluster)
    assert costs.seconds(Allocation(1, 2), Allocation(2, 2)) == 0.2
    assert costs.seconds(Allocation(1, 2), Allocation(1, 3)) == 5.0
    assert costs.seconds(Allocation(1, 2), Allocation(2, 3)) == 40.0  # both: a restart
    # all-reduce has no PS; resizing in place off: every move restarts
    assert resize_costs(own, parse_training_job(_raw()), cluster).ps_change is None
    off = replace(cluster, in_place_timeout_seconds=0.0)
    assert resize_costs(own, ps_job, off).seconds(Allocation(1, 2), Allocation(2, 2)) == 40.0


def test_the_cluster_cost_of_a_kind_is_the_median_from_the_first_measurement() -> None:
    def state(costs: tuple[tuple[str, float], ...]) -> JobState:
        status = TrainingJobStatus(resize_costs=costs)
        return JobState(parse_meta(_raw()), status.to_dict(), status, None, None)
    assert learned_resize_costs([]) == ()
    assert learned_resize_costs([state(((RESIZE_RESTART, 41.0),))]) == ((RESIZE_RESTART, 41.0),)
    assert learned_resize_costs([
        state(((RESIZE_RESTART, 30.0), (RESIZE_IN_PLACE_WORKERS, 1.0))),
        state(((RESIZE_RESTART, 50.0),)), state(((RESIZE_RESTART, 35.0),)),
    ]) == ((RESIZE_IN_PLACE_WORKERS, 1.0), (RESIZE_RESTART, 35.0))

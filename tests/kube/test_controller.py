"""The controller's own decisions, against the in-memory edges of tests/kube/fakes.py:
statuses are written before pods change, Prometheus failures back off and freeze the
allocations, a round works from its own last write and its own last pod work when the
watches lag, a job whose pod work still runs is left alone, and the lifecycle checks the
integration tests make on a real cluster (invalid specs warn once, failed pods restart,
finished jobs lose their pods) hold round by round, and the knowledge pooled across jobs
is loaded before the first round, written once when it changed and primes a later job of
the same kind, also after an operator restart."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from optimus.api import parse_training_job
from optimus.api.status import iso, parse_status
from optimus.kube.builders import build_pods
from optimus.kube.config import OperatorConfig
from optimus.kube.controller import EXPECTATION_SECONDS, Controller, RoundReport, Snapshot
from optimus.kube.store import knowledge_configmap
from optimus.round import KnowledgeStore, pool_measurements

from tests.api.conftest import RAW_JOB
from tests.kube.fakes import FakeKube, FakePrometheus, Progress

NOW = 1_800_000_000.0
INTERVAL = 10.0
T = TypeVar("T")
Loop = asyncio.AbstractEventLoop


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _model() -> dict[str, Any]:
    """A fitted job: 10 loss points and 6 measured sizes of a speed that grows with more
    PS and workers (so that the policy grows a 1 x 1 job in an empty cluster), scaled to
    the 4 steps/s that `Progress` measures at 1 x 1: a model its own measurement
    contradicts has a wide error band, and the policy would not move the job on it."""
    t = (5e-4, 0.02, 0.01, 0.001, 0.001)

    def step_time(p: int, w: int) -> float:
        return t[0] * 64 / w + t[1] + t[2] * w / p + t[3] * w + t[4] * p

    def speed(p: int, w: int) -> float:
        return 4.0 * step_time(1, 1) / step_time(p, w)

    configs = [(1, 1), (1, 2), (2, 1), (1, 3), (2, 4), (2, 2)]
    return {"lossSamples": [[float(k), 1 / (0.3 * k + 1) + 0.1] for k in range(1, 11)],
            "speedSamples": [[p, w, speed(p, w)] for p, w in configs],
            "samplesPerEpoch": 6400.0}


def _raw(max_epochs: int = 100, **spec: Any) -> dict[str, Any]:
    raw = copy.deepcopy(RAW_JOB)
    raw["spec"]["convergence"]["maxEpochs"] = max_epochs
    raw["spec"].update(spec)
    return raw


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for a test's rounds (the controller's pod tasks live across them)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@dataclass
class World:
    kube: FakeKube
    prometheus: FakePrometheus
    controller: Controller
    clock: Clock
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def round(self, snapshot: Snapshot | None = None) -> RoundReport:
        """One round (on the fake's current state unless given), then its pod work."""
        async def run() -> RoundReport:
            async def take() -> Snapshot:
                return snapshot or self.kube.snapshot()
            report = await self.controller.run_round(take)
            await self.controller.settle()
            return report
        return self.run(run())


def _world(loop: asyncio.AbstractEventLoop, *, running: bool = True, max_epochs: int = 100,
           prometheus: FakePrometheus | None = None) -> World:
    """One node of 8 GPUs and the job ml/mnist: running at 1 PS x 1 worker (generation 0,
    its pods running for 10 minutes, its metrics scraped) or, with running=False, new."""
    kube = FakeKube()
    kube.add_node("n1", gpus=8, cpus=32)
    raw = _raw(max_epochs)
    if running:
        raw["status"] = {"phase": "Running", "model": _model(), "allocation": {
            "ps": 1, "workers": 1, "generation": 0, "nodes": ["n1"],
            "placement": {"ps": ["n1"], "workers": ["n1"]}, "reason": "allocation",
            "updatedAt": iso(NOW - 700), "runningSince": iso(NOW - 600)}}
    kube.add_job(raw)
    if running:
        allocation = parse_status(raw["status"]).allocation
        assert allocation is not None
        for body in build_pods(parse_training_job(raw), allocation):
            loop.run_until_complete(kube.create(body))
        kube.run_all()
        kube.calls.clear()
    if prometheus is None:
        prometheus = FakePrometheus([Progress("ml", "mnist", 0, NOW - 600)] if running else [])
    clock = Clock()
    config = OperatorConfig(interval_seconds=INTERVAL, restart_cost_seconds=0.0)
    return World(kube, prometheus, Controller(config, kube, prometheus, clock=clock), clock,
                 loop)


def _generation(kube: FakeKube) -> int:
    return int(kube.status("mnist")["allocation"]["generation"])


def _pod_calls(kube: FakeKube) -> list[tuple[Any, ...]]:
    return [c for c in kube.calls if c[0] in ("create", "delete_pod")]


def _first(calls: list[tuple[Any, ...]], match: Callable[[tuple[Any, ...]], bool]) -> int:
    return next(i for i, c in enumerate(calls) if match(c))


# ---- status before pods ------------------------------------------------------------------
def test_a_resize_is_recorded_in_the_status_before_any_pod_changes(loop: Loop) -> None:
    w = _world(loop)
    report = w.round()
    assert report.rolled == 1 and _generation(w.kube) == 1
    written = _first(w.kube.calls, lambda c: c[0] == "patch_status"
                     and (c[3].get("allocation") or {}).get("generation") == 1)
    first_pod_change = _first(w.kube.calls, lambda c: c[0] in ("create", "delete_pod"))
    assert written < first_pod_change
    assert w.kube.job_pod_names("mnist") == {"mnist-g1-ps-0", "mnist-g1-ps-1", "mnist-g1-worker-0",
                                           "mnist-g1-worker-1"}


def test_a_new_job_is_recorded_before_its_first_pods_are_created(loop: Loop) -> None:
    w = _world(loop, running=False)
    w.round()
    written = _first(w.kube.calls, lambda c: c[0] == "patch_status" and "allocation" in c[3])
    created = _first(w.kube.calls, lambda c: c[:2] == ("create", "Pod"))
    assert written < created
    assert w.kube.job_pod_names("mnist") == {"mnist-g0-ps-0", "mnist-g0-worker-0"}


def test_a_refused_status_write_changes_no_pods(loop: Loop) -> None:
    w = _world(loop)
    w.kube.refuse_status.add("mnist")
    report = w.round()
    assert w.kube.changes("patch_status") and report.patched == 0
    assert _pod_calls(w.kube) == [] and report.rolled == 0
    assert w.kube.changes("event") == []  # the events of an unwritten decision are not posted


# ---- Prometheus back-off -----------------------------------------------------------------
def test_prometheus_failures_back_off_and_freeze_the_allocation_till_it_returns(loop: Loop) -> None:
    w = _world(loop)
    w.prometheus.failing = True
    asked = []
    for i in range(8):
        w.clock.now = NOW + i * INTERVAL
        before = w.prometheus.queries
        report = w.round()
        asked.append(w.prometheus.queries > before)
        assert report.metrics_error is not None and "retrying in" in report.metrics_error
        metrics = next(c for c in w.kube.status("mnist")["conditions"]
                       if c["type"] == "MetricsAvailable")
        assert (metrics["status"], metrics["reason"]) == ("False", "MetricsUnavailable")
        assert "keeping the current allocation until metrics return" in metrics["message"]
    # retried after 1, 2 and 4 rounds (each failure doubles the wait)
    assert asked == [True, True, False, True, False, False, False, True]
    assert _pod_calls(w.kube) == [] and _generation(w.kube) == 0, "no resize while blind"
    w.prometheus.failing = False
    w.clock.now = NOW + 8 * INTERVAL  # still inside the 8-round back-off of the 4th failure
    assert w.round().metrics_error is not None
    w.clock.now = NOW + 15 * INTERVAL
    report = w.round()
    assert report.metrics_error is None
    assert _generation(w.kube) == 1 and report.rolled == 1, "with metrics back it grows"
    w.clock.now = NOW + 16 * INTERVAL  # the back-off is reset: the next round asks again
    before = w.prometheus.queries
    w.round()
    assert w.prometheus.queries > before


# ---- stale snapshots ---------------------------------------------------------------------
def test_a_round_works_from_its_own_last_status_write_when_the_watch_lags(loop: Loop) -> None:
    w = _world(loop, running=False)
    stale_jobs = w.kube.snapshot().jobs  # the job as the index still shows it: no status
    w.round()
    assert _generation(w.kube) == 0
    w.kube.calls.clear()
    w.clock.now += INTERVAL
    current = w.kube.snapshot()
    w.round(Snapshot(jobs=stale_jobs, nodes=current.nodes, pods=current.pods))
    assert [c for c in w.kube.changes("patch_status") if "allocation" in c[3]] == []
    assert not [c for c in w.kube.changes("event") if c[4] == "Started"], "started twice"
    assert _pod_calls(w.kube) == []


def test_pods_the_snapshot_does_not_show_yet_keep_the_job_busy(loop: Loop) -> None:
    w = _world(loop, running=False)
    before_pods = w.kube.snapshot()  # the pod index before the round's pods were created
    w.round()
    created = w.kube.job_pod_names("mnist")
    assert created
    w.kube.calls.clear()
    w.clock.now += INTERVAL
    stale = Snapshot(jobs=w.kube.snapshot().jobs, nodes=before_pods.nodes, pods=before_pods.pods)
    report = w.round(stale)
    assert _pod_calls(w.kube) == [] and report.rolled == 0, "rolled again from a stale pod list"
    # once the snapshot shows them the job is free again; an expectation never met expires
    w.clock.now += INTERVAL
    assert w.round().rolled == 0
    w.kube.pods.clear()  # the pods vanish (say, evicted) and no snapshot ever shows them
    w.clock.now += INTERVAL
    w.round()
    assert w.kube.job_pod_names("mnist") == created, "missing pods of a free job are recreated"


def test_an_expectation_that_is_never_met_expires(loop: Loop) -> None:
    w = _world(loop, running=False)
    empty = w.kube.snapshot()
    w.round()
    w.kube.calls.clear()
    w.clock.now += INTERVAL
    assert w.round(empty).rolled == 0
    w.clock.now += EXPECTATION_SECONDS + 1
    assert w.round(empty).rolled == 1


# ---- busy jobs ---------------------------------------------------------------------------
def test_a_job_whose_pod_work_still_runs_is_not_touched(loop: Loop) -> None:
    w = _world(loop, running=False)
    w.kube.gates["mnist-g0-worker-0"] = asyncio.Event()

    async def scenario() -> None:
        await w.controller.run_round(w.kube.source)
        while "mnist-g0-ps-0" not in w.kube.job_pod_names("mnist"):
            await asyncio.sleep(0)
        # the roll is still creating the worker when the PS fails and the next round runs
        w.kube.set_phase("mnist-g0-ps-0", "Failed")
        w.kube.calls.clear()
        w.clock.now += INTERVAL
        report = await w.controller.run_round(w.kube.source)
        assert report.rolled == report.deleted == 0
        assert _pod_calls(w.kube) == [] and w.kube.changes("event") == []
        assert _generation(w.kube) == 0 and w.kube.status("mnist").get("restarts", 0) == 0
        w.kube.gates["mnist-g0-worker-0"].set()
        await w.controller.settle()
        # the work done and seen, the failure is handled: a new generation of the same size
        w.clock.now += INTERVAL
        report = await w.controller.run_round(w.kube.source)
        await w.controller.settle()
        assert report.rolled == 1 and _generation(w.kube) == 1
        assert w.kube.status("mnist")["restarts"] == 1
        assert any(c[4] == "PodFailed" for c in w.kube.changes("event"))

    w.run(scenario())


# ---- the lifecycle, round by round -----------------------------------------------------------
def test_an_invalid_job_warns_once_gets_no_pods_and_recovers_when_fixed(loop: Loop) -> None:
    w = _world(loop, running=False)
    w.kube.jobs[("ml", "mnist")]["spec"]["globalBatchSize"] = 1
    for _ in range(3):
        w.round()
        w.clock.now += INTERVAL
    assert w.kube.status("mnist")["phase"] == "Invalid"
    warnings = [c for c in w.kube.changes("event") if c[3] == "Warning"]
    assert len(warnings) == 1 and "globalBatchSize" in warnings[0][5]
    assert len(w.kube.changes("patch_status")) == 1, "a round with nothing new writes nothing"
    assert _pod_calls(w.kube) == []
    w.kube.jobs[("ml", "mnist")]["spec"]["globalBatchSize"] = 64
    w.round()
    assert w.kube.status("mnist")["phase"] != "Invalid"
    assert w.kube.job_pod_names("mnist") == {"mnist-g0-ps-0", "mnist-g0-worker-0"}


def test_a_failed_pod_restarts_the_job_as_a_new_generation_of_the_same_size(loop: Loop) -> None:
    w = _world(loop, prometheus=FakePrometheus(failing=True))
    w.kube.set_phase("mnist-g0-worker-0", "Failed")
    report = w.round()
    status = w.kube.status("mnist")
    assert report.rolled == 1 and status["restarts"] == 1
    assert (status["allocation"]["ps"], status["allocation"]["workers"],
            status["allocation"]["generation"]) == (1, 1, 1)
    assert w.kube.job_pod_names("mnist") == {"mnist-g1-ps-0", "mnist-g1-worker-0"}
    assert [c[4] for c in w.kube.changes("event")] == ["PodFailed"]


def test_a_finished_job_loses_its_pods_and_service(loop: Loop) -> None:
    w = _world(loop, max_epochs=5)
    report = w.round()
    assert w.kube.status("mnist")["phase"] == "Succeeded" and report.deleted == 1
    assert w.kube.job_pod_names("mnist") == set()
    assert ("delete_service", "ml", "mnist") in w.kube.calls


# ---- knowledge pooled across jobs (optimus.kube.store) -----------------------------------------
STORE_NS = "optimus-system"


def _knowledge_controller(w: World) -> Controller:
    config = OperatorConfig(interval_seconds=INTERVAL, restart_cost_seconds=0.0,
                            knowledge_namespace=STORE_NS)
    return Controller(config, w.kube, w.prometheus, clock=w.clock)


def _store_writes(kube: FakeKube) -> list[tuple[Any, ...]]:
    return [c for c in kube.calls if c[0] in ("create_configmap", "replace_configmap")]


def _new_job(w: World, name: str) -> None:
    raw = _raw()
    raw["metadata"].update(name=name, uid=f"u-{name}")
    w.kube.add_job(raw)


def test_a_store_in_the_cluster_is_loaded_before_the_first_round_and_primes_a_new_job(
        loop: Loop) -> None:
    w = _world(loop, running=False)
    w.controller = _knowledge_controller(w)
    t = (5e-4, 0.02, 0.01, 0.001, 0.001)
    seed = pool_measurements(KnowledgeStore(), "mlp", "ps-sync", 64, [
        (p, wk, 64 / (t[0] * 64 / wk + t[1] + t[2] * wk / p + t[3] * wk + t[4] * p))
        for p in (1, 2, 3) for wk in (1, 2, 4)])
    w.kube.put_configmap(knowledge_configmap(seed, STORE_NS, "optimus-knowledge"))
    w.round()
    model = w.kube.status("mnist")["model"]
    entry = seed.get("mlp|ps-sync|64")
    assert entry is not None and entry.theta is not None
    assert model["prior"] == {"kind": "mlp|ps-sync|64", "finishedJobs": 0, "speedSamples": 9,
                              "configurations": 9, "speedModel": True}
    assert model["speed"]["theta"] == list(entry.theta), "it starts from the kind's model"
    assert _store_writes(w.kube) == [], "nothing learned, nothing written"


def test_a_second_job_of_a_kind_starts_from_the_first_s_knowledge_after_a_restart(
        loop: Loop) -> None:
    w = _world(loop, max_epochs=5)  # ml/mnist has trained 10 epochs: it succeeds at once
    w.controller = _knowledge_controller(w)
    w.round()
    assert w.kube.status("mnist")["phase"] == "Succeeded"
    assert _store_writes(w.kube) == [("create_configmap", STORE_NS, "optimus-knowledge")]
    registry = w.controller.metrics.registry
    assert registry.get_sample_value("optimus_knowledge_kinds") == 1
    assert registry.get_sample_value("optimus_knowledge_speed_samples") == 1
    for _ in range(3):  # nothing new to learn: the store is not rewritten
        w.clock.now += INTERVAL
        w.round()
    assert len(_store_writes(w.kube)) == 1
    # an operator restart: a new controller reads the store back
    w.controller = _knowledge_controller(w)
    _new_job(w, "second")
    w.clock.now += INTERVAL
    w.round()
    model = w.kube.status("second")["model"]
    assert model["prior"] == {"kind": "mlp|ps-sync|64", "finishedJobs": 1, "speedSamples": 1,
                              "configurations": 1, "speedModel": False}
    # the convergence prior: the epochs the first job trained (10), not maxEpochs (100)
    assert model["remainingEpochs"] == pytest.approx(10.0)
    entry = w.controller.store.get("mlp|ps-sync|64")
    assert entry is not None and entry.finished_epochs == (10.0,)


def test_jobs_of_another_kind_or_batch_share_nothing(loop: Loop) -> None:
    w = _world(loop, max_epochs=5)
    w.controller = _knowledge_controller(w)
    w.round()
    for name, spec in (("other-task", {"task": "cnn"}), ("other-batch", {"globalBatchSize": 128}),
                       ("own-kind", {"modelKind": "mine"})):
        raw = _raw(**spec)
        raw["metadata"].update(name=name, uid=f"u-{name}")
        w.kube.add_job(raw)
    _new_job(w, "same")
    w.clock.now += INTERVAL
    w.round()
    assert "prior" in w.kube.status("same")["model"]
    for name in ("other-task", "other-batch", "own-kind"):
        assert "prior" not in w.kube.status(name).get("model", {}), name


def test_without_a_configmap_name_the_store_is_kept_in_memory_only(loop: Loop) -> None:
    w = _world(loop, max_epochs=5)
    config = OperatorConfig(interval_seconds=INTERVAL, knowledge_configmap="")
    w.controller = Controller(config, w.kube, w.prometheus, clock=w.clock)
    w.round()
    assert w.controller.store.kinds and w.kube.configmaps == {}

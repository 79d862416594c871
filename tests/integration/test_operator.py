"""The operator against the e2e local cluster, with a real Prometheus scraping real worker
processes (see conftest.py). Timeouts are generous and every wait is bounded: the machine
is small and shared."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from optimus_worker import contract

from e2e.demo.kubectl import KubectlError
from tests.integration.conftest import OPERATOR, World

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def _allocation(world: World, name: str) -> dict[str, Any]:
    return dict(world.status(name).get("allocation") or {})


def _settled(world: World, name: str, rounds: int = 4) -> dict[str, Any] | None:
    """The job's status once its generation has run for `rounds` operator rounds with its
    size among the measured speed samples, else None."""
    status = world.status(name)
    allocation = status.get("allocation") or {}
    since = allocation.get("runningSince")
    samples = (status.get("model") or {}).get("speedSamples") or []
    measured = any((p, w) == (allocation.get("ps"), allocation.get("workers"))
                   for p, w, _ in samples)
    if not since or not measured or status.get("phase") != "Running":
        return None
    age = time.time() - datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    return status if age >= rounds * OPERATOR.interval_seconds else None


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = manifest
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return edit


_CONTAINER = "spec.workers.template.spec.containers.0"
#: jobs the API server may accept but the operator must refuse: (name, edit, field named)
INVALID = [
    ("bad-name-" + "x" * 32, None, "metadata.name"),
    ("bad-image", _edit(f"{_CONTAINER}.image", None), "image"),
    ("bad-quantity", _edit(f"{_CONTAINER}.resources.requests", {"cpu": "lots"}), "cpu"),
    ("bad-containers", _edit("spec.workers.template.spec.containers", []), "containers"),
    ("bad-gpu", _edit(f"{_CONTAINER}.resources.limits", {"nvidia.com/gpu": "500m"}),
     "nvidia.com/gpu"),
    ("bad-batch", _edit("spec.globalBatchSize", 1), "globalBatchSize"),
]


def test_invalid_jobs_get_clear_conditions_and_recover(world: World) -> None:
    accepted = []
    for name, edit, field in INVALID:
        manifest = world.manifest(name, workers=(1, 2))
        if edit is not None:
            edit(manifest)
        try:
            world.apply(manifest)
        except KubectlError as error:  # the CRD's schema refused it: it must say why
            assert field in str(error), error
            continue
        accepted.append((name, field))
    assert len(accepted) >= 4, "the CRD should let the operator-only checks through"
    for name, field in accepted:
        def invalid(n: str = name) -> dict[str, Any] | None:
            return world.condition(n, "Valid") if world.phase(n) == "Invalid" else None

        condition = world.wait(f"{name} to be Invalid", invalid, 30)
        assert condition["reason"] == "InvalidSpec"
        assert field in condition["message"] and "fix:" in condition["message"]
        warnings = [e for e in world.events(name) if e.type == "Warning"]
        assert warnings and field in warnings[0].message
        assert world.pods(name) == []
    # no retry storm: a few rounds later there is still exactly one warning per job
    time.sleep(7)
    for name, _ in accepted:
        assert len([e for e in world.events(name) if e.type == "Warning"]) == 1
    # fixing the spec recovers the job
    name = accepted[0][0] if accepted[0][0] != INVALID[0][0] else accepted[1][0]
    world.apply(world.manifest(name, workers=(1, 2)))
    world.wait(f"{name} to be scheduled once fixed",
               lambda: world.phase(name) in ("Probing", "Running", "Resizing"), 30)
    for name, _ in accepted:
        world.delete(name)
    world.wait("the fixed job's pods to go", lambda: not world.pods(accepted[0][0])
               and not world.pods(name), 60)


def test_create_probe_fit_grow_restart_blind_shrink_succeed(world: World) -> None:
    big = "grower"
    world.apply(world.manifest(big, ps=(1, 2), workers=(1, 3), max_epochs=400))
    first = world.wait("the first allocation", lambda: _allocation(world, big), 30)
    assert (first["ps"], first["workers"], first["generation"]) == (1, 1, 0)

    # probing walks through configurations until the speed model can be fitted
    def fitted() -> dict[str, Any] | None:
        status = world.status(big)
        scheduled = world.condition(big, "Scheduled")
        model = status.get("model") or {}
        if scheduled.get("reason") == "Allocated" and model.get("speed") and \
                status.get("phase") == "Running":
            return status
        return None

    status = world.wait("probing to end with fitted models", fitted, 240, interval=2)
    model = status["model"]
    configs = {(p, w) for p, w, _ in model["speedSamples"]}
    assert len(configs) >= 5 and any(p != w for p, w in configs)
    assert model["remainingEpochs"] >= 0 and model["samplesPerEpoch"] > 0
    model = world.wait("the loss model", lambda: world.status(big)["model"].get("loss")
                       and world.status(big)["model"], 90, interval=2)
    assert len(model["lossSamples"]) >= 3 and model["convergedEpoch"] > 0
    grown = world.wait("the job to run on more than one worker",
                       lambda: (a := _allocation(world, big)).get("workers", 0) > 1
                       and world.phase(big) == "Running" and a, 90, interval=2)
    assert grown["generation"] >= 1
    resized = [e.message for e in world.events(big) if e.reason == "Resized"]
    assert resized and all("->" in m for m in resized)

    # the operator restarts mid-job: nothing is resized, nothing is lost. The job's size is
    # fixed first (min = max = its settled size): the models keep learning from every
    # measurement, and a resize they choose on their own would say nothing about the
    # restart, while one the restart caused (a lost allocation, a re-admission, a job
    # taken for failed) still shows as a new generation.
    settled = world.wait("the allocation to settle", lambda: _settled(world, big), 120)
    size = settled["allocation"]["ps"], settled["allocation"]["workers"]
    world.apply(world.manifest(big, ps=(size[0], size[0]), workers=(size[1], size[1]),
                               max_epochs=400))
    time.sleep(7)  # two rounds with the fixed size
    before = world.status(big)
    assert before["allocation"]["generation"] == settled["allocation"]["generation"]
    # what the job taught is in the knowledge store's ConfigMap, written through the API
    # server (the operator runs outside the cluster: namespace default)
    stored = world.wait("the knowledge store's ConfigMap", lambda: _stored_kind(world, big), 30)
    assert len(stored.samples) >= 5 and stored.theta is not None
    world.stack.operator.restart()  # type: ignore[union-attr]
    time.sleep(10)  # three rounds
    after = world.status(big)
    # the restarted operator read the store back: the job's fit sees its kind's knowledge
    prior = after["model"].get("prior") or {}
    assert prior.get("kind") == f"{big}|ps-sync|64" and prior["configurations"] >= 5, prior
    assert after["allocation"]["generation"] == before["allocation"]["generation"]
    assert len(after["model"]["lossSamples"]) >= len(before["model"]["lossSamples"])
    assert after["model"]["speedSamples"] and after.get("restarts", 0) == before.get("restarts", 0)

    # Prometheus goes away for a while: a condition, no resize; it clears when it returns
    generation = after["allocation"]["generation"]
    world.stack.prometheus.stop()
    try:
        blind = world.wait("MetricsAvailable=False",
                           lambda: world.condition(big, "MetricsAvailable").get("status")
                           == "False" and world.condition(big, "MetricsAvailable"), 30)
        assert blind["reason"] == "MetricsUnavailable"
        time.sleep(9)
        assert _allocation(world, big)["generation"] == generation
    finally:
        world.stack.prometheus.start()
    world.wait("MetricsAvailable=True again",
               lambda: world.condition(big, "MetricsAvailable").get("status") == "True", 60)
    assert _allocation(world, big)["generation"] == generation

    # a second job arrives into the full cluster: the first one, free again, shrinks to make
    # room
    world.apply(world.manifest(big, ps=(1, 2), workers=(1, 3), max_epochs=400))
    width = _allocation(world, big)["workers"]
    small = "newcomer"
    world.apply(world.manifest(small, max_epochs=3))
    world.wait("the newcomer to be allocated", lambda: _allocation(world, small), 90)
    assert _allocation(world, big)["workers"] < width or width < 3

    # let the first job finish early: a spec update is re-planned at once
    epoch = float(world.status(big)["progress"]["epoch"])
    manifest = world.manifest(big, ps=(1, 2), workers=(1, 3), max_epochs=int(epoch) + 3)
    world.apply(manifest)
    for name in (small, big):
        def succeeded(n: str = name) -> bool:
            return world.phase(n) == "Succeeded"

        world.wait(f"{name} to succeed", succeeded, 150, interval=2)
        done = world.condition(name, "Succeeded")
        assert done["reason"] in ("MaxEpochsReached", "Converged")
    world.wait("finished jobs' pods to go",
               lambda: not world.pods(big) and not world.pods(small), 60)
    assert any(world.checkpoints.joinpath(big).iterdir()), "checkpoints stay"
    finished = world.wait("the finished jobs in the knowledge store",
                          lambda: (k := _stored_kind(world, small)) and k.finished_epochs
                          and k, 30)
    assert finished.finished_epochs[0] > 2  # maxEpochs 3: the epoch its chief ended in
    for name in (small, big):
        world.delete(name)


def _stored_kind(world: World, name: str) -> Any:
    """The job's kind as the operator's knowledge ConfigMap holds it (None: not yet)."""
    from kubernetes.client.rest import ApiException
    from optimus.kube.store import DEFAULT_CONFIGMAP, store_from_configmap

    try:
        raw = world.core.read_namespaced_config_map(DEFAULT_CONFIGMAP, "default")
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    store = store_from_configmap(world.core.api_client.sanitize_for_serialization(raw))
    return store.get(f"{name}|ps-sync|64")


def test_failed_pod_is_replaced_and_deleting_a_job_cleans_its_pods(world: World) -> None:
    name = "short-lived"
    world.apply(world.manifest(name, max_epochs=1000))
    world.wait("its pods to run", lambda: len([p for p in world.pods(name)
                                               if p.status.phase == "Running"]) == 2, 90)
    service = contract.service_name(name)
    spec = world.core.read_namespaced_service(service, "default").spec
    assert spec is not None and spec.cluster_ip == "None"

    # a worker dies: the job restarts from its checkpoint as a new generation
    worker = contract.pod_name(name, "worker", 0, 0)
    pid = world.stack.cluster.pod_pid("default", worker)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    replaced = world.wait("a new generation after the failure",
                          lambda: (a := _allocation(world, name)).get("generation") == 1
                          and world.phase(name) == "Running" and a, 90)
    assert (replaced["ps"], replaced["workers"]) == (1, 1)
    assert world.status(name)["restarts"] == 1
    assert any(e.reason == "PodFailed" for e in world.events(name))

    world.delete(name)
    world.wait("its pods to go", lambda: not world.pods(name), 60)
    world.wait("its Service to go", lambda: service not in {
        s.metadata.name for s in world.core.list_namespaced_service("default").items
        if s.metadata is not None}, 30)

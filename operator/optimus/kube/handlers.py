"""The kopf side of the operator: three in-memory indices (TrainingJobs, pods, nodes) that
kopf keeps current from its watch streams, a timer that drives the cluster-wide scheduling
loop, and an event handler that asks for a round at once when a job appears, changes its
spec or goes away.

A round's snapshot (step 1) reads the indices (`indexed_snapshot`), so a round costs no
API listing however many pods the cluster runs; a pod is parsed once per change it
goes through, not once per round. kopf fills every index before it runs any handler, so
the first round already sees the whole cluster. kopf watches namespaced resources only in
the namespaces it serves: an operator limited to some namespaces (OPTIMUS_NAMESPACES)
still lists the other namespaces' unfinished pods every round, since they take node
capacity too.

Only the active operator runs anything: kopf peering pauses every handler, timers included,
on the replicas that are not active, so exactly one scheduling loop runs in the cluster.
The timer fires on every job, but `Controller.tick` runs at most one round per interval.
Handlers never raise for a bad spec (the round gives it an Invalid condition and a Warning
event), so an invalid job causes no retry storm.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from optimus.api.spec import GPU_RESOURCE, GROUP, PLURAL, VERSION
from optimus.kube.client import KubeApi, KubernetesApi
from optimus.kube.config import OperatorConfig
from optimus.kube.controller import Controller, Snapshot, SnapshotSource
from optimus.kube.snapshot import PodSnapshot, parse_pod
from optimus.metrics.exporter import OperatorMetrics
from optimus.metrics.prometheus import HttpPrometheusClient

log = logging.getLogger("optimus.kube")
#: the indices' ids: kopf passes each index to the handlers as the keyword of that name
JOBS_INDEX = "optimus_jobs"
PODS_INDEX = "optimus_pods"
NODES_INDEX = "optimus_nodes"
ANNOTATION_PREFIX = "optimus.dev"


def job_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    """A TrainingJob as its index keeps it: a plain copy (kopf reuses its bodies)."""
    return copy.deepcopy(dict(body))


def node_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Node as its index keeps it: a plain copy of what `node_views` reads of it."""
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return copy.deepcopy({
        "metadata": {"name": metadata.get("name"), "labels": metadata.get("labels") or {}},
        "spec": {"taints": spec.get("taints") or [],
                 "unschedulable": spec.get("unschedulable")},
        "status": {key: status[key] for key in ("allocatable", "capacity", "conditions")
                   if key in status},
    })


def _values(index: Mapping[Any, Iterable[Any]]) -> list[Any]:
    return [value for store in index.values() for value in store]


def outside_selector(namespaces: Iterable[str]) -> str:
    """A field selector for the unfinished pods of every namespace but these."""
    return ",".join([*(f"metadata.namespace!={n}" for n in namespaces),
                     "status.phase!=Succeeded", "status.phase!=Failed"])


def indexed_snapshot(jobs: Mapping[Any, Iterable[Any]], pods: Mapping[Any, Iterable[Any]],
                     nodes: Mapping[Any, Iterable[Any]], *, api: KubeApi,
                     namespaces: tuple[str, ...] = (),
                     accelerator: str = GPU_RESOURCE) -> SnapshotSource:
    """The snapshot a round reads from kopf's indices (and, for an operator limited to
    `namespaces`, from a listing of the other namespaces' unfinished pods)."""
    async def take() -> Snapshot:
        indexed: list[PodSnapshot] = _values(pods)
        if namespaces:
            listed = await api.list_pods(field_selector=outside_selector(namespaces))
            indexed += [parse_pod(p, accelerator) for p in listed]
        return Snapshot(jobs=_values(jobs), nodes=_values(nodes), pods=indexed)
    return take


def build_registry(config: OperatorConfig, controller_box: dict[str, Controller]
                   ) -> kopf.OperatorRegistry:
    """A kopf registry with the operator's handlers (the controller is made at startup)."""
    registry = kopf.OperatorRegistry()
    seen: dict[str, int] = {}  # uid -> metadata.generation that asked for a round

    def snapshot(indices: Mapping[str, Any], controller: Controller) -> SnapshotSource:
        # kopf passes each index as an extra keyword named by its id; its handler protocols
        # (kopf.TimerFn, kopf.WatchingFn) list only kopf's own keywords, so the indices
        # arrive in the handlers' **kwargs
        return indexed_snapshot(indices[JOBS_INDEX], indices[PODS_INDEX],
                                indices[NODES_INDEX], api=controller.api,
                                namespaces=config.namespaces,
                                accelerator=config.accelerator_resource)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # a custom registry has none of kopf's default login handlers: use the same
        # credentials as the kubernetes client (in-cluster, else $KUBECONFIG)
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
        settings.posting.level = logging.WARNING
        settings.peering.mandatory = False
        settings.peering.clusterwide = not config.namespaces
        if config.peering:
            settings.peering.name = config.peering
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 30
        metrics = OperatorMetrics()
        if config.metrics_port:
            metrics.serve(config.metrics_port, config.bind_address)
        prometheus = HttpPrometheusClient(config.prometheus_url,
                                          timeout=config.prometheus_timeout_seconds,
                                          on_failure=metrics.prometheus_failed)
        controller_box["controller"] = Controller(config, KubernetesApi(), prometheus, metrics)
        log.info("optimus operator started: interval %.0f s, policy %s, Prometheus %s",
                 config.interval_seconds, config.policy, config.prometheus_url)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        controller = controller_box.get("controller")
        if controller is not None:
            await controller.prometheus.close()

    @kopf.index(GROUP, VERSION, PLURAL, id=JOBS_INDEX, registry=registry)
    def optimus_jobs(body: kopf.Body, namespace: str | None, name: str | None,
                     **_: Any) -> dict[tuple[str | None, str | None], dict[str, Any]]:
        return {(namespace, name): job_entry(body)}

    @kopf.index("", "v1", "pods", id=PODS_INDEX, registry=registry)
    def optimus_pods(body: kopf.Body, namespace: str | None, name: str | None,
                     **_: Any) -> dict[tuple[str | None, str | None], PodSnapshot]:
        return {(namespace, name): parse_pod(body, config.accelerator_resource)}

    @kopf.index("", "v1", "nodes", id=NODES_INDEX, registry=registry)
    def optimus_nodes(body: kopf.Body, name: str | None,
                      **_: Any) -> dict[str | None, dict[str, Any]]:
        # a mapping is spread into the index as {key: value}: the node is one value
        return {name: node_entry(body)}

    @kopf.on.event(GROUP, VERSION, PLURAL, id="job-event", registry=registry)
    async def job_event(event: kopf.RawEvent, meta: kopf.Meta, **indices: Any) -> None:
        uid = str(meta.uid or "")
        generation = int(meta.get("generation") or 0)
        if event.get("type") == "DELETED":
            seen.pop(uid, None)
            return  # ownerReferences delete the pods and the Service
        if seen.get(uid) == generation:
            return  # our own status write, or nothing the round needs to see at once
        seen[uid] = generation
        controller = controller_box.get("controller")
        if controller is not None:
            await controller.tick(snapshot(indices, controller), force=True)

    tick_seconds = max(1.0, min(config.interval_seconds / 2, 5.0))

    @kopf.timer(GROUP, VERSION, PLURAL, interval=tick_seconds, backoff=tick_seconds,
                registry=registry)
    async def schedule(**indices: Any) -> None:
        controller = controller_box.get("controller")
        if controller is not None:
            await controller.tick(snapshot(indices, controller))

    return registry

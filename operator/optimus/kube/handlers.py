"""The kopf side of the operator: an index of TrainingJobs, a timer that drives the
cluster-wide scheduling loop, and an event handler that asks for a round at once when a job
appears, changes its spec or goes away.

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

from optimus.api.spec import GROUP, PLURAL, VERSION
from optimus.kube.client import KubeApi
from optimus.kube.config import OperatorConfig
from optimus.kube.controller import Controller
from optimus.metrics.exporter import OperatorMetrics
from optimus.metrics.prometheus import PrometheusClient

log = logging.getLogger("optimus.kube")
INDEX = "optimus_jobs"
ANNOTATION_PREFIX = "optimus.dev"


def _all_jobs(index: Any) -> Iterable[Mapping[str, Any]]:
    for store in index.values():
        yield from store


def build_registry(config: OperatorConfig, controller_box: dict[str, Controller]
                   ) -> kopf.OperatorRegistry:
    """A kopf registry with the operator's handlers (the controller is made at startup)."""
    registry = kopf.OperatorRegistry()
    seen: dict[str, int] = {}  # uid -> metadata.generation that asked for a round

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # a custom registry has none of kopf's default login handlers: use the same
        # credentials as the kubernetes client (in-cluster, else $KUBECONFIG)
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(**kwargs: Any) -> None:
        settings: kopf.OperatorSettings = kwargs["settings"]
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
        prometheus = PrometheusClient(config.prometheus_url,
                                      timeout=config.prometheus_timeout_seconds,
                                      on_failure=metrics.prometheus_failed)
        controller_box["controller"] = Controller(config, KubeApi(), prometheus, metrics)
        log.info("optimus operator started: interval %.0f s, policy %s, Prometheus %s",
                 config.interval_seconds, config.policy, config.prometheus_url)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        controller = controller_box.get("controller")
        if controller is not None:
            await controller.prometheus.close()

    @kopf.index(GROUP, VERSION, PLURAL, id=INDEX, registry=registry)
    def optimus_jobs(**kwargs: Any) -> dict[Any, Any]:
        # (kopf passes everything by keyword; **kwargs keeps its handler protocol happy)
        key = (kwargs["namespace"], kwargs["name"])
        return {key: copy.deepcopy(dict(kwargs["body"]))}

    @kopf.on.event(GROUP, VERSION, PLURAL, id="job-event", registry=registry)
    async def job_event(**kwargs: Any) -> None:
        event: Mapping[str, Any] = kwargs["event"]
        metadata = kwargs["body"].get("metadata", {})
        index = kwargs[INDEX]
        uid = str(metadata.get("uid", ""))
        generation = int(metadata.get("generation") or 0)
        kind = event.get("type")
        if kind == "DELETED":
            seen.pop(uid, None)
            return  # ownerReferences delete the pods and the Service
        if seen.get(uid) == generation:
            return  # our own status write, or nothing the round needs to see at once
        seen[uid] = generation
        controller = controller_box.get("controller")
        if controller is not None:
            await controller.tick(lambda: _all_jobs(index), force=True)

    tick_seconds = max(1.0, min(config.interval_seconds / 2, 5.0))

    @kopf.timer(GROUP, VERSION, PLURAL, interval=tick_seconds, backoff=tick_seconds,
                registry=registry)
    async def schedule(**kwargs: Any) -> None:
        index = kwargs[INDEX]
        controller = controller_box.get("controller")
        if controller is not None:
            await controller.tick(lambda: _all_jobs(index))

    return registry

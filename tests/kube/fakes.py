"""In-memory stand-ins for the controller's two edges, so that its tests run in
milliseconds: `FakeKube` (optimus.kube.client.KubeApi) keeps jobs, nodes, pods and Services
in dicts and records every call that changes something, in order; `FakePrometheus`
(optimus.metrics.prometheus.PrometheusClient) answers the operator's four range queries from
scripted per-job progress, and fails on demand."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optimus.api.spec import JobMeta
from optimus.kube.controller import Snapshot
from optimus.kube.snapshot import parse_pod
from optimus.kube.store import ConfigMapConflict
from optimus.metrics.observe import QUERIES
from optimus.metrics.prometheus import PrometheusError, Series
from optimus_worker import contract

Key = tuple[str, str]  # (namespace, name)


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """A JSON merge patch (RFC 7386): None deletes a key, dicts merge, the rest replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeKube:
    """`KubeApi` over dicts. `calls` lists every change in order: ("patch_status", ns,
    name, patch), ("create", kind, ns, name), ("delete_pod", ns, name),
    ("delete_service", ns, name), ("event", ns, name, type, reason, message),
    ("create_configmap", ns, name), ("replace_configmap", ns, name).
    `gates` holds an asyncio.Event per pod name whose creation must wait for it;
    `refuse_status` names jobs whose status writes raise."""

    def __init__(self) -> None:
        self.jobs: dict[Key, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: dict[Key, dict[str, Any]] = {}
        self.services: dict[Key, dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.refuse_status: set[str] = set()
        self.configmaps: dict[Key, dict[str, Any]] = {}
        self._versions = 0  # the last resourceVersion handed out

    # ---- the test's side --------------------------------------------------------------
    def add_node(self, name: str, *, gpus: int = 4, cpus: int = 16,
                 memory: str = "64Gi") -> None:
        self.nodes[name] = {"metadata": {"name": name, "labels": {}}, "spec": {},
                            "status": {"allocatable": {"nvidia.com/gpu": str(gpus),
                                                       "cpu": str(cpus), "memory": memory}}}

    def add_job(self, raw: Mapping[str, Any]) -> None:
        metadata = raw["metadata"]
        self.jobs[(metadata["namespace"], metadata["name"])] = copy.deepcopy(dict(raw))

    def set_phase(self, pod: str, phase: str, namespace: str = "ml") -> None:
        self.pods[(namespace, pod)].setdefault("status", {})["phase"] = phase

    def run_all(self) -> None:
        """Every pod runs (the kubelet's work)."""
        for name in [name for _, name in self.pods]:
            self.set_phase(name, "Running")

    def status(self, name: str, namespace: str = "ml") -> dict[str, Any]:
        return dict(self.jobs[(namespace, name)].get("status") or {})

    def job_pod_names(self, job: str) -> set[str]:
        return {n for (_, n), p in self.pods.items()
                if p["metadata"]["labels"].get(contract.POD_LABEL_JOB) == job}

    def changes(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]

    def snapshot(self) -> Snapshot:
        """What kopf's indices hold once its watches caught up with this state."""
        return Snapshot(jobs=[copy.deepcopy(j) for j in self.jobs.values()],
                        nodes=list(self.nodes.values()),
                        pods=[parse_pod(p) for p in self.pods.values()])

    async def source(self) -> Snapshot:
        """`snapshot` as a round's snapshot source."""
        return self.snapshot()

    # ---- KubeApi ----------------------------------------------------------------------
    async def list_nodes(self) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self.nodes.values()))

    async def list_pods(self, *, field_selector: str = "") -> list[dict[str, Any]]:
        excluded = {(path, value) for path, _, value in
                    (part.partition("!=") for part in field_selector.split(",") if part)}
        return [copy.deepcopy(p) for (namespace, _), p in self.pods.items()
                if ("metadata.namespace", namespace) not in excluded
                and ("status.phase", (p.get("status") or {}).get("phase", "Pending"))
                not in excluded]

    async def patch_status(self, meta: JobMeta, status: Mapping[str, Any]) -> bool:
        self.calls.append(("patch_status", meta.namespace, meta.name, copy.deepcopy(status)))
        if meta.name in self.refuse_status:
            raise RuntimeError(f"status write of {meta.name} refused")
        job = self.jobs.get((meta.namespace, meta.name))
        if job is None:
            return False
        merge(job.setdefault("status", {}), status)
        return True

    async def create(self, body: Mapping[str, Any]) -> None:
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        gate = self.gates.get(metadata["name"])
        if gate is not None:
            await gate.wait()
        self.calls.append(("create", body["kind"], *key))
        store = self.pods if body["kind"] == "Pod" else self.services
        if key not in store:
            store[key] = {**copy.deepcopy(dict(body)), "status": {"phase": "Pending"}}

    async def delete_pod(self, namespace: str, name: str) -> None:
        self.calls.append(("delete_pod", namespace, name))
        self.pods.pop((namespace, name), None)

    async def delete_service(self, namespace: str, name: str) -> None:
        self.calls.append(("delete_service", namespace, name))
        self.services.pop((namespace, name), None)

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(p) for (ns, _), p in self.pods.items() if ns == namespace
                and p["metadata"]["labels"].get(contract.POD_LABEL_JOB) == job]

    async def event(self, meta: JobMeta, type_: str, reason: str, message: str) -> None:
        self.calls.append(("event", meta.namespace, meta.name, type_, reason, message))

    def put_configmap(self, body: Mapping[str, Any]) -> None:
        """Create or overwrite a ConfigMap as `kubectl apply` would (a new resourceVersion)."""
        self._versions += 1
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = str(self._versions)
        metadata = body["metadata"]
        self.configmaps[(metadata["namespace"], metadata["name"])] = stored

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.configmaps.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_configmap(self, body: Mapping[str, Any]) -> dict[str, Any]:
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        self.calls.append(("create_configmap", *key))
        if key in self.configmaps:
            raise ConfigMapConflict("AlreadyExists")
        self.put_configmap(body)
        return copy.deepcopy(self.configmaps[key])

    async def replace_configmap(self, body: Mapping[str, Any]) -> dict[str, Any]:
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        self.calls.append(("replace_configmap", *key))
        current = self.configmaps.get(key)
        if current is None or (current["metadata"]["resourceVersion"]
                               != metadata.get("resourceVersion")):
            raise ConfigMapConflict("Conflict")
        self.put_configmap(body)
        return copy.deepcopy(self.configmaps[key])


@dataclass
class Progress:
    """One job generation's scripted metrics: from `since`, its workers step at
    `steps_per_second` in all, an epoch takes `seconds_per_epoch`, and the loss of epoch k
    is 1 / (0.5 k + 1) + 0.1."""

    namespace: str
    job: str
    generation: int
    since: float
    steps_per_second: float = 4.0
    seconds_per_epoch: float = 60.0
    samples_per_step: float = 32.0


@dataclass
class FakePrometheus:
    """`PrometheusClient` answering the four range queries of optimus.metrics.observe from
    `jobs`; while `failing` is set every query raises PrometheusError. `queries` counts
    the range queries asked (failed ones included)."""

    jobs: list[Progress] = field(default_factory=list)
    failing: bool = False
    queries: int = 0
    closed: bool = False

    async def query(self, expr: str, *, time: float | None = None) -> list[Series]:
        raise NotImplementedError("the operator asks range queries only")

    async def query_range(self, expr: str, *, start: float, end: float,
                          step: float) -> list[Series]:
        self.queries += 1
        if self.failing:
            raise PrometheusError("Prometheus at http://fake is unavailable: scripted")
        names = [n for n, query in QUERIES.items() if query == expr]
        if not names:  # the step split's queries: this fake's jobs export no split
            return []
        (name,) = names
        series = []
        for job in self.jobs:
            times = [t for t in _grid(start, end, step) if t >= job.since]
            if not times:
                continue
            points = tuple((t, _value(name, job, t - job.since)) for t in times)
            labels = {contract.LABEL_NAMESPACE: job.namespace, contract.LABEL_JOB: job.job,
                      contract.LABEL_GENERATION: str(job.generation)}
            series.append(Series(labels, points))
        return series

    async def close(self) -> None:
        self.closed = True


def _grid(start: float, end: float, step: float) -> list[float]:
    count = int((end - start) // step)
    return [start + i * step for i in range(count + 1)]


def _value(name: str, job: Progress, elapsed: float) -> float:
    steps = job.steps_per_second * elapsed
    epoch = elapsed / job.seconds_per_epoch
    if name == "steps":
        return steps
    if name == "samples":
        return steps * job.samples_per_step
    if name == "epoch":
        return epoch
    done = max(1.0, float(int(epoch)))
    return 1 / (0.5 * done + 1) + 0.1

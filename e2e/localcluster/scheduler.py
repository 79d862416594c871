"""The scheduler: binds each pending pod to a simulated node.

`choose_node` is the pure decision (filters, then least-allocated scoring, as the default
kube-scheduler does); `Scheduler` is the loop that feeds it from the store and writes the
binding, the PodScheduled condition and Scheduled / FailedScheduling events. On a cluster
whose GPUs are emulated, binding a pod also gives each container that holds a GPU the
variable a device plugin would inject (`with_emulated_gpus`): its workers then wait the
accelerator time per sample (optimus_worker.emulation).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from optimus_worker import contract

from . import aio, quantity
from .api import Api
from .events import record_event
from .server import bind, set_condition
from .store import Change

log = logging.getLogger("localcluster.scheduler")

Obj = dict[str, Any]
RESOURCES = ("cpu", "memory", "nvidia.com/gpu")


def pod_requests(pod: Obj) -> dict[str, float]:
    """Effective requests: the sum over containers (limits stand in for absent requests)."""
    total: dict[str, float] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        res = container.get("resources") or {}
        requests = dict(res.get("limits") or {})
        requests.update(res.get("requests") or {})
        for name, value in requests.items():
            total[name] = total.get(name, 0.0) + quantity.parse(value)
    return total


GPU = "nvidia.com/gpu"
#: what the simulated device plugin injects into a container given a GPU
ENV_EMULATED_GPU = contract.ENV_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE


def container_gpus(container: Obj) -> float:
    res = container.get("resources") or {}
    requests = dict(res.get("limits") or {})
    requests.update(res.get("requests") or {})
    return quantity.parse(requests[GPU]) if GPU in requests else 0.0


def with_emulated_gpus(pod: Obj, seconds_per_sample: float) -> Obj | None:
    """A copy of `pod` whose containers that hold a GPU have the emulated-accelerator variable
    set to `seconds_per_sample` (replacing any value the pod declared), or None when no
    container holds one or the time is 0 (nothing to inject)."""
    if seconds_per_sample <= 0:
        return None
    new = copy.deepcopy(pod)
    injected = False
    for container in (new.get("spec") or {}).get("containers") or []:
        if container_gpus(container) <= 0:
            continue
        env = [e for e in container.get("env") or [] if e.get("name") != ENV_EMULATED_GPU]
        env.append({"name": ENV_EMULATED_GPU, "value": repr(float(seconds_per_sample))})
        container["env"] = env
        injected = True
    return new if injected else None


def occupies_node(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _term_matches(term: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    for expr in term.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present, value = key in labels, labels.get(key)
        ok = {
            "In": present and value in values,
            "NotIn": not present or value not in values,
            "Exists": present,
            "DoesNotExist": not present,
            "Gt": present and _int(value) > _int(values[0] if values else None),
            "Lt": present and _int(value) < _int(values[0] if values else None),
        }.get(op, False)
        if not ok:
            return False
    for expr in term.get("matchFields") or []:
        if expr.get("key") != "metadata.name":
            return False
        name, values = node["metadata"]["name"], expr.get("values") or []
        if expr.get("operator") == "In" and name not in values:
            return False
        if expr.get("operator") == "NotIn" and name in values:
            return False
    return True


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol["key"] == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


@dataclass(frozen=True)
class Decision:
    node: str | None
    message: str


def choose_node(pod: Obj, nodes: list[Obj], pods: list[Obj]) -> Decision:
    """The node for `pod` among `nodes`, given the `pods` already bound; or why none fits."""
    spec = pod.get("spec") or {}
    wanted = pod_requests(pod)
    used: dict[str, dict[str, float]] = {}
    count: Counter[str] = Counter()
    for other in pods:
        node = (other.get("spec") or {}).get("nodeName")
        if not node or not occupies_node(other) or other["metadata"]["uid"] == pod[
                "metadata"]["uid"]:
            continue
        count[node] += 1
        bucket = used.setdefault(node, {})
        for name, value in pod_requests(other).items():
            bucket[name] = bucket.get(name, 0.0) + value
    reasons: Counter[str] = Counter()
    candidates: list[tuple[float, str]] = []
    selector = spec.get("nodeSelector") or {}
    affinity = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = affinity.get("nodeSelectorTerms") or []
    tolerations = spec.get("tolerations") or []
    for node in nodes:
        name = node["metadata"]["name"]
        labels = node["metadata"].get("labels") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (node.get("status") or {}).get("conditions") or [])
        if (node.get("spec") or {}).get("unschedulable") or not ready:
            reasons["node(s) were unschedulable"] += 1
            continue
        if any(labels.get(k) != v for k, v in selector.items()) or (
                terms and not any(_term_matches(t, node) for t in terms)):
            reasons["node(s) didn't match Pod's node affinity/selector"] += 1
            continue
        untolerated = [t for t in (node.get("spec") or {}).get("taints") or []
                       if t.get("effect") in ("NoSchedule", "NoExecute")
                       and not _tolerated(t, tolerations)]
        if untolerated:
            taint = untolerated[0]
            reasons[f"node(s) had untolerated taint {{{taint.get('key')}: "
                    f"{taint.get('value', '')}}}"] += 1
            continue
        allocatable = {k: quantity.parse(v)
                       for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()}
        if count[name] + 1 > allocatable.get("pods", 110):
            reasons["Too many pods"] += 1
            continue
        short = [r for r, v in wanted.items()
                 if v > 0 and used.get(name, {}).get(r, 0.0) + v > allocatable.get(r, 0.0) + 1e-9]
        if short:
            for resource in short:
                reasons[f"Insufficient {resource}"] += 1
            continue
        free = []
        for resource in RESOURCES:
            capacity = allocatable.get(resource, 0.0)
            if capacity > 0:
                left = capacity - used.get(name, {}).get(resource, 0.0) - wanted.get(resource, 0)
                free.append(left / capacity)
        candidates.append((sum(free) / len(free) if free else 0.0, name))
    if candidates:
        best = max(candidates, key=lambda c: (c[0], [-ord(ch) for ch in c[1]]))
        return Decision(best[1], "")
    detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    message = f"0/{len(nodes)} nodes are available: {detail}." if detail else (
        f"0/{len(nodes)} nodes are available.")
    return Decision(None, message)


class Scheduler:
    def __init__(self, api: Api, interval_s: float = 1.0,
                 emulated_gpu_seconds_per_sample: float = 0.0) -> None:
        self.api = api
        self.interval_s = interval_s
        self.emulated_gpu_seconds_per_sample = emulated_gpu_seconds_per_sample
        self._wake = asyncio.Event()
        api.store.listeners.append(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.key in (("", "pods"), ("", "nodes")):
            self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.schedule_pending()
            except Exception:
                log.exception("scheduling round failed")
            await asyncio.sleep(0.02)  # batch bursts of changes into one round
            await aio.wait_event(self._wake, self.interval_s)

    def schedule_pending(self) -> None:
        store = self.api.store
        rt = self.api.registry.by_key(("", "pods"))
        assert rt is not None
        pending = [p for p in store.items(("", "pods"))
                   if not (p.get("spec") or {}).get("nodeName")
                   and not p["metadata"].get("deletionTimestamp")
                   and (p.get("spec") or {}).get("schedulerName", "default-scheduler")
                   == "default-scheduler"]
        pending.sort(key=lambda p: (-int((p.get("spec") or {}).get("priority") or 0),
                                    p["metadata"].get("creationTimestamp", ""),
                                    p["metadata"]["name"]))
        for pod in pending:
            nodes = list(store.items(("", "nodes")))
            bound = [p for p in store.items(("", "pods")) if (p.get("spec") or {}).get("nodeName")]
            decision = choose_node(pod, nodes, bound)
            md = pod["metadata"]
            if decision.node:
                emulated = with_emulated_gpus(pod, self.emulated_gpu_seconds_per_sample)
                if emulated is not None:  # the device plugin's Allocate, before the kubelet
                    store.write(rt.key, emulated, pod)
                bind(self.api, rt, md["namespace"], md["name"], decision.node)
                record_event(self.api, pod, "Normal", "Scheduled",
                             f"Successfully assigned {md['namespace']}/{md['name']} to "
                             f"{decision.node}", "default-scheduler")
                continue
            conditions = (pod.get("status") or {}).get("conditions") or []
            current = next((c for c in conditions if c["type"] == "PodScheduled"), None)
            if current and current.get("message") == decision.message:
                continue
            new = copy.deepcopy(pod)
            set_condition(new.setdefault("status", {}), "PodScheduled", "False", "Unschedulable",
                          decision.message)
            store.write(rt.key, new, pod)
            record_event(self.api, pod, "Warning", "FailedScheduling", decision.message,
                         "default-scheduler")

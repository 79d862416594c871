"""Step 1 of a scheduling round, the pure half: raw nodes and pods as typed objects, and
the translation into the scheduler's NodeView/JobView.

A node's capacity for the scheduler is its allocatable GPUs (the accelerator resource,
nvidia.com/gpu unless OPTIMUS_ACCELERATOR_RESOURCE names another), CPUs and
memory minus what the pods the operator does not manage request there; the operator's own
pods are not subtracted, because the allocator re-divides exactly that share every round.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from optimus_worker import contract

from optimus.affinity import NodeRequirements, all_of
from optimus.api.spec import GPU_RESOURCE, TrainingJob, template_request
from optimus.resources import QuantityError, Resources, parse_quantity
from optimus.scheduling.cluster import node_accepts
from optimus.scheduling.types import (
    Allocation,
    JobView,
    NodeView,
    RemainingTime,
    Taint,
)

FINISHED_POD_PHASES: Final = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodSnapshot:
    """What a round needs of one pod."""

    namespace: str
    name: str
    node: str
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    request: Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    deleting: bool = False
    ip: str = ""
    #: why the pod's containers ended: their termination messages (the file a failing
    #: worker writes, or the log tail the kubelet falls back to), "" when none said
    message: str = ""

    @property
    def managed(self) -> bool:
        return self.labels.get(contract.POD_LABEL_MANAGED) == contract.POD_LABEL_MANAGED_VALUE

    @property
    def job(self) -> str | None:
        return self.labels.get(contract.POD_LABEL_JOB) if self.managed else None

    @property
    def role(self) -> str:
        return self.labels.get(contract.POD_LABEL_ROLE, "")

    @property
    def rank(self) -> int:
        return _int(self.labels.get(contract.POD_LABEL_RANK))

    @property
    def generation(self) -> int:
        return _int(self.labels.get(contract.POD_LABEL_GENERATION))

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_POD_PHASES


def _int(raw: str | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return -1


def parse_pod(raw: Mapping[str, Any], accelerator: str = GPU_RESOURCE) -> PodSnapshot:
    metadata = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    return PodSnapshot(
        namespace=str(metadata.get("namespace") or "default"),
        name=str(metadata.get("name") or ""),
        node=str(spec.get("nodeName") or ""),
        phase=str(status.get("phase") or "Pending"),
        request=template_request({"spec": spec}, accelerator),
        labels=dict(metadata.get("labels") or {}),
        deleting=bool(metadata.get("deletionTimestamp")),
        ip=str(status.get("podIP") or ""),
        message=termination_message(status),
    )


def termination_message(status: Mapping[str, Any]) -> str:
    """The termination messages of a pod's ended containers, the failed ones first, in
    container order: "container: message" lines ("" when no container left one)."""
    found: list[tuple[bool, str]] = []
    for item in status.get("containerStatuses") or []:
        if not isinstance(item, Mapping):
            continue
        for key in ("state", "lastState"):
            terminated = (item.get(key) or {}).get("terminated")
            if isinstance(terminated, Mapping) and str(terminated.get("message") or "").strip():
                failed = terminated.get("exitCode") not in (0, None)
                text = str(terminated["message"]).strip()
                found.append((not failed, f"{item.get('name') or 'container'}: {text}"))
                break
    return "\n".join(text for _, text in sorted(found, key=lambda pair: pair[0]))


def _quantity(table: Mapping[str, Any], name: str) -> float:
    try:
        return parse_quantity(table.get(name, 0))
    except QuantityError:
        return 0.0


def _node_ready(status: Mapping[str, Any]) -> bool:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return True  # a node that reports no conditions is taken as ready


def node_views(raw_nodes: Iterable[Mapping[str, Any]],
               pods: Iterable[PodSnapshot], accelerator: str = GPU_RESOURCE) -> list[NodeView]:
    """Nodes as the scheduler sees them: allocatable minus unmanaged pods' requests."""
    used: dict[str, Resources] = {}
    for pod in pods:
        if pod.node and not pod.managed and not pod.finished:
            used[pod.node] = used.get(pod.node, Resources()) + pod.request
    views = []
    for raw in raw_nodes:
        metadata = raw.get("metadata") or {}
        spec = raw.get("spec") or {}
        status = raw.get("status") or {}
        allocatable = status.get("allocatable") or status.get("capacity") or {}
        name = str(metadata.get("name") or "")
        views.append(NodeView(
            name=name,
            allocatable=Resources(
                gpu=_quantity(allocatable, accelerator),
                cpu=_quantity(allocatable, "cpu"),
                memory=_quantity(allocatable, "memory"),
            ),
            used=used.get(name, Resources()),
            labels=dict(metadata.get("labels") or {}),
            taints=tuple(
                Taint(str(t.get("key") or ""), str(t.get("value") or ""),
                      str(t.get("effect") or "NoSchedule"))
                for t in spec.get("taints") or []
            ),
            unschedulable=bool(spec.get("unschedulable")) or not _node_ready(status),
        ))
    return sorted(views, key=lambda n: n.name)


def node_requirements(job: TrainingJob) -> NodeRequirements:
    """What the nodes of the job's pods must offer: the PS template's and the workers'
    requirements together, since the placer puts both on one set of nodes."""
    groups = (job.spec.parameter_servers, job.spec.workers)
    return all_of(group.node_requirements for group in groups if group.max > 0)


def job_view(
    job: TrainingJob,
    remaining_time: RemainingTime,
    *,
    current: Allocation | None,
    arrival: float,
    bounds: tuple[int, int, int, int] | None = None,
    progress: float = 0.0,
) -> JobView:
    """The scheduler's view of a job; `bounds` (min_ps, max_ps, min_w, max_w) narrows the
    spec's when the round pins the job (probing, resizing, no metrics)."""
    spec = job.spec
    min_ps, max_ps, min_w, max_w = bounds or (
        spec.parameter_servers.min, spec.parameter_servers.max, spec.workers.min,
        spec.workers.max,
    )
    requirements = node_requirements(job)
    return JobView(
        id=job.meta.key,
        arrival=arrival,
        ps_request=spec.parameter_servers.request,
        worker_request=spec.workers.request,
        min_ps=min_ps,
        max_ps=max_ps,
        min_workers=min_w,
        max_workers=max_w,
        remaining_time=remaining_time,
        current=current,
        mode=spec.mode,
        priority=spec.priority,
        progress=progress,
        node_selector=dict(requirements.selector),
        tolerations=requirements.tolerations,
        node_affinity=requirements.terms,
        requested=Allocation(spec.parameter_servers.min, spec.workers.min),
    )


def _amount(name: str, value: float) -> str:
    if name == "memory":
        return f"{value / 2**30:g}Gi"
    return f"{value:g}"


def oversized_request(job: TrainingJob, nodes: Iterable[NodeView],
                      accelerator: str = GPU_RESOURCE) -> str | None:
    """Why one pod of the job can never run: it asks for more of a resource than the
    largest node that would take it has allocatable at all (a request no amount of waiting
    satisfies). The message names the field and the fix; None when every pod fits some
    node, and also when no node would take the pod (labels and taints change, so that job
    waits) or no node is known yet."""
    view = job_view(job, lambda ps, workers: math.inf, current=None, arrival=0.0)
    accepting = [n for n in nodes if node_accepts(n.labels, n.taints, n.unschedulable,
                                                  view.node_selector, view.tolerations,
                                                  view.node_affinity)]
    if not accepting:
        return None
    for field_name, group, pod in (("parameterServers", job.spec.parameter_servers,
                                    "parameter server"),
                                   ("workers", job.spec.workers, "worker")):
        if group.max <= 0:
            continue
        if any(group.request.fits_in(n.allocatable) for n in accepting):
            continue
        for name, attribute in ((accelerator, "gpu"), ("cpu", "cpu"), ("memory", "memory")):
            asked = getattr(group.request, attribute)
            largest = max(getattr(n.allocatable, attribute) for n in accepting)
            if asked > largest:
                return (f"spec.{field_name}.template: one {pod} requests {name}="
                        f"{_amount(name, asked)} but the largest node offers "
                        f"{_amount(name, largest)}; fix: request at most "
                        f"{_amount(name, largest)} per pod, or add a node that large")
        return (f"spec.{field_name}.template: one {pod} requests {group.request} which no "
                f"single node offers; fix: request less per pod")
    return None

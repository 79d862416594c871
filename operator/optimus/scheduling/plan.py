"""A plan input: a cluster and its jobs written down (YAML or JSON), turned into the views
that steps 4 and 5 work on (pure; `optimus plan` reads the file and prints the result).

Each job carries the coefficients of the two Optimus models (optimus.models): the loss
curve l(k) = 1/(b0*k + b1) + b2 with its convergence rule, and the speed equation of its
mode. Its remaining time at (p, w) is then

    remaining epochs (from the loss model and the rule) * samples per epoch
    / samples per second at (p, w) (from the speed model),

and math.inf where the speed model has no speed (e.g. a PS job with no PS).
The bundled example is `examples/cluster.yaml`; its comments describe the format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optimus.affinity import (
    NodeRequirementError,
    NodeRequirements,
    parse_node_requirements,
)
from optimus.models import (
    THETA_NAMES,
    ConvergenceRule,
    LossParams,
    ModelError,
    SpeedParams,
    converged_epoch,
    parse_mode,
    samples_per_second,
)
from optimus.resources import QuantityError, Resources, parse_quantity
from optimus.scheduling.types import (
    Allocation,
    JobView,
    NodeView,
    Taint,
)


class PlanInputError(ValueError):
    """A plan input that cannot be used; the message names the field and the fix."""


def quantity(value: object, where: str) -> float:
    """A Kubernetes quantity ("16Gi", "500m", 4) as a float >= 0 (optimus.resources parses
    it; this adds the field's name and the plan's bounds to the error)."""
    try:
        number = parse_quantity(value)
    except QuantityError as error:
        raise PlanInputError(f"{where}: {error}") from None
    if not (math.isfinite(number) and number >= 0):
        raise PlanInputError(f"{where}: {value!r} must be a finite amount >= 0")
    return number


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PlanInputError(f"{where}: expected a mapping (key: value), got {value!r}")
    return value


def _number(data: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    if key not in data:
        if default is None:
            raise PlanInputError(f"{where}: missing field {key!r}")
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PlanInputError(f"{where}.{key}: {value!r} is not a finite number")
    return float(value)


def _count(data: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = _number(data, key, where, None if default is None else float(default))
    if value < 0 or value != int(value):
        raise PlanInputError(f"{where}.{key}: {value!r} must be a whole number >= 0")
    return int(value)


def _resources(data: Mapping[str, Any], where: str) -> Resources:
    return Resources(
        quantity(data.get("gpu", 0), f"{where}.gpu"),
        quantity(data.get("cpu", 0), f"{where}.cpu"),
        quantity(data.get("memory", 0), f"{where}.memory"),
    )


@dataclass(frozen=True)
class PlannedJob:
    """One job of a plan input: its view plus what the plan report shows about it."""

    view: JobView
    mode: str
    remaining_epochs: float


@dataclass(frozen=True)
class PlanInput:
    nodes: tuple[NodeView, ...]
    jobs: tuple[PlannedJob, ...] = field(default_factory=tuple)

    @property
    def job_views(self) -> list[JobView]:
        return [job.view for job in self.jobs]


def remaining_time_function(
    speed: SpeedParams, remaining_epochs: float, samples_per_epoch: float
) -> Any:
    """remaining_time(p, w) in seconds from the two models (inf where no speed)."""
    samples = remaining_epochs * samples_per_epoch

    def remaining_time(ps: int, workers: int) -> float:
        if samples <= 0:
            return 0.0
        try:
            rate = samples_per_second(speed, ps, workers)
        except ModelError:
            return math.inf
        return samples / rate if rate > 0 else math.inf

    return remaining_time


def _node(data: object, where: str) -> NodeView:
    d = _mapping(data, where)
    if not isinstance(d.get("name"), str) or not d["name"]:
        raise PlanInputError(f"{where}: missing field 'name' (a string)")
    taints = tuple(
        Taint(
            str(_mapping(t, f"{where}.taints[{i}]").get("key", "")),
            str(t.get("value", "")),
            str(t.get("effect", "NoSchedule")),
        )
        for i, t in enumerate(d.get("taints", []) or [])
    )
    return NodeView(
        name=d["name"],
        allocatable=_resources(d, where),
        used=_resources(_mapping(d.get("used", {}), f"{where}.used"), f"{where}.used"),
        labels={
            str(k): str(v) for k, v in _mapping(d.get("labels", {}), f"{where}.labels").items()
        },
        taints=taints,
        unschedulable=bool(d.get("unschedulable", False)),
    )


def _job(data: object, where: str) -> PlannedJob:
    d = _mapping(data, where)
    if not isinstance(d.get("id"), str) or not d["id"]:
        raise PlanInputError(f"{where}: missing field 'id' (a string)")
    try:
        mode = parse_mode(str(d.get("mode", "ps-sync")))
        rule_data = _mapping(d.get("convergence", {}), f"{where}.convergence")
        rule = ConvergenceRule(
            loss_delta=_number(rule_data, "loss_delta", f"{where}.convergence", 0.05),
            window=_count(rule_data, "window", f"{where}.convergence", 10),
            max_epochs=_count(rule_data, "max_epochs", f"{where}.convergence", 100),
        )
    except ModelError as error:
        raise PlanInputError(f"{where}: {error}") from error
    loss_data = _mapping(d.get("loss"), f"{where}.loss")
    loss = LossParams(*(_number(loss_data, b, f"{where}.loss") for b in ("b0", "b1", "b2")))
    speed_data = _mapping(d.get("speed"), f"{where}.speed")
    theta = tuple(_number(speed_data, t, f"{where}.speed") for t in THETA_NAMES[mode])
    speed = SpeedParams(mode, _number(d, "batch_size", where), theta, "per-worker")
    epochs_done = _number(d, "epochs_done", where, 0.0)
    remaining_epochs = max(0.0, converged_epoch(loss, rule) - epochs_done)
    samples_per_epoch = _number(d, "samples_per_epoch", where)
    ps = _mapping(d.get("ps", {"max": 0}), f"{where}.ps")
    workers = _mapping(d.get("workers"), f"{where}.workers")
    current = d.get("current")
    requested = d.get("requested")
    wants = _node_requirements(d, where)
    view = JobView(
        id=d["id"],
        arrival=_number(d, "arrival", where, 0.0),
        ps_request=_resources(ps, f"{where}.ps"),
        worker_request=_resources(workers, f"{where}.workers"),
        min_ps=_count(ps, "min", f"{where}.ps", 0),
        max_ps=_count(ps, "max", f"{where}.ps", 0),
        min_workers=_count(workers, "min", f"{where}.workers", 1),
        max_workers=_count(workers, "max", f"{where}.workers"),
        remaining_time=remaining_time_function(speed, remaining_epochs, samples_per_epoch),
        current=None if current is None else Allocation(
            _count(_mapping(current, f"{where}.current"), "ps", f"{where}.current", 0),
            _count(current, "workers", f"{where}.current"),
        ),
        mode=mode,
        priority=int(_number(d, "priority", where, 0.0)),
        progress=min(1.0, epochs_done / max(1.0, epochs_done + remaining_epochs)),
        attained_service=_number(d, "attained_service", where, 0.0),
        node_selector=dict(wants.selector),
        tolerations=wants.tolerations,
        node_affinity=wants.terms,
        requested=None if requested is None else Allocation(
            _count(_mapping(requested, f"{where}.requested"), "ps", f"{where}.requested", 0),
            _count(requested, "workers", f"{where}.requested"),
        ),
    )
    return PlannedJob(view, mode, remaining_epochs)


#: where the shared parser's Kubernetes paths live in a plan input
_REQUIREMENT_PATHS = (
    (".affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
     ".node_affinity"),
    (".nodeSelector", ".node_selector"),
)


def _node_requirements(d: Mapping[str, Any], where: str) -> NodeRequirements:
    """A job's node_selector, tolerations and node_affinity (a list of Kubernetes
    nodeSelectorTerms), read by the parser the operator reads pod templates with."""
    pod_spec: dict[str, Any] = {"nodeSelector": d.get("node_selector"),
                                "tolerations": d.get("tolerations")}
    if d.get("node_affinity") is not None:
        pod_spec["affinity"] = {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": d["node_affinity"]}}}
    try:
        return parse_node_requirements(pod_spec, where)
    except NodeRequirementError as error:
        message = str(error)
        for kubernetes, plan in _REQUIREMENT_PATHS:
            message = message.replace(where + kubernetes, where + plan)
        raise PlanInputError(message) from error


def parse_plan_input(data: object) -> PlanInput:
    """Turn the parsed YAML/JSON document into nodes and jobs; PlanInputError names the
    field (e.g. `jobs[2].speed.t0`) and what to write instead."""
    root = _mapping(data, "top level")
    nodes_data = root.get("nodes")
    jobs_data = root.get("jobs")
    if not isinstance(nodes_data, Sequence) or isinstance(nodes_data, str) or not nodes_data:
        raise PlanInputError("top level: 'nodes' must be a non-empty list of nodes")
    if not isinstance(jobs_data, Sequence) or isinstance(jobs_data, str):
        raise PlanInputError("top level: 'jobs' must be a list of jobs")
    nodes = tuple(_node(n, f"nodes[{i}]") for i, n in enumerate(nodes_data))
    jobs = tuple(_job(j, f"jobs[{i}]") for i, j in enumerate(jobs_data))
    return PlanInput(nodes, jobs)

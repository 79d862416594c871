"""Pure invariants the scenarios check, over plain records gathered from the cluster.

- steps: across every resize (or crash), a job's step count never goes backwards by more
  than the steps since its newest checkpoint;
- capacity: the pods bound to a node never request more than the node has;
- field errors: a refusal or an Invalid condition names the field that was wrong.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optimus.resources import QuantityError, parse_quantity

GPU = "nvidia.com/gpu"
RESOURCES = ("cpu", "memory", GPU)


@dataclass(frozen=True)
class StepSample:
    """One look at a job: its generation, its step, and its newest checkpoint's step."""

    t: float
    generation: int
    step: int
    checkpoint_step: int | None


def step_regressions(samples: Sequence[StepSample]) -> list[str]:
    """Every place where the step count fell by more than the steps since the newest
    checkpoint seen so far (a checkpoint can only be newer than what was seen, so this never
    blames a job for steps it did checkpoint). Empty when the invariant holds."""
    problems = []
    newest_checkpoint: int | None = None
    for before, after in itertools.pairwise(samples):
        if before.checkpoint_step is not None:
            newest_checkpoint = max(newest_checkpoint or 0, before.checkpoint_step)
        floor = newest_checkpoint or 0
        if after.step < before.step and after.step < floor:
            problems.append(
                f"at t={after.t:.1f}s (generation {before.generation} -> {after.generation}) "
                f"the step fell from {before.step} to {after.step}, below the newest "
                f"checkpoint at step {floor}")
    return problems


def generations(samples: Iterable[StepSample]) -> list[int]:
    """The distinct generations seen, in order."""
    seen: list[int] = []
    for sample in samples:
        if not seen or seen[-1] != sample.generation:
            seen.append(sample.generation)
    return seen


def _amount(value: object) -> float:
    try:
        return parse_quantity(value)
    except QuantityError:
        return 0.0


def pod_requests(pod: Mapping[str, Any]) -> dict[str, float]:
    """What a pod requests (sum over containers; a limit stands in for a missing request)."""
    total = dict.fromkeys(RESOURCES, 0.0)
    for container in (pod.get("spec") or {}).get("containers") or ():
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name in RESOURCES:
            if name in merged:
                total[name] += _amount(merged[name])
    return total


def capacity_violations(pods: Iterable[Mapping[str, Any]],
                        nodes: Iterable[Mapping[str, Any]]) -> list[str]:
    """Nodes whose bound, unfinished pods request more than the node's allocatable."""
    used: dict[str, dict[str, float]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node or phase in ("Succeeded", "Failed"):
            continue
        totals = used.setdefault(node, dict.fromkeys(RESOURCES, 0.0))
        for name, amount in pod_requests(pod).items():
            totals[name] += amount
    problems = []
    for node in nodes:
        name = node["metadata"]["name"]
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        for resource in RESOURCES:
            have = _amount(allocatable.get(resource, 0))
            want = used.get(name, {}).get(resource, 0.0)
            if want > have + 1e-9:
                problems.append(f"node {name}: pods request {want:g} {resource}, "
                                f"allocatable {have:g}")
    return problems


def names_field(message: str, field_path: str) -> bool:
    """Whether an error message names the field: its full path, or its last component
    (kubectl prints paths like `spec.workers.min`; schema errors may print `.min`)."""
    leaf = field_path.rsplit(".", 1)[-1]
    return field_path in message or leaf in message


@dataclass(frozen=True)
class JctComparison:
    elastic: tuple[float, ...]
    fixed: tuple[float, ...]

    @property
    def elastic_total(self) -> float:
        return sum(self.elastic)

    @property
    def fixed_total(self) -> float:
        return sum(self.fixed)

    @property
    def elastic_average(self) -> float:
        return statistics.fmean(self.elastic)

    @property
    def fixed_average(self) -> float:
        return statistics.fmean(self.fixed)

    def describe(self) -> str:
        return (f"elastic JCTs {[round(j, 1) for j in self.elastic]} (total "
                f"{self.elastic_total:.1f} s, average {self.elastic_average:.1f} s); fixed "
                f"{[round(j, 1) for j in self.fixed]} (total {self.fixed_total:.1f} s, "
                f"average {self.fixed_average:.1f} s)")

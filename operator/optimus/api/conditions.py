"""TrainingJob conditions (pure): the documented types and reasons, the helper that sets one
condition, and the phase summary derived from them.

Conditions follow the standard Kubernetes shape (type, status, reason, message,
lastTransitionTime, observedGeneration). lastTransitionTime changes only when a
condition's status flips, so setting the same condition again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

ConditionStatus = Literal["True", "False", "Unknown"]

# ---- condition types ------------------------------------------------------------------------
VALID: Final = "Valid"  # False (reason InvalidSpec) for a spec that cannot run
SCHEDULED: Final = "Scheduled"  # True while the job has an allocation, False while queued
RESIZING: Final = "Resizing"  # True from the new allocation until its pods run
METRICS: Final = "MetricsAvailable"  # False (reason MetricsUnavailable) while blind
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
SUSPENDED: Final = "Suspended"  # True while spec.suspend holds the job stopped

# ---- reasons (CamelCase, stable: dashboards and users match on them) ------------------------
REASON_SPEC_VALID: Final = "SpecValid"
REASON_INVALID_SPEC: Final = "InvalidSpec"
#: Valid=False: one pod asks for more than any node has at all (re-checked every round,
#: so a larger node joining the cluster makes the job valid again)
REASON_EXCEEDS_NODE_CAPACITY: Final = "ExceedsNodeCapacity"
REASON_QUEUED: Final = "Queued"  # Scheduled=False: the cluster cannot fit its minimum now
REASON_PROBING: Final = "Probing"  # Scheduled=True: measuring its speed at probe configs
REASON_ALLOCATED: Final = "Allocated"  # Scheduled=True: allocated by the fitted models
#: Resizing=True: a new allocation is being rolled out by checkpoint-restart (every pod of
#: the old generation deleted, a new generation created from the newest checkpoint)
REASON_RESIZE: Final = "Resize"
#: Resizing=True: the worker count changes in place: the added pods join the running job,
#: the chief switches every worker at one step, the removed pods exit and are deleted
REASON_RESIZE_IN_PLACE: Final = "ResizeInPlace"
#: Resizing=True: a resize in place failed (refused, timed out, or no answer after an
#: operator restart) and falls back to checkpoint-restart (the condition says why)
REASON_IN_PLACE_FAILED: Final = "InPlaceFailed"
#: an Event once a resize's pause is measured (decision to the first step at the new
#: size): which path it took and how long training paused
REASON_RESIZE_PAUSE: Final = "PauseMeasured"
#: Resizing=True: the new generation's pods have not all run within the resize timeout (the
#: job keeps waiting for them; nothing is deleted)
REASON_RESIZE_STUCK: Final = "ResizeStuck"
REASON_POD_FAILED: Final = "PodFailed"  # Resizing=True: replacing failed pods
REASON_PODS_RUNNING: Final = "PodsRunning"  # Resizing=False
REASON_METRICS_OBSERVED: Final = "MetricsObserved"
REASON_METRICS_UNAVAILABLE: Final = "MetricsUnavailable"
REASON_CONVERGED: Final = "Converged"
REASON_MAX_EPOCHS: Final = "MaxEpochsReached"
REASON_RESTART_LIMIT: Final = "RestartLimitExceeded"
#: Resizing=False on a job that failed (no generation is rolling out any more)
REASON_JOB_FAILED: Final = "JobFailed"
#: Suspended=True: spec.suspend is true; the pods were stopped after a checkpoint and the
#: job keeps its status and checkpoints until spec.suspend is false again
REASON_SUSPENDED: Final = "SuspendedBySpec"
#: Suspended=False: spec.suspend was cleared; the job restarts from its newest checkpoint
REASON_RESUMED: Final = "Resumed"

# ---- phases ---------------------------------------------------------------------------------
PENDING: Final = "Pending"
QUEUED: Final = "Queued"
PROBING: Final = "Probing"
RUNNING: Final = "Running"
RESIZING_PHASE: Final = "Resizing"
SUCCEEDED_PHASE: Final = "Succeeded"
FAILED_PHASE: Final = "Failed"
INVALID: Final = "Invalid"
SUSPENDED_PHASE: Final = "Suspended"
PHASES: Final = (PENDING, QUEUED, PROBING, RUNNING, RESIZING_PHASE, SUCCEEDED_PHASE,
                 FAILED_PHASE, INVALID, SUSPENDED_PHASE)
FINISHED_PHASES: Final = (SUCCEEDED_PHASE, FAILED_PHASE)


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
            "observedGeneration": self.observed_generation,
        }


def parse_conditions(raw: Any) -> tuple[Condition, ...]:
    """Conditions from a raw status; malformed entries are dropped (the operator rewrites them)."""
    if not isinstance(raw, list):
        return ()
    parsed = []
    for item in raw:
        if not isinstance(item, Mapping) or not item.get("type"):
            continue
        status = item.get("status")
        parsed.append(Condition(
            type=str(item["type"]),
            status=status if status in ("True", "False", "Unknown") else "Unknown",
            reason=str(item.get("reason") or ""),
            message=str(item.get("message") or ""),
            last_transition_time=str(item.get("lastTransitionTime") or ""),
            observed_generation=int(item.get("observedGeneration") or 0),
        ))
    return tuple(parsed)


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(
    conditions: tuple[Condition, ...],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int,
) -> tuple[tuple[Condition, ...], bool]:
    """Conditions with `type_` set; `changed` is False when nothing differs. The transition
    time moves only when the status flips; conditions keep their order (new ones go last)."""
    old = find(conditions, type_)
    if old is None:
        new = Condition(type_, status, reason, message, now, generation)
        return (*conditions, new), True
    new = replace(
        old,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=now if old.status != status else old.last_transition_time,
    )
    if new == old:
        return conditions, False
    return tuple(new if c.type == type_ else c for c in conditions), True


def derive_phase(conditions: tuple[Condition, ...]) -> str:
    """The one-word summary of a job, from its conditions alone (first match wins)."""
    if is_true(conditions, FAILED):
        return FAILED_PHASE
    if is_true(conditions, SUCCEEDED):
        return SUCCEEDED_PHASE
    valid = find(conditions, VALID)
    if valid is not None and valid.status == "False":
        return INVALID
    if valid is None:
        return PENDING
    if is_true(conditions, SUSPENDED):
        return SUSPENDED_PHASE
    if is_true(conditions, RESIZING):
        return RESIZING_PHASE
    scheduled = find(conditions, SCHEDULED)
    if scheduled is None:
        return PENDING
    if scheduled.status == "True":
        return PROBING if scheduled.reason == REASON_PROBING else RUNNING
    return QUEUED

"""The TrainingJob status as frozen dataclasses (pure): parsing, serialising, the pure
transition functions `(status, ..., now) -> (new_status, changed)`, and the diff that turns
a new status into the smallest merge patch (None when nothing changed).

One writer per field: the operator's scheduling round (optimus.kube) is the only code that
writes any of them, so a patch built from the last written status is never stale.
`phase` is never set directly: it is derived from `conditions` on every change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from optimus.api.conditions import (
    PENDING,
    Condition,
    ConditionStatus,
    derive_phase,
    parse_conditions,
    set_condition,
)

#: bounds on the history kept in status.model (the object must stay small)
MAX_LOSS_SAMPLES: Final = 200
MAX_SPEED_SAMPLES: Final = 32

# ---- the kinds of resize (status.allocation.resizeKind, the keys of status.resizeCosts) ----
#: the workers changed their count in place (the running pods kept, added ones joined)
RESIZE_IN_PLACE_WORKERS: Final = "InPlaceWorkerChange"
#: the PS changed their count in place (the parameter blocks re-partitioned live)
RESIZE_IN_PLACE_PS: Final = "InPlacePSChange"
#: checkpoint-restart: every pod of the old generation deleted, a new generation created
RESIZE_RESTART: Final = "Restart"
RESIZE_KINDS: Final = (RESIZE_IN_PLACE_WORKERS, RESIZE_IN_PLACE_PS, RESIZE_RESTART)


@dataclass(frozen=True)
class AllocationStatus:
    """What the scheduler gave the job: counts, the node of every pod, the generation."""

    ps: int
    workers: int
    generation: int
    ps_nodes: tuple[str, ...] = ()
    worker_nodes: tuple[str, ...] = ()
    reason: str = ""
    updated_at: str = ""
    #: when every pod of this generation was first seen running ("" until then)
    running_since: str = ""
    #: seconds from this generation's decision to its first training step, as Prometheus
    #: saw it (None until then, and for a job's first generation, whose start is not a
    #: restart): what this restart cost the job, the operator's measured restart cost
    restart_seconds: float | None = None
    #: how this generation was rolled out from the previous one (RESIZE_KINDS; "" for a
    #: job's first generation): in place, or by checkpoint-restart
    resize_kind: str = ""
    #: the training time this resize cost (None until measured, and for a first
    #: generation): a restart's whole time from the decision to its first step (as
    #: Prometheus saw it); in place, the switch at the step boundary as the chief timed it
    #: (the running workers train on while the added pods start)
    pause_seconds: float | None = None
    #: seconds from the decision until the job trained at the new size (a restart: its
    #: pause; in place: the added pods' start, the join and the switch)
    resize_seconds: float | None = None
    #: the generation of each rank's pod (empty: every pod is of `generation`): a resize
    #: in place keeps the running pods, which keep their names and generation
    ps_generations: tuple[int, ...] = ()
    worker_generations: tuple[int, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.ps_nodes) | set(self.worker_nodes)))

    @property
    def in_place(self) -> bool:
        return self.resize_kind in (RESIZE_IN_PLACE_WORKERS, RESIZE_IN_PLACE_PS)

    def pod_generation(self, role: str, rank: int) -> int:
        """The generation of the pod of `role` `rank` (its name carries it)."""
        known = self.ps_generations if role == "ps" else self.worker_generations
        return known[rank] if rank < len(known) else self.generation

    def pod_generations(self, role: str) -> tuple[int, ...]:
        count = self.ps if role == "ps" else self.workers
        return tuple(self.pod_generation(role, r) for r in range(count))

    def to_dict(self) -> dict[str, Any]:
        # restartSeconds only once measured: a merge patch's null would delete it, so the
        # stored status would never equal one written with null (and be re-patched)
        measured = {} if self.restart_seconds is None else {
            "restartSeconds": self.restart_seconds}
        if self.pause_seconds is not None:
            measured["pauseSeconds"] = self.pause_seconds
        if self.resize_seconds is not None:
            measured["resizeSeconds"] = self.resize_seconds
        return {
            "ps": self.ps,
            "workers": self.workers,
            "generation": self.generation,
            "nodes": list(self.nodes),
            "placement": {"ps": list(self.ps_nodes), "workers": list(self.worker_nodes)},
            "reason": self.reason,
            "updatedAt": self.updated_at,
            "runningSince": self.running_since,
            "resizeKind": self.resize_kind,
            "podGenerations": {"ps": list(self.pod_generations("ps")),
                               "workers": list(self.pod_generations("worker"))},
            **measured,
        }


@dataclass(frozen=True)
class PriorStatus:
    """What a job's fit took from the knowledge pooled across earlier jobs of its kind
    (optimus.round.store): status.model.prior."""

    kind: str
    finished_jobs: int = 0
    speed_samples: int = 0
    configurations: int = 0
    speed_model: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "finishedJobs": self.finished_jobs,
                "speedSamples": self.speed_samples, "configurations": self.configurations,
                "speedModel": self.speed_model}


@dataclass(frozen=True)
class ModelStatus:
    """The fitter's knowledge of a job: bounded samples and the parameters fitted to them."""

    loss: tuple[float, float, float] | None = None  # b0, b1, b2 of l(k) = 1/(b0 k + b1) + b2
    speed_mode: str = ""
    speed_theta: tuple[float, ...] | None = None
    loss_samples: tuple[tuple[float, float], ...] = ()  # (epoch, loss)
    speed_samples: tuple[tuple[int, int, float], ...] = ()  # (ps, workers, steps/s)
    samples_per_epoch: float | None = None
    remaining_epochs: float | None = None
    converged_epoch: float | None = None
    confidence: float | None = None
    estimated_completion_time: str = ""
    fit_error_loss: float | None = None
    fit_error_speed: float | None = None
    #: the kind's pooled knowledge the fit used (None: none known)
    prior: PriorStatus | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lossSamples": [[e, v] for e, v in self.loss_samples],
            "speedSamples": [[p, w, s] for p, w, s in self.speed_samples],
        }
        if self.loss is not None:
            out["loss"] = dict(zip(("b0", "b1", "b2"), self.loss, strict=True))
        if self.speed_theta is not None:
            out["speed"] = {"mode": self.speed_mode, "theta": list(self.speed_theta)}
        optional = {
            "samplesPerEpoch": self.samples_per_epoch,
            "remainingEpochs": self.remaining_epochs,
            "convergedEpoch": self.converged_epoch,
            "confidence": self.confidence,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.estimated_completion_time:
            out["estimatedCompletionTime"] = self.estimated_completion_time
        errors = {"loss": self.fit_error_loss, "speed": self.fit_error_speed}
        if any(v is not None for v in errors.values()):
            out["fitError"] = {k: v for k, v in errors.items() if v is not None}
        if self.prior is not None:
            out["prior"] = self.prior.to_dict()
        return out


@dataclass(frozen=True)
class ProgressStatus:
    epoch: float = 0.0
    step: int = 0
    loss: float | None = None
    speed: float | None = None  # steps/s summed over workers
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epoch": self.epoch, "step": self.step,
                               "updatedAt": self.updated_at}
        if self.loss is not None:
            out["loss"] = self.loss
        if self.speed is not None:
            out["speed"] = self.speed
        return out


@dataclass(frozen=True)
class TrainingJobStatus:
    phase: str = PENDING
    conditions: tuple[Condition, ...] = ()
    allocation: AllocationStatus | None = None
    model: ModelStatus = field(default_factory=ModelStatus)
    progress: ProgressStatus | None = None
    restarts: int = 0
    #: the label selector of the job's worker pods, as a string: the scale subresource's
    #: labelSelectorPath (`kubectl scale`, autoscalers); "" until the operator wrote it
    selector: str = ""
    #: the newest measured pause of each kind of resize of this job (RESIZE_KINDS ->
    #: seconds): what the allocator charges the job for its next move of that kind
    resize_costs: tuple[tuple[str, float], ...] = ()

    def resize_cost(self, kind: str) -> float | None:
        return dict(self.resize_costs).get(kind)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "phase": self.phase,
            "conditions": [c.to_dict() for c in self.conditions],
            "model": self.model.to_dict(),
            "restarts": self.restarts,
        }
        if self.selector:
            out["selector"] = self.selector
        if self.resize_costs:
            out["resizeCosts"] = dict(self.resize_costs)
        if self.allocation is not None:
            out["allocation"] = self.allocation.to_dict()
        if self.progress is not None:
            out["progress"] = self.progress.to_dict()
        return out


# ---- parsing (lenient: whatever is malformed is dropped, the operator rewrites it) ---------
def _float(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    return float(raw)


def _strings(raw: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in raw) if isinstance(raw, list) else ()


def _generations(raw: Mapping[str, Any], role: str) -> tuple[int, ...]:
    """status.allocation.podGenerations[role]; () when every pod is of the generation."""
    listed = (raw.get("podGenerations") or {}).get(role)
    values = tuple(int(x) for x in listed) if isinstance(listed, list) else ()
    generation = int(raw.get("generation") or 0)
    return () if all(v == generation for v in values) else values


def _resize_costs(raw: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(raw, Mapping):
        return ()
    return tuple((kind, seconds) for kind in RESIZE_KINDS
                 if (seconds := _seconds(raw.get(kind))) is not None)


def _seconds(raw: Any) -> float | None:
    """A duration written by the operator: a finite number >= 0, else unknown (None)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw) if math.isfinite(raw) and raw >= 0 else None


def _allocation(raw: Any) -> AllocationStatus | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        placement = raw.get("placement") or {}
        return AllocationStatus(
            ps=int(raw["ps"]),
            workers=int(raw["workers"]),
            generation=int(raw.get("generation") or 0),
            ps_nodes=_strings(placement.get("ps")),
            worker_nodes=_strings(placement.get("workers")),
            reason=str(raw.get("reason") or ""),
            updated_at=str(raw.get("updatedAt") or ""),
            running_since=str(raw.get("runningSince") or ""),
            restart_seconds=_seconds(raw.get("restartSeconds")),
            resize_kind=str(raw.get("resizeKind") or ""),
            pause_seconds=_seconds(raw.get("pauseSeconds")),
            resize_seconds=_seconds(raw.get("resizeSeconds")),
            ps_generations=_generations(raw, "ps"),
            worker_generations=_generations(raw, "workers"),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _model(raw: Any) -> ModelStatus:
    if not isinstance(raw, Mapping):
        return ModelStatus()
    loss_raw = raw.get("loss")
    loss: tuple[float, float, float] | None = None
    if isinstance(loss_raw, Mapping):
        b0, b1, b2 = (_float(loss_raw.get(k)) for k in ("b0", "b1", "b2"))
        if b0 is not None and b1 is not None and b2 is not None:
            loss = (b0, b1, b2)
    speed_raw = raw.get("speed")
    theta = None
    mode = ""
    if isinstance(speed_raw, Mapping) and isinstance(speed_raw.get("theta"), list):
        floats = [_float(t) for t in speed_raw["theta"]]
        if floats and all(t is not None for t in floats):
            theta = tuple(t for t in floats if t is not None)
            mode = str(speed_raw.get("mode") or "")
    loss_samples = tuple(
        (float(item[0]), float(item[1]))
        for item in raw.get("lossSamples") or []
        if isinstance(item, list) and len(item) == 2
        and _float(item[0]) is not None and _float(item[1]) is not None
    )
    speed_samples = tuple(
        (int(item[0]), int(item[1]), float(item[2]))
        for item in raw.get("speedSamples") or []
        if isinstance(item, list) and len(item) == 3 and all(_float(x) is not None for x in item)
    )
    fit_error_raw = raw.get("fitError")
    fit_error: Mapping[str, Any] = fit_error_raw if isinstance(fit_error_raw, Mapping) else {}
    return ModelStatus(
        loss=loss,
        speed_mode=mode,
        speed_theta=theta,
        loss_samples=loss_samples[-MAX_LOSS_SAMPLES:],
        speed_samples=speed_samples[-MAX_SPEED_SAMPLES:],
        samples_per_epoch=_float(raw.get("samplesPerEpoch")),
        remaining_epochs=_float(raw.get("remainingEpochs")),
        converged_epoch=_float(raw.get("convergedEpoch")),
        confidence=_float(raw.get("confidence")),
        estimated_completion_time=str(raw.get("estimatedCompletionTime") or ""),
        fit_error_loss=_float(fit_error.get("loss")),
        fit_error_speed=_float(fit_error.get("speed")),
        prior=_prior(raw.get("prior")),
    )


def _prior(raw: Any) -> PriorStatus | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("kind"), str):
        return None
    return PriorStatus(kind=raw["kind"],
                       finished_jobs=int(_float(raw.get("finishedJobs")) or 0),
                       speed_samples=int(_float(raw.get("speedSamples")) or 0),
                       configurations=int(_float(raw.get("configurations")) or 0),
                       speed_model=raw.get("speedModel") is True)


def _progress(raw: Any) -> ProgressStatus | None:
    if not isinstance(raw, Mapping):
        return None
    return ProgressStatus(
        epoch=_float(raw.get("epoch")) or 0.0,
        step=int(_float(raw.get("step")) or 0),
        loss=_float(raw.get("loss")),
        speed=_float(raw.get("speed")),
        updated_at=str(raw.get("updatedAt") or ""),
    )


def parse_status(raw: Any) -> TrainingJobStatus:
    if not isinstance(raw, Mapping):
        return TrainingJobStatus()
    conditions = parse_conditions(raw.get("conditions"))
    return TrainingJobStatus(
        phase=derive_phase(conditions),
        conditions=conditions,
        allocation=_allocation(raw.get("allocation")),
        model=_model(raw.get("model")),
        progress=_progress(raw.get("progress")),
        restarts=int(_float(raw.get("restarts")) or 0),
        selector=str(raw.get("selector") or ""),
        resize_costs=_resize_costs(raw.get("resizeCosts")),
    )


# ---- pure transitions ------------------------------------------------------------------
def with_condition(
    status: TrainingJobStatus,
    type_: str,
    value: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int,
) -> tuple[TrainingJobStatus, bool]:
    """The status with one condition set and the phase re-derived."""
    conditions, changed = set_condition(status.conditions, type_, value, reason, message,
                                        now=now, generation=generation)
    if not changed:
        return status, False
    return replace(status, conditions=conditions, phase=derive_phase(conditions)), True


def with_allocation(
    status: TrainingJobStatus, allocation: AllocationStatus | None
) -> tuple[TrainingJobStatus, bool]:
    if status.allocation == allocation:
        return status, False
    return replace(status, allocation=allocation), True


def with_model(status: TrainingJobStatus, model: ModelStatus) -> tuple[TrainingJobStatus, bool]:
    if status.model == model:
        return status, False
    return replace(status, model=model), True


def with_progress(
    status: TrainingJobStatus, progress: ProgressStatus
) -> tuple[TrainingJobStatus, bool]:
    if status.progress == progress:
        return status, False
    return replace(status, progress=progress), True


def merge_loss_samples(
    old: tuple[tuple[float, float], ...], new: Iterable[tuple[float, float]]
) -> tuple[tuple[float, float], ...]:
    """Loss points merged by epoch (a newer value for the same epoch wins), sorted, bounded
    to the newest MAX_LOSS_SAMPLES."""
    by_epoch = dict(old)
    by_epoch.update(new)
    return tuple(sorted(by_epoch.items()))[-MAX_LOSS_SAMPLES:]


def merge_speed_sample(
    old: tuple[tuple[int, int, float], ...], ps: int, workers: int, speed: float
) -> tuple[tuple[int, int, float], ...]:
    """One speed point per configuration: a new measurement replaces the old one of the same
    (ps, workers), which moves to the end; bounded to the newest MAX_SPEED_SAMPLES."""
    kept = tuple(s for s in old if (s[0], s[1]) != (ps, workers))
    return (*kept, (ps, workers, speed))[-MAX_SPEED_SAMPLES:]


def status_patch(old: Mapping[str, Any] | None, new: TrainingJobStatus) -> dict[str, Any] | None:
    """The merge patch of `status` that turns `old` (raw) into `new`: only the top-level
    fields that differ (removed ones set to None), or None when nothing changed."""
    old = old or {}
    target = new.to_dict()
    patch = {key: value for key, value in target.items() if old.get(key) != value}
    for key in old:
        if key not in target and key in _OWNED_FIELDS:
            patch[key] = None
    return patch or None


#: the status fields this module owns (others, e.g. kopf's bookkeeping, are left alone)
_OWNED_FIELDS: Final = frozenset(
    {"phase", "conditions", "allocation", "model", "progress", "restarts", "selector",
     "resizeCosts"}
)


def iso(timestamp: float) -> str:
    """RFC 3339 UTC with whole seconds, as Kubernetes writes times."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time, or None for "" or garbage."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None

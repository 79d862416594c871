"""The TrainingJob spec as frozen dataclasses, parsed once from the raw object (pure).

The kopf handlers (optimus.kube) hand every raw TrainingJob to `parse_training_job`; what
comes back is typed and checked, or a `SpecError` that lists every bad field with what is
wrong and how to fix it. The CRD's schema (manifests/crd/) rejects most mistakes at the API
server already; this parser checks them again (a cluster may run without the schema) and
adds the checks a schema cannot express (pod names, requests, batch vs. workers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from optimus_worker.contract import DEFAULT_CHECKPOINT_INTERVAL_STEPS, MODES, Mode

from optimus.affinity import (
    NodeRequirementError,
    NodeRequirements,
    parse_node_requirements,
)
from optimus.api.status import TrainingJobStatus, parse_status
from optimus.models.loss import ConvergenceRule
from optimus.resources import QuantityError, Resources, parse_quantity

GROUP: Final = "optimus.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TrainingJob"
PLURAL: Final = "trainingjobs"

#: the accelerator's extended resource name by default; the operator's
#: OPTIMUS_ACCELERATOR_RESOURCE counts another (amd.com/gpu, ...) the same way
GPU_RESOURCE: Final = "nvidia.com/gpu"
#: pod names add "-g<generation>-worker-<rank>" and must stay within 63 characters
MAX_NAME_LENGTH: Final = 40
MAX_GLOBAL_BATCH: Final = 1_048_576
MAX_PS: Final = 1000
MAX_WORKERS: Final = 10000
#: a Kueue queue (or any admission controller's) named on the TrainingJob; passed to its pods
QUEUE_NAME_LABEL: Final = "kueue.x-k8s.io/queue-name"
MAX_COMMAND_ARGS: Final = 256
MAX_MODEL_KIND: Final = 253
# the convergence defaults are the loss model's (optimus.models.ConvergenceRule)
DEFAULT_LOSS_DELTA: Final = ConvergenceRule.loss_delta
DEFAULT_WINDOW: Final = ConvergenceRule.window
DEFAULT_MAX_EPOCHS: Final = ConvergenceRule.max_epochs
DEFAULT_MOUNT_PATH: Final = "/checkpoints"
DEFAULT_RESTART_LIMIT: Final = 3
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class FieldError:
    """One bad field: where it is, what is wrong, and how to fix it."""

    path: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}; fix: {self.fix}"


class SpecError(ValueError):
    """A TrainingJob that cannot run; `errors` names every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in errors))


@dataclass(frozen=True)
class Convergence:
    """Converged when the fitted loss drops less than loss_delta over `window` epochs, or
    after max_epochs, whichever comes first."""

    def rule(self) -> ConvergenceRule:
        return ConvergenceRule(self.loss_delta, self.window, self.max_epochs)

    loss_delta: float = DEFAULT_LOSS_DELTA
    window: int = DEFAULT_WINDOW
    max_epochs: int = DEFAULT_MAX_EPOCHS


@dataclass(frozen=True)
class TaskGroup:
    """The parameter servers or the workers: count bounds, pod template, per-pod request and
    what the template asks of a node (read once here, honoured by the placer)."""

    min: int
    max: int
    template: Mapping[str, Any] = field(default_factory=dict)
    request: Resources = field(default_factory=Resources)
    node_requirements: NodeRequirements = field(default_factory=NodeRequirements)


@dataclass(frozen=True)
class Checkpoint:
    volume: Mapping[str, Any]
    mount_path: str = DEFAULT_MOUNT_PATH
    interval_steps: int = DEFAULT_CHECKPOINT_INTERVAL_STEPS


@dataclass(frozen=True)
class TrainingJobSpec:
    mode: Mode
    global_batch_size: int
    parameter_servers: TaskGroup
    workers: TaskGroup
    checkpoint: Checkpoint
    convergence: Convergence = field(default_factory=Convergence)
    #: the library's loop trains this TrainingTask ("module:attr" or a shipped example);
    #: empty when `command` runs the user's own script instead
    task: str = ""
    #: the user's own training command (allreduce only); replaces the first container's
    command: tuple[str, ...] = ()
    #: the training container's image, replacing the templates' first container's ("": keep)
    image: str = ""
    #: True: checkpoint and stop the job's pods, keep the job until it is set False again
    suspend: bool = False
    priority: int = 0
    restart_limit: int = DEFAULT_RESTART_LIMIT
    #: what the job trains, as far as knowledge pooled across jobs goes ("": `kind` derives it)
    model_kind: str = ""

    @property
    def kind(self) -> str:
        """What the job trains, for knowledge pooled across jobs (optimus.round.store: jobs
        of one kind, mode and global batch share their speed and convergence): spec.modelKind
        when set, else the task (spec.task), else the training image and command of a job
        that runs its own script (two jobs of the same image and command train the same)."""
        if self.model_kind:
            return self.model_kind
        if self.task:
            return self.task
        containers = self.workers.template.get("spec", {}).get("containers") or [{}]
        image = self.image or str(containers[0].get("image") or "")
        return " ".join((image, *self.command))

    @property
    def runs_command(self) -> bool:
        """The job runs the user's own script (which checkpoints on SIGTERM), not the
        library's loop (which also checkpoints on request through its control endpoint)."""
        return bool(self.command)


@dataclass(frozen=True)
class JobMeta:
    """The identity of a TrainingJob (readable even when its spec is not)."""

    namespace: str
    name: str
    uid: str
    generation: int
    created: str  # metadata.creationTimestamp, RFC 3339
    #: the QUEUE_NAME_LABEL's value ("" without one); the job's pods carry it too
    queue_name: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class TrainingJob:
    meta: JobMeta
    spec: TrainingJobSpec
    status: TrainingJobStatus


# ---- parsing -------------------------------------------------------------------------------
class _Reader:
    """Collects FieldErrors while reading typed values out of raw dicts."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, path: str, problem: str, fix: str) -> None:
        self.errors.append(FieldError(path, problem, fix))

    def mapping(self, raw: Any, path: str, *, required: bool) -> Mapping[str, Any] | None:
        if raw is None:
            if required:
                self.fail(path, "is missing", f"add {path} to the TrainingJob")
            return None
        if not isinstance(raw, Mapping):
            self.fail(path, f"is a {type(raw).__name__}, not an object",
                      f"write {path} as a YAML mapping")
            return None
        return raw

    def integer(self, raw: Any, path: str, low: int, high: int, default: int | None) -> int:
        if raw is None:
            if default is None:
                self.fail(path, "is missing", f"set {path} to an integer in [{low}, {high}]")
                return low
            return default
        if isinstance(raw, bool) or not (
            isinstance(raw, int) or (isinstance(raw, float) and raw.is_integer())
        ):
            self.fail(path, f"{raw!r} is not an integer",
                      f"set {path} to an integer in [{low}, {high}]")
            return low
        value = int(raw)
        if not low <= value <= high:
            self.fail(path, f"{value} is out of range",
                      f"set {path} to an integer in [{low}, {high}]")
        return value

    def number(self, raw: Any, path: str, default: float) -> float:
        if raw is None:
            return default
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            self.fail(path, f"{raw!r} is not a number", f"set {path} to a number > 0")
            return default
        if not raw > 0 or raw != raw or raw == float("inf"):
            self.fail(path, f"{raw} is not a positive finite number",
                      f"set {path} to a number > 0, e.g. {default}")
            return default
        return float(raw)

    def string(self, raw: Any, path: str, default: str) -> str:
        if raw is None:
            return default
        if not isinstance(raw, str) or not raw:
            self.fail(path, f"{raw!r} is not a non-empty string", f"set {path} to a string")
            return default
        return raw

    def boolean(self, raw: Any, path: str) -> bool:
        if raw is None:
            return False
        if not isinstance(raw, bool):
            self.fail(path, f"{raw!r} is not a boolean", f"set {path} to true or false")
            return False
        return raw


def parse_meta(raw: Mapping[str, Any]) -> JobMeta:
    metadata = raw.get("metadata") or {}
    labels = metadata.get("labels")
    return JobMeta(
        namespace=str(metadata.get("namespace") or "default"),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        generation=int(metadata.get("generation") or 0),
        created=str(metadata.get("creationTimestamp") or ""),
        queue_name=str(labels.get(QUEUE_NAME_LABEL) or "") if isinstance(labels, Mapping)
        else "",
    )


def pod_request(template: Mapping[str, Any], path: str, reader: _Reader,
                image_given: bool = False, accelerator: str = GPU_RESOURCE) -> Resources:
    """What one pod from `template` requests: the sum over its containers (a limit stands
    in for a missing request, as Kubernetes does). `image_given`: spec.image names the
    first container's image, which the template may then leave out."""
    total = Resources()
    spec = template.get("spec") if isinstance(template, Mapping) else None
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list) or not containers:
        reader.fail(f"{path}.spec.containers", "has no containers",
                    "give the template at least one container with a name, image and command")
        return total
    for index, container in enumerate(containers):
        cpath = f"{path}.spec.containers[{index}]"
        if not isinstance(container, Mapping):
            reader.fail(cpath, "is not an object", "write each container as a mapping")
            continue
        for key in ("name", "image"):
            if key == "image" and image_given and index == 0:
                continue
            if not isinstance(container.get(key), str) or not container.get(key):
                reader.fail(f"{cpath}.{key}", "is missing", f"give the container a {key}")
        resources = container.get("resources") or {}
        if not isinstance(resources, Mapping):
            reader.fail(f"{cpath}.resources", "is not an object",
                        "write resources as {requests: {...}, limits: {...}}")
            continue
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        amounts: dict[str, float] = {}
        for kind, table in (("limits", limits), ("requests", requests)):
            if not isinstance(table, Mapping):
                reader.fail(f"{cpath}.resources.{kind}", "is not an object",
                            "write it as a mapping of resource name to quantity")
                continue
            for name, value in table.items():
                try:
                    amounts[name] = parse_quantity(value)
                except QuantityError as error:
                    reader.fail(f"{cpath}.resources.{kind}.{name}", str(error),
                                "write a quantity such as 1, 500m or 2Gi")
        gpu = amounts.get(accelerator, 0.0)
        if gpu != int(gpu) or gpu < 0:
            reader.fail(f"{cpath}.resources.{accelerator}", f"{gpu} is not a whole count",
                        "request whole GPUs (0, 1, 2, ...)")
        total = total + Resources(gpu, amounts.get("cpu", 0.0), amounts.get("memory", 0.0))
    return total


def template_request(template: Mapping[str, Any], accelerator: str = GPU_RESOURCE
                     ) -> Resources:
    """What one pod from a (pod or template) spec requests, leniently: unreadable amounts
    count as 0 (the snapshot reads pods the operator did not write)."""
    return pod_request(template, "", _Reader(), accelerator=accelerator)


def _task_group(raw: Any, path: str, reader: _Reader, *, min_low: int, max_high: int,
                default_min: int, image_given: bool = False,
                accelerator: str = GPU_RESOURCE) -> TaskGroup:
    group = reader.mapping(raw, path, required=True)
    if group is None:
        return TaskGroup(default_min, default_min)
    low = reader.integer(group.get("min"), f"{path}.min", min_low, max_high, default_min)
    high = reader.integer(group.get("max"), f"{path}.max", min_low, max_high, low)
    if low > high:
        reader.fail(f"{path}.min", f"min {low} is greater than max {high}",
                    f"set {path}.min <= {path}.max")
    template = reader.mapping(group.get("template"), f"{path}.template", required=True)
    if template is None:
        return TaskGroup(low, high)
    return TaskGroup(low, high, template,
                     pod_request(template, f"{path}.template", reader, image_given,
                                 accelerator),
                     _node_requirements(template, f"{path}.template.spec", reader))


def _node_requirements(template: Mapping[str, Any], path: str,
                       reader: _Reader) -> NodeRequirements:
    try:
        requirements = parse_node_requirements(template.get("spec"), path)
    except NodeRequirementError as error:
        reader.fail(error.path, error.problem, error.fix)
        return NodeRequirements()
    if requirements.uses_node_names:
        reader.fail(f"{path}.affinity.nodeAffinity", "selects nodes by name (matchFields)",
                    "select nodes by label (nodeSelector or matchExpressions): the operator "
                    "picks the node of each pod among the nodes they allow")
    return requirements


def _what_to_run(spec: Mapping[str, Any], mode: str, reader: _Reader
                 ) -> tuple[str, tuple[str, ...]]:
    """spec.task or spec.command, exactly one (there is no default task: a job that names
    neither would silently train a toy model)."""
    raw_task, raw_command = spec.get("task"), spec.get("command")
    task = reader.string(raw_task, "spec.task", "")
    command: tuple[str, ...] = ()
    if raw_command is not None:
        if (not isinstance(raw_command, list) or not raw_command
                or len(raw_command) > MAX_COMMAND_ARGS
                or not all(isinstance(a, str) for a in raw_command) or not raw_command[0]):
            reader.fail("spec.command", f"{raw_command!r} is not a non-empty list of strings",
                        'write it as a list, e.g. ["python", "/app/train.py", "--lr", "0.1"]')
        else:
            command = tuple(raw_command)
    if raw_task is None and raw_command is None:
        reader.fail("spec", "names neither a task nor a command",
                    "set spec.task to a TrainingTask ('package.module:attr' or a shipped "
                    "example: mlp, cnn, digits), or spec.command to your own training "
                    "script (mode allreduce); see docs/train-your-own-model.md")
    elif raw_task is not None and raw_command is not None:
        reader.fail("spec.command", "is set together with spec.task",
                    "keep one: spec.task runs the library's loop, spec.command your own "
                    "script")
    if raw_command is not None and mode != "allreduce":
        reader.fail("spec.command", f"runs a script of its own, which mode {mode} cannot",
                    "set spec.mode to allreduce (the script uses torch.distributed), or "
                    "use spec.task for the parameter-server modes")
    return task, command


def parse_spec(raw_spec: Any, name: str = "", accelerator: str = GPU_RESOURCE
               ) -> TrainingJobSpec:
    """The typed spec, or SpecError listing every bad field (paths start with `spec.`).
    `accelerator` is the resource name counted as GPUs (the operator's setting)."""
    reader = _Reader()
    if name and (len(name) > MAX_NAME_LENGTH or not _DNS_LABEL.match(name)):
        reader.fail("metadata.name", f"{name!r} is not a DNS label of at most "
                    f"{MAX_NAME_LENGTH} characters",
                    "use lower-case letters, digits and '-', starting with a letter, "
                    f"at most {MAX_NAME_LENGTH} characters (pod names append a suffix)")
    spec = reader.mapping(raw_spec, "spec", required=True) or {}
    mode = spec.get("mode", "ps-sync")
    if mode not in MODES:
        reader.fail("spec.mode", f"{mode!r} is not a known mode",
                    f"set spec.mode to one of {', '.join(MODES)}")
        mode = "ps-sync"
    batch = reader.integer(spec.get("globalBatchSize"), "spec.globalBatchSize", 1,
                           MAX_GLOBAL_BATCH, None)
    image_given = isinstance(spec.get("image"), str) and bool(spec.get("image"))
    workers = _task_group(spec.get("workers"), "spec.workers", reader, min_low=1,
                          max_high=MAX_WORKERS, default_min=1, image_given=image_given,
                          accelerator=accelerator)
    if mode == "allreduce":
        raw_ps = spec.get("parameterServers")
        ps = TaskGroup(0, 0)
        if isinstance(raw_ps, Mapping) and (raw_ps.get("max") or raw_ps.get("min")):
            reader.fail("spec.parameterServers", "allreduce jobs run no parameter servers",
                        "remove spec.parameterServers (or set its min and max to 0), or "
                        "choose mode ps-sync or ps-async")
    else:
        ps = _task_group(spec.get("parameterServers"), "spec.parameterServers", reader,
                         min_low=1, max_high=MAX_PS, default_min=1, image_given=image_given,
                         accelerator=accelerator)
    if batch < workers.max:
        reader.fail("spec.globalBatchSize",
                    f"{batch} samples per step cannot feed up to {workers.max} workers",
                    "raise spec.globalBatchSize to at least spec.workers.max, or lower "
                    "spec.workers.max")
    conv_raw = reader.mapping(spec.get("convergence"), "spec.convergence", required=False) or {}
    convergence = Convergence(
        loss_delta=reader.number(conv_raw.get("lossDelta"), "spec.convergence.lossDelta",
                                 DEFAULT_LOSS_DELTA),
        window=reader.integer(conv_raw.get("window"), "spec.convergence.window", 1, 1000,
                              DEFAULT_WINDOW),
        max_epochs=reader.integer(conv_raw.get("maxEpochs"), "spec.convergence.maxEpochs", 1,
                                  100_000, DEFAULT_MAX_EPOCHS),
    )
    ck_raw = reader.mapping(spec.get("checkpoint"), "spec.checkpoint", required=True) or {}
    volume = reader.mapping(ck_raw.get("volume"), "spec.checkpoint.volume", required=True)
    if volume is not None and len(volume) != 1:
        reader.fail("spec.checkpoint.volume", f"names {len(volume)} volume sources",
                    "give exactly one source, e.g. persistentVolumeClaim: {claimName: ...}")
    mount = reader.string(ck_raw.get("mountPath"), "spec.checkpoint.mountPath",
                          DEFAULT_MOUNT_PATH)
    if not mount.startswith("/"):
        reader.fail("spec.checkpoint.mountPath", f"{mount!r} is not an absolute path",
                    "use an absolute path such as /checkpoints")
    checkpoint = Checkpoint(
        volume=volume or {},
        mount_path=mount,
        interval_steps=reader.integer(ck_raw.get("intervalSteps"),
                                      "spec.checkpoint.intervalSteps", 1, 1_000_000,
                                      DEFAULT_CHECKPOINT_INTERVAL_STEPS),
    )
    task, command = _what_to_run(spec, mode, reader)
    image = reader.string(spec.get("image"), "spec.image", "")
    suspend = reader.boolean(spec.get("suspend"), "spec.suspend")
    priority = reader.integer(spec.get("priority"), "spec.priority", -1000, 1000, 0)
    restart_limit = reader.integer(spec.get("restartLimit"), "spec.restartLimit", 0, 100,
                                   DEFAULT_RESTART_LIMIT)
    model_kind = reader.string(spec.get("modelKind"), "spec.modelKind", "")
    if len(model_kind) > MAX_MODEL_KIND:
        reader.fail("spec.modelKind", f"is {len(model_kind)} characters long",
                    f"name the kind in at most {MAX_MODEL_KIND} characters")
    if reader.errors:
        raise SpecError(reader.errors)
    return TrainingJobSpec(
        mode=mode,
        global_batch_size=batch,
        parameter_servers=ps,
        workers=workers,
        checkpoint=checkpoint,
        convergence=convergence,
        task=task,
        command=command,
        image=image,
        suspend=suspend,
        priority=priority,
        restart_limit=restart_limit,
        model_kind=model_kind,
    )


def parse_training_job(raw: Mapping[str, Any], accelerator: str = GPU_RESOURCE
                       ) -> TrainingJob:
    """A raw TrainingJob (as the API server returns it) as typed objects; SpecError names
    every bad field and its fix. The status is parsed leniently: the operator wrote it.
    `accelerator`: the resource name counted as GPUs (OPTIMUS_ACCELERATOR_RESOURCE)."""
    meta = parse_meta(raw)
    spec = parse_spec(raw.get("spec"), meta.name, accelerator)
    return TrainingJob(meta, spec, parse_status(raw.get("status")))

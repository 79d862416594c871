"""The contract between the operator and the pods it starts (torch-free).

The operator (optimus.kube) builds each pod's environment from the names below, and the
workers (optimus_worker) read the same names; Prometheus queries in optimus.metrics use the
metric and label names defined here. Nothing in this module is written twice anywhere else:
change a name here and both sides follow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal

# ---- roles and modes ----------------------------------------------------------------------
Role = Literal["ps", "worker"]
Mode = Literal["ps-sync", "ps-async", "allreduce"]
ROLES: Final[tuple[Role, ...]] = ("ps", "worker")
MODES: Final[tuple[Mode, ...]] = ("ps-sync", "ps-async", "allreduce")

# ---- environment variables the operator sets on every pod --------------------------------
ENV_JOB: Final = "OPTIMUS_JOB"  # TrainingJob name
ENV_NAMESPACE: Final = "OPTIMUS_NAMESPACE"  # TrainingJob namespace
ENV_ROLE: Final = "OPTIMUS_ROLE"  # "ps" | "worker"
ENV_RANK: Final = "OPTIMUS_RANK"  # rank within the role, 0-based; worker 0 is the chief
ENV_NUM_PS: Final = "OPTIMUS_NUM_PS"  # p (0 in allreduce mode)
ENV_NUM_WORKERS: Final = "OPTIMUS_NUM_WORKERS"  # w
ENV_MODE: Final = "OPTIMUS_MODE"  # one of MODES
ENV_RENDEZVOUS: Final = "OPTIMUS_RENDEZVOUS"  # host:port of the rendezvous (worker 0's pod)
ENV_CHECKPOINT_DIR: Final = "OPTIMUS_CHECKPOINT_DIR"  # shared directory for checkpoints
ENV_CHECKPOINT_INTERVAL: Final = "OPTIMUS_CHECKPOINT_INTERVAL_STEPS"  # steps between checkpoints
ENV_GENERATION: Final = "OPTIMUS_GENERATION"  # allocation generation, bumped on every resize
ENV_METRICS_PORT: Final = "OPTIMUS_METRICS_PORT"  # prometheus-client HTTP port
ENV_CONTROL_PORT: Final = "OPTIMUS_CONTROL_PORT"  # chief worker's control endpoint port
# "module:attr" of the TrainingTask, or a shipped example's name; empty when the job runs
# its own command (spec.command) instead of the library's loop
ENV_TASK: Final = "OPTIMUS_TASK"
ENV_GLOBAL_BATCH: Final = "OPTIMUS_GLOBAL_BATCH_SIZE"  # samples per synchronous step, all workers
ENV_MAX_EPOCHS: Final = "OPTIMUS_MAX_EPOCHS"  # the job's convergence.maxEpochs
ENV_POD_IP: Final = "OPTIMUS_POD_IP"  # from the downward API (status.podIP)
ENV_HOSTS: Final = "OPTIMUS_HOSTS"  # optional: comma-separated role-rank=host, overrides DNS
#: where a failing process writes why (the container's terminationMessagePath); the kubelet
#: puts it in the pod's status, the operator in the Failed condition and the event. Unset
#: (a process run outside a pod): nothing is written
ENV_TERMINATION_LOG: Final = "OPTIMUS_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"

# ---- the standard torch.distributed environment (workers only) ---------------------------
# What `torchrun` and `torch.distributed.init_process_group(init_method="env://")` read, so
# that a user's unmodified DDP script runs in a worker pod. One process per pod unless the
# pod holds several accelerators (LOCAL_WORLD_SIZE g > 1): then the pod's first process has
# RANK = pod rank * g and the pod starts g processes (`python -m optimus_worker.launch`, or
# torchrun with --nproc-per-node=$(LOCAL_WORLD_SIZE) --node-rank=$(GROUP_RANK)).
ENV_MASTER_ADDR: Final = "MASTER_ADDR"  # worker 0's pod (the rendezvous host)
ENV_MASTER_PORT: Final = "MASTER_PORT"  # the rendezvous port
ENV_WORLD_SIZE: Final = "WORLD_SIZE"  # processes over all worker pods: w * g
ENV_TORCH_RANK: Final = "RANK"  # global rank of this process
ENV_LOCAL_RANK: Final = "LOCAL_RANK"  # rank within the pod (0..g-1)
ENV_LOCAL_WORLD_SIZE: Final = "LOCAL_WORLD_SIZE"  # processes in this pod: g
ENV_GROUP_RANK: Final = "GROUP_RANK"  # the pod's rank among the worker pods (torchrun's node)
# optional, set by the node rather than the operator (a device plugin's injected variable):
# seconds of accelerator time a worker's training forward pass takes per sample, emulated by
# a sleep (optimus_worker.emulation) on clusters whose GPUs are simulated; unset or 0: none
ENV_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE: Final = (
    "OPTIMUS_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE")

# optional: "1" on a worker added to a running job, which joins it in place
# (optimus_worker.membership) instead of starting a new generation from a checkpoint
ENV_JOIN_IN_PLACE: Final = "OPTIMUS_JOIN_IN_PLACE"
#: the modes whose worker change (same PS count, another worker count) can be done in the
#: running job: POST /membership to the chief, the added workers started with
#: ENV_JOIN_IN_PLACE=1 (optimus_worker.membership); the operator resizes a job of these
#: modes that runs the library (not spec.command) in place, every other change is a restart.
#: The one place that says which modes can.
IN_PLACE_WORKER_CHANGE_MODES: Final[frozenset[Mode]] = frozenset(
    {"allreduce", "ps-sync", "ps-async"})
#: the modes whose PS change (same worker count, another PS count) can be done in the
#: running job: POST /membership with "ps", the added PS started with ENV_JOIN_IN_PLACE=1
IN_PLACE_PS_CHANGE_MODES: Final[frozenset[Mode]] = frozenset({"ps-sync", "ps-async"})

DEFAULT_METRICS_PORT: Final = 9400
DEFAULT_CONTROL_PORT: Final = 9401
DEFAULT_RENDEZVOUS_PORT: Final = 29500
DEFAULT_CHECKPOINT_INTERVAL_STEPS: Final = 50

# ---- the chief's control endpoint (HTTP) -------------------------------------------------
CONTROL_CHECKPOINT_PATH: Final = "/checkpoint"  # POST -> {"step": int, "epoch": float, "path": str}
CONTROL_STATUS_PATH: Final = "/status"  # GET -> {"epoch": float, "step": int, "loss": float}
# POST {"workers": int, "generation": int[, "timeout_s": number]} -> {"generation",
# "workers", "step", "switch_s"} once the job trains with the new membership
# (optimus_worker.membership); 400: a request the job cannot follow, 503: the switch failed
# (the added workers did not join within timeout_s, default 120) - restart instead
CONTROL_MEMBERSHIP_PATH: Final = "/membership"

# ---- metrics the workers export (prometheus-client) --------------------------------------
METRIC_LOSS: Final = "optimus_worker_training_loss"  # gauge: mean loss of the last finished epoch
METRIC_EPOCH: Final = "optimus_worker_epoch_progress"  # gauge: fractional epochs done
METRIC_SAMPLES: Final = "optimus_worker_samples"  # counter (exported as *_total)
METRIC_STEPS: Final = "optimus_worker_steps"  # counter (exported as *_total)
#: histogram, label phase: a worker's "compute" (forward + backward of its share) and
#: "communication" (push and pull, or the all-reduce, waits included) seconds of every step;
#: a PS's "update" (its optimizer step) seconds of every update it applies
METRIC_STEP_SECONDS: Final = "optimus_worker_step_seconds"  # histogram, label phase
#: bytes a worker sent and received in its steps' exchange
#: (PS modes: its gradient out and the values back; all-reduce: the ring's 2(w-1)/w of the
#: gradient), the operator's white-box speed prior reads them per step
METRIC_STEP_BYTES: Final = "optimus_worker_step_bytes"  # counter (exported as *_total)
METRIC_STALENESS: Final = "optimus_worker_staleness_steps"  # gauge: async gradient staleness
METRIC_CHECKPOINT_STEP: Final = "optimus_worker_checkpoint_step"  # gauge: newest checkpoint step
#: gauge, label metric: the chief's TrainingTask.evaluate results after the last epoch
METRIC_EVALUATION: Final = "optimus_worker_evaluation"

LABEL_JOB: Final = "job"
LABEL_NAMESPACE: Final = "namespace"
LABEL_ROLE: Final = "role"
LABEL_RANK: Final = "rank"
LABEL_GENERATION: Final = "generation"
LABEL_PHASE: Final = "phase"  # on METRIC_STEP_SECONDS: one of PHASES
PHASE_COMPUTE: Final = "compute"
PHASE_COMMUNICATION: Final = "communication"
PHASE_UPDATE: Final = "update"
PHASES: Final[tuple[str, ...]] = (PHASE_COMPUTE, PHASE_COMMUNICATION, PHASE_UPDATE)
LABEL_METRIC: Final = "metric"  # on METRIC_EVALUATION: the name evaluate() gave the value
METRIC_LABELS: Final[tuple[str, ...]] = (
    LABEL_JOB,
    LABEL_NAMESPACE,
    LABEL_ROLE,
    LABEL_RANK,
    LABEL_GENERATION,
)
# Prometheus's own target label is "job"; scrape configs keep ours with honor_labels: true.

# ---- Kubernetes labels the operator puts on pods (selectors, PodMonitor) -----------------
POD_LABEL_JOB: Final = "optimus.dev/job"
POD_LABEL_ROLE: Final = "optimus.dev/role"
POD_LABEL_RANK: Final = "optimus.dev/rank"
POD_LABEL_GENERATION: Final = "optimus.dev/generation"
POD_LABEL_MANAGED: Final = "app.kubernetes.io/managed-by"
POD_LABEL_MANAGED_VALUE: Final = "optimus-operator"
METRICS_PORT_NAME: Final = "metrics"
CONTROL_PORT_NAME: Final = "control"


def pod_name(job: str, role: Role, rank: int, generation: int) -> str:
    """The pod of one task; the generation keeps old and new pods apart during a resize."""
    return f"{job}-g{generation}-{role}-{rank}"


def service_name(job: str) -> str:
    """The headless Service whose DNS names let a job's pods find each other."""
    return job


def pod_hostname(job: str, role: Role, rank: int, generation: int, namespace: str) -> str:
    """DNS name of a pod behind the job's headless Service (pod hostname + subdomain)."""
    return f"{pod_name(job, role, rank, generation)}.{service_name(job)}.{namespace}.svc"


class ContractError(ValueError):
    """The environment a pod was started with does not follow this contract."""


@dataclass(frozen=True)
class PodEnv:
    """The parsed environment of one pod."""

    job: str
    namespace: str
    role: Role
    rank: int
    num_ps: int
    num_workers: int
    mode: Mode
    rendezvous: str
    checkpoint_dir: str
    generation: int
    metrics_port: int
    control_port: int
    checkpoint_interval_steps: int
    task: str
    global_batch_size: int
    max_epochs: int
    #: processes in the pod, one per accelerator (LOCAL_WORLD_SIZE); 1 for a PS
    local_world_size: int = 1
    #: this process's rank within the pod (LOCAL_RANK)
    local_rank: int = 0
    #: the container's terminationMessagePath ("" outside a pod: none)
    termination_log: str = ""

    @property
    def is_chief(self) -> bool:
        return self.role == "worker" and self.rank == 0 and self.local_rank == 0

    @property
    def world_size(self) -> int:
        """Training processes over all worker pods."""
        return self.num_workers * self.local_world_size

    @property
    def global_rank(self) -> int:
        """This process's rank among all training processes (a worker's RANK)."""
        return self.rank * self.local_world_size + self.local_rank

    def torch_env(self) -> dict[str, str]:
        """The standard torch.distributed variables of a worker pod (empty for a PS)."""
        if self.role != "worker":
            return {}
        host, _, port = self.rendezvous.rpartition(":")
        return {
            ENV_MASTER_ADDR: host,
            ENV_MASTER_PORT: port,
            ENV_WORLD_SIZE: str(self.world_size),
            ENV_TORCH_RANK: str(self.global_rank),
            ENV_LOCAL_RANK: str(self.local_rank),
            ENV_LOCAL_WORLD_SIZE: str(self.local_world_size),
            ENV_GROUP_RANK: str(self.rank),
        }

    def for_local_rank(self, local_rank: int) -> PodEnv:
        """The environment of the pod's `local_rank`-th process."""
        if not 0 <= local_rank < self.local_world_size:
            raise ContractError(f"{ENV_LOCAL_RANK}={local_rank} is out of range for "
                                f"{ENV_LOCAL_WORLD_SIZE}={self.local_world_size}")
        return replace(self, local_rank=local_rank)

    def to_env(self) -> dict[str, str]:
        """The environment variables for this pod (what the operator sets)."""
        return {
            ENV_JOB: self.job,
            ENV_NAMESPACE: self.namespace,
            ENV_ROLE: self.role,
            ENV_RANK: str(self.rank),
            ENV_NUM_PS: str(self.num_ps),
            ENV_NUM_WORKERS: str(self.num_workers),
            ENV_MODE: self.mode,
            ENV_RENDEZVOUS: self.rendezvous,
            ENV_CHECKPOINT_DIR: self.checkpoint_dir,
            ENV_GENERATION: str(self.generation),
            ENV_METRICS_PORT: str(self.metrics_port),
            ENV_CONTROL_PORT: str(self.control_port),
            ENV_CHECKPOINT_INTERVAL: str(self.checkpoint_interval_steps),
            ENV_TASK: self.task,
            ENV_GLOBAL_BATCH: str(self.global_batch_size),
            ENV_MAX_EPOCHS: str(self.max_epochs),
            **({ENV_TERMINATION_LOG: self.termination_log} if self.termination_log else {}),
            **self.torch_env(),
        }


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if value is None or value == "":
        raise ContractError(f"environment variable {name} is missing; the operator sets it "
                            f"(set it by hand when running a pod's command yourself)")
    return value


def _integer(env: Mapping[str, str], name: str, default: int | None = None,
             minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            _required(env, name)
        assert default is not None
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ContractError(f"environment variable {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ContractError(f"environment variable {name}={value} must be >= {minimum}")
    return value


def parse_env(env: Mapping[str, str] | None = None) -> PodEnv:
    """Read a pod's environment; a missing or malformed variable raises ContractError naming it."""
    env = os.environ if env is None else env
    role = _required(env, ENV_ROLE)
    if role not in ROLES:
        raise ContractError(f"{ENV_ROLE}={role!r} is not one of {', '.join(ROLES)}")
    mode = _required(env, ENV_MODE)
    if mode not in MODES:
        raise ContractError(f"{ENV_MODE}={mode!r} is not one of {', '.join(MODES)}")
    num_ps = _integer(env, ENV_NUM_PS, 0 if mode == "allreduce" else None)
    num_workers = _integer(env, ENV_NUM_WORKERS, minimum=1)
    rank = _integer(env, ENV_RANK)
    if mode != "allreduce" and num_ps < 1:
        raise ContractError(f"{ENV_NUM_PS}={num_ps}: mode {mode} needs at least one PS")
    limit = num_ps if role == "ps" else num_workers
    if rank >= limit:
        raise ContractError(f"{ENV_RANK}={rank} is out of range for {limit} {role} task(s)")
    local_world_size = _integer(env, ENV_LOCAL_WORLD_SIZE, 1, minimum=1) if role == "worker" else 1
    local_rank = _integer(env, ENV_LOCAL_RANK, 0) if role == "worker" else 0
    if local_rank >= local_world_size:
        raise ContractError(f"{ENV_LOCAL_RANK}={local_rank} is out of range for "
                            f"{ENV_LOCAL_WORLD_SIZE}={local_world_size}")
    return PodEnv(
        job=_required(env, ENV_JOB),
        namespace=env.get(ENV_NAMESPACE) or "default",
        role=role,  # type: ignore[arg-type]
        rank=rank,
        num_ps=num_ps,
        num_workers=num_workers,
        mode=mode,  # type: ignore[arg-type]
        rendezvous=_required(env, ENV_RENDEZVOUS),
        checkpoint_dir=_required(env, ENV_CHECKPOINT_DIR),
        generation=_integer(env, ENV_GENERATION, 0),
        metrics_port=_integer(env, ENV_METRICS_PORT, DEFAULT_METRICS_PORT),
        control_port=_integer(env, ENV_CONTROL_PORT, DEFAULT_CONTROL_PORT),
        checkpoint_interval_steps=_integer(
            env, ENV_CHECKPOINT_INTERVAL, DEFAULT_CHECKPOINT_INTERVAL_STEPS, minimum=1
        ),
        task=env.get(ENV_TASK) or "",
        global_batch_size=_integer(env, ENV_GLOBAL_BATCH, 64, minimum=1),
        max_epochs=_integer(env, ENV_MAX_EPOCHS, 100, minimum=1),
        local_world_size=local_world_size,
        local_rank=local_rank,
        termination_log=env.get(ENV_TERMINATION_LOG) or "",
    )

"""Step 6 of a scheduling round, the pure half: the pods and the headless Service of one
generation of a job, as plain dicts ready for the API server.

Every pod gets its environment from optimus_worker.contract.PodEnv (nothing is spelt
twice), its own IP from the downward API, a required node affinity to the node the placer
chose, the job's checkpoint volume, the labels selectors and PodMonitors use, and an
ownerReference to its TrainingJob, so deleting the job deletes its pods and Service while
the checkpoint volume stays.

The pod template is the user's: what the operator adds is merged into it, never put in its
place. Its nodeSelector, tolerations, priorityClassName, volumes, security contexts and any
other field pass through; containers keep their own env, volumeMounts and resources beside
the operator's; and the node pin is ANDed with each of the template's required node
affinity terms (`pin_to_node`), keeping its preferred terms and pod (anti-)affinity.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from optimus_worker import contract

from optimus.affinity import NODE_NAME_FIELD
from optimus.api.spec import API_VERSION, KIND, QUEUE_NAME_LABEL, TrainingJob
from optimus.api.status import AllocationStatus

CHECKPOINT_VOLUME: Final = "optimus-checkpoints"
RENDEZVOUS_PORT_NAME: Final = "rendezvous"
#: the operator's pods are replaced by the operator (from a checkpoint), never by the kubelet
RESTART_POLICY: Final = "Never"
#: a container that fails without writing its termination message shows its log's tail
TERMINATION_MESSAGE_POLICY: Final = "FallbackToLogsOnError"
#: seconds between the SIGTERM of a resize (or a suspension) and the SIGKILL, unless the
#: template says otherwise: a script of its own checkpoints in them
DEFAULT_GRACE_PERIOD_SECONDS: Final = 30


def owner_reference(job: TrainingJob) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": job.meta.name,
        "uid": job.meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def job_selector(name: str) -> dict[str, str]:
    """The labels that select every pod of a job, across generations."""
    return {
        contract.POD_LABEL_JOB: name,
        contract.POD_LABEL_MANAGED: contract.POD_LABEL_MANAGED_VALUE,
    }


def worker_selector(name: str) -> str:
    """The label selector of a job's worker pods (every generation) as a string, the form
    the scale subresource's labelSelectorPath reads (status.selector)."""
    labels = {**job_selector(name), contract.POD_LABEL_ROLE: "worker"}
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def pod_labels(name: str, role: contract.Role, rank: int, generation: int,
               queue_name: str = "") -> dict[str, str]:
    """The operator's labels of one pod; the job's queue name (Kueue's label) too."""
    return {
        **({QUEUE_NAME_LABEL: queue_name} if queue_name else {}),
        **job_selector(name),
        contract.POD_LABEL_ROLE: role,
        contract.POD_LABEL_RANK: str(rank),
        contract.POD_LABEL_GENERATION: str(generation),
    }


def checkpoint_dir(job: TrainingJob) -> str:
    """Where the job's checkpoints live inside the pods: <mountPath>/<job>."""
    return f"{job.spec.checkpoint.mount_path.rstrip('/')}/{job.meta.name}"


def rendezvous_port(job: TrainingJob) -> int:
    """The workers' rendezvous port (OPTIMUS_RENDEZVOUS's and MASTER_PORT): the port named
    "rendezvous" of the worker template's first container, else torch's usual 29500. Pods
    that share their node's ports (hostNetwork) need one per job."""
    containers = (job.spec.workers.template.get("spec") or {}).get("containers") or [{}]
    for port in containers[0].get("ports") or []:
        if port.get("name") == RENDEZVOUS_PORT_NAME and isinstance(port.get("containerPort"),
                                                                   int):
            return int(port["containerPort"])
    return contract.DEFAULT_RENDEZVOUS_PORT


def rendezvous(job: TrainingJob, generation: int) -> str:
    host = contract.pod_hostname(job.meta.name, "worker", 0, generation, job.meta.namespace)
    return f"{host}:{rendezvous_port(job)}"


def processes_per_pod(job: TrainingJob, role: contract.Role) -> int:
    """LOCAL_WORLD_SIZE: in all-reduce, one training process per accelerator a worker pod
    holds (at least one); a PS-mode worker (its RPC world counts pods) and a PS run one."""
    if role != "worker" or job.spec.mode != "allreduce":
        return 1
    return max(1, int(job.spec.workers.request.gpu))


def joins_in_place(allocation: AllocationStatus, role: contract.Role, rank: int) -> bool:
    """Whether this pod joins the running job (a resize in place adds it while the chief,
    a pod of an earlier generation, trains on) rather than starting with its generation."""
    return (allocation.in_place and allocation.pod_generation(role, rank) == allocation.generation
            and allocation.pod_generation("worker", 0) != allocation.generation)


def pod_env(job: TrainingJob, role: contract.Role, rank: int,
            allocation: AllocationStatus) -> contract.PodEnv:
    return contract.PodEnv(
        job=job.meta.name,
        namespace=job.meta.namespace,
        role=role,
        rank=rank,
        num_ps=allocation.ps,
        num_workers=allocation.workers,
        mode=job.spec.mode,
        # the chief's pod (of an earlier generation after a resize in place) hosts it
        rendezvous=rendezvous(job, allocation.pod_generation("worker", 0)),
        checkpoint_dir=checkpoint_dir(job),
        generation=allocation.generation,
        metrics_port=contract.DEFAULT_METRICS_PORT,
        control_port=contract.DEFAULT_CONTROL_PORT,
        checkpoint_interval_steps=job.spec.checkpoint.interval_steps,
        task=job.spec.task,
        global_batch_size=job.spec.global_batch_size,
        max_epochs=job.spec.convergence.max_epochs,
        local_world_size=processes_per_pod(job, role),
    )


def pin_to_node(affinity: Mapping[str, Any] | None, node: str) -> dict[str, Any]:
    """The template's affinity with the operator's node pin ANDed into it: a matchFields
    expression on the node's name added to every required nodeSelectorTerm (one term with
    only the pin when the template requires none). A pod so pinned runs on `node` only if
    that node also satisfies the template (the placer chose it so); the preferred terms and
    podAffinity/podAntiAffinity are kept as they are."""
    out = copy.deepcopy(dict(affinity or {}))
    node_affinity = dict(out.get("nodeAffinity") or {})
    required = dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    pin = {"key": NODE_NAME_FIELD, "operator": "In", "values": [node]}
    terms = required.get("nodeSelectorTerms") or [{}]
    required["nodeSelectorTerms"] = [
        {**term, "matchFields": [*(term.get("matchFields") or []), pin]} for term in terms
    ]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    out["nodeAffinity"] = node_affinity
    return out


def _ports(role: contract.Role, rank: int, rendezvous_at: int) -> list[dict[str, Any]]:
    ports = [{"name": contract.METRICS_PORT_NAME, "containerPort": contract.DEFAULT_METRICS_PORT,
              "protocol": "TCP"}]
    if role == "worker" and rank == 0:
        ports += [
            {"name": contract.CONTROL_PORT_NAME, "containerPort": contract.DEFAULT_CONTROL_PORT,
             "protocol": "TCP"},
            {"name": RENDEZVOUS_PORT_NAME, "containerPort": rendezvous_at, "protocol": "TCP"},
        ]
    return ports


def _training_container(
    container: Mapping[str, Any], env: contract.PodEnv, job: TrainingJob, first: bool,
    joining: bool = False,
) -> dict[str, Any]:
    """A template container with the contract's environment (ours win over the template's),
    the pod IP from the downward API, the checkpoint mount and a termination message that
    falls back to the log; the first container also declares the metrics/control ports,
    and runs the job's own command and image when the spec names them."""
    mount_path = job.spec.checkpoint.mount_path
    out = copy.deepcopy(dict(container))
    if first:
        _own_command(out, job)
    out.setdefault("terminationMessagePolicy", TERMINATION_MESSAGE_POLICY)
    env = replace(env, termination_log=str(
        out.get("terminationMessagePath") or contract.DEFAULT_TERMINATION_LOG))
    resources = out.get("resources") or {}
    for kind in ("requests", "limits"):
        if isinstance(resources.get(kind), Mapping):
            # quantities are strings in the API's schema (YAML gives `nvidia.com/gpu: 1`)
            resources[kind] = {k: str(v) for k, v in resources[kind].items()}
    ours = env.to_env()
    if joining:
        ours[contract.ENV_JOIN_IN_PLACE] = "1"
    kept = [e for e in out.get("env") or [] if e.get("name") not in ours
            and e.get("name") != contract.ENV_POD_IP]
    out["env"] = [
        *kept,
        *({"name": k, "value": v} for k, v in ours.items()),
        {"name": contract.ENV_POD_IP,
         "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
    ]
    mounts = [m for m in out.get("volumeMounts") or [] if m.get("name") != CHECKPOINT_VOLUME]
    out["volumeMounts"] = [*mounts, {"name": CHECKPOINT_VOLUME, "mountPath": mount_path}]
    if first:
        declared = _ports(env.role, env.rank, rendezvous_port(job))
        names = {p["name"] for p in declared} | {RENDEZVOUS_PORT_NAME}
        kept_ports = [p for p in out.get("ports") or [] if p.get("name") not in names]
        out["ports"] = [*kept_ports, *declared]
    return out


def _own_command(container: dict[str, Any], job: TrainingJob) -> None:
    """spec.command replaces the training container's command (its args stay), spec.image
    its image: the user's script in the user's image."""
    if job.spec.command:
        container["command"] = list(job.spec.command)
    if job.spec.image:
        container["image"] = job.spec.image


def build_pod(job: TrainingJob, role: contract.Role, rank: int, node: str,
              allocation: AllocationStatus) -> dict[str, Any]:
    """The pod of `role` `rank` of `allocation` (of the generation recorded for the rank),
    bound by required affinity to `node`."""
    group = job.spec.parameter_servers if role == "ps" else job.spec.workers
    template = copy.deepcopy(dict(group.template))
    template_meta = template.get("metadata") or {}
    spec: dict[str, Any] = dict(template.get("spec") or {})
    env = pod_env(job, role, rank, allocation)
    generation = allocation.pod_generation(role, rank)
    name = contract.pod_name(job.meta.name, role, rank, generation)
    joining = joins_in_place(allocation, role, rank)
    spec["containers"] = [
        _training_container(c, env, job, i == 0, joining)
        for i, c in enumerate(spec.get("containers") or [])
    ]
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_PERIOD_SECONDS)
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") != CHECKPOINT_VOLUME]
    spec["volumes"] = [*volumes, {"name": CHECKPOINT_VOLUME, **dict(job.spec.checkpoint.volume)}]
    spec["hostname"] = name
    spec["subdomain"] = contract.service_name(job.meta.name)
    spec["restartPolicy"] = RESTART_POLICY
    spec["affinity"] = pin_to_node(spec.get("affinity"), node)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": job.meta.namespace,
            "labels": {**(template_meta.get("labels") or {}),
                       **pod_labels(job.meta.name, role, rank, generation,
                                    job.meta.queue_name)},
            "annotations": dict(template_meta.get("annotations") or {}),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": spec,
    }


def build_pods(job: TrainingJob, allocation: AllocationStatus) -> list[dict[str, Any]]:
    """Every pod of the allocation: PS 0..p-1 then workers 0..w-1, each on the node the
    placement gave its rank, of the generation recorded for its rank."""
    if len(allocation.ps_nodes) != allocation.ps or (
        len(allocation.worker_nodes) != allocation.workers
    ):
        raise ValueError(
            f"allocation of {job.meta.key} places {len(allocation.ps_nodes)} PS and "
            f"{len(allocation.worker_nodes)} workers but asks for {allocation.ps} and "
            f"{allocation.workers}; place every task before building pods"
        )
    return [
        *(build_pod(job, "ps", rank, node, allocation)
          for rank, node in enumerate(allocation.ps_nodes)),
        *(build_pod(job, "worker", rank, node, allocation)
          for rank, node in enumerate(allocation.worker_nodes)),
    ]


def build_service(job: TrainingJob) -> dict[str, Any]:
    """The headless Service that gives every pod of the job a DNS name
    (<pod>.<service>.<namespace>.svc), published before the pods are ready."""
    port = rendezvous_port(job)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": contract.service_name(job.meta.name),
            "namespace": job.meta.namespace,
            "labels": job_selector(job.meta.name),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": job_selector(job.meta.name),
            "ports": [
                {"name": contract.METRICS_PORT_NAME, "port": contract.DEFAULT_METRICS_PORT,
                 "targetPort": contract.DEFAULT_METRICS_PORT},
                {"name": RENDEZVOUS_PORT_NAME, "port": port, "targetPort": port},
            ],
        },
    }

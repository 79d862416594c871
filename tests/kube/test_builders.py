"""Pods and the headless Service of one generation: environment from the contract, the
downward-API pod IP, node affinity, ownership, labels and DNS."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from optimus.api import parse_training_job
from optimus.api.spec import QUEUE_NAME_LABEL
from optimus.api.status import AllocationStatus
from optimus.kube import builders
from optimus_worker import contract

from tests.api.conftest import RAW_JOB

ALLOCATION = AllocationStatus(ps=1, workers=2, generation=3, ps_nodes=("n1",),
                              worker_nodes=("n1", "n2"))


def _pods() -> list[dict[str, Any]]:
    return builders.build_pods(parse_training_job(RAW_JOB), ALLOCATION)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_one_pod_per_task_named_by_the_contract() -> None:
    names = [p["metadata"]["name"] for p in _pods()]
    assert names == [contract.pod_name("mnist", "ps", 0, 3),
                     contract.pod_name("mnist", "worker", 0, 3),
                     contract.pod_name("mnist", "worker", 1, 3)]


def test_environment_round_trips_through_the_contract() -> None:
    for pod in _pods():
        container = pod["spec"]["containers"][0]
        parsed = contract.parse_env(_env(container))
        labels = pod["metadata"]["labels"]
        assert parsed.role == labels[contract.POD_LABEL_ROLE]
        assert parsed.rank == int(labels[contract.POD_LABEL_RANK])
        assert (parsed.num_ps, parsed.num_workers, parsed.generation) == (1, 2, 3)
        assert parsed.checkpoint_dir == "/ckpt/mnist"
        assert parsed.global_batch_size == 64
        assert parsed.max_epochs == 12
        assert parsed.checkpoint_interval_steps == 20
        assert parsed.rendezvous == (
            f"{contract.pod_hostname('mnist', 'worker', 0, 3, 'ml')}:"
            f"{contract.DEFAULT_RENDEZVOUS_PORT}")
        pod_ip = next(e for e in container["env"] if e["name"] == contract.ENV_POD_IP)
        assert pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_operator_env_wins_over_the_template() -> None:
    raw = {**RAW_JOB}
    job = parse_training_job(raw)
    template = job.spec.workers.template
    template["spec"]["containers"][0]["env"] = [  # type: ignore[index]
        {"name": contract.ENV_RANK, "value": "99"}, {"name": "OMP_NUM_THREADS", "value": "1"}]
    try:
        pod = builders.build_pod(job, "worker", 1, "n2", ALLOCATION)
    finally:
        del template["spec"]["containers"][0]["env"]  # type: ignore[index]
    env = pod["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == contract.ENV_RANK] == ["1"]
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in env


def test_scheduling_ownership_and_dns() -> None:
    for pod, node in zip(_pods(), ["n1", "n1", "n2"], strict=True):
        spec = pod["spec"]
        terms = spec["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                           "values": [node]}]}]
        assert spec["hostname"] == pod["metadata"]["name"]
        assert spec["subdomain"] == contract.service_name("mnist")
        assert spec["restartPolicy"] == "Never"
        (owner,) = pod["metadata"]["ownerReferences"]
        assert owner["kind"] == "TrainingJob" and owner["uid"] == "u-1" and owner["controller"]
        assert any(v["name"] == builders.CHECKPOINT_VOLUME and "hostPath" in v
                   for v in spec["volumes"])
        mounts = spec["containers"][0]["volumeMounts"]
        assert {"name": builders.CHECKPOINT_VOLUME, "mountPath": "/ckpt"} in mounts
        ports = {p["name"] for p in spec["containers"][0]["ports"]}
        assert contract.METRICS_PORT_NAME in ports


def test_only_the_chief_exposes_control() -> None:
    chiefs = [p["metadata"]["name"] for p in _pods()
              if any(port["name"] == contract.CONTROL_PORT_NAME
                     for port in p["spec"]["containers"][0]["ports"])]
    assert chiefs == [contract.pod_name("mnist", "worker", 0, 3)]


def test_headless_service_selects_every_generation() -> None:
    service = builders.build_service(parse_training_job(RAW_JOB))
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    selector = service["spec"]["selector"]
    for pod in _pods():
        assert selector.items() <= pod["metadata"]["labels"].items()


def test_unplaced_tasks_are_refused() -> None:
    with pytest.raises(ValueError, match="place every task"):
        builders.build_pods(parse_training_job(RAW_JOB),
                            AllocationStatus(1, 3, 0, ("n1",), ("n1",)))


def test_quantities_become_strings() -> None:
    worker = _pods()[1]["spec"]["containers"][0]["resources"]
    assert worker["limits"] == {"nvidia.com/gpu": "1"}
    assert worker["requests"] == {"cpu": "1", "memory": "1Gi"}


def _command_job(**meta_labels: str) -> Any:
    raw = copy.deepcopy(RAW_JOB)
    raw["metadata"]["labels"] = dict(meta_labels)
    spec = raw["spec"]
    spec["mode"] = "allreduce"
    del spec["parameterServers"], spec["task"]
    spec["command"] = ["python", "/app/train.py"]
    spec["image"] = "registry.example/me/train:2"
    container = spec["workers"]["template"]["spec"]["containers"][0]
    container["args"] = ["--epochs", "3"]
    container["resources"]["limits"]["nvidia.com/gpu"] = 2
    return parse_training_job(raw)


def test_a_command_job_runs_the_users_script_in_the_users_image() -> None:
    allocation = AllocationStatus(ps=0, workers=2, generation=1, worker_nodes=("n1", "n2"))
    pods = builders.build_pods(_command_job(), allocation)
    assert [p["metadata"]["name"] for p in pods] == [
        contract.pod_name("mnist", "worker", r, 1) for r in (0, 1)]
    for rank, pod in enumerate(pods):
        container = pod["spec"]["containers"][0]
        assert container["command"] == ["python", "/app/train.py"]
        assert container["args"] == ["--epochs", "3"]  # the template's stay
        assert container["image"] == "registry.example/me/train:2"
        env = _env(container)
        # the standard torch.distributed environment: 2 GPUs per pod, one process each
        assert env[contract.ENV_MASTER_ADDR] == contract.pod_hostname("mnist", "worker", 0, 1,
                                                                      "ml")
        assert env[contract.ENV_MASTER_PORT] == str(contract.DEFAULT_RENDEZVOUS_PORT)
        assert env[contract.ENV_WORLD_SIZE] == "4"
        assert env[contract.ENV_TORCH_RANK] == str(2 * rank)
        assert env[contract.ENV_LOCAL_RANK] == "0"
        assert env[contract.ENV_LOCAL_WORLD_SIZE] == "2"
        assert env[contract.ENV_GROUP_RANK] == str(rank)
        assert env[contract.ENV_CHECKPOINT_DIR] == "/ckpt/mnist"
        assert contract.ENV_TASK not in env or env[contract.ENV_TASK] == ""


def test_containers_report_failures_and_pods_have_a_grace_period() -> None:
    for pod in _pods():
        assert pod["spec"]["terminationGracePeriodSeconds"] == (
            builders.DEFAULT_GRACE_PERIOD_SECONDS)
        for container in pod["spec"]["containers"]:
            assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
            assert _env(container)[contract.ENV_TERMINATION_LOG] == (
                contract.DEFAULT_TERMINATION_LOG)
    job = parse_training_job(RAW_JOB)
    template = copy.deepcopy(dict(job.spec.workers.template))
    template["spec"]["terminationGracePeriodSeconds"] = 120
    container = template["spec"]["containers"][0]
    container["terminationMessagePath"] = "/var/run/why"
    container["terminationMessagePolicy"] = "File"
    own = replace(job, spec=replace(job.spec, workers=replace(job.spec.workers,
                                                             template=template)))
    pod = builders.build_pod(own, "worker", 0, "n1", ALLOCATION)
    assert pod["spec"]["terminationGracePeriodSeconds"] == 120  # the template's wins
    built = pod["spec"]["containers"][0]
    assert built["terminationMessagePolicy"] == "File"
    assert _env(built)[contract.ENV_TERMINATION_LOG] == "/var/run/why"


@pytest.mark.parametrize("queue", ["", "team-a"])
def test_the_queue_name_label_passes_to_the_pods(queue: str) -> None:
    labels = {QUEUE_NAME_LABEL: queue} if queue else {}
    allocation = AllocationStatus(ps=0, workers=1, generation=0, worker_nodes=("n1",))
    (pod,) = builders.build_pods(_command_job(**labels), allocation)
    assert pod["metadata"]["labels"].get(QUEUE_NAME_LABEL) == (queue or None)

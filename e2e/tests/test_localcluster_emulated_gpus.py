"""The local cluster's emulated GPUs: binding a pod gives each container that holds an
nvidia.com/gpu the emulated-accelerator variable (as a device plugin injects its devices),
only when the cluster was created with a time per sample, and never to the others."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from optimus_worker.contract import ENV_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE as ENV

from e2e.localcluster import LocalCluster
from e2e.localcluster.__main__ import main as localcluster_main
from e2e.localcluster.scheduler import container_gpus, with_emulated_gpus
from e2e.localcluster.testing import api_client, wait_for

NS = "default"


def container(name: str, gpus: str | None, env: list[dict[str, str]] | None = None
              ) -> dict[str, Any]:
    limits = {"memory": "64Mi", **({"nvidia.com/gpu": gpus} if gpus is not None else {})}
    script = textwrap.dedent(f"""
        import os
        print("value", repr(os.environ.get({ENV!r})), flush=True)
    """)
    return {"name": name, "image": "python:3.11", "command": ["python", "-c", script],
            "env": env or [], "resources": {"limits": limits}}


def pod(name: str, *containers: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": list(containers)}}


def env_of(obj: dict[str, Any], index: int) -> list[dict[str, str]]:
    return list(obj["spec"]["containers"][index].get("env") or [])


@pytest.mark.parametrize(("limits", "gpus"), [
    ({"nvidia.com/gpu": "1"}, 1.0), ({"nvidia.com/gpu": 2}, 2.0), ({"cpu": "1"}, 0.0),
    ({}, 0.0), ({"nvidia.com/gpu": "0"}, 0.0)])
def test_container_gpus(limits: dict[str, Any], gpus: float) -> None:
    assert container_gpus({"resources": {"limits": limits}}) == gpus


def test_only_containers_holding_a_gpu_get_the_variable_replacing_any_declared() -> None:
    original = pod("p", container("gpu", "1", [{"name": ENV, "value": "9"},
                                               {"name": "KEEP", "value": "x"}]),
                   container("cpu", None))
    before = copy.deepcopy(original)
    new = with_emulated_gpus(original, 0.002)
    assert new is not None and original == before  # a copy: the stored object is untouched
    assert env_of(new, 0) == [{"name": "KEEP", "value": "x"}, {"name": ENV, "value": "0.002"}]
    assert env_of(new, 1) == []


@pytest.mark.parametrize(("obj", "seconds"), [
    (pod("p", container("gpu", "1")), 0.0),  # emulation off
    (pod("p", container("cpu", None)), 0.002),  # no GPU to emulate
])
def test_nothing_to_inject(obj: dict[str, Any], seconds: float) -> None:
    assert with_emulated_gpus(obj, seconds) is None


def test_the_cli_refuses_a_negative_time() -> None:
    with pytest.raises(SystemExit) as exit_info:
        localcluster_main(["up", "--emulated-gpu-seconds-per-sample", "-1"])
    assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="emulated_gpu_seconds_per_sample"):
        LocalCluster(emulated_gpu_seconds_per_sample=-0.5)


def _printed(api: Any, name: str, container_name: str) -> str:
    def done() -> str | None:
        status = api.read_namespaced_pod(name, NS).status
        if status.phase not in ("Succeeded", "Failed"):
            return None
        return str(api.read_namespaced_pod_log(name, NS, container=container_name))
    return wait_for(f"{name}/{container_name}'s output", done, 60)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seconds", [0.0, 0.003])
def test_pods_given_a_gpu_see_the_emulated_time(tmp_path: Path, seconds: float) -> None:
    with LocalCluster(nodes=1, gpus_per_node=2, workdir=tmp_path,
                      emulated_gpu_seconds_per_sample=seconds) as cluster:
        api: Any = kubernetes.client.CoreV1Api(api_client(cluster.kubeconfig))
        api.create_namespaced_pod(NS, pod("mixed", container("gpu", "1"), container("cpu", None)))
        expected = repr("0.003") if seconds else "None"
        assert f"value {expected}" in _printed(api, "mixed", "gpu")
        assert "value None" in _printed(api, "mixed", "cpu")

"""The integration tests' world: the e2e local cluster (1 node, 3 simulated GPUs), the CRD,
a real Prometheus scraping the worker pods every second, and the operator as a subprocess
(`python -m optimus.kube`) with a 3-second interval. One stack per module (starting one
costs seconds); every test uses its own job names and cleans up after itself."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
import yaml
from optimus.api.spec import GROUP, PLURAL, VERSION
from optimus_worker import contract

from e2e.demo.stack import OperatorSettings, Stack, StackConfig
from e2e.simgpu import TASK_SMALL_MLP

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
# probes, not the white-box speed prior: the lifecycle test walks a job through them
OPERATOR = OperatorSettings(interval_seconds=3, restart_cost_seconds=30,
                            speed_warmup_seconds=2, speed_span_seconds=3,
                            extra_env={"OPTIMUS_SPEED_PRIOR": "none"})
T = TypeVar("T")


class World:
    """The stack plus the helpers the tests share."""

    def __init__(self, stack: Stack, checkpoints: Path) -> None:
        self.stack = stack
        self.checkpoints = checkpoints
        api_client = kubernetes.config.new_client_from_config(str(stack.kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)

    # -- objects ------------------------------------------------------------------------
    def manifest(self, name: str, *, ps: tuple[int, int] = (1, 1),
                 workers: tuple[int, int] = (1, 1), max_epochs: int = 5,
                 batch: int = 64) -> dict[str, Any]:
        container = {
            "image": "ghcr.io/optimus-operator/worker:0.1.0",
            "command": ["python", "-m", "optimus_worker"],
            "env": [{"name": "OMP_NUM_THREADS", "value": "1"},
                    {"name": "PYTHONPATH", "value": str(REPO_ROOT)}],
        }
        return {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "mode": "ps-sync",
                "task": TASK_SMALL_MLP,
                # each job is its own kind: what one test's job taught (optimus.kube.store)
                # must not spare another's probes
                "modelKind": name,
                "globalBatchSize": batch,
                "convergence": {"lossDelta": 1e-6, "window": 3, "maxEpochs": max_epochs},
                "parameterServers": {"min": ps[0], "max": ps[1], "template": {"spec": {
                    "containers": [{**copy.deepcopy(container), "name": "ps",
                                    "resources": {"requests": {"cpu": "500m",
                                                               "memory": "256Mi"}}}]}}},
                "workers": {"min": workers[0], "max": workers[1], "template": {"spec": {
                    "containers": [{**copy.deepcopy(container), "name": "worker",
                                    "resources": {"requests": {"cpu": "500m",
                                                               "memory": "512Mi"},
                                                  "limits": {"nvidia.com/gpu": 1}}}]}}},
                "checkpoint": {"volume": {"hostPath": {"path": str(self.checkpoints),
                                                       "type": "DirectoryOrCreate"}},
                               "mountPath": str(self.checkpoints), "intervalSteps": 20},
            },
        }

    def apply(self, manifest: dict[str, Any]) -> None:
        self.stack.kubectl.apply_text(yaml.safe_dump(manifest))

    def job(self, name: str) -> dict[str, Any]:
        job: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                            PLURAL, name)
        return dict(job)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.job(name).get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for item in self.status(name).get("conditions") or []:
            if item["type"] == type_:
                return dict(item)
        return {}

    def pods(self, name: str) -> list[Any]:
        selector = f"{contract.POD_LABEL_JOB}={name}"
        return list(self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items)

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)

    def events(self, name: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(NAMESPACE).items
                if e.involved_object.name == name]

    # -- waiting ------------------------------------------------------------------------
    def wait(self, what: str, probe: Callable[[], T | None], timeout: float,
             interval: float = 1.0) -> T:
        """Poll `probe` until it returns something truthy; on timeout, fail with the
        operator's log tail."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                operator = self.stack.operator
                tail = operator.process.log_tail() if operator else ""
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n"
                            f"--- operator log ---\n{tail}")
            time.sleep(interval)

    def phase(self, name: str) -> str:
        return str(self.status(name).get("phase") or "")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("integration")
    checkpoints = workdir / "checkpoints"
    checkpoints.mkdir()
    config = StackConfig(workdir=workdir, nodes=1, gpus_per_node=3, cpus_per_node=8,
                         operator=OPERATOR)
    with Stack(config) as stack:
        yield World(stack, checkpoints)

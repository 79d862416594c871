"""`python -m e2e.localcluster up`: prints the kubeconfig path first, serves real clients,
and stops every pod process on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from e2e.localcluster.testing import api_client, wait_for

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def test_up_prints_kubeconfig_and_stops_pods_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "e2e.localcluster", "up", "--nodes", "1", "--gpus-per-node", "2",
         "--cpus-per-node", "4", "--memory-per-node", "8Gi", "--workdir", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        kubeconfig = Path(proc.stdout.readline().strip())
        assert kubeconfig == tmp_path / "kubeconfig" and kubeconfig.exists()
        core: Any = kubernetes.client.CoreV1Api(api_client(kubeconfig))
        [node] = core.list_node().items
        assert node.status.allocatable["nvidia.com/gpu"] == "2"
        assert node.status.capacity["memory"] == "8Gi"
        core.create_namespaced_pod("default", {
            "metadata": {"name": "sleeper"},
            "spec": {"containers": [{"name": "main", "image": "python:3.11",
                                     "command": ["python", "-c",
                                                 "import time; time.sleep(600)"]}]}})
        container_id = wait_for("the pod to run", lambda: (s := core.read_namespaced_pod(
            "sleeper", "default").status.container_statuses) and s[0].state.running and
            s[0].container_id)
        pid = int(container_id.removeprefix("local://"))
        os.kill(pid, 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

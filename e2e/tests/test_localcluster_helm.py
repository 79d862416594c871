"""helm (v4, server-side apply) installs, upgrades and uninstalls a small chart (with a CRD
in crds/, RBAC, a Deployment, a PDB and a custom object) on the local cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from e2e.localcluster import LocalCluster
from e2e.localcluster.testing import api_client

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
CHART = Path(__file__).parent / "charts" / "demo"
HELM = shutil.which("helm", path=str(ROOT / ".tools" / "bin")) or shutil.which("helm")


def helm(cluster: LocalCluster, tmp_path: Path, *args: str) -> str:
    if HELM is None:
        pytest.skip("helm is not installed (make tools)")
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig),
               HELM_CACHE_HOME=str(tmp_path / "helm-cache"),
               HELM_CONFIG_HOME=str(tmp_path / "helm-config"),
               HELM_DATA_HOME=str(tmp_path / "helm-data"))
    result = subprocess.run([HELM, *args], capture_output=True, text=True, env=env, timeout=90)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_helm_install_upgrade_uninstall(local_cluster: LocalCluster, tmp_path: Path) -> None:
    client = api_client(local_cluster.kubeconfig)
    core: Any = kubernetes.client.CoreV1Api(client)
    apps: Any = kubernetes.client.AppsV1Api(client)
    rbac: Any = kubernetes.client.RbacAuthorizationV1Api(client)
    custom: Any = kubernetes.client.CustomObjectsApi(client)
    helm(local_cluster, tmp_path, "install", "rel", str(CHART), "-n", "default")
    assert core.read_namespaced_config_map("rel-settings", "default").data == {
        "mode": "fast", "extra": "yes"}
    assert apps.read_namespaced_deployment("rel", "default").spec.replicas == 1
    assert rbac.read_cluster_role_binding("rel-reader").subjects[0].name == "rel"
    assert custom.get_namespaced_custom_object("example.dev", "v1", "default", "gadgets",
                                               "rel")["spec"]["size"] == 2
    releases = json.loads(helm(local_cluster, tmp_path, "list", "-n", "default", "-o", "json"))
    assert [(r["name"], r["status"]) for r in releases] == [("rel", "deployed")]

    values = tmp_path / "values.yaml"
    values.write_text("replicas: 3\nsettings:\n  mode: slow\n  extra: null\ngadget:\n  size: 5\n")
    helm(local_cluster, tmp_path, "upgrade", "rel", str(CHART), "-n", "default",
         "--reset-values", "-f", str(values))
    data = core.read_namespaced_config_map("rel-settings", "default").data
    assert data == {"mode": "slow"}  # a key no longer applied is removed
    assert apps.read_namespaced_deployment("rel", "default").spec.replicas == 3
    assert custom.get_namespaced_custom_object("example.dev", "v1", "default", "gadgets",
                                               "rel")["spec"]["size"] == 5
    history = json.loads(helm(local_cluster, tmp_path, "history", "rel", "-n", "default",
                              "-o", "json"))
    assert [h["revision"] for h in history] == [1, 2]

    helm(local_cluster, tmp_path, "uninstall", "rel", "-n", "default", "--wait")
    names = [c.metadata.name for c in core.list_namespaced_config_map("default").items]
    assert "rel-settings" not in names
    assert not apps.list_namespaced_deployment("default").items
    assert not [b for b in rbac.list_cluster_role_binding().items
                if b.metadata.name == "rel-reader"]
    assert json.loads(helm(local_cluster, tmp_path, "list", "-n", "default", "-o", "json")) == []

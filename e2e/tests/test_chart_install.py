"""`helm install` of charts/optimus into the local cluster creates what the chart renders:
the CRDs (TrainingJob and kopf's peering kinds), the RBAC, the operator's Deployment and
Service, the peering object and the dashboards; a sample TrainingJob is then accepted, and
`helm uninstall` removes the release but keeps the CRDs (and so the users' jobs).

The local cluster stores Deployments without running them, so nothing here waits for the
operator to be ready (e2e/scenarios/test_helm_install.py runs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from e2e.dashboards import CHART, ROOT
from e2e.localcluster import LocalCluster
from e2e.localcluster.testing import api_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RELEASE = "optimus"
NAMESPACE = "optimus-system"


def helm_binary() -> str:
    found = shutil.which("helm") or str(ROOT / ".tools" / "bin" / "helm")
    if not Path(found).exists():
        pytest.skip("helm is absent: `make tools` installs it into .tools/bin")
    return found


def helm(kubeconfig: Path, *args: str) -> str:
    result = subprocess.run([helm_binary(), *args, "--kubeconfig", str(kubeconfig)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def api(name: str, client: Any) -> Any:
    """A kubernetes client API, typed loosely: the tests read optional fields directly."""
    return getattr(kubernetes.client, name)(client)


def rendered(kind: str) -> list[dict[str, Any]]:
    out = subprocess.run([helm_binary(), "template", RELEASE, str(CHART), "-n", NAMESPACE],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc and doc["kind"] == kind]


def test_helm_install_creates_crds_rbac_and_deployment(local_cluster: LocalCluster) -> None:
    kubeconfig = local_cluster.kubeconfig
    client = api_client(kubeconfig)
    helm(kubeconfig, "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--create-namespace")

    crds = {crd.metadata.name for crd in
            api("ApiextensionsV1Api", client).list_custom_resource_definition().items}
    assert {"trainingjobs.optimus.dev", "clusterkopfpeerings.kopf.dev",
            "kopfpeerings.kopf.dev"} <= crds

    rbac = api("RbacAuthorizationV1Api", client)
    role = rbac.read_cluster_role(RELEASE)
    (expected,) = rendered("ClusterRole")
    assert [client.sanitize_for_serialization(rule) for rule in role.rules] == [
        {key: value for key, value in rule.items() if value} for rule in expected["rules"]]
    binding = rbac.read_cluster_role_binding(RELEASE)
    assert binding.role_ref.name == RELEASE
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("ServiceAccount", RELEASE, NAMESPACE)]
    core = api("CoreV1Api", client)
    assert core.read_namespaced_service_account(RELEASE, NAMESPACE).metadata.name == RELEASE

    deployment = api("AppsV1Api", client).read_namespaced_deployment(RELEASE,
                                                                                NAMESPACE)
    assert deployment.spec.replicas == 2
    (container,) = deployment.spec.template.spec.containers
    assert container.command == ["python", "-m", "optimus.kube"]
    assert deployment.spec.template.spec.service_account_name == RELEASE
    service = core.read_namespaced_service(f"{RELEASE}-metrics", NAMESPACE)
    assert [port.name for port in service.spec.ports] == ["metrics"]
    dashboards = core.list_namespaced_config_map(NAMESPACE, label_selector="grafana_dashboard=1")
    assert len(dashboards.items) == len(list((CHART / "dashboards").glob("*.json")))

    custom = api("CustomObjectsApi", client)
    peering = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings",
                                               "optimus")
    assert peering["metadata"]["name"] == "optimus"
    [sample] = [doc for doc in yaml.safe_load_all(
        (ROOT / "manifests" / "samples" / "tiny-cpu.yaml").read_text())
        if doc["kind"] == "TrainingJob"]
    created = custom.create_namespaced_custom_object("optimus.dev", "v1alpha1", "default",
                                                     "trainingjobs", sample)
    assert created["spec"]["task"] == "mlp"

    assert RELEASE in helm(kubeconfig, "list", "--namespace", NAMESPACE, "-q").split()
    helm(kubeconfig, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait",
         "--timeout", "60s")
    names = {d.metadata.name for d in api("AppsV1Api", client)
             .list_namespaced_deployment(NAMESPACE).items}
    assert RELEASE not in names
    remaining = {crd.metadata.name for crd in
                 api("ApiextensionsV1Api", client)
                 .list_custom_resource_definition().items}
    assert "trainingjobs.optimus.dev" in remaining, "helm keeps crds/ (and the jobs) installed"
    assert custom.get_namespaced_custom_object("optimus.dev", "v1alpha1", "default",
                                               "trainingjobs", "tiny-cpu")


def test_helm_install_namespaced_rbac(local_cluster: LocalCluster) -> None:
    kubeconfig = local_cluster.kubeconfig
    client = api_client(kubeconfig)
    core = api("CoreV1Api", client)
    core.create_namespace({"metadata": {"name": "team-a"}})
    helm(kubeconfig, "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--create-namespace", "--set", "rbac.scope=namespaced",
         "--set", "operator.watchNamespaces={team-a}", "--set", "dashboards.enabled=false")
    rbac = api("RbacAuthorizationV1Api", client)
    role = rbac.read_namespaced_role(RELEASE, "team-a")
    assert {resource for rule in role.rules for resource in rule.resources} >= {
        "trainingjobs", "pods", "services", "kopfpeerings"}
    cluster_role = rbac.read_cluster_role(f"{RELEASE}-cluster-reads")
    assert {resource for rule in cluster_role.rules for resource in rule.resources} == {
        "nodes", "pods", "customresourcedefinitions"}
    assert {verb for rule in cluster_role.rules for verb in rule.verbs} <= {"list", "watch"}
    peering = api("CustomObjectsApi", client).get_namespaced_custom_object(
        "kopf.dev", "v1", "team-a", "kopfpeerings", "optimus")
    assert peering["metadata"]["namespace"] == "team-a"
    deployment = api("AppsV1Api", client).read_namespaced_deployment(RELEASE,
                                                                                NAMESPACE)
    env = {item.name: item.value for item in deployment.spec.template.spec.containers[0].env}
    assert env["OPTIMUS_NAMESPACES"] == "team-a"

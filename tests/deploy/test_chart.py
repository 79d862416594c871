"""The Helm chart: lint, render, the CRD copies, RBAC, the operator Deployment, the monitoring
objects and the generated README, with the default values and every CI values file."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from optimus.kube.config import load_config
from optimus.metrics.names import DEFAULT_OPERATOR_METRICS_PORT
from optimus.scheduling import OPERATOR_POLICY_NAMES
from optimus_worker.contract import METRICS_PORT_NAME, POD_LABEL_MANAGED, POD_LABEL_MANAGED_VALUE

from e2e.dashboards import ALERTS_FILE, DASHBOARDS_DIR

from .support import CHART, ROOT, VARIANTS, load_file, load_hack_script

VALUES_SCHEMA = CHART / "values.schema.json"

Render = Callable[..., list[dict[str, Any]]]
VARIANT_IDS = [name for name, _ in VARIANTS]
VARIANT_ARGS = [args for _, args in VARIANTS]
STANDARD_LABELS = ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by")
# The operator's configuration, agreed with the operator (python -m optimus.kube).
OPERATOR_ENV = {"OPTIMUS_PROMETHEUS_URL", "OPTIMUS_INTERVAL_SECONDS",
                "OPTIMUS_RESTART_COST_SECONDS", "OPTIMUS_POLICY", "OPTIMUS_NAMESPACES",
                "OPTIMUS_METRICS_PORT", "OPTIMUS_HEALTH_PORT", "OPTIMUS_PEERING",
                "OPTIMUS_KNOWLEDGE_CONFIGMAP", "OPTIMUS_KNOWLEDGE_NAMESPACE"}


def _of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = _of_kind(docs, kind)
    return doc


# ---- CRDs: identical copies of manifests/ ------------------------------------------------
def test_chart_crds_are_identical_copies_of_the_manifests() -> None:
    sources = {path.name: path for pattern in ("manifests/crd/*.yaml", "manifests/peering/*.yaml")
               for path in ROOT.glob(pattern)}
    copies = {path.name: path for path in (CHART / "crds").glob("*.yaml")}
    assert "trainingjobs.optimus.dev.yaml" in sources
    assert set(copies) == set(sources), "run hack/sync-crd.sh"
    stale = [name for name in sources if copies[name].read_bytes() != sources[name].read_bytes()]
    assert not stale, f"charts/optimus/crds/ differs for {stale}: run hack/sync-crd.sh"


def test_chart_carries_the_kopf_peering_crds() -> None:
    crds = [doc for path in (CHART / "crds").glob("*.yaml") for doc in load_file(path)]
    kinds = {(doc["spec"]["names"]["kind"], doc["spec"]["scope"]) for doc in crds}
    assert {("TrainingJob", "Namespaced"), ("ClusterKopfPeering", "Cluster"),
            ("KopfPeering", "Namespaced")} <= kinds
    for doc in crds:
        if doc["spec"]["group"] == "kopf.dev":
            # kopf patches `status` on the object itself: a status subresource would drop it.
            assert all("subresources" not in version for version in doc["spec"]["versions"])


# ---- lint and render -----------------------------------------------------------------------
@pytest.mark.parametrize("args", VARIANT_ARGS, ids=VARIANT_IDS)
def test_helm_lint_strict(helm: str, args: list[str]) -> None:
    result = subprocess.run([helm, "lint", "--strict", str(CHART), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("args", VARIANT_ARGS, ids=VARIANT_IDS)
def test_every_object_has_standard_labels_and_a_short_name(render: Render,
                                                           args: list[str]) -> None:
    docs = render(*args)
    assert docs
    for doc in docs:
        meta = doc["metadata"]
        assert len(meta["name"]) <= 63, meta["name"]
        missing = [label for label in STANDARD_LABELS if label not in meta.get("labels", {})]
        assert not missing, f"{doc['kind']}/{meta['name']} lacks {missing}"


@pytest.mark.parametrize("args", VARIANT_ARGS, ids=VARIANT_IDS)
def test_operator_deployment_is_hardened_and_probed(render: Render, args: list[str]) -> None:
    deployment = _one(render(*args), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "optimus.kube"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= set(container["resources"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert set(env) >= OPERATOR_ENV
    assert ports["health"] == int(env["OPTIMUS_HEALTH_PORT"])
    # the knowledge store's ConfigMap is where the knowledge Role grants it
    assert (env["OPTIMUS_KNOWLEDGE_NAMESPACE"], env["OPTIMUS_KNOWLEDGE_CONFIGMAP"]) == (
        "optimus-system", "optimus-knowledge")
    assert ports["metrics"] == int(env["OPTIMUS_METRICS_PORT"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("args", VARIANT_ARGS, ids=VARIANT_IDS)
def test_the_operator_accepts_the_rendered_configuration(render: Render,
                                                         args: list[str]) -> None:
    (container,) = _one(render(*args), "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    config, _ = load_config([], env)  # optimus.kube's own parser: raises on a bad value
    assert config.metrics_port == int(env["OPTIMUS_METRICS_PORT"])
    assert config.health_port == int(env["OPTIMUS_HEALTH_PORT"])
    assert ",".join(config.namespaces) == env["OPTIMUS_NAMESPACES"]
    assert config.peering == env["OPTIMUS_PEERING"]


def test_chart_policies_are_the_operators() -> None:
    schema = json.loads(VALUES_SCHEMA.read_text())
    policies = schema["properties"]["operator"]["properties"]["policy"]["enum"]
    assert tuple(policies) == OPERATOR_POLICY_NAMES


def test_defaults_run_two_peered_replicas_watching_all_namespaces(render: Render) -> None:
    docs = render()
    deployment = _one(docs, "Deployment")
    env = {item["name"]: item.get("value")
           for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert deployment["spec"]["replicas"] == 2
    assert env["OPTIMUS_NAMESPACES"] == ""
    assert env["OPTIMUS_METRICS_PORT"] == str(DEFAULT_OPERATOR_METRICS_PORT)
    peering = _one(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == env["OPTIMUS_PEERING"] == "optimus"
    assert _one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not _of_kind(docs, "ServiceMonitor") and not _of_kind(docs, "PodMonitor")


def test_namespaced_peering_gets_a_peering_object_per_namespace(render: Render) -> None:
    docs = render("--set", "rbac.scope=namespaced", "--set", "operator.watchNamespaces={a,b}")
    assert {(doc["metadata"]["namespace"], doc["metadata"]["name"])
            for doc in _of_kind(docs, "KopfPeering")} == {("a", "optimus"), ("b", "optimus")}
    assert not _of_kind(docs, "ClusterKopfPeering")


@pytest.mark.parametrize(("values", "message"), [
    (["--set", "rbac.scope=namespaced"], "needs operator.watchNamespaces"),
    (["--set", "operator.peering=", "--set", "replicaCount=3"], "needs operator.peering"),
])
def test_broken_value_combinations_fail_with_the_fix(helm: str, values: list[str],
                                                     message: str) -> None:
    result = subprocess.run([helm, "template", "optimus", str(CHART), *values],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr


# ---- values.schema.json: unknown keys and wrong types refused ------------------------------
#: objects passed through to Kubernetes as they are: the schema names their first-level
#: fields (a typo there is refused) but values.yaml sets only some of them
KUBERNETES_OBJECTS = frozenset({"podSecurityContext", "securityContext", "resources",
                                "affinity", "tolerations[]", "operator.extraEnv[]"})


def _schema_objects(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every object schema with properties, by dotted path (`[]` for list items)."""
    found: list[tuple[str, dict[str, Any]]] = []
    if "properties" in schema:
        found.append((path, schema))
        for key, child in schema["properties"].items():
            found += _schema_objects(child, f"{path}.{key}" if path else key)
    if isinstance(schema.get("items"), dict):
        found += _schema_objects(schema["items"], f"{path}[]")
    return found


def test_values_schema_closes_every_object_and_matches_values_yaml() -> None:
    schema = json.loads(VALUES_SCHEMA.read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    objects = _schema_objects(schema)
    assert len(objects) > 10
    for path, node in objects:
        assert node.get("additionalProperties") is False, f"{path or 'top level'} is open"
        if path in KUBERNETES_OBJECTS or "[]" in path:
            continue
        default = values
        for part in filter(None, path.split(".")):
            default = default[part]
        # a key only in the schema would be an undocumented value (the README comes from
        # values.yaml); one only in values.yaml would be refused by helm itself
        assert set(node["properties"]) == set(default), path


@pytest.mark.parametrize(("values", "refusal"), [
    (["--set", "operator.polcy=foo"], "additional properties 'polcy' not allowed"),
    (["--set", "replicaCount=abc"], "at '/replicaCount': got string, want integer"),
    (["--set", "replicaCount=-1"], "at '/replicaCount'"),
    (["--set", "replicaConut=2"], "additional properties 'replicaConut' not allowed"),
    (["--set", "monitoring.podMonitor.enable=true"],
     "additional properties 'enable' not allowed"),
    (["--set", "operator.policy=nonsense"], "at '/operator/policy': value must be one of"),
    (["--set", "rbac.scope=everything"], "value must be one of 'cluster', 'namespaced'"),
    (["--set", "operator.intervalSeconds=0"], "at '/operator/intervalSeconds'"),
    (["--set", "operator.metricsPort=70000"], "at '/operator/metricsPort'"),
    (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
    (["--set", "securityContext.readOnlyRootFilesytem=true"],
     "additional properties 'readOnlyRootFilesytem' not allowed"),
    (["--set", "tolerations[0].effect=NoSchedul"], "at '/tolerations/0/effect'"),
    (["--set", "podLabels.team=1"], "at '/podLabels/team': got number, want string"),
])
@pytest.mark.parametrize("command", [["lint", "--strict"], ["template", "optimus"],
                                     ["install", "optimus", "--dry-run=client"]],
                         ids=["lint", "template", "install"])
def test_helm_refuses_unknown_and_mistyped_values(helm: str, command: list[str],
                                                  values: list[str], refusal: str,
                                                  tmp_path: Path) -> None:
    # install --dry-run=client reads no cluster; an empty kubeconfig makes sure of it
    env = {"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([helm, *command, str(CHART), *values], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode != 0, result.stdout
    assert refusal in result.stdout + result.stderr


# ---- RBAC: exactly what the operator does ----------------------------------------------------
Grant = tuple[str, str, str]  # (API group, resource, verb)
KUBE_DIR = ROOT / "operator" / "optimus" / "kube"
API_CALL = re.compile(r"\.(core|custom)\.(list|read|create|delete|patch|replace|watch)_(\w+)")
VERB = {"read": "get", "replace": "update"}
# What kopf itself does beyond the operator's own calls (kopf 1.4x: peering, posting,
# observation of namespaces and CRDs, its finalizer and progress annotations).
KOPF_NEEDS: set[Grant] = {
    ("optimus.dev", "trainingjobs", "list"), ("optimus.dev", "trainingjobs", "watch"),
    ("optimus.dev", "trainingjobs", "patch"), ("", "events", "create"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}
KOPF_ALL_NAMESPACES: set[Grant] = {("", "namespaces", "list"), ("", "namespaces", "watch")}
# kopf's indices of pods and nodes (optimus.kube.handlers): a list, then a watch, cluster-wide
KOPF_INDICES: set[Grant] = {(group, resource, verb) for group, resource in (("", "pods"),
                                                                            ("", "nodes"))
                            for verb in ("list", "watch")}


# The knowledge store's ConfigMap (optimus.kube.store): a Role in its one namespace, get and
# update limited to its name
KNOWLEDGE: set[Grant] = {("", "configmaps", verb) for verb in ("get", "create", "update")}


def _knowledge_role(docs: list[dict[str, Any]], namespace: str) -> dict[str, Any]:
    (role,) = [r for r in _of_kind(docs, "Role") if r["metadata"]["name"].endswith("knowledge")]
    assert role["metadata"]["namespace"] == namespace
    assert _grants(role) == KNOWLEDGE
    for rule in role["rules"]:
        if set(rule["verbs"]) & {"get", "update"}:
            assert rule["resourceNames"] == ["optimus-knowledge"]
    (binding,) = [b for b in _of_kind(docs, "RoleBinding")
                  if b["roleRef"]["name"] == role["metadata"]["name"]]
    assert binding["metadata"]["namespace"] == namespace
    return role


def _peering(resource: str) -> set[Grant]:
    return {("kopf.dev", resource, verb) for verb in ("get", "list", "watch", "patch")}


def operator_api_calls() -> tuple[set[Grant], set[Grant]]:
    """(namespaced, cluster-wide) grants the kubernetes-client calls in optimus/kube/ need."""
    from optimus.api.spec import GROUP, PLURAL

    namespaced: set[Grant] = set()
    cluster_wide: set[Grant] = set()
    for path in KUBE_DIR.glob("*.py"):
        source = path.read_text()
        apis = set(re.findall(r"kubernetes\.client\.(\w+Api)\(", source))
        assert apis <= {"CoreV1Api", "CustomObjectsApi"}, \
            f"{path.name} uses {apis}: teach this test (and the chart's RBAC) the new API"
        for api, verb, rest in API_CALL.findall(source):
            scope = cluster_wide if ("_for_all_namespaces" in rest or rest == "node"
                                     or rest.startswith("cluster_")) else namespaced
            if api == "custom":
                sub = next((f"/{s}" for s in ("status", "scale") if rest.endswith(f"_{s}")), "")
                scope.add((GROUP, PLURAL + sub, VERB.get(verb, verb)))
            else:
                kind = rest.removeprefix("namespaced_").removesuffix("_for_all_namespaces")
                scope.add(("", kind.replace("_", "") + "s", VERB.get(verb, verb)))
    return namespaced, cluster_wide


def _grants(role: dict[str, Any]) -> set[Grant]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_the_operator_api_calls_are_found() -> None:
    namespaced, cluster_wide = operator_api_calls()
    assert ("", "pods", "create") in namespaced
    assert ("optimus.dev", "trainingjobs/status", "patch") in namespaced
    assert ("", "nodes", "list") in cluster_wide
    assert namespaced >= KNOWLEDGE


def test_cluster_rbac_grants_exactly_what_the_operator_and_kopf_use(render: Render) -> None:
    docs = render()
    role = _one(docs, "ClusterRole")
    namespaced, cluster_wide = operator_api_calls()
    needed = (namespaced - KNOWLEDGE) | cluster_wide | KOPF_NEEDS | KOPF_ALL_NAMESPACES | (
        KOPF_INDICES | _peering("clusterkopfpeerings"))
    granted = _grants(role)
    assert needed - granted == set(), "the operator would be forbidden these"
    assert granted - needed == set(), "granted but never used: drop them (least privilege)"
    binding = _one(docs, "ClusterRoleBinding")
    account = _one(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]
    knowledge = _knowledge_role(docs, "optimus-system")
    assert _of_kind(docs, "Role") == [knowledge], "no Role but the knowledge store's"
    assert not _of_kind(render("--set", "operator.knowledge.configMap="), "Role")
    _knowledge_role(render("--set", "operator.knowledge.namespace=ops"), "ops")


def test_namespaced_rbac_reads_only_capacity_cluster_wide(render: Render) -> None:
    docs = render("--set", "rbac.scope=namespaced", "--set", "operator.watchNamespaces={a,b}")
    namespaced, cluster_wide = operator_api_calls()
    # a namespaced operator lists its jobs per namespace (kopf's watchers): the cluster-wide
    # list of TrainingJobs serves the cluster scope only
    cluster_wide -= {("optimus.dev", "trainingjobs", "list")}
    (cluster_role,) = _of_kind(docs, "ClusterRole")
    cluster_grants = _grants(cluster_role)
    kopf_cluster = {grant for grant in KOPF_NEEDS if grant[1] == "customresourcedefinitions"}
    assert cluster_grants == cluster_wide | kopf_cluster | KOPF_INDICES
    assert {verb for _, _, verb in cluster_grants} <= {"get", "list", "watch"}, "read-only"
    knowledge = _knowledge_role(docs, "optimus-system")
    roles = [r for r in _of_kind(docs, "Role") if r != knowledge]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["a", "b"]
    for role in roles:
        assert _grants(role) == (namespaced - KNOWLEDGE) | (KOPF_NEEDS - kopf_cluster) | (
            _peering("kopfpeerings"))
    bindings = [b for b in _of_kind(docs, "RoleBinding")
                if b["roleRef"]["name"] != knowledge["metadata"]["name"]]
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == ["a", "b"]


def test_every_rbac_rule_is_justified_by_a_comment() -> None:
    lines = (CHART / "templates" / "rbac.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            assert lines[number - 1].startswith("#"), f"rbac.yaml:{number + 1} has no comment"


# ---- monitoring --------------------------------------------------------------------------
def test_monitors_select_the_training_pods_and_the_operator(render: Render) -> None:
    docs = render("--set", "monitoring.podMonitor.enabled=true",
                  "--set", "monitoring.serviceMonitor.enabled=true")
    pod_monitor = _one(docs, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        POD_LABEL_MANAGED: POD_LABEL_MANAGED_VALUE}
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == METRICS_PORT_NAME and endpoint["honorLabels"] is True
    service_monitor = _one(docs, "ServiceMonitor")
    service = _one(docs, "Service")
    assert service_monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    (endpoint,) = service_monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert endpoint["honorLabels"] is True
    # The OptimusOperatorDown alert matches this scrape job label.
    assert {"targetLabel": "job", "replacement": "optimus-operator"} in endpoint["relabelings"]
    assert 'up{job="optimus-operator"}' in ALERTS_FILE.read_text()


def test_prometheus_rule_embeds_the_alerts_file(render: Render) -> None:
    rule = _one(render("--set", "monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS_FILE.read_text())


@pytest.mark.parametrize("args", VARIANT_ARGS, ids=VARIANT_IDS)
def test_dashboard_configmaps_carry_each_json_for_the_sidecar(render: Render,
                                                              args: list[str]) -> None:
    configmaps = _of_kind(render(*args), "ConfigMap")
    overrides = yaml.safe_load(Path(args[1]).read_text()) if args else {}
    if not overrides.get("dashboards", {}).get("enabled", True):
        assert not configmaps
        return
    shipped = {}
    for configmap in configmaps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        shipped.update(configmap["data"])
    sources = {path.name: path for path in DASHBOARDS_DIR.glob("*.json")}
    assert set(shipped) == set(sources)
    for name, text in shipped.items():
        assert json.loads(text) == json.loads(sources[name].read_text())


# ---- the generated README ------------------------------------------------------------------
def test_chart_readme_is_generated_from_the_values() -> None:
    chart_readme = load_hack_script("chart_readme")
    assert chart_readme.main(["--check"]) == 0, "run .venv/bin/python hack/chart_readme.py"
    documented = {value.key for value in chart_readme.parse_values(
        (CHART / "values.yaml").read_text())}
    assert {"replicaCount", "operator.prometheusUrl", "rbac.scope",
            "monitoring.podMonitor.enabled", "dashboards.labels"} <= documented


def test_chart_readme_generator_rejects_an_undocumented_value() -> None:
    chart_readme = load_hack_script("chart_readme")
    text = "# -- documented\na: 1\nsection:\n  # -- fine\n  b: 2\n  c: 3\n"
    with pytest.raises(chart_readme.UndocumentedValue, match=r"section\.c"):
        chart_readme.parse_values(text)
    values = chart_readme.parse_values(text.replace("  c: 3\n", "  # -- also fine\n  c: 3\n"))
    assert [(v.key, v.default, v.description) for v in values] == [
        ("a", 1, "documented"), ("section.b", 2, "fine"), ("section.c", 3, "also fine")]


# ---- packaging and Kubernetes versions --------------------------------------------------------
def test_chart_package_ships_sources_but_not_tests(helm: str, tmp_path: Path) -> None:
    result = subprocess.run([helm, "package", str(CHART), "--destination", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("optimus-*.tgz")
    with tarfile.open(archive) as tar:
        members = {name.split("/", 1)[1] for name in tar.getnames()}
    assert {"Chart.yaml", "values.yaml", "README.md", "templates/NOTES.txt",
            "crds/trainingjobs.optimus.dev.yaml", "crds/kopf-peering-crds.yaml",
            "rules/optimus-alerts.yaml", "prometheus/scrape-configs.yaml",
            "dashboards/optimus-cluster.json", "dashboards/optimus-job.json"} <= members
    assert not [name for name in members if name.startswith("ci/") or ".test." in name]


@pytest.mark.parametrize(("version", "ok"), [("1.27.9", False), ("1.28.0", True),
                                             ("1.35.0", True)])
def test_chart_requires_kubernetes_1_28(helm: str, version: str, ok: bool) -> None:
    result = subprocess.run([helm, "template", "optimus", str(CHART), "--kube-version", version],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode == 0) == ok, result.stderr

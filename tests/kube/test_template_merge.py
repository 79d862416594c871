"""The pod template is the user's: every field of it survives into the built pods, merged
with what the operator adds, and the operator's node pin is ANDed with the template's
required node affinity instead of replacing it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus.affinity import parse_node_requirements
from optimus.api import parse_training_job
from optimus.api.status import AllocationStatus
from optimus.kube import builders

from tests.api.conftest import RAW_JOB

ALLOCATION = AllocationStatus(ps=1, workers=2, generation=3, ps_nodes=("n1",),
                              worker_nodes=("n1", "n2"))
GPU_PRODUCT = "nvidia.com/gpu.product"


def _worker(spec_fields: dict[str, Any] | None = None,
            container_fields: dict[str, Any] | None = None,
            metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Worker 1 (on n2) of RAW_JOB with these fields added to its worker template."""
    raw = copy.deepcopy(RAW_JOB)
    template = raw["spec"]["workers"]["template"]
    template["spec"].update(copy.deepcopy(spec_fields or {}))
    template["spec"]["containers"][0].update(copy.deepcopy(container_fields or {}))
    if metadata:
        template["metadata"] = copy.deepcopy(metadata)
    return builders.build_pod(parse_training_job(raw), "worker", 1, "n2", ALLOCATION)


def _required_terms(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


PIN = {"key": "metadata.name", "operator": "In", "values": ["n2"]}
GPU_TERM = {"matchExpressions": [{"key": GPU_PRODUCT, "operator": "In",
                                  "values": ["NVIDIA-A100-SXM4-80GB"]}]}


@pytest.mark.parametrize(("field", "value"), [
    ("nodeSelector", {"cloud.google.com/gke-nodepool": "gpu-pool"}),
    ("tolerations", [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
    ("priorityClassName", "training-high"),
    ("securityContext", {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000}),
    ("serviceAccountName", "trainer"),
    ("imagePullSecrets", [{"name": "regcred"}]),
    ("schedulerName", "volcano"),
    ("runtimeClassName", "nvidia"),
    ("terminationGracePeriodSeconds", 120),
    ("topologySpreadConstraints", [{"maxSkew": 1, "topologyKey": "zone",
                                    "whenUnsatisfiable": "ScheduleAnyway"}]),
    ("initContainers", [{"name": "fetch", "image": "busybox", "command": ["true"]}]),
    ("dnsConfig", {"options": [{"name": "ndots", "value": "2"}]}),
    ("shareProcessNamespace", True),
])
def test_every_pod_spec_field_of_the_template_survives(field: str, value: Any) -> None:
    assert _worker({field: value})["spec"][field] == value


@pytest.mark.parametrize(("field", "value"), [
    ("args", ["--epochs", "3"]),
    ("workingDir", "/work"),
    ("securityContext", {"readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}),
    ("livenessProbe", {"exec": {"command": ["true"]}, "periodSeconds": 30}),
    ("imagePullPolicy", "Always"),
    ("envFrom", [{"secretRef": {"name": "wandb"}}]),
])
def test_every_container_field_of_the_template_survives(field: str, value: Any) -> None:
    assert _worker(container_fields={field: value})["spec"]["containers"][0][field] == value


def test_volumes_mounts_env_and_resources_are_merged_with_the_operators() -> None:
    pod = _worker(
        {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "imagenet"}},
                     {"name": "shm", "emptyDir": {"medium": "Memory"}}]},
        {"volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True},
                          {"name": "shm", "mountPath": "/dev/shm"}],
         "env": [{"name": "NCCL_DEBUG", "value": "INFO"},
                 {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
         "resources": {"requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "10Gi"},
                       "limits": {"nvidia.com/gpu": 1, "hugepages-2Mi": "1Gi"}}})
    spec = pod["spec"]
    container = spec["containers"][0]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "imagenet"}}
    assert volumes["shm"] == {"name": "shm", "emptyDir": {"medium": "Memory"}}
    assert builders.CHECKPOINT_VOLUME in volumes
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"] == {"name": "data", "mountPath": "/data", "readOnly": True}
    assert mounts["shm"]["mountPath"] == "/dev/shm"
    assert mounts[builders.CHECKPOINT_VOLUME]["mountPath"] == "/ckpt"
    env = container["env"]
    assert {"name": "NCCL_DEBUG", "value": "INFO"} in env
    assert {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}} in env
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "10Gi"},
        "limits": {"nvidia.com/gpu": "1", "hugepages-2Mi": "1Gi"}}


def test_template_labels_and_annotations_are_kept_beside_the_operators() -> None:
    pod = _worker(metadata={"labels": {"team": "vision", "kueue.x-k8s.io/queue-name": "q"},
                            "annotations": {"sidecar.istio.io/inject": "false"}})
    labels = pod["metadata"]["labels"]
    assert labels["team"] == "vision" and labels["kueue.x-k8s.io/queue-name"] == "q"
    assert labels[builders.contract.POD_LABEL_JOB] == "mnist"
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}


@pytest.mark.parametrize(("affinity", "terms"), [
    (None, [{"matchFields": [PIN]}]),
    ({}, [{"matchFields": [PIN]}]),
    ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [GPU_TERM]}}},
     [{**GPU_TERM, "matchFields": [PIN]}]),
    ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [GPU_TERM, {"matchExpressions": [
            {"key": "gpu-count", "operator": "Gt", "values": ["3"]}]}]}}},
     [{**GPU_TERM, "matchFields": [PIN]},
      {"matchExpressions": [{"key": "gpu-count", "operator": "Gt", "values": ["3"]}],
       "matchFields": [PIN]}]),
])
def test_the_pin_is_anded_with_each_required_term(affinity: dict[str, Any] | None,
                                                  terms: list[dict[str, Any]]) -> None:
    pod = _worker({} if affinity is None else {"affinity": affinity})
    assert _required_terms(pod) == terms


def test_a_required_gpu_product_survives_the_pin() -> None:
    """The bug this replaces: the pin used to overwrite nodeAffinity, and the template's
    GPU-product requirement vanished from the pods."""
    pod = _worker({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [GPU_TERM]}}}})
    requirements = parse_node_requirements(pod["spec"])
    assert requirements.matches_labels("n2", {GPU_PRODUCT: "NVIDIA-A100-SXM4-80GB"})
    assert not requirements.matches_labels("n2", {GPU_PRODUCT: "Tesla-T4"})
    assert not requirements.matches_labels("n1", {GPU_PRODUCT: "NVIDIA-A100-SXM4-80GB"})


def test_preferred_terms_and_pod_affinities_are_kept() -> None:
    preferred = [{"weight": 50, "preference": GPU_TERM}]
    pod_affinity = {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "podAffinityTerm": {"topologyKey": "zone",
                                           "labelSelector": {"matchLabels": {"a": "b"}}}}]}
    anti = {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname",
         "labelSelector": {"matchLabels": {"app": "noisy"}}}]}
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": preferred},
                "podAffinity": pod_affinity, "podAntiAffinity": anti}
    merged = _worker({"affinity": affinity})["spec"]["affinity"]
    assert merged["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert merged["podAffinity"] == pod_affinity
    assert merged["podAntiAffinity"] == anti
    assert merged["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchFields": [PIN]}]}


# ---- properties --------------------------------------------------------------------------------
KEYS = st.sampled_from([GPU_PRODUCT, "zone", "gpu-count", "pool"])
VALUES = st.sampled_from(["a", "b", "1", "4", "16"])


@st.composite
def expressions(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]))
    values: list[str] = []
    if operator in ("In", "NotIn"):
        values = draw(st.lists(VALUES, min_size=1, max_size=3))
    elif operator in ("Gt", "Lt"):
        values = [str(draw(st.integers(0, 20)))]
    return {"key": draw(KEYS), "operator": operator, "values": values}


TERMS = st.lists(st.fixed_dictionaries({"matchExpressions": st.lists(expressions(), min_size=1,
                                                                      max_size=3)}),
                 min_size=1, max_size=3)
LABELS = st.dictionaries(KEYS, VALUES, max_size=4)
NAMES = st.sampled_from(["n1", "n2", "n3"])


@given(TERMS, LABELS, NAMES)
def test_a_pinned_pod_fits_exactly_the_pinned_node_when_the_template_does(
        terms: list[dict[str, Any]], labels: dict[str, str], name: str) -> None:
    template = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}}
    before = copy.deepcopy(template)
    merged = builders.pin_to_node(template, "n2")
    assert template == before  # the template itself is never changed
    wanted = parse_node_requirements({"affinity": template})
    pinned = parse_node_requirements({"affinity": merged})
    assert pinned.matches_labels(name, labels) == (
        name == "n2" and wanted.matches_labels(name, labels))


JSON_LEAVES = st.one_of(st.booleans(), st.integers(-5, 5), st.sampled_from(["", "x", "Gi"]))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=2), st.dictionaries(st.sampled_from("abc"), inner, max_size=2)),
    max_leaves=4)
#: real PodSpec fields the operator neither owns (containers, volumes, hostname, subdomain,
#: restartPolicy, affinity) nor reads (nodeSelector, tolerations: tested above), and
#: made-up ones (fields of a later API)
FIELD_NAMES = st.sampled_from([
    "priorityClassName", "priority", "securityContext",
    "overhead", "readinessGates", "hostAliases", "os", "resourceClaims", "schedulingGates",
    "preemptionPolicy", "enableServiceLinks", "hostIPC", "futureField", "zzz"])


@given(st.dictionaries(FIELD_NAMES, JSON, max_size=5))
def test_any_field_the_operator_does_not_own_passes_through(fields: dict[str, Any]) -> None:
    spec = _worker(fields)["spec"]
    for key, value in fields.items():
        assert spec[key] == value

"""Every manifest validates: the plain manifests and the rendered chart against Kubernetes'
schemas (kubernetes-validate, 1.28 and the newest it knows), custom kinds against their CRD
or a minimal prometheus-operator schema, and the sample TrainingJobs against the CRD."""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from optimus.api.spec import parse_training_job

from .support import ROOT, VARIANTS, load_file, load_hack_script

KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
MANIFESTS = sorted((ROOT / "manifests").rglob("*.yaml"))
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))
#: the worked examples of docs/train-your-own-model.md (a TrainingJob and what it needs)
EXAMPLES = sorted((ROOT / "examples").glob("*/*.yaml"))
CRD_FILES = sorted((ROOT / "manifests" / "crd").glob("*.yaml")) + sorted(
    (ROOT / "manifests" / "peering").glob("*.yaml"))
MONITORING_SCHEMAS = Path(__file__).parent / "schemas" / "monitoring.coreos.com-v1.yaml"


@cache
def custom_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> validator, for the kinds Kubernetes' schemas do not have."""
    validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
    for path in CRD_FILES:
        for crd in load_file(path):
            spec = crd["spec"]
            for version in spec["versions"]:
                # CRD schemas are OpenAPI v3.0: draft 4's keywords (boolean exclusiveMinimum).
                validators[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = \
                    jsonschema.Draft4Validator(version["schema"]["openAPIV3Schema"])
    monitoring = yaml.safe_load(MONITORING_SCHEMAS.read_text())
    for kind, schema in monitoring["kinds"].items():
        full = {**schema, "definitions": monitoring["definitions"]}
        jsonschema.Draft4Validator.check_schema(full)
        validators[("monitoring.coreos.com/v1", kind)] = jsonschema.Draft4Validator(full)
    return validators


def validate(doc: dict[str, Any], version: str) -> None:
    """Raise with a readable message when `doc` is not a valid object of its kind."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    name = f"{key[1]}/{doc.get('metadata', {}).get('name')}"
    validator = custom_validators().get(key)
    if validator is not None:
        errors = sorted(validator.iter_errors(doc), key=lambda error: list(error.path))
        assert not errors, f"{name}: " + "; ".join(
            f"{'.'.join(map(str, error.path))}: {error.message}" for error in errors)
        return
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise AssertionError(f"{name} (Kubernetes {version}): {error.message} at "
                             f"{'.'.join(map(str, error.path))}") from None


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_manifest_validates(path: Path, version: str) -> None:
    docs = load_file(path)
    assert docs, f"{path} holds no objects"
    for doc in docs:
        validate(doc, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("args", [args for _, args in VARIANTS],
                         ids=[name for name, _ in VARIANTS])
def test_rendered_chart_validates(render: Callable[..., list[dict[str, Any]]], args: list[str],
                                  version: str) -> None:
    for doc in render(*args):
        validate(doc, version)


def test_the_validators_catch_mistakes() -> None:
    (service_monitor_file,) = [p for p in MANIFESTS if p.name == "prometheus-operator.yaml"]
    monitor = next(doc for doc in load_file(service_monitor_file) if doc["kind"] == "PodMonitor")
    broken = copy.deepcopy(monitor)
    broken["spec"]["podMetricsEndpoints"][0]["honorLabel"] = True
    with pytest.raises(AssertionError, match="honorLabel"):
        validate(broken, KUBERNETES_VERSIONS[0])
    deployment = next(doc for doc in load_file(ROOT / "manifests/operator/operator.yaml")
                      if doc["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(AssertionError, match="readinesProbe"):
        validate(broken, KUBERNETES_VERSIONS[0])


def test_plain_manifests_are_rendered_from_the_chart(helm: str) -> None:
    render_manifests = load_hack_script("render_manifests")
    assert render_manifests.main(["--check"]) == 0, \
        "manifests/ is stale: run .venv/bin/python hack/render_manifests.py"


# ---- the sample TrainingJobs ---------------------------------------------------------------
def training_jobs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in load_file(path) if doc["kind"] == "TrainingJob"]


def _gpus(template: dict[str, Any]) -> int:
    return sum(int(container.get("resources", {}).get(part, {}).get("nvidia.com/gpu", 0))
               for container in template["spec"]["containers"] for part in ("limits",))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
def test_sample_training_job_matches_the_crd_and_the_parser(path: Path) -> None:
    jobs = training_jobs(path)
    assert jobs, f"{path.name} has no TrainingJob"
    for job in jobs:
        validate(job, KUBERNETES_VERSIONS[0])  # the CRD's openAPIV3Schema
        parse_training_job(job)  # the operator's own checks (CEL rules, quantities)
        for group in ("parameterServers", "workers"):
            template = job["spec"].get(group, {}).get("template")
            if template is not None:  # each pod template is a valid PodTemplateSpec
                for version in KUBERNETES_VERSIONS:
                    validate({"apiVersion": "v1", "kind": "PodTemplate",
                              "metadata": {"name": f"{job['metadata']['name']}-{group}"},
                              "template": template}, version)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.parent.name)
def test_example_manifests_are_valid_and_run_their_own_command(path: Path) -> None:
    test_sample_training_job_matches_the_crd_and_the_parser(path)
    for doc in load_file(path):
        if doc["kind"] != "TrainingJob":
            for version in KUBERNETES_VERSIONS:
                validate(doc, version)
    (job,) = training_jobs(path)
    spec = parse_training_job(job).spec
    assert spec.runs_command and spec.mode == "allreduce" and not spec.task
    claims = [doc["metadata"]["name"] for doc in load_file(path)
              if doc["kind"] == "PersistentVolumeClaim"
              and "ReadWriteMany" in doc["spec"]["accessModes"]]
    assert spec.checkpoint.volume == {"persistentVolumeClaim": {"claimName": claims[0]}}


def test_samples_cover_every_mode_and_a_tiny_cpu_job() -> None:
    jobs = {path.name: training_jobs(path)[0] for path in SAMPLES}
    modes = {job["spec"]["mode"] for job in jobs.values()}
    assert modes == {"ps-sync", "ps-async", "allreduce"}
    assert _gpus(jobs["ps-sync-gpu.yaml"]["spec"]["workers"]["template"]) >= 1
    tiny = jobs["tiny-cpu.yaml"]["spec"]
    assert tiny["task"] == "mlp" and tiny["convergence"]["maxEpochs"] <= 5
    assert tiny["workers"]["max"] <= 2
    assert all(_gpus(tiny[group]["template"]) == 0 for group in ("parameterServers", "workers"))


@pytest.mark.parametrize("path", SAMPLES, ids=[path.name for path in SAMPLES])
def test_sample_checkpoints_are_shared_by_every_node(path: Path) -> None:
    """A job's pods on several nodes all read the newest checkpoint: a claim must be
    ReadWriteMany and shipped beside the job; a hostPath (one node's disk) only in a sample
    whose comments say it is for a single node."""
    docs = load_file(path)
    claims = {doc["metadata"]["name"]: doc for doc in docs
              if doc["kind"] == "PersistentVolumeClaim"}
    for job in training_jobs(path):
        volume = job["spec"]["checkpoint"]["volume"]
        if "persistentVolumeClaim" in volume:
            claim = claims[volume["persistentVolumeClaim"]["claimName"]]
            assert claim["spec"]["accessModes"] == ["ReadWriteMany"], path.name
        elif "hostPath" in volume:
            assert "single node" in path.read_text(), path.name
        else:
            assert {"nfs", "cephfs", "csi"} & set(volume), (path.name, volume)


def test_the_crd_schema_rejects_a_broken_sample() -> None:
    job = copy.deepcopy(training_jobs(ROOT / "manifests/samples/tiny-cpu.yaml")[0])
    job["spec"]["mode"] = "gossip"
    job["spec"]["workers"]["min"] = 0
    with pytest.raises(AssertionError, match=r"spec\.mode.*spec\.workers\.min|"
                                             r"spec\.workers\.min.*spec\.mode"):
        validate(job, KUBERNETES_VERSIONS[0])

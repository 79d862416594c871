"""The CRD (manifests/crd/) agrees with the parser: same enums, bounds and defaults, a
structural schema (every property typed), and the subresources the operator relies on."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from optimus.api import conditions, spec
from optimus.api.status import MAX_LOSS_SAMPLES, MAX_SPEED_SAMPLES
from optimus_worker.contract import DEFAULT_CHECKPOINT_INTERVAL_STEPS, MODES

from e2e.localcluster import cel
from tests.api.conftest import RAW_JOB

CRD_PATH = Path(__file__).resolve().parents[2] / "manifests/crd/trainingjobs.optimus.dev.yaml"


def _crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def _version() -> dict[str, Any]:
    (version,) = _crd()["spec"]["versions"]
    return version


def _walk(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of schema nodes without a type (a structural schema has none)."""
    missing = [] if "type" in schema else [path or "<root>"]
    for name, child in (schema.get("properties") or {}).items():
        missing += _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        missing += _walk(schema["items"], f"{path}[]")
    return missing


def _undescribed(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of properties without a description (`kubectl explain` shows them bare)."""
    missing = [] if schema.get("description") else [path or "<root>"]
    for name, child in (schema.get("properties") or {}).items():
        missing += _undescribed(child, f"{path}.{name}")
    items = schema.get("items")
    if isinstance(items, dict) and "properties" in items:  # a list of objects
        missing += _undescribed(items, f"{path}[]")
    return missing


def _rules(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return list(schema.get("x-kubernetes-validations") or [])


def test_names() -> None:
    crd = _crd()
    assert crd["metadata"]["name"] == f"{spec.PLURAL}.{spec.GROUP}"
    assert crd["spec"]["group"] == spec.GROUP
    assert crd["spec"]["names"]["kind"] == spec.KIND
    assert "tj" in crd["spec"]["names"]["shortNames"]
    assert _version()["name"] == spec.VERSION


def test_schema_is_structural() -> None:
    assert _walk(_version()["schema"]["openAPIV3Schema"]) == []


def test_every_property_has_a_description() -> None:
    assert _undescribed(_version()["schema"]["openAPIV3Schema"]) == []


def test_the_name_limit_is_refused_at_apply_time_with_the_parsers_limit() -> None:
    (rule,) = _rules(_version()["schema"]["openAPIV3Schema"])
    assert rule["rule"] == f"self.metadata.name.size() <= {spec.MAX_NAME_LENGTH}"
    assert "metadata.name" in rule["message"] and str(spec.MAX_NAME_LENGTH) in rule["message"]


def test_schema_matches_parser() -> None:
    root = _version()["schema"]["openAPIV3Schema"]["properties"]
    props = root["spec"]["properties"]
    assert tuple(props["mode"]["enum"]) == MODES
    assert props["globalBatchSize"]["maximum"] == spec.MAX_GLOBAL_BATCH
    assert props["workers"]["properties"]["max"]["maximum"] == spec.MAX_WORKERS
    assert props["parameterServers"]["properties"]["max"]["maximum"] == spec.MAX_PS
    assert props["checkpoint"]["properties"]["mountPath"]["default"] == spec.DEFAULT_MOUNT_PATH
    assert (props["checkpoint"]["properties"]["intervalSteps"]["default"]
            == DEFAULT_CHECKPOINT_INTERVAL_STEPS)
    status = root["status"]["properties"]
    assert tuple(status["phase"]["enum"]) == conditions.PHASES
    model = status["model"]["properties"]
    assert model["lossSamples"]["maxItems"] == MAX_LOSS_SAMPLES
    assert model["speedSamples"]["maxItems"] == MAX_SPEED_SAMPLES
    rules = [r["rule"] for r in props["workers"]["x-kubernetes-validations"]]
    assert "self.min <= self.max" in rules


def test_subresources_and_columns() -> None:
    version = _version()
    assert version["subresources"]["status"] == {}
    scale = version["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.workers.max"
    assert scale["statusReplicasPath"] == ".status.allocation.workers"
    assert scale["labelSelectorPath"] == ".status.selector"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["selector"]["type"] == "string"
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    for name in ("Phase", "PS", "Workers", "Epoch", "Loss", "ETA", "Age"):
        assert name in columns
    # conditions are read by type, never by position
    assert all("conditions[0]" not in path for path in columns.values())


@pytest.mark.parametrize(("what", "changes", "valid"), [
    ("a task", {}, True),
    ("neither", {"task": None}, False),
    ("both", {"command": ["python", "train.py"]}, False),
    ("a command in allreduce", {"task": None, "mode": "allreduce",
                                "command": ["python", "train.py"]}, True),
    ("a command in ps-sync", {"task": None, "command": ["python", "train.py"]}, False),
])
def test_the_schema_and_the_parser_agree_on_what_a_job_runs(
        what: str, changes: dict[str, Any], valid: bool) -> None:
    job = copy.deepcopy(RAW_JOB)
    job["spec"].update(changes)
    job["spec"] = {k: v for k, v in job["spec"].items() if v is not None}
    if job["spec"]["mode"] == "allreduce":
        del job["spec"]["parameterServers"]
    rules = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "x-kubernetes-validations"]
    broken = [r["message"] for r in rules if not cel.holds(r["rule"], job["spec"])]
    try:
        spec.parse_training_job(job)
        parsed = True
    except spec.SpecError:
        parsed = False
    assert (not broken, parsed) == (valid, valid), (what, broken)

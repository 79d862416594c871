"""Parsing TrainingJobs: the typed result, and ten kinds of invalid jobs whose errors name
the field and the fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus.api import SpecError, parse_training_job
from optimus.api.spec import DEFAULT_MOUNT_PATH, DEFAULT_RESTART_LIMIT, QUEUE_NAME_LABEL
from optimus.resources import Resources

from tests.api.conftest import RAW_JOB


def test_valid_job_parses_to_typed_spec(raw_job: dict[str, Any]) -> None:
    job = parse_training_job(raw_job)
    assert job.meta.key == "ml/mnist"
    assert job.meta.generation == 2
    spec = job.spec
    assert spec.mode == "ps-sync"
    assert (spec.parameter_servers.min, spec.parameter_servers.max) == (1, 2)
    assert (spec.workers.min, spec.workers.max) == (1, 4)
    assert spec.workers.request == Resources(gpu=1.0, cpu=1.0, memory=2**30)
    assert spec.parameter_servers.request == Resources(gpu=0.0, cpu=0.5, memory=512 * 2**20)
    assert spec.convergence.max_epochs == 12
    assert spec.checkpoint.mount_path == "/ckpt"
    assert spec.restart_limit == DEFAULT_RESTART_LIMIT
    assert job.status.phase == "Pending"


def test_defaults(raw_job: dict[str, Any]) -> None:
    del raw_job["spec"]["convergence"], raw_job["spec"]["checkpoint"]["mountPath"]
    del raw_job["spec"]["mode"]
    spec = parse_training_job(raw_job).spec
    assert spec.mode == "ps-sync"
    assert spec.task == "mlp" and spec.command == () and not spec.runs_command
    assert spec.suspend is False and spec.image == ""
    assert spec.checkpoint.mount_path == DEFAULT_MOUNT_PATH
    assert spec.convergence.window >= 1


def test_a_command_job_runs_its_own_script_in_its_own_image(raw_job: dict[str, Any]) -> None:
    raw_job["spec"]["mode"] = "allreduce"
    del raw_job["spec"]["parameterServers"], raw_job["spec"]["task"]
    raw_job["spec"]["command"] = ["python", "/app/train.py", "--lr", "0.1"]
    raw_job["spec"]["image"] = "registry.example/me/train:1"
    raw_job["spec"]["suspend"] = True
    raw_job["metadata"]["labels"] = {QUEUE_NAME_LABEL: "team-a"}
    job = parse_training_job(raw_job)
    assert job.spec.command == ("python", "/app/train.py", "--lr", "0.1")
    assert job.spec.runs_command and job.spec.task == ""
    assert job.spec.image == "registry.example/me/train:1"
    assert job.spec.suspend is True
    assert job.meta.queue_name == "team-a"


def test_the_kind_knowledge_is_pooled_by(raw_job: dict[str, Any]) -> None:
    """spec.modelKind, else the task, else the image and command of a script of its own."""
    assert parse_training_job(raw_job).spec.kind == "mlp"
    raw_job["spec"]["modelKind"] = "resnet-50"
    assert parse_training_job(raw_job).spec.kind == "resnet-50"
    del raw_job["spec"]["modelKind"], raw_job["spec"]["task"], raw_job["spec"]["parameterServers"]
    raw_job["spec"].update(mode="allreduce", command=["python", "/app/train.py", "--lr", "0.1"])
    assert parse_training_job(raw_job).spec.kind == "w:1 python /app/train.py --lr 0.1"
    raw_job["spec"]["image"] = "registry.example/me/train:1"
    assert parse_training_job(raw_job).spec.kind == (
        "registry.example/me/train:1 python /app/train.py --lr 0.1")


def test_allreduce_needs_no_parameter_servers(raw_job: dict[str, Any]) -> None:
    raw_job["spec"]["mode"] = "allreduce"
    del raw_job["spec"]["parameterServers"]
    spec = parse_training_job(raw_job).spec
    assert (spec.parameter_servers.min, spec.parameter_servers.max) == (0, 0)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return edit


_DELETE = object()


def _both(*edits: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        for one in edits:
            one(raw)
    return edit

_WORKER_CONTAINER = "spec.workers.template.spec.containers.0"

#: ten kinds of invalid jobs: (edit, field named in the error, words of the fix)
INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("name too long", _set("metadata.name", "a" * 41), "metadata.name", "at most 40"),
    ("unknown mode", _set("spec.mode", "ring"), "spec.mode", "one of ps-sync"),
    ("batch missing", _set("spec.globalBatchSize", _DELETE), "spec.globalBatchSize",
     "integer in"),
    ("min above max", _set("spec.workers.min", 5), "spec.workers.min", "<= spec.workers.max"),
    ("no ps for ps-sync", _set("spec.parameterServers.min", 0), "spec.parameterServers.min",
     "integer in [1"),
    ("ps in allreduce", _set("spec.mode", "allreduce"), "spec.parameterServers",
     "remove spec.parameterServers"),
    ("no containers", _set("spec.workers.template.spec.containers", []),
     "spec.workers.template.spec.containers", "at least one container"),
    ("bad quantity", _set(f"{_WORKER_CONTAINER}.resources.requests.cpu", "lots"),
     "resources.requests.cpu", "quantity such as"),
    ("batch below workers", _set("spec.globalBatchSize", 2), "spec.globalBatchSize",
     "at least spec.workers.max"),
    ("relative mount path", _set("spec.checkpoint.mountPath", "ckpt"),
     "spec.checkpoint.mountPath", "absolute path"),
    ("no checkpoint volume", _set("spec.checkpoint.volume", _DELETE), "spec.checkpoint.volume",
     "add spec.checkpoint.volume"),
    ("zero loss delta", _set("spec.convergence.lossDelta", 0), "spec.convergence.lossDelta",
     "number > 0"),
    ("fractional gpu", _set(f"{_WORKER_CONTAINER}.resources.limits", {"nvidia.com/gpu": "0.5"}),
     "nvidia.com/gpu", "whole GPUs"),
    ("missing image", _set(f"{_WORKER_CONTAINER}.image", _DELETE), "image", "give the container"),
    ("neither task nor command", _set("spec.task", _DELETE), "spec", "set spec.task"),
    ("task and command", _set("spec.command", ["python", "train.py"]), "spec.command",
     "keep one"),
    ("command in ps mode", _both(_set("spec.task", _DELETE), _set("spec.command", ["train"])),
     "spec.command", "set spec.mode to allreduce"),
    ("command not a list", _both(_set("spec.task", _DELETE), _set("spec.command", "python x")),
     "spec.command", "write it as a list"),
    ("bad suspend value", _set("spec.suspend", "yes"), "spec.suspend", "true or false"),
    ("model kind too long", _set("spec.modelKind", "k" * 254), "spec.modelKind",
     "at most 253 characters"),
    ("model kind not a string", _set("spec.modelKind", 7), "spec.modelKind", ""),
]


@pytest.mark.parametrize(("kind", "edit", "field", "fix"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_jobs_name_the_field_and_the_fix(
    kind: str, edit: Callable[[dict[str, Any]], None], field: str, fix: str
) -> None:
    raw = copy.deepcopy(RAW_JOB)
    edit(raw)
    with pytest.raises(SpecError) as caught:
        parse_training_job(raw)
    errors = caught.value.errors
    assert any(field in e.path and fix in e.fix for e in errors), errors
    assert "fix:" in str(caught.value)


def test_every_error_is_reported_at_once(raw_job: dict[str, Any]) -> None:
    raw_job["spec"]["mode"] = "ring"
    raw_job["spec"]["workers"]["min"] = 9
    with pytest.raises(SpecError) as caught:
        parse_training_job(raw_job)
    paths = {e.path for e in caught.value.errors}
    assert {"spec.mode", "spec.workers.min"} <= paths


@given(st.integers(min_value=1, max_value=9950), st.integers(min_value=0, max_value=50))
def test_bounds_hold_for_any_valid_counts(low: int, extra: int) -> None:
    raw = copy.deepcopy(RAW_JOB)
    raw["spec"]["workers"].update(min=low, max=low + extra)
    raw["spec"]["globalBatchSize"] = low + extra
    spec = parse_training_job(raw).spec
    assert spec.workers.min <= spec.workers.max <= spec.global_batch_size

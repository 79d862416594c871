"""The Dockerfiles, linted as text (no container engine here): multi-stage, pinned bases,
non-root, dependencies from the constraints file, no torch in the operator image, and every
COPY source present in the repository."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from optimus_worker.contract import (
    DEFAULT_CONTROL_PORT,
    DEFAULT_METRICS_PORT,
    DEFAULT_RENDEZVOUS_PORT,
)

from .support import CHART, ROOT

DOCKER = ROOT / "docker"
OPERATOR = DOCKER / "Dockerfile.operator"
WORKER = DOCKER / "Dockerfile.worker"
#: your own image for your own script (docs/train-your-own-model.md)
EXAMPLE = ROOT / "examples" / "ddp-script" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to (-1: before the first FROM)


def parse(path: Path) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, f"{path.name} ends inside a continued line"
    instructions: list[Instruction] = []
    stage = -1
    for text in logical:
        keyword, _, arguments = text.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
    return instructions


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    return dict(inst.arguments.split("=", 1) for inst in instructions
                if inst.keyword == "ARG" and "=" in inst.arguments)


def base_images(instructions: list[Instruction]) -> list[str]:
    defaults = arg_defaults(instructions)
    images = []
    for inst in instructions:
        if inst.keyword == "FROM":
            image = inst.arguments.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], image))
    return images


@pytest.mark.parametrize("path", [OPERATOR, WORKER, EXAMPLE], ids=str)
def test_multi_stage_pinned_and_non_root(path: Path) -> None:
    instructions = parse(path)
    images = base_images(instructions)
    assert len(images) >= 2, "multi-stage: build and runtime"
    for image in images:
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"unpinned {image}"
    final = max(inst.stage for inst in instructions)
    users = [inst.arguments for inst in instructions
             if inst.keyword == "USER" and inst.stage == final]
    assert users, "the runtime stage sets USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert users[-1].split(":")[0] == "65532", "the chart's runAsUser"
    # the runtime copies the environment from the build stage, not the sources
    copies = [inst.arguments for inst in instructions
              if inst.keyword == "COPY" and inst.stage == final]
    assert copies and all(arguments.startswith("--from=build") for arguments in copies)


@pytest.mark.parametrize("path", [OPERATOR, WORKER, EXAMPLE], ids=str)
def test_sources_exist_and_dependencies_are_pinned(path: Path) -> None:
    instructions = parse(path)
    for inst in instructions:
        assert inst.keyword != "ADD", "COPY, not ADD (no remote URLs or archives)"
        if inst.keyword == "COPY" and not inst.arguments.startswith("--from"):
            *sources, _ = inst.arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{path.name}: COPY {source} does not exist"
        if inst.keyword == "RUN":
            assert not re.search(r"curl[^|]*\|\s*(ba)?sh", inst.arguments)
            if "pip install" in inst.arguments:
                assert "-c requirements/constraints.txt" in inst.arguments
            if "apt-get install" in inst.arguments:
                assert "--no-install-recommends" in inst.arguments
                assert "rm -rf /var/lib/apt/lists/*" in inst.arguments
    assert (ROOT / "requirements/constraints.txt").read_text().count("torch==") == 1


def _entrypoint(instructions: list[Instruction]) -> list[str]:
    (entrypoint,) = [inst.arguments for inst in instructions if inst.keyword == "ENTRYPOINT"]
    return list(json.loads(entrypoint))


def _exposed(instructions: list[Instruction]) -> set[int]:
    return {int(port) for inst in instructions if inst.keyword == "EXPOSE"
            for port in inst.arguments.split()}


def test_operator_image_runs_the_operator_without_torch() -> None:
    instructions = parse(OPERATOR)
    installs = [inst.arguments for inst in instructions if "pip install" in inst.arguments]
    assert installs and not any("[worker]" in text or "torch" in text for text in installs)
    assert _entrypoint(instructions) == ["python", "-m", "optimus.kube"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]
    assert _exposed(instructions) == {values["metricsPort"], values["healthPort"]}


def test_worker_image_has_torch_on_a_cuda_base_argument() -> None:
    instructions = parse(WORKER)
    defaults = arg_defaults(instructions)
    assert "cuda" in defaults["BASE_IMAGE"]
    installs = [inst.arguments for inst in instructions if "pip install" in inst.arguments]
    assert any('".[worker]"' in text for text in installs)
    assert _entrypoint(instructions) == ["python", "-m", "optimus_worker"]
    assert _exposed(instructions) == {DEFAULT_METRICS_PORT, DEFAULT_CONTROL_PORT,
                                      DEFAULT_RENDEZVOUS_PORT}


def test_the_example_image_runs_the_script_its_trainingjob_names() -> None:
    instructions = parse(EXAMPLE)
    assert _entrypoint(instructions) == ["python", "/app/train.py"]
    assert any('".[worker]"' in inst.arguments for inst in instructions
               if "pip install" in inst.arguments), "torch and optimus_worker (report)"
    assert "COPY examples/ddp-script/train.py /app/train.py" in {
        f"{inst.keyword} {inst.arguments}" for inst in instructions}
    jobs = [doc for doc in yaml.safe_load_all(
        (EXAMPLE.parent / "trainingjob.yaml").read_text()) if doc["kind"] == "TrainingJob"]
    (job,) = jobs
    assert job["spec"]["command"][:2] == _entrypoint(instructions)
    assert _exposed(instructions) == {DEFAULT_METRICS_PORT, DEFAULT_RENDEZVOUS_PORT}
    ignore = EXAMPLE.with_name("Dockerfile.dockerignore").read_text().splitlines()
    assert "!examples/ddp-script/train.py" in ignore


def test_build_contexts_leave_out_local_environments() -> None:
    for path in (OPERATOR, WORKER, EXAMPLE):
        ignore = path.with_name(path.name + ".dockerignore").read_text().splitlines()
        assert ignore[ignore.index("**") + 1:], "everything is excluded, then sources allowed"
        assert "!.venv" not in ignore and "!.tools" not in ignore

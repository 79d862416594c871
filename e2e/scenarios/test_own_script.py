"""Scenario: your own script, unchanged but for its reporting lines.

examples/ddp-script/train.py (plain PyTorch DDP: torch.distributed from the standard
environment, its own loop, optimizer and checkpoints) runs as a TrainingJob with
`spec.command`, from the example's own manifest (examples/ddp-script/trainingjob.yaml) with
the local cluster's changes: the checkpoints on a host directory, the repository on
PYTHONPATH (the local kubelet runs the command with this Python; there is no image), a
rendezvous port of its own. The
operator measures its speed from `optimus_worker.report` and resizes it at least twice by
checkpoint-restart (the script checkpoints on SIGTERM); the test then lowers maxEpochs so
the job ends soon, and it must reach Succeeded. The script's own checkpoint keeps its loss
history with the world size of each stretch: after every resize the loss continues where it
was (well below the initial loss), it does not start over.
"""

from __future__ import annotations

import itertools
import math
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from e2e.demo.samples import prepared
from e2e.scenarios.conftest import MakeStack
from e2e.scenarios.helpers import (
    allocation,
    apply_job,
    describe,
    phase,
    wait_job,
    wait_until,
)
from e2e.simgpu import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

EXAMPLE = REPO_ROOT / "examples" / "ddp-script"
NAME = "ddp-script"


def example_job(checkpoints: Path) -> dict[str, Any]:
    """The example's TrainingJob, made runnable on the local cluster."""
    docs = yaml.safe_load_all((EXAMPLE / "trainingjob.yaml").read_text())
    (job,) = [doc for doc in docs if doc and doc.get("kind") == "TrainingJob"]
    manifest = prepared(job, checkpoints, name=NAME, max_epochs=1000, overrides={
        # many epochs: the test ends the job by lowering maxEpochs after two resizes
        "command": ["python", str(EXAMPLE / "train.py"), "--epochs", "1000",
                    "--global-batch-size", "64", "--samples", "8192", "--log-every", "5"],
        "globalBatchSize": 64,
        "convergence": {"lossDelta": 1e-9, "window": 3},
        "workers": {"min": 1, "max": 3},
    })
    container = manifest["spec"]["workers"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"cpu": "500m", "memory": "512Mi"},
                              "limits": {"nvidia.com/gpu": "1"}}
    container["env"] = [{"name": "PYTHONPATH", "value": str(REPO_ROOT)},
                        {"name": "OMP_NUM_THREADS", "value": "1"}]
    # the local cluster's pods share the host's ports (as hostNetwork pods share a node's),
    # and torch's rendezvous server listens on every address: a port of the job's own
    container["ports"] = [{"name": "rendezvous", "containerPort": free_port()}]
    return manifest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def stretches(history: list[dict[str, float]]) -> list[list[dict[str, float]]]:
    """The loss history split where the world size changed (one stretch per size)."""
    out: list[list[dict[str, float]]] = []
    for entry in history:
        if not out or out[-1][-1]["world"] != entry["world"]:
            out.append([])
        out[-1].append(entry)
    return out


def test_a_plain_ddp_script_is_resized_twice_and_its_loss_continues(
        make_stack: MakeStack) -> None:
    stack = make_stack(nodes=1, gpus_per_node=4)
    checkpoints = stack.workdir / "checkpoints"
    apply_job(stack.kubectl, example_job(checkpoints))
    sizes: list[tuple[int, int]] = []

    def resized_twice() -> bool:
        obj = stack.kubectl.trainingjob(NAME)
        now = allocation(obj)
        if now is not None and (not sizes or sizes[-1] != now):
            sizes.append(now)
        # the second resize's pods run (not Resizing any more)
        return len(sizes) >= 3 and phase(obj) in ("Running", "Probing")

    wait_until(stack, "two resizes of the script's job", resized_twice, timeout=300)
    epoch = ((stack.kubectl.trainingjob(NAME).get("status") or {}).get("progress")
             or {}).get("epoch") or 0.0
    stack.kubectl.run("patch", "trainingjob", NAME, "--type", "merge", "-p",
                      f'{{"spec": {{"convergence": {{"maxEpochs": {math.floor(epoch) + 2}}}}}}}')
    final = wait_job(stack, NAME, ("Succeeded",), timeout=150)

    # the operator measured the script's speed from its reports, at every size it ran
    measured = (final["status"].get("model") or {}).get("speedSamples") or []
    assert len(measured) >= 2, f"speed samples {measured}\n{describe(stack, NAME)}"
    state = torch.load(checkpoints / NAME / "checkpoint.pt", weights_only=False)
    parts = stretches(state["history"])
    assert len(parts) >= 3, (f"the checkpoint's history shows world sizes "
                             f"{[p[0]['world'] for p in parts]}; sizes seen {sizes}\n"
                             f"{describe(stack, NAME)}")
    initial = parts[0][0]["loss"]
    for before, after in itertools.pairwise(parts):
        # continues: near where the last stretch ended, far below where training began
        assert after[0]["loss"] < 0.8 * initial, (initial, before[-1], after[0])
        assert after[0]["loss"] < 1.5 * before[-1]["loss"] + 0.05, (before[-1], after[0])
    print(f"own script: sizes {sizes}, {len(parts)} stretches, loss {initial:.3f} -> "
          + " -> ".join(f"[w={p[0]['world']:.0f}] {p[0]['loss']:.3f}..{p[-1]['loss']:.3f}"
                        for p in parts)
          + f"; {final['status'].get('phase')} at epoch "
          f"{(final['status'].get('progress') or {}).get('epoch')}")

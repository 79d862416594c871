"""Training tasks for the local cluster's simulated GPUs: the workers' `mlp` example whose
accelerator time is emulated.

The local cluster's nodes advertise GPUs that do not exist, and every pod shares the same
couple of host cores, so a job's real speed cannot grow with its workers there: adding
workers only adds processes competing for the CPU, and how fast a job runs depends on how
fast this machine is. Scenarios that ask whether elastic scheduling of GPUs pays off, or
that need a job to last long enough to be resized, would then be unanswerable or flaky.
These tasks keep everything real (model, data, parameter servers, gradients, checkpoints,
metrics) and add, per training forward pass, the time a GPU would take for that worker's
share of the batch: a sleep of `seconds_per_sample` per sample, which uses no host CPU. A job
with w workers then steps about w times faster, as it would on w GPUs, and a job's duration
has a floor set by its samples rather than by the host. The wait is the workers' own
(`optimus_worker.emulation`, which a local cluster created with emulated GPUs applies to any
task); these tasks build it in, with their own default time per sample, so that the tests
need no cluster option. On such a cluster the node's time per sample replaces theirs.

Pods load them as OPTIMUS_TASK=e2e.simgpu:mlp (or :small_mlp) with the repository root on
PYTHONPATH (`on_repository_path` adds it to a TrainingJob manifest).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optimus_worker.emulation import emulate_accelerator
from optimus_worker.examples import _mlp_data, _mlp_model, _sgd
from optimus_worker.task import TrainingTask
from torch import nn
from torch.utils.data import TensorDataset

REPO_ROOT = Path(__file__).resolve().parents[1]
#: overrides every task's emulated time per sample (seconds)
ENV_SECONDS_PER_SAMPLE = "E2E_GPU_SECONDS_PER_SAMPLE"
TASK_MLP = "e2e.simgpu:mlp"
TASK_SMALL_MLP = "e2e.simgpu:small_mlp"


def seconds_per_sample(default: float) -> float:
    return float(os.environ.get(ENV_SECONDS_PER_SAMPLE, default))


def _mlp_task(name: str, samples: int | None, per_sample: float) -> TrainingTask:
    per_sample = seconds_per_sample(per_sample)

    def model() -> nn.Module:
        return emulate_accelerator(_mlp_model(), per_sample)

    def data() -> TensorDataset:
        full = _mlp_data()
        if samples is None:
            return full
        inputs, targets = full.tensors
        return TensorDataset(inputs[:samples], targets[:samples])

    size = "all" if samples is None else str(samples)
    return TrainingTask(name=name, model=model, optimizer=_sgd(0.02), dataset=data,
                        loss=nn.functional.cross_entropy,
                        metadata={"data": f"mlp teacher data, {size} samples x 32",
                                  "accelerator": f"emulated, {per_sample * 1000:g} ms/sample"})


def mlp() -> TrainingTask:
    """The whole `mlp` dataset (16,384 samples), 0.5 ms of emulated GPU time per sample:
    about 8 s per epoch on one worker."""
    return _mlp_task("mlp-simulated-gpu", None, 0.0005)


def small_mlp() -> TrainingTask:
    """2,048 samples of it at 2 ms per sample: about 4 s per epoch on one worker, for the
    integration tests' many short epochs."""
    return _mlp_task("small-mlp-simulated-gpu", 2048, 0.002)


def on_repository_path(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with this checkout on PYTHONPATH in every container of both templates,
    so that its pods can import these tasks (the local cluster runs pods as processes)."""
    for group in ("parameterServers", "workers"):
        for container in manifest["spec"][group]["template"]["spec"]["containers"]:
            env = container.setdefault("env", [])
            env[:] = [e for e in env if e.get("name") != "PYTHONPATH"]
            env.append({"name": "PYTHONPATH", "value": str(REPO_ROOT)})
    return manifest


#: the task references and their factories, for tests that check both load
TASKS: dict[str, Callable[[], TrainingTask]] = {TASK_MLP: mlp, TASK_SMALL_MLP: small_mlp}

"""Training tasks for the local cluster's simulated GPUs: the shipped `mlp` example with
emulated accelerator time.

The local cluster's nodes advertise GPUs that do not exist, and every pod shares the same
couple of host cores, so a job's real speed cannot grow with its workers there: adding
workers only adds processes competing for the CPU, and neither the operator's speed model
nor a comparison with a fixed allocation could see what elastic scheduling of GPUs buys.
These tasks keep everything real (model, data, PS traffic, gradients, checkpoints, metrics)
and add, per worker step, the time a GPU would take for that worker's share of the batch:
a sleep of `seconds_per_sample` per sample in the training forward pass, which uses no host
CPU. A job with w workers then steps about w times faster, as it would on w GPUs.

Pods load them as OPTIMUS_TASK=e2e.simgpu:<factory> with the repository root on PYTHONPATH.
They are test tasks like any user's task: the operator knows nothing of them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import torch
from optimus_worker.examples import mlp
from optimus_worker.task import TrainingTask
from torch import nn
from torch.utils.data import Dataset, TensorDataset

#: Emulated GPU time per training sample (seconds) of the scenarios' task;
#: E2E_GPU_SECONDS_PER_SAMPLE overrides it.
DEFAULT_SECONDS_PER_SAMPLE = 0.0005
#: The integration tests' task: fewer samples, slower accelerator, so that a 1 -> 3 worker
#: gain shows within a few scheduling rounds.
SMALL_SAMPLES = 2048
SMALL_SECONDS_PER_SAMPLE = 0.002

TASK_REF = "e2e.simgpu:mlp_on_simulated_gpu"
SMALL_TASK_REF = "e2e.simgpu:small_mlp_on_simulated_gpu"


class _EmulatedAccelerator(nn.Module):
    """Wraps a model; its training forward pass waits as long as a GPU would compute."""

    def __init__(self, inner: nn.Module, seconds_per_sample: float) -> None:
        super().__init__()
        self.net = inner
        self.seconds_per_sample = seconds_per_sample

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training:
            time.sleep(self.seconds_per_sample * inputs.shape[0])
        return self.net(inputs)  # type: ignore[no-any-return]


def on_simulated_gpu(base: TrainingTask, seconds_per_sample: float,
                     samples: int | None = None) -> TrainingTask:
    """`base` with emulated accelerator time, optionally on its first `samples` samples."""

    def model() -> nn.Module:
        return _EmulatedAccelerator(base.model(), seconds_per_sample)

    dataset: Callable[[], Dataset[tuple[torch.Tensor, ...]]] = base.dataset
    if samples is not None:
        def dataset() -> TensorDataset:
            full = base.dataset()
            assert isinstance(full, TensorDataset), "subsets need a TensorDataset"
            return TensorDataset(*(tensor[:samples] for tensor in full.tensors))

    size = f"{samples} samples, " if samples is not None else ""
    return dataclasses.replace(
        base, name=f"{base.name}-simulated-gpu", model=model, dataset=dataset,
        metadata={**base.metadata,
                  "accelerator": f"emulated, {size}{seconds_per_sample:g} s/sample"})


def seconds_per_sample() -> float:
    return float(os.environ.get("E2E_GPU_SECONDS_PER_SAMPLE", DEFAULT_SECONDS_PER_SAMPLE))


def mlp_on_simulated_gpu() -> TrainingTask:
    """The `mlp` example with emulated accelerator time (the e2e scenarios' task)."""
    return on_simulated_gpu(mlp(), seconds_per_sample())


def small_mlp_on_simulated_gpu() -> TrainingTask:
    """A 2048-sample `mlp` with a slower emulated accelerator (the integration tests' task)."""
    return on_simulated_gpu(mlp(), SMALL_SECONDS_PER_SAMPLE, samples=SMALL_SAMPLES)

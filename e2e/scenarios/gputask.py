"""A training task for the simulated GPUs of the local cluster: the shipped `mlp` example,
whose accelerator time is emulated.

The local cluster's nodes advertise GPUs that do not exist, and every pod shares the same
couple of host cores, so a job's real speed cannot grow with its workers there: adding
workers only adds processes competing for the CPU. That makes the question the contention
scenario asks ("does elastic scheduling of GPUs beat a fixed allocation?") unanswerable on
such a machine. This task keeps everything real (model, data, PS, gradients, checkpoints,
metrics) and adds, per worker step, the time a GPU would take for that worker's share of the
batch: a sleep of `seconds_per_sample` per sample, which uses no host CPU. A job with w
workers then steps about w times faster, as it would on w GPUs.

Pods find this module through PYTHONPATH (the repository root, set in the job's template).
"""

from __future__ import annotations

import dataclasses
import os
import time

import torch
from optimus_worker.examples import mlp
from optimus_worker.task import TrainingTask

#: Emulated GPU time per training sample (seconds); E2E_GPU_SECONDS_PER_SAMPLE overrides.
DEFAULT_SECONDS_PER_SAMPLE = 0.0005
TASK_REF = "e2e.scenarios.gputask:mlp_on_simulated_gpu"


def seconds_per_sample() -> float:
    return float(os.environ.get("E2E_GPU_SECONDS_PER_SAMPLE", DEFAULT_SECONDS_PER_SAMPLE))


def mlp_on_simulated_gpu() -> TrainingTask:
    """The `mlp` example with emulated accelerator time in every worker step."""
    base = mlp()
    per_sample = seconds_per_sample()

    def loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        time.sleep(per_sample * len(targets))  # the simulated GPU computing this batch
        return base.loss(output, targets)

    return dataclasses.replace(base, name="mlp-simulated-gpu", loss=loss,
                               metadata={**base.metadata,
                                         "accelerator": f"emulated, {per_sample} s/sample"})

"""A training task for the integration tests: the workers' `mlp` example on a 2048-sample
subset, whose forward pass also waits a fixed time per sample. The wait stands in for the
simulated GPU's compute time: on a shared CPU-only machine, real compute cannot get faster
with more workers, while an accelerator's time per sample does split across workers, which
is what lets the operator's speed model see a gain from growing a job. Everything else
(PS traffic, checkpoints, metrics) is the real worker code.

Workers load it as OPTIMUS_TASK=tests.integration.tasks:accelerated_mlp (the repository
root on PYTHONPATH).
"""

from __future__ import annotations

import time

import torch
from optimus_worker.examples import _mlp_data, _mlp_model, _sgd
from optimus_worker.task import TrainingTask
from torch import nn
from torch.utils.data import TensorDataset

SAMPLES = 2048
#: simulated accelerator time per training sample, in seconds
SECONDS_PER_SAMPLE = 0.002


class _Accelerated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp_model()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training:
            time.sleep(SECONDS_PER_SAMPLE * inputs.shape[0])
        return self.net(inputs)  # type: ignore[no-any-return]


def _data() -> TensorDataset:
    full = _mlp_data()
    inputs, targets = full.tensors
    return TensorDataset(inputs[:SAMPLES], targets[:SAMPLES])


def accelerated_mlp() -> TrainingTask:
    return TrainingTask(name="accelerated-mlp", model=_Accelerated, optimizer=_sgd(0.02),
                        dataset=_data, loss=nn.functional.cross_entropy,
                        metadata={"data": f"mlp subset, {SAMPLES} x 32, "
                                          f"{SECONDS_PER_SAMPLE * 1000:g} ms/sample"})

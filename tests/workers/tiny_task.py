"""A task small enough for multi-process tests: 384 samples, a 2-layer perceptron.

Addressed by the worker processes as ``tests.workers.tiny_task:tiny`` (the tests put the
repository on their PYTHONPATH), which also exercises the user path ``--task module:attr``.
"""

from __future__ import annotations

import time

import torch
from optimus_worker.task import TrainingTask
from torch import nn
from torch.utils.data import TensorDataset


def _data() -> TensorDataset:
    gen = torch.Generator().manual_seed(7)
    inputs = torch.randn(384, 8, generator=gen)
    targets = (inputs[:, :4].sum(dim=1) > 0).long() + 2 * (inputs[:, 4] > 0).long()
    return TensorDataset(inputs, targets)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))


def _adam(params):  # type: ignore[no-untyped-def]
    return torch.optim.Adam(params, lr=0.01)


tiny = TrainingTask(name="tiny", model=_model, optimizer=_adam, dataset=_data,
                    loss=nn.functional.cross_entropy)


def _slow_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    time.sleep(0.02)  # a step long enough for a test to act in the middle of an epoch
    return nn.functional.cross_entropy(output, target)


slow_tiny = TrainingTask(name="slow_tiny", model=_model, optimizer=_adam, dataset=_data,
                         loss=_slow_loss)


def _decay(step: int) -> float:
    return 0.9 ** (step // 4)


def _accuracy(model: nn.Module, epoch: int) -> dict[str, float]:
    data = _data()
    inputs, targets = data.tensors
    return {"accuracy": float((model(inputs).argmax(dim=1) == targets).float().mean()),
            "epoch": float(epoch)}


#: every hook of the library's loop: a stepped learning-rate decay, a clip that binds (the
#: gradients' norm starts near 1), mixed precision (float32 on CPU), an evaluation
hooked_tiny = TrainingTask(name="hooked_tiny", model=_model, optimizer=_adam, dataset=_data,
                           loss=nn.functional.cross_entropy, lr_schedule=_decay,
                           clip_grad_norm=0.05, mixed_precision=True, evaluate=_accuracy)

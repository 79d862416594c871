"""The shipped example tasks, addressable by short name (``--task mlp|cnn|digits``).

All three are tiny, deterministic and download nothing, so that an epoch takes about a
second on one CPU core and a demo job converges in minutes on a shared laptop:

* ``mlp``: a two-layer perceptron on synthetic data labelled by a fixed random teacher;
* ``cnn``: a small convolutional net on synthetic 12x12 images of noisy class templates;
* ``digits``: a perceptron on scikit-learn's bundled 8x8 hand-written digits (with 7
  copies under deterministic pixel noise, so an epoch is long enough to measure).

Each uses SGD with momentum and a small learning rate, so the loss falls smoothly (what the
operator's convergence model fits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from optimus_worker.task import TrainingTask

MLP_SAMPLES = 16384
CNN_SAMPLES = 8192
DIGITS_COPIES = 8  # the 1797 digits plus 7 noisy copies: an epoch long enough to measure


def _sgd(lr: float) -> Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]:
    def make(params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=0.9)

    return make


def _mlp_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(1234)
    inputs = torch.randn(MLP_SAMPLES, 32, generator=gen)
    teacher = torch.randn(32, 16, generator=gen)
    readout = torch.randn(16, 10, generator=gen)
    logits = torch.tanh(inputs @ teacher) @ readout
    targets = logits.argmax(dim=1)
    return TensorDataset(inputs, targets)


def _mlp_model() -> nn.Module:
    return nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def mlp() -> TrainingTask:
    return TrainingTask(
        name="mlp", model=_mlp_model, optimizer=_sgd(0.02), dataset=_mlp_data,
        loss=nn.functional.cross_entropy,
        metadata={"data": f"synthetic teacher, {MLP_SAMPLES} x 32"},
    )


def _cnn_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(4321)
    templates = torch.randn(10, 1, 12, 12, generator=gen)
    targets = torch.randint(0, 10, (CNN_SAMPLES,), generator=gen)
    noise = torch.randn(CNN_SAMPLES, 1, 12, 12, generator=gen)
    return TensorDataset(templates[targets] + 4.0 * noise, targets)


def _cnn_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 3 * 3, 10),
    )


def cnn() -> TrainingTask:
    return TrainingTask(
        name="cnn", model=_cnn_model, optimizer=_sgd(0.003), dataset=_cnn_data,
        loss=nn.functional.cross_entropy,
        metadata={"data": f"synthetic 12x12 templates, {CNN_SAMPLES}"},
    )


def _digits_data() -> TensorDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(99)
    copies = [images] + [images + 0.1 * torch.randn(images.shape, generator=gen)
                         for _ in range(DIGITS_COPIES - 1)]
    inputs = torch.cat(copies)
    inputs = (inputs - inputs.mean(dim=0)) / (inputs.std(dim=0) + 1e-3)
    return TensorDataset(inputs, labels.repeat(DIGITS_COPIES))


def _digits_model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def digits() -> TrainingTask:
    return TrainingTask(
        name="digits", model=_digits_model, optimizer=_sgd(0.001), dataset=_digits_data,
        loss=nn.functional.cross_entropy,
        metadata={"data": f"sklearn load_digits, 1797 x 64, x{DIGITS_COPIES} with pixel noise"},
    )


EXAMPLES: dict[str, Callable[[], TrainingTask]] = {"mlp": mlp, "cnn": cnn, "digits": digits}

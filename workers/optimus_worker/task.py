"""The user's side of the library: what to train (`TrainingTask`) and how to name it.

A task is four factories and a loss; the library does roles, sharding, checkpoints and
metrics around them. Point a job at a task with ``--task package.module:attr`` (or the
``OPTIMUS_TASK`` environment variable), or use a shipped example by its short name
(`EXAMPLES`: ``mlp``, ``cnn``, ``digits``).

Rules the library relies on:

* ``model()`` builds the same architecture in every process; the library seeds torch with
  ``seed`` before calling it, so a fresh job starts from the same weights everywhere;
* ``optimizer(params)`` receives an iterable of tensors and must be element-wise (SGD,
  momentum, Adam, AdamW, RMSprop, Adagrad...): on parameter servers it runs on flat slices
  of the parameters, which gives the same result only for element-wise rules;
* ``dataset()`` returns a map-style dataset of ``(input, target)`` pairs, the same in every
  process (a `torch.utils.data.TensorDataset` takes a fast path);
* ``loss(output, target)`` is a mean over the batch.

Optional hooks (`optimus_worker.hooks` says exactly how each applies in each mode):
``lr_schedule(step) -> factor`` of the initial learning rate, ``clip_grad_norm`` (the
step's gradient norm bound), ``mixed_precision`` (bfloat16 autocast where the device
supports it, else float32) and ``evaluate(model, epoch) -> {metric: value}`` after every
epoch on the chief.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from optimus_worker.hooks import Evaluate, LrSchedule

ModelFactory = Callable[[], nn.Module]
OptimizerFactory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
DatasetFactory = Callable[[], Dataset]  # type: ignore[type-arg]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainingTask:
    """A model, its optimizer, its data and its loss: everything a job trains."""

    name: str
    model: ModelFactory
    optimizer: OptimizerFactory
    dataset: DatasetFactory
    loss: LossFn
    seed: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: factor of the optimizer's initial learning rate at a job step (None: constant)
    lr_schedule: LrSchedule | None = None
    #: the L2 norm a step's gradient is clipped to (None: no clipping)
    clip_grad_norm: float | None = None
    #: forward pass in bfloat16 autocast where the device supports it (else float32)
    mixed_precision: bool = False
    #: called by the chief after every finished epoch: (model, epoch) -> {metric: value}
    evaluate: Evaluate | None = None

    def __post_init__(self) -> None:
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise TaskError(f"task {self.name!r}: clip_grad_norm={self.clip_grad_norm} "
                            "must be > 0 (or None for no clipping)")


class TaskError(ValueError):
    """A --task / OPTIMUS_TASK reference that does not name a TrainingTask."""


def load_task(ref: str) -> TrainingTask:
    """Resolve a short example name or a ``module:attr`` reference to a TrainingTask."""
    from optimus_worker.examples import EXAMPLES

    if ref in EXAMPLES:
        return EXAMPLES[ref]()
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise TaskError(
            f"task {ref!r} is neither a shipped example ({', '.join(sorted(EXAMPLES))}) "
            f"nor a 'package.module:attr' reference"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskError(f"task {ref!r}: cannot import {module_name!r} ({exc})") from None
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise TaskError(f"task {ref!r}: module {module_name!r} has no {attr!r}") from None
    if callable(value) and not isinstance(value, TrainingTask):
        value = value()
    if not isinstance(value, TrainingTask):
        raise TaskError(f"task {ref!r} is a {type(value).__name__}, not a TrainingTask")
    return value


class BatchSource:
    """Gathers the samples of given dataset indices into one (inputs, targets) batch."""

    def __init__(self, dataset: Dataset) -> None:  # type: ignore[type-arg]
        self.dataset = dataset
        self.size = len(dataset)  # type: ignore[arg-type]
        self._tensors = dataset.tensors if isinstance(dataset, TensorDataset) else None

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tensors is not None:
            inputs, targets = self._tensors[0], self._tensors[1]
            return inputs[indices], targets[indices]
        if len(indices) == 0:  # a worker with no sample this step: an empty batch
            x, y = self.batch(torch.zeros(1, dtype=torch.long))
            return x[:0], y[:0]
        items = [self.dataset[int(i)] for i in indices]
        return (torch.stack([torch.as_tensor(x) for x, _ in items]),
                torch.stack([torch.as_tensor(y) for _, y in items]))

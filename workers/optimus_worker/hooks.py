"""The training hooks of a `TrainingTask`, applied by the library's loop in every mode.

* Learning-rate schedule (``lr_schedule``): a function of the job's step giving the factor
  of the optimizer's initial learning rate (what ``LambdaLR`` takes). It depends on the
  step alone, so a resize, a restart or a change of mode cannot make it drift: every
  generation sets ``lr = initial lr x lr_schedule(step)`` before each optimizer step (on the
  workers in all-reduce, on the parameter servers in the PS modes, with the step the
  pushing worker is at).
* Gradient clipping (``clip_grad_norm``): the step's gradient never exceeds this L2 norm.
  In all-reduce the averaged gradient is clipped exactly (``clip_grad_norm_``); in the PS
  modes no process sees the whole gradient, so each worker clips its weighted share to
  ``max_norm x its weight``, which bounds the sum by ``max_norm`` (a tighter clip than the
  exact one when the shares disagree).
* Mixed precision (``mixed_precision``): forward pass and loss under ``torch.autocast`` to
  bfloat16 on CUDA devices that support it; elsewhere (CPU, GPUs without bfloat16) a
  no-op, training in float32. bfloat16 keeps float32's range, so no loss scaling is
  needed. Parameters, gradients, optimizer state and checkpoints stay float32.
* Evaluation (``evaluate``): the chief calls ``evaluate(model, epoch)`` after each
  finished epoch, with the model in eval mode and gradients off; the returned metrics
  are logged and exported as ``optimus_worker_evaluation{metric=...}``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

LrSchedule = Callable[[int], float]
Evaluate = Callable[[nn.Module, int], Mapping[str, float]]


def initial_learning_rates(optimizer: torch.optim.Optimizer) -> list[float]:
    """The learning rates the task's optimizer factory set (before any checkpoint)."""
    return [float(group["lr"]) for group in optimizer.param_groups]


def apply_lr_schedule(optimizer: torch.optim.Optimizer, initial: Sequence[float],
                      schedule: LrSchedule | None, step: int) -> None:
    """Set each group's lr to its initial lr x schedule(step); nothing without a schedule."""
    if schedule is None:
        return
    factor = float(schedule(step))
    if not math.isfinite(factor) or factor < 0:
        raise ValueError(f"lr_schedule({step}) = {factor}: the factor must be finite and >= 0")
    for group, lr in zip(optimizer.param_groups, initial, strict=True):
        group["lr"] = lr * factor


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float | None,
                   weight: float = 1.0) -> None:
    """Clip the gradients of `parameters` to `max_norm x weight` (nothing when unset)."""
    if max_norm is None:
        return
    grads = [p for p in parameters if p.grad is not None]
    if grads:
        torch.nn.utils.clip_grad_norm_(grads, max_norm * weight)


def autocast_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The dtype mixed precision computes in on `device`, or None where it is a no-op."""
    if not enabled or device.type != "cuda" or not torch.cuda.is_bf16_supported():
        return None
    return torch.bfloat16


@contextlib.contextmanager
def mixed_precision(device: torch.device, enabled: bool) -> Iterator[None]:
    """The forward pass's autocast context (see the module docstring)."""
    dtype = autocast_dtype(device, enabled)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def run_evaluation(model: nn.Module, epoch: int, evaluate: Evaluate | None
                   ) -> dict[str, float]:
    """`evaluate(model, epoch)` in eval mode without gradients; the model trains again
    afterwards. {} without a callback."""
    if evaluate is None:
        return {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            results = {str(k): float(v) for k, v in evaluate(model, epoch).items()}
    finally:
        model.train(was_training)
    return results

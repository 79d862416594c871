"""Emulated accelerator time: a worker on a simulated GPU waits what a real one would take.

Clusters whose GPUs do not exist (the e2e local cluster, where every pod shares the same
few host cores) set `contract.ENV_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE` on the containers
that are given a GPU, as a device plugin injects its devices. The worker runtime then
wraps any task's model (`emulated_task`): each training forward pass also sleeps
`seconds_per_sample` times the batch it computes, the time the GPU would take, using no host
CPU. A job with w workers then steps about w times faster, as on w GPUs, and its duration
has a floor set by its samples rather than by the host. Model, data, gradients, checkpoints
and metrics stay real; parameter servers never wait (they hold no GPU).

The wait is a forward pre-hook, so parameter names, checkpoints and DDP are unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from torch import nn

from optimus_worker import contract
from optimus_worker.task import TrainingTask

#: the model attribute holding its emulated seconds per sample (set once the hook is on)
_ATTRIBUTE = "_optimus_emulated_seconds_per_sample"


def seconds_per_sample_from_env(environ: Mapping[str, str]) -> float:
    """The emulated accelerator time per sample the environment asks for (0: none)."""
    name = contract.ENV_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE
    raw = environ.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise contract.ContractError(
            f"{name}={raw!r} is not a number: give seconds per sample, e.g. 0.001, "
            f"or 0 for no emulation") from None
    if not value >= 0.0 or value == float("inf"):
        raise contract.ContractError(
            f"{name}={raw!r} must be a finite number >= 0 (seconds per sample)")
    return value


def _wait_for_the_accelerator(module: nn.Module, inputs: tuple[Any, ...]) -> None:
    if module.training and inputs:
        batch = inputs[0].shape[0] if hasattr(inputs[0], "shape") else len(inputs[0])
        time.sleep(getattr(module, _ATTRIBUTE) * batch)  # the GPU computing it


def emulated_seconds_per_sample(model: nn.Module) -> float:
    """The accelerator time per sample `model` emulates (0 if it emulates none)."""
    return float(getattr(model, _ATTRIBUTE, 0.0))


def emulate_accelerator(model: nn.Module, seconds_per_sample: float) -> nn.Module:
    """`model` itself, whose training forward passes also wait `seconds_per_sample` per sample
    of the batch; asked again, the newest time replaces the old one (never two waits)."""
    if seconds_per_sample < 0:
        raise ValueError(f"seconds_per_sample={seconds_per_sample} must be >= 0")
    already = hasattr(model, _ATTRIBUTE)
    object.__setattr__(model, _ATTRIBUTE, float(seconds_per_sample))
    if not already:
        model.register_forward_pre_hook(_wait_for_the_accelerator)
    return model


def emulated_task(task: TrainingTask, seconds_per_sample: float) -> TrainingTask:
    """`task` whose models emulate `seconds_per_sample` of accelerator time per sample;
    `task` unchanged when that is 0."""
    if seconds_per_sample <= 0:
        return task
    build = task.model

    def model() -> nn.Module:
        return emulate_accelerator(build(), seconds_per_sample)

    metadata = {**task.metadata,
                "accelerator": f"emulated, {seconds_per_sample * 1000:g} ms/sample"}
    return dataclasses.replace(task, model=model, metadata=metadata)

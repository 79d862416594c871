"""Single-process training with the exact data plan of a distributed job (a reference).

What a distributed job must reproduce: the same task, the same per-epoch order and global
batch, one optimizer over the whole model, no communication, the task's hooks as the
all-reduce mode applies them (`optimus_worker.hooks`). Used by the tests (ps-sync and
all-reduce must match it to rounding) and handy when tuning a task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from optimus_worker.data import DataSchedule
from optimus_worker.hooks import (
    apply_lr_schedule,
    clip_gradients,
    initial_learning_rates,
    mixed_precision,
)
from optimus_worker.task import BatchSource, TrainingTask


@dataclass(frozen=True)
class ReferenceRun:
    params: dict[str, torch.Tensor]
    epoch_losses: list[float]  # mean sample loss of every epoch begun


def train_reference(task: TrainingTask, global_batch_size: int, steps: int) -> ReferenceRun:
    torch.manual_seed(task.seed)
    model = task.model()
    optimizer = task.optimizer(model.parameters())
    initial = initial_learning_rates(optimizer)
    device = torch.device("cpu")
    source = BatchSource(task.dataset())
    schedule = DataSchedule(source.size, global_batch_size, task.seed)
    sums: dict[int, list[float]] = {}
    perm: tuple[int, torch.Tensor] | None = None
    for step in range(steps):
        plan = schedule.plan(step, 0, 1)
        if perm is None or perm[0] != plan.epoch:
            perm = (plan.epoch, torch.from_numpy(schedule.permutation(plan.epoch)))
        inputs, targets = source.batch(perm[1][plan.start:plan.stop])
        optimizer.zero_grad()
        with mixed_precision(device, task.mixed_precision):
            loss = task.loss(model(inputs), targets)
        loss.float().backward()
        clip_gradients(model.parameters(), task.clip_grad_norm)
        apply_lr_schedule(optimizer, initial, task.lr_schedule, step)
        optimizer.step()
        acc = sums.setdefault(plan.epoch, [0.0, 0.0])
        acc[0] += float(loss.detach()) * plan.size
        acc[1] += plan.size
    return ReferenceRun(
        params={n: p.detach().clone() for n, p in model.named_parameters()},
        epoch_losses=[s / n for _, (s, n) in sorted(sums.items())],
    )

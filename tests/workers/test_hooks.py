"""The TrainingTask hooks (optimus_worker.hooks): schedule, clipping, mixed precision,
evaluation, and a task that asks for an impossible clip."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optimus_worker import hooks
from optimus_worker.task import TaskError, TrainingTask
from torch import nn


def _optimizer(lr: float = 0.5) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=lr)


@settings(deadline=None, max_examples=50)
@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=1e-4, max_value=1.0))
def test_the_learning_rate_depends_on_the_step_alone(step: int, lr: float) -> None:
    optimizer = _optimizer(lr)
    initial = hooks.initial_learning_rates(optimizer)
    for earlier in (0, step // 2, step + 7):  # whatever came before (a restart, a resize)
        hooks.apply_lr_schedule(optimizer, initial, lambda s: 0.5 ** (s // 100), earlier)
    hooks.apply_lr_schedule(optimizer, initial, lambda s: 0.5 ** (s // 100), step)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr * 0.5 ** (step // 100))


def test_no_schedule_leaves_the_rate_and_a_bad_factor_is_refused() -> None:
    optimizer = _optimizer()
    hooks.apply_lr_schedule(optimizer, [0.5], None, 10)
    assert optimizer.param_groups[0]["lr"] == 0.5
    for factor in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="lr_schedule"):
            hooks.apply_lr_schedule(optimizer, [0.5], lambda s, f=factor: f, 3)


@pytest.mark.parametrize(("max_norm", "weight", "expected"), [
    (None, 1.0, 5.0), (1.0, 1.0, 1.0), (10.0, 1.0, 5.0), (2.0, 0.25, 0.5)])
def test_gradients_are_clipped_to_the_weighted_bound(max_norm: float | None, weight: float,
                                                     expected: float) -> None:
    param = torch.zeros(2, requires_grad=True)
    param.grad = torch.tensor([3.0, 4.0])
    hooks.clip_gradients([param, torch.zeros(1, requires_grad=True)], max_norm, weight)
    assert float(param.grad.norm()) == pytest.approx(expected)


def test_mixed_precision_is_float32_on_the_cpu() -> None:
    cpu = torch.device("cpu")
    assert hooks.autocast_dtype(cpu, True) is None
    assert hooks.autocast_dtype(torch.device("cuda"), False) is None
    with hooks.mixed_precision(cpu, True):
        assert nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float32


def test_evaluation_runs_without_gradients_and_the_model_trains_again() -> None:
    model = nn.Linear(2, 1)
    seen: list[tuple[bool, bool, int]] = []

    def evaluate(m: nn.Module, epoch: int) -> dict[str, float]:
        seen.append((m.training, torch.is_grad_enabled(), epoch))
        return {"loss": 0.25}

    assert hooks.run_evaluation(model, 3, evaluate) == {"loss": 0.25}
    assert seen == [(False, False, 3)] and model.training
    assert hooks.run_evaluation(model, 3, None) == {}


def test_a_clip_that_is_not_positive_is_refused() -> None:
    with pytest.raises(TaskError, match="clip_grad_norm"):
        TrainingTask(name="t", model=lambda: nn.Linear(1, 1), optimizer=torch.optim.SGD,  # type: ignore[arg-type]
                     dataset=lambda: [], loss=nn.functional.mse_loss, clip_grad_norm=0.0)

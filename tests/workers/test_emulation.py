"""Emulated accelerator time: a training forward pass waits the time per sample times its
batch, evaluation never waits, the model is unchanged otherwise, asking twice never waits
twice, and the environment variable is read (or refused) as the contract says."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from optimus_worker import contract, emulation
from optimus_worker.runtime import task_for_role
from optimus_worker.task import load_task

ENV = contract.ENV_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE
TINY = "tests.workers.tiny_task:tiny"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(emulation.time, "sleep", recorded.append)
    return recorded


def _inputs(task_ref: str, batch: int) -> torch.Tensor:
    inputs, _ = load_task(task_ref).dataset().tensors  # type: ignore[attr-defined]
    return inputs[:batch]  # type: ignore[no-any-return]


@pytest.mark.parametrize("batch", [1, 7, 32])
def test_a_training_pass_waits_per_sample_and_evaluation_never(waits: list[float],
                                                               batch: int) -> None:
    task = load_task(TINY)
    plain = task.model()
    model = emulation.emulate_accelerator(task.model(), 0.004)
    inputs = _inputs(TINY, batch)
    model.train()
    model(inputs)
    model.eval()
    model(inputs)
    assert waits == [pytest.approx(0.004 * batch)]
    assert emulation.emulated_seconds_per_sample(model) == 0.004
    assert emulation.emulated_seconds_per_sample(plain) == 0.0


def test_the_model_keeps_its_parameters_names_and_outputs(waits: list[float]) -> None:
    task = load_task(TINY)
    torch.manual_seed(0)
    plain = task.model()
    torch.manual_seed(0)
    model = emulation.emulate_accelerator(task.model(), 0.001)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in plain.named_parameters()]
    assert model.state_dict().keys() == plain.state_dict().keys()
    inputs = _inputs(TINY, 5)
    assert torch.equal(model(inputs), plain(inputs))


def test_asking_again_replaces_the_time_and_never_waits_twice(waits: list[float]) -> None:
    model = emulation.emulate_accelerator(load_task(TINY).model(), 0.5)
    assert emulation.emulate_accelerator(model, 0.25) is model
    model(_inputs(TINY, 2))
    assert waits == [0.5]


def test_emulated_task_wraps_every_model_and_zero_changes_nothing(waits: list[float]) -> None:
    task = load_task(TINY)
    assert emulation.emulated_task(task, 0.0) is task
    emulated = emulation.emulated_task(task, 0.002)
    assert emulated.name == task.name and emulated.dataset is task.dataset
    assert emulated.metadata["accelerator"] == "emulated, 2 ms/sample"
    emulated.model()(_inputs(TINY, 10))
    assert waits == [pytest.approx(0.02)]
    with pytest.raises(ValueError, match="seconds_per_sample"):
        emulation.emulate_accelerator(task.model(), -1.0)


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, 0.0), ({ENV: ""}, 0.0), ({ENV: " "}, 0.0), ({ENV: "0"}, 0.0),
    ({ENV: "0.002"}, 0.002), ({ENV: " 1e-3 "}, 0.001), ({"OTHER": "5"}, 0.0),
])
def test_the_environment_variable(environ: dict[str, str], expected: float) -> None:
    assert emulation.seconds_per_sample_from_env(environ) == expected


@pytest.mark.parametrize("raw", ["abc", "-0.001", "nan", "inf", "2ms"])
def test_a_bad_value_names_the_variable(raw: str) -> None:
    with pytest.raises(contract.ContractError, match=ENV):
        emulation.seconds_per_sample_from_env({ENV: raw})


@given(st.floats(min_value=0, max_value=10, allow_nan=False))
def test_any_finite_nonnegative_value_reads_back(value: float) -> None:
    assert math.isclose(emulation.seconds_per_sample_from_env({ENV: repr(value)}), value)


def test_only_workers_wait(waits: list[float]) -> None:
    task = load_task(TINY)
    environ = {ENV: "0.001"}
    assert task_for_role(task, "ps", environ) is task
    assert task_for_role(task, "worker", {}) is task
    worker = task_for_role(task, "worker", environ)
    worker.model()(_inputs(TINY, 3))
    assert waits == [pytest.approx(0.003)]
    with pytest.raises(contract.ContractError, match=ENV):
        task_for_role(task, "worker", {ENV: "fast"})

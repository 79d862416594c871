"""Naming a task, the shipped examples, and the single-process reference."""

from __future__ import annotations

import pytest
import torch
from optimus_worker.examples import EXAMPLES
from optimus_worker.reference import train_reference
from optimus_worker.task import BatchSource, TaskError, TrainingTask, load_task


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_are_deterministic_tasks(name: str) -> None:
    task = load_task(name)
    assert isinstance(task, TrainingTask) and task.name == name
    a, b = task.dataset(), task.dataset()
    assert torch.equal(a.tensors[0], b.tensors[0])  # type: ignore[attr-defined]
    torch.manual_seed(task.seed)
    first = [p.clone() for p in task.model().parameters()]
    torch.manual_seed(task.seed)
    assert all(torch.equal(x, y) for x, y in zip(first, task.model().parameters(),
                                                  strict=True))


def test_loss_falls_on_the_reference() -> None:
    task = load_task("tests.workers.tiny_task:tiny")
    one = train_reference(task, 32, 12)  # one epoch of 384 samples
    three = train_reference(task, 32, 36)
    assert three.epoch_losses[2] < three.epoch_losses[1] < three.epoch_losses[0]
    assert one.epoch_losses == three.epoch_losses[:1]


def test_module_attr_reference() -> None:
    assert load_task("tests.workers.tiny_task:tiny").name == "tiny"


@pytest.mark.parametrize(("ref", "match"), [
    ("nope", "neither a shipped example"),
    ("no_such_module_xyz:task", "cannot import"),
    ("optimus_worker.examples:absent", "has no"),
    ("optimus_worker.examples:EXAMPLES", "not a TrainingTask"),
])
def test_bad_references(ref: str, match: str) -> None:
    with pytest.raises(TaskError, match=match):
        load_task(ref)


def test_batch_source_generic_dataset_and_empty_batch() -> None:
    data = [(torch.tensor([float(i)]), torch.tensor(i)) for i in range(5)]
    source = BatchSource(data)  # type: ignore[arg-type]
    x, y = source.batch(torch.tensor([3, 1]))
    assert x.tolist() == [[3.0], [1.0]] and y.tolist() == [3, 1]
    x, y = source.batch(torch.zeros(0, dtype=torch.long))
    assert x.shape == (0, 1) and y.shape == (0,)

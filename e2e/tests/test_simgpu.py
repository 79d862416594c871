"""The emulated-accelerator tasks: the wait is per sample of the worker's share and only in
training, the datasets have the documented sizes, the override applies, and the manifest
helper puts this checkout on PYTHONPATH exactly once."""

from __future__ import annotations

import copy

import pytest
import torch
from optimus_worker import emulation

from e2e import simgpu
from e2e.demo.samples import load_sample


@pytest.mark.parametrize(("factory", "samples", "per_sample"),
                         [(simgpu.mlp, 16384, 0.0005), (simgpu.small_mlp, 2048, 0.002)])
def test_the_wait_is_per_training_sample(monkeypatch: pytest.MonkeyPatch, factory: object,
                                         samples: int, per_sample: float) -> None:
    waits: list[float] = []
    monkeypatch.setattr(emulation.time, "sleep", waits.append)
    task = factory()  # type: ignore[operator]
    assert len(task.dataset()) == samples
    model = task.model()
    inputs = torch.zeros(8, 32)
    model.train()
    assert model(inputs).shape == (8, 10)
    model.eval()
    model(inputs)  # evaluation is not accelerator work the scenarios count
    assert waits == [pytest.approx(per_sample * 8)]


def test_the_environment_overrides_the_time_per_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(simgpu.ENV_SECONDS_PER_SAMPLE, "0.25")
    waits: list[float] = []
    monkeypatch.setattr(emulation.time, "sleep", waits.append)
    simgpu.small_mlp().model()(torch.zeros(2, 32))
    assert waits == [0.5]


def test_the_manifest_gets_this_checkout_on_its_path_once() -> None:
    manifest = copy.deepcopy(load_sample("mnist-mlp"))
    twice = simgpu.on_repository_path(simgpu.on_repository_path(manifest))
    for group in ("parameterServers", "workers"):
        for container in twice["spec"][group]["template"]["spec"]["containers"]:
            paths = [e["value"] for e in container["env"] if e["name"] == "PYTHONPATH"]
            assert paths == [str(simgpu.REPO_ROOT)]
    assert set(simgpu.TASKS) == {simgpu.TASK_MLP, simgpu.TASK_SMALL_MLP}

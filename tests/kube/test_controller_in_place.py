"""The controller's resize in place against the in-memory Kubernetes of tests/kube/fakes.py
and a fake chief (an HTTP server on 127.0.0.1 standing in for the chief's control
endpoint): the added pods are created and the running ones kept, the membership is posted,
the removed pods are deleted once they exited, and the next round records the pause; a
refusal (503), no answer in time, or a pod failing during the resize ends in a
checkpoint-restart of every pod."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from optimus.api import parse_training_job
from optimus.api.status import iso, parse_status
from optimus.kube.builders import build_pods
from optimus.kube.config import OperatorConfig
from optimus.kube.controller import Controller
from optimus_worker import contract

from tests.api.conftest import RAW_JOB
from tests.kube.fakes import FakeKube, FakePrometheus, Progress

NOW = 1_800_000_000.0
INTERVAL = 10.0
Loop = asyncio.AbstractEventLoop
Handler = Callable[[dict[str, Any]], Awaitable[web.Response]]


def _model() -> dict[str, Any]:
    """A fitted all-reduce job whose speed grows with its workers (the policy grows it),
    scaled to the 4 steps/s that `Progress` measures at its 2 workers: a model its own
    measurement contradicts has a wide error band, and the policy would not move the job."""
    def step_time(w: int) -> float:
        return 5e-3 * 64 / w + 0.002

    def speed(w: int) -> float:
        return 4.0 * step_time(2) / step_time(w)
    return {"lossSamples": [[float(k), 1 / (0.3 * k + 1) + 0.1] for k in range(1, 11)],
            "speedSamples": [[0, w, speed(w)] for w in (1, 2, 3, 4)],
            "samplesPerEpoch": 64000.0}


def _ps_model() -> dict[str, Any]:
    """A fitted ps-sync job whose speed is bound by its PS (a 2nd PS pays; its workers are
    fixed at 2), scaled likewise to what `Progress` measures at 1 PS x 2 workers (its 4
    worker steps/s are 2 synchronous steps/s)."""
    def step_time(p: int, w: int) -> float:
        return 5e-3 * 64 / w + 0.002 + 0.1 * w / p

    def speed(p: int, w: int) -> float:
        return 2.0 * step_time(1, 2) / step_time(p, w)
    return {**_model(), "speedSamples": [[p, w, speed(p, w)] for p in (1, 2) for w in (1, 2, 3)]}


@pytest.fixture
def loop() -> Iterator[Loop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


class Clock:
    now = NOW

    def __call__(self) -> float:
        return self.now


class World:
    """ml/mnist, all-reduce, 2 workers of generation 0 running on one node, and its chief:
    `answer` is how the fake chief answers POST /membership. With `ps`, a ps-sync job of
    that many PS and 2 workers (fixed) instead, whose PS count may grow to 2."""

    def __init__(self, loop: Loop, answer: Handler, ps: int = 0) -> None:
        self.loop, self.answer = loop, answer
        self.kube = FakeKube()
        self.kube.add_node("n1", gpus=8, cpus=32)
        raw = copy.deepcopy(RAW_JOB)
        if ps:
            raw["spec"]["workers"].update(min=2, max=2)
        else:
            raw["spec"]["mode"] = "allreduce"
            del raw["spec"]["parameterServers"]
        raw["spec"]["convergence"]["maxEpochs"] = 100
        raw["status"] = {"phase": "Running", "model": _ps_model() if ps else _model(),
                         "allocation": {
            "ps": ps, "workers": 2, "generation": 0, "nodes": ["n1"],
            "placement": {"ps": ["n1"] * ps, "workers": ["n1", "n1"]}, "reason": "allocation",
            "updatedAt": iso(NOW - 700), "runningSince": iso(NOW - 600)}}
        self.kube.add_job(raw)
        allocation = parse_status(raw["status"]).allocation
        assert allocation is not None
        for body in build_pods(parse_training_job(raw), allocation):
            loop.run_until_complete(self.kube.create(body))
        self.kube.run_all()
        self.kube.pods[("ml", "mnist-g0-worker-0")]["status"]["podIP"] = "127.0.0.1"
        self.kube.calls.clear()
        self.membership: list[dict[str, Any]] = []
        self.checkpoints = 0
        self.clock = Clock()
        config = OperatorConfig(interval_seconds=INTERVAL, restart_cost_seconds=60.0,
                                in_place_timeout_seconds=0.5)
        self.controller = Controller(config, self.kube, FakePrometheus(
            [Progress("ml", "mnist", 0, NOW - 600)]), clock=self.clock)
        self.runner = loop.run_until_complete(self._serve())

    async def _serve(self, port: int = 0) -> web.AppRunner:
        async def membership(request: web.Request) -> web.Response:
            body = await request.json()
            self.membership.append(body)
            return await self.answer(body)

        async def checkpoint(request: web.Request) -> web.Response:
            self.checkpoints += 1
            return web.json_response({"step": 10, "epoch": 0.1, "path": "ckpt-10"})

        app = web.Application()
        app.router.add_post(contract.CONTROL_MEMBERSHIP_PATH, membership)
        app.router.add_post(contract.CONTROL_CHECKPOINT_PATH, checkpoint)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self.controller.control_port = runner.addresses[0][1]
        return runner

    def round(self) -> None:
        async def run() -> None:
            await self.controller.run_round(self.kube.source)
            await self.controller.settle()
        self.loop.run_until_complete(run())
        self.clock.now += INTERVAL

    def close(self) -> None:
        self.loop.run_until_complete(self.runner.cleanup())

    @property
    def allocation(self) -> dict[str, Any]:
        return dict(self.kube.status("mnist")["allocation"])

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.kube.status("mnist")["conditions"] if c["type"] == type_)

    def events(self) -> list[str]:
        return [c[4] for c in self.kube.changes("event")]


@pytest.fixture
def world(loop: Loop, request: pytest.FixtureRequest) -> Iterator[World]:
    w = World(loop, request.param)
    yield w
    w.close()


@pytest.fixture
def ps_world(loop: Loop, request: pytest.FixtureRequest) -> Iterator[World]:
    w = World(loop, request.param, ps=1)
    yield w
    w.close()


async def _switched(body: dict[str, Any]) -> web.Response:
    return web.json_response({"generation": body["generation"], "workers": body["workers"],
                              "step": 120, "switch_s": 0.25})


async def _refused(body: dict[str, Any]) -> web.Response:
    return web.json_response({"error": "membership request: the added workers (ranks 2..3) "
                                       "did not join within 120s"}, status=503)


async def _silent(body: dict[str, Any]) -> web.Response:
    await asyncio.sleep(1.0)  # past the operator's 0.5 s
    return await _switched(body)


@pytest.mark.parametrize("world", [_switched], indirect=True)
def test_the_job_grows_in_place_and_the_next_round_records_the_pause(world: World) -> None:
    world.round()
    allocation = world.allocation
    workers = allocation["workers"]
    assert workers > 2 and allocation["generation"] == 1
    assert allocation["resizeKind"] == "InPlaceWorkerChange"
    assert allocation["podGenerations"]["workers"] == [0, 0] + [1] * (workers - 2)
    assert world.membership == [{"workers": workers, "generation": 1}]
    assert world.checkpoints == 0, "in place: no checkpoint"
    assert [c for c in world.kube.calls if c[0] == "delete_pod"] == []
    assert world.kube.job_pod_names("mnist") == {
        "mnist-g0-worker-0", "mnist-g0-worker-1",
        *(f"mnist-g1-worker-{r}" for r in range(2, workers))}
    assert world.condition("Resizing")["reason"] == "ResizeInPlace"
    world.kube.run_all()
    world.round()
    allocation = world.allocation
    assert allocation["pauseSeconds"] == 0.25 and allocation["runningSince"]
    assert world.kube.status("mnist")["resizeCosts"] == {"InPlaceWorkerChange": 0.25}
    assert world.condition("Resizing")["status"] == "False"
    assert "PauseMeasured" in world.events()


@pytest.mark.parametrize("world", [_switched], indirect=True)
def test_a_chief_whose_endpoint_is_not_up_yet_is_asked_again(world: World) -> None:
    # a generation that has just started: its pods run, its chief's control endpoint is
    # not listening yet (connection refused); the operator asks again until it is
    port = world.controller.control_port
    world.loop.run_until_complete(world.runner.cleanup())
    world.controller.settings = replace(world.controller.settings,
                                        in_place_timeout_seconds=10.0)

    async def listen_later() -> None:
        await asyncio.sleep(1.5)
        world.runner = await world._serve(port)

    world.loop.create_task(listen_later())
    world.round()
    assert world.allocation["resizeKind"] == "InPlaceWorkerChange"
    assert len(world.membership) == 1
    world.kube.run_all()
    world.round()
    allocation = world.allocation
    assert allocation["resizeKind"] == "InPlaceWorkerChange" and allocation["generation"] == 1
    assert allocation["pauseSeconds"] == 0.25


@pytest.mark.parametrize("world", [_refused, _silent], indirect=True)
def test_a_refused_or_unanswered_resize_falls_back_to_a_restart(world: World) -> None:
    world.round()
    assert world.allocation["resizeKind"] == "InPlaceWorkerChange"
    assert len(world.membership) == 1
    world.round()  # the next round turns the failed attempt into a restart
    allocation = world.allocation
    assert allocation["generation"] == 2 and allocation["resizeKind"] == "Restart"
    assert allocation["podGenerations"]["workers"] == [2] * allocation["workers"]
    assert world.kube.job_pod_names("mnist") == {
        f"mnist-g2-worker-{r}" for r in range(allocation["workers"])}
    assert world.checkpoints == 1, "the restart checkpoints first"
    resizing = world.condition("Resizing")
    assert resizing["reason"] == "InPlaceFailed"
    assert ("503" in resizing["message"]) or ("no answer" in resizing["message"])
    assert "InPlaceFailed" in world.events()
    assert world.kube.status("mnist")["restarts"] == 0


async def _worker_dies(body: dict[str, Any]) -> web.Response:
    raise AssertionError("replaced per test")


@pytest.mark.parametrize("world", [_worker_dies], indirect=True)
def test_a_worker_failing_during_the_resize_restarts_the_job(world: World) -> None:
    async def dies(body: dict[str, Any]) -> web.Response:
        world.kube.set_phase("mnist-g0-worker-1", "Failed")  # the chief's collective fails
        return web.json_response({"error": "membership request: Connection closed by peer"},
                                 status=503)
    world.answer = dies
    world.round()
    world.round()
    status = world.kube.status("mnist")
    assert status["allocation"]["generation"] == 2 and status["restarts"] == 1
    assert status["allocation"]["resizeKind"] == "Restart"
    assert world.condition("Resizing")["reason"] == "PodFailed"
    assert "mnist-g0-worker-1" not in world.kube.job_pod_names("mnist")


@pytest.mark.parametrize("world", [_switched], indirect=True)
def test_removed_workers_are_deleted_after_they_exit(world: World) -> None:
    world.round()  # grown in place
    world.kube.run_all()
    world.round()  # settled
    grown = world.allocation["workers"]
    # the policy now shrinks it: the model says fewer workers are faster
    # (min too: the pooled knowledge may make 1 worker look as good; the test is about
    # the removed pods, not the policy's choice)
    world.kube.jobs[("ml", "mnist")]["spec"]["workers"].update(min=2, max=2)
    exited: list[str] = []

    async def shrink(body: dict[str, Any]) -> web.Response:
        for rank in range(body["workers"], grown):  # the removed workers leave after it
            name = f"mnist-g1-worker-{rank}"
            world.kube.set_phase(name, "Succeeded")
            exited.append(name)
        return await _switched(body)
    world.answer = shrink
    world.round()
    allocation = world.allocation
    assert allocation["workers"] == 2 and allocation["resizeKind"] == "InPlaceWorkerChange"
    assert allocation["podGenerations"]["workers"] == [0, 0]
    assert exited and not set(exited) & world.kube.job_pod_names("mnist")
    assert world.kube.job_pod_names("mnist") == {"mnist-g0-worker-0", "mnist-g0-worker-1"}


@pytest.mark.parametrize("ps_world", [_switched], indirect=True)
def test_a_ps_job_grows_its_ps_in_place_and_the_next_round_records_the_pause(
        ps_world: World) -> None:
    world = ps_world
    world.round()
    allocation = world.allocation
    assert (allocation["ps"], allocation["workers"], allocation["generation"]) == (2, 2, 1)
    assert allocation["resizeKind"] == "InPlacePSChange"
    assert allocation["podGenerations"] == {"ps": [0, 1], "workers": [0, 0]}
    assert world.membership == [{"workers": 2, "generation": 1, "ps": 2}]
    assert world.checkpoints == 0, "in place: no checkpoint"
    assert [c for c in world.kube.calls if c[0] == "delete_pod"] == []
    assert world.kube.job_pod_names("mnist") == {
        "mnist-g0-ps-0", "mnist-g1-ps-1", "mnist-g0-worker-0", "mnist-g0-worker-1"}
    env = {e["name"]: e.get("value") for e in
           world.kube.pods[("ml", "mnist-g1-ps-1")]["spec"]["containers"][0]["env"]}
    assert (env[contract.ENV_JOIN_IN_PLACE], env[contract.ENV_NUM_PS]) == ("1", "2")
    assert world.condition("Resizing")["reason"] == "ResizeInPlace"
    world.kube.run_all()
    world.round()
    allocation = world.allocation
    assert allocation["pauseSeconds"] == 0.25 and allocation["runningSince"]
    assert world.kube.status("mnist")["resizeCosts"] == {"InPlacePSChange": 0.25}
    assert world.condition("Resizing")["status"] == "False"


@pytest.mark.parametrize("ps_world", [_refused], indirect=True)
def test_a_refused_ps_change_falls_back_to_a_restart(ps_world: World) -> None:
    world = ps_world
    world.round()
    assert world.allocation["resizeKind"] == "InPlacePSChange"
    assert world.membership == [{"workers": 2, "generation": 1, "ps": 2}]
    world.round()
    allocation = world.allocation
    assert allocation["generation"] == 2 and allocation["resizeKind"] == "Restart"
    assert allocation["podGenerations"] == {"ps": [2] * allocation["ps"],
                                            "workers": [2, 2]}
    assert world.kube.job_pod_names("mnist") == {
        *(f"mnist-g2-ps-{r}" for r in range(allocation["ps"])),
        "mnist-g2-worker-0", "mnist-g2-worker-1"}
    assert world.checkpoints == 1, "the restart checkpoints first"
    assert world.condition("Resizing")["reason"] == "InPlaceFailed"
    assert world.kube.status("mnist")["restarts"] == 0

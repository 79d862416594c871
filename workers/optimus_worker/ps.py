"""The parameter-server role: a shard of the parameters and its optimizer, over RPC.

Each PS holds the blocks `assign_parameters` gave it as flat tensors, with the optimizer
running over them (the optimizer state lives here, not on the workers). A worker's step
is one RPC per PS, ``push``: the worker's gradient for that PS's blocks goes in, the
updated values come back.

* ps-sync: a PS sums the w pushes of a step (each worker's gradient is already weighted by
  its share of the global batch, so the sum is the global batch's mean gradient), applies
  one optimizer step and answers all w at once;
* ps-async: a PS applies each push at once and answers it; the staleness of the push (how
  many updates the PS applied since the worker's previous pull) is reported.

PS 0 is also the job's coordinator (`Coordinator`): it keeps the per-epoch loss sums and
the sample ledger, and the pause points at which all workers stop together so that the
chief can write a consistent checkpoint.

A worker change happens in place (`optimus_worker.membership` has the flow): the job's RPC
world is dynamic, so workers join and leave it while the PS serve on. The coordinator
picks the switch step S (the first step no worker has pushed yet) and tells every worker in
the answer to its push of step S - 1; from S on a ps-sync PS sums the new number of pushes
(`ShardServer.switch_workers`); the leaving workers hand their ledgers over
(`Coordinator.hand_over`); the added workers start at S (`Coordinator.join`) and pull the
parameters as of step S (`ShardServer.pull_after`). Pauses are counted per step with the
membership that trained it, so a pause before, at or after S waits for the right workers.
A PS change in place happens at a pause: the chief reloads every PS with its new blocks
(`ShardServer.load`, values and optimizer state), a removed PS leaves (`leave`), and the
release tells the workers the PS to call (`Coordinator.release`, `Coordinator.names`).

The functions at the bottom are the RPC entry points; they act on this process's
`SERVER` and `COORDINATOR`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed.rpc as rpc
from torch.futures import Future

from optimus_worker.assignment import Block
from optimus_worker.data import SampleLedger
from optimus_worker.hooks import LrSchedule, apply_lr_schedule, initial_learning_rates
from optimus_worker.membership import SwitchFailed, switch_step, workers_at
from optimus_worker.metrics import TaskMetrics
from optimus_worker.state import State, block_states, hyper_parameters, restore
from optimus_worker.task import OptimizerFactory


class ShardServer:
    """One PS's blocks, their optimizer, and the sync/async update rule."""

    def __init__(self, sync: bool, num_workers: int, optimizer: OptimizerFactory,
                 metrics: TaskMetrics | None, lr_schedule: LrSchedule | None = None) -> None:
        self.sync = sync
        self.lr_schedule = lr_schedule
        self.initial_lrs: list[float] = []
        self.changes = [(0, num_workers)]  # (first step, pushes a sync step sums)
        self.make_optimizer = optimizer
        self.metrics = metrics
        self.lock = threading.Lock()
        self.blocks: list[Block] = []
        self.params: list[torch.Tensor] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.version = 0  # updates applied
        self.applied = 0  # ps-sync: the job's steps done once the last update is applied
        self.ready = False
        self.pending_pulls: list[tuple[int, Future[Any]]] = []  # (steps done first, pull)
        self.grad_sum: torch.Tensor | None = None
        self.waiting: list[Future[Any]] = []
        self.finished = threading.Event()
        self.removed = False  # a PS change in place removed this PS: leave the RPC world

    def load(self, blocks: list[Block], values: torch.Tensor, optim_state: dict[str, State],
             hyper: dict[str, Any], step: int = 0) -> None:
        with self.lock:
            self.blocks = list(blocks)
            self.params = [piece.clone().requires_grad_(True)
                           for piece in values.split([b.size for b in blocks])]
            self.optimizer = self.make_optimizer(self.params)
            self.initial_lrs = initial_learning_rates(self.optimizer)
            restore(self.optimizer, self.blocks, optim_state, hyper)
            self.ready = True
            self.applied = step
            pulls = self._due_pulls()
        for fut in pulls:
            fut.set_result(self._values())

    def _due_pulls(self) -> list[Future[Any]]:
        """The waiting pulls that may be answered now (under the lock)."""
        due = [f for after, f in self.pending_pulls if after <= self.applied]
        self.pending_pulls = [(a, f) for a, f in self.pending_pulls if a > self.applied]
        return due

    def _values(self) -> tuple[int, torch.Tensor]:
        with torch.no_grad():
            flat = torch.cat([p.detach() for p in self.params]) if self.params else torch.zeros(0)
        return self.version, flat

    def pull(self) -> Future[Any]:
        return self.pull_after(0)

    def pull_after(self, steps: int) -> Future[Any]:
        """The values once loaded and, in ps-sync, once `steps` steps of the job are applied
        (an added worker's first step must see its predecessors' updates); ps-async answers
        with the values of the moment."""
        fut: Future[Any] = Future()
        with self.lock:
            if not self.ready or (self.sync and self.applied < steps):
                self.pending_pulls.append((steps if self.sync else 0, fut))
                return fut
        fut.set_result(self._values())
        return fut

    def switch_workers(self, at: int, workers: int) -> None:
        """From step `at` on a sync step sums `workers` pushes."""
        with self.lock:
            self.changes.append((at, workers))

    def _apply(self, grad: torch.Tensor, step: int) -> None:
        assert self.optimizer is not None
        for param, piece in zip(self.params, grad.split([b.size for b in self.blocks]),
                                strict=True):
            param.grad = piece.to(param.dtype)
        apply_lr_schedule(self.optimizer, self.initial_lrs, self.lr_schedule, step)
        started = time.perf_counter()
        self.optimizer.step()
        self.version += 1
        if self.metrics is not None:
            self.metrics.steps.inc()
            self.metrics.update_seconds.observe(time.perf_counter() - started)

    def push(self, seen_version: int, grad: torch.Tensor, step: int = 0) -> Future[Any]:
        """Take one worker's gradient; the future gives (version, values, staleness)."""
        fut: Future[Any] = Future()
        if not self.sync:
            with self.lock:
                staleness = self.version - seen_version
                self._apply(grad, step)
                version, values = self._values()
            if self.metrics is not None:
                self.metrics.staleness.set(staleness)
            fut.set_result((version, values, staleness))
            return fut
        with self.lock:
            self.grad_sum = grad.clone() if self.grad_sum is None else self.grad_sum.add_(grad)
            self.waiting.append(fut)
            if len(self.waiting) < workers_at(self.changes, step):
                return fut
            self._apply(self.grad_sum, step)
            self.grad_sum = None
            self.applied = step + 1
            answer = (*self._values(), 0)
            waiting, self.waiting = self.waiting, []
            pulls = self._due_pulls()
        for each in waiting:
            each.set_result(answer)
        for each in pulls:
            each.set_result(self._values())
        return fut

    def state(self) -> tuple[list[Block], torch.Tensor, list[State], dict[str, Any]]:
        with self.lock:
            assert self.optimizer is not None
            return (self.blocks, self._values()[1],
                    block_states(self.optimizer, self.params), hyper_parameters(self.optimizer))


class Coordinator:
    """On PS 0: loss sums, the sample ledger, and the pause points for checkpoints."""

    def __init__(self, num_workers: int, dataset_size: int) -> None:
        self.changes = [(0, num_workers)]  # (first step, workers training from it)
        self.dataset_size = dataset_size
        self.lock = threading.Lock()
        self.loaded = False
        self.start_step = 0
        self.final_step = 0
        self.pending_starts: list[Future[Any]] = []
        self.ledger = SampleLedger(dataset_size)
        self.losses: dict[int, list[float]] = {}  # epoch -> [loss sum, samples]
        self.pushed = 0  # highest step count any worker has pushed
        self.pause_at: int | None = None
        self.arrived: dict[int, dict[int, Future[Any]]] = {}  # step -> rank -> paused worker
        self.completed: set[int] = set()  # pause steps whose chief has been let through
        self.switches: dict[int, dict[str, int]] = {}  # switch step -> {at, workers, generation}
        self.passed: dict[int, int] = {}  # switch step -> old workers that pushed the step before
        self.hand_overs: dict[int, int] = {}  # switch step -> leavers' ledgers still due
        self.joining: dict[int, list[Future[Any]]] = {}  # generation -> added workers waiting
        self.started: dict[int, int] = {}  # generation -> its switch step, once passed
        self.ps_names: list[str] | None = None  # after a PS change in place: the PS to call

    def load(self, start_step: int, final_step: int, ledger: dict[int, torch.Tensor],
             losses: dict[int, tuple[float, int]]) -> None:
        with self.lock:
            self.start_step = self.pushed = start_step
            self.final_step = final_step
            self.ledger = SampleLedger(self.dataset_size, {e: v.numpy().copy()
                                                           for e, v in ledger.items()})
            self.losses = {e: [s, float(n)] for e, (s, n) in losses.items()}
            self.loaded = True
            starts, self.pending_starts = self.pending_starts, []
        for fut in starts:
            fut.set_result(start_step)

    def start(self) -> Future[Any]:
        fut: Future[Any] = Future()
        with self.lock:
            if not self.loaded:
                self.pending_starts.append(fut)
                return fut
        fut.set_result(self.start_step)
        return fut

    def report(self, step: int, epoch: int, loss_sum: float, samples: int) -> dict[str, Any]:
        """Record a push's loss (`step`: the pusher's steps done after it); answer whether to
        pause after it, the switch that takes effect after it if any, the losses so far."""
        joiners: list[Future[Any]] = []
        with self.lock:
            self.pushed = max(self.pushed, step)
            acc = self.losses.setdefault(epoch, [0.0, 0.0])
            acc[0] += loss_sum
            acc[1] += samples
            switch = self.switches.get(step)
            if switch is not None:
                self.passed[step] += 1
                if self.passed[step] == workers_at(self.changes, step - 1):
                    self.started[switch["generation"]] = step
                    joiners = self.joining.pop(switch["generation"], [])
            answer = {"pause": self.pause_at == step, "switch": switch, **self._losses()}
        for fut in joiners:
            fut.set_result({"step": step, **answer})
        return answer

    def switch(self, generation: int, workers: int) -> dict[str, Any]:
        """Switch to `workers` workers (of `generation`) at the first step nobody pushed:
        ``{"at": step}``, or ``{"error": why}`` when the job ends first."""
        with self.lock:
            try:
                at = switch_step(self.pushed, self.final_step)
            except SwitchFailed as exc:
                return {"error": str(exc)}
            before = workers_at(self.changes, at - 1)
            self.changes.append((at, workers))
            self.switches[at] = {"at": at, "workers": workers, "generation": generation}
            self.passed[at] = 0
            self.hand_overs[at] = max(0, before - workers)
            return {"at": at}

    def join(self, generation: int) -> Future[Any]:
        """An added worker of `generation`: its future gives ``{"step": S, ...}`` once every
        old worker pushed the step before the switch step S, so every pause before S is
        over and (ps-sync) the PS are about to apply the last step at the old size."""
        fut: Future[Any] = Future()
        with self.lock:
            at = self.started.get(generation)
            if at is None:
                self.joining.setdefault(generation, []).append(fut)
                return fut
            answer = {"step": at, "pause": False, "switch": None, **self._losses()}
        fut.set_result(answer)
        return fut

    def names(self) -> list[str] | None:
        """The PS names after a PS change in place (None: the job's first ones)."""
        with self.lock:
            return self.ps_names

    def hand_over(self, at: int, ledger: dict[int, torch.Tensor]) -> None:
        """A worker leaving at switch step `at` hands over its ledger since its last pause."""
        with self.lock:
            self.ledger.merge(SampleLedger(self.dataset_size,
                                           {e: v.numpy() for e, v in ledger.items()}))
            self.hand_overs[at] -= 1
            chiefs = self._complete_pauses()
        for step, fut in chiefs:
            fut.set_result(step)

    def _complete_pauses(self) -> list[tuple[int, Future[Any]]]:
        """The chief's pause futures that may complete now: every worker of the step's
        membership arrived and every ledger handed over at a switch before it (under the
        lock; the caller completes them outside it)."""
        done = []
        for step, arrived in self.arrived.items():
            chief = arrived.get(0)
            if (chief is None or step in self.completed
                    or len(arrived) < workers_at(self.changes, step - 1)
                    # a pause at a switch step has the leavers among its own arrivals
                    or any(due > 0 for at, due in self.hand_overs.items() if at < step)):
                continue
            self.completed.add(step)
            done.append((step, chief))
        return done

    def _losses(self) -> dict[str, Any]:
        finished = [e for e, (_, n) in self.losses.items() if n >= self.dataset_size]
        last = max(finished) if finished else None
        current = max(self.losses) if self.losses else None
        return {
            "epoch_loss": None if last is None else self.losses[last][0] / self.losses[last][1],
            "running_loss": None if current is None or not self.losses[current][1]
            else self.losses[current][0] / self.losses[current][1],
        }

    def request_pause(self) -> int:
        """Make every worker stop after the next step none of them has pushed yet."""
        with self.lock:
            if self.pause_at is None:  # a pause already pending serves this request too
                self.pause_at = min(self.pushed + 1, self.final_step)
            return self.pause_at

    def arrive(self, rank: int, step: int, ledger: dict[int, torch.Tensor]) -> Future[Any]:
        """A worker paused after `step`: the chief's future completes when all the workers
        that trained that step have (and the leavers' ledgers are in), the others' when the
        chief releases them."""
        fut: Future[Any] = Future()
        with self.lock:
            delta = SampleLedger(self.dataset_size, {e: v.numpy() for e, v in ledger.items()})
            self.ledger.merge(delta)
            self.arrived.setdefault(step, {})[rank] = fut
            chiefs = self._complete_pauses()
        for paused, chief in chiefs:
            chief.set_result(paused)
        return fut

    def snapshot(self) -> tuple[dict[int, torch.Tensor], dict[int, tuple[float, int]],
                                dict[str, Any]]:
        with self.lock:
            ledger = {e: torch.from_numpy(row.copy()) for e, row in self.ledger.counts.items()}
            losses = {e: (s, int(n)) for e, (s, n) in self.losses.items()}
            return ledger, losses, self._losses()

    def release(self, step: int, finished: bool, checkpointed: bool = True,
                reshard: dict[str, Any] | None = None) -> None:
        """Let the workers paused at `step` go on; `reshard`: a PS change in place at this
        pause, ``{"ps_names": the PS they call from now on, "generation": g}``."""
        with self.lock:
            others = [f for r, f in self.arrived.pop(step, {}).items() if r != 0]
            self.completed.discard(step)
            if self.pause_at is not None and self.pause_at <= step:
                self.pause_at = None
            if reshard is not None:
                self.ps_names = list(reshard["ps_names"])
        for fut in others:
            fut.set_result({"finished": finished, "checkpoint_step": step if checkpointed
                            else None, "reshard": reshard})


SERVER: ShardServer | None = None
COORDINATOR: Coordinator | None = None


def _server() -> ShardServer:
    if SERVER is None:
        raise RuntimeError("this process is not a parameter server")
    return SERVER


def _coordinator() -> Coordinator:
    if COORDINATOR is None:
        raise RuntimeError("this process is not PS 0")
    return COORDINATOR


# ---- RPC entry points (called by workers with rpc_sync / rpc_async) -----------------------
def load_shard(blocks: list[Block], values: torch.Tensor, optim_state: dict[str, State],
               hyper: dict[str, Any], step: int = 0) -> None:
    _server().load(blocks, values, optim_state, hyper, step)


@rpc.functions.async_execution
def pull() -> Future[Any]:
    return _server().pull()


@rpc.functions.async_execution
def pull_after(steps: int) -> Future[Any]:
    return _server().pull_after(steps)


def server_switch(at: int, workers: int) -> None:
    _server().switch_workers(at, workers)


@rpc.functions.async_execution
def push(seen_version: int, grad: torch.Tensor, report: tuple[int, int, float, int] | None,
         step: int = 0) -> Future[Any]:
    """A worker's step `step` (0-based, for the learning-rate schedule): its gradient in,
    (version, values, staleness, coordination) out."""
    info = _coordinator().report(*report) if report is not None else None
    then: Callable[[Future[Any]], Any] = lambda f: (*f.value(), info)  # noqa: E731
    return _server().push(seen_version, grad, step).then(then)


def shard_state() -> tuple[list[Block], torch.Tensor, list[State], dict[str, Any]]:
    return _server().state()


def finish() -> None:
    _server().finished.set()


def leave() -> None:
    """A PS change in place removed this PS (its blocks are elsewhere now): exit."""
    server = _server()
    server.removed = True
    server.finished.set()


def coord_names() -> list[str] | None:
    return _coordinator().names()


def coord_load(start_step: int, final_step: int, ledger: dict[int, torch.Tensor],
               losses: dict[int, tuple[float, int]]) -> None:
    _coordinator().load(start_step, final_step, ledger, losses)


@rpc.functions.async_execution
def coord_start() -> Future[Any]:
    return _coordinator().start()


def coord_request_pause() -> int:
    return _coordinator().request_pause()


@rpc.functions.async_execution
def coord_arrive(rank: int, step: int, ledger: dict[int, torch.Tensor]) -> Future[Any]:
    return _coordinator().arrive(rank, step, ledger)


def coord_snapshot() -> tuple[dict[int, torch.Tensor], dict[int, tuple[float, int]],
                              dict[str, Any]]:
    return _coordinator().snapshot()


def coord_release(step: int, finished: bool, checkpointed: bool = True,
                  reshard: dict[str, Any] | None = None) -> None:
    _coordinator().release(step, finished, checkpointed, reshard)


def coord_switch(generation: int, workers: int) -> dict[str, Any]:
    return _coordinator().switch(generation, workers)


@rpc.functions.async_execution
def coord_join(generation: int) -> Future[Any]:
    return _coordinator().join(generation)


def coord_hand_over(at: int, ledger: dict[int, torch.Tensor]) -> None:
    _coordinator().hand_over(at, ledger)

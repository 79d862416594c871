"""The worker role: the training loop shared by all modes, and its PS-mode transport.

A worker computes the gradient of its share of each step's global batch (`DataSchedule`),
then exchanges it: with the parameter servers over RPC (`PSWorker`, here) or with the
other workers by all-reduce (`optimus_worker.allreduce`). Every worker pauses at the same
steps (every ``checkpoint_interval_steps``, the last step, and whenever the chief's
control endpoint asks for a checkpoint); while all are paused, the chief writes a
consistent checkpoint, which is what a new generation resumes from.

In the PS modes the job's RPC world is dynamic (`init_rpc`), so the worker count changes
in the running job (``POST /membership``; the flow is in `optimus_worker.membership`): the
chief agrees the switch step with PS 0's coordinator, the leaving workers hand their
ledgers over and leave the RPC world, the added ones pull the parameters from the PS.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.rpc as rpc

from optimus_worker import contract, ps
from optimus_worker.assignment import Block, assign_parameters
from optimus_worker.checkpoint import Checkpoint, load_latest, save_checkpoint
from optimus_worker.control import ControlServer
from optimus_worker.data import BatchPlan, DataSchedule, SampleLedger
from optimus_worker.hooks import clip_gradients, mixed_precision, run_evaluation
from optimus_worker.lifecycle import Lifecycle, log
from optimus_worker.membership import (
    JOIN_TIMEOUT_S,
    Membership,
    MembershipError,
    Switchboard,
    joins_in_place,
    ps_join_key,
    ps_ready_key,
    ready_key,
    request_timeout,
)
from optimus_worker.metrics import TaskMetrics
from optimus_worker.net import RENDEZVOUS_TIMEOUT_S, bind_host, rendezvous_store, rpc_init_method
from optimus_worker.state import assemble, hyper_parameters
from optimus_worker.task import BatchSource, TrainingTask

CONTROL_TIMEOUT_S = 120.0  # how long POST /checkpoint waits for the checkpoint
PAUSE_TIMEOUT_S = 600.0  # how long a paused worker waits for the others and the chief
RPC_TIMEOUT_S = 120.0
LEAVE_TIMEOUT_S = 30.0  # how long a leaving worker's graceful RPC shutdown may take
RPC_IDS_KEY = "optimus/rpc/ids"  # a store counter: every task's id in the dynamic RPC world
POLL_S = 0.05


def training_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Worker:
    """What every worker does whatever the mode: data, gradient, metrics, control."""

    def __init__(self, env: contract.PodEnv, task: TrainingTask, metrics: TaskMetrics,
                 lifecycle: Lifecycle) -> None:
        self.env = env
        self.task = task
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.device = training_device()
        dataset = task.dataset()
        self.source = BatchSource(dataset)
        self.schedule = DataSchedule(self.source.size, env.global_batch_size, task.seed)
        self.final_step = self.schedule.final_step(env.max_epochs)
        torch.manual_seed(task.seed)
        self.model = task.model().to(self.device)
        self.named = dict(self.model.named_parameters())
        self.sizes = {name: p.numel() for name, p in self.named.items()}
        self.ledger = SampleLedger(self.source.size)  # visits since the last pause
        self.step = 0
        self.epoch_loss: float | None = None
        self.running_loss: float | None = None
        self.lock = threading.Lock()
        self.requests: list[concurrent.futures.Future[dict[str, Any]]] = []
        self.last_checkpoint: dict[str, Any] | None = None
        self.finished = False
        self._perm: tuple[int, np.ndarray] | None = None

    # ---- data and gradient ---------------------------------------------------------------
    def batch(self, step: int) -> tuple[BatchPlan, np.ndarray, torch.Tensor, torch.Tensor]:
        # one process per accelerator: the job's world is every process of every pod
        plan = self.schedule.plan(step, self.env.global_rank, self.env.world_size)
        if self._perm is None or self._perm[0] != plan.epoch:
            self._perm = (plan.epoch, self.schedule.permutation(plan.epoch))
        indices = self._perm[1][plan.start:plan.stop]
        inputs, targets = self.source.batch(torch.from_numpy(indices))
        return plan, indices, inputs.to(self.device), targets.to(self.device)

    def gradient(self, model: torch.nn.Module, plan: BatchPlan, inputs: torch.Tensor,
                 targets: torch.Tensor, weight: float) -> float:
        """Backward of `weight` x the mean loss on this worker's batch; the loss sum."""
        self.model.zero_grad(set_to_none=False)
        with mixed_precision(self.device, self.task.mixed_precision):
            output = model(inputs)
            loss = None if plan.size == 0 else self.task.loss(output, targets)
        if loss is None:  # a world larger than the batch: take part with a zero gradient
            (output.float().sum() * 0.0).backward()
            return 0.0
        (loss.float() * weight).backward()
        return float(loss.detach()) * plan.size

    def account(self, plan: BatchPlan, indices: np.ndarray, compute_s: float, comm_s: float
                ) -> None:
        self.ledger.record(plan.epoch, indices)
        # a pod's processes take equal shares; only its first exports (one metrics port)
        self.metrics.samples.inc(plan.size * self.env.local_world_size)
        self.metrics.steps.inc()
        self.metrics.compute_seconds.observe(compute_s)
        self.metrics.communication_seconds.observe(comm_s)
        self.metrics.step_bytes.inc(self.exchanged_bytes())
        self.metrics.epoch.set(self.schedule.epoch_progress(self.step))
        if self.epoch_loss is not None:
            self.metrics.loss.set(self.epoch_loss)
        self.evaluate_after_epoch()

    def exchanged_bytes(self) -> float:
        """Bytes this process sends and receives in one step's exchange: its gradient to the
        parameter servers and the values back, or the ring all-reduce's 2(w-1)/w of it."""
        gradient = sum(p.numel() * p.element_size() for p in self.named.values())
        if self.env.mode == "allreduce":
            world = self.env.world_size
            return 2.0 * (world - 1) / world * gradient
        return 2.0 * gradient

    def evaluate_after_epoch(self) -> None:
        """The chief runs the task's evaluation once a step finishes an epoch."""
        epoch, offset = self.schedule.position(self.step)
        if not self.env.is_chief or self.task.evaluate is None or offset != 0 or epoch == 0:
            return
        results = run_evaluation(self.model, epoch, self.task.evaluate)
        self.metrics.evaluated(results)
        log(f"evaluation after epoch {epoch}: "
            + ", ".join(f"{k} {v:.4g}" for k, v in sorted(results.items())))

    def is_pause_point(self, step: int) -> bool:
        return step % self.env.checkpoint_interval_steps == 0 or step >= self.final_step

    # ---- checkpoints -------------------------------------------------------------------------
    def rng_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def restore_rng(self, ckpt: Checkpoint | None) -> None:
        """The chief continues the saved RNG stream; the others derive theirs from it."""
        if ckpt is not None and "torch" in ckpt.rng:
            torch.set_rng_state(ckpt.rng["torch"])
        rank = self.env.global_rank
        if rank != 0 or ckpt is None:
            torch.manual_seed(self.task.seed + 7919 * rank + (ckpt.step if ckpt else 0))
        random.seed(self.task.seed + rank)

    def write_checkpoint(self, params: dict[str, torch.Tensor], optim: dict[str, Any],
                         hyper: dict[str, Any], ledger: dict[int, torch.Tensor],
                         losses: dict[int, tuple[float, int]]) -> dict[str, Any]:
        ckpt = Checkpoint(
            step=self.step, epoch=self.schedule.epoch_progress(self.step), params=params,
            optimizer_state=optim, optimizer_hyper=hyper, ledger=ledger, losses=losses,
            rng=self.rng_state(),
            meta={"task": self.task.name, "mode": self.env.mode, "num_ps": self.env.num_ps,
                  "num_workers": self.env.num_workers, "generation": self.env.generation,
                  "global_batch_size": self.env.global_batch_size,
                  "dataset_size": self.source.size, "final_step": self.final_step,
                  "seed": self.task.seed,
                  "position": list(self.schedule.position(self.step))},
        )
        path = save_checkpoint(self.env.checkpoint_dir, ckpt)
        self.metrics.checkpoint_step.set(self.step)
        log(f"checkpoint at step {ckpt.step} (epoch {ckpt.epoch:.3f}): {path.name}")
        return {"step": ckpt.step, "epoch": ckpt.epoch, "path": str(path)}

    def answer_requests(self, answer: dict[str, Any],
                        pending: list[concurrent.futures.Future[dict[str, Any]]]) -> None:
        with self.lock:
            self.last_checkpoint = answer
        for fut in pending:
            fut.set_result(answer)

    def take_requests(self) -> list[concurrent.futures.Future[dict[str, Any]]]:
        with self.lock:
            pending, self.requests = self.requests, []
            return pending

    # ---- the control endpoint (chief) ----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        loss = self.epoch_loss if self.epoch_loss is not None else self.running_loss
        return {"epoch": self.schedule.epoch_progress(self.step), "step": self.step,
                "loss": loss}

    def ask_pause(self) -> None:
        raise NotImplementedError

    def request_checkpoint(self) -> dict[str, Any]:
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        with self.lock:
            if self.finished and self.last_checkpoint is not None:
                return self.last_checkpoint
            self.requests.append(fut)
        self.ask_pause()
        return fut.result(timeout=CONTROL_TIMEOUT_S)

    def request_membership(self, body: Any) -> dict[str, Any]:
        """``POST /membership``: the modes that resize in place override this."""
        raise MembershipError(f"mode {self.env.mode} resizes by checkpoint-restart only")

    def start_control(self) -> None:
        if self.env.is_chief:
            ControlServer(bind_host(), self.env.control_port, self.request_checkpoint,
                          self.status, membership=self.request_membership).start()

    def finish(self) -> None:
        with self.lock:
            self.finished = True
            pending, self.requests = self.requests, []
            answer = self.last_checkpoint
        for fut in pending:
            if answer is not None:
                fut.set_result(answer)
            else:
                fut.set_exception(RuntimeError("the job ended without a checkpoint"))

    def run(self) -> None:
        raise NotImplementedError


def ps_name(index: int, generation: int | None = None) -> str:
    """PS `index`'s name in the RPC world: ``ps{i}`` for the job's first PS, with the
    generation for one added in place (so it never meets a removed PS's name)."""
    return f"ps{index}" if generation is None else f"ps{index}_g{generation}"


def worker_name(rank: int, generation: int) -> str:
    """A worker's name in the RPC world: nobody calls a worker by name, and a worker added
    at rank r must not meet the name of one that left rank r and may still be leaving.
    (torch keeps a dynamic world's members as "name-id," in the store: no '-' or ',')"""
    return f"worker{rank}_g{generation}"


def init_rpc(env: contract.PodEnv) -> dist.Store:
    """Join the job's RPC world; the job's store (the chief serves it).

    The world is dynamic (``world_size=None``): each task joins when it is up and a worker
    may leave, so a worker change needs no new world (`optimus_worker.membership`). Ids
    come from a store counter (unique over the store's life, a leaver's never reused);
    a PS sets `ps_ready_key` once it serves, and the workers wait for all of them."""
    store = rendezvous_store(env.rendezvous, env.is_chief)
    log(f"rendezvous at {env.rendezvous}")
    rpc_id = int(store.add(RPC_IDS_KEY, 1)) - 1
    joining = joins_in_place(os.environ)
    name = (worker_name(env.rank, env.generation) if env.role == "worker"
            else ps_name(env.rank, env.generation if joining else None))
    options = rpc.TensorPipeRpcBackendOptions(
        # a dynamic world: torch takes only the store from the rendezvous (no world size)
        init_method=rpc_init_method(store, rpc_id, 0), rpc_timeout=RPC_TIMEOUT_S,
        num_worker_threads=max(16, 2 * env.num_workers + 4),
    )
    rpc.init_rpc(name, rank=rpc_id, world_size=None, rpc_backend_options=options)
    if env.role == "ps":
        if joining:  # a PS change in place waits for this key
            store.set(ps_join_key(env.generation, env.rank), "1")
        store.set(ps_ready_key(env.rank), "1")
    else:
        _wait_for_keys(store, [ps_ready_key(i) for i in range(env.num_ps)],
                       RENDEZVOUS_TIMEOUT_S, f"the {env.num_ps} PS to serve")
    log(f"joined the RPC world as {name}")
    return store


def leave_rpc() -> None:
    """Leave the dynamic RPC world (the others drop this task); the job goes on."""
    started = time.perf_counter()
    try:
        rpc.shutdown(graceful=True, timeout=LEAVE_TIMEOUT_S)
    except Exception as exc:  # the job goes on without this task either way
        log(f"leaving the RPC world failed ({exc}); exiting anyway")
    log(f"left the RPC world in {time.perf_counter() - started:.3f}s")


def _wait_for_keys(store: dist.Store, keys: list[str], timeout_s: float, what: str) -> None:
    """Poll `store` until `keys` exist: a blocking wait would hold the GIL, and another
    task's join calls into this process while it waits."""
    deadline = time.monotonic() + timeout_s
    while not store.check(keys):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f}s for {what}")
        time.sleep(POLL_S)


class PSWorker(Worker):
    """A worker of ps-sync or ps-async: pushes gradients to and pulls values from the PS."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sync = self.env.mode == "ps-sync"
        self.ps_names = [ps_name(i) for i in range(self.env.num_ps)]  # whom to call
        self.shards = assign_parameters(list(self.sizes.items()), self.env.num_ps)
        self.versions = [0] * self.env.num_ps
        self.flat = {name: p.data.view(-1) for name, p in self.named.items()}
        self.store: dist.Store | None = None
        self.switchboard = Switchboard(
            Membership(self.env.generation, self.env.num_workers, self.env.num_ps),
            self.final_step)
        self.left = False  # this worker left the job at a switch
        self.last_comm_s = 0.0
        # the chief's switch in progress: (membership, switch step, coordination seconds)
        self.switching: tuple[Membership, int, float] | None = None
        # the chief's PS change in progress: (membership, the pause it happens at)
        self.resharding: tuple[Membership, int] | None = None

    def _slices(self, source: dict[str, torch.Tensor], shard: tuple[Block, ...]) -> torch.Tensor:
        if not shard:
            return torch.zeros(0)
        return torch.cat([source[b.name][b.start:b.stop] for b in shard]).cpu()

    def _write(self, shard: tuple[Block, ...], values: torch.Tensor) -> None:
        with torch.no_grad():
            for block, piece in zip(shard, values.split([b.size for b in shard]), strict=True):
                self.flat[block.name][block.start:block.stop].copy_(piece)

    def _initialize_servers(self) -> None:
        """The chief loads the newest checkpoint (or fresh weights) into the PS shards."""
        ckpt = load_latest(self.env.checkpoint_dir)
        if ckpt is None:
            params = {n: p.detach().cpu().reshape(-1) for n, p in self.named.items()}
            optim: dict[str, Any] = {}
            hyper = hyper_parameters(self.task.optimizer(self.model.parameters()))
            start, ledger, losses = 0, {}, {}
        else:
            params = {n: t.reshape(-1) for n, t in ckpt.params.items()}
            optim, hyper = ckpt.optimizer_state, ckpt.optimizer_hyper
            start, ledger, losses = ckpt.step, ckpt.ledger, ckpt.losses
        self.restore_rng(ckpt)
        futures = []
        for index, shard in enumerate(self.shards):
            values = self._slices(params, shard)
            state = {b.name: optim[b.name] for b in shard if b.name in optim}
            futures.append(rpc.rpc_async(self.ps_names[index], ps.load_shard,
                                         args=(list(shard), values, state, hyper, start)))
        torch.futures.wait_all(futures)
        rpc.rpc_sync(ps_name(0), ps.coord_load, args=(start, self.final_step, ledger, losses))

    def ask_pause(self) -> None:
        rpc.rpc_sync(ps_name(0), ps.coord_request_pause)

    def request_membership(self, body: Any) -> dict[str, Any]:
        if self.env.local_world_size > 1:
            # a pod's processes would announce and switch as one: not built yet
            raise MembershipError("pods with several training processes resize by "
                                  "checkpoint-restart only")
        answer = self.switchboard.request(body)  # checks the body first
        return answer.result(timeout=request_timeout(body, JOIN_TIMEOUT_S) + CONTROL_TIMEOUT_S)

    def _ready(self, keys: Any) -> bool:
        assert self.store is not None
        return bool(self.store.check(list(keys)))

    def run(self) -> None:
        env = self.env
        joining = joins_in_place(os.environ)
        self.store = init_rpc(env)
        if joining:  # an added worker: it starts at the switch step the coordinator says
            self.store.set(ready_key(env.generation, env.rank), "1")
            log(f"joining the running job in place as rank {env.rank} of {env.num_workers}")
            answer = rpc.rpc_sync(ps_name(0), ps.coord_join, args=(env.generation,),
                                  timeout=PAUSE_TIMEOUT_S)
            self.step = int(answer["step"])
            self.epoch_loss, self.running_loss = answer["epoch_loss"], answer["running_loss"]
            self.restore_rng(None)
        else:
            if env.is_chief:
                self._initialize_servers()
            else:
                self.restore_rng(None)
            self.step = int(rpc.rpc_sync(ps_name(0), ps.coord_start, timeout=PAUSE_TIMEOUT_S))
        names = rpc.rpc_sync(ps_name(0), ps.coord_names)  # changed by a PS change in place
        self._route(self.ps_names if names is None else names)
        self.start_control()
        log(f"training from step {self.step} to {self.final_step}")
        finished = self.step >= self.final_step
        while not finished:
            finished = self._train_step()
        if self.left:
            self._leave()
            return
        if self.env.is_chief:
            self.switchboard.finish()
            for name in self.ps_names:
                rpc.rpc_sync(name, ps.finish)
        self.finish()
        log(f"done at step {self.step}")

    def _train_step(self) -> bool:
        """One step; at a pause point, the checkpoint protocol; at a switch step, the new
        membership. True when the job is done or this worker leaves it."""
        if self.env.is_chief and self.switching is None and self.resharding is None:
            self._agree_switch()
        started = time.perf_counter()
        plan, indices, inputs, targets = self.batch(self.step)
        weight = plan.size / plan.global_size if self.sync else 1.0
        loss_sum = self.gradient(self.model, plan, inputs, targets, weight)
        # no process sees the whole gradient: each clips its share to the same share of
        # the bound, so the sum stays within it (optimus_worker.hooks)
        clip_gradients(self.named.values(), self.task.clip_grad_norm, weight)
        grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                 for n, p in self.named.items()}
        computed = time.perf_counter()
        report = (self.step + 1, plan.epoch, loss_sum, plan.size)
        futures = [
            rpc.rpc_async(self.ps_names[i], ps.push,
                          args=(self.versions[i], self._slices(grads, shard),
                                report if i == 0 else None, self.step))
            for i, shard in enumerate(self.shards)
        ]
        info: dict[str, Any] = {}
        for index, (shard, fut) in enumerate(zip(self.shards, futures, strict=True)):
            version, values, staleness, answer = fut.wait()
            self.versions[index] = version
            self._write(shard, values)
            if index == 0:
                info = answer
                self.metrics.staleness.set(staleness)
        self.step += 1
        comm_s = time.perf_counter() - computed
        self.epoch_loss = info.get("epoch_loss", self.epoch_loss)
        self.running_loss = info.get("running_loss", self.running_loss)
        self.account(plan, indices, computed - started, comm_s)
        if self.switching is not None and self.step > self.switching[1]:
            self._switched(comm_s)
        self.last_comm_s = comm_s
        if (info.get("pause") or self.is_pause_point(self.step)) and self._pause():
            return True
        switch = info.get("switch")
        if switch is not None and switch["at"] == self.step:
            return self._switch(Membership(switch["generation"], switch["workers"]))
        return False

    # ---- a worker change in place --------------------------------------------------------
    def _agree_switch(self) -> None:
        """The chief, before pushing a step: if a membership request is due, agree its
        switch step with the coordinator and tell every PS (before this push, so no PS
        sees a push of the switch step first). The switch step is at most two steps on
        (ps-sync), so the switchboard is asked as of then."""
        target = self.switchboard.due(self.step + 1, self._ready)
        if target is None:
            return
        if target.num_ps != self.env.num_ps:
            self._agree_reshard(target)
            return
        started = time.perf_counter()
        agreed = rpc.rpc_sync(ps_name(0), ps.coord_switch,
                              args=(target.generation, target.num_workers))
        if "error" in agreed:
            self.switchboard.fail(agreed["error"])
            return
        at = int(agreed["at"])
        if self.sync:
            torch.futures.wait_all([
                rpc.rpc_async(name, ps.server_switch, args=(at, target.num_workers))
                for name in self.ps_names])
        self.switching = (target, at, time.perf_counter() - started)
        log(f"switching to {target.num_workers} workers (generation {target.generation}) "
            f"at step {at}")

    def _switch(self, target: Membership) -> bool:
        """This worker pushed the last step before `target`'s switch step: leave (handing
        the ledger since the last pause to the coordinator) or train on at the new size.
        True when this worker leaves."""
        if self.env.rank >= target.num_workers:
            delta = {e: torch.from_numpy(row) for e, row in self.ledger.counts.items()}
            self.ledger = SampleLedger(self.source.size)
            rpc.rpc_sync(ps_name(0), ps.coord_hand_over, args=(self.step, delta),
                         timeout=PAUSE_TIMEOUT_S)
            self.left = True
            return True
        before = self.env.num_workers
        self.env = replace(self.env, num_workers=target.num_workers,
                           generation=target.generation)
        self.metrics.relabel(self.env.rank, target.generation)
        log(f"from step {self.step} on: {before} -> {target.num_workers} workers "
            f"(generation {target.generation})")
        return False

    def _switched(self, comm_s: float) -> None:
        """The chief finished its first step at the new size: answer the request. The
        time the switch cost the job: the coordination calls, and what that step's
        exchange waited beyond the one before it (the added workers' pull and first
        gradient in ps-sync)."""
        assert self.switching is not None
        target, at, coordination_s = self.switching
        self.switching = None
        switch_s = coordination_s + max(0.0, comm_s - self.last_comm_s)
        self.switchboard.switched(target, {
            "generation": target.generation, "workers": target.num_workers, "step": at,
            "switch_s": round(switch_s, 4)})

    def _leave(self) -> None:
        """Leave the RPC world (the others drop this worker) and exit 0."""
        leave_rpc()
        log(f"left the job after step {self.step}")

    # ---- a PS change in place ------------------------------------------------------------
    def _agree_reshard(self, target: Membership) -> None:
        """The chief: a PS change happens at a pause of every worker (the coordinator's
        next pause step), where the chief moves the blocks with their optimizer state."""
        at = int(rpc.rpc_sync(ps_name(0), ps.coord_request_pause))
        if at >= self.final_step:
            self.switchboard.fail(f"the job ends at step {self.final_step} before it could "
                                  f"switch to {target.num_ps} PS")
            return
        self.resharding = (target, at)
        log(f"switching to {target.num_ps} PS (generation {target.generation}) at step {at}")

    def _reshard(self, target: Membership, params: dict[str, torch.Tensor],
                 optim: dict[str, Any], hyper: dict[str, Any]) -> list[str]:
        """The chief, at the pause: load the balanced assignment over `target`'s PS (the
        values and optimizer state of every block, as a checkpoint would hold them), let
        the removed PS leave; the PS names the workers call from now on."""
        shards = assign_parameters(list(self.sizes.items()), target.num_ps)
        names = [self.ps_names[i] if i < self.env.num_ps else ps_name(i, target.generation)
                 for i in range(target.num_ps)]
        flat = {n: t.reshape(-1) for n, t in params.items()}
        torch.futures.wait_all([
            rpc.rpc_async(name, ps.load_shard, args=(
                list(shard), self._slices(flat, shard),
                {b.name: optim[b.name] for b in shard if b.name in optim}, hyper, self.step))
            for name, shard in zip(names, shards, strict=True)])
        for name in self.ps_names[target.num_ps:]:
            rpc.rpc_sync(name, ps.leave)
        return names

    def _route(self, names: list[str], generation: int | None = None) -> None:
        """Call the PS `names` from now on (the balanced assignment over them) and pull
        their values as of this step."""
        if names != self.ps_names or generation is not None:
            self.ps_names = list(names)
            self.shards = assign_parameters(list(self.sizes.items()), len(names))
            self.versions = [0] * len(names)
            self.env = replace(self.env, num_ps=len(names),
                               generation=self.env.generation if generation is None
                               else generation)
            if generation is not None:
                self.metrics.relabel(self.env.rank, generation)
        # the values as of this step (ps-sync: once the PS applied the steps before it)
        pulls = [rpc.rpc_async(name, ps.pull_after, args=(self.step,), timeout=PAUSE_TIMEOUT_S)
                 for name in self.ps_names]
        for index, (shard, fut) in enumerate(zip(self.shards, pulls, strict=True)):
            self.versions[index], values = fut.wait()
            self._write(shard, values)

    def _pause(self) -> bool:
        """All workers stop after this step; the chief checkpoints (and, at a PS change in
        place, moves the blocks), then releases them."""
        delta = {e: torch.from_numpy(row) for e, row in self.ledger.counts.items()}
        self.ledger = SampleLedger(self.source.size)
        if not self.env.is_chief:
            released = rpc.rpc_sync(ps_name(0), ps.coord_arrive,
                                    args=(self.env.rank, self.step, delta),
                                    timeout=PAUSE_TIMEOUT_S)
            if released["checkpoint_step"] is not None:
                self.metrics.checkpoint_step.set(released["checkpoint_step"])
            if released["reshard"] is not None:
                self._route(released["reshard"]["ps_names"], released["reshard"]["generation"])
            return bool(released["finished"])
        started = time.perf_counter()
        rpc.rpc_sync(ps_name(0), ps.coord_arrive, args=(0, self.step, delta),
                     timeout=PAUSE_TIMEOUT_S)
        pending = self.take_requests()
        target = (self.resharding[0] if self.resharding is not None
                  and self.resharding[1] == self.step else None)
        checkpoint = target is None or bool(pending) or self.is_pause_point(self.step)
        answer: dict[str, Any] | None = None
        reshard: dict[str, Any] | None = None
        with self.lifecycle.critical():
            states = [rpc.rpc_async(name, ps.shard_state) for name in self.ps_names]
            ledger, losses, _ = rpc.rpc_sync(ps_name(0), ps.coord_snapshot)
            flat = {n: torch.zeros(size) for n, size in self.sizes.items()}
            pieces = []
            hyper: dict[str, Any] = {}
            for fut in states:
                blocks, values, block_states, hyper = fut.wait()
                for block, piece, state in zip(
                        blocks, values.split([b.size for b in blocks]), block_states,
                        strict=True):
                    flat[block.name][block.start:block.stop] = piece
                    pieces.append((block, state))
            params = {n: flat[n].reshape(p.shape) for n, p in self.named.items()}
            optim = assemble(pieces, self.sizes)
            if checkpoint:
                answer = self.write_checkpoint(params, optim, hyper, ledger, losses)
            if target is not None:
                names = self._reshard(target, params, optim, hyper)
                reshard = {"ps_names": names, "generation": target.generation}
        if answer is not None:
            self.answer_requests(answer, pending)
        finished = self.step >= self.final_step
        rpc.rpc_sync(ps_name(0), ps.coord_release, args=(self.step, finished, checkpoint,
                                                         reshard))
        if target is not None and reshard is not None:
            before = self.env.num_ps
            self._route(reshard["ps_names"], target.generation)
            self.resharding = None
            self.switching = (target, self.step, time.perf_counter() - started)
            log(f"from step {self.step} on: {before} -> {target.num_ps} PS "
                f"(generation {target.generation})")
        return finished

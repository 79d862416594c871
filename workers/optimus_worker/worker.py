"""The worker role: the training loop shared by all modes, and its PS-mode transport.

A worker computes the gradient of its share of each step's global batch (`DataSchedule`),
then exchanges it: with the parameter servers over RPC (`PSWorker`, here) or with the
other workers by all-reduce (`optimus_worker.allreduce`). Every worker pauses at the same
steps (every ``checkpoint_interval_steps``, the last step, and whenever the chief's
control endpoint asks for a checkpoint); while all are paused, the chief writes a
consistent checkpoint, which is what a new generation resumes from.
"""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time
from typing import Any

import numpy as np
import torch
import torch.distributed.rpc as rpc

from optimus_worker import contract, ps
from optimus_worker.assignment import Block, assign_parameters
from optimus_worker.checkpoint import Checkpoint, load_latest, save_checkpoint
from optimus_worker.control import ControlServer
from optimus_worker.data import BatchPlan, DataSchedule, SampleLedger
from optimus_worker.hooks import clip_gradients, mixed_precision, run_evaluation
from optimus_worker.lifecycle import Lifecycle, log
from optimus_worker.metrics import TaskMetrics
from optimus_worker.net import bind_host, rendezvous_store, rpc_init_method
from optimus_worker.state import assemble, hyper_parameters
from optimus_worker.task import BatchSource, TrainingTask

CONTROL_TIMEOUT_S = 120.0  # how long POST /checkpoint waits for the checkpoint
PAUSE_TIMEOUT_S = 600.0  # how long a paused worker waits for the others and the chief
RPC_TIMEOUT_S = 120.0


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
        from optimus_worker.membership import MembershipError

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


def ps_name(index: int) -> str:
    return f"ps{index}"


def worker_name(rank: int) -> str:
    return f"worker{rank}"


def init_rpc(env: contract.PodEnv) -> None:
    """Join the job's RPC world: workers are ranks 0..w-1, parameter servers w..w+p-1."""
    world = env.num_workers + env.num_ps
    rank = env.rank if env.role == "worker" else env.num_workers + env.rank
    name = worker_name(env.rank) if env.role == "worker" else ps_name(env.rank)
    store = rendezvous_store(env.rendezvous, env.is_chief)
    log(f"rendezvous at {env.rendezvous}")
    options = rpc.TensorPipeRpcBackendOptions(
        init_method=rpc_init_method(store, rank, world), rpc_timeout=RPC_TIMEOUT_S,
        num_worker_threads=max(8, 2 * env.num_workers + 4),
    )
    rpc.init_rpc(name, rank=rank, world_size=world, rpc_backend_options=options)
    log(f"RPC world of {world} up")


class PSWorker(Worker):
    """A worker of ps-sync or ps-async: pushes gradients to and pulls values from the PS."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sync = self.env.mode == "ps-sync"
        self.shards = assign_parameters(list(self.sizes.items()), self.env.num_ps)
        self.versions = [0] * self.env.num_ps
        self.flat = {name: p.data.view(-1) for name, p in self.named.items()}

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
            futures.append(rpc.rpc_async(ps_name(index), ps.load_shard,
                                         args=(list(shard), values, state, hyper)))
        torch.futures.wait_all(futures)
        rpc.rpc_sync(ps_name(0), ps.coord_load, args=(start, self.final_step, ledger, losses))

    def ask_pause(self) -> None:
        rpc.rpc_sync(ps_name(0), ps.coord_request_pause)

    def run(self) -> None:
        if self.env.is_chief:
            self._initialize_servers()
        else:
            self.restore_rng(None)
        self.step = int(rpc.rpc_sync(ps_name(0), ps.coord_start, timeout=PAUSE_TIMEOUT_S))
        pulls = [rpc.rpc_async(ps_name(i), ps.pull, timeout=PAUSE_TIMEOUT_S)
                 for i in range(self.env.num_ps)]
        for index, (shard, fut) in enumerate(zip(self.shards, pulls, strict=True)):
            self.versions[index], values = fut.wait()
            self._write(shard, values)
        self.start_control()
        log(f"training from step {self.step} to {self.final_step}")
        finished = self.step >= self.final_step
        while not finished:
            finished = self._train_step()
        if self.env.is_chief:
            for index in range(self.env.num_ps):
                rpc.rpc_sync(ps_name(index), ps.finish)
        self.finish()
        log(f"done at step {self.step}")

    def _train_step(self) -> bool:
        """One step; at a pause point, the checkpoint protocol. True when the job is done."""
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
            rpc.rpc_async(ps_name(i), ps.push,
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
        self.epoch_loss = info.get("epoch_loss", self.epoch_loss)
        self.running_loss = info.get("running_loss", self.running_loss)
        self.account(plan, indices, computed - started, time.perf_counter() - computed)
        if info.get("pause") or self.is_pause_point(self.step):
            return self._pause()
        return False

    def _pause(self) -> bool:
        """All workers stop after this step; the chief checkpoints, then releases them."""
        delta = {e: torch.from_numpy(row) for e, row in self.ledger.counts.items()}
        self.ledger = SampleLedger(self.source.size)
        if not self.env.is_chief:
            answer = rpc.rpc_sync(ps_name(0), ps.coord_arrive, args=(self.env.rank, self.step,
                                                                     delta),
                                  timeout=PAUSE_TIMEOUT_S)
            self.metrics.checkpoint_step.set(answer["checkpoint_step"])
            return bool(answer["finished"])
        rpc.rpc_sync(ps_name(0), ps.coord_arrive, args=(0, self.step, delta),
                     timeout=PAUSE_TIMEOUT_S)
        pending = self.take_requests()
        with self.lifecycle.critical():
            states = [rpc.rpc_async(ps_name(i), ps.shard_state)
                      for i in range(self.env.num_ps)]
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
            answer = self.write_checkpoint(params, assemble(pieces, self.sizes), hyper,
                                           ledger, losses)
        self.answer_requests(answer, pending)
        finished = self.step >= self.final_step
        rpc.rpc_sync(ps_name(0), ps.coord_release, args=(self.step, finished))
        return finished

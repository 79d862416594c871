"""The all-reduce mode: DistributedDataParallel over gloo (NCCL when GPUs exist).

There is no PS: every worker holds the whole model and optimizer, and DDP averages the
gradients during the backward pass. A worker pod holding g accelerators runs g such
processes (`optimus_worker.launch`), one per device (LOCAL_RANK); the world is all of them,
and "worker" below means one process. Each worker's loss is weighted by its share of the
global batch times w, so DDP's average is exactly the global batch's mean gradient, as in
the PS modes. After every step one small all-reduce carries the step's loss sum and
sample count and the chief's "checkpoint now" flag, so all workers pause at the same step.
At a pause the workers' sample ledgers are summed on the chief, which writes the
checkpoint (its own model and optimizer are everyone's).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from optimus_worker.assignment import Block
from optimus_worker.checkpoint import Checkpoint, load_latest
from optimus_worker.data import SampleLedger
from optimus_worker.hooks import apply_lr_schedule, clip_gradients, initial_learning_rates
from optimus_worker.lifecycle import log
from optimus_worker.net import rendezvous_store
from optimus_worker.state import assemble, block_states, hyper_parameters, restore
from optimus_worker.worker import Worker

COLLECTIVE_TIMEOUT = timedelta(minutes=10)


class AllReduceWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint_wanted = False
        self.losses: dict[int, list[float]] = {}
        self.total_ledger = SampleLedger(self.source.size)  # chief: everything up to now
        self.paused_at = 0

    def ask_pause(self) -> None:
        self.checkpoint_wanted = True

    def _ctl_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def run(self) -> None:
        env = self.env
        store = rendezvous_store(env.rendezvous, env.is_chief)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
            self.device = torch.device("cuda", torch.cuda.current_device())
            self.model.to(self.device)
        dist.init_process_group(backend, store=store, rank=env.global_rank,
                                world_size=env.world_size, timeout=COLLECTIVE_TIMEOUT)
        shipped: list[Any] = [None]
        if env.is_chief:
            ckpt = load_latest(env.checkpoint_dir)
            shipped = [None if ckpt is None else ckpt.to_dict()]
        dist.broadcast_object_list(shipped, src=0)
        ckpt = None if shipped[0] is None else Checkpoint.from_dict(shipped[0])
        self.optimizer = self.task.optimizer(self.model.parameters())
        self.initial_lrs = initial_learning_rates(self.optimizer)
        if ckpt is not None:
            with torch.no_grad():
                for name, param in self.named.items():
                    param.copy_(ckpt.params[name].reshape(param.shape))
            restore(self.optimizer, [Block(n, 0, s) for n, s in self.sizes.items()],
                    ckpt.optimizer_state, ckpt.optimizer_hyper,
                    shapes=[p.shape for p in self.named.values()])
            self.step = self.paused_at = ckpt.step
            self.losses = {e: [s, float(n)] for e, (s, n) in ckpt.losses.items()}
            self.total_ledger = SampleLedger(self.source.size, {
                e: v.numpy().copy() for e, v in ckpt.ledger.items()})
            self._update_losses()
        self.restore_rng(ckpt)
        ddp = DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.start_control()
        log(f"{backend} world of {env.world_size} up; training from step {self.step} to "
            f"{self.final_step}")
        while self.step < self.final_step:
            if self._train_step(ddp):
                break
        dist.barrier()
        self.finish()
        log(f"done at step {self.step}")

    def _update_losses(self) -> None:
        finished = [e for e, (_, n) in self.losses.items() if n >= self.source.size]
        if finished:
            last = max(finished)
            self.epoch_loss = self.losses[last][0] / self.losses[last][1]
        current = max(self.losses) if self.losses else None
        if current is not None and self.losses[current][1]:
            self.running_loss = self.losses[current][0] / self.losses[current][1]

    def _train_step(self, ddp: DistributedDataParallel) -> bool:
        started = time.perf_counter()
        plan, indices, inputs, targets = self.batch(self.step)
        weight = plan.size * self.env.world_size / plan.global_size
        loss_sum = self.gradient(ddp, plan, inputs, targets, weight)
        # DDP averaged the gradients: this is the step's whole gradient, clipped exactly
        clip_gradients(self.model.parameters(), self.task.clip_grad_norm)
        apply_lr_schedule(self.optimizer, self.initial_lrs, self.task.lr_schedule, self.step)
        self.optimizer.step()
        computed = time.perf_counter()
        wanted = 1.0 if self.checkpoint_wanted else 0.0
        self.checkpoint_wanted = False
        ctl = torch.tensor([loss_sum, float(plan.size), wanted], dtype=torch.float64,
                           device=self._ctl_device())
        dist.all_reduce(ctl)
        total_loss, samples, want = ctl.tolist()
        acc = self.losses.setdefault(plan.epoch, [0.0, 0.0])
        acc[0] += total_loss
        acc[1] += samples
        self._update_losses()
        self.step += 1
        self.account(plan, indices, computed - started, time.perf_counter() - computed)
        if want > 0 or self.is_pause_point(self.step):
            self._pause()
        return False

    def _pause(self) -> None:
        """Sum the workers' ledgers on the chief, which writes the checkpoint."""
        first, _ = self.schedule.position(self.paused_at)
        last, _ = self.schedule.position(self.step - 1)
        dense = torch.zeros((last - first + 1, self.source.size), dtype=torch.int64)
        for epoch, row in self.ledger.counts.items():
            dense[epoch - first] += torch.from_numpy(row)
        self.ledger = SampleLedger(self.source.size)
        self.paused_at = self.step
        moved = dense.to(self._ctl_device())
        dist.reduce(moved, dst=0)
        if not self.env.is_chief:
            return
        for offset, row in enumerate(moved.cpu().numpy()):
            self.total_ledger.merge(SampleLedger(self.source.size, {first + offset: row}))
        pending = self.take_requests()
        with self.lifecycle.critical():
            params = {n: p.detach().cpu().clone() for n, p in self.named.items()}
            pieces = [(Block(n, 0, s), st) for (n, s), st in zip(
                self.sizes.items(), block_states(self.optimizer, list(self.named.values())),
                strict=True)]
            answer = self.write_checkpoint(
                params, assemble(pieces, self.sizes), hyper_parameters(self.optimizer),
                {e: torch.from_numpy(r.copy()) for e, r in self.total_ledger.counts.items()},
                {e: (s, int(n)) for e, (s, n) in self.losses.items()})
        self.answer_requests(answer, pending)

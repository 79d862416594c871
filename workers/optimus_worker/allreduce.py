"""The all-reduce mode: DistributedDataParallel over gloo (NCCL when GPUs exist).

There is no PS: every worker holds the whole model and optimizer, and DDP averages the
gradients during the backward pass. A worker pod holding g accelerators runs g such
processes (`optimus_worker.launch`), one per device (LOCAL_RANK); the world is all of them,
and "worker" below means one process. Each worker's loss is weighted by its share of the
global batch times w, so DDP's average is exactly the global batch's mean gradient, as in
the PS modes. After every step one small all-reduce carries the step's loss sum and
sample count, the chief's "checkpoint now" flag and the chief's new membership, if one is
due, so all workers pause or switch at the same step. At a pause the workers' sample
ledgers are summed on the chief, which writes the checkpoint (its own model and optimizer
are everyone's). At a switch (`optimus_worker.membership`) the ledgers are summed the same
way, the leaving workers exit, the others form the new process group in place and the
chief broadcasts its state to the workers that join.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
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
from optimus_worker.membership import (
    Membership,
    MembershipError,
    Switchboard,
    decode,
    encode,
    group_prefix,
    joins_in_place,
    ready_key,
)
from optimus_worker.net import rendezvous_store
from optimus_worker.state import assemble, block_states, hyper_parameters, restore
from optimus_worker.worker import CONTROL_TIMEOUT_S, Worker

COLLECTIVE_TIMEOUT = timedelta(minutes=10)

State = tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any],
              dict[int, torch.Tensor], dict[int, tuple[float, int]]]


class AllReduceWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint_wanted = False
        self.losses: dict[int, list[float]] = {}
        self.total_ledger = SampleLedger(self.source.size)  # chief: everything up to now
        self.paused_at = 0
        self.backend = "nccl" if self.device.type == "cuda" else "gloo"
        self.store: dist.Store | None = None
        self.ddp: DistributedDataParallel | None = None
        self.switchboard = Switchboard(Membership(self.env.generation, self.env.num_workers),
                                       self.final_step)

    def ask_pause(self) -> None:
        self.checkpoint_wanted = True

    def request_membership(self, body: Any) -> dict[str, Any]:
        if self.env.local_world_size > 1:
            # a pod's processes would announce and switch as one: not built yet
            raise MembershipError("pods with several training processes resize by "
                                  "checkpoint-restart only")
        return self.switchboard.request(body).result(timeout=CONTROL_TIMEOUT_S)

    def _ctl_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def _form_group(self) -> None:
        """Form this membership's process group, under its own store prefix. Its timeout
        bounds every collective on the group (gloo), so it is the collective timeout; the
        wait for added workers is bounded before the switch (membership.JOIN_TIMEOUT_S)."""
        assert self.store is not None
        prefixed = dist.PrefixStore(group_prefix(self.env.generation), self.store)
        dist.init_process_group(self.backend, store=prefixed, rank=self.env.global_rank,
                                world_size=self.env.world_size, timeout=COLLECTIVE_TIMEOUT)

    def _wrap(self) -> DistributedDataParallel:
        return DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _share(self, state: dict[str, Any] | None) -> Checkpoint | None:
        """The chief's `state` (a `Checkpoint.to_dict()`, or None), broadcast to all."""
        shipped: list[Any] = [state if self.env.is_chief else None]
        dist.broadcast_object_list(shipped, src=0)
        return None if shipped[0] is None else Checkpoint.from_dict(shipped[0])

    def run(self) -> None:
        env = self.env
        joining = joins_in_place(os.environ)
        self.store = rendezvous_store(env.rendezvous, env.is_chief)
        if self.device.type == "cuda":
            torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
            self.device = torch.device("cuda", torch.cuda.current_device())
            self.model.to(self.device)
        if joining:  # the chief switches once every added worker has said so
            self.store.set(ready_key(env.generation, env.rank), "1")
            log(f"joining the running job in place as rank {env.rank} of {env.num_workers}")
        self._form_group()
        if joining:
            ckpt = self._share(None)  # the chief's state at the switch step
        else:
            latest = load_latest(env.checkpoint_dir) if env.is_chief else None
            ckpt = self._share(None if latest is None else latest.to_dict())
        self.optimizer = self.task.optimizer(self.model.parameters())
        self.initial_lrs = initial_learning_rates(self.optimizer)
        if ckpt is not None:
            self._apply(ckpt)
        self.restore_rng(ckpt)
        self.ddp = self._wrap()
        self.start_control()
        log(f"{self.backend} world of {env.world_size} up; training from step {self.step} to "
            f"{self.final_step}")
        while self.step < self.final_step:
            if self._train_step():
                log(f"left the job after step {self.step}")
                return
        dist.barrier()
        self.switchboard.finish()
        self.finish()
        log(f"done at step {self.step}")

    def _apply(self, ckpt: Checkpoint) -> None:
        """Continue from `ckpt`: a checkpoint read by the chief, or the chief's state."""
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

    def _update_losses(self) -> None:
        finished = [e for e, (_, n) in self.losses.items() if n >= self.source.size]
        if finished:
            last = max(finished)
            self.epoch_loss = self.losses[last][0] / self.losses[last][1]
        current = max(self.losses) if self.losses else None
        if current is not None and self.losses[current][1]:
            self.running_loss = self.losses[current][0] / self.losses[current][1]

    def _ready(self, keys: Sequence[str]) -> bool:
        assert self.store is not None
        return bool(self.store.check(list(keys)))

    def _train_step(self) -> bool:
        """One step, then a pause or a switch if due. True when this worker leaves."""
        assert self.ddp is not None
        started = time.perf_counter()
        plan, indices, inputs, targets = self.batch(self.step)
        weight = plan.size * self.env.world_size / plan.global_size
        loss_sum = self.gradient(self.ddp, plan, inputs, targets, weight)
        # DDP averaged the gradients: this is the step's whole gradient, clipped exactly
        clip_gradients(self.model.parameters(), self.task.clip_grad_norm)
        apply_lr_schedule(self.optimizer, self.initial_lrs, self.task.lr_schedule, self.step)
        self.optimizer.step()
        computed = time.perf_counter()
        wanted = 1.0 if self.checkpoint_wanted else 0.0
        self.checkpoint_wanted = False
        due = self.switchboard.due(self.step, self._ready) if self.env.is_chief else None
        ctl = torch.tensor([loss_sum, float(plan.size), wanted, *encode(due)],
                           dtype=torch.float64, device=self._ctl_device())
        dist.all_reduce(ctl)
        total_loss, samples, want, workers, generation = ctl.tolist()
        acc = self.losses.setdefault(plan.epoch, [0.0, 0.0])
        acc[0] += total_loss
        acc[1] += samples
        self._update_losses()
        self.step += 1
        self.account(plan, indices, computed - started, time.perf_counter() - computed)
        if want > 0 or self.is_pause_point(self.step):
            self._pause()
        target = decode(workers, generation)
        return False if target is None else self._switch(target)

    def _gather_ledger(self) -> None:
        """Sum the workers' ledgers since the last pause into the chief's total."""
        if self.paused_at == self.step:
            return  # nothing trained since: every worker knows it
        first, _ = self.schedule.position(self.paused_at)
        last, _ = self.schedule.position(self.step - 1)
        dense = torch.zeros((last - first + 1, self.source.size), dtype=torch.int64)
        for epoch, row in self.ledger.counts.items():
            dense[epoch - first] += torch.from_numpy(row)
        self.ledger = SampleLedger(self.source.size)
        self.paused_at = self.step
        moved = dense.to(self._ctl_device())
        dist.reduce(moved, dst=0)
        if self.env.is_chief:
            for offset, row in enumerate(moved.cpu().numpy()):
                self.total_ledger.merge(SampleLedger(self.source.size, {first + offset: row}))

    def _state(self, with_ledger: bool = True) -> State:
        """The chief's model, optimizer state, hyper-parameters, ledger and losses."""
        params = {n: p.detach().cpu().clone() for n, p in self.named.items()}
        pieces = [(Block(n, 0, s), st) for (n, s), st in zip(
            self.sizes.items(), block_states(self.optimizer, list(self.named.values())),
            strict=True)]
        ledger = ({e: torch.from_numpy(r.copy()) for e, r in self.total_ledger.counts.items()}
                  if with_ledger else {})
        return (params, assemble(pieces, self.sizes), hyper_parameters(self.optimizer), ledger,
                {e: (s, int(n)) for e, (s, n) in self.losses.items()})

    def _snapshot(self) -> Checkpoint:
        """What an added worker needs from the chief: everything but the ledger totals,
        which only the chief keeps."""
        params, optim, hyper, _, losses = self._state(with_ledger=False)
        return Checkpoint(step=self.step, epoch=self.schedule.epoch_progress(self.step),
                          params=params, optimizer_state=optim, optimizer_hyper=hyper,
                          ledger={}, losses=losses, rng=self.rng_state())

    def _pause(self) -> None:
        """Sum the workers' ledgers on the chief, which writes the checkpoint."""
        self._gather_ledger()
        if not self.env.is_chief:
            return
        pending = self.take_requests()
        with self.lifecycle.critical():
            answer = self.write_checkpoint(*self._state())
        self.answer_requests(answer, pending)

    def _switch(self, target: Membership) -> bool:
        """Leave the old group after this step; form `target`'s (unless this worker leaves)
        and bring the added workers up to date. True when this worker leaves."""
        started = time.perf_counter()
        before = self.env.num_workers
        self._gather_ledger()  # the leaving workers' samples stay counted
        self.ddp = None
        dist.destroy_process_group()
        if self.env.rank >= target.num_workers:
            return True
        self.env = replace(self.env, num_workers=target.num_workers,
                           generation=target.generation)
        self._form_group()
        self.metrics.relabel(self.env.rank, target.generation)
        if target.num_workers > before:  # the newcomers wait for the chief's state
            self._share(self._snapshot().to_dict() if self.env.is_chief else None)
        self.ddp = self._wrap()
        switch_s = time.perf_counter() - started
        log(f"switched in place after step {self.step}: {before} -> {target.num_workers} "
            f"workers (generation {target.generation}) in {switch_s:.3f}s")
        if self.env.is_chief:
            self.switchboard.switched(target, {
                "generation": target.generation, "workers": target.num_workers,
                "step": self.step, "switch_s": round(switch_s, 4)})
        return False

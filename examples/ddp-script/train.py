"""A plain PyTorch DDP training script, written the usual way, that an Optimus TrainingJob
runs as it is (``spec.command``): torch.distributed from the standard environment, its own
data, model, optimizer, learning-rate schedule and loop, its own checkpoints.

Only the lines marked ``# optimus`` were added for the operator: they report samples, loss
and epochs (`optimus_worker.report`), which the operator needs to size the job. Everything
else is what the script would do under ``torchrun`` too:

* it joins the process group with ``init_method="env://"`` (MASTER_ADDR, MASTER_PORT,
  WORLD_SIZE, RANK; the operator sets them, as torchrun does);
* it resumes from the newest checkpoint in ``--checkpoint-dir`` (default
  ``$OPTIMUS_CHECKPOINT_DIR``, the job's checkpoint volume), whatever the number of
  workers it was written with;
* on SIGTERM (a resize or a suspension: the operator deletes the pods, the kubelet sends
  SIGTERM and waits terminationGracePeriodSeconds) rank 0 writes a checkpoint and every
  rank exits 0.

Run it alone: ``torchrun --nproc-per-node=2 examples/ddp-script/train.py --epochs 3``, or
``python examples/ddp-script/train.py`` (one process, no torchrun).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from optimus_worker.report import checkpointed, report  # optimus
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

CHECKPOINT = "checkpoint.pt"
stop_requested = False


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    global stop_requested
    stop_requested = True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--global-batch-size", type=int, default=256,
                        help="samples per step over all processes (each takes its share)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--label-noise", type=float, default=0.2)
    parser.add_argument("--checkpoint-dir", type=Path,
                        default=Path(os.environ.get("OPTIMUS_CHECKPOINT_DIR", "checkpoints")))
    parser.add_argument("--log-every", type=int, default=20, help="steps between log lines")
    return parser.parse_args(argv)


def make_dataset(samples: int, noise: float) -> TensorDataset:
    """Four classes of points, labelled by a fixed random teacher network, a `noise`
    fraction of them at random (no download; the loss then levels off above 0)."""
    generator = torch.Generator().manual_seed(1234)
    inputs = torch.randn(samples, 20, generator=generator)
    teacher = torch.randn(20, 4, generator=generator)
    labels = (torch.tanh(inputs) @ teacher).argmax(dim=1)
    flipped = torch.rand(samples, generator=generator) < noise
    labels[flipped] = torch.randint(0, 4, (int(flipped.sum()),), generator=generator)
    return TensorDataset(inputs, labels)


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, 4))


def save_checkpoint(directory: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{CHECKPOINT}.partial"
    torch.save(state, partial)
    os.replace(partial, directory / CHECKPOINT)


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    path = directory / CHECKPOINT
    return torch.load(path, weights_only=False) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    distributed = "WORLD_SIZE" in os.environ
    use_cuda = torch.cuda.is_available()
    if distributed:
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    torch.manual_seed(0)

    dataset = make_dataset(args.samples, args.label_noise)
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=0)
    # a fixed global batch: a resize changes the shares, not the optimisation
    batch_size = max(1, args.global_batch_size // world)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)
    model = make_model().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    loss_fn = nn.CrossEntropyLoss()

    start_epoch, start_batch, step = 0, 0, 0
    history: list[dict[str, float]] = []  # (epoch, mean loss, world size) along the run
    epoch_loss: float | None = None  # mean loss of the last finished epoch
    checkpoint = load_checkpoint(args.checkpoint_dir)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch, step = checkpoint["epoch"], checkpoint["step"]
        # the same fraction of the epoch, whatever the new world size splits it into
        start_batch = int(checkpoint["epoch_fraction"] * len(loader))
        history, epoch_loss = checkpoint["history"], checkpoint["epoch_loss"]
        if rank == 0:
            print(f"resumed at epoch {start_epoch + checkpoint['epoch_fraction']:.3f}, "
                  f"step {step}, on {world} process(es)", flush=True)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None) \
        if distributed else model

    def state(epoch: int, fraction: float) -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch,
                "epoch_fraction": fraction, "step": step, "history": history,
                "epoch_loss": epoch_loss}

    epoch, fraction = start_epoch, start_batch / len(loader)
    try:
        for epoch in range(start_epoch, args.epochs):
            sampler.set_epoch(epoch)
            first = start_batch if epoch == start_epoch else 0
            total, count = 0.0, 0
            recent: list[float] = []
            for batch, (inputs, targets) in enumerate(loader):
                if batch < first:
                    continue
                if stop_requested:
                    break
                inputs, targets = inputs.to(device), targets.to(device)
                optimizer.zero_grad()
                loss = loss_fn(ddp(inputs), targets)
                loss.backward()
                optimizer.step()
                step += 1
                fraction = (batch + 1) / len(loader)
                total, count = total + loss.item(), count + 1
                recent = [*recent[-19:], loss.item()]
                if step % args.log_every == 0 and rank == 0:
                    history.append({"epoch": epoch + fraction,
                                    "loss": sum(recent) / len(recent), "world": world})
                    print(f"epoch {epoch + fraction:.3f} step {step} loss "
                          f"{sum(recent) / len(recent):.4f}", flush=True)
                report(samples=len(inputs), epoch=epoch + fraction,  # optimus
                       loss=epoch_loss if epoch_loss is not None else total / count)  # optimus
            if stop_requested:
                break
            scheduler.step()
            epoch_loss = total / max(count, 1)
            fraction = 0.0
            if rank == 0:
                save_checkpoint(args.checkpoint_dir, state(epoch + 1, 0.0))
                checkpointed(step)  # optimus
    except RuntimeError:
        # a peer that stopped first breaks the collective this rank was in; on SIGTERM
        # that is expected, and the parameters are still those of the last whole step
        time.sleep(0.2)  # let the signal handler run
        if not stop_requested:
            raise
    if stop_requested:
        if rank == 0:
            save_checkpoint(args.checkpoint_dir, state(epoch, fraction))
            checkpointed(step)  # optimus
            print(f"SIGTERM: checkpoint at epoch {epoch + fraction:.3f}, step {step}",
                  flush=True)
        return 0
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        print(f"done: {args.epochs} epochs, {step} steps, last epoch loss {epoch_loss:.4f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

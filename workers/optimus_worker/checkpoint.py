"""Checkpoints a new generation can resume from, whatever its PS and worker counts.

Layout in the checkpoint directory, for a checkpoint after step ``N``:

* ``ckpt-<N>.pt``: `Checkpoint.to_dict()` saved with torch (tensors, numbers, strings
  only, so it loads with ``weights_only=True``): whole named parameters, the optimizer
  state by parameter name (flattened), epoch, step, the data position, RNG states, the
  per-sample ledger and per-epoch loss sums;
* ``ckpt-<N>.done.json``: the completion marker, written last, with the file's size and
  SHA-256.

Both are written to a temporary name and renamed (atomic on POSIX). A checkpoint counts
only when its marker exists and the file matches it, so a half-written or truncated file
is never read; the newest counted one is resumed. The last `KEEP` are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported only to write or read one: the runner stays light
    import torch

KEEP = 3
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


@dataclass
class Checkpoint:
    """Everything a job needs to continue after `step` steps."""

    step: int
    epoch: float  # fractional epochs done
    params: dict[str, torch.Tensor]
    optimizer_state: dict[str, dict[str, torch.Tensor]]  # name -> state, tensors flattened
    optimizer_hyper: dict[str, Any]  # the param group's hyper-parameters (lr, momentum...)
    ledger: dict[int, torch.Tensor]  # epoch -> visits per sample index
    losses: dict[int, tuple[float, int]]  # epoch -> (sum of sample losses, samples)
    rng: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": 1, "step": self.step, "epoch": self.epoch, "params": self.params,
            "optimizer_state": self.optimizer_state, "optimizer_hyper": self.optimizer_hyper,
            "ledger": self.ledger, "losses": {e: list(v) for e, v in self.losses.items()},
            "rng": self.rng, "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(
            step=int(data["step"]), epoch=float(data["epoch"]), params=data["params"],
            optimizer_state=data["optimizer_state"], optimizer_hyper=data["optimizer_hyper"],
            ledger={int(e): v for e, v in data["ledger"].items()},
            losses={int(e): (float(v[0]), int(v[1])) for e, v in data["losses"].items()},
            rng=data.get("rng", {}), meta=data.get("meta", {}),
        )


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"ckpt-{step:09d}.pt"


def _marker(path: Path) -> Path:
    return path.with_name(path.name[: -len(".pt")] + ".done.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_checkpoint(directory: str | Path, ckpt: Checkpoint, keep: int = KEEP) -> Path:
    """Write `ckpt` atomically, then its marker; drop all but the newest `keep`."""
    import torch

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(folder, ckpt.step)
    _atomic_write(path, lambda handle: torch.save(ckpt.to_dict(), handle))
    marker = {"step": ckpt.step, "epoch": ckpt.epoch, "file": path.name,
              "bytes": path.stat().st_size, "sha256": _sha256(path)}
    _atomic_write(_marker(path), lambda handle: handle.write(json.dumps(marker).encode()))
    for old in complete_checkpoints(folder)[:-keep]:
        _marker(old).unlink(missing_ok=True)  # the marker first: never a marker without file
        old.unlink(missing_ok=True)
    return path


def _is_complete(path: Path) -> bool:
    try:
        marker = json.loads(_marker(path).read_text())
        return bool(
            marker["file"] == path.name
            and path.stat().st_size == marker["bytes"]
            and _sha256(path) == marker["sha256"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def complete_checkpoints(directory: str | Path) -> list[Path]:
    """The complete checkpoints in `directory`, oldest first."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.iterdir() if _NAME.match(p.name))
    return [p for p in found if _is_complete(p)]


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint's file (found without torch)."""
    done = complete_checkpoints(directory)
    return done[-1] if done else None


def load_checkpoint(path: str | Path) -> Checkpoint:
    import torch

    with Path(path).open("rb") as handle:
        return Checkpoint.from_dict(torch.load(handle, weights_only=True))


def checkpoint_step(path: Path) -> int:
    match = _NAME.match(path.name)
    if match is None:
        raise ValueError(f"{path} is not a checkpoint file")
    return int(match.group(1))


def load_latest(directory: str | Path) -> Checkpoint | None:
    """The newest complete checkpoint, or None for a fresh job."""
    path = latest_checkpoint(directory)
    return None if path is None else load_checkpoint(path)

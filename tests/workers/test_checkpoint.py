"""Checkpoints: atomic, complete-only, newest wins, old ones pruned."""

from __future__ import annotations

from pathlib import Path

import torch
from optimus_worker.checkpoint import (
    Checkpoint,
    complete_checkpoints,
    latest_checkpoint,
    load_latest,
    save_checkpoint,
)


def _ckpt(step: int) -> Checkpoint:
    return Checkpoint(
        step=step, epoch=step / 10, params={"w": torch.full((2, 3), float(step))},
        optimizer_state={"w": {"momentum_buffer": torch.ones(6), "step": torch.tensor(3.0)}},
        optimizer_hyper={"lr": 0.1, "momentum": 0.9, "nesterov": False},
        ledger={0: torch.tensor([1, 1, 0])}, losses={0: (1.5, 3)},
        rng={"torch": torch.get_rng_state()}, meta={"mode": "ps-sync", "dataset_size": 3},
    )


def test_round_trip(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _ckpt(7))
    loaded = load_latest(tmp_path)
    assert loaded is not None
    assert loaded.step == 7 and loaded.epoch == 0.7
    assert torch.equal(loaded.params["w"], torch.full((2, 3), 7.0))
    assert loaded.losses == {0: (1.5, 3)}
    assert torch.equal(loaded.ledger[0], torch.tensor([1, 1, 0]))
    assert loaded.optimizer_hyper["momentum"] == 0.9


def test_truncated_newest_is_ignored(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _ckpt(10))
    newest = save_checkpoint(tmp_path, _ckpt(20))
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    loaded = load_latest(tmp_path)
    assert loaded is not None and loaded.step == 10


def test_file_without_marker_is_ignored(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _ckpt(10))
    (tmp_path / "ckpt-000000030.pt").write_bytes(b"half written")
    (tmp_path / ".ckpt-000000040.pt.123.tmp").write_bytes(b"in progress")
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-000000010.pt"


def test_keeps_the_newest_three(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4, 5):
        save_checkpoint(tmp_path, _ckpt(step))
    assert [p.name for p in complete_checkpoints(tmp_path)] == [
        "ckpt-000000003.pt", "ckpt-000000004.pt", "ckpt-000000005.pt"]
    assert not list(tmp_path.glob("*.tmp"))


def test_empty_or_missing_directory(tmp_path: Path) -> None:
    assert load_latest(tmp_path) is None
    assert load_latest(tmp_path / "absent") is None

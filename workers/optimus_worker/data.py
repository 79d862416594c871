"""Which samples each worker trains on at each step (pure, torch-free).

The data plan is a pure function of the job-level step count, so a new generation with a
different worker count continues at exactly the same sample of the epoch:

* epoch ``e`` visits the dataset in the order of a permutation seeded by ``(seed, e)``;
* step ``k`` (0-based) of the job consumes the next ``M`` positions of that permutation,
  ``M`` = the global batch size (the last step of an epoch takes what is left);
* those positions are split over the ``w`` workers in contiguous runs, the first
  ``B mod w`` workers taking one sample more.

`SampleLedger` is how the workers prove it: each worker records the index of every sample
it fed to its model, the ledgers travel inside the checkpoints, and `coverage` counts what
was seen, repeated and skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchPlan:
    """One worker's share of one step: positions [start, stop) of epoch `epoch`'s order."""

    epoch: int
    start: int
    stop: int
    global_size: int  # samples in the whole step, over all workers

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class DataSchedule:
    """The step -> samples map of a job: dataset size n, global batch M, shuffling seed."""

    dataset_size: int
    global_batch_size: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset_size < 1:
            raise ValueError(f"dataset_size={self.dataset_size}: the dataset is empty")
        if self.global_batch_size < 1:
            raise ValueError(f"global_batch_size={self.global_batch_size} must be >= 1")

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.dataset_size / self.global_batch_size)

    def final_step(self, epochs: int) -> int:
        """The step count after `epochs` full epochs."""
        return epochs * self.steps_per_epoch

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, sample offset in that epoch) once `step` steps are done."""
        epoch, index = divmod(step, self.steps_per_epoch)
        return epoch, index * self.global_batch_size

    def epoch_progress(self, step: int) -> float:
        """Fractional epochs done after `step` steps (samples-based)."""
        epoch, offset = self.position(step)
        return epoch + offset / self.dataset_size

    def plan(self, step: int, rank: int, num_workers: int) -> BatchPlan:
        """Worker `rank`'s positions for step `step` (0-based) in a world of `num_workers`."""
        if not 0 <= rank < num_workers:
            raise ValueError(f"rank {rank} out of range for {num_workers} workers")
        epoch, offset = self.position(step)
        total = min(self.global_batch_size, self.dataset_size - offset)
        base, extra = divmod(total, num_workers)
        start = offset + rank * base + min(rank, extra)
        stop = start + base + (1 if rank < extra else 0)
        return BatchPlan(epoch=epoch, start=start, stop=stop, global_size=total)

    def permutation(self, epoch: int) -> np.ndarray:
        """The order in which epoch `epoch` visits the dataset."""
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(self.dataset_size)


class SampleLedger:
    """How often each sample of each epoch was trained on (counted by the workers)."""

    def __init__(self, dataset_size: int, counts: dict[int, np.ndarray] | None = None) -> None:
        self.dataset_size = dataset_size
        self.counts: dict[int, np.ndarray] = dict(counts or {})

    def record(self, epoch: int, indices: np.ndarray) -> None:
        row = self.counts.get(epoch)
        if row is None:
            row = self.counts[epoch] = np.zeros(self.dataset_size, dtype=np.int64)
        np.add.at(row, indices, 1)

    def merge(self, other: SampleLedger) -> None:
        for epoch, row in other.counts.items():
            mine = self.counts.get(epoch)
            self.counts[epoch] = row.copy() if mine is None else mine + row

    def clear(self) -> None:
        self.counts.clear()

    def to_dict(self) -> dict[int, list[int]]:
        return {epoch: row.tolist() for epoch, row in sorted(self.counts.items())}

    @classmethod
    def from_dict(cls, dataset_size: int, data: dict[int, list[int]]) -> SampleLedger:
        return cls(dataset_size, {int(e): np.asarray(r, dtype=np.int64) for e, r in data.items()})

    def coverage(self, schedule: DataSchedule, step: int) -> Coverage:
        """Compare with what `step` steps of `schedule` should have visited exactly once."""
        expected: dict[int, np.ndarray] = {}
        epoch, offset = schedule.position(step)
        for e in range(epoch):
            expected[e] = np.ones(self.dataset_size, dtype=np.int64)
        if offset:
            partial = np.zeros(self.dataset_size, dtype=np.int64)
            partial[schedule.permutation(epoch)[:offset]] = 1
            expected[epoch] = partial
        seen = repeated = skipped = 0
        for e in set(expected) | set(self.counts):
            got = self.counts.get(e, np.zeros(self.dataset_size, dtype=np.int64))
            want = expected.get(e, np.zeros(self.dataset_size, dtype=np.int64))
            seen += int(got.sum())
            repeated += int(np.clip(got - want, 0, None).sum())
            skipped += int(np.clip(want - got, 0, None).sum())
        return Coverage(seen=seen, repeated=repeated, skipped=skipped)


@dataclass(frozen=True)
class Coverage:
    seen: int
    repeated: int  # visits beyond the one each planned sample should get
    skipped: int  # planned visits that never happened

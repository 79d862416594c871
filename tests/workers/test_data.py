"""The data plan: every step's samples split exactly over any worker count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus_worker.data import DataSchedule, SampleLedger


@given(n=st.integers(1, 500), m=st.integers(1, 80), w=st.integers(1, 9), step=st.integers(0, 60))
def test_workers_split_each_step_exactly(n: int, m: int, w: int, step: int) -> None:
    schedule = DataSchedule(n, m)
    plans = [schedule.plan(step, r, w) for r in range(w)]
    epoch, offset = schedule.position(step)
    assert plans[0].start == offset
    for a, b in itertools.pairwise(plans):
        assert a.stop == b.start  # contiguous, disjoint
    assert plans[-1].stop == min(offset + m, n)
    sizes = [p.size for p in plans]
    assert max(sizes) - min(sizes) <= 1  # the remainder goes one sample each, to the first
    assert sizes == sorted(sizes, reverse=True)
    assert all(p.epoch == epoch and p.global_size == sum(sizes) for p in plans)


@given(n=st.integers(1, 300), m=st.integers(1, 50),
       resizes=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 6)), max_size=4),
       epochs=st.integers(1, 3))
def test_changing_worker_count_never_skips_or_repeats(
        n: int, m: int, resizes: list[tuple[int, int]], epochs: int) -> None:
    schedule = DataSchedule(n, m, seed=3)
    final = schedule.final_step(epochs)
    changes = dict(resizes)
    ledger = SampleLedger(n)
    workers = 2
    for step in range(final):
        workers = changes.get(step, workers)
        for rank in range(workers):
            plan = schedule.plan(step, rank, workers)
            ledger.record(plan.epoch, schedule.permutation(plan.epoch)[plan.start:plan.stop])
    coverage = ledger.coverage(schedule, final)
    assert (coverage.seen, coverage.repeated, coverage.skipped) == (n * epochs, 0, 0)


def test_coverage_counts_repeats_and_skips_mid_epoch() -> None:
    schedule = DataSchedule(10, 4, seed=1)
    ledger = SampleLedger(10)
    order = schedule.permutation(0)
    ledger.record(0, order[:4])
    ledger.record(0, order[2:6])  # two repeated, position 4..5 also planned by step 2
    coverage = ledger.coverage(schedule, 2)  # 8 planned samples
    assert coverage == type(coverage)(seen=8, repeated=2, skipped=2)


def test_permutation_is_deterministic_per_epoch() -> None:
    schedule = DataSchedule(50, 8, seed=5)
    assert np.array_equal(schedule.permutation(2), DataSchedule(50, 8, seed=5).permutation(2))
    assert not np.array_equal(schedule.permutation(0), schedule.permutation(1))
    assert sorted(schedule.permutation(3)) == list(range(50))


def test_position_and_progress() -> None:
    schedule = DataSchedule(10, 4)  # steps of 4, 4, 2 samples
    assert schedule.steps_per_epoch == 3
    assert schedule.position(4) == (1, 4)
    assert schedule.epoch_progress(4) == pytest.approx(1.4)
    assert schedule.plan(2, 0, 1).global_size == 2


@pytest.mark.parametrize(("n", "m"), [(0, 4), (4, 0)])
def test_bad_sizes(n: int, m: int) -> None:
    with pytest.raises(ValueError):
        DataSchedule(n, m)

"""propose_probes: off the diagonal, within bounds, new, spread out, and worth it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optimus.models import (
    ModelError,
    SpeedParams,
    SpeedSample,
    fit_speed,
    predict_speed,
    probes_within_box,
    propose_probes,
)


@st.composite
def bounds_and_seen(draw: st.DrawFn) -> tuple[int, int, int, int, set[tuple[int, int]]]:
    min_ps = draw(st.integers(1, 8))
    max_ps = draw(st.integers(min_ps, 40))
    min_w = draw(st.integers(1, 8))
    max_w = draw(st.integers(min_w, 40))
    seen = draw(
        st.sets(st.tuples(st.integers(1, 45), st.integers(1, 45)), max_size=12)
    )
    return min_ps, max_ps, min_w, max_w, seen


@settings(max_examples=80, deadline=None)
@given(case=bounds_and_seen(), count=st.integers(0, 12), mode=st.sampled_from(["sync", "async"]))
def test_probes_are_off_diagonal_within_bounds_new_and_distinct(
    case: tuple[int, int, int, int, set[tuple[int, int]]], count: int, mode: str
) -> None:
    min_ps, max_ps, min_w, max_w, seen = case
    probes = propose_probes(min_ps, max_ps, min_w, max_w, seen, count, mode)
    eligible = {
        (p, w)
        for p in range(min_ps, max_ps + 1)
        for w in range(min_w, max_w + 1)
        if p != w and (p, w) not in seen
    }
    assert len(probes) == min(count, len(eligible))  # bounds <= 40: the whole grid is searched
    assert len(set(probes)) == len(probes)
    for p, w in probes:
        assert min_ps <= p <= max_ps and min_w <= w <= max_w
        assert p != w
        assert (p, w) not in seen


def test_probes_on_a_large_box_stay_within_bounds() -> None:
    probes = propose_probes(1, 5000, 1, 3000, [], 10, "sync")
    assert len(probes) == 10
    assert all(1 <= p <= 5000 and 1 <= w <= 3000 and p != w for p, w in probes)


def test_probes_spread_out_rather_than_cluster() -> None:
    probes = propose_probes(1, 16, 1, 16, [], 6, "sync")
    ps = {p for p, _ in probes}
    workers = {w for _, w in probes}
    assert len(ps) >= 4 and len(workers) >= 3
    # Both ends of each axis get explored.
    assert min(ps) <= 2 and max(ps) >= 15 and min(workers) <= 2 and max(workers) >= 15


def test_allreduce_probes_have_no_parameter_servers() -> None:
    probes = propose_probes(3, 9, 1, 8, [(0, 4)], 10, "allreduce")
    assert all(p == 0 for p, _ in probes)
    assert sorted(w for _, w in probes) == [1, 2, 3, 5, 6, 7, 8]


def test_candidates_restrict_the_choice() -> None:
    grid = [(p, w) for p in (1, 3, 5, 7) for w in (1, 3, 5, 7)]
    probes = propose_probes(1, 7, 1, 7, [(3, 5)], 20, "sync", candidates=grid)
    assert set(probes) == {c for c in grid if c[0] != c[1]} - {(3, 5)}


def test_only_diagonal_room_gives_no_probes() -> None:
    assert propose_probes(2, 2, 2, 2, [], 3, "sync") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 4, 1, 4, [], 2, "sync"), "min_ps"),
        ((1, 4, 0, 4, [], 2, "sync"), "min_workers"),
        ((5, 4, 1, 4, [], 2, "sync"), "empty"),
        ((1, 4, 1, 4, [], -1, "sync"), "count"),
        ((1, 4, 1, 4, [], 1, "nccl"), "unknown speed mode"),
    ],
)
def test_bad_bounds_raise(args: tuple, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ModelError, match=message):
        propose_probes(*args)


def test_probed_samples_predict_better_than_diagonal_samples() -> None:
    """The reason for off-diagonal probes: the diagonal cannot separate w/p from 1."""
    truth = SpeedParams("ps-sync", 32.0, (0.01, 0.1, 0.6, 0.02, 0.05))
    grid = [(p, w) for p in range(1, 13) for w in range(1, 13)]
    diagonal = [(n, n) for n in range(1, 13, 2)]
    probes = propose_probes(1, 12, 1, 12, [], len(diagonal), "sync")

    def error(configs: list[tuple[int, int]]) -> float:
        samples = [SpeedSample(p, w, predict_speed(truth, p, w)) for p, w in configs]
        fitted = fit_speed(samples, "sync", 32.0)
        return float(
            np.mean([abs(predict_speed(fitted, p, w) / predict_speed(truth, p, w) - 1)
                     for p, w in grid])
        )

    assert error(probes) < 0.5 * error(diagonal)


def test_probes_stay_in_the_box_until_it_is_measured_then_use_the_whole_bounds() -> None:
    inside = probes_within_box(1, 20, 1, 12, {(1, 1)}, 50, "ps-sync")
    assert inside and all(p <= 8 and w <= 4 for p, w in inside)
    box = {(p, w) for p in range(1, 9) for w in range(1, 5)}
    outside = probes_within_box(1, 20, 1, 12, box, 3, "ps-sync")
    assert len(outside) == 3 and all(p > 8 or w > 4 for p, w in outside)
    uncapped = probes_within_box(1, 20, 1, 12, {(1, 1)}, 50, "ps-sync", box=(None, None))
    assert set(uncapped) == set(propose_probes(1, 20, 1, 12, {(1, 1)}, 50, "ps-sync"))
    # a box below the job's minimum shrinks to the minimum, then gives way to the bounds
    assert probes_within_box(10, 12, 6, 8, set(), 1, "ps-sync") == [(10, 6)]
    assert probes_within_box(10, 12, 6, 8, {(10, 6)}, 1, "ps-sync")[0] != (10, 6)

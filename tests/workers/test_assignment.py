"""The paper's parameter assignment: complete, balanced, large blocks sliced."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus_worker.assignment import assign_parameters


@given(sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=12), p=st.integers(1, 8))
def test_every_element_on_exactly_one_ps_and_loads_balanced(sizes: list[int], p: int) -> None:
    named = [(f"p{i}", s) for i, s in enumerate(sizes)]
    shards = assign_parameters(named, p)
    assert len(shards) == p
    covered: dict[str, list[tuple[int, int]]] = {}
    for shard in shards:
        for block in shard:
            covered.setdefault(block.name, []).append((block.start, block.stop))
    for name, size in named:
        spans = sorted(covered[name])
        assert spans[0][0] == 0 and spans[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    average = math.ceil(sum(sizes) / p)
    biggest = max(b.size for shard in shards for b in shard)
    assert biggest <= average  # sliced to at most the per-PS average
    loads = [sum(b.size for b in shard) for shard in shards]
    assert max(loads) <= average + biggest  # greedy largest-first bound


def test_one_huge_parameter_is_spread_over_all_ps() -> None:
    shards = assign_parameters([("embedding", 1000), ("bias", 10)], 4)
    loads = [sum(b.size for b in shard) for shard in shards]
    assert all(load > 0 for load in loads)
    assert max(loads) - min(loads) <= 250


def test_requests_balanced_when_sizes_equal() -> None:
    shards = assign_parameters([(f"w{i}", 100) for i in range(6)], 3)
    assert [len(s) for s in shards] == [2, 2, 2]


def test_better_than_round_robin_on_skewed_sizes() -> None:
    sizes = [("a", 900), ("b", 10), ("c", 800), ("d", 10), ("e", 700), ("f", 10)]
    p = 3
    round_robin = [sum(s for j, (_, s) in enumerate(sizes) if j % p == i) for i in range(p)]
    shards = assign_parameters(sizes, p)
    loads = [sum(b.size for b in shard) for shard in shards]
    assert max(loads) < max(round_robin)


@pytest.mark.parametrize("p", [0, -1])
def test_needs_a_ps(p: int) -> None:
    with pytest.raises(ValueError, match="num_ps"):
        assign_parameters([("w", 3)], p)

"""Which parameter server holds which parameters (pure, torch-free).

The paper's parameter assignment (Optimus, Sec. 5.2) balances two loads across the p
parameter servers: the bytes each PS stores and serves, and the number of update requests
(one per parameter block per worker per step) it handles. A block larger than the per-PS
average would overload whichever PS gets it, so it is first sliced into pieces no larger
than that average; then blocks are dealt, largest first, each to the PS with the least
bytes so far, ties broken by the fewest blocks.

Blocks are flat element ranges of named parameters, so the layout is independent of the PS
count: a checkpoint stores whole named parameters and any p re-shards them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Block:
    """Elements [start, stop) of the flattened parameter `name`."""

    name: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def slice_blocks(sizes: Sequence[tuple[str, int]], num_ps: int) -> list[Block]:
    """Whole parameters as blocks, those above the per-PS average cut into equal pieces."""
    total = sum(size for _, size in sizes)
    limit = max(1, math.ceil(total / num_ps))
    blocks: list[Block] = []
    for name, size in sizes:
        pieces = max(1, math.ceil(size / limit))
        bounds = [size * i // pieces for i in range(pieces + 1)]
        blocks.extend(Block(name, a, b) for a, b in itertools.pairwise(bounds) if b > a)
    return blocks


def assign_parameters(sizes: Sequence[tuple[str, int]], num_ps: int
                      ) -> tuple[tuple[Block, ...], ...]:
    """The blocks each of `num_ps` parameter servers holds, for parameters (name, elements)."""
    if num_ps < 1:
        raise ValueError(f"num_ps={num_ps}: parameter assignment needs at least one PS")
    names = [name for name, _ in sizes]
    if len(set(names)) != len(names):
        raise ValueError("parameter names must be unique")
    order = {name: i for i, name in enumerate(names)}
    blocks = sorted(slice_blocks(sizes, num_ps), key=lambda b: (-b.size, order[b.name], b.start))
    loads = [0] * num_ps
    shards: list[list[Block]] = [[] for _ in range(num_ps)]
    for block in blocks:
        target = min(range(num_ps), key=lambda i: (loads[i], len(shards[i]), i))
        loads[target] += block.size
        shards[target].append(block)
    # A stable order inside each PS: model order, so pushes and pulls line up on both sides.
    return tuple(
        tuple(sorted(shard, key=lambda b: (order[b.name], b.start))) for shard in shards
    )

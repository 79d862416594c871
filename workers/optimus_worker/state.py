"""Optimizer state and parameters in the PS-count-independent layout of a checkpoint.

An optimizer here always runs over flat 1-D pieces of named parameters (`Block`s): the
whole parameters in all-reduce mode, the blocks a PS holds in PS modes. Its state is kept
by parameter name: per-element tensors (momentum, Adam moments) flattened to the whole
parameter's length, scalars (Adam's step) as they are. Any other block layout can be cut
from that, which is how a new generation re-shards over a different PS count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from optimus_worker.assignment import Block

State = dict[str, torch.Tensor]


def hyper_parameters(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The single param group's settings (lr, momentum...), without the params."""
    if len(optimizer.param_groups) != 1:
        raise ValueError("the task's optimizer factory must build exactly one param group")
    return {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}


def block_states(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> list[State]:
    """The optimizer's state of each of `params` (flat tensors), in their order."""
    out: list[State] = []
    for param in params:
        state = optimizer.state.get(param, {})
        out.append({k: (v.detach().cpu().clone() if isinstance(v, torch.Tensor)
                        else torch.tensor(v)) for k, v in state.items()})
    return out


def _per_element(value: torch.Tensor) -> bool:
    """Per-element state (momentum, moments) is 1-D like its flat parameter; scalars are 0-D."""
    return value.dim() >= 1


def assemble(pieces: Sequence[tuple[Block, State]], sizes: dict[str, int]) -> dict[str, State]:
    """Whole-parameter state by name from the states of blocks covering each parameter."""
    out: dict[str, State] = {}
    for block, state in pieces:
        whole = out.setdefault(block.name, {})
        for key, value in state.items():
            if _per_element(value):
                target = whole.setdefault(key, torch.zeros(sizes[block.name], dtype=value.dtype))
                target[block.start:block.stop] = value.reshape(-1)
            else:
                whole[key] = value.clone()
    return out


def restore(optimizer: torch.optim.Optimizer, blocks: Sequence[Block],
            by_name: dict[str, State], hyper: dict[str, Any],
            shapes: Sequence[torch.Size] | None = None) -> None:
    """Load whole-parameter state `by_name` into an optimizer over `blocks` (in order);
    `shapes` gives the optimizer's parameters' shapes when they are not flat."""
    current = optimizer.state_dict()
    group = dict(current["param_groups"][0])
    group.update({k: v for k, v in hyper.items() if k in group})
    state: dict[int, State] = {}
    for index, block in enumerate(blocks):
        whole = by_name.get(block.name)
        if not whole:
            continue
        shape = shapes[index] if shapes is not None else torch.Size([block.size])
        state[index] = {
            key: (value.reshape(-1)[block.start:block.stop].clone().reshape(shape)
                  if _per_element(value) else value.clone())
            for key, value in whole.items()
        }
    optimizer.load_state_dict({"state": state, "param_groups": [group]})

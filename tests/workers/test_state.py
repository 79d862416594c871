"""Optimizer state by parameter name: slices behave like the whole, any re-sharding works."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
import torch
from optimus_worker.assignment import Block, assign_parameters
from optimus_worker.state import assemble, block_states, hyper_parameters, restore

Factory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]
FACTORIES: list[Factory] = [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: torch.optim.Adam(ps, lr=0.01),
]


def _steps(params: list[torch.Tensor], optimizer: torch.optim.Optimizer,
           grads: list[list[torch.Tensor]]) -> None:
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()


def _sharded(whole: dict[str, torch.Tensor], p: int, factory: Factory
             ) -> list[tuple[list[Block], list[torch.Tensor], torch.optim.Optimizer]]:
    out = []
    for shard in assign_parameters([(n, t.numel()) for n, t in whole.items()], p):
        tensors = [whole[b.name].reshape(-1)[b.start:b.stop].clone().requires_grad_(True)
                   for b in shard]
        out.append((list(shard), tensors, factory(tensors)))
    return out


@pytest.mark.parametrize("factory", FACTORIES)
def test_sliced_optimizer_matches_whole_then_reshards(factory: Factory) -> None:
    gen = torch.Generator().manual_seed(0)
    whole = {"a": torch.randn(4, 5, generator=gen), "b": torch.randn(7, generator=gen)}
    grads = [[torch.randn(4, 5, generator=gen), torch.randn(7, generator=gen)]
             for _ in range(6)]
    reference = [t.clone().requires_grad_(True) for t in whole.values()]
    ref_opt = factory(reference)
    _steps(reference, ref_opt, grads[:3])

    # three steps on 3 PS, then the state moves, by name, to 2 PS for three more
    shards = _sharded(whole, 3, factory)
    for blocks, tensors, opt in shards:
        _steps(tensors, opt, [[g[list(whole).index(b.name)].reshape(-1)[b.start:b.stop]
                               for b in blocks] for g in grads[:3]])
    pieces = [(b, st) for blocks, tensors, opt in shards
              for b, st in zip(blocks, block_states(opt, tensors), strict=True)]
    sizes = {n: t.numel() for n, t in whole.items()}
    state = assemble(pieces, sizes)
    values = {n: torch.zeros(s) for n, s in sizes.items()}
    for blocks, tensors, _ in shards:
        for b, t in zip(blocks, tensors, strict=True):
            values[b.name][b.start:b.stop] = t.detach()
    for n, t in zip(whole, reference, strict=True):
        assert torch.allclose(values[n].reshape(t.shape), t.detach(), atol=1e-6)

    hyper = hyper_parameters(shards[0][2])
    resharded = _sharded({n: v.reshape(whole[n].shape) for n, v in values.items()}, 2, factory)
    for blocks, _, opt in resharded:
        restore(opt, blocks, state, hyper)
    _steps(reference, ref_opt, grads[3:])
    for blocks, tensors, opt in resharded:
        _steps(tensors, opt, [[g[list(whole).index(b.name)].reshape(-1)[b.start:b.stop]
                               for b in blocks] for g in grads[3:]])
        for b, t in zip(blocks, tensors, strict=True):
            ref = reference[list(whole).index(b.name)].detach().reshape(-1)[b.start:b.stop]
            assert torch.allclose(t.detach(), ref, atol=1e-6)


def test_restore_into_shaped_parameters() -> None:
    param = torch.zeros(2, 3, requires_grad=True)
    opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    state = {"w": {"momentum_buffer": torch.arange(6.0)}}
    restore(opt, [Block("w", 0, 6)], state, {"lr": 0.5}, shapes=[param.shape])
    assert torch.equal(opt.state[param]["momentum_buffer"], torch.arange(6.0).reshape(2, 3))
    assert opt.param_groups[0]["lr"] == 0.5


def test_one_param_group_only() -> None:
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    groups: list[dict[str, Any]] = [{"params": [a]}, {"params": [b], "lr": 1.0}]
    opt = torch.optim.SGD(groups, lr=0.1)
    with pytest.raises(ValueError, match="one param group"):
        hyper_parameters(opt)

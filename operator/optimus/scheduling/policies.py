"""The policy registry and the two calls a scheduling round makes: `allocate` (step 4)
and, re-exported from placement, `place` (step 5)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from optimus.scheduling.baselines import DrfPolicy, FixedPolicy, TetrisPolicy, TiresiasPolicy
from optimus.scheduling.greedy import PAPER_CONFIG, OptimusConfig, OptimusPolicy
from optimus.scheduling.types import Allocation, JobView, NodeView, Policy


def _optimus(**options: Any) -> Policy:
    return OptimusPolicy(OptimusConfig(**options), name="optimus")


def _optimus_paper(**options: Any) -> Policy:
    return OptimusPolicy(dataclasses.replace(PAPER_CONFIG, **options), name="optimus-paper")


_FACTORIES: dict[str, Callable[..., Policy]] = {
    "optimus": _optimus,
    "optimus-paper": _optimus_paper,
    "drf": DrfPolicy,
    "tetris": TetrisPolicy,
    "tiresias": TiresiasPolicy,
    "fixed": FixedPolicy,
}

#: Every policy `get_policy` knows, the default first.
POLICY_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def get_policy(name: str, **options: Any) -> Policy:
    """The policy called `name`, configured by `options` (OptimusConfig's fields for the
    two Optimus policies, `queue_thresholds` for tiresias, `srtf_weight` for tetris)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    try:
        return factory(**options)
    except TypeError as error:
        raise ValueError(f"policy {name!r}: bad option ({error}); see get_policy's doc") from error


def allocate(
    jobs: Sequence[JobView],
    nodes: Sequence[NodeView],
    policy: str | Policy = "optimus",
    *,
    now: float = 0.0,
    **policy_options: Any,
) -> dict[str, Allocation]:
    """Step 4: an Allocation for every job (Allocation(0, 0): queued), by `policy`."""
    if isinstance(policy, str):
        chosen = get_policy(policy, **policy_options)
    elif policy_options:
        raise ValueError("policy options go with a policy name, not a Policy object")
    else:
        chosen = policy
    return chosen.allocate(list(jobs), list(nodes), now=now)

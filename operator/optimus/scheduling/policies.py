"""The policy registry, what each policy needs and does (`PolicyTraits`, the one place a
round reads to treat a policy; nothing compares policy names), and the two calls a
scheduling round makes: `allocate` (step 4) and, re-exported from placement, `place`
(step 5)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optimus.scheduling.baselines import DrfPolicy, FixedPolicy, TetrisPolicy, TiresiasPolicy
from optimus.scheduling.greedy import PAPER_CONFIG, OptimusConfig, OptimusPolicy
from optimus.scheduling.types import Allocation, JobView, NodeView, Policy


@dataclass(frozen=True)
class PolicyTraits:
    """What a policy needs from the round and what the round does for it.

    learns_online: it judges jobs by models fitted online from observations, so the round
        starts a new job at its minimum and moves it through probe configurations until
        its speed model can be fitted (optimus.round.pins).
    honours_restart_cost: it takes `restart_cost_seconds` (OptimusConfig), so the round
        passes the restart cost it uses.
    uses_attained_service: it orders jobs by the service they attained (GPU-seconds held);
        the operator does not account for it and refuses such a policy.
    preempts: it may stop a running job to run another; for every other policy the round
        never stops a running job to admit one (`keep_running`).
    optimus_placement: it is always placed by Optimus's own placement, whatever the
        simulator's `baseline_placement` says.
    weighs_uncertainty: it moves a running job only for a predicted gain beyond the error
        band of what it knows of the job's speed (JobView.speed_band), so the round fills
        the band in from the fits (optimus.models.confidence).
    """

    learns_online: bool = False
    honours_restart_cost: bool = False
    uses_attained_service: bool = False
    preempts: bool = False
    optimus_placement: bool = False
    weighs_uncertainty: bool = False


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

#: What each policy needs and does. The paper's Optimus learns and is placed like Optimus,
#: but ignores restart costs (PAPER_CONFIG: restart cost 0, no keep-running rule).
POLICY_TRAITS: Mapping[str, PolicyTraits] = {
    "optimus": PolicyTraits(learns_online=True, honours_restart_cost=True,
                            optimus_placement=True, weighs_uncertainty=True),
    "optimus-paper": PolicyTraits(learns_online=True, optimus_placement=True),
    "drf": PolicyTraits(),
    "tetris": PolicyTraits(),
    "tiresias": PolicyTraits(uses_attained_service=True, preempts=True),
    "fixed": PolicyTraits(),
}
assert set(POLICY_TRAITS) == set(POLICY_NAMES), "every policy declares its traits"


#: The policies the operator offers: it keeps no attained service and never stops a running
#: job (it has no preemption), so a policy that needs either runs only in the simulator.
OPERATOR_POLICY_NAMES: tuple[str, ...] = tuple(
    name for name in POLICY_NAMES
    if not (POLICY_TRAITS[name].uses_attained_service or POLICY_TRAITS[name].preempts))


def policy_traits(name: str) -> PolicyTraits:
    """The traits of the policy called `name` (ValueError naming the choices otherwise)."""
    traits = POLICY_TRAITS.get(name)
    if traits is None:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    return traits


def policy_for_round(name: str, options: Mapping[str, Any],
                     restart_cost_seconds: float) -> Policy:
    """The policy `name` with `options`, told the round's restart cost when it honours one
    (an explicit `restart_cost_seconds` option wins)."""
    chosen = dict(options)
    if policy_traits(name).honours_restart_cost:
        chosen.setdefault("restart_cost_seconds", restart_cost_seconds)
    return get_policy(name, **chosen)


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

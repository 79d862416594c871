"""Steps 4 and 5 of a scheduling round (pure): allocation of PS and worker counts by
marginal gain, placement of tasks on nodes, and the baseline policies behind one interface.

    allocations = allocate(jobs, nodes, "optimus", now=t)     # step 4
    placement = place(allocations, jobs, nodes, previous)      # step 5

`spread_place` (same signature) models the Kubernetes default scheduler's spreading, for
comparisons with the Optimus paper's baselines; the operator uses `place`.
"""

from optimus.scheduling.greedy import PAPER_CONFIG, OptimusConfig, marginal_gain
from optimus.scheduling.placement import even_spread, place, spread_place
from optimus.scheduling.policies import (
    OPERATOR_POLICY_NAMES,
    POLICY_NAMES,
    POLICY_TRAITS,
    PolicyTraits,
    allocate,
    get_policy,
    policy_for_round,
    policy_traits,
)
from optimus.scheduling.types import (
    Allocation,
    JobPlacement,
    JobView,
    NodeView,
    Placement,
    Policy,
    ResizeCosts,
    Resources,
    Taint,
    Toleration,
)

__all__ = [
    "OPERATOR_POLICY_NAMES",
    "PAPER_CONFIG",
    "POLICY_NAMES",
    "POLICY_TRAITS",
    "Allocation",
    "JobPlacement",
    "JobView",
    "NodeView",
    "OptimusConfig",
    "Placement",
    "Policy",
    "PolicyTraits",
    "ResizeCosts",
    "Resources",
    "Taint",
    "Toleration",
    "allocate",
    "even_spread",
    "get_policy",
    "marginal_gain",
    "place",
    "policy_for_round",
    "policy_traits",
    "spread_place",
]

"""Node requirements (nodeSelector, required node affinity, tolerations): Kubernetes'
operator semantics, parsing with errors naming the field, the conjunction of several pod
templates, and the placer putting pods only on nodes whose labels satisfy them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus.affinity import (
    NodeRequirementError,
    NodeRequirements,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    all_of,
    parse_node_requirements,
)
from optimus.scheduling import Allocation, Toleration, place, spread_place
from optimus.scheduling.cluster import node_accepts, validate_jobs

from .support import GiB, check_placement, job, node

GPU_PRODUCT = "nvidia.com/gpu.product"
A100, H100, T4 = "NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "Tesla-T4"


@pytest.mark.parametrize(("operator", "values", "label", "expected"), [
    ("In", ("a", "b"), "a", True),
    ("In", ("a", "b"), "c", False),
    ("In", ("a",), None, False),
    ("NotIn", ("a",), "b", True),
    ("NotIn", ("a",), "a", False),
    ("NotIn", ("a",), None, True),  # an absent label is not in any set
    ("Exists", (), "", True),
    ("Exists", (), None, False),
    ("DoesNotExist", (), None, True),
    ("DoesNotExist", (), "x", False),
    ("Gt", ("4",), "8", True),
    ("Gt", ("4",), "4", False),
    ("Gt", ("4",), "many", False),  # not an integer: no match, as in Kubernetes
    ("Gt", ("4",), None, False),
    ("Lt", ("4",), "2", True),
    ("Lt", ("4",), "-1", True),
    ("Lt", ("4",), "4", False),
])
def test_operators_follow_kubernetes(operator: Any, values: tuple[str, ...], label: str | None,
                                     expected: bool) -> None:
    assert NodeSelectorRequirement("k", operator, values).matches(label) is expected


def test_terms_are_ored_and_expressions_anded() -> None:
    wants = parse_node_requirements({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": GPU_PRODUCT, "operator": "In", "values": [A100]},
                                  {"key": "gpus", "operator": "Gt", "values": ["4"]}]},
            {"matchExpressions": [{"key": GPU_PRODUCT, "operator": "In", "values": [H100]}]},
        ]}}}, "nodeSelector": {"pool": "train"}})
    assert wants.matches_labels("n", {GPU_PRODUCT: A100, "gpus": "8", "pool": "train"})
    assert not wants.matches_labels("n", {GPU_PRODUCT: A100, "gpus": "4", "pool": "train"})
    assert wants.matches_labels("n", {GPU_PRODUCT: H100, "pool": "train"})
    assert not wants.matches_labels("n", {GPU_PRODUCT: H100})  # the nodeSelector binds too
    assert not wants.matches_labels("n", {GPU_PRODUCT: T4, "pool": "train"})


def test_a_pod_without_requirements_fits_every_node() -> None:
    assert parse_node_requirements({}) == NodeRequirements()
    assert NodeRequirements().matches_labels("n", {})


@pytest.mark.parametrize(("spec", "path"), [
    ({"nodeSelector": ["a"]}, "spec.nodeSelector"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{}]}}}},
     "requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"operator": "Exists"}]}]}}}},
     "matchExpressions[0].key"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "k", "operator": "Exists", "values": ["x"]}]}]}}}},
     "matchExpressions[0].values"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.labels", "operator": "In", "values": ["x"]}]}]}}}},
     "matchFields[0].key"),
    ({"tolerations": [{"key": "k", "effect": "Sometimes"}]}, "spec.tolerations[0].effect"),
    ({"tolerations": {"key": "k"}}, "spec.tolerations"),
])
def test_parse_errors_name_the_field_and_the_fix(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(NodeRequirementError) as error:
        parse_node_requirements(spec)
    assert error.value.path.endswith(path)
    assert error.value.fix


# ---- all_of: the requirements of several templates together -------------------------------------
KEYS = st.sampled_from(["acc", "zone", "gpus"])
VALUES = st.sampled_from(["a", "b", "2", "8"])


@st.composite
def requirements(draw: st.DrawFn) -> NodeRequirements:
    def expression() -> NodeSelectorRequirement:
        operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]))
        values: tuple[str, ...] = ()
        if operator in ("In", "NotIn"):
            values = tuple(draw(st.lists(VALUES, min_size=1, max_size=2)))
        elif operator in ("Gt", "Lt"):
            values = (str(draw(st.integers(0, 9))),)
        return NodeSelectorRequirement(draw(KEYS), operator, values)  # type: ignore[arg-type]

    terms = tuple(NodeSelectorTerm(tuple(expression() for _ in range(draw(st.integers(1, 2)))))
                  for _ in range(draw(st.integers(0, 2))))
    selector = draw(st.dictionaries(KEYS, VALUES, max_size=2))
    tolerations = tuple(draw(st.lists(st.sampled_from(
        [Toleration("t", "Exists"), Toleration("u", "Equal", "x", "NoSchedule")]), max_size=2)))
    return NodeRequirements(tuple(sorted(selector.items())), terms, tolerations)


@given(st.lists(requirements(), min_size=1, max_size=3), st.dictionaries(KEYS, VALUES))
def test_all_of_accepts_exactly_what_every_part_accepts(parts: list[NodeRequirements],
                                                        labels: dict[str, str]) -> None:
    combined = all_of(parts)
    assert combined.matches_labels("n", labels) == all(
        part.matches_labels("n", labels) for part in parts)
    # a shared toleration tolerates for every part; none is invented
    assert all(t in part.tolerations for part in parts for t in combined.tolerations)


def test_all_of_nothing_is_no_requirement() -> None:
    assert all_of([]) == NodeRequirements()


# ---- the placer ---------------------------------------------------------------------------------
def _gpu_nodes() -> list[Any]:
    # the T4 nodes come first in the placer's order (more CPUs), so only the requirements
    # keep a job off them
    big = 512 * GiB
    return [node("t4-0", gpu=8, cpu=64, memory=big, labels={GPU_PRODUCT: T4, "gpus": "8"}),
            node("t4-1", gpu=8, cpu=64, memory=big, labels={GPU_PRODUCT: T4, "gpus": "8"}),
            node("a100-0", gpu=4, cpu=32, labels={GPU_PRODUCT: A100, "gpus": "4"}),
            node("a100-1", gpu=4, cpu=32, labels={GPU_PRODUCT: A100, "gpus": "4"}),
            node("h100-0", gpu=8, cpu=64, memory=big / 2,
                 labels={GPU_PRODUCT: H100, "gpus": "8"})]


def _wants(*expressions: NodeSelectorRequirement) -> tuple[NodeSelectorTerm, ...]:
    return (NodeSelectorTerm(expressions),)


A100_ONLY = _wants(NodeSelectorRequirement(GPU_PRODUCT, "In", (A100,)))
NOT_T4 = _wants(NodeSelectorRequirement(GPU_PRODUCT, "NotIn", (T4,)))
EIGHT_GPU_NOT_T4 = _wants(NodeSelectorRequirement("gpus", "Gt", ("7",)),
                          NodeSelectorRequirement(GPU_PRODUCT, "NotIn", (T4,)))


@pytest.mark.parametrize("placer", [place, spread_place])
@pytest.mark.parametrize(("affinity", "workers", "allowed"), [
    ((), 4, {"t4-0", "t4-1", "a100-0", "a100-1", "h100-0"}),
    (A100_ONLY, 8, {"a100-0", "a100-1"}),  # two nodes: 8 GPUs of A100 are 2 x 4
    (NOT_T4, 4, {"a100-0", "a100-1", "h100-0"}),
    (EIGHT_GPU_NOT_T4, 8, {"h100-0"}),
])
def test_pods_go_only_to_nodes_whose_gpu_product_the_template_requires(
        placer: Any, affinity: tuple[NodeSelectorTerm, ...], workers: int,
        allowed: set[str]) -> None:
    nodes = _gpu_nodes()
    jobs = [job("j", min_workers=workers, max_workers=workers, node_affinity=affinity)]
    allocations = {"j": Allocation(0, workers)}
    placement = placer(allocations, jobs, nodes)
    assert set(placement.jobs["j"].nodes) <= allowed
    assert len(placement.jobs["j"].worker_nodes) == workers
    check_placement(placement, allocations, jobs, nodes)


def test_a_job_no_node_satisfies_is_unplaceable_and_others_still_place() -> None:
    nodes = _gpu_nodes()
    jobs = [job("tpu", min_workers=1, max_workers=1,
                node_affinity=_wants(NodeSelectorRequirement(GPU_PRODUCT, "In", ("TPU",)))),
            job("a100", min_workers=4, max_workers=4, node_affinity=A100_ONLY)]
    allocations = {"tpu": Allocation(0, 1), "a100": Allocation(0, 4)}
    placement = place(allocations, jobs, nodes)
    assert placement.unplaceable == ("tpu",)
    assert placement.jobs["a100"].nodes == ("a100-0",)


def test_the_most_constrained_job_goes_first() -> None:
    """A job that may only use the A100 nodes is placed before one that may go anywhere, so
    the unconstrained job does not take the A100s first."""
    nodes = [node("a100-0", gpu=4, cpu=64, labels={GPU_PRODUCT: A100}),
             node("t4-0", gpu=4, cpu=32, labels={GPU_PRODUCT: T4})]
    jobs = [job("anywhere", min_workers=4, max_workers=4),
            job("picky", min_workers=4, max_workers=4, node_affinity=A100_ONLY, arrival=1)]
    allocations = {"anywhere": Allocation(0, 4), "picky": Allocation(0, 4)}
    placement = place(allocations, jobs, nodes)
    assert placement.jobs["picky"].nodes == ("a100-0",)
    assert placement.jobs["anywhere"].nodes == ("t4-0",)


def test_a_kept_placement_must_still_satisfy_the_affinity() -> None:
    nodes = _gpu_nodes()
    before = place({"j": Allocation(0, 4)}, [job("j", min_workers=4, max_workers=4)], nodes)
    assert before.jobs["j"].nodes == ("t4-0",)
    picky = job("j", min_workers=4, max_workers=4, node_affinity=A100_ONLY)
    after = place({"j": Allocation(0, 4)}, [picky], nodes, before)
    assert after.jobs["j"].nodes == ("a100-0",)


def test_node_accepts_reads_the_affinity() -> None:
    assert node_accepts({GPU_PRODUCT: A100}, (), False, {}, (), A100_ONLY)
    assert not node_accepts({GPU_PRODUCT: T4}, (), False, {}, (), A100_ONLY)


def test_terms_on_node_names_are_refused_by_the_scheduler() -> None:
    by_name = (NodeSelectorTerm((), (NodeSelectorRequirement("metadata.name", "In", ("n1",)),)),)
    with pytest.raises(ValueError, match="matchFields"):
        validate_jobs([job("j", node_affinity=by_name)])

"""A round honours the node requirements of a job's pod templates (nodeSelector, required
node affinity, tolerations) when it places the job, reads them once from the spec (bad ones
are InvalidSpec naming the field), and writes status.selector, the scale subresource's
selector of the job's worker pods."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from optimus.api import parse_training_job
from optimus.api.spec import SpecError
from optimus.api.status import AllocationStatus
from optimus.kube import builders
from optimus.kube.snapshot import job_view, node_requirements, oversized_request
from optimus.scheduling import NodeView, Resources, Taint
from optimus_worker import contract

from tests.api.conftest import RAW_JOB
from tests.kube.test_plan import _round, _state

GPU_PRODUCT = "nvidia.com/gpu.product"
A100, T4 = "NVIDIA-A100-SXM4-80GB", "Tesla-T4"
BIG = Resources(gpu=4, cpu=8, memory=32 * 2**30)
#: the bigger, emptier nodes come first in the placer's order: without the template's
#: requirements the job would go there
NODES = [NodeView("t4-a", BIG, labels={GPU_PRODUCT: T4}),
         NodeView("t4-b", BIG, labels={GPU_PRODUCT: T4}),
         NodeView("a100", BIG, labels={GPU_PRODUCT: A100, "zone": "z1"})]


def _job(workers: dict[str, Any] | None = None, ps: dict[str, Any] | None = None,
         name: str = "mnist") -> dict[str, Any]:
    raw = copy.deepcopy(RAW_JOB)
    raw["metadata"].update(name=name, uid=f"uid-{name}")
    raw["spec"]["workers"]["template"]["spec"].update(workers or {})
    raw["spec"]["parameterServers"]["template"]["spec"].update(ps or {})
    return raw


def _required(*expressions: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": list(expressions)}]}}}


WANTS_A100 = _required({"key": GPU_PRODUCT, "operator": "In", "values": [A100]})


def _placed(raw: dict[str, Any], nodes: list[NodeView] = NODES) -> AllocationStatus | None:
    (decision,) = _round([_state(raw)], nodes=nodes)
    return decision.status.allocation


@pytest.mark.parametrize(("workers", "ps"), [
    ({"affinity": WANTS_A100}, {}),
    ({}, {"affinity": WANTS_A100}),  # the PS template's requirement binds the job too
    ({"nodeSelector": {GPU_PRODUCT: A100}}, {}),
    ({"affinity": _required({"key": GPU_PRODUCT, "operator": "NotIn", "values": [T4]})}, {}),
    ({"affinity": _required({"key": "zone", "operator": "Exists"})}, {}),
    ({"affinity": _required({"key": "zone", "operator": "Exists"})},
     {"nodeSelector": {GPU_PRODUCT: A100}}),
])
def test_the_job_goes_only_where_its_templates_allow(workers: dict[str, Any],
                                                     ps: dict[str, Any]) -> None:
    allocation = _placed(_job(workers, ps))
    assert allocation is not None
    assert allocation.nodes == ("a100",)


def test_without_requirements_the_job_takes_the_first_nodes() -> None:
    allocation = _placed(_job())
    assert allocation is not None and allocation.nodes == ("t4-a",)


@pytest.mark.parametrize("workers", [
    {"affinity": _required({"key": GPU_PRODUCT, "operator": "In", "values": ["H100"]})},
    {"affinity": _required({"key": GPU_PRODUCT, "operator": "DoesNotExist"})},
    {"nodeSelector": {GPU_PRODUCT: A100}, "affinity": _required(
        {"key": "zone", "operator": "NotIn", "values": ["z1"]})},
])
def test_a_job_no_node_satisfies_is_queued_not_misplaced(workers: dict[str, Any]) -> None:
    assert _placed(_job(workers)) is None


def test_conflicting_templates_match_no_node() -> None:
    raw = _job({"nodeSelector": {GPU_PRODUCT: A100}}, {"nodeSelector": {GPU_PRODUCT: T4}})
    assert _placed(raw) is None


def test_a_taint_must_be_tolerated_by_every_template() -> None:
    tainted = [NodeView("a100", BIG, labels={GPU_PRODUCT: A100},
                        taints=(Taint("dedicated", "training", "NoSchedule"),))]
    toleration = {"key": "dedicated", "operator": "Equal", "value": "training",
                  "effect": "NoSchedule"}
    assert _placed(_job({"tolerations": [toleration]}), tainted) is None
    allocation = _placed(_job({"tolerations": [toleration]}, {"tolerations": [toleration]}),
                         tainted)
    assert allocation is not None and allocation.nodes == ("a100",)


def test_the_job_view_carries_the_typed_requirements() -> None:
    job = parse_training_job(_job({"affinity": WANTS_A100,
                                   "nodeSelector": {"zone": "z1"}}))
    view = job_view(job, lambda p, w: 1.0, current=None, arrival=0.0)
    assert view.node_selector == {"zone": "z1"}
    (term,) = view.node_affinity
    assert [(e.key, e.operator, e.values) for e in term.match_expressions] == [
        (GPU_PRODUCT, "In", (A100,))]
    assert node_requirements(job).terms == view.node_affinity


def test_oversized_requests_are_judged_on_the_nodes_the_job_may_use() -> None:
    small = Resources(gpu=1, cpu=8, memory=32 * 2**30)
    nodes = [NodeView("t4", BIG, labels={GPU_PRODUCT: T4}),
             NodeView("a100", small, labels={GPU_PRODUCT: A100})]
    job = parse_training_job(_job({"affinity": WANTS_A100, "containers": [
        {"name": "worker", "image": "w:1",
         "resources": {"limits": {"nvidia.com/gpu": 2}}}]}))
    message = oversized_request(job, nodes)
    assert message is not None and "nvidia.com/gpu=2" in message


@pytest.mark.parametrize(("template", "path"), [
    ({"affinity": _required({"key": GPU_PRODUCT, "operator": "Near", "values": ["x"]})},
     "nodeSelectorTerms[0].matchExpressions[0].operator"),
    ({"affinity": _required({"key": "gpus", "operator": "Gt", "values": ["many"]})},
     "nodeSelectorTerms[0].matchExpressions[0].values"),
    ({"affinity": _required({"key": GPU_PRODUCT, "operator": "In", "values": []})},
     "nodeSelectorTerms[0].matchExpressions[0].values"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": []}}}}, "nodeSelectorTerms"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}},
     "affinity.nodeAffinity"),
    ({"tolerations": [{"key": "a", "operator": "Maybe"}]}, "tolerations[0].operator"),
])
def test_bad_node_requirements_are_invalid_naming_the_field(template: dict[str, Any],
                                                            path: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_training_job(_job(template))
    (field_error,) = error.value.errors
    assert field_error.path.startswith("spec.workers.template.spec.")
    assert field_error.path.endswith(path)
    assert field_error.fix


def test_status_selector_selects_the_jobs_worker_pods() -> None:
    (decision,) = _round([_state(_job())], nodes=NODES)
    selector = decision.status.selector
    assert decision.patch is not None and decision.patch["selector"] == selector
    wanted = dict(part.split("=", 1) for part in selector.split(","))
    allocation = decision.status.allocation
    assert allocation is not None
    pods = builders.build_pods(parse_training_job(_job()), allocation)
    selected = [p["metadata"]["name"] for p in pods
                if wanted.items() <= p["metadata"]["labels"].items()]
    assert selected == [contract.pod_name("mnist", "worker", r, allocation.generation)
                        for r in range(allocation.workers)]
    other = builders.build_pods(parse_training_job(_job(name="other")), allocation)
    assert not [p for p in other if wanted.items() <= p["metadata"]["labels"].items()]


def test_the_gpu_sample_runs_where_every_gpu_node_is_tainted() -> None:
    """GPU nodes usually carry the nvidia.com/gpu taint; the sample's PS share the job's
    nodes, so both of its templates tolerate it."""
    path = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "ps-sync-gpu.yaml"
    (raw,) = [doc for doc in yaml.safe_load_all(path.read_text())
              if doc["kind"] == "TrainingJob"]
    raw["metadata"].update(namespace="ml", uid="u-gpu")
    tainted = [NodeView(f"gpu-{i}", BIG, labels={GPU_PRODUCT: A100},
                        taints=(Taint("nvidia.com/gpu", "present", "NoSchedule"),))
               for i in range(2)]
    allocation = _placed(raw, tainted)
    assert allocation is not None and set(allocation.nodes) <= {"gpu-0", "gpu-1"}

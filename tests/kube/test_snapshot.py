"""Raw nodes and pods into the scheduler's views: capacity is allocatable minus the pods
the operator does not manage."""

from __future__ import annotations

from typing import Any

from optimus.kube.snapshot import node_views, parse_pod
from optimus.scheduling import Resources
from optimus_worker import contract


def _node(name: str, gpus: int = 4, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"zone": "a"}}, "spec": spec,
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _pod(name: str, node: str, managed: bool, phase: str = "Running",
         gpu: int = 1) -> dict[str, Any]:
    labels = ({contract.POD_LABEL_MANAGED: contract.POD_LABEL_MANAGED_VALUE,
               contract.POD_LABEL_JOB: "j", contract.POD_LABEL_ROLE: "worker",
               contract.POD_LABEL_RANK: "0", contract.POD_LABEL_GENERATION: "2"}
              if managed else {})
    return {"metadata": {"name": name, "namespace": "ml", "labels": labels},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "image": "i", "resources": {
                    "requests": {"cpu": "500m", "memory": "1Gi"},
                    "limits": {"nvidia.com/gpu": gpu}}}]},
            "status": {"phase": phase, "podIP": "127.0.0.5"}}


def test_capacity_excludes_only_unmanaged_live_pods() -> None:
    pods = [parse_pod(p) for p in [
        _pod("ours", "n1", managed=True),
        _pod("theirs", "n1", managed=False),
        _pod("done", "n1", managed=False, phase="Succeeded"),
        _pod("elsewhere", "n2", managed=False, gpu=2),
    ]]
    views = {v.name: v for v in node_views([_node("n2"), _node("n1")], pods)}
    assert list(views) == ["n1", "n2"]
    assert views["n1"].used == Resources(gpu=1, cpu=0.5, memory=2**30)
    assert views["n1"].free.gpu == 3
    assert views["n2"].free.gpu == 2
    assert views["n1"].labels == {"zone": "a"}


def test_cordoned_and_not_ready_nodes_are_unschedulable() -> None:
    sick = _node("sick")
    sick["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    views = {v.name: v for v in node_views(
        [_node("ok"), _node("cordoned", unschedulable=True), sick,
         _node("tainted", taints=[{"key": "gpu", "effect": "NoSchedule"}])], [])}
    assert not views["ok"].unschedulable
    assert views["cordoned"].unschedulable and views["sick"].unschedulable
    assert views["tainted"].taints[0].key == "gpu"


def test_pod_labels_become_fields() -> None:
    pod = parse_pod(_pod("ours", "n1", managed=True))
    assert (pod.job, pod.role, pod.rank, pod.generation) == ("j", "worker", 0, 2)
    assert pod.ip == "127.0.0.5" and not pod.finished
    assert parse_pod(_pod("theirs", "n1", managed=False)).job is None


def test_termination_messages_come_from_the_containers_failed_ones_first() -> None:
    raw = _pod("ours", "n1", managed=True, phase="Failed")
    raw["status"]["containerStatuses"] = [
        {"name": "sidecar", "state": {"terminated": {"exitCode": 0, "message": "bye"}}},
        {"name": "worker", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 2, "message": "ImportError: nosuch\n"}}},
        {"name": "quiet", "state": {"terminated": {"exitCode": 1}}},
    ]
    assert parse_pod(raw).message == "worker: ImportError: nosuch\nsidecar: bye"
    assert parse_pod(_pod("fresh", "n1", managed=True)).message == ""


def test_another_accelerator_is_counted_the_same_way() -> None:
    node = _node("amd", gpus=0)
    node["status"]["allocatable"]["amd.com/gpu"] = "8"
    raw = _pod("theirs", "amd", managed=False)
    raw["spec"]["containers"][0]["resources"]["limits"] = {"amd.com/gpu": 2}
    pods = [parse_pod(raw, "amd.com/gpu")]
    assert pods[0].request.gpu == 2
    (view,) = node_views([node], pods, "amd.com/gpu")
    assert (view.allocatable.gpu, view.used.gpu) == (8, 2)
    (default,) = node_views([node], [parse_pod(raw)])
    assert default.allocatable.gpu == 0

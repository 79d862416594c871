"""The kopf registry and the snapshot it hands the controller: the handlers the operator
relies on are registered under the ids the code looks them up by (an index's id is the
keyword its handlers receive), and a round's snapshot is what the indices hold."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kopf._core.engines.indexing import OperatorIndexer
from optimus.kube.config import OperatorConfig
from optimus.kube.controller import Controller
from optimus.kube.handlers import (
    JOBS_INDEX,
    NODES_INDEX,
    PODS_INDEX,
    build_registry,
    indexed_snapshot,
    job_entry,
    node_entry,
    outside_selector,
)
from optimus.kube.snapshot import node_views, parse_pod

from tests.api.conftest import RAW_JOB
from tests.kube.fakes import FakeKube


def test_registry_holds_indices_timer_event_and_activities() -> None:
    box: dict[str, Controller] = {}
    registry = build_registry(OperatorConfig(interval_seconds=3), box)
    indexers = registry._indexing.get_all_handlers()
    assert sorted(h.id for h in indexers) == sorted([JOBS_INDEX, PODS_INDEX, NODES_INDEX])
    (timer,) = registry._spawning.get_all_handlers()
    assert getattr(timer, "interval", None) == 1.5  # ticks twice an interval
    watching = registry._watching.get_all_handlers()
    assert [h.id for h in watching] == ["job-event"]
    activities = {h.activity.value for h in registry._activities.get_all_handlers()
                  if h.activity is not None}
    assert {"authentication", "startup", "cleanup"} <= activities
    assert box == {}  # the controller is made at startup, not at import


def _pod(namespace: str, name: str, node: str, phase: str) -> dict[str, object]:
    return {"metadata": {"namespace": namespace, "name": name, "labels": {}},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}]},
            "status": {"phase": phase}}


def test_node_entry_keeps_what_the_scheduler_reads_of_a_node() -> None:
    kube = FakeKube()
    kube.add_node("n1", gpus=4)
    raw = kube.nodes["n1"]
    raw["metadata"].update(labels={"zone": "a"}, annotations={"big": "x" * 1000})
    raw["spec"] = {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}],
                   "unschedulable": True}
    raw["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    raw["status"]["images"] = [{"names": ["x"]}]
    pods = [parse_pod(_pod("other", "p", "n1", "Running"))]
    entry = node_entry(raw)
    assert node_views([entry], pods) == node_views([raw], pods)
    assert "annotations" not in entry["metadata"] and "images" not in entry["status"]
    raw["metadata"]["labels"]["zone"] = "b"
    assert entry["metadata"]["labels"] == {"zone": "a"}, "a copy, not kopf's live body"
    assert job_entry(RAW_JOB) == RAW_JOB and job_entry(RAW_JOB) is not RAW_JOB


def _index(*values: object) -> dict[object, list[object]]:
    return {i: [v] for i, v in enumerate(values)}


def test_the_snapshot_reads_the_indices_and_lists_nothing_cluster_wide() -> None:
    kube = FakeKube()
    pods = [parse_pod(_pod("ml", "a", "n1", "Running"))]
    take = indexed_snapshot(_index(RAW_JOB), _index(*pods), _index({"metadata": {}}), api=kube)
    snapshot = asyncio.run(take())
    assert snapshot.jobs == [RAW_JOB] and snapshot.pods == pods
    assert snapshot.nodes == [{"metadata": {}}]


def test_a_namespaced_operator_lists_the_other_namespaces_unfinished_pods() -> None:
    kube = FakeKube()
    for namespace, name, phase in (("ml", "watched", "Running"), ("team", "busy", "Running"),
                                   ("team", "done", "Succeeded"), ("x", "late", "Pending")):
        kube.pods[(namespace, name)] = _pod(namespace, name, "n1", phase)
    indexed = [parse_pod(kube.pods[("ml", "watched")])]
    take = indexed_snapshot({}, _index(*indexed), {}, api=kube, namespaces=("ml",))
    snapshot = asyncio.run(take())
    assert sorted(p.name for p in snapshot.pods) == ["busy", "late", "watched"]
    assert outside_selector(("a", "b")) == ("metadata.namespace!=a,metadata.namespace!=b,"
                                            "status.phase!=Succeeded,status.phase!=Failed")


def _indexed(registry: kopf.OperatorRegistry, id_: str, bodies: list[dict[str, Any]]
             ) -> kopf.Index[Any, Any]:
    """What kopf's index `id_` holds after indexing `bodies` with the registry's function
    (kopf spreads a returned mapping into the index; anything else goes under None)."""
    (handler,) = [h for h in registry._indexing.get_all_handlers() if h.id == id_]
    indexer = OperatorIndexer()
    for body in bodies:
        metadata = body["metadata"]
        kwargs = {"body": kopf.Body(body), "namespace": metadata.get("namespace"),
                  "name": metadata["name"], "meta": kopf.Meta(kopf.Body(body))}
        indexer.replace((metadata.get("namespace"), metadata["name"], None),
                        handler.fn(**kwargs))
    return indexer.index


def test_the_registry_indices_hold_one_entry_per_object() -> None:
    registry = build_registry(OperatorConfig(interval_seconds=3), {})
    kube = FakeKube()
    kube.add_node("n1")
    kube.add_node("n2")
    pods = [_pod("ml", "a", "n1", "Running"), _pod("ml", "b", "n2", "Pending")]
    job = {**RAW_JOB, "metadata": {**RAW_JOB["metadata"]}}
    take = indexed_snapshot(_indexed(registry, JOBS_INDEX, [job]),
                            _indexed(registry, PODS_INDEX, pods),
                            _indexed(registry, NODES_INDEX, list(kube.nodes.values())),
                            api=kube)
    snapshot = asyncio.run(take())
    assert snapshot.jobs == [job]
    assert sorted(p.name for p in snapshot.pods) == ["a", "b"]
    assert [n["metadata"]["name"] for n in snapshot.nodes] == ["n1", "n2"]
    assert node_views(snapshot.nodes, snapshot.pods) == node_views(
        list(kube.nodes.values()), [parse_pod(p) for p in pods])

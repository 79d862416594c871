"""API-server conformance through the kubernetes Python client: CRUD, conflicts, patches,
CRDs with schema validation, status subresource, finalizers, selectors, watch and 410."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from e2e.localcluster import LocalCluster
from e2e.localcluster.testing import api_client, wait_for

pytestmark = pytest.mark.timeout(60)
NS = "default"
GROUP, VERSION, PLURAL = "example.dev", "v1", "widgets"

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget",
                  "shortNames": ["wd"]},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}],
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                    "range": {"type": "object",
                              "x-kubernetes-validations": [{"rule": "self.min <= self.max",
                                                            "message": "min must not exceed "
                                                                       "max"}],
                              "properties": {"min": {"type": "integer"},
                                             "max": {"type": "integer"}}},
                    "workers": {"type": "object", "properties": {
                        "min": {"type": "integer", "minimum": 0}}},
                    "port": {"x-kubernetes-int-or-string": True},
                    "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                }},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}


class Clients:
    def __init__(self, kubeconfig: Path) -> None:
        client = api_client(kubeconfig)
        self.core: Any = kubernetes.client.CoreV1Api(client)
        self.custom: Any = kubernetes.client.CustomObjectsApi(client)
        self.ext: Any = kubernetes.client.ApiextensionsV1Api(client)
        self.discovery: Any = kubernetes.client.ApisApi(client)


@pytest.fixture
def clients(local_cluster: LocalCluster) -> Clients:
    return Clients(local_cluster.kubeconfig)


def widget(object_name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget",
            "metadata": {"name": object_name}, "spec": spec}


def with_crd(clients: Clients) -> None:
    clients.ext.create_custom_resource_definition(WIDGET_CRD)
    wait_for("the CRD in discovery", lambda: any(
        g.name == GROUP for g in clients.discovery.get_api_versions().groups))


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(kubernetes.client.ApiException) as info:
        call(*args, **kwargs)
    return int(info.value.status), json.loads(info.value.body or "{}")


def test_configmap_crud_conflicts_and_patches(clients: Clients) -> None:
    core = clients.core
    created = core.create_namespaced_config_map(NS, {"metadata": {"name": "c", "labels": {
        "tier": "a"}}, "data": {"k": "1"}})
    assert created.metadata.uid and created.metadata.creation_timestamp
    status, body = error_of(core.create_namespaced_config_map, NS, {"metadata": {"name": "c"}})
    assert status == 409 and body["reason"] == "AlreadyExists"
    fresh = core.read_namespaced_config_map("c", NS)
    fresh.data["k"] = "2"
    updated = core.replace_namespaced_config_map("c", NS, fresh)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    fresh.data["k"] = "3"  # still carries the old resourceVersion
    status, body = error_of(core.replace_namespaced_config_map, "c", NS, fresh)
    assert status == 409 and body["reason"] == "Conflict"
    patched = core.patch_namespaced_config_map("c", NS, {"data": {"m": "x"}})
    assert patched.data == {"k": "2", "m": "x"}
    assert core.list_namespaced_config_map(NS, label_selector="tier=a").items[0].metadata.name \
        == "c"
    assert not core.list_namespaced_config_map(NS, label_selector="tier in (b,c)").items
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        NS, field_selector="metadata.name=c").items] == ["c"]
    core.delete_namespaced_config_map("c", NS)
    status, body = error_of(core.read_namespaced_config_map, "c", NS)
    assert status == 404 and body["reason"] == "NotFound"
    assert body["message"] == 'configmaps "c" not found'


def test_custom_objects_validation_defaults_and_status(clients: Clients) -> None:
    with_crd(clients)
    custom = clients.custom
    args = (GROUP, VERSION, NS, PLURAL)
    long_name = "w" * 100  # custom objects take DNS subdomains, up to 253 characters
    made = custom.create_namespaced_custom_object(*args, widget(long_name, size=3, port="http"))
    assert made["spec"]["color"] == "red" and made["metadata"]["generation"] == 1
    cases: list[tuple[dict[str, Any], str]] = [
        ({"size": 0}, "spec.size: Invalid value: 0: spec.size in body should be greater than or "
                      "equal to 1"),
        ({"size": 11}, "spec.size in body should be less than or equal to 10"),
        ({}, "spec.size: Required value"),
        ({"size": "x"}, 'spec.size: Invalid value: "string": spec.size in body must be of type '
                        'integer: "string"'),
        ({"size": 1, "color": "green"}, 'spec.color: Unsupported value: "green": supported '
                                        'values: "red", "blue"'),
        ({"size": 1, "workers": {"min": -1}}, "spec.workers.min: Invalid value: -1"),
        ({"size": 1, "name": "ABC"}, "spec.name in body should match '^[a-z]+$'"),
        ({"size": 1, "range": {"min": 3, "max": 2}}, "spec.range: Invalid value: \"object\": "
                                                     "min must not exceed max"),
    ]
    for spec, message in cases:
        status, body = error_of(custom.create_namespaced_custom_object, *args, widget("bad",
                                                                                    **spec))
        assert status == 422 and body["reason"] == "Invalid", body
        assert message in body["message"], body["message"]
        assert body["details"]["causes"][0]["field"].startswith("spec.")
    bad_label = widget("labelled", size=1)
    bad_label["metadata"]["labels"] = {"job": "x" * 64}
    status, body = error_of(custom.create_namespaced_custom_object, *args, bad_label)
    assert status == 422 and "must be no more than 63 characters" in body["message"]
    status, body = error_of(custom.create_namespaced_custom_object, *args, widget("Bad_Name",
                                                                                size=1))
    assert status == 422 and "metadata.name" in body["message"]

    obj = custom.create_namespaced_custom_object(*args, widget("w1", size=1, extra={"any": 1}))
    assert obj["spec"]["extra"] == {"any": 1}
    same = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1", {
        "metadata": {"labels": {"a": "b"}}, "status": {"phase": "Ignored"}})
    assert same["metadata"]["generation"] == 1 and "status" not in same
    bumped = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1",
                                                   {"spec": {"size": 2}})
    assert bumped["metadata"]["generation"] == 2
    with_status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "w1", {"status": {"phase": "Done"}, "spec": {"size": 9}})
    assert with_status["status"] == {"phase": "Done"} and with_status["spec"]["size"] == 2
    assert with_status["metadata"]["generation"] == 2
    status, body = error_of(custom.patch_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                            "w1", [{"op": "test", "path": "/spec/size", "value": 5}],
                            _content_type="application/json-patch+json")
    assert status == 422, body
    replaced = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "w1", [{"op": "test", "path": "/spec/size", "value": 2},
                                           {"op": "replace", "path": "/spec/size", "value": 4}],
        _content_type="application/json-patch+json")
    assert replaced["spec"]["size"] == 4


def test_finalizers_and_deletion_timestamp(clients: Clients) -> None:
    with_crd(clients)
    custom = clients.custom
    body = widget("held", size=1)
    body["metadata"]["finalizers"] = ["example.dev/hold"]
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "held")
    held = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "held")
    assert held["metadata"]["deletionTimestamp"]
    status, _ = error_of(custom.patch_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                         "held", {"metadata": {"finalizers": ["example.dev/hold", "new/one"]}})
    assert status == 422
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "held",
                                          {"metadata": {"finalizers": None}})
    status, _ = error_of(custom.get_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, "held")
    assert status == 404


def test_watch_resume_and_gone(clients: Clients, tmp_path: Path) -> None:
    core = clients.core
    listed = core.list_namespaced_config_map(NS)
    start = listed.metadata.resource_version
    events: list[tuple[str, str]] = []

    def watch() -> None:
        watcher = kubernetes.watch.Watch()
        for event in watcher.stream(core.list_namespaced_config_map, NS, resource_version=start,
                                    timeout_seconds=10, allow_watch_bookmarks=True):
            events.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                watcher.stop()

    thread = threading.Thread(target=watch)
    thread.start()
    core.create_namespaced_config_map(NS, {"metadata": {"name": "w"}})
    core.patch_namespaced_config_map("w", NS, {"data": {"a": "b"}})
    core.delete_namespaced_config_map("w", NS)
    thread.join(15)
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]

    resumed = [e["type"] for e in kubernetes.watch.Watch().stream(
        core.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=1)]
    assert resumed == ["ADDED", "MODIFIED", "DELETED"]

    with LocalCluster(nodes=1, workdir=tmp_path / "small", watch_history=5) as small:
        core2: Any = kubernetes.client.CoreV1Api(api_client(small.kubeconfig))
        old = core2.list_namespaced_config_map(NS).metadata.resource_version
        for i in range(10):
            core2.create_namespaced_config_map(NS, {"metadata": {"name": f"c{i}"}})
        with pytest.raises(kubernetes.client.ApiException) as info:
            list(kubernetes.watch.Watch().stream(core2.list_namespaced_config_map, NS,
                                                 resource_version=old, timeout_seconds=2))
        assert info.value.status == 410


def test_discovery_lists_builtin_and_custom_resources(clients: Clients) -> None:
    with_crd(clients)
    groups = {g.name for g in clients.discovery.get_api_versions().groups}
    assert {"apps", "coordination.k8s.io", "rbac.authorization.k8s.io", "policy",
            "apiextensions.k8s.io", "events.k8s.io", GROUP} <= groups
    resources = {r.name for r in clients.core.get_api_resources().resources}
    assert {"pods", "pods/status", "pods/log", "pods/binding", "nodes", "services",
            "events", "configmaps", "secrets", "namespaces"} <= resources
    nodes = clients.core.list_node().items
    assert [n.metadata.name for n in nodes] == ["node-0", "node-1"]
    assert nodes[0].status.allocatable["nvidia.com/gpu"] == "4"
    clients.ext.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")
    wait_for("the CRD to leave discovery", lambda: GROUP not in {
        g.name for g in clients.discovery.get_api_versions().groups})


def test_the_kubeconfig_fixture_reaches_a_cluster(kubeconfig: Path) -> None:
    """Runs against a real cluster too (E2E_KUBECONFIG): only portable expectations."""
    core: Any = kubernetes.client.CoreV1Api(api_client(kubeconfig))
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system"} <= names
    assert core.list_node().items
    version = kubernetes.client.VersionApi(api_client(kubeconfig)).get_code()
    assert version.major == "1"


def test_cluster_scoped_custom_resources(clients: Clients) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "zones.example.dev"},
           "spec": {"group": GROUP, "scope": "Cluster",
                    "names": {"plural": "zones", "singular": "zone", "kind": "Zone"},
                    "versions": [{"name": VERSION, "served": True, "storage": True, "schema": {
                        "openAPIV3Schema": {"type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True}}}]}}
    clients.ext.create_custom_resource_definition(crd)
    custom = clients.custom
    made = custom.create_cluster_custom_object(GROUP, VERSION, "zones", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Zone", "metadata": {"name": "z1"},
        "spec": {"anything": [1, {"goes": True}]}})
    assert "namespace" not in made["metadata"]
    assert [z["metadata"]["name"] for z in custom.list_cluster_custom_object(
        GROUP, VERSION, "zones")["items"]] == ["z1"]
    custom.delete_cluster_custom_object(GROUP, VERSION, "zones", "z1")
    assert custom.list_cluster_custom_object(GROUP, VERSION, "zones")["items"] == []


def raw_post(clients: Clients, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST a JSON body as given (the typed client would coerce it first)."""
    host = clients.core.api_client.configuration.host
    request = urllib.request.Request(host + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_builtin_objects_are_decoded_like_the_real_server(clients: Clients) -> None:
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typed"},
                           "spec": {"containers": [{
                               "name": "main", "image": "python:3.11",
                               "command": ["python", "-c", "pass"],
                               "ports": [{"containerPort": "8080"}]}]}}
    status, body = raw_post(clients, "/api/v1/namespaces/default/pods", pod)
    assert status == 400 and body["reason"] == "BadRequest"
    assert "spec.containers[0].ports[0].containerPort" in body["message"]
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    pod["spec"]["containers"][0]["imagePullPolcy"] = "Always"  # a typo: dropped, not stored
    status, body = raw_post(clients, "/api/v1/namespaces/default/pods", pod)
    assert status == 201 and "imagePullPolcy" not in body["spec"]["containers"][0]
    status, body = raw_post(clients, "/api/v1/namespaces/default/configmaps?fieldValidation="
                            "Strict", {"metadata": {"name": "c"}, "data": {"n": "1"}, "bogus": {}})
    assert status == 400 and 'unknown field "bogus"' in body["message"]

"""A minimal kopf operator, run with `kopf run` in a subprocess, against the local cluster:
it joins its peering, its create, update, timer and delete handlers fire, and its finalizer
comes and goes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest

from e2e.localcluster import LocalCluster
from e2e.localcluster.testing import wait_for

pytestmark = pytest.mark.timeout(120)

GROUP, VERSION, PLURAL = "example.dev", "v1", "gadgets"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "gadget", "kind": "Gadget"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}

# kopf's peering resource, declared as kopf's documentation does: an ordinary CRD.
PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev", "scope": "Namespaced",
        "names": {"plural": "kopfpeerings", "singular": "kopfpeering", "kind": "KopfPeering"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
            "openAPIV3Schema": {"type": "object", "properties": {"status": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}],
    },
}

OPERATOR = textwrap.dedent('''
    import pathlib
    import kopf

    EVENTS = pathlib.Path(__file__).with_name("events.log")

    def note(text):
        with EVENTS.open("a") as handle:
            handle.write(text + "\\n")

    @kopf.on.startup()
    def configure(settings, **_):
        settings.watching.server_timeout = 10
        settings.persistence.finalizer = "example.dev/cleanup"

    @kopf.on.create("example.dev", "v1", "gadgets")
    def created(spec, name, **_):
        note(f"create {name} {spec.get('size')}")
        return {"size": spec.get("size")}

    @kopf.on.update("example.dev", "v1", "gadgets", field="spec.size")
    def updated(old, new, name, **_):
        note(f"update {name} {old} {new}")

    @kopf.timer("example.dev", "v1", "gadgets", interval=0.5)
    def ticked(name, patch, **_):
        note(f"timer {name}")
        patch.status["ticked"] = True

    @kopf.on.delete("example.dev", "v1", "gadgets")
    def deleted(name, **_):
        note(f"delete {name}")
''')



def test_kopf_handlers_and_finalizer(local_cluster: LocalCluster, tmp_path: Path) -> None:
    client = kubernetes.config.new_client_from_config(config_file=str(local_cluster.kubeconfig))
    ext = kubernetes.client.ApiextensionsV1Api(client)
    custom: Any = kubernetes.client.CustomObjectsApi(client)
    ext.create_custom_resource_definition(cast(Any, CRD))
    ext.create_custom_resource_definition(cast(Any, PEERING_CRD))
    custom.create_namespaced_custom_object("kopf.dev", "v1", "default", "kopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default"}})
    script = tmp_path / "operator.py"
    script.write_text(OPERATOR)
    events = tmp_path / "events.log"
    log = (tmp_path / "kopf.log").open("w")
    env = dict(os.environ, KUBECONFIG=str(local_cluster.kubeconfig))
    proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", "-n", "default", str(script)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Gadget",
            "metadata": {"name": "g1"}, "spec": {"size": 1}})

        def get() -> dict[str, Any]:
            return cast(dict[str, Any], custom.get_namespaced_custom_object(
                GROUP, VERSION, "default", PLURAL, "g1"))

        wait_for("kopf to join the peering", lambda: custom.get_namespaced_custom_object(
            "kopf.dev", "v1", "default", "kopfpeerings", "default").get("status"))
        obj = wait_for("the create handler's result",
                       lambda: (o := get()).get("status", {}).get("created") and o)
        assert obj["status"]["created"] == {"size": 1}
        assert "example.dev/cleanup" in obj["metadata"]["finalizers"]
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g1",
                                              {"spec": {"size": 2}})
        wait_for("the update handler", lambda: "update g1 1 2" in events.read_text())
        wait_for("the timer", lambda: get().get("status", {}).get("ticked"))
        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g1")
        wait_for("the delete handler", lambda: "delete g1" in events.read_text())

        def gone() -> bool:
            try:
                get()
            except kubernetes.client.ApiException as exc:
                return exc.status == 404
            return False
        wait_for("the finalizer's removal and the object's deletion", gone)
        assert "create g1 1" in events.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
    kopf_log = (tmp_path / "kopf.log").read_text()
    assert "Traceback" not in kopf_log, kopf_log[-3000:]

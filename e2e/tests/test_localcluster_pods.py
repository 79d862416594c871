"""The local cluster's kubelet, scheduler, DNS seam and garbage collector, through the
kubernetes Python client: pods are real local processes."""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

import kubernetes
import pytest

from e2e.localcluster import LocalCluster
from e2e.localcluster.testing import api_client, wait_for

pytestmark = pytest.mark.timeout(90)
NS = "default"


def core(cluster: LocalCluster) -> Any:
    """The typed client, typed loosely: the tests pass plain dicts as bodies."""
    return kubernetes.client.CoreV1Api(api_client(cluster.kubeconfig))


def python_pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "python:3.11",
                                 "command": ["python", "-c", textwrap.dedent(script)]}
    container.update(spec.pop("container", {}))
    labels = spec.pop("labels", {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [container], **spec}}


def phase(api: Any, name: str) -> str:
    return str(api.read_namespaced_pod(name, NS).status.phase)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_python_pod_env_ip_logs_and_deletion(local_cluster: LocalCluster) -> None:
    api = core(local_cluster)
    script = """
        import os, sys, time
        print("exe", os.path.realpath(sys.executable))
        for key in ("GREETING", "POD_NAME", "POD_NAMESPACE", "POD_UID", "POD_IP", "NODE", "APP"):
            print(key, os.environ[key])
        print("ready", flush=True)
        time.sleep(600)
    """
    field = lambda path: {"valueFrom": {"fieldRef": {"fieldPath": path}}}  # noqa: E731
    pod = python_pod("env-pod", script, labels={"app": "demo"}, terminationGracePeriodSeconds=2,
                     container={"env": [
                         {"name": "GREETING", "value": "hello"},
                         {"name": "POD_NAME", **field("metadata.name")},
                         {"name": "POD_NAMESPACE", **field("metadata.namespace")},
                         {"name": "POD_UID", **field("metadata.uid")},
                         {"name": "POD_IP", **field("status.podIP")},
                         {"name": "NODE", **field("spec.nodeName")},
                         {"name": "APP", **field("metadata.labels['app']")},
                     ]})
    created = api.create_namespaced_pod(NS, pod)
    wait_for("Running", lambda: phase(api, "env-pod") == "Running")
    status = wait_for("Ready", lambda: (p := api.read_namespaced_pod("env-pod", NS)).status
                      .conditions and any(c.type == "Ready" and c.status == "True"
                                          for c in p.status.conditions) and p)
    ip = status.status.pod_ip
    assert ip.startswith("127.") and ip != "127.0.0.1"
    assert status.spec.node_name in ("node-0", "node-1")
    logs = wait_for("the logs", lambda: (text := api.read_namespaced_pod_log("env-pod", NS))
                    and "ready" in text and text)
    lines = dict(line.split(" ", 1) for line in logs.splitlines() if " " in line)
    assert lines["exe"] == os.path.realpath(sys.executable)
    assert lines["GREETING"] == "hello"
    assert lines["POD_NAME"] == "env-pod" and lines["POD_NAMESPACE"] == NS
    assert lines["POD_UID"] == created.metadata.uid and lines["POD_IP"] == ip
    assert lines["NODE"] == status.spec.node_name and lines["APP"] == "demo"
    assert api.read_namespaced_pod_log("env-pod", NS, tail_lines=1) == "ready\n"
    assert local_cluster.pod_log_path(NS, "env-pod").read_text() == logs
    pid = local_cluster.pod_pid(NS, "env-pod")
    assert pid is not None and alive(pid)
    api.delete_namespaced_pod("env-pod", NS)
    wait_for("the pod's process to end", lambda: not alive(pid))

    def gone() -> bool:
        try:
            api.read_namespaced_pod("env-pod", NS)
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False
    wait_for("the pod object to go away", gone)


def test_exit_codes_restart_policies_and_restarts(local_cluster: LocalCluster) -> None:
    api = core(local_cluster)
    api.create_namespaced_pod(NS, python_pod("ok", "print('done')", restartPolicy="Never"))
    api.create_namespaced_pod(NS, python_pod("bad", "raise SystemExit(3)", restartPolicy="Never"))
    api.create_namespaced_pod(NS, python_pod("flaky", "raise SystemExit(1)",
                                             restartPolicy="OnFailure"))
    wait_for("Succeeded", lambda: phase(api, "ok") == "Succeeded")
    wait_for("Failed", lambda: phase(api, "bad") == "Failed")
    bad = api.read_namespaced_pod("bad", NS).status.container_statuses[0]
    assert bad.state.terminated.exit_code == 3 and bad.state.terminated.reason == "Error"
    ok = api.read_namespaced_pod("ok", NS).status.container_statuses[0]
    assert ok.state.terminated.exit_code == 0 and ok.state.terminated.reason == "Completed"
    flaky = wait_for("a restart", lambda: (s := api.read_namespaced_pod("flaky", NS).status
                                           .container_statuses) and s[0].restart_count >= 1
                     and s[0])
    assert flaky.last_state.terminated.exit_code == 1
    assert phase(api, "flaky") == "Running"


def test_scheduler_resources_selectors_and_unschedulable(local_cluster: LocalCluster) -> None:
    api = core(local_cluster)
    sleeper = "import time; time.sleep(600)"
    gpus = {"resources": {"limits": {"nvidia.com/gpu": "3"}}}
    api.create_namespaced_pod(NS, python_pod("gpu-a", sleeper, container=gpus,
                                             nodeSelector={"kubernetes.io/hostname": "node-1"}))
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": ["node-1"]}]}]}}}
    api.create_namespaced_pod(NS, python_pod("gpu-b", sleeper, container=gpus, affinity=affinity))
    api.create_namespaced_pod(NS, python_pod("gpu-c", sleeper, container=gpus))
    wait_for("gpu-a bound", lambda: api.read_namespaced_pod("gpu-a", NS).spec.node_name)
    assert api.read_namespaced_pod("gpu-a", NS).spec.node_name == "node-1"
    c_node = wait_for("gpu-c bound", lambda: api.read_namespaced_pod("gpu-c", NS).spec.node_name)
    assert c_node == "node-0"

    def unschedulable() -> Any:
        pod = api.read_namespaced_pod("gpu-b", NS)
        return next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"
                     and c.status == "False" and c.reason == "Unschedulable"), None)
    condition = wait_for("gpu-b to be unschedulable", unschedulable)
    assert "Insufficient nvidia.com/gpu" in condition.message
    assert api.read_namespaced_pod("gpu-b", NS).status.phase == "Pending"
    events = api.list_namespaced_event(NS, field_selector="involvedObject.name=gpu-b")
    assert any(e.reason == "FailedScheduling" for e in events.items)
    api.delete_namespaced_pod("gpu-a", NS, grace_period_seconds=0)
    wait_for("gpu-b bound once gpu-a left",
             lambda: api.read_namespaced_pod("gpu-b", NS).spec.node_name == "node-1")


def test_pods_resolve_each_other_through_the_dns_seam(local_cluster: LocalCluster) -> None:
    api = core(local_cluster)
    api.create_namespaced_service(NS, {
        "metadata": {"name": "job"},
        "spec": {"clusterIP": "None", "selector": {"job": "dns"},
                 "ports": [{"name": "p", "port": 7000}]}})
    server = """
        import os, socket
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((os.environ["POD_IP"], 7000))
        s.listen()
        print("listening", flush=True)
        while True:
            conn, _ = s.accept()
            conn.sendall(b"hi from " + socket.gethostname().encode())
            conn.close()
    """
    client = """
        import socket, time
        for name in ("a.job.default.svc", "job.default.svc.cluster.local"):
            for attempt in range(100):
                try:
                    conn = socket.create_connection((name, 7000), timeout=2)
                    break
                except OSError:
                    time.sleep(0.1)
            print(name, socket.gethostbyname(name), conn.recv(100).decode(), flush=True)
        print("me", socket.gethostname(), socket.gethostbyname(socket.gethostname()), flush=True)
        try:
            socket.getaddrinfo("nobody.job.default.svc", 1)
        except socket.gaierror:
            print("nobody: not found", flush=True)
    """
    ip_env = {"env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}
    api.create_namespaced_pod(NS, python_pod("server", server, labels={"job": "dns"},
                                             hostname="a", subdomain="job", container=ip_env))
    api.create_namespaced_pod(NS, python_pod("client", client, restartPolicy="Never"))
    wait_for("the client to finish", lambda: phase(api, "client") in ("Succeeded", "Failed"))
    server_ip = api.read_namespaced_pod("server", NS).status.pod_ip
    logs = api.read_namespaced_pod_log("client", NS)
    assert f"a.job.default.svc {server_ip} hi from a" in logs, logs
    assert f"job.default.svc.cluster.local {server_ip} hi from a" in logs, logs
    assert "nobody: not found" in logs
    client_ip = api.read_namespaced_pod("client", NS).status.pod_ip
    assert f"me client {client_ip}" in logs
    endpoints = api.read_namespaced_endpoints("job", NS)
    assert endpoints.subsets[0].addresses[0].ip == server_ip


def test_garbage_collection_and_node_failure(local_cluster: LocalCluster) -> None:
    api = core(local_cluster)
    owner = api.create_namespaced_config_map(NS, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    pod = python_pod("owned", "import time; time.sleep(600)", terminationGracePeriodSeconds=1)
    pod["metadata"]["ownerReferences"] = [ref]
    api.create_namespaced_pod(NS, pod)
    api.create_namespaced_config_map(NS, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    wait_for("owned running", lambda: local_cluster.pod_pid(NS, "owned"))
    pid = local_cluster.pod_pid(NS, "owned")
    assert pid is not None
    api.delete_namespaced_config_map("owner", NS)
    wait_for("dependents deleted", lambda: not api.list_namespaced_pod(NS).items and not [
        c for c in api.list_namespaced_config_map(NS).items if c.metadata.name == "child"])
    assert not alive(pid)

    api.create_namespaced_pod(NS, python_pod("victim", "import time; time.sleep(600)",
                                             nodeName="node-1"))
    victim_pid = wait_for("victim running", lambda: local_cluster.pod_pid(NS, "victim"))
    assert local_cluster.kill_node_pods("node-1") == [f"{NS}/victim"]
    wait_for("victim's process killed", lambda: not alive(victim_pid))
    assert not api.list_namespaced_pod(NS).items


def test_volumes_are_host_directories(local_cluster: LocalCluster, tmp_path: Any) -> None:
    api = core(local_cluster)
    api.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}, "data": {"k": "v"}})
    api.create_namespaced_secret(NS, {"metadata": {"name": "sec"}, "stringData": {"pw": "s3"}})
    host = tmp_path / "host"
    script = """
        import os, sys
        open(sys.argv[1], "w").write("written")
        print(open("/etc/cfg/k".replace("/etc/cfg", os.environ["CFG_DIR"])).read())
        print(os.environ["CKPT"])
        print(os.environ["FROM_CM"], os.environ["FROM_SECRET"], os.environ["EXPANDED"])
    """
    pod = python_pod("vols", script, restartPolicy="Never", volumes=[
        {"name": "scratch", "emptyDir": {}},
        {"name": "ckpt", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "hp", "hostPath": {"path": str(host)}},
        {"name": "cfg", "configMap": {"name": "cfg"}}])
    container = pod["spec"]["containers"][0]
    container["args"] = ["/mnt/host/out.txt"]
    container["env"] = [
        {"name": "CKPT", "value": "/ckpt/latest"}, {"name": "CFG_DIR", "value": "/etc/cfg"},
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
        {"name": "EXPANDED", "value": "$(FROM_CM)-$(FROM_SECRET)"}]
    container["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"},
                                 {"name": "ckpt", "mountPath": "/ckpt"},
                                 {"name": "hp", "mountPath": "/mnt/host"},
                                 {"name": "cfg", "mountPath": "/etc/cfg"}]
    api.create_namespaced_pod(NS, pod)
    wait_for("the pod to finish", lambda: phase(api, "vols") in ("Succeeded", "Failed"))
    logs = api.read_namespaced_pod_log("vols", NS)
    assert phase(api, "vols") == "Succeeded", logs
    assert (host / "out.txt").read_text() == "written"
    lines = logs.splitlines()
    assert lines[0] == "v"
    assert lines[1] == str(local_cluster.workdir / "volumes" / NS / "data" / "latest")
    assert lines[2] == "v s3 v-s3"


def test_readiness_and_liveness_probes(local_cluster: LocalCluster) -> None:
    api = core(local_cluster)
    server = """
        import http.server, os, time
        time.sleep(1.0)
        http.server.HTTPServer((os.environ["POD_IP"], 8080),
                               http.server.SimpleHTTPRequestHandler).serve_forever()
    """
    probed = {
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }
    api.create_namespaced_pod(NS, python_pod("probed", server, container=probed))
    wait_for("Running", lambda: phase(api, "probed") == "Running")

    def ready() -> bool:
        conditions = api.read_namespaced_pod("probed", NS).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)
    assert not ready()  # the server is not listening yet
    wait_for("readiness", ready)

    dying = {"livenessProbe": {"exec": {"command": ["python", "-c", "raise SystemExit(1)"]},
                               "periodSeconds": 1, "failureThreshold": 2}}
    api.create_namespaced_pod(NS, python_pod("unhealthy", "import time; time.sleep(600)",
                                             container=dying))
    wait_for("a restart by the liveness probe", lambda: (s := api.read_namespaced_pod(
        "unhealthy", NS).status.container_statuses) and s[0].restart_count >= 1)
    events = api.list_namespaced_event(NS, field_selector="involvedObject.name=unhealthy")
    assert any(e.reason == "Unhealthy" for e in events.items)


@pytest.mark.timeout(60)
def test_stop_ends_crash_looping_pods_and_the_loop_thread(tmp_path: Any) -> None:
    cluster = LocalCluster(nodes=1, workdir=tmp_path / "c", restart_backoff=(0.05, 0.1))
    with cluster:
        api = core(cluster)
        for i in range(3):
            api.create_namespaced_pod(NS, python_pod(f"loop-{i}", "pass"))
        wait_for("several restarts", lambda: all(
            (s := api.read_namespaced_pod(f"loop-{i}", NS).status.container_statuses)
            and s[0].restart_count >= 3 for i in range(3)))
        thread = cluster._thread
    assert thread is not None and not thread.is_alive()


def test_termination_messages_reach_the_pod_status(local_cluster: LocalCluster) -> None:
    api = core(local_cluster)
    writes = """
        import os
        with open(os.environ["WHY"], "w") as handle:
            handle.write("cannot import nosuch.module")
        raise SystemExit(2)
    """
    # the path in an env value is rewritten to the file standing in for the mount
    api.create_namespaced_pod(NS, python_pod(
        "writes", writes, restartPolicy="Never",
        container={"env": [{"name": "WHY", "value": "/dev/termination-log"}]}))
    api.create_namespaced_pod(NS, python_pod(
        "logs", "print('Traceback: boom', flush=True); raise SystemExit(1)",
        restartPolicy="Never", container={"terminationMessagePolicy": "FallbackToLogsOnError"}))
    api.create_namespaced_pod(NS, python_pod(
        "quiet", "print('all fine', flush=True)", restartPolicy="Never",
        container={"terminationMessagePolicy": "FallbackToLogsOnError"}))
    wait_for("writes Failed", lambda: phase(api, "writes") == "Failed")
    wait_for("logs Failed", lambda: phase(api, "logs") == "Failed")
    wait_for("quiet Succeeded", lambda: phase(api, "quiet") == "Succeeded")

    def message(name: str) -> str | None:
        status = api.read_namespaced_pod(name, NS).status.container_statuses[0]
        return status.state.terminated.message  # type: ignore[no-any-return]

    assert message("writes") == "cannot import nosuch.module"
    assert "Traceback: boom" in (message("logs") or "")
    assert message("quiet") is None  # a success falls back to no log

"""The kubelet: runs each bound pod's containers as local processes.

What a process gets instead of a container (the seams, documented in e2e/README.md):
- its command + args (the image is not used); `python` resolves to this interpreter
  (its directory is first on PATH);
- its own loopback podIP 127.A.B.C (GLOO_SOCKET_IFNAME and TP_SOCKET_IFNAME are "lo", so
  that torch.distributed listens there) and its cwd in the pod's own directory under workdir;
- volumes as host directories (hostPath, emptyDir, persistentVolumeClaim, configMap,
  secret); arguments and env values that start with a mountPath are rewritten to the host
  directory, since a process cannot mount;
- a PYTHONPATH entry whose sitecustomize resolves `*.svc` names through the API server;
- its terminationMessagePath (default /dev/termination-log) as a file in the pod's
  directory (a path argument or env value equal to it is rewritten, as for a mount); when
  the container ends, the file's content (at most 4096 bytes) is its
  `state.terminated.message`, or with terminationMessagePolicy FallbackToLogsOnError and a
  failure and an empty file, the log's tail (80 lines, 2048 bytes), as a real kubelet does.

Status follows the real kubelet: Pending -> Running (Ready) -> Succeeded/Failed, restarts
with backoff for restartPolicy Always/OnFailure, SIGTERM then SIGKILL on deletion.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import ctypes
import logging
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import aio, meta, probes
from .api import Api
from .events import record_event
from .server import set_condition
from .store import Change

log = logging.getLogger("localcluster.kubelet")


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes a pod process die when the kubelet's thread dies (Linux
    PR_SET_PDEATHSIG), so a killed test run leaves no pod processes behind."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
    return preexec


DIE_WITH_PARENT = _die_with_parent()

Obj = dict[str, Any]
DNS_DIR = Path(__file__).parent / "dns"
POLL_S = 0.1
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
#: what a real kubelet keeps of a termination message, and of the log it falls back to
TERMINATION_MESSAGE_BYTES = 4096
FALLBACK_LOG_BYTES = 2048
FALLBACK_LOG_LINES = 80


def termination_message(crun: ContainerRun, exit_code: int) -> str:
    """The container's termination message as a real kubelet reports it: the file's
    content, else (policy FallbackToLogsOnError, a failure) the log's tail."""
    text = ""
    if crun.termination_file is not None:
        with contextlib.suppress(OSError):
            text = crun.termination_file.read_bytes()[:TERMINATION_MESSAGE_BYTES].decode(
                "utf-8", "replace")
    if not text.strip() and exit_code != 0 and crun.message_policy == "FallbackToLogsOnError":
        with contextlib.suppress(OSError):
            tail = crun.log_path.read_bytes()[-FALLBACK_LOG_BYTES:].decode("utf-8", "replace")
            text = "\n".join(tail.splitlines()[-FALLBACK_LOG_LINES:])
    return text


def terminated_state(crun: ContainerRun, exit_code: int, **fields: Any) -> Obj:
    """A container's `terminated` state, with its termination message when it left one."""
    state: Obj = {"exitCode": exit_code, **fields}
    message = termination_message(crun, exit_code)
    if message:
        state["message"] = message
    return {"terminated": state}


@dataclass
class ContainerRun:
    name: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: str = ""
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    runnable: bool = True
    #: the host file standing in for the container's terminationMessagePath
    termination_file: Path | None = None
    message_policy: str = "File"  # terminationMessagePolicy
    ready: bool = False  # the readiness probe's verdict (True when there is none)
    started: bool = False  # the startup probe's verdict (True when there is none)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    node: str
    directory: Path
    ip: str
    containers: dict[str, ContainerRun]
    terminating: bool = False
    done: bool = False
    task: asyncio.Task[None] | None = None


class IpAllocator:
    """Unique loopback addresses 127.A.B.C per cluster (A random, to keep clusters that run
    side by side on one machine apart)."""

    def __init__(self) -> None:
        self.a = random.randint(20, 250)
        self.next = 1

    def allocate(self) -> str:
        n = self.next
        self.next += 1
        b, c = divmod(n, 250)
        return f"127.{self.a}.{b % 250}.{c + 1}"

    def node_ip(self, index: int) -> str:
        return f"127.{self.a}.255.{index + 1}"


def _expand(text: str, env: dict[str, str]) -> str:
    """$(VAR) expansion as the kubelet does it ($$ escapes)."""
    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, text)


class Kubelet:
    def __init__(self, api: Api, workdir: Path, node_ips: dict[str, str], api_url: str,
                 ips: IpAllocator, backoff: tuple[float, float] = (1.0, 10.0)) -> None:
        self.api = api
        self.workdir = workdir
        self.node_ips = node_ips
        self.api_url = api_url
        self.ips = ips
        self.backoff = backoff
        self.pods: dict[str, PodRun] = {}  # by uid
        self.last_dir: dict[tuple[str, str], Path] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        api.store.listeners.append(self._on_change)
        api.on_pod_deleting = lambda pod: self._wake.set()

    # ---- public (LogSource and cluster helpers) ------------------------------------------
    def _run_of(self, namespace: str, name: str) -> PodRun | None:
        for run in self.pods.values():
            if run.namespace == namespace and run.name == name:
                return run
        return None

    def log_path(self, namespace: str, name: str, container: str, previous: bool) -> Path:
        directory = self.last_dir.get((namespace, name), self.workdir / "pods" / namespace / name)
        return directory / (f"{container}.previous.log" if previous else f"{container}.log")

    def container_running(self, namespace: str, name: str, container: str) -> bool:
        run = self._run_of(namespace, name)
        if run is None or container not in run.containers:
            return False
        c = run.containers[container]
        return c.running or (not run.done and "waiting" in c.state)

    def pid(self, namespace: str, name: str) -> int | None:
        run = self._run_of(namespace, name)
        if run is None:
            return None
        for c in run.containers.values():
            if c.running and c.proc is not None:
                return c.proc.pid
        return None

    # ---- the sync loop ----------------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        if change.key == ("", "pods"):
            if change.type == "DELETED":
                run = self.pods.get(change.obj["metadata"]["uid"])
                if run is not None and not run.done:
                    self._spawn(self._kill_now(run))
                elif run is not None:
                    self.pods.pop(run.uid, None)
            self._wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.sync()
            except Exception:
                log.exception("kubelet sync failed")
            await asyncio.sleep(0.02)  # batch bursts of changes into one round
            await aio.wait_event(self._wake, 1.0)

    def sync(self) -> None:
        for pod in list(self.api.store.items(("", "pods"))):
            md, spec = pod["metadata"], pod.get("spec") or {}
            node = spec.get("nodeName")
            if not node or node not in self.node_ips:
                continue
            run = self.pods.get(md["uid"])
            if md.get("deletionTimestamp"):
                if run is None:
                    self._finish_deleted(pod)
                elif not run.terminating:
                    run.terminating = True
                    grace = float(md.get("deletionGracePeriodSeconds") or 0)
                    self._spawn(self._terminate(run, grace))
                continue
            if run is None and (pod.get("status") or {}).get("phase") not in ("Succeeded",
                                                                                "Failed"):
                self._start_pod(pod)

    def _finish_deleted(self, pod: Obj) -> None:
        rt = self.api.registry.by_key(("", "pods"))
        assert rt is not None
        md = pod["metadata"]
        self.api.force_remove(rt, md["namespace"], md["name"])

    # ---- starting ---------------------------------------------------------------------
    def _start_pod(self, pod: Obj) -> None:
        md, spec = pod["metadata"], pod["spec"]
        directory = self.workdir / "pods" / md["namespace"] / f"{md['name']}-{md['uid'][:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        self.last_dir[(md["namespace"], md["name"])] = directory
        containers = {c["name"]: ContainerRun(c["name"], directory / f"{c['name']}.log")
                      for c in spec.get("containers") or []}
        run = PodRun(md["namespace"], md["name"], md["uid"], spec["nodeName"], directory,
                     self.ips.allocate(), containers)
        self.pods[md["uid"]] = run
        run.task = asyncio.get_running_loop().create_task(self._supervise(run))

    def _volume_dirs(self, pod: Obj, run: PodRun) -> dict[str, Path]:
        dirs: dict[str, Path] = {}
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if "hostPath" in volume:
                path = Path(volume["hostPath"]["path"])
                if (volume["hostPath"].get("type") or "") in ("DirectoryOrCreate", ""):
                    with contextlib.suppress(OSError):
                        path.mkdir(parents=True, exist_ok=True)
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                path = self.workdir / "volumes" / run.namespace / claim
            else:
                path = run.directory / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            source_kind = "configMap" if "configMap" in volume else (
                "secret" if "secret" in volume else "")
            if source_kind:
                self._project(volume[source_kind], source_kind, run.namespace, path)
            dirs[name] = path
        return dirs

    def _project(self, source: Obj, kind: str, namespace: str, path: Path) -> None:
        name = source.get("name") or source.get("secretName", "")
        plural = "configmaps" if kind == "configMap" else "secrets"
        obj = self.api.store.peek(("", plural), namespace, name)
        if obj is None:
            return
        data = dict(obj.get("data") or {})
        if kind == "secret":
            data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        items = source.get("items")
        pairs = [(i["key"], i.get("path", i["key"])) for i in items] if items else [
            (k, k) for k in data]
        for key, target in pairs:
            if key in data:
                (path / target).parent.mkdir(parents=True, exist_ok=True)
                (path / target).write_text(data[key])

    def _env(self, pod: Obj, container: Obj, run: PodRun) -> dict[str, str]:
        """The container's declared environment: envFrom, then env (values, $(VAR)
        references, downward API fields, ConfigMap and Secret keys)."""
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef") or source.get("secretRef") or {}
            plural = "configmaps" if "configMapRef" in source else "secrets"
            obj = self.api.store.peek(("", plural), run.namespace, ref.get("name", ""))
            if obj is None:
                if not ref.get("optional"):
                    raise LookupError(f'{plural[:-1]} "{ref.get("name")}" not found')
                continue
            for key, value in (obj.get("data") or {}).items():
                if plural == "secrets":
                    value = base64.b64decode(value).decode(errors="replace")
                env[source.get("prefix", "") + key] = value
        for item in container.get("env") or []:
            name = item["name"]
            if "value" in item:
                env[name] = _expand(str(item["value"]), env)
                continue
            source = item.get("valueFrom") or {}
            if "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                env[name] = self._field(pod, run, path)
            elif "configMapKeyRef" in source or "secretKeyRef" in source:
                ref = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
                plural = "configmaps" if "configMapKeyRef" in source else "secrets"
                obj = self.api.store.peek(("", plural), run.namespace, ref["name"])
                value = ((obj or {}).get("data") or {}).get(ref["key"])
                if value is None:
                    if ref.get("optional"):
                        continue
                    raise LookupError(f'couldn\'t find key {ref["key"]} in {plural[:-1]} '
                                      f'{run.namespace}/{ref["name"]}')
                if plural == "secrets":
                    value = base64.b64decode(value).decode(errors="replace")
                env[name] = value
            elif "resourceFieldRef" in source:
                res = source["resourceFieldRef"]["resource"]
                kind, _, resource = res.partition(".")
                value = ((container.get("resources") or {}).get(kind) or {}).get(resource, "0")
                env[name] = str(value)
        return env

    def _field(self, pod: Obj, run: PodRun, path: str) -> str:
        md = pod["metadata"]
        simple = {"metadata.name": md["name"], "metadata.namespace": md["namespace"],
                  "metadata.uid": md["uid"], "spec.nodeName": run.node,
                  "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
                  "status.podIP": run.ip, "status.podIPs": run.ip,
                  "status.hostIP": self.node_ips.get(run.node, "127.0.0.1"),
                  "status.hostIPs": self.node_ips.get(run.node, "127.0.0.1")}
        if path in simple:
            return simple[path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if match:
            return str((md.get(match.group(1)) or {}).get(match.group(2), ""))
        if path in ("metadata.labels", "metadata.annotations"):
            values = md.get(path.split(".")[1]) or {}
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        return ""

    def _process_env(self, pod: Obj, container: Obj, run: PodRun,
                     mounts: list[tuple[str, Path]]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TERM", "LD_LIBRARY_PATH")}
        python_dir = str(Path(sys.executable).parent)
        env["PATH"] = python_dir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
        env["HOSTNAME"] = pod["spec"].get("hostname") or pod["metadata"]["name"]
        env["KUBERNETES_SERVICE_HOST"] = "127.0.0.1"
        env["KUBERNETES_SERVICE_PORT"] = self.api_url.rsplit(":", 1)[1]
        env["PYTHONUNBUFFERED"] = "1"
        env["LOCALCLUSTER_API_URL"] = self.api_url
        env["LOCALCLUSTER_POD_NAMESPACE"] = run.namespace
        env["LOCALCLUSTER_POD_IP"] = run.ip
        hostname = env["HOSTNAME"][:63]
        subdomain = pod["spec"].get("subdomain")
        env["LOCALCLUSTER_POD_HOSTNAME"] = hostname
        env["LOCALCLUSTER_POD_FQDN"] = (f"{hostname}.{subdomain}.{run.namespace}.svc.cluster.local"
                                        if subdomain else hostname)
        # the pod's network is a loopback address: torch.distributed's gloo and TensorPipe
        # transports must listen there, not on the interface of the machine's hostname
        env["GLOO_SOCKET_IFNAME"] = env["TP_SOCKET_IFNAME"] = "lo"
        declared = self._env(pod, container, run)
        for key, value in declared.items():
            env[key] = _rewrite(value, mounts)
        pythonpath = [str(DNS_DIR)]
        if env.get("PYTHONPATH"):
            pythonpath.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        return env

    async def _supervise(self, run: PodRun) -> None:
        """Start the pod's containers, watch them, restart them as the policy says."""
        try:
            await self._supervise_inner(run)
        except Exception:
            log.exception("pod %s/%s supervision failed", run.namespace, run.name)

    async def _supervise_inner(self, run: PodRun) -> None:
        pod = self.api.store.get(("", "pods"), run.namespace, run.name)
        if pod is None:
            return
        spec = pod["spec"]
        policy = spec.get("restartPolicy", "Always")
        volumes = self._volume_dirs(pod, run)
        specs = {c["name"]: c for c in spec.get("containers") or []}
        first_start = True
        while not run.terminating:
            for name, crun in run.containers.items():
                if crun.running or not crun.runnable or ("terminated" in crun.state and (
                        policy == "Never" or (policy == "OnFailure" and crun.state[
                            "terminated"]["exitCode"] == 0))):
                    continue
                if "waiting" in crun.state and crun.state["waiting"].get("reason") == \
                        "CrashLoopBackOff":
                    continue
                self._start_container(pod, specs[name], crun, run, volumes)
            if first_start:
                first_start = False
                record_event(self.api, pod, "Normal", "Started",
                             f"Started container {next(iter(run.containers))}", "kubelet",
                             run.node)
            self._write_status(run)
            # wait for any container to exit
            while not run.terminating and all(
                    c.running or not c.runnable or "terminated" in c.state or
                    c.state.get("waiting", {}).get("reason") == "CrashLoopBackOff"
                    for c in run.containers.values()) and not self._exited(run):
                await asyncio.sleep(POLL_S)
            if run.terminating:
                return
            restart_due: list[float] = []
            for crun in run.containers.values():
                if crun.proc is not None and crun.proc.poll() is not None and "running" in \
                        crun.state:
                    code = crun.proc.returncode
                    exit_code = code if code >= 0 else 128 - code
                    crun.state = terminated_state(
                        crun, exit_code, reason="Completed" if exit_code == 0 else "Error",
                        startedAt=crun.started_at, finishedAt=meta.now(),
                        containerID=f"local://{crun.proc.pid}")
                    if policy == "Always" or (policy == "OnFailure" and exit_code != 0):
                        delay = min(self.backoff[0] * 2 ** crun.restarts, self.backoff[1])
                        crun.last_state = crun.state
                        crun.state = {"waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {delay:g}s restarting failed container="
                                       f"{crun.name} pod={run.name}"}}
                        restart_due.append(delay)
            self._write_status(run)
            if not restart_due and all(not c.running for c in run.containers.values()):
                run.done = True
                return
            if restart_due:
                waited = 0.0
                while waited < min(restart_due) and not run.terminating:
                    await asyncio.sleep(POLL_S)
                    waited += POLL_S
                for crun in run.containers.values():
                    if crun.state.get("waiting", {}).get("reason") == "CrashLoopBackOff":
                        crun.restarts += 1
                        crun.state = {"waiting": {"reason": "ContainerCreating"}}
            pod = self.api.store.get(("", "pods"), run.namespace, run.name) or pod

    @staticmethod
    def _exited(run: PodRun) -> bool:
        return any(c.proc is not None and c.proc.poll() is not None and "running" in c.state
                   for c in run.containers.values())

    def _start_container(self, pod: Obj, container: Obj, crun: ContainerRun, run: PodRun,
                         volumes: dict[str, Path]) -> None:
        mounts = sorted(((m["mountPath"].rstrip("/") or "/", volumes[m["name"]] / m.get(
            "subPath", "")) for m in container.get("volumeMounts") or [] if m["name"] in volumes),
                        key=lambda pair: -len(pair[0]))
        mounts = [self._termination_file(container, crun, run), *mounts]
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if not container.get("command"):
            crun.runnable = False
            crun.state = {"waiting": {"reason": "CreateContainerError",
                                      "message": "the local kubelet runs only containers with "
                                                 "an explicit command (images are not used)"}}
            return
        try:
            env = self._process_env(pod, container, run, mounts)
        except LookupError as exc:
            crun.state = {"waiting": {"reason": "CreateContainerConfigError",
                                      "message": str(exc)}}
            return
        argv = [_rewrite(_expand(str(a), env), mounts) for a in command]
        if crun.log_path.exists() and crun.log_path.stat().st_size and crun.restarts:
            crun.log_path.replace(crun.log_path.with_name(f"{crun.name}.previous.log"))
        cwd = container.get("workingDir")
        workdir = Path(_rewrite(cwd, mounts)) if cwd else run.directory
        if not workdir.exists():
            workdir = run.directory
        with crun.log_path.open("ab") as handle:
            try:
                crun.proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=handle,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True,
                                             preexec_fn=DIE_WITH_PARENT)
            except OSError as exc:
                handle.write(f"failed to start {argv[0]}: {exc}\n".encode())
                crun.proc = None
                crun.state = {"terminated": {"exitCode": 128, "reason": "StartError",
                                             "message": str(exc), "startedAt": meta.now(),
                                             "finishedAt": meta.now()}}
                return
        crun.started_at = meta.now()
        crun.state = {"running": {"startedAt": crun.started_at}}
        crun.ready = "readinessProbe" not in container
        crun.started = "startupProbe" not in container
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in container:
                self._spawn(self._probe(run, crun, crun.proc, container, kind, env, workdir))

    @staticmethod
    def _termination_file(container: Obj, crun: ContainerRun, run: PodRun) -> tuple[str, Path]:
        """A fresh host file for the container's terminationMessagePath (a real kubelet
        mounts one), as a (path, host file) pair for the rewriting of paths."""
        path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
        crun.termination_file = run.directory / f"{crun.name}.termination-log"
        crun.termination_file.write_bytes(b"")
        crun.message_policy = container.get("terminationMessagePolicy") or "File"
        return path, crun.termination_file

    async def _probe(self, run: PodRun, crun: ContainerRun, proc: subprocess.Popen[bytes],
                     container: Obj, kind: str, env: dict[str, str], cwd: Path) -> None:
        """Run one probe of one container instance until that instance ends."""
        probe = container[kind]
        period = float(probe.get("periodSeconds", 10))
        need_ok = int(probe.get("successThreshold", 1))
        need_fail = int(probe.get("failureThreshold", 3))
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        successes = failures = 0
        while crun.proc is proc and proc.poll() is None and not run.terminating:
            if kind != "startupProbe" and not crun.started:
                await asyncio.sleep(POLL_S)
                continue
            ok = await probes.check(probe, container, run.ip, env, cwd)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if crun.proc is not proc or run.terminating:
                return
            if kind == "readinessProbe":
                verdict = crun.ready
                if ok and successes >= need_ok:
                    verdict = True
                elif not ok and failures >= need_fail:
                    verdict = False
                if verdict != crun.ready:
                    crun.ready = verdict
                    self._write_status(run)
            elif kind == "startupProbe" and ok:
                crun.started = True
                self._write_status(run)
                return
            elif not ok and failures >= need_fail:
                pod = self.api.store.get(("", "pods"), run.namespace, run.name)
                if pod is not None:
                    what = "Liveness" if kind == "livenessProbe" else "Startup"
                    record_event(self.api, pod, "Warning", "Unhealthy",
                                 f"{what} probe failed; container {crun.name} will be "
                                 "restarted", "kubelet", run.node)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return
            await asyncio.sleep(period)

    # ---- status -----------------------------------------------------------------------
    def _write_status(self, run: PodRun) -> None:
        rt = self.api.registry.by_key(("", "pods"))
        assert rt is not None

        def change(pod: Obj) -> None:
            status = pod.setdefault("status", {})
            statuses = []
            containers = (pod.get("spec") or {}).get("containers") or []
            for container in containers:
                crun = run.containers[container["name"]]
                entry: Obj = {
                    "name": crun.name, "state": copy.deepcopy(crun.state),
                    "lastState": copy.deepcopy(crun.last_state),
                    "ready": "running" in crun.state and crun.ready,
                    "restartCount": crun.restarts,
                    "image": container.get("image", ""), "imageID": "",
                    "started": "running" in crun.state and crun.started,
                }
                if crun.proc is not None:
                    entry["containerID"] = f"local://{crun.proc.pid}"
                statuses.append(entry)
            status["containerStatuses"] = statuses
            runnable = [s for s, c in zip(statuses, containers, strict=True)
                        if run.containers[c["name"]].runnable]
            all_ready = bool(runnable) and all(s["ready"] for s in runnable)
            terminated = [s for s in runnable if "terminated" in s["state"]]
            policy = pod["spec"].get("restartPolicy", "Always")
            if runnable and len(terminated) == len(runnable) and (
                    policy == "Never" or (policy == "OnFailure" and all(
                        s["state"]["terminated"]["exitCode"] == 0 for s in terminated))):
                failed = any(s["state"]["terminated"]["exitCode"] != 0 for s in terminated)
                status["phase"] = "Failed" if failed else "Succeeded"
            elif any("running" in s["state"] for s in statuses) or any(
                    s["restartCount"] for s in statuses):
                status["phase"] = "Running"
            status["podIP"] = run.ip
            status["podIPs"] = [{"ip": run.ip}]
            host = self.node_ips.get(run.node, "127.0.0.1")
            status["hostIP"] = host
            status["hostIPs"] = [{"ip": host}]
            status.setdefault("startTime", meta.now())
            set_condition(status, "PodReadyToStartContainers", "True")
            set_condition(status, "Initialized", "True")
            reason = "" if all_ready else (
                "PodCompleted" if status.get("phase") in ("Succeeded", "Failed")
                else "ContainersNotReady")
            set_condition(status, "Ready", "True" if all_ready else "False", reason)
            set_condition(status, "ContainersReady", "True" if all_ready else "False", reason)
            set_condition(status, "PodScheduled", "True")

        self.api.mutate(rt, run.namespace, run.name, change)

    # ---- stopping ---------------------------------------------------------------------
    @staticmethod
    def _signal(run: PodRun, sig: int) -> None:
        for crun in run.containers.values():
            if crun.running and crun.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(crun.proc.pid, sig)

    async def _terminate(self, run: PodRun, grace: float) -> None:
        pod = self.api.store.get(("", "pods"), run.namespace, run.name)
        if pod is not None:
            record_event(self.api, pod, "Normal", "Killing",
                         f"Stopping container {next(iter(run.containers))}", "kubelet", run.node)
        self._signal(run, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(c.running for c in run.containers.values()) and loop.time() < deadline:
            await asyncio.sleep(POLL_S)
        self._signal(run, signal.SIGKILL)
        while any(c.running for c in run.containers.values()):
            await asyncio.sleep(POLL_S / 2)
        self._mark_terminated(run)
        run.done = True
        if run.task is not None:
            run.task.cancel()
        rt = self.api.registry.by_key(("", "pods"))
        assert rt is not None
        self.api.force_remove(rt, run.namespace, run.name)
        self.pods.pop(run.uid, None)

    def _mark_terminated(self, run: PodRun) -> None:
        for crun in run.containers.values():
            if crun.proc is not None and "running" in crun.state:
                code = crun.proc.returncode if crun.proc.returncode is not None else 137
                exit_code = code if code >= 0 else 128 - code
                crun.state = terminated_state(crun, exit_code,
                                              reason="Error" if exit_code else "Completed",
                                              startedAt=crun.started_at, finishedAt=meta.now())
        with contextlib.suppress(Exception):
            self._write_status(run)

    async def _kill_now(self, run: PodRun) -> None:
        run.terminating = True
        self._signal(run, signal.SIGKILL)
        while any(c.running for c in run.containers.values()):
            await asyncio.sleep(POLL_S / 2)
        run.done = True
        if run.task is not None:
            run.task.cancel()
        self.pods.pop(run.uid, None)

    def kill_node(self, node: str) -> list[str]:
        """SIGKILL every pod process on `node` and remove the pods (a node failure)."""
        rt = self.api.registry.by_key(("", "pods"))
        assert rt is not None
        names = []
        for pod in list(self.api.store.items(("", "pods"))):
            if (pod.get("spec") or {}).get("nodeName") != node:
                continue
            md = pod["metadata"]
            run = self.pods.pop(md["uid"], None)
            if run is not None:
                run.terminating = run.done = True
                self._signal(run, signal.SIGKILL)
                if run.task is not None:
                    run.task.cancel()
            names.append(f"{md['namespace']}/{md['name']}")
            self.api.force_remove(rt, md["namespace"], md["name"])  # finalizers may keep it
        return names

    async def shutdown(self, grace: float = 3.0) -> None:
        runs = list(self.pods.values())
        for run in runs:
            run.terminating = True
            self._signal(run, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(c.running for r in runs for c in r.containers.values()) and \
                loop.time() < deadline:
            await asyncio.sleep(POLL_S)
        for run in runs:
            self._signal(run, signal.SIGKILL)
            if run.task is not None:
                run.task.cancel()
        for run in runs:
            for crun in run.containers.values():
                if crun.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        crun.proc.wait(timeout=2)
        for task in list(self._tasks):
            task.cancel()

    def kill_all_sync(self) -> None:
        """Last resort at interpreter exit: SIGKILL whatever still runs."""
        for run in list(self.pods.values()):
            self._signal(run, signal.SIGKILL)


def _rewrite(value: str, mounts: list[tuple[str, Path]]) -> str:
    """Map a path under a volumeMount's mountPath to the volume's host directory."""
    for mount_path, host in mounts:
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(host) + value[len(mount_path):]
        if mount_path == "/" and value.startswith("/"):
            return str(host) + value
    return value

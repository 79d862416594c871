"""`LocalCluster`: the API server, scheduler, kubelet and controllers on one event loop in
a background thread, with simulated GPU nodes and a kubeconfig for real clients."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from . import meta
from .api import Api
from .controllers import Controllers
from .kubelet import IpAllocator, Kubelet
from .resources import Registry
from .scheduler import Scheduler
from .server import Server
from .store import Store

log = logging.getLogger("localcluster")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class LocalCluster:
    """A small Kubernetes for tests: `with LocalCluster(nodes=2) as cluster: ...`.

    `emulated_gpu_seconds_per_sample` > 0 makes the simulated GPUs emulate accelerator time:
    every container given an nvidia.com/gpu gets OPTIMUS_EMULATED_ACCELERATOR_SECONDS_PER_SAMPLE
    (as a device plugin injects its devices), so its workers wait that long per training
    sample (optimus_worker.emulation). 0, the default, leaves pods as they are.
    """

    def __init__(self, nodes: int = 2, gpus_per_node: int = 4, cpus_per_node: int = 8,
                 memory_per_node: str = "32Gi", workdir: str | Path | None = None,
                 port: int = 0, *, host: str = "127.0.0.1", watch_history: int = 5000,
                 restart_backoff: tuple[float, float] = (1.0, 10.0),
                 emulated_gpu_seconds_per_sample: float = 0.0) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        if not emulated_gpu_seconds_per_sample >= 0:
            raise ValueError("emulated_gpu_seconds_per_sample must be >= 0 (0: no emulation)")
        self.emulated_gpu_seconds_per_sample = emulated_gpu_seconds_per_sample
        self.nodes = nodes
        self.gpus_per_node = gpus_per_node
        self.cpus_per_node = cpus_per_node
        self.memory_per_node = memory_per_node
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="localcluster-"))
        self.host = host
        self.requested_port = port
        self.watch_history = watch_history
        self.restart_backoff = restart_backoff
        self.port = 0
        self.kubeconfig = self.workdir / "kubeconfig"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.api: Api | None = None
        self.server: Server | None = None
        self.kubelet: Kubelet | None = None

    # ---- public API -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def node_names(self) -> list[str]:
        return [f"node-{i}" for i in range(self.nodes)]

    def start(self) -> LocalCluster:
        if self._thread is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="localcluster", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the local cluster did not start within 30 s")
        if self._error is not None:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError(f"the local cluster failed to start: {self._error}") from self._error
        atexit.register(self._atexit)
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(60)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(30)
        self._thread = None
        with contextlib.suppress(ValueError):
            atexit.unregister(self._atexit)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> LocalCluster:
        await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def pod_pid(self, namespace: str, name: str) -> int | None:
        """The pid of the pod's main (first running container's) process, if running."""
        return self._call(lambda: self._kubelet().pid(namespace, name))

    def pod_log_path(self, namespace: str, name: str, container: str | None = None) -> Path:
        def find() -> Path:
            kubelet = self._kubelet()
            chosen = container
            if chosen is None:
                assert self.api is not None
                pod = self.api.store.peek(("", "pods"), namespace, name)
                containers = ((pod or {}).get("spec") or {}).get("containers") or [{}]
                chosen = containers[0].get("name", "main")
            return kubelet.log_path(namespace, name, chosen or "main", False)
        return self._call(find)

    def kill_node_pods(self, node: str) -> list[str]:
        """SIGKILL every pod process on `node` and delete those pods (a node failure)."""
        return self._call(lambda: self._kubelet().kill_node(node))

    def call(self, fn: Any) -> Any:
        """Run `fn()` on the cluster's event loop thread (for direct store access)."""
        return self._call(fn)

    # ---- internals --------------------------------------------------------------------
    def _kubelet(self) -> Kubelet:
        if self.kubelet is None:
            raise RuntimeError("the local cluster is not running")
        return self.kubelet

    def _call(self, fn: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("the local cluster is not running")
        if threading.current_thread() is self._thread:
            return fn()

        async def wrapper() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(30)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._astart())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            self._loop = None
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            self._loop = None

    async def _astart(self) -> None:
        store = Store(self.watch_history)
        registry = Registry()
        api = Api(store, registry)
        self.api = api
        server = Server(api)
        self.server = server
        runner = web.AppRunner(server.app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port)
        await site.start()
        self._runner = runner
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.requested_port
        server.address = f"{self.host}:{self.port}"
        ips = IpAllocator()
        node_ips = {name: ips.node_ip(i) for i, name in enumerate(self.node_names)}
        kubelet = Kubelet(api, self.workdir, node_ips, self.url, ips, self.restart_backoff)
        self.kubelet = kubelet
        server.logs = kubelet
        self._bootstrap(api, node_ips)
        self._write_kubeconfig()
        loop = asyncio.get_running_loop()
        scheduler = Scheduler(
            api, emulated_gpu_seconds_per_sample=self.emulated_gpu_seconds_per_sample)
        for runnable in (scheduler.run(), kubelet.run(), Controllers(api).run()):
            self._tasks.append(loop.create_task(runnable))

    def _bootstrap(self, api: Api, node_ips: dict[str, str]) -> None:
        ns_rt = api.registry.by_key(("", "namespaces"))
        node_rt = api.registry.by_key(("", "nodes"))
        assert ns_rt is not None and node_rt is not None
        for namespace in SYSTEM_NAMESPACES:
            api.create(ns_rt, "v1", "", {"metadata": {"name": namespace}})
        resources = {"cpu": str(self.cpus_per_node), "memory": self.memory_per_node,
                     "pods": "110", "ephemeral-storage": "100Gi",
                     "nvidia.com/gpu": str(self.gpus_per_node)}
        now = meta.now()
        for name, ip in node_ips.items():
            node = api.create(node_rt, "v1", "", {
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "local-gpu",
                    "nvidia.com/gpu.count": str(self.gpus_per_node)}},
                "spec": {"podCIDR": f"{ip.rsplit('.', 2)[0]}.0.0/16"},
            })
            node["status"] = {
                "capacity": dict(resources), "allocatable": dict(resources),
                "conditions": [
                    {"type": kind, "status": value, "reason": reason,
                     "lastHeartbeatTime": now, "lastTransitionTime": now, "message": reason}
                    for kind, value, reason in (
                        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                        ("PIDPressure", "False", "KubeletHasSufficientPID"),
                        ("Ready", "True", "KubeletReady"))],
                "addresses": [{"type": "InternalIP", "address": ip},
                              {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": "v1.37.0-localcluster", "operatingSystem": "linux",
                             "architecture": "amd64", "containerRuntimeVersion": "local://process",
                             "kernelVersion": "", "osImage": "localcluster", "machineID": name,
                             "systemUUID": name, "bootID": name, "kubeProxyVersion": ""},
            }
            api.update(node_rt, "v1", "", name, node, "status")

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "localcluster", "cluster": {"server": self.url}}],
            "users": [{"name": "localcluster", "user": {}}],
            "contexts": [{"name": "localcluster", "context": {
                "cluster": "localcluster", "user": "localcluster", "namespace": "default"}}],
            "current-context": "localcluster",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))

    async def _astop(self) -> None:
        if self.server is not None:
            self.server.close_watches()
        if self.kubelet is not None:
            await self.kubelet.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _atexit(self) -> None:
        if self.kubelet is not None:
            self.kubelet.kill_all_sync()

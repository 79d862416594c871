"""The whole loop as one context manager: cluster, CRD, Prometheus and the operator.

Used by the demo and by the e2e scenarios' fixtures. Everything started here is stopped on
exit, in reverse order, even when starting a later part failed: the operator is a
subprocess in its own process group (e2e.demo.procs), the local cluster and Prometheus are
their own context managers. With `kubeconfig` set (E2E_KUBECONFIG, a real cluster) no local
cluster is started and the operator runs against that cluster instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from optimus_worker.net import free_port

from e2e.demo.kubectl import Kubectl
from e2e.demo.procs import ManagedProcess, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "manifests" / "crd" / "trainingjobs.optimus.dev.yaml"
CRD_NAME = "trainingjobs.optimus.dev"


@dataclass(frozen=True)
class OperatorSettings:
    """The operator's configuration, as the environment variables `python -m optimus.kube`
    reads (notes/trainingjob.md); the Helm chart's values map onto the same fields."""

    interval_seconds: float = 10.0
    restart_cost_seconds: float = 5.0
    policy: str = "optimus"
    namespaces: tuple[str, ...] = ()
    peering: str = ""  # standalone: one operator, no peering objects needed
    #: measure a generation's speed after this warm-up, over at least this span (seconds)
    speed_warmup_seconds: float = 5.0
    speed_span_seconds: float = 8.0
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def env(self, *, kubeconfig: Path, prometheus_url: str, metrics_port: int,
            health_port: int) -> dict[str, str]:
        return {
            "KUBECONFIG": str(kubeconfig),
            "OPTIMUS_PROMETHEUS_URL": prometheus_url,
            "OPTIMUS_INTERVAL_SECONDS": _plain_number(self.interval_seconds),
            "OPTIMUS_RESTART_COST_SECONDS": _plain_number(self.restart_cost_seconds),
            "OPTIMUS_POLICY": self.policy,
            "OPTIMUS_NAMESPACES": ",".join(self.namespaces),
            "OPTIMUS_METRICS_PORT": str(metrics_port),
            "OPTIMUS_HEALTH_PORT": str(health_port),
            "OPTIMUS_PEERING": self.peering,
            "OPTIMUS_SPEED_WARMUP_SECONDS": _plain_number(self.speed_warmup_seconds),
            "OPTIMUS_SPEED_SPAN_SECONDS": _plain_number(self.speed_span_seconds),
            "OPTIMUS_BIND_ADDRESS": "127.0.0.1",  # loopback only
            **self.extra_env,
        }


def _plain_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class StackConfig:
    workdir: Path
    nodes: int = 2
    gpus_per_node: int = 4
    cpus_per_node: int = 8
    memory_per_node: str = "32Gi"
    namespace: str = "default"
    scrape_interval: str = "1s"
    operator: OperatorSettings = field(default_factory=OperatorSettings)
    kubeconfig: Path | None = None  # a real cluster's kubeconfig: start no local cluster
    start_timeout: float = 120.0
    install_crd: bool = True  # False when something else installs it (helm's crds/)
    run_operator: bool = True  # False: the caller starts it (start_operator) when ready
    # > 0: the local cluster's GPUs emulate this much accelerator time per training sample
    # in the workers that hold one (optimus_worker.emulation); 0: pods run as they are
    emulated_gpu_seconds_per_sample: float = 0.0


def python_env() -> dict[str, str]:
    """This process's environment with this Python's bin directory first on PATH, so that a
    pod command `python -m optimus_worker` run by the local kubelet finds the venv's python,
    and with single-threaded BLAS (the demo shares a couple of cores among many pods)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bindir:
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    return env


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when `url` answers 2xx; False when it refuses, times out or errs."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return bool(200 <= answer.status < 300)
    except OSError:
        return False


class OperatorProcess:
    """The operator from the local checkout (`python -m optimus.kube`) as a subprocess."""

    def __init__(self, settings: OperatorSettings, *, kubeconfig: Path, prometheus_url: str,
                 log_path: Path, metrics_port: int | None = None,
                 health_port: int | None = None) -> None:
        self.settings = settings
        self.kubeconfig = kubeconfig
        self.prometheus_url = prometheus_url
        self.metrics_port = metrics_port or free_port()
        self.health_port = health_port or free_port()
        env = python_env()
        env.update(settings.env(kubeconfig=kubeconfig, prometheus_url=prometheus_url,
                                metrics_port=self.metrics_port, health_port=self.health_port))
        self.process = ManagedProcess("operator", [sys.executable, "-m", "optimus.kube"],
                                      log_path, env=env, cwd=REPO_ROOT)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    def start(self, timeout: float = 90.0) -> None:
        self.process.start()

        def healthy() -> bool:
            if not self.process.running:
                raise RuntimeError(f"the operator exited ({self.process.returncode}):\n"
                                   f"{self.process.log_tail()}")
            return http_ok(self.health_url) or http_ok(self.metrics_url)

        try:
            wait_for("the operator's health endpoint", healthy, timeout)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.process.log_tail()}") from error

    def kill(self) -> None:
        """kill -9 the operator (a crash)."""
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()

    def restart(self, timeout: float = 90.0) -> None:
        self.process.stop()
        self.start(timeout)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as answer:
            return str(answer.read().decode())


class Stack:
    """Cluster + CRD + Prometheus + operator; `with Stack(config) as stack: ...`."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.workdir = config.workdir
        self._exit = contextlib.ExitStack()
        self.cluster: Any = None  # e2e.localcluster.LocalCluster, when local
        self.prometheus: Any = None  # e2e.prometheus.LocalPrometheus
        self.operator: OperatorProcess | None = None
        self.kubeconfig: Path = Path()
        self.kubectl: Kubectl = Kubectl(Path())
        self.timings: dict[str, float] = {}

    # -- the parts, each also usable on its own ------------------------------------------
    def start_cluster(self) -> None:
        if self.config.kubeconfig is not None:
            self.kubeconfig = self.config.kubeconfig
        else:
            from e2e.localcluster import LocalCluster

            os.environ.update(python_env())  # the in-process kubelet starts pods with it
            cluster = LocalCluster(nodes=self.config.nodes,
                                   gpus_per_node=self.config.gpus_per_node,
                                   cpus_per_node=self.config.cpus_per_node,
                                   memory_per_node=self.config.memory_per_node,
                                   workdir=self.workdir / "cluster",
                                   emulated_gpu_seconds_per_sample=(
                                       self.config.emulated_gpu_seconds_per_sample))
            self.cluster = self._exit.enter_context(cluster)
            self.kubeconfig = Path(cluster.kubeconfig)
        self.kubectl = Kubectl(self.kubeconfig, namespace=self.config.namespace)

    def install_crd(self) -> None:
        self.kubectl.apply(CRD_PATH)
        self.kubectl.run("wait", "--for=condition=Established", f"crd/{CRD_NAME}",
                         "--timeout=60s", namespaced=False)

    def start_prometheus(self, extra_targets: list[str]) -> None:
        from e2e.prometheus import LocalPrometheus

        prometheus = LocalPrometheus(self.kubeconfig, self.workdir / "prometheus",
                                     extra_targets=extra_targets,
                                     scrape_interval=self.config.scrape_interval)
        self.prometheus = self._exit.enter_context(prometheus)
        self.prometheus.wait_ready(self.config.start_timeout)

    def start_operator(self, settings: OperatorSettings | None = None) -> OperatorProcess:
        assert self.prometheus is not None, "start Prometheus before the operator"
        operator = OperatorProcess(settings or self.config.operator,
                                   kubeconfig=self.kubeconfig,
                                   prometheus_url=str(self.prometheus.url),
                                   log_path=self.workdir / "operator.log",
                                   metrics_port=self._operator_metrics_port)
        self._exit.callback(operator.stop)
        operator.start(self.config.start_timeout)
        self.operator = operator
        return operator

    # -- the whole ---------------------------------------------------------------------
    def __enter__(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._operator_metrics_port = free_port()
        try:
            steps: list[tuple[str, Callable[[], object]]] = [
                ("cluster", self.start_cluster),
                ("crd", self.install_crd),
                ("prometheus",
                 lambda: self.start_prometheus([f"127.0.0.1:{self._operator_metrics_port}"])),
                ("operator", self.start_operator),
            ]
            skipped = {"crd": not self.config.install_crd,
                       "operator": not self.config.run_operator}
            for name, step in steps:
                if skipped.get(name):
                    continue
                began = time.monotonic()
                step()
                self.timings[name] = time.monotonic() - began
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._exit.close()

    def close(self) -> None:
        self._exit.close()

"""A real Prometheus server for e2e runs, scraping the local cluster's pods.

The operator's observe step (optimus.metrics) reads workers' metrics through PromQL, so the
e2e runs and the demo need a Prometheus that finds pods the way a cluster's Prometheus
would. `LocalPrometheus` runs the `prometheus` binary on 127.0.0.1 with two scrape jobs:

- `optimus-pods`: a file_sd target file that a background thread rewrites about every
  second from the cluster's pods (kubernetes client, the given kubeconfig): every running
  pod's container port named `metrics` becomes `podIP:port`, labelled `pod` and
  `kubernetes_namespace` (the same target labels as the chart's PodMonitor produces);
- `optimus-operator`: `extra_targets` (e.g. the operator's own metrics endpoint).

Both keep the scraped series' own labels (`honor_labels: true`): the workers' `job` label
(the TrainingJob) must win over Prometheus's scrape-job label. The TSDB lives under
`workdir/data` with a bounded retention; `stop()` then `start()` keeps it, for fault tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from optimus_worker.net import free_port

from e2e.demo.procs import ManagedProcess, wait_for

log = logging.getLogger(__name__)

PROMETHEUS_BINARY = "prometheus"
POD_SCRAPE_JOB = "optimus-pods"
# The chart's ServiceMonitor labels the operator's scrape job so; extra targets are usually the
# operator's endpoint, so the OptimusOperatorDown alert and the dashboards' `up` panel match.
STATIC_SCRAPE_JOB = "optimus-operator"
METRICS_PORT_NAME = "metrics"  # optimus_worker.contract.METRICS_PORT_NAME, the PodMonitor's port
RETENTION_TIME = "2h"  # bounded: an e2e run is minutes long
RETENTION_SIZE = "512MB"
REFRESH_SECONDS = 1.0  # how often the pod targets file is rebuilt


def pod_targets(pods: Sequence[Any]) -> list[dict[str, Any]]:
    """file_sd target groups for `pods` (kubernetes client V1Pod objects), sorted, stable.

    Only running pods with an IP count; every container port named `metrics` is one target.
    """
    groups: list[dict[str, Any]] = []
    for pod in pods:
        status, spec, meta = pod.status, pod.spec, pod.metadata
        if status is None or spec is None or meta is None:
            continue
        if status.phase != "Running" or not status.pod_ip:
            continue
        for container in spec.containers or ():
            for port in container.ports or ():
                if port.name != METRICS_PORT_NAME:
                    continue
                groups.append({
                    "targets": [f"{status.pod_ip}:{port.container_port}"],
                    "labels": {"pod": meta.name, "kubernetes_namespace": meta.namespace},
                })
    return sorted(groups, key=lambda group: (group["labels"]["kubernetes_namespace"],
                                             group["labels"]["pod"], group["targets"][0]))


def scrape_config(*, pods_file: Path, extra_targets: Sequence[str],
                  scrape_interval: str) -> dict[str, Any]:
    """The prometheus.yml for one LocalPrometheus (a pure function of its settings)."""
    jobs: list[dict[str, Any]] = [{
        "job_name": POD_SCRAPE_JOB,
        "honor_labels": True,
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_interval,
        "file_sd_configs": [{"files": [str(pods_file)], "refresh_interval": "1s"}],
    }]
    if extra_targets:
        jobs.append({
            "job_name": STATIC_SCRAPE_JOB,
            "honor_labels": True,
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "static_configs": [{"targets": list(extra_targets)}],
        })
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": jobs,
    }


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one rename, so Prometheus never reads a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class LocalPrometheus:
    """`with LocalPrometheus(kubeconfig, workdir) as prom: prom.wait_ready(30); prom.url`."""

    def __init__(self, kubeconfig: str | Path | None, workdir: Path, *,
                 extra_targets: Sequence[str] = (), scrape_interval: str = "1s",
                 port: int = 0) -> None:
        self.kubeconfig = Path(kubeconfig) if kubeconfig is not None else None
        self.workdir = Path(workdir)
        self.extra_targets = tuple(extra_targets)
        self.scrape_interval = scrape_interval
        # A port chosen once: the URL stays the same over stop() and start().
        self.port = port or free_port()
        self.config_path = self.workdir / "prometheus.yml"
        self.pods_file = self.workdir / "targets" / "pods.json"
        self.data_dir = self.workdir / "data"
        self._process = ManagedProcess(
            "prometheus",
            [PROMETHEUS_BINARY,
             f"--config.file={self.config_path}",
             f"--storage.tsdb.path={self.data_dir}",
             f"--storage.tsdb.retention.time={RETENTION_TIME}",
             f"--storage.tsdb.retention.size={RETENTION_SIZE}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.level=warn"],
            self.workdir / "prometheus.log",
        )
        self._stop_refresh = threading.Event()
        self._refresher: threading.Thread | None = None
        self.last_refresh_error: BaseException | None = None
        self._core: Any = None  # kubernetes.client.CoreV1Api, made on the first refresh

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process.running

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalPrometheus:
        if self._process.running:
            raise RuntimeError(f"Prometheus is already running at {self.url}")
        self.pods_file.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = scrape_config(pods_file=self.pods_file, extra_targets=self.extra_targets,
                               scrape_interval=self.scrape_interval)
        _write_atomically(self.config_path, yaml.safe_dump(config, sort_keys=False))
        if not self.pods_file.exists():
            _write_atomically(self.pods_file, "[]\n")
        if self.kubeconfig is not None:
            try:  # the first scrape already sees the pods running now
                self.refresh_targets()
            except Exception as error:  # an API server still starting: the thread retries
                log.warning("listing pods for Prometheus targets failed: %s", error)
                self.last_refresh_error = error
            self._stop_refresh.clear()
            self._refresher = threading.Thread(target=self._refresh_loop,
                                               name="prometheus-targets", daemon=True)
            self._refresher.start()
        self._process.start()
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM: the TSDB is flushed); the data directory stays."""
        self._stop_refresh.set()
        if self._refresher is not None:
            self._refresher.join(timeout=10)
            self._refresher = None
        self._process.stop(grace=15)

    def wait_ready(self, timeout: float) -> None:
        """Block until /-/ready answers 200; raise TimeoutError (with the log tail) if not."""
        def ready() -> bool:
            if not self._process.running:
                raise RuntimeError(f"prometheus exited ({self._process.returncode}):\n"
                                   f"{self._process.log_tail()}")
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)

        try:
            wait_for(f"Prometheus at {self.url} to be ready", ready, timeout, interval=0.2)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; log:\n{self._process.log_tail()}") from error

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- targets ---------------------------------------------------------------------------
    def refresh_targets(self) -> list[dict[str, Any]]:
        """Rebuild the pod targets file from the cluster now; returns the target groups."""
        assert self.kubeconfig is not None
        from kubernetes import client, config

        if self._core is None:
            self._core = client.CoreV1Api(
                config.new_client_from_config(config_file=str(self.kubeconfig)))
        try:
            pods = self._core.list_pod_for_all_namespaces(_request_timeout=5).items
        except Exception:
            self._core = None  # a fresh client next time (the API server may have restarted)
            raise
        groups = pod_targets(pods)
        text = json.dumps(groups, indent=1, sort_keys=True) + "\n"
        with contextlib.suppress(FileNotFoundError):
            if self.pods_file.read_text() == text:
                return groups  # unchanged: leave the file (and Prometheus) alone
        _write_atomically(self.pods_file, text)
        return groups

    def _refresh_loop(self) -> None:
        while not self._stop_refresh.wait(REFRESH_SECONDS):
            try:
                self.refresh_targets()
                self.last_refresh_error = None
            except Exception as error:  # the API server may be restarting: keep the old file
                if self.last_refresh_error is None:
                    log.warning("refreshing Prometheus pod targets failed: %s", error)
                self.last_refresh_error = error

    # ---- queries (for tests) ---------------------------------------------------------------
    def query(self, promql: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Run an instant query; returns `data.result`; raises ValueError on a PromQL error."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
            raise ValueError(f"{promql!r}: {body.get('errorType')}: {body.get('error')}") from None
        if body.get("status") != "success":
            raise ValueError(f"{promql!r}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def active_targets(self) -> list[dict[str, Any]]:
        """The scrape targets Prometheus currently knows (`/api/v1/targets`, active)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets?state=active",
                                    timeout=10) as response:
            return list(json.load(response)["data"]["activeTargets"])

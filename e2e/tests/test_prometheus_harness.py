"""LocalPrometheus (e2e.prometheus): a real server scraping a prometheus_client endpoint.

Without a cluster (kubeconfig=None) only `extra_targets` are scraped; the pod-discovery half
is covered by `pod_targets` on kubernetes client objects here and, with the local cluster,
by e2e/tests/test_dashboards_promql.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from optimus_worker.net import free_port
from prometheus_client import CollectorRegistry, Counter, start_http_server

from e2e.demo.procs import wait_for
from e2e.prometheus import POD_SCRAPE_JOB, LocalPrometheus, pod_targets, scrape_config

pytestmark = pytest.mark.e2e

needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="the prometheus binary is absent (make tools)")


def _pod(name: str, phase: str, ip: str | None, ports: list[tuple[str, int]]) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, namespace="ns"),
        spec=client.V1PodSpec(containers=[client.V1Container(
            name="c", ports=[client.V1ContainerPort(name=n, container_port=p)
                             for n, p in ports])]),
        status=client.V1PodStatus(phase=phase, pod_ip=ip),
    )


def test_pod_targets_keep_running_pods_metrics_ports_only() -> None:
    pods = [
        _pod("b", "Running", "127.0.0.3", [("metrics", 9400), ("control", 9401)]),
        _pod("a", "Running", "127.0.0.2", [("metrics", 9400)]),
        _pod("pending", "Pending", None, [("metrics", 9400)]),
        _pod("no-ip", "Running", None, [("metrics", 9400)]),
        _pod("no-metrics", "Running", "127.0.0.4", [("http", 80)]),
    ]
    assert pod_targets(pods) == [
        {"targets": ["127.0.0.2:9400"], "labels": {"pod": "a", "kubernetes_namespace": "ns"}},
        {"targets": ["127.0.0.3:9400"], "labels": {"pod": "b", "kubernetes_namespace": "ns"}},
    ]


def test_scrape_config_honors_labels_and_lists_extra_targets(tmp_path: Path) -> None:
    config = scrape_config(pods_file=tmp_path / "p.json", extra_targets=["127.0.0.1:9500"],
                           scrape_interval="1s")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert all(job["honor_labels"] for job in jobs.values())
    assert jobs[POD_SCRAPE_JOB]["file_sd_configs"][0]["files"] == [str(tmp_path / "p.json")]
    assert any(job.get("static_configs") == [{"targets": ["127.0.0.1:9500"]}]
               for job in jobs.values())
    yaml.safe_dump(config)  # serialisable as written to prometheus.yml


@pytest.fixture()
def exporter() -> Iterator[tuple[str, Counter]]:
    registry = CollectorRegistry()
    counter = Counter("optimus_harness_probe", "a probe counter", ["job"], registry=registry)
    counter.labels(job="my-training-job").inc(3)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}", counter
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _probe_value(prom: LocalPrometheus) -> float | None:
    result = prom.query('optimus_harness_probe_total{job="my-training-job"}')
    return float(result[0]["value"][1]) if result else None


@needs_prometheus
def test_scrapes_extra_targets_keeps_their_job_label_and_data_over_restart(
        tmp_path: Path, exporter: tuple[str, Counter]) -> None:
    target, counter = exporter
    prom = LocalPrometheus(None, tmp_path / "prom", extra_targets=[target])
    with prom:
        assert prom.url == f"http://127.0.0.1:{prom.port}"
        prom.wait_ready(30)
        # honor_labels: the series keeps the exporter's job label, not the scrape job's.
        assert wait_for("the probe series", lambda: _probe_value(prom) == 3.0, 30)
        with pytest.raises(ValueError, match="parse error"):
            prom.query("rate(")
    assert not prom.running
    counter.labels(job="my-training-job").inc(2)
    with prom:  # stop + start: same URL, same TSDB
        prom.wait_ready(30)
        assert wait_for("the updated probe", lambda: _probe_value(prom) == 5.0, 30)
        history = prom.query('count_over_time(optimus_harness_probe_total[10m])')
        # the samples from the first run survived the restart, next to the new ones
        assert history and float(history[0]["value"][1]) >= 2
        assert prom.query('max_over_time(optimus_harness_probe_total[10m]) - '
                          'min_over_time(optimus_harness_probe_total[10m])')[0]["value"][1] == "2"


@needs_prometheus
def test_starts_while_the_cluster_is_unreachable(tmp_path: Path) -> None:
    """A kubeconfig whose API server is down: Prometheus still starts, with no pod targets,
    and the refresher keeps the error for the caller to see."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "down",
        "clusters": [{"name": "down", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "down", "context": {"cluster": "down", "user": "u"}}],
    }))
    with LocalPrometheus(kubeconfig, tmp_path / "prom") as prom:
        prom.wait_ready(30)
        assert prom.last_refresh_error is not None
        assert prom.pods_file.read_text() == "[]\n"
        assert all(target["labels"]["job"] != POD_SCRAPE_JOB
                   for target in prom.active_targets())

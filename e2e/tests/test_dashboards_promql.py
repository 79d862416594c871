"""Every Grafana panel's PromQL runs against a live Prometheus and returns series.

The local cluster runs one real training pod (`python -m optimus_worker`, the `mlp` task,
the pod environment of optimus_worker.contract, a container port named `metrics`);
LocalPrometheus finds it through the cluster's pod list. The operator's series come from
the operator's own exporter (optimus.metrics.exporter.OperatorMetrics) served on loopback
and scraped as the static `optimus-operator` job; its gauges are set here to the values
a round for this job would publish (this test checks the dashboards' queries, not the
scheduler). Each query is sent the way Grafana sends it: `$namespace`, `$job` and
`$__rate_interval` substituted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from optimus.metrics.exporter import ROUND_STEPS, JobGauges, OperatorMetrics
from optimus_worker import contract
from optimus_worker.net import free_port

from e2e.dashboards import invalid_queries, panels_without_series, variables_missing
from e2e.demo.procs import wait_for
from e2e.localcluster import LocalCluster
from e2e.localcluster.testing import api_client
from e2e.prometheus import LocalPrometheus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

NAMESPACE = "default"
JOB = "dash-mlp"
RATE_INTERVAL = "30s"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval


def worker_pod(checkpoints: Path) -> dict[str, Any]:
    """One all-reduce worker (world size 1): a whole job in one pod."""
    env = contract.PodEnv(
        job=JOB, namespace=NAMESPACE, role="worker", rank=0, num_ps=0, num_workers=1,
        mode="allreduce", rendezvous=f"{JOB}-g0-worker-0:{contract.DEFAULT_RENDEZVOUS_PORT}",
        checkpoint_dir=str(checkpoints), generation=0,
        metrics_port=contract.DEFAULT_METRICS_PORT, control_port=contract.DEFAULT_CONTROL_PORT,
        checkpoint_interval_steps=20, task="mlp", global_batch_size=32, max_epochs=200,
    ).to_env()
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": contract.pod_name(JOB, "worker", 0, 0), "labels": {
            contract.POD_LABEL_JOB: JOB, contract.POD_LABEL_ROLE: "worker",
            contract.POD_LABEL_MANAGED: contract.POD_LABEL_MANAGED_VALUE}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "worker", "image": "ghcr.io/optimus-operator/worker:0.1.0",
                "command": ["python", "-m", "optimus_worker"],
                "env": [{"name": key, "value": value} for key, value in env.items()] + [
                    {"name": "OMP_NUM_THREADS", "value": "1"},
                    {"name": contract.ENV_POD_IP,
                     "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [
                    {"name": contract.METRICS_PORT_NAME,
                     "containerPort": contract.DEFAULT_METRICS_PORT},
                    {"name": contract.CONTROL_PORT_NAME,
                     "containerPort": contract.DEFAULT_CONTROL_PORT}],
            }],
        },
    }


@pytest.fixture
def operator_exporter() -> Iterator[str]:
    """The operator's exporter on loopback, publishing one round's values for JOB."""
    metrics = OperatorMetrics()
    key = (NAMESPACE, JOB)
    metrics.set_phases(["Running", "Queued", "Pending"])
    metrics.set_cluster_gpus(allocated=1, total=8)
    metrics.set_jobs({key: JobGauges(
        ps=0, workers=1, gpus=1, remaining_seconds=300.0, remaining_epochs=12.0,
        converged_epoch=20.0, fitted_loss=0.4, predicted_speed=25.0, fit_error_loss=0.05,
        fit_error_speed=0.1)})
    for step in ROUND_STEPS:
        metrics.step_duration(step, 0.01)
    metrics.round_done("ok")
    metrics.restart_cost(18.0)
    metrics.resized(*key)
    metrics.prometheus_failed()
    port = free_port()
    metrics.serve(port, addr="127.0.0.1")
    yield f"127.0.0.1:{port}"


def test_every_panel_query_returns_series(local_cluster: LocalCluster, tmp_path: Path,
                                          operator_exporter: str) -> None:
    core: Any = kubernetes.client.CoreV1Api(api_client(local_cluster.kubeconfig))
    pod = worker_pod(tmp_path / "checkpoints")
    core.create_namespaced_pod(NAMESPACE, pod)
    with LocalPrometheus(local_cluster.kubeconfig, tmp_path / "prometheus",
                         extra_targets=[operator_exporter]) as prometheus:
        prometheus.wait_ready(30)
        # The pod is found through the cluster and keeps its own labels (honor_labels).
        pod_series = (f'optimus_worker_epoch_progress{{job="{JOB}", namespace="{NAMESPACE}", '
                      f'pod="{pod["metadata"]["name"]}", kubernetes_namespace="{NAMESPACE}"}}')
        wait_for("the worker's metrics in Prometheus", lambda: prometheus.query(pod_series),
                 timeout=90)
        values = {"namespace": NAMESPACE, "job": JOB}
        errors = invalid_queries(prometheus.query, values, RATE_INTERVAL)
        assert not errors, "\n".join(errors)  # every query is valid PromQL, series or not
        # The loss gauge appears after the first epoch; rates need two scrapes in range.
        empty: list[str] = []

        def all_return_series() -> bool:
            empty[:] = panels_without_series(prometheus.query, values, RATE_INTERVAL)
            return not empty

        try:
            wait_for("every panel to return series", all_return_series, timeout=120, interval=2)
        except TimeoutError:
            pytest.fail(f"panels without series: {empty}\nworker log:\n"
                        f"{_log(local_cluster, pod['metadata']['name'])}")
        # Template variables: label_values(expr, label) offers this job and namespace.
        assert variables_missing(prometheus.query, values) == []
        core.delete_namespaced_pod(pod["metadata"]["name"], NAMESPACE)


def _log(cluster: LocalCluster, pod: str) -> str:
    try:
        return "\n".join(cluster.pod_log_path(NAMESPACE, pod).read_text().splitlines()[-30:])
    except Exception as error:  # the log is only for the failure message
        return f"(no log: {error})"

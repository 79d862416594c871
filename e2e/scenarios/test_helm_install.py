"""Scenario 1: install the chart with helm into the local cluster, apply a sample with
kubectl, watch it to Succeeded; `kubectl get tj` shows the printer columns filled.

The local cluster stores the chart's Deployment but runs no container images, so the
operator runs as a process of the local checkout with the environment the chart rendered
into that Deployment (its values mapped to OPTIMUS_* variables by the chart itself); only the
addresses that differ locally (Prometheus URL, ports, kubeconfig) are replaced.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.demo.samples import prepared
from e2e.demo.stack import REPO_ROOT, OperatorSettings
from e2e.scenarios.conftest import FAST_OPERATOR, MakeStack
from e2e.scenarios.helpers import apply_job, describe, wait_job, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHART = REPO_ROOT / "charts" / "optimus"
SAMPLE = REPO_ROOT / "manifests" / "samples" / "tiny-cpu.yaml"
RELEASE = "optimus"
#: Set locally, whatever the chart says: ports are picked free on this machine.
LOCAL_ONLY = {"KUBECONFIG", "OPTIMUS_METRICS_PORT", "OPTIMUS_HEALTH_PORT"}


def helm_binary() -> str:
    found = shutil.which("helm") or str(REPO_ROOT / ".tools" / "bin" / "helm")
    if not Path(found).exists():
        pytest.fail("helm not found: run `make tools`")
    return found


def deployment_env(deployment: dict[str, Any]) -> dict[str, str]:
    """The OPTIMUS_* variables of the operator container, as the chart rendered them."""
    env: dict[str, str] = {}
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for item in container.get("env") or ():
            if item["name"].startswith("OPTIMUS_") and "value" in item:
                env[item["name"]] = str(item["value"])
    return env


def printer_columns(text: str) -> list[dict[str, str]]:
    """`kubectl get tj` output as rows of {column: value}, cut at the header's column starts
    (kubectl aligns them), so that a blank cell (an ETA not yet known) stays blank."""
    import re

    lines = [line for line in text.splitlines() if line.strip()]
    spans = [(m.group(), m.start()) for m in re.finditer(r"\S+", lines[0])]
    ends = [start for _, start in spans[1:]] + [None]
    return [{name: line[start:end].strip() for (name, start), end in zip(spans, ends, strict=True)}
            for line in lines[1:]]


def test_helm_install_then_a_sample_runs_to_succeeded(make_stack: MakeStack) -> None:
    stack = make_stack(install_crd=False, run_operator=False)
    helm = helm_binary()
    install = subprocess.run(
        [helm, "install", RELEASE, str(CHART), "--kubeconfig", str(stack.kubeconfig),
         "--namespace", stack.config.namespace,
         "--set", f"operator.intervalSeconds={int(FAST_OPERATOR.interval_seconds)}",
         "--set", f"operator.restartCostSeconds={int(FAST_OPERATOR.restart_cost_seconds)}",
         "--set-string", f"operator.prometheusUrl={stack.prometheus.url}"],
        capture_output=True, text=True, timeout=120, check=False)
    assert install.returncode == 0, install.stderr
    crds = stack.kubectl.get_json("crd", namespaced=False)["items"]
    assert "trainingjobs.optimus.dev" in {c["metadata"]["name"] for c in crds}
    [deployment] = stack.kubectl.items("deployments", "-l",
                                       f"app.kubernetes.io/instance={RELEASE}")
    chart_env = deployment_env(deployment)
    assert chart_env["OPTIMUS_INTERVAL_SECONDS"] == str(int(FAST_OPERATOR.interval_seconds))
    assert chart_env["OPTIMUS_PROMETHEUS_URL"] == stack.prometheus.url
    # The chart's values as it rendered them (peering included: the chart created the
    # peering object), with this machine's free ports.
    settings = OperatorSettings(extra_env={k: v for k, v in chart_env.items()
                                           if k not in LOCAL_ONLY})
    operator = stack.start_operator(settings)
    assert operator.process.env is not None
    assert operator.process.env["OPTIMUS_PEERING"] == chart_env["OPTIMUS_PEERING"]

    # the sample's ReadWriteMany claim is for real clusters; here its pods are local
    # processes on one machine, so `prepared` gives the job a hostPath instead
    [sample] = [doc for doc in yaml.safe_load_all(SAMPLE.read_text())
                if doc["kind"] == "TrainingJob"]
    manifest = prepared(sample, stack.workdir / "checkpoints")
    name = manifest["metadata"]["name"]
    apply_job(stack.kubectl, manifest)

    seen_running: list[dict[str, str]] = []

    def columns_while_running(obj: dict[str, Any]) -> None:
        progress = (obj.get("status") or {}).get("progress") or {}
        if not seen_running and progress.get("epoch") and obj["status"].get("phase") in (
                "Running", "Probing", "Resizing"):
            out = stack.kubectl.run("get", "tj", name).stdout
            seen_running.extend(printer_columns(out))

    wait_job(stack, name, ("Succeeded",), timeout=240, on_poll=columns_while_running)
    final = printer_columns(stack.kubectl.run("get", "tj").stdout)
    assert [row["NAME"] for row in final] == [name]
    row = final[0]
    assert row["PHASE"] == "Succeeded"
    for column in ("PS", "WORKERS", "EPOCH", "LOSS", "AGE"):
        assert row.get(column) not in (None, "", "<none>"), (column, row, describe(stack))
    assert seen_running, "never saw the job training"
    # ETA stays blank while the job probes (no fitted model yet), so it is not required here
    for column in ("PHASE", "PS", "WORKERS", "EPOCH", "LOSS"):
        assert seen_running[0].get(column) not in (None, "", "<none>"), (column, seen_running)
    wait_until(stack, "helm to list the release", lambda: RELEASE in subprocess.run(
        [helm, "list", "--kubeconfig", str(stack.kubeconfig), "-q"], capture_output=True,
        text=True, timeout=60, check=False).stdout, timeout=30)

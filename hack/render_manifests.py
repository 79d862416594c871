#!/usr/bin/env python3
"""Render the plain manifests (manifests/operator, rbac, monitoring) from the Helm chart.

The chart is the one source of the operator's Deployment, RBAC and monitoring objects; the
plain manifests are `helm template` output with Helm's own labels taken out, split by kind
into the files a `kubectl apply -f` user needs. tests/deploy/test_manifests.py runs this
with --check and fails when the checked-in files are stale.

    .venv/bin/python hack/render_manifests.py           # rewrite the files
    .venv/bin/python hack/render_manifests.py --check   # exit 1 (with a diff) if stale
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "optimus"
RELEASE = "optimus"
NAMESPACE = "optimus-system"
# The namespace the namespaced-RBAC variant grants and watches; users change it (README).
NAMESPACED_EXAMPLE = "default"


@dataclass(frozen=True)
class Output:
    """One generated file: the kinds it collects from one rendering."""

    path: str
    render: str  # key of RENDERINGS
    kinds: tuple[str, ...]
    note: str
    namespace_first: bool = False


RENDERINGS: dict[str, list[str]] = {
    # The default install, with every optional object on so each gets a plain manifest.
    "cluster": ["--set", "monitoring.serviceMonitor.enabled=true",
                "--set", "monitoring.podMonitor.enabled=true",
                "--set", "monitoring.prometheusRule.enabled=true"],
    "namespaced": ["--set", "rbac.scope=namespaced",
                   "--set", f"operator.watchNamespaces={{{NAMESPACED_EXAMPLE}}}"],
}

OUTPUTS: tuple[Output, ...] = (
    Output("manifests/operator/operator.yaml", "cluster",
           ("ServiceAccount", "Service", "Deployment", "PodDisruptionBudget",
            "ClusterKopfPeering"),
           "The operator in namespace optimus-system, watching all namespaces. Apply after\n"
           "# manifests/crd/ and manifests/peering/, together with manifests/rbac/cluster.yaml.",
           namespace_first=True),
    Output("manifests/rbac/cluster.yaml", "cluster",
           ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"),
           "Least-privilege RBAC for an operator watching all namespaces."),
    Output("manifests/rbac/namespaced.yaml", "namespaced",
           ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "KopfPeering"),
           f"RBAC for an operator watching only namespace {NAMESPACED_EXAMPLE!r} (replace it\n"
           f"# everywhere below to use another one), instead of rbac/cluster.yaml. Then set\n"
           f"# OPTIMUS_NAMESPACES={NAMESPACED_EXAMPLE} on the operator (see README, Install)."),
    Output("manifests/monitoring/prometheus-operator.yaml", "cluster",
           ("PodMonitor", "ServiceMonitor", "PrometheusRule"),
           "prometheus-operator objects: scrape the training pods and the operator, and the\n"
           "# operator's alerts (source: charts/optimus/rules/optimus-alerts.yaml)."),
    Output("manifests/monitoring/grafana-dashboards.yaml", "cluster", ("ConfigMap",),
           "Grafana dashboards for Grafana's sidecar (label grafana_dashboard: \"1\"); the JSON\n"
           "# sources are charts/optimus/dashboards/*.json, importable by hand too."),
)


def helm_binary() -> str:
    found = shutil.which("helm") or str(ROOT / ".tools" / "bin" / "helm")
    if not os.access(found, os.X_OK):
        raise SystemExit("helm not found: run `make tools` (installs .tools/bin/helm)")
    return found


def render(args: list[str]) -> str:
    result = subprocess.run(
        [helm_binary(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args],
        check=True, capture_output=True, text=True,
    )
    return result.stdout


def documents(rendered: str) -> list[tuple[str, str]]:
    """(kind, text) of every non-empty document, in helm's order, text as rendered."""
    docs: list[tuple[str, str]] = []
    for chunk in rendered.split("\n---\n"):
        text = chunk.strip("\n")
        if text.startswith("---"):
            text = text[3:].lstrip("\n")
        loaded = yaml.safe_load(text) if text else None
        if isinstance(loaded, dict) and "kind" in loaded:
            docs.append((str(loaded["kind"]), text))
    return docs


def plain(text: str) -> str:
    """Helm's bookkeeping labels out: these objects are applied with kubectl."""
    lines = [line for line in text.splitlines() if "helm.sh/chart:" not in line]
    return "\n".join(lines).replace("app.kubernetes.io/managed-by: Helm",
                                    "app.kubernetes.io/managed-by: kubectl")


NAMESPACE_DOC = f"""apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/part-of: optimus"""


def generate() -> dict[str, str]:
    """Every output file's content, by path relative to the repository."""
    rendered = {name: documents(render(args)) for name, args in RENDERINGS.items()}
    files: dict[str, str] = {}
    for output in OUTPUTS:
        texts = [plain(text) for kind, text in rendered[output.render] if kind in output.kinds]
        if not texts:
            raise SystemExit(f"{output.path}: the chart rendered none of {output.kinds}")
        if output.namespace_first:
            texts.insert(0, NAMESPACE_DOC)
        header = (f"# Generated by hack/render_manifests.py from charts/optimus: do not edit,\n"
                  f"# change the chart and re-run the script.\n# {output.note}\n")
        files[output.path] = header + "---\n" + "\n---\n".join(texts) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the checked-in files instead of writing them")
    options = parser.parse_args(argv)
    stale = 0
    for path, content in generate().items():
        target = ROOT / path
        current = target.read_text() if target.exists() else ""
        if options.check:
            if current != content:
                stale += 1
                sys.stdout.writelines(difflib.unified_diff(
                    current.splitlines(keepends=True), content.splitlines(keepends=True),
                    f"{path} (checked in)", f"{path} (rendered)"))
        elif current != content:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            print(f"wrote {path}")
    if stale:
        print(f"\n{stale} file(s) stale: run .venv/bin/python hack/render_manifests.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Copy the CRDs into the Helm chart: manifests/ is the one source, charts/optimus/crds/ holds
# identical copies (tests/deploy/test_chart.py fails when they differ). Run after editing
# manifests/crd/ or manifests/peering/.
set -euo pipefail
cd "$(dirname "$0")/.."
crds=charts/optimus/crds
mkdir -p "$crds"
# Files in crds/ that no longer have a source go, so the chart never ships a stale CRD.
find "$crds" -maxdepth 1 -name '*.yaml' -delete
for source in manifests/crd/*.yaml manifests/peering/*.yaml; do
  [ -e "$source" ] || continue
  cp "$source" "$crds/$(basename "$source")"
  echo "copied $source -> $crds/$(basename "$source")"
done

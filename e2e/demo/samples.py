"""The demo's sample TrainingJobs (e2e/samples/*.yaml), made ready to apply.

The samples keep their checkpoints on a hostPath whose mountPath is the same directory (pods
of the local cluster are local processes and see host paths as they are). Before applying,
the demo points that directory at its own work directory and may shorten the jobs
(`--quick`); the result is written as YAML and applied with the real `kubectl apply -f`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
#: The order the demo applies them in, a few seconds apart.
DEMO_SAMPLES = ("mnist-mlp", "digits", "tiny-cnn")


def load_sample(name: str, directory: Path = SAMPLES_DIR) -> dict[str, Any]:
    path = directory / f"{name}.yaml"
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict) or loaded.get("kind") != "TrainingJob":
        raise ValueError(f"{path} is not a TrainingJob manifest")
    return loaded


def prepared(manifest: Mapping[str, Any], checkpoint_dir: Path, *,
             name: str | None = None, max_epochs: int | None = None,
             overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `manifest` with its checkpoints under `checkpoint_dir` (hostPath and
    mountPath alike), optionally renamed, with a smaller maxEpochs, and with `overrides`
    merged into its spec (nested mappings merge, other values replace)."""
    result = copy.deepcopy(dict(manifest))
    spec = result.setdefault("spec", {})
    checkpoint = spec.setdefault("checkpoint", {})
    checkpoint["volume"] = {"hostPath": {"path": str(checkpoint_dir),
                                         "type": "DirectoryOrCreate"}}
    checkpoint["mountPath"] = str(checkpoint_dir)
    if name is not None:
        result.setdefault("metadata", {})["name"] = name
    if max_epochs is not None:
        spec.setdefault("convergence", {})["maxEpochs"] = max_epochs
    if overrides:
        _merge(spec, overrides)
    return result


def _merge(target: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def write_manifests(manifests: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Write each manifest to `directory/<name>.yaml`; returns the paths in order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for manifest in manifests:
        path = directory / f"{manifest['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(dict(manifest), sort_keys=False))
        paths.append(path)
    return paths

"""Helpers shared by the deployment tests (paths, chart variants, YAML loading)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.script_loader import load_script

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "optimus"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
# (id, extra helm arguments): the default values and every CI values file.
VARIANTS: list[tuple[str, list[str]]] = [("default", [])] + [
    (path.stem, ["-f", str(path)]) for path in CI_VALUES]
NAMESPACE = "optimus-system"


def find_tool(name: str, fallback: Path | None = None) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    if fallback is not None and os.access(fallback, os.X_OK):
        return str(fallback)
    return None


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def load_file(path: Path) -> list[dict[str, Any]]:
    return load_documents(path.read_text())


def load_hack_script(name: str) -> ModuleType:
    """Import hack/<name>.py (scripts, not a package) to test its functions."""
    return load_script(ROOT / "hack" / f"{name}.py", f"hack_{name}")

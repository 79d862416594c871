"""Fixtures for the deployment tests: the tools (helm, promtool) and the rendered chart.
Tests that need a tool skip, naming it, only when it is absent; `make test` installs both,
so in CI they run."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from .support import CHART, NAMESPACE, ROOT, find_tool, load_documents


@pytest.fixture(scope="session")
def helm() -> str:
    found = find_tool("helm", ROOT / ".tools" / "bin" / "helm")
    if found is None:
        pytest.skip("helm is absent: `make tools` installs it into .tools/bin")
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    found = find_tool("promtool")
    if found is None:
        pytest.skip("promtool is absent: `make tools` installs Debian's prometheus")
    return found


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[..., list[dict[str, Any]]]:
    """render(*helm_args) -> the chart's documents; cached per argument list."""
    cache: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    def _render(*args: str) -> list[dict[str, Any]]:
        if args not in cache:
            result = subprocess.run(
                [helm, "template", "optimus", str(CHART), "--namespace", NAMESPACE, *args],
                capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, f"helm template {args} failed:\n{result.stderr}"
            cache[args] = load_documents(result.stdout)
        return cache[args]

    return _render

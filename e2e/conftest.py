"""Fixtures shared by all e2e tests.

- `local_cluster`: a fresh in-process LocalCluster (2 nodes x 4 GPUs) on a free port.
- `kubeconfig`: a real cluster's kubeconfig when `E2E_KUBECONFIG` is set, else the
  kubeconfig of a local cluster; tests written against it run on either unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.localcluster import LocalCluster


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(nodes=2, gpus_per_node=4, cpus_per_node=8, memory_per_node="32Gi",
                      workdir=tmp_path / "localcluster", port=0) as cluster:
        yield cluster


@pytest.fixture
def kubeconfig(request: pytest.FixtureRequest) -> Iterator[Path]:
    external = os.environ.get("E2E_KUBECONFIG")
    if external:
        yield Path(external)
        return
    cluster: LocalCluster = request.getfixturevalue("local_cluster")
    yield cluster.kubeconfig

"""A local Kubernetes for tests and the demo: an API server that real clients (kopf, the
kubernetes client, kubectl, helm) talk to unchanged, a scheduler over simulated GPU nodes,
a kubelet that runs pods as local processes, and garbage collection. See e2e/README.md."""

from .cluster import LocalCluster

__all__ = ["LocalCluster"]

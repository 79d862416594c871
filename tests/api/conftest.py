"""Shared raw TrainingJob objects for the API tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

RAW_JOB: dict[str, Any] = {
    "apiVersion": "optimus.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "mnist", "namespace": "ml", "uid": "u-1", "generation": 2,
                 "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {
        "mode": "ps-sync",
        "task": "mlp",
        "globalBatchSize": 64,
        "convergence": {"lossDelta": 0.02, "window": 3, "maxEpochs": 12},
        "parameterServers": {"min": 1, "max": 2, "template": {"spec": {"containers": [
            {"name": "ps", "image": "w:1", "command": ["python", "-m", "optimus_worker"],
             "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}}},
        "workers": {"min": 1, "max": 4, "template": {"spec": {"containers": [
            {"name": "worker", "image": "w:1", "command": ["python", "-m", "optimus_worker"],
             "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                           "limits": {"nvidia.com/gpu": 1}}}]}}},
        "checkpoint": {"volume": {"hostPath": {"path": "/tmp/ck"}}, "mountPath": "/ckpt",
                       "intervalSteps": 20},
    },
}


@pytest.fixture
def raw_job() -> dict[str, Any]:
    return copy.deepcopy(RAW_JOB)

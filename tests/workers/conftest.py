"""Shared set-up for the worker tests: one torch thread (2 shared cores), the process marker."""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "processes: starts real worker processes (slower; still part of make test)")


torch.set_num_threads(1)

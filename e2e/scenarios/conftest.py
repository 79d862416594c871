"""Fixtures of the end-to-end scenarios: one stack per module, torn down even on failure.

`make_stack(**changes)` starts a local cluster (or uses $E2E_KUBECONFIG's cluster), the CRD,
a real Prometheus and the operator as a subprocess, with a short scheduling interval; every
stack a module made is closed when the module ends, whatever happened. Work directories
(operator log, Prometheus data, checkpoints) live under pytest's tmp_path_factory; a
failing scenario's message names its directory (e2e.scenarios.helpers.describe).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from e2e.demo.stack import OperatorSettings, Stack, StackConfig

#: Scenario operators decide every few seconds and charge a small restart cost.
FAST_OPERATOR = OperatorSettings(interval_seconds=4.0, restart_cost_seconds=2.0)
#: ... and size new jobs by probing (no white-box speed prior): the scenarios that need a
#: job to be resized several times early (faults during a resize, lossless resizes) get
#: their resizes from the probes
PROBING_OPERATOR = replace(FAST_OPERATOR, extra_env={"OPTIMUS_SPEED_PRIOR": "none"})

MakeStack = Callable[..., Stack]


def external_kubeconfig() -> Path | None:
    """A real cluster to run against instead of the local one ($E2E_KUBECONFIG)."""
    value = os.environ.get("E2E_KUBECONFIG")
    return Path(value) if value else None


def needs_local_cluster(stack: Stack) -> None:
    """Skip a step that needs the local cluster's hooks (process ids, node pods)."""
    if stack.cluster is None:
        pytest.skip("needs the local cluster's process hooks (E2E_KUBECONFIG is set)")


@pytest.fixture(scope="module")
def make_stack(tmp_path_factory: pytest.TempPathFactory,
               request: pytest.FixtureRequest) -> Iterator[MakeStack]:
    stacks: list[Stack] = []
    module = request.module.__name__.rsplit(".", 1)[-1]

    def make(**changes: Any) -> Stack:
        changes.setdefault("operator", FAST_OPERATOR)
        config = StackConfig(workdir=tmp_path_factory.mktemp(module),
                             kubeconfig=external_kubeconfig(), **changes)
        stack = Stack(config)
        stack.__enter__()
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in reversed(stacks):
            stack.close()

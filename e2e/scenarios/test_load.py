"""Scenario 6: fifty tiny jobs at once. All are admitted, the pods bound to a node never ask
for more than it has, jobs finish or wait in the queue, and the operator's memory and
scheduling-round duration stay bounded (reported).

Bounded for CI: the cluster is one node with 4 GPUs, so at most four 1-worker jobs run at
a time; the scenario watches until every job is admitted, one has finished and the rest
queue (at most LOAD_WATCH_SECONDS, default 100), rather than waiting for all fifty to
finish (that would take about fifty times a job's run time over four; E2E_LOAD_ALL=1
waits for all of them).
"""

from __future__ import annotations

import os
import time

import pytest
import yaml

from e2e.scenarios.checks import capacity_violations
from e2e.scenarios.conftest import MakeStack
from e2e.scenarios.helpers import (
    describe,
    job_manifest,
    phase,
    process_tree_rss_mib,
    round_seconds,
)

JOBS = 50
GPUS = 4
WAIT_FOR_ALL = os.environ.get("E2E_LOAD_ALL") == "1"
WATCH_SECONDS = float(os.environ.get("LOAD_WATCH_SECONDS", "100"))
#: Memory the operator may use with fifty jobs (its Deployment's limit is of this order).
RSS_BOUND_MIB = 400.0
#: A scheduling round of fifty jobs on one node must stay well under the interval.
ROUND_BOUND_SECONDS = 3.0

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600 if WAIT_FOR_ALL else 420)]


def _finished_one_and_queued_the_rest(phases: dict[str, str]) -> bool:
    succeeded = sum(p == "Succeeded" for p in phases.values())
    queued = sum(p == "Queued" for p in phases.values())
    return succeeded >= 1 and succeeded + queued >= JOBS - GPUS


def test_fifty_tiny_jobs_are_admitted_scheduled_within_capacity_and_finish_or_queue(
        make_stack: MakeStack) -> None:
    stack = make_stack(nodes=1, gpus_per_node=GPUS, cpus_per_node=2 * GPUS,
                       memory_per_node="64Gi")
    names = [f"load-{i:02d}" for i in range(JOBS)]
    manifests = [job_manifest(name, stack.workdir / "checkpoints", max_epochs=1,
                              ps=(1, 1), workers=(1, 1), batch=64, interval_steps=50)
                 for name in names]
    path = stack.workdir / "load.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    began = time.monotonic()
    stack.kubectl.apply(path)  # fifty jobs in one kubectl apply
    applied = time.monotonic() - began

    nodes = stack.kubectl.items("nodes")
    peak_running = 0
    admitted_at: float | None = None
    rss_peak = 0.0
    phases: dict[str, str] = {}
    deadline = time.monotonic() + (3000 if WAIT_FOR_ALL else WATCH_SECONDS)
    while time.monotonic() < deadline:
        jobs = {j["metadata"]["name"]: j for j in stack.kubectl.trainingjobs()}
        phases = {name: phase(jobs[name]) if name in jobs else "Absent" for name in names}
        if admitted_at is None and all(p not in ("Pending", "Absent") for p in phases.values()):
            admitted_at = time.monotonic() - began
        pods = stack.kubectl.items("pods")
        assert capacity_violations(pods, nodes) == [], describe(stack)
        running = {p["metadata"]["labels"].get("optimus.dev/job") for p in pods
                   if (p.get("status") or {}).get("phase") == "Running"}
        peak_running = max(peak_running, len(running - {None}))
        assert not [n for n, p in phases.items() if p in ("Failed", "Invalid")], phases
        if stack.operator is not None and stack.operator.process.pid is not None:
            rss_peak = max(rss_peak, process_tree_rss_mib(stack.operator.process.pid))
        if all(p == "Succeeded" for p in phases.values()):
            break
        if not WAIT_FOR_ALL and admitted_at is not None and _finished_one_and_queued_the_rest(
                phases):
            break  # what the scenario asks is seen: watching longer proves nothing more
        time.sleep(2)

    counts = {p: list(phases.values()).count(p) for p in sorted(set(phases.values()))}
    rounds = round_seconds(stack)
    report = (f"load: {JOBS} jobs applied in {applied:.1f} s; all admitted after "
              f"{admitted_at if admitted_at is None else round(admitted_at, 1)} s; peak "
              f"{peak_running} jobs with running pods (capacity {GPUS} one-GPU workers); "
              f"after {time.monotonic() - began:.0f} s: {counts}; operator RSS peak "
              f"{rss_peak:.0f} MiB; mean round seconds by step "
              f"{ {k: round(v, 4) for k, v in rounds.items()} }")
    print(report)
    (stack.workdir / "load-report.txt").write_text(report + "\n")

    assert admitted_at is not None, f"not every job was admitted: {counts}"
    assert peak_running <= GPUS, report
    assert counts.get("Succeeded", 0) >= 1, f"no job finished: {report}\n{describe(stack)}"
    unfinished = {p for p in phases.values() if p != "Succeeded"}
    assert unfinished <= {"Queued", "Probing", "Running", "Resizing"}, report
    if WAIT_FOR_ALL:
        assert counts == {"Succeeded": JOBS}, report
    else:
        assert _finished_one_and_queued_the_rest(phases), report
    assert 0 < rss_peak <= RSS_BOUND_MIB, report
    assert rounds and rounds["all"] <= ROUND_BOUND_SECONDS, report

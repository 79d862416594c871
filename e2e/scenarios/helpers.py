"""Driving TrainingJobs through kubectl for the scenarios: manifests, waits, recorders.

Every wait is bounded; a timeout's message carries the job's status and the operator's log
tail, so a failing scenario says why.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from optimus_worker.contract import (
    CONTROL_PORT_NAME,
    CONTROL_STATUS_PATH,
    METRIC_CHECKPOINT_STEP,
    POD_LABEL_GENERATION,
    POD_LABEL_JOB,
    POD_LABEL_RANK,
    POD_LABEL_ROLE,
)

from e2e.demo.kubectl import Kubectl, KubectlError
from e2e.demo.samples import load_sample, prepared
from e2e.demo.stack import Stack
from e2e.scenarios.checks import StepSample

TERMINAL = ("Succeeded", "Failed", "Invalid")


def job_manifest(name: str, checkpoint_dir: Path, *, task: str = "mlp", max_epochs: int = 2,
                 ps: tuple[int, int] = (1, 1), workers: tuple[int, int] = (1, 2),
                 batch: int = 32, interval_steps: int = 10, gpus_per_worker: int = 1,
                 mode: str = "ps-sync", **spec: Any) -> dict[str, Any]:
    """A small CPU TrainingJob from the demo's mlp sample: (min, max) of PS and workers."""
    overrides: dict[str, Any] = {
        "task": task, "mode": mode, "globalBatchSize": batch,
        "parameterServers": {"min": ps[0], "max": ps[1]},
        "workers": {"min": workers[0], "max": workers[1]},
        "checkpoint": {"intervalSteps": interval_steps},
        **spec,
    }
    manifest = prepared(load_sample("mnist-mlp"), checkpoint_dir, name=name,
                        max_epochs=max_epochs, overrides=overrides)
    containers = manifest["spec"]["workers"]["template"]["spec"]["containers"]
    containers[0]["resources"]["limits"]["nvidia.com/gpu"] = str(gpus_per_worker)
    return manifest


def apply_job(kubectl: Kubectl, manifest: Mapping[str, Any], *, check: bool = True
              ) -> Any:
    """`kubectl apply -f -` of one manifest; returns the CompletedProcess."""
    return kubectl.apply_text(yaml.safe_dump(dict(manifest), sort_keys=False), check=check)


def phase(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "Pending")


def describe(stack: Stack, name: str | None = None) -> str:
    """The job's status (or all jobs' phases) and the operator's log tail, for messages."""
    try:
        if name is not None:
            status = json.dumps(stack.kubectl.trainingjob(name).get("status"), indent=1)[:3000]
        else:
            status = ", ".join(f"{j['metadata']['name']}={phase(j)}"
                               for j in stack.kubectl.trainingjobs())
    except KubectlError as error:
        status = str(error)
    log = stack.operator.process.log_tail(30) if stack.operator else "(no operator)"
    return f"status: {status}\noperator log tail:\n{log}\nwork directory: {stack.workdir}"


def wait_job(stack: Stack, name: str, phases: Iterable[str] = ("Succeeded",),
             timeout: float = 180.0, on_poll: Callable[[dict[str, Any]], None] | None = None,
             interval: float = 1.0) -> dict[str, Any]:
    """Poll until the job's phase is one of `phases`; a different terminal phase or the
    timeout fails with the job's status and the operator's log."""
    wanted = set(phases)
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            obj = stack.kubectl.trainingjob(name)
        except KubectlError:
            time.sleep(interval)
            continue
        if on_poll is not None:
            on_poll(obj)
        if phase(obj) in wanted:
            return obj
        if phase(obj) in TERMINAL:
            raise AssertionError(f"job {name} ended {phase(obj)}, wanted {sorted(wanted)}\n"
                                 f"{describe(stack, name)}")
        time.sleep(interval)
    raise AssertionError(f"job {name} not {sorted(wanted)} within {timeout:.0f} s (last "
                         f"{phase(obj)})\n{describe(stack, name)}")


def wait_until(stack: Stack, what: str, predicate: Callable[[], Any], timeout: float,
               interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except KubectlError:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:.0f} s: {what}\n{describe(stack)}")


def job_pods(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    return kubectl.items("pods", "-l", f"{POD_LABEL_JOB}={name}")


def running_pods(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    return [p for p in job_pods(kubectl, name)
            if (p.get("status") or {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def generation(obj: Mapping[str, Any]) -> int:
    return int(((obj.get("status") or {}).get("allocation") or {}).get("generation") or 0)


def allocation(obj: Mapping[str, Any]) -> tuple[int, int] | None:
    found = (obj.get("status") or {}).get("allocation") or {}
    if found.get("workers") is None:
        return None
    return int(found.get("ps") or 0), int(found["workers"])


def chief_status(pod: Mapping[str, Any], timeout: float = 2.0) -> dict[str, Any] | None:
    """GET the chief worker's control /status (epoch, step, loss), or None if it can't."""
    ip = (pod.get("status") or {}).get("podIP")
    port = None
    for container in (pod.get("spec") or {}).get("containers") or ():
        for item in container.get("ports") or ():
            if item.get("name") == CONTROL_PORT_NAME:
                port = item.get("containerPort")
    if not ip or not port:
        return None
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}{CONTROL_STATUS_PATH}",
                                    timeout=timeout) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found
    except (OSError, ValueError):
        return None


def checkpoint_step(stack: Stack, name: str) -> int | None:
    """The newest checkpoint step any of the job's pods reported to Prometheus."""
    if stack.prometheus is None:
        return None
    try:
        result = stack.prometheus.query(f'max({METRIC_CHECKPOINT_STEP}{{job="{name}"}})')
    except Exception:  # Prometheus may be stopped on purpose (fault scenarios)
        return None
    if not result:
        return None
    return int(float(result[0]["value"][1]))


class StepRecorder:
    """Samples a job's step from its chief worker's /status in a background thread.

    Each sample: time, generation (from the chief pod's name), the step, and the newest
    checkpoint step Prometheus has seen. `stop()` returns the samples.
    """

    def __init__(self, stack: Stack, name: str, interval: float = 0.5) -> None:
        self.stack = stack
        self.name = name
        self.interval = interval
        self.samples: list[StepSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"steps-{name}", daemon=True)
        self._began = time.monotonic()

    def start(self) -> StepRecorder:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pods = running_pods(self.stack.kubectl, self.name)
            except (KubectlError, OSError, ValueError):
                pods = []
            chiefs = [p for p in pods
                      if p["metadata"].get("labels", {}).get(POD_LABEL_ROLE) == "worker"
                      and p["metadata"].get("labels", {}).get(POD_LABEL_RANK) == "0"]
            for chief in chiefs:
                status = chief_status(chief)
                if status is None or status.get("step") is None:
                    continue
                labels = chief["metadata"].get("labels", {})
                self.samples.append(StepSample(
                    t=time.monotonic() - self._began,
                    generation=int(labels.get(POD_LABEL_GENERATION) or 0),
                    step=int(status["step"]),
                    checkpoint_step=checkpoint_step(self.stack, self.name)))
            self._stop.wait(self.interval)

    def stop(self) -> list[StepSample]:
        self._stop.set()
        self._thread.join(timeout=10)
        return list(self.samples)


def operator_samples(stack: Stack) -> list[tuple[str, dict[str, str], float]]:
    """The operator's own metrics as (sample name, labels, value), from its endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    assert stack.operator is not None
    return [(sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(stack.operator.metrics_text())
            for sample in family.samples]


def round_seconds(stack: Stack) -> dict[str, float]:
    """Mean seconds per scheduling round, by step and in all, from the round histogram."""
    from optimus.metrics.names import LABEL_STEP, OP_ROUND_SECONDS

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for name, labels, value in operator_samples(stack):
        step = labels.get(LABEL_STEP, "all")
        if name == f"{OP_ROUND_SECONDS}_sum":
            sums[step] = sums.get(step, 0.0) + value
        elif name == f"{OP_ROUND_SECONDS}_count":
            counts[step] = counts.get(step, 0.0) + value
    means = {step: sums[step] / counts[step] for step in sums if counts.get(step)}
    if means and "all" not in means:
        means["all"] = sum(means.values())
    return means


def process_tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, in MiB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total_kib, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
        todo.extend(children.get(current, []))
    return total_kib / 1024


def checkpoint_dir(stack: Stack, name: str) -> Path:
    """Where the job's pods write checkpoints: <mountPath>/<job> (notes/trainingjob.md)."""
    return stack.workdir / "checkpoints" / name


def checkpoint_problems(directory: Path) -> tuple[list[int], list[str]]:
    """The steps of the complete checkpoints in `directory`, and what is wrong with them:
    one that does not load, or whose own sample ledger shows a sample skipped or trained
    twice (every epoch before the checkpoint's must have visited each sample exactly once,
    the current one each sample at most once)."""
    from optimus_worker.checkpoint import complete_checkpoints, load_checkpoint

    steps, problems = [], []
    for path in complete_checkpoints(directory):
        try:
            ckpt = load_checkpoint(path)
        except Exception as error:  # a complete-marked checkpoint must load
            problems.append(f"{path.name} does not load: {error}")
            continue
        steps.append(ckpt.step)
        current = int(ckpt.epoch)
        for epoch, visits in ckpt.ledger.items():
            if epoch < current and not bool((visits == 1).all()):
                problems.append(f"{path.name}: epoch {epoch} visited samples "
                                f"{int((visits == 0).sum())} x0 and {int((visits > 1).sum())} "
                                f"x2+ times (each should be visited once)")
            if epoch >= current and bool((visits > 1).any()):
                problems.append(f"{path.name}: epoch {epoch} repeats "
                                f"{int((visits > 1).sum())} samples")
    return steps, problems

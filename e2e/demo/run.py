"""`python -m e2e.demo`: the whole loop on one machine, watched live, then summarised.

Starts the stack (e2e.demo.stack: local cluster, CRD, Prometheus, operator), applies the
sample TrainingJobs with `kubectl apply` a few seconds apart, shows a live table until every
job has finished or the timeout passes, prints the summary (e2e.demo.summary), and stops
everything it started. SIGINT (Ctrl-C) and SIGTERM unwind the same way; while stopping,
further signals are ignored so the teardown completes and leaves no orphan processes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from e2e.demo.fixed import Observation, describe_method, fixed_allocation_estimates
from e2e.demo.kubectl import Kubectl, KubectlError
from e2e.demo.samples import DEMO_SAMPLES, load_sample, prepared, write_manifests
from e2e.demo.stack import REPO_ROOT, OperatorSettings, Stack, StackConfig
from e2e.demo.summary import outcomes, render_summary, resizes_from_events, summary_json
from e2e.demo.table import FINISHED_PHASES, parse_time, render_table, row_from_object

#: the local cluster's emulated GPU time per training sample (seconds). The demo's tasks cost
#: the host 0.02 (mlp, digits at batch 64-128) to 0.4 ms (cnn) of compute per sample on one
#: thread, plus each step's PS round trip; at 3 ms a worker's step is mostly GPU time, so
#: more workers make a job faster as on a real cluster (one epoch, 1 -> 4 workers, measured
#: with optimus_worker.local at 2 ms: mlp 41 -> 19 s, digits 47 -> 23 s, cnn 25 -> 15 s,
#: starts included), while the samples' epochs (16,384 / 14,376 / 8,192 samples) keep every
#: job within a few minutes.
EMULATED_GPU_SECONDS_PER_SAMPLE = 0.003
QUICK_EMULATED_GPU_SECONDS_PER_SAMPLE = 0.001  # --quick: shorter epochs


def gpu_note(seconds_per_sample: float, local: bool) -> str:
    """What the demo's GPUs are, for the table and the summary."""
    if not local:
        return "GPUs: the cluster's own"
    if seconds_per_sample <= 0:
        return "GPUs: simulated, not emulated (workers train on the host's CPU alone)"
    return f"GPUs: emulated, {seconds_per_sample * 1000:g} ms per training sample"


@dataclass(frozen=True)
class DemoOptions:
    timeout: float = 480.0  # seconds from the first apply until the jobs must be done
    interval: float = 10.0  # the operator's scheduling interval
    stagger: float = 5.0  # seconds between two applies
    refresh: float = 2.0  # seconds between two polls of the jobs
    quick: bool = False
    max_epochs: int | None = None  # override the samples' maxEpochs
    workdir: Path = field(default_factory=lambda: REPO_ROOT / ".demo")
    kubeconfig: Path | None = None
    #: print one JSON object with the outcome at the end (`summary_json`)
    json: bool = False
    # the local cluster's emulated GPU time per training sample (seconds; 0: off)
    emulated_gpu_seconds_per_sample: float = EMULATED_GPU_SECONDS_PER_SAMPLE


def parse_args(argv: Sequence[str] | None = None) -> DemoOptions:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.demo",
        description="Local cluster + Prometheus + the Optimus operator, three sample jobs, "
                    "a live table and a summary. Ctrl-C stops everything.")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds the jobs may take after the first apply "
                             "(default 480, 240 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="short jobs (maxEpochs 2) and a 5 s interval: a faster run")
    parser.add_argument("--interval", type=float, default=None,
                        help="the operator's scheduling interval in seconds (default 10; 5 "
                             "with --quick)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="override the samples' convergence.maxEpochs")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where logs, Prometheus data and checkpoints go "
                             "(default .demo/run-<time>)")
    parser.add_argument("--kubeconfig", type=Path,
                        default=os.environ.get("E2E_KUBECONFIG") or None,
                        help="use this cluster instead of starting a local one "
                             "(default: $E2E_KUBECONFIG)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object at the end: per job its completion time, "
                             "resizes and pauses, and elastic_vs_fixed")
    parser.add_argument("--gpu-ms-per-sample", type=float, default=None,
                        help="emulated GPU time per training sample, in ms, on the local "
                             f"cluster (default {EMULATED_GPU_SECONDS_PER_SAMPLE * 1000:g}, "
                             f"{QUICK_EMULATED_GPU_SECONDS_PER_SAMPLE * 1000:g} with --quick; "
                             "0 runs the jobs on the host's CPU alone, where more workers "
                             "do not go faster)")
    args = parser.parse_args(argv)
    if args.gpu_ms_per_sample is None:
        args.gpu_ms_per_sample = 1000 * (QUICK_EMULATED_GPU_SECONDS_PER_SAMPLE if args.quick
                                         else EMULATED_GPU_SECONDS_PER_SAMPLE)
    if args.gpu_ms_per_sample < 0:
        parser.error(f"--gpu-ms-per-sample must be >= 0, got {args.gpu_ms_per_sample}")
    for name in ("timeout", "interval", "max_epochs"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    workdir = args.workdir or REPO_ROOT / ".demo" / time.strftime("run-%Y%m%d-%H%M%S")
    return DemoOptions(
        timeout=args.timeout or (240.0 if args.quick else 480.0),
        interval=args.interval or (5.0 if args.quick else 10.0),
        stagger=2.0 if args.quick else 5.0,
        quick=args.quick,
        max_epochs=args.max_epochs or (2 if args.quick else None),
        workdir=workdir.resolve(),
        kubeconfig=args.kubeconfig,
        emulated_gpu_seconds_per_sample=args.gpu_ms_per_sample / 1000,
        json=args.json,
    )


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    # From now on the teardown runs to its end: a second Ctrl-C must not cut it short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


class Monitor:
    """Polls the demo's jobs and keeps each one's timeline of phase and allocation."""

    def __init__(self, kubectl: Kubectl, names: Sequence[str], note: str = "") -> None:
        self.kubectl = kubectl
        self.names = list(names)
        self.note = note
        self.jobs: dict[str, dict[str, Any]] = {}
        self.timelines: dict[str, list[Observation]] = {}
        self.events: list[dict[str, Any]] = []
        #: every status.allocation seen, per job (the resizes' paths and pauses)
        self.allocations: dict[str, list[dict[str, Any]]] = {}

    def poll(self, with_events: bool = True) -> None:
        now = datetime.now(UTC)
        for obj in self.kubectl.trainingjobs():
            name = obj["metadata"]["name"]
            if name not in self.names:
                continue
            self.jobs[name] = obj
            created = parse_time(obj["metadata"].get("creationTimestamp")) or now
            status = obj.get("status") or {}
            allocation = status.get("allocation") or {}
            seen = self.allocations.setdefault(name, [])
            if allocation and (not seen or seen[-1] != allocation):
                seen.append(allocation)
            epoch = (status.get("progress") or {}).get("epoch")
            self.timelines.setdefault(name, []).append(Observation(
                t=(now - created).total_seconds(),
                phase=str(status.get("phase") or "Pending"),
                ps=allocation.get("ps"), workers=allocation.get("workers"),
                epoch=float(epoch) if isinstance(epoch, int | float) else None))
        if with_events:
            self.events = self.kubectl.events()

    @property
    def all_finished(self) -> bool:
        return len(self.jobs) == len(self.names) and all(
            (obj.get("status") or {}).get("phase") in FINISHED_PHASES
            for obj in self.jobs.values())

    def table(self, elapsed: float, pending: Sequence[str]) -> Group:
        now = datetime.now(UTC)
        resizes = resizes_from_events(self.events)
        rows = [row_from_object(obj, now, len(resizes.get(name, [])))
                for name, obj in self.jobs.items()]
        note = Text(f"{elapsed:.0f} s since the first apply", style="dim")
        if pending:
            note.append(f"; still to apply: {', '.join(pending)}")
        if self.note:
            note.append(f"; {self.note}")
        return Group(render_table(rows), note)


def run_demo(options: DemoOptions, console: Console) -> int:
    """The demo; returns the exit code (0: every job Succeeded)."""
    config = StackConfig(
        workdir=options.workdir, kubeconfig=options.kubeconfig,
        emulated_gpu_seconds_per_sample=(
            0.0 if options.kubeconfig is not None else options.emulated_gpu_seconds_per_sample),
        operator=OperatorSettings(interval_seconds=options.interval,
                                  restart_cost_seconds=5.0 if options.quick else 10.0))
    console.print(f"[bold]Optimus demo[/]: work directory {options.workdir}")
    with Stack(config) as stack:
        console.print(f"  cluster up ({stack.timings.get('cluster', 0):.1f} s), kubeconfig "
                      f"{stack.kubeconfig}")
        console.print(f"  Prometheus at {stack.prometheus.url}; operator pid "
                      f"{stack.operator.process.pid if stack.operator else '?'}, log "
                      f"{options.workdir / 'operator.log'}")
        manifests = [prepared(load_sample(name), options.workdir / "checkpoints",
                              max_epochs=options.max_epochs) for name in DEMO_SAMPLES]
        paths = write_manifests(manifests, options.workdir / "manifests")
        names = [m["metadata"]["name"] for m in manifests]
        gpus = gpu_note(options.emulated_gpu_seconds_per_sample, options.kubeconfig is None)
        console.print(f"  {gpus} (a worker holding a GPU sleeps that long per sample of "
                      f"its share of a batch, so w workers step ~w times faster)")
        monitor = Monitor(stack.kubectl, names, gpus)
        code = _watch(options, console, stack.kubectl, monitor, paths, names)
        jobs = [monitor.jobs[n] for n in names if n in monitor.jobs]
        console.print("Simulating the same jobs on their fixed initial allocations...")
        fixed = fixed_allocation_estimates(jobs, _nodes(stack.kubectl), monitor.timelines,
                                           interval=options.interval)
        results = outcomes(jobs, monitor.events, fixed.of, monitor.allocations)
        console.print()
        console.print(render_summary(results, describe_method(fixed)))
        console.print(gpus, style="dim")
        if options.kubeconfig is not None:  # a real cluster: leave it as we found it
            for path in paths:
                stack.kubectl.delete("-f", str(path))
        console.print("Stopping the operator, Prometheus and the cluster...")
    if options.json:  # the last line of stdout, for other tools
        print(json.dumps(summary_json(results)), flush=True)
    return code


def _nodes(kubectl: Kubectl) -> list[dict[str, Any]]:
    """The cluster's nodes (`kubectl get nodes -o json`); none when the API server fails."""
    try:
        found: list[dict[str, Any]] = kubectl.get_json("nodes", namespaced=False).get("items", [])
    except KubectlError:
        return []
    return found


def _watch(options: DemoOptions, console: Console, kubectl: Kubectl, monitor: Monitor,
           paths: Sequence[Path], names: Sequence[str]) -> int:
    started = time.monotonic()
    to_apply = list(zip(names, paths, strict=True))
    next_apply = started
    last_print = 0.0
    with Live(console=console, refresh_per_second=2, auto_refresh=console.is_terminal,
              transient=False) as live:
        while True:
            now = time.monotonic()
            if to_apply and now >= next_apply:
                name, path = to_apply.pop(0)
                kubectl.apply(path)
                live.console.log(f"kubectl apply -f {path.name}  (trainingjob {name})")
                next_apply = now + options.stagger
            try:
                monitor.poll()
            except KubectlError as error:  # a slow API server: try again next time
                live.console.log(f"[yellow]poll failed: {error}")
            elapsed = now - started
            view = monitor.table(elapsed, [n for n, _ in to_apply])
            live.update(view, refresh=console.is_terminal)
            if not console.is_terminal and now - last_print >= 30:
                console.print(view)  # logs and CI: a snapshot every 30 s
                last_print = now
            if not to_apply and monitor.all_finished:
                live.update(monitor.table(elapsed, []), refresh=True)
                break
            if elapsed > options.timeout:
                live.console.log(f"[red]timeout: not every job finished within "
                                 f"{options.timeout:.0f} s")
                return 1
            time.sleep(options.refresh)
    phases = {(obj.get("status") or {}).get("phase") for obj in monitor.jobs.values()}
    return 0 if phases == {"Succeeded"} else 1


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # logs, CI, pipes: wide enough for the tables
        console = Console(width=max(console.width, 110))
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        return run_demo(options, console)
    except Interrupted as why:
        # The with-blocks have unwound: everything this demo started has been stopped.
        console.print(f"[yellow]{why}: stopped everything the demo started.[/]")
        return 130
    except (OSError, TimeoutError, RuntimeError, KubectlError) as error:
        # Something could not start (a missing tool, a port, a crashed operator): say what,
        # after the with-blocks stopped whatever did start.
        console.print(f"[red]The demo could not run: {error}[/]\n"
                      f"Logs are under {options.workdir}; `make demo` installs what it needs.")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())

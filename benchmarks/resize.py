"""What does a resize pause a job for: in place against checkpoint-restart, same run.

Method. Jobs run as local processes on 127.0.0.1 (`optimus_worker.local`, not the local
cluster: no operator, no pod scheduling), training the shipped ``--task`` (default
``mlp``, global batch 64). For each mode:

* worker change: 1 -> 4 -> 2 workers (1 PS in the PS modes), once in place (every mode in
  `contract.IN_PLACE_WORKER_CHANGE_MODES`: ``POST /membership``, `optimus_worker.membership`)
  and once by restart (the operator's protocol: ``POST /checkpoint``, SIGTERM to every
  task, a new generation resumes from the checkpoint), each in its own job;
* PS change (PS modes): 1 -> 2 -> 1 PS with 2 workers, in place (every mode in
  `contract.IN_PLACE_PS_CHANGE_MODES`: ``POST /membership`` with ``"ps"``, the blocks move
  with their optimizer state at a pause of every worker) and by restart.

Both paths get warm processes (the runner's standby pool, torch already loaded, as a
cluster keeps images pulled), started before the resize and given ``--warm-s`` to load;
``--cold`` starts every new process cold instead (a new pod: Python and torch load first).
A pause is the time from the resize request to the first finished step at the new size
(for in place this includes the added workers' start; the surviving workers train on
meanwhile). The training time lost is the time the job stood still: the pause for a
restart (every task stops at the checkpoint), the switch for in place, as the chief
measures it (all-reduce: from the agreed step to the new group ready; PS modes, worker
change: the coordination calls plus what the first step at the new size waited beyond
the step before it; PS change: the pause at which the blocks move, plus the same).
After the last resize each job checkpoints and its ledger is checked: samples repeated
and skipped are summed over all jobs.
Medians over the changes of ``--repeats`` runs. The machine's load average is printed:
on a shared machine other work skews the numbers.

Run from the repository root:  .venv/bin/python benchmarks/resize.py [--json]
With --json the tables go to stderr and stdout is one JSON object:
``{"modes": {MODE: {"worker_change": {"in_place_s", "restart_s"}, "ps_change": {...}}},
"samples_repeated": n, "samples_skipped": n}`` (``ps_change`` absent for allreduce;
``in_place_s`` null where that path is not built).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimus_worker import contract
from optimus_worker.local import LocalJob
from rich.console import Console
from rich.table import Table

MODES: tuple[contract.Mode, ...] = ("allreduce", "ps-sync", "ps-async")
WORKER_CHANGE = (1, 4, 2)
PS_CHANGE = (1, 2, 1)
PS_CHANGE_WORKERS = 2
WARMUP_STEP = 10
STEPS_BETWEEN = 5  # steps at each size before the next change


@dataclass
class Measured:
    """The pauses of one (mode, change, path) and the training time each lost."""

    pauses: list[float] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)  # training time lost


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def run_job(task: str, mode: contract.Mode, sizes: Sequence[tuple[int, int]], in_place: bool,
            warm_s: float | None, work: Path) -> tuple[Measured, dict[str, Any]]:
    """One job through `sizes` ((PS, workers), the first its start); its pauses and the
    ledger's coverage at a checkpoint taken after the last change. `warm_s` None: cold."""
    (ps, workers), changes = sizes[0], sizes[1:]
    job = LocalJob(task=task, mode=mode, num_ps=ps, num_workers=workers, epochs=1000,
                   checkpoint_dir=Path(tempfile.mkdtemp(dir=work)), log_dir=work / "logs",
                   extra_env={"OMP_NUM_THREADS": "1"})
    measured = Measured()
    job.start()
    try:
        job.wait_step(WARMUP_STEP, timeout=300)
        for to_ps, to_workers in changes:
            added = ((to_workers - job.num_workers) + (to_ps - job.num_ps) if in_place
                     else to_ps + to_workers)
            if added > 0 and warm_s is not None:
                job.prewarm(added)
                time.sleep(warm_s)  # torch loads in the standby processes meanwhile
            if in_place:
                record = job.resize_in_place(to_workers, timeout=300, num_ps=to_ps)
                measured.lost.append(float(record["switch_s"]))
            else:
                record = job.resize(to_ps, to_workers, timeout=300)
                measured.lost.append(float(record["seconds"]))
            measured.pauses.append(float(record["seconds"]))
            job.wait_step(int(record["at_step"]) + STEPS_BETWEEN, timeout=300)
        job.checkpoint()
        summary = job.summary()
    finally:
        job.stop()
        job.release_standby()
    return measured, summary


def report(results: dict[str, dict[str, dict[str, Measured]]], repeated: int, skipped: int
           ) -> dict[str, Any]:
    """The --json object: medians by mode, change and path (None where not measured)."""
    modes: dict[str, Any] = {}
    for mode, changes in results.items():
        modes[mode] = {change: {f"{path}_s": median(measured.pauses)
                                for path, measured in paths.items()}
                       for change, paths in changes.items()}
    return {"modes": modes, "samples_repeated": repeated, "samples_skipped": skipped}


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {load:.1f} at start, Python {platform.python_version()}, "
            f"torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}")


def table(results: dict[str, dict[str, dict[str, Measured]]], title: str) -> Table:
    out = Table(title=title)
    for name in ("mode", "change", "path", "median pause s", "pauses s", "median lost s",
                 "vs restart"):
        out.add_column(name, justify="left" if name in ("mode", "change", "path") else "right")
    for mode, changes in results.items():
        for change, paths in changes.items():
            restart = median(paths["restart"].pauses)
            for path, measured in paths.items():
                pause = median(measured.pauses)
                if pause is None:
                    out.add_row(mode, change, path, "not built", "-", "-", "-")
                    continue
                lost = median(measured.lost)
                ratio = f"{pause / restart:.2f}x" if restart else "-"
                out.add_row(mode, change, path, f"{pause:.2f}",
                            ", ".join(f"{p:.2f}" for p in measured.pauses),
                            "-" if lost is None else f"{lost:.3f}",
                            "baseline" if path == "restart" else ratio)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="mlp")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--repeats", type=int, default=1, help="jobs per (mode, change, path)")
    parser.add_argument("--warm-s", type=float, default=8.0,
                        help="seconds the standby processes get to load torch")
    parser.add_argument("--cold", action="store_true",
                        help="start every new process cold (no standby pool)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    console = Console(width=110, file=sys.stderr if args.json else sys.stdout)
    where = machine()
    console.print(f"[bold]machine:[/] {where}")
    work = Path(tempfile.mkdtemp(prefix="optimus-bench-resize-"))
    results: dict[str, dict[str, dict[str, Measured]]] = {}
    repeated = skipped = 0
    for _ in range(args.repeats):
        for mode in args.modes:
            ps = 0 if mode == "allreduce" else 1
            plans = {"worker_change": [(ps, w) for w in WORKER_CHANGE]}
            if mode != "allreduce":
                plans["ps_change"] = [(p, PS_CHANGE_WORKERS) for p in PS_CHANGE]
            for change, sizes in plans.items():
                paths = results.setdefault(mode, {}).setdefault(
                    change, {"in_place": Measured(), "restart": Measured()})
                for path in ("in_place", "restart"):
                    in_place_modes = (contract.IN_PLACE_WORKER_CHANGE_MODES
                                      if change == "worker_change"
                                      else contract.IN_PLACE_PS_CHANGE_MODES)
                    if path == "in_place" and mode not in in_place_modes:
                        continue
                    console.print(f"{mode}, {change} {' -> '.join(map(str, sizes))}, {path}")
                    measured, summary = run_job(args.task, mode, sizes, path == "in_place",
                                                None if args.cold else args.warm_s, work)
                    paths[path].pauses += measured.pauses
                    paths[path].lost += measured.lost
                    repeated += int(summary["samples_repeated"])
                    skipped += int(summary["samples_skipped"])
    console.print(table(results, f"Resize pause (request to the first step at the new size), "
                        f"task {args.task}, {args.repeats} run(s), "
                        f"{'cold' if args.cold else 'warm'} processes"))
    console.print(f"samples repeated: {repeated}, skipped: {skipped} (all jobs' ledgers)")
    console.print(f"[bold]machine:[/] {where}")
    if args.json:
        print(json.dumps(report(results, repeated, skipped)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

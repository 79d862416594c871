"""How fast do the PyTorch workers (optimus_worker) train, and what does a resize cost?

Throughput. For w = 1, 2, 4 workers, one job of the same task (default: the shipped
``cnn`` example, global batch 32) runs in each mode as local processes on 127.0.0.1
(optimus_worker.local): ps-sync and ps-async with one PS, allreduce (DDP over gloo). After
a warm-up (the chief past step 20), the workers' own ``optimus_worker_samples_total``
counters are scraped from their metrics ports twice, --window seconds apart; throughput =
the increase of their sum / the time between the scrapes. Ratios are against allreduce at
the same w, measured in the same run. Periodic checkpoints stay on (every 50 steps), as in
a real job.

Resize overhead. A ps-sync job on 1 PS x 2 workers is resized to 2 PS x 3 workers with
the operator's protocol (POST /checkpoint to the chief, SIGTERM to every task, the next
generation resumes from the checkpoint); the overhead is the time from the request to the
new generation's first finished step (checkpoint + restart + first step), measured with
cold processes (what a new pod costs) and with warm standby processes (the local runner's
pool, torch already loaded). --repeats resizes each, the median is reported.

Run from the repository root:  .venv/bin/python benchmarks/workers.py [--window 8]
The plot goes to benchmarks/out/workers.png, the numbers to benchmarks/out/workers.json.
The machine's load average is printed: on a shared machine, other work skews the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from optimus_worker import contract
from optimus_worker.local import LocalJob
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

OUT = Path(__file__).resolve().parent / "out"
MODES: tuple[contract.Mode, ...] = ("allreduce", "ps-sync", "ps-async")
WARMUP_STEP = 20


def samples_total(job: LocalJob) -> float:
    total = 0.0
    for proc in job.processes:
        if proc.role != "worker":
            continue
        url = f"http://127.0.0.1:{proc.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as answer:
            text = answer.read().decode()
        total += sum(s.value for family in text_string_to_metric_families(text)
                     for s in family.samples
                     if s.name == f"{contract.METRIC_SAMPLES}_total")
    return total


def throughput(task: str, mode: contract.Mode, workers: int, batch: int, window: float,
               work: Path) -> float:
    """Samples per second of the whole job, from the workers' own counters."""
    job = LocalJob(task=task, mode=mode, num_ps=0 if mode == "allreduce" else 1,
                   num_workers=workers, epochs=1000, global_batch_size=batch,
                   checkpoint_dir=Path(tempfile.mkdtemp(dir=work)), log_dir=work / "logs")
    job.start()
    try:
        job.wait_step(WARMUP_STEP, timeout=300)
        first, started = samples_total(job), time.monotonic()
        time.sleep(window)
        last, ended = samples_total(job), time.monotonic()
    finally:
        job.stop()
    return (last - first) / (ended - started)


def resize_overhead(task: str, batch: int, warm: bool, work: Path) -> float:
    job = LocalJob(task=task, mode="ps-sync", num_ps=1, num_workers=2, epochs=1000,
                   global_batch_size=batch, checkpoint_dir=Path(tempfile.mkdtemp(dir=work)),
                   log_dir=work / "logs")
    job.start()
    try:
        if warm:
            job.prewarm(5)
        job.wait_step(WARMUP_STEP, timeout=300)
        if warm:  # the standby processes have loaded torch before the resize is asked for
            time.sleep(8.0)
        record = job.resize(2, 3, timeout=300)
    finally:
        job.stop()
        job.release_standby()
    return float(record["seconds"])


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {load:.1f} at start, Python {platform.python_version()}, "
            f"torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}")


def plot(results: dict[str, dict[int, float]], workers: list[int]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(results)
    for i, (mode, by_w) in enumerate(results.items()):
        ax.bar([x + i * width for x in range(len(workers))], [by_w[w] for w in workers],
               width, label=mode)
    ax.set_xticks([x + width for x in range(len(workers))], [f"w = {w}" for w in workers])
    ax.set_ylabel("samples / s (whole job)")
    ax.set_title("optimus_worker throughput by mode")
    ax.legend()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "workers.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cnn")
    parser.add_argument("--batch", type=int, default=32, help="global batch size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--window", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="resizes per variant")
    args = parser.parse_args()
    console = Console(width=100)
    where = machine()
    console.print(f"[bold]machine:[/] {where}")
    work = Path(tempfile.mkdtemp(prefix="optimus-bench-workers-"))
    results: dict[str, dict[int, float]] = {mode: {} for mode in MODES}
    with console.status("measuring") as status:
        for w in args.workers:
            for mode in MODES:
                status.update(f"throughput: {mode}, w = {w}")
                results[mode][w] = throughput(args.task, mode, w, args.batch, args.window, work)
        overhead: dict[str, list[float]] = {"cold": [], "warm": []}
        for _ in range(args.repeats):
            for kind in overhead:
                status.update(f"resize overhead ({kind})")
                overhead[kind].append(resize_overhead(args.task, args.batch, kind == "warm",
                                                      work))

    table = Table(title=f"Throughput, task {args.task}, global batch {args.batch} "
                  f"(samples/s; ratio to allreduce at the same w)")
    table.add_column("mode")
    for w in args.workers:
        table.add_column(f"w = {w}", justify="right")
    for mode in MODES:
        cells = [f"{results[mode][w]:.0f} ({results[mode][w] / results['allreduce'][w]:.2f}x)"
                 for w in args.workers]
        table.add_row(mode + (" (baseline)" if mode == "allreduce" else ""), *cells)
    console.print(table)
    resize = Table(title="Resize overhead, ps-sync 1x2 -> 2x3 (checkpoint + restart + first "
                   "step)")
    resize.add_column("processes")
    resize.add_column("median s", justify="right")
    resize.add_column("runs s", justify="right")
    for kind, runs in overhead.items():
        resize.add_row(kind, f"{statistics.median(runs):.2f}",
                       ", ".join(f"{r:.2f}" for r in runs))
    console.print(resize)
    path = plot(results, args.workers)
    (OUT / "workers.json").write_text(json.dumps({
        "machine": where, "task": args.task, "batch": args.batch,
        "throughput": {m: {str(w): v for w, v in r.items()} for m, r in results.items()},
        "resize_seconds": overhead,
    }, indent=2))
    console.print(f"plot: {path}")


if __name__ == "__main__":
    main()

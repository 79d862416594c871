"""Benchmark: Optimus against DRF, Tetris, Tiresias and fixed allocation on a realistic trace.

Method
------
* Job physics from real measurements: ../shared/data/ps-speed/measured.csv (402 MXNet
  dist_sync runs of four models over PS and worker counts; read at run time from
  $OPTIMUS_SHARED_DATA or ../shared/data next to the repository), failing runs dropped
  explicitly, interpolated between measured configurations (optimus.simulation.speeds).
* Trace (optimus.simulation.generator.generate_trace): N jobs, Poisson arrivals, a model
  drawn uniformly, 20-80 epochs to converge, a run time of 0.5-4 h at the job's requested
  configuration (1, 2, 4 or 8 workers and as many PS; what the `fixed`, Tetris, Tiresias
  baselines run and the ratio DRF keeps). The arrival rate is set so that the offered load
  (GPU-hours at the requested sizes per GPU-hour of the cluster, over the arrival window)
  is `--load`: the cluster is contended.
* Cluster: `--nodes` nodes x 8 GPUs, 64 CPUs, 512 GiB, 10 Gb/s; a PS asks for 2 CPUs, a
  worker for 1 GPU and 4 CPUs.
* Every policy runs through the operator's own allocate/place (optimus.scheduling); the
  Optimus policies learn their speed and loss models online from noisy observations
  (5% speed noise, 1% loss noise; loss model refitted at 3, 6, 12, 24... points),
  probing new jobs first; `oracle` rows give them the
  true models instead. A start or resize costs `restart cost` seconds without progress.
* Placement: every policy is placed by Optimus's own placement (fewest nodes), except in
  the sweep's "paper setting" rows, where DRF is placed as the Kubernetes default
  scheduler would (`spread_place`: each pod on the least allocated node), as the paper's
  baselines were; a job spread over more nodes than the fewest pays the physics' network
  slowdown. Optimus keeps its own placement in every row.
* Ratios are a baseline's metric over optimus's, measured in the same run on the same
  trace, then summarised over seeds (geometric mean, with the range); > 1 means optimus
  is better.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from optimus.cli_simulate import plot_jct_cdf
from optimus.simulation.engine import Cluster, SimulationConfig, simulate
from optimus.simulation.generator import generate_trace
from optimus.simulation.inputs import SpeedTable, TraceJob, parse_speed_table
from optimus.simulation.metrics import PolicyMetrics, summarise
from optimus.simulation.speeds import SpeedSurface, surface_from_rows
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"
#: the comparisons refit learned loss models at 3, 6, 12, 24... points (the simulator's
#: default, 3, 9, 27..., is for speed; --scale uses it)
LOSS_REFIT_GROWTH = 2.0
POLICIES = ("optimus", "optimus-paper", "drf", "tetris", "tiresias", "fixed")
BASELINES = ("drf", "tetris", "tiresias", "fixed", "optimus-paper")
console = Console(width=None if Console().is_terminal else 132)


def shared_data() -> Path:
    env = os.environ.get("OPTIMUS_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def load_table() -> SpeedTable | None:
    path = shared_data() / "ps-speed" / "measured.csv"
    if not path.is_file():
        console.print(f"[red]{path} is missing: this benchmark needs the real measurements. "
                      "Set OPTIMUS_SHARED_DATA to the folder holding ps-speed/measured.csv.")
        return None
    return parse_speed_table(path.read_text(), str(path))


def make_trace(table: SpeedTable, surfaces: dict[str, SpeedSurface], jobs: int, seed: int,
               load: float, gpus: float) -> tuple[tuple[TraceJob, ...], float]:
    """A trace whose offered load at the requested sizes is `load` (module docstring)."""
    unit = generate_trace(table, jobs=jobs, mean_interarrival=1.0, seed=seed)
    gpu_seconds = sum(
        (job.workers or 1) * job.epochs * job.dataset_size
        / surfaces[job.model].samples_per_sec(job.ps or 1, job.workers or 1) for job in unit)
    span = max(job.arrival for job in unit) or 1.0
    scale = gpu_seconds / (load * gpus * span)
    trace = tuple(replace(job, arrival=round(job.arrival * scale, 3)) for job in unit)
    return trace, scale


def run(trace: Sequence[TraceJob], surfaces: dict[str, SpeedSurface], cluster: Cluster,
        policy: str, seed: int, *, interval: float = 60.0, restart_cost: float = 30.0,
        oracle: bool = False, options: dict[str, dict[str, Any]] | None = None,
        baseline_placement: str = "optimus") -> tuple[PolicyMetrics, list[float]]:
    config = SimulationConfig(policy=policy, interval=interval, restart_cost=restart_cost,
                              seed=seed, oracle=oracle, loss_refit_growth=LOSS_REFIT_GROWTH,
                              policy_options=(options or {}).get(policy, {}),
                              baseline_placement=baseline_placement)
    result = simulate(trace, surfaces, cluster, config)
    return summarise(result), [o.jct for o in result.outcomes]


def geomean(values: Sequence[float]) -> float:
    return float(math.exp(np.mean(np.log(values))))


def ratio_cell(values: Sequence[float]) -> str:
    return f"{geomean(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--load", type=float, default=3.0,
                        help="offered GPU load at the requested sizes (default 3)")
    parser.add_argument("--quick", action="store_true", help="main comparison only")
    parser.add_argument("--scale", action="store_true",
                        help="only time 1,000 jobs on 64 nodes per policy")
    parser.add_argument("--decompose", action="store_true",
                        help="only where the JCT goes, per third of the jobs (seed 0)")
    parser.add_argument("--learning", action="store_true",
                        help="only optimus learned vs oracle, with the ablations of what "
                             "the learned policy knows (pooling, priors, value band)")
    args = parser.parse_args(argv)
    table = load_table()
    if table is None:
        return 2
    if args.scale:
        return scale(table)
    for dropped in table.dropped:
        console.print(f"dropped {table.source} line {dropped.row.line}: {dropped.reason}")
    surfaces = {model: surface_from_rows(rows) for model, rows in table.rows.items()}
    cluster = Cluster.uniform(args.nodes, 8, 64)
    gpus = cluster.total.gpu
    if args.decompose:
        trace = make_trace(table, surfaces, args.jobs, 0, args.load, gpus)[0]
        decompose(trace, surfaces, cluster)
        return 0
    if args.learning:
        started = time.perf_counter()
        learned = learning([make_trace(table, surfaces, args.jobs, seed, args.load, gpus)[0]
                            for seed in range(args.seeds)], surfaces, cluster)
        console.print(f"{time.perf_counter() - started:.0f} s of simulation")
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "scheduling-learning.json").write_text(json.dumps(learned, indent=2))
        return 0
    seeds = list(range(args.seeds))
    traces = {seed: make_trace(table, surfaces, args.jobs, seed, args.load, gpus)
              for seed in seeds}
    started = time.perf_counter()
    record: dict[str, object] = {"jobs": args.jobs, "nodes": args.nodes, "load": args.load,
                                 "seeds": seeds}

    # ---- the main comparison: every policy, learned models, interval 60 s, restart 30 s
    main_runs: dict[str, list[PolicyMetrics]] = {name: [] for name in POLICIES}
    cdf: dict[str, list[float]] = {}
    for seed in seeds:
        for name in POLICIES:
            metrics, jcts = run(traces[seed][0], surfaces, cluster, name, seed)
            main_runs[name].append(metrics)
            if seed == seeds[0]:
                cdf[name] = jcts
            console.print(f"  seed {seed} {name:<14} avg JCT {metrics.avg_jct / 3600:6.2f} h"
                          f"  makespan {metrics.makespan / 3600:6.2f} h", style="dim")
    report = Table(title=(
        f"{args.jobs} jobs (measured.csv models), {args.nodes} nodes x 8 GPUs, load "
        f"{args.load:g}, interval 60 s, restart 30 s, learned models, {len(seeds)} seeds"))
    for column in ("policy", "avg JCT (h)", "makespan (h)", "GPU util", "resizes",
                   "avg JCT / optimus", "makespan / optimus"):
        report.add_column(column, justify="left" if column == "policy" else "right")
    summary: dict[str, dict[str, float]] = {}
    for name in POLICIES:
        runs = main_runs[name]
        jct_ratio = [r.avg_jct / o.avg_jct for r, o in zip(runs, main_runs["optimus"],
                                                            strict=True)]
        span_ratio = [r.makespan / o.makespan for r, o in zip(runs, main_runs["optimus"],
                                                               strict=True)]
        summary[name] = {"avg_jct_h": float(np.mean([r.avg_jct for r in runs])) / 3600,
                         "makespan_h": float(np.mean([r.makespan for r in runs])) / 3600,
                         "avg_jct_ratio": geomean(jct_ratio),
                         "makespan_ratio": geomean(span_ratio)}
        report.add_row(name, f"{summary[name]['avg_jct_h']:.2f}",
                       f"{summary[name]['makespan_h']:.2f}",
                       f"{np.mean([r.utilization for r in runs]):.0%}",
                       f"{np.mean([r.resizes for r in runs]):.0f}",
                       ratio_cell(jct_ratio), ratio_cell(span_ratio))
    console.print(report)
    record["main"] = summary
    drf = summary["drf"]
    console.print(
        f"target (paper): DRF/optimus avg JCT >= 2.4x: {drf['avg_jct_ratio']:.2f}x "
        f"{'met' if drf['avg_jct_ratio'] >= 2.4 else 'NOT met'}; makespan >= 1.6x: "
        f"{drf['makespan_ratio']:.2f}x {'met' if drf['makespan_ratio'] >= 1.6 else 'NOT met'};"
        f" better than tetris and tiresias: "
        f"{all(summary[n]['avg_jct_ratio'] > 1 for n in ('tetris', 'tiresias'))}")
    OUT.mkdir(parents=True, exist_ok=True)
    plot_jct_cdf(cdf, OUT / "scheduling-jct-cdf.png",
                 title=f"JCT CDF, {args.jobs} jobs on {args.nodes} nodes (seed {seeds[0]})")

    if not args.quick:
        record["sweeps"] = sweeps(table, surfaces, cluster, seeds, args.jobs, args.load)
    elapsed = time.perf_counter() - started
    console.print(f"machine: {platform.machine()} {platform.processor() or ''} "
                  f"{os.cpu_count()} cpus, python {platform.python_version()}; "
                  f"{elapsed:.0f} s of simulation")
    record["seconds"] = elapsed
    (OUT / "scheduling.json").write_text(json.dumps(record, indent=2))
    console.print(f"plots and numbers in {OUT}")
    return 0


def decompose(trace: Sequence[TraceJob], surfaces: dict[str, SpeedSurface],
              cluster: Cluster, seed: int = 0) -> None:
    """Where each policy's JCT goes: per third of the jobs (split by their DRF JCT), the
    mean JCT, time queued before the first start, restart downtime, resizes and GPU-hours,
    for DRF and for optimus with learned and with oracle models."""
    runs = {}
    for label, policy, oracle in (("drf", "drf", False), ("optimus learned", "optimus", False),
                                  ("optimus oracle", "optimus", True)):
        config = SimulationConfig(policy=policy, interval=60.0, restart_cost=30.0, seed=seed,
                                  oracle=oracle, loss_refit_growth=LOSS_REFIT_GROWTH)
        runs[label] = {o.job: o for o in simulate(trace, surfaces, cluster, config).outcomes}
    by_drf = sorted(runs["drf"], key=lambda job: runs["drf"][job].jct)
    n = len(by_drf)
    report = Table(title=f"where the JCT goes, seed {seed}, per job means (h)")
    for column in ("jobs", "policy", "JCT", "queued", "restarting", "resizes", "GPU-h",
                   "optimus learned beats DRF"):
        report.add_column(column, justify="left" if column in ("jobs", "policy") else "right")
    for lo, hi, name in ((0, n // 3, "short third"), (n // 3, 2 * n // 3, "middle third"),
                         (2 * n // 3, n, "long third")):
        chosen = by_drf[lo:hi]
        wins = sum(runs["optimus learned"][j].jct < runs["drf"][j].jct for j in chosen)
        for label, outcomes in runs.items():
            rows = [outcomes[j] for j in chosen]
            report.add_row(
                name, label, f"{np.mean([o.jct for o in rows]) / 3600:.2f}",
                f"{np.mean([(o.start or o.arrival) - o.arrival for o in rows]) / 3600:.2f}",
                f"{np.mean([o.restart_seconds for o in rows]) / 3600:.3f}",
                f"{np.mean([o.resizes for o in rows]):.1f}",
                f"{np.mean([o.gpu_seconds for o in rows]) / 3600:.2f}",
                f"{wins}/{len(chosen)}" if label == "optimus learned" else "")
    console.print(report)


#: the learned policy's rows: (label, oracle, SimulationConfig fields); "full" uses every
#: lever, each ablation switches one off, "none" all (the learned policy before issue 15)
LEARNING_ROWS: tuple[tuple[str, bool, dict[str, Any]], ...] = (
    ("oracle", True, {}),
    ("learned, full", False, {}),
    ("no value of information (bands)", False, {"value_of_information": False}),
    ("flat 20% hysteresis, no bands", False, {"value_of_information": False,
                                             "policy_options": {"min_relative_gain": 0.2}}),
    ("no calibration by measurements", False, {"calibrate_speed": False}),
    ("no pooling (speed prior)", False, {"pool_speed": False}),
    ("no convergence prior", False, {"convergence_prior": False}),
    ("no white-box prior", False, {"white_box_prior": False}),
    ("none (before)", False, {"pool_speed": False, "convergence_prior": False,
                              "value_of_information": False, "white_box_prior": False}),
)
#: the causes of a resize the simulator tells apart (optimus.simulation.engine.resize_cause)
RESIZE_CAUSES = ("probe", "move", "squeeze", "placement")


def learning(traces: Sequence[Sequence[TraceJob]], surfaces: dict[str, SpeedSurface],
             cluster: Cluster) -> dict[str, Any]:
    """Optimus with learned models against oracle models on the same traces, and the
    share of each lever of what the learned policy knows (LEARNING_ROWS): average JCT, its
    ratio to oracle (geometric mean over seeds, range), resizes per job and their causes
    (probes, the policy's moves, squeezes to make room, placement changes)."""
    rows: dict[str, list[tuple[float, float, dict[str, float]]]] = {
        label: [] for label, _, _ in LEARNING_ROWS}
    for seed, trace in enumerate(traces):
        for label, oracle, fields in LEARNING_ROWS:
            config = SimulationConfig(policy="optimus", interval=60.0, restart_cost=30.0,
                                      seed=seed, oracle=oracle,
                                      loss_refit_growth=LOSS_REFIT_GROWTH, **fields)
            result = simulate(trace, surfaces, cluster, config)
            metrics = summarise(result)
            causes = {cause: sum(o.resize_causes.get(cause, 0) for o in result.outcomes)
                      / len(trace) for cause in RESIZE_CAUSES}
            rows[label].append((metrics.avg_jct, metrics.resizes / len(trace), causes))
            console.print(f"  seed {seed} {label:<32} avg JCT {metrics.avg_jct / 3600:6.3f} h"
                          f"  resizes/job {metrics.resizes / len(trace):5.2f}  ("
                          + ", ".join(f"{c} {causes[c]:.2f}" for c in RESIZE_CAUSES) + ")",
                          style="dim")
    report = Table(title=f"optimus learned vs oracle, {len(traces[0])} jobs, "
                         f"{len(traces)} seeds, interval 60 s, restart 30 s")
    for column in ("knowledge", "avg JCT (h)", "JCT / oracle", "resizes / job",
                   *(f"{c} / job" for c in RESIZE_CAUSES)):
        report.add_column(column, justify="left" if column == "knowledge" else "right")
    oracle_jct = [jct for jct, _, _ in rows["oracle"]]
    out: dict[str, Any] = {}
    for label, _, _ in LEARNING_ROWS:
        jcts = [jct for jct, _, _ in rows[label]]
        ratios = [j / o for j, o in zip(jcts, oracle_jct, strict=True)]
        causes = {c: float(np.mean([r[2][c] for r in rows[label]])) for c in RESIZE_CAUSES}
        resizes = float(np.mean([r for _, r, _ in rows[label]]))
        report.add_row(label, f"{np.mean(jcts) / 3600:.3f}", ratio_cell(ratios),
                       f"{resizes:.2f}", *(f"{causes[c]:.2f}" for c in RESIZE_CAUSES))
        out[label] = {"avg_jct_h": float(np.mean(jcts)) / 3600,
                      "jct_vs_oracle": geomean(ratios), "resizes_per_job": resizes,
                      "per_seed": [{"avg_jct_h": j / 3600, "jct_vs_oracle": r,
                                    "resizes_per_job": z}
                                   for (j, z, _), r in zip(rows[label], ratios, strict=True)],
                      "resize_causes_per_job": causes}
    console.print(report)
    full = out["learned, full"]
    console.print(
        f"target: learned avg JCT <= 1.05x oracle: {full['jct_vs_oracle']:.3f}x "
        f"{'met' if full['jct_vs_oracle'] <= 1.05 else 'NOT met'}; <= 3 resizes a job: "
        f"{full['resizes_per_job']:.2f} {'met' if full['resizes_per_job'] <= 3 else 'NOT met'}")
    console.print(f"machine: {platform.machine()} {os.cpu_count()} cpus, "
                  f"python {platform.python_version()}")
    return out


#: OptimusConfig options that the sweep tries on top of the default optimus policy: a
#: restart must pay for 10x its nominal cost (hysteresis against model noise) and a grant
#: must have a minimum gain (no PS or worker for a predicted sliver of speed)
TUNED = {"optimus": {"restart_cost_seconds": 300.0, "min_gain": 1e-3}}


def sweeps(table: SpeedTable, surfaces: dict[str, SpeedSurface], cluster: Cluster,
           seeds: Sequence[int], jobs: int, load: float) -> dict[str, object]:
    """How the ratio to DRF moves with the interval, the restart cost and the load; oracle
    vs learned models; optimus (JCT-aware) vs optimus-paper; a tuned OptimusConfig; and the
    paper's setting, DRF placed by the Kubernetes default scheduler's spreading."""
    out: dict[str, object] = {}
    grid = Table(title="DRF over optimus, and optimus-paper over optimus, as the setting "
                       "changes (geometric mean over seeds, range in brackets)")
    for column in ("setting", "drf / optimus JCT", "drf / optimus makespan",
                   "paper / optimus JCT", "optimus avg JCT (h)"):
        grid.add_column(column, justify="left" if column == "setting" else "right")
    # (label, load, interval, restart cost, oracle, policy options, run optimus-paper too,
    #  placement of DRF: "optimus" as optimus's own, "spread" as the default scheduler's)
    settings: list[tuple[str, float, float, float, bool, dict[str, dict[str, Any]], bool,
                         str]] = [
        ("main: interval 60 s, restart 30 s", load, 60.0, 30.0, False, {}, True, "optimus"),
        ("interval 600 s (the paper's)", load, 600.0, 30.0, False, {}, True, "optimus"),
        ("restart cost 0 s", load, 60.0, 0.0, False, {}, True, "optimus"),
        ("restart cost 120 s", load, 60.0, 120.0, False, {}, False, "optimus"),
        ("restart cost 300 s", load, 60.0, 300.0, False, {}, False, "optimus"),
        ("oracle models", load, 60.0, 30.0, True, {}, True, "optimus"),
        ("optimus tuned (restart hint 300 s, min_gain 1e-3)", load, 60.0, 30.0, False, TUNED,
         False, "optimus"),
        (f"load {load / 2:g}", load / 2, 60.0, 30.0, False, {}, False, "optimus"),
        (f"load {load * 2:g}", load * 2, 60.0, 30.0, False, {}, False, "optimus"),
        ("paper setting: baselines spread by the default scheduler", load, 60.0, 30.0, False,
         {}, False, "spread"),
        ("paper setting, oracle models", load, 60.0, 30.0, True, {}, False, "spread"),
    ]
    gpus = cluster.total.gpu
    for label, setting_load, interval, cost, oracle, options, with_paper, placement in settings:
        names = ["optimus", "drf"] + (["optimus-paper"] if with_paper else [])
        rows: dict[str, list[PolicyMetrics]] = {name: [] for name in names}
        for seed in seeds:
            trace, _ = make_trace(table, surfaces, jobs, seed, setting_load, gpus)
            for name in rows:
                metrics, _ = run(trace, surfaces, cluster, name, seed, interval=interval,
                                 restart_cost=cost, oracle=oracle, options=options,
                                 baseline_placement=placement)
                rows[name].append(metrics)
        opt = rows["optimus"]
        jct = [d.avg_jct / o.avg_jct for d, o in zip(rows["drf"], opt, strict=True)]
        span = [d.makespan / o.makespan for d, o in zip(rows["drf"], opt, strict=True)]
        paper = [p.avg_jct / o.avg_jct
                 for p, o in zip(rows.get("optimus-paper", []), opt, strict=False)]
        grid.add_row(label, ratio_cell(jct), ratio_cell(span),
                     ratio_cell(paper) if paper else "-",
                     f"{np.mean([o.avg_jct for o in opt]) / 3600:.2f}")
        console.print(f"  {label}: drf/optimus {geomean(jct):.2f}x", style="dim")
        out[label] = {"drf_jct_ratio": geomean(jct), "drf_makespan_ratio": geomean(span),
                      "paper_jct_ratio": geomean(paper) if paper else None,
                      "optimus_avg_jct_h": float(np.mean([o.avg_jct for o in opt])) / 3600,
                      "drf_avg_jct_h": float(np.mean([d.avg_jct for d in rows["drf"]])) / 3600,
                      "drf_placement": placement}
    console.print(grid)
    return out


def scale(table: SpeedTable) -> int:
    """Time one whole trace of 1,000 jobs on 64 nodes (512 GPUs) per policy."""
    surfaces = {model: surface_from_rows(rows) for model, rows in table.rows.items()}
    cluster = Cluster.uniform(64, 8, 64)
    trace, _ = make_trace(table, surfaces, 1000, 0, 3.0, cluster.total.gpu)
    grid = Table(title="1,000 jobs (measured.csv models, load 3) on 64 nodes x 8 GPUs, "
                       "interval 60 s, default loss refits (3, 9, 27...): time to simulate "
                       "the whole trace")
    for column in ("policy", "knowledge", "wall (s)", "CPU (s)", "rounds", "avg JCT (h)",
                   "makespan (h)"):
        grid.add_column(column, justify="left" if column in ("policy", "knowledge") else "right")
    for name, oracle in (("optimus", True), ("optimus", False), ("drf", False),
                         ("tiresias", False)):
        wall, cpu = time.perf_counter(), time.process_time()
        result = simulate(trace, surfaces, cluster, SimulationConfig(policy=name, oracle=oracle))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        metrics = summarise(result)
        grid.add_row(name, "oracle" if oracle else "learned", f"{wall:.1f}", f"{cpu:.1f}",
                     str(metrics.rounds), f"{metrics.avg_jct / 3600:.2f}",
                     f"{metrics.makespan / 3600:.2f}")
        console.print(f"  {name} {'oracle' if oracle else 'learned'}: {wall:.1f} s", style="dim")
    console.print(grid)
    console.print(f"machine: {platform.machine()} {os.cpu_count()} cpus, load average "
                  f"{os.getloadavg()[0]:.1f}, python {platform.python_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

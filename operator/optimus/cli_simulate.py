"""`optimus simulate`: run a job trace on a simulated cluster under each policy and compare.

The edge of optimus.simulation: this module reads the files, shows progress (rich, on
stderr), prints the table or the JSON, and draws the JCT CDF; the simulation itself is pure.
Without --trace it runs the project's default workload (optimus.simulation.generator, fixed
seed), so it works on a fresh machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimus.cli import InputError
from optimus.scheduling.policies import POLICY_NAMES, policy_traits

if TYPE_CHECKING:
    from optimus.simulation.engine import SimulationResult
    from optimus.simulation.inputs import SpeedTable, TraceJob
    from optimus.simulation.metrics import PolicyMetrics

#: every policy, in the order the tables list them
ALL_POLICIES = ("optimus", "drf", "tetris", "tiresias", "fixed", "optimus-paper")
#: the policies placed by Optimus's placement whatever --baseline-placement says
_OWN_PLACEMENT = ", ".join(n for n in POLICY_NAMES if policy_traits(n).optimus_placement)
_OTHERS = ", ".join(n for n in POLICY_NAMES if not policy_traits(n).optimus_placement)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="compare scheduling policies on a job trace over a simulated cluster",
        description=(
            "Run a trace of training jobs on a simulated cluster under each policy, with the "
            "operator's own models, allocator and placer, and compare JCT and makespan."),
    )
    parser.add_argument("--trace", type=Path, help="TRACE.csv: job,arrival,model,epochs,"
                        "dataset_size[,mode,batch_size,min_ps,max_ps,min_workers,max_workers,"
                        "gpus_per_worker,loss_b0,loss_b1,loss_b2,ps,workers] (default: a "
                        "generated trace)")
    parser.add_argument("--speeds", type=Path, help="SPEEDS.csv: model,ps,workers,"
                        "samples_per_sec[,batch_size] (default: the generated speed table)")
    parser.add_argument("--nodes", type=int, default=8, help="number of nodes (default 8)")
    parser.add_argument("--gpus-per-node", type=float, default=8.0, help="default 8")
    parser.add_argument("--cpus-per-node", type=float, default=64.0, help="default 64")
    parser.add_argument("--memory-per-node", type=float, default=512.0,
                        help="GiB per node (default 512)")
    parser.add_argument("--bandwidth", type=float, default=10.0,
                        help="network bandwidth per node in Gb/s (default 10)")
    parser.add_argument("--interval", type=float, default=60.0,
                        help="scheduling interval in seconds (default 60)")
    parser.add_argument("--restart-cost", type=float, default=30.0,
                        help="seconds without progress when a job starts or is resized "
                             "(default 30)")
    parser.add_argument("--in-place-cost", type=float, default=None,
                        help="seconds without progress when a job whose mode changes its "
                             "workers in place (all-reduce) changes its worker count "
                             "(default: the restart cost)")
    parser.add_argument("--policy", default=",".join(ALL_POLICIES),
                        help=f"comma-separated policies (default {','.join(ALL_POLICIES)})")
    parser.add_argument("--seed", type=int, default=0, help="observation-noise seed")
    parser.add_argument("--oracle", action="store_true",
                        help="give every policy the true speed and convergence")
    parser.add_argument("--compare-oracle", action="store_true",
                        help="run each policy twice on the same trace in the same run, with "
                             "models learned online and with the true ones (--oracle), and "
                             "print both rows, resizes per job and learned / oracle")
    parser.add_argument("--baseline-placement", default="optimus", metavar="{optimus,spread}",
                        help=f"placement of {_OTHERS}: 'optimus' (the "
                             "default) places them like optimus (fewest nodes, even spread); "
                             "'spread' places each of their pods on the least allocated node, "
                             "as the Kubernetes default scheduler does and as in the Optimus "
                             "paper's experiments (a job spread over more nodes pays a network "
                             f"slowdown); {_OWN_PLACEMENT} always use their own")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--plot", type=Path, help="write the JCT CDF per policy (PNG)")
    parser.set_defaults(func=run)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise InputError(f"{path}: cannot read the {what} ({error.strerror}); "
                         f"give an existing CSV file") from None


def _positive(value: float, flag: str, minimum: float = 0.0, strict: bool = True) -> None:
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        bound = "greater than" if strict else "at least"
        raise InputError(f"{flag} is {value:g}; it must be {bound} {minimum:g}")


def load_workload(trace: Path | None, speeds: Path | None) -> tuple[SpeedTable,
                                                                   tuple[TraceJob, ...]]:
    """The speed table and the trace from files, or the generated defaults."""
    from optimus.simulation.generator import default_speed_table, generate_trace
    from optimus.simulation.inputs import SimulationInputError, parse_speed_table, parse_trace

    try:
        table = (parse_speed_table(_read(speeds, "speed table"), str(speeds)) if speeds
                 else default_speed_table())
        jobs = (parse_trace(_read(trace, "trace"), table, str(trace)) if trace
                else generate_trace(table))
    except SimulationInputError as error:
        raise InputError(str(error)) from None
    return table, jobs


def run(args: argparse.Namespace) -> int:
    from optimus.round import BASELINE_PLACEMENTS
    from optimus.simulation.engine import (
        Cluster,
        SimulationConfig,
        check_fits,
    )
    from optimus.simulation.inputs import SimulationInputError
    from optimus.simulation.metrics import summarise
    from optimus.simulation.speeds import surface_from_rows

    policies = [name.strip() for name in args.policy.split(",") if name.strip()]
    unknown = [name for name in policies if name not in ALL_POLICIES]
    if unknown or not policies:
        raise InputError(f"--policy names {', '.join(unknown) or 'nothing'}; use a comma-"
                         f"separated list of {', '.join(ALL_POLICIES)}")
    if args.baseline_placement not in BASELINE_PLACEMENTS:
        raise InputError(f"--baseline-placement is {args.baseline_placement!r}; use one of "
                         f"{', '.join(BASELINE_PLACEMENTS)}")
    if args.oracle and args.compare_oracle:
        raise InputError("--oracle and --compare-oracle exclude each other: --compare-oracle "
                         "already runs every policy with the true models too")
    if args.nodes < 1:
        raise InputError(f"--nodes is {args.nodes}; give at least 1 node")
    _positive(args.gpus_per_node, "--gpus-per-node", strict=False)
    _positive(args.cpus_per_node, "--cpus-per-node")
    _positive(args.memory_per_node, "--memory-per-node")
    _positive(args.bandwidth, "--bandwidth")
    _positive(args.interval, "--interval")
    _positive(args.restart_cost, "--restart-cost", strict=False)
    if args.in_place_cost is not None:
        _positive(args.in_place_cost, "--in-place-cost", strict=False)
    table, jobs = load_workload(args.trace, args.speeds)
    surfaces = {model: surface_from_rows(rows) for model, rows in table.rows.items()}
    cluster = Cluster.uniform(args.nodes, args.gpus_per_node, args.cpus_per_node,
                              memory_gib=args.memory_per_node, bandwidth_gbps=args.bandwidth)
    try:
        check_fits(jobs, surfaces, cluster, str(args.trace or "the default trace"))
    except SimulationInputError as error:
        raise InputError(str(error)) from None
    knowledge = (False, True) if args.compare_oracle else (args.oracle,)
    configs = {run_label(name, oracle, args.compare_oracle): SimulationConfig(
        policy=name, interval=args.interval, restart_cost=args.restart_cost,
        in_place_worker_change_cost=args.in_place_cost, seed=args.seed,
        oracle=oracle, baseline_placement=args.baseline_placement)
        for name in policies for oracle in knowledge}
    results = run_policies(jobs, surfaces, cluster, configs, progress=not args.json)
    metrics = {label: summarise(result) for label, result in results.items()}
    if args.plot:
        plot_jct_cdf({name: [o.jct for o in result.outcomes] for name, result in results.items()},
                     args.plot, title=f"JCT CDF, {len(jobs)} jobs on {args.nodes} nodes")
    compared = learned_vs_oracle(metrics, policies) if args.compare_oracle else None
    if args.json:
        document = metrics_json(metrics)
        if compared is not None:
            document["learned_vs_oracle"] = compared
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print_report(metrics, table, len(jobs), args, compared)
    return 0


#: the suffix of a policy's label in the tables when it ran with the true models beside
#: its learned run (--compare-oracle)
ORACLE_SUFFIX = " (oracle)"


def run_label(policy: str, oracle: bool, compare: bool) -> str:
    """A run's name in the tables and the JSON: the policy, with ORACLE_SUFFIX for its
    oracle run when both ran."""
    return policy + ORACLE_SUFFIX if compare and oracle else policy


def learned_vs_oracle(metrics: Mapping[str, PolicyMetrics],
                      policies: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Per policy, its learned run against its oracle run on the same trace: average JCT
    of each and their ratio (> 1: learning costs that much), resizes per job of each."""
    out: dict[str, dict[str, float | None]] = {}
    for name in policies:
        learned, oracle = metrics[name], metrics[name + ORACLE_SUFFIX]
        out[name] = {
            "avg_jct": _finite(learned.avg_jct),
            "oracle_avg_jct": _finite(oracle.avg_jct),
            "avg_jct_vs_oracle": _finite(learned.avg_jct / oracle.avg_jct
                                         if oracle.avg_jct > 0 else math.inf),
            "resizes_per_job": learned.resizes / learned.jobs if learned.jobs else 0.0,
            "oracle_resizes_per_job": oracle.resizes / oracle.jobs if oracle.jobs else 0.0,
        }
    return out


def run_policies(jobs: Sequence[TraceJob], surfaces: Mapping[str, Any], cluster: Any,
                 configs: Mapping[str, Any], *, progress: bool) -> dict[str, SimulationResult]:
    """Simulate each config (by its label) in turn, with a rich progress bar on stderr
    when asked."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from optimus.simulation.engine import simulate

    results: dict[str, SimulationResult] = {}
    with Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("jobs  t={task.fields[hours]:.1f} h"),
                  console=Console(stderr=True), disable=not progress, transient=False) as bar:
        for label, config in configs.items():
            task = bar.add_task(label, total=len(jobs), hours=0.0)

            def on_round(time: float, finished: int, _total: int, task: Any = task) -> None:
                bar.update(task, completed=finished, hours=time / 3600)

            results[label] = simulate(jobs, surfaces, cluster, config, on_round)
    return results


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def metrics_json(metrics: Mapping[str, PolicyMetrics]) -> dict[str, Any]:
    """{"policies": {name: {avg_jct, makespan, p95_jct, resizes, utilization, ...}}}, with
    each policy's avg_jct and makespan also as a ratio to optimus (when optimus ran)."""
    from optimus.simulation.metrics import ratios

    base = "optimus" if "optimus" in metrics else next(iter(metrics))
    relative = ratios(metrics, base)
    out: dict[str, Any] = {}
    for name, m in metrics.items():
        entry: dict[str, Any] = {
            key: (_finite(value) if isinstance(value, float) else value)
            for key, value in m.to_dict().items() if key != "policy"}
        entry[f"avg_jct_vs_{base}"] = _finite(relative[name]["avg_jct"])
        entry[f"makespan_vs_{base}"] = _finite(relative[name]["makespan"])
        out[name] = entry
    return {"policies": out}


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def print_report(metrics: Mapping[str, PolicyMetrics], table: SpeedTable, jobs: int,
                 args: argparse.Namespace,
                 compared: Mapping[str, Mapping[str, float | None]] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from optimus.simulation.metrics import ratios

    console = Console()
    if not console.is_terminal:  # piped or captured: don't squeeze the table into 80 columns
        console = Console(width=120)
    source = args.trace or "default generated trace"
    knowledge = ("models learned online and oracle models" if args.compare_oracle
                 else "oracle models" if args.oracle else "models learned online")
    if args.baseline_placement != "optimus":
        knowledge += f", baselines placed by {args.baseline_placement}"
    report = Table(title=(
        f"{jobs} jobs ({source}) on {args.nodes} nodes x {args.gpus_per_node:g} GPUs, "
        f"interval {args.interval:g} s, restart cost {args.restart_cost:g} s, {knowledge}, "
        f"seed {args.seed}"))
    for column in ("policy", "jobs done", "avg JCT", "median JCT", "p95 JCT", "makespan",
                   "GPU util", "resizes", "resizes / job"):
        report.add_column(column, justify="left" if column == "policy" else "right")
    for name, m in metrics.items():
        report.add_row(name, f"{m.jobs_done}/{m.jobs}", _duration(m.avg_jct),
                       _duration(m.median_jct), _duration(m.p95_jct), _duration(m.makespan),
                       f"{m.utilization:.0%}", str(m.resizes),
                       f"{m.resizes / m.jobs:.2f}" if m.jobs else "-")
    console.print(report)
    base = "optimus" if "optimus" in metrics else next(iter(metrics))
    relative = ratios(metrics, base)
    comparison = Table(title=f"each policy relative to {base} (> 1: {base} is better)")
    for column in ("policy", "avg JCT ratio", "makespan ratio"):
        comparison.add_column(column, justify="left" if column == "policy" else "right")
    for name in metrics:
        comparison.add_row(name, f"{relative[name]['avg_jct']:.2f}x",
                           f"{relative[name]['makespan']:.2f}x")
    console.print(comparison)
    if compared:
        versus = Table(title="learned vs oracle models, same trace, same run (> 1: learning "
                             "costs that much)")
        for column in ("policy", "avg JCT learned", "avg JCT oracle", "learned / oracle",
                       "resizes / job learned", "resizes / job oracle"):
            versus.add_column(column, justify="left" if column == "policy" else "right")
        for name, row in compared.items():
            ratio = row["avg_jct_vs_oracle"]
            versus.add_row(name, _duration(row["avg_jct"] or math.inf),
                           _duration(row["oracle_avg_jct"] or math.inf),
                           "-" if ratio is None else f"{ratio:.3f}x",
                           f"{row['resizes_per_job']:.2f}", f"{row['oracle_resizes_per_job']:.2f}")
        console.print(versus)
    for dropped in table.dropped:
        console.print(f"[dim]dropped {table.source} line {dropped.row.line} "
                      f"({dropped.row.model} ps={dropped.row.ps} workers={dropped.row.workers})"
                      f": {dropped.reason}[/dim]", soft_wrap=True)
    if args.plot:
        console.print(f"JCT CDF written to {args.plot}", soft_wrap=True)


def plot_jct_cdf(jcts: Mapping[str, Sequence[float]], path: Path, *, title: str) -> None:
    """Draw the empirical CDF of each policy's JCTs (hours) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, values in jcts.items():
        finite = np.sort(np.array([v for v in values if math.isfinite(v)], dtype=float)) / 3600
        if len(finite):
            axes.step(finite, np.arange(1, len(finite) + 1) / len(values), where="post",
                      label=name)
    axes.set_xscale("log")
    axes.set_xlabel("job completion time (hours, log scale)")
    axes.set_ylabel("fraction of jobs")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise InputError(f"{path}: cannot write the plot ({error.strerror}); "
                         "give a writable path") from None
    finally:
        plt.close(figure)


if __name__ == "__main__":  # pragma: no cover
    from optimus.cli import main

    sys.exit(main(["simulate", *sys.argv[1:]]))

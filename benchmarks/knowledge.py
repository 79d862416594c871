"""Benchmark: what a job of a kind already seen gains from the knowledge pooled across jobs
(optimus.round.store, the store the operator keeps in its ConfigMap).

Method
------
* Job physics from real measurements: ../shared/data/ps-speed/measured.csv (four models;
  read at run time from $OPTIMUS_SHARED_DATA or ../shared/data next to the repository),
  failing runs dropped, interpolated between measured configurations.
* Per model and seed: a trace of `--jobs` jobs of that one model, each arriving `--gap`
  seconds after the previous one (two days by default: each runs alone, so what changes
  from one job to the next is only what the store knows), 20-80 epochs to converge, a run
  time of 0.5-4 h at 1 PS x 1 worker, the table's batch size as the global batch.
* Cluster: 4 nodes x 8 GPUs, 64 CPUs. Optimus learns its models online (5% speed noise,
  1% loss noise), interval 60 s, restart cost 30 s, as `optimus simulate` does.
* Rows (each simulated on the same traces in the same run):
  - pooled: the store starts empty; job 1 learns alone, jobs 2.. start from the store;
  - seeded: the store starts as `optimus fit store` writes it from the same measurements
    (`optimus.round.pool_measurements`): job 1 already has a prior. The seed is the table
    the physics interpolates, so this row is the best a seed can do;
  - no pooling: `pool_speed=False, convergence_prior=False`, every job learns alone (the
    operator before it kept a store);
  - oracle: the true models, the JCT reference.
* "prior error": after job 1 alone, the kind's pooled knowledge as the fit step uses it
  (its speed model calibrated by the pooled measurements, `Knowledge.seconds_per_sample`)
  against the measured speed at every measured configuration: the median relative error
  of the predicted samples/s, i.e. how usable the model a second job starts from is.

    flock /tmp/heavy.lock .venv/bin/python benchmarks/knowledge.py [--seeds 3] [--jobs 4]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from optimus.round import Knowledge, KnowledgeStore, batch_scope, kind_key, pool_measurements
from optimus.simulation.engine import Cluster, SimulationConfig, SimulationResult, simulate
from optimus.simulation.inputs import SpeedTable, TraceJob
from optimus.simulation.speeds import SpeedSurface, surface_from_rows
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scheduling import load_table  # the same measurements, read the same way

MODE = "ps-sync"
console = Console(width=None if Console().is_terminal else 132)


def kind_trace(model: str, table: SpeedTable, surface: SpeedSurface, jobs: int, seed: int,
               gap: float) -> tuple[TraceJob, ...]:
    """`jobs` jobs of `model`, one every `gap` seconds (module docstring)."""
    rng = np.random.default_rng([seed, len(model)])
    out = []
    for index in range(jobs):
        epochs = int(rng.integers(20, 81))
        hours = math.exp(float(rng.uniform(math.log(0.5), math.log(4.0))))
        speed = surface.samples_per_sec(max(1, surface.ps_min), 1)
        out.append(TraceJob(job=f"{model}-{index}", arrival=index * gap, model=model,
                            epochs=epochs, dataset_size=round(hours * 3600 * speed / epochs, 1),
                            mode=MODE, batch_size=table.batch_size(model), ps=1, workers=1))
    return tuple(out)


def seed_store(table: SpeedTable, model: str) -> KnowledgeStore:
    """What `optimus fit store --speeds measured.csv --model MODEL` writes."""
    batch = table.batch_size(model)
    assert batch is not None
    return pool_measurements(KnowledgeStore(), model, MODE, batch,
                             [(r.ps, r.workers, r.samples_per_sec) for r in table.rows[model]])


def prior_error(store: KnowledgeStore, table: SpeedTable, model: str) -> float:
    """Median relative error of the kind's knowledge (calibrated model) against every
    measured configuration (module docstring); inf when the kind has no model."""
    batch = table.batch_size(model)
    assert batch is not None
    entry = store.get(kind_key(model, MODE, batch))
    if entry is None:
        return math.inf
    knowledge = Knowledge(speed=entry.speed(batch_scope(MODE)),
                          measured={(s.ps, s.workers): s.speed for s in entry.samples},
                          speed_samples=tuple((s.ps, s.workers, s.speed) for s in entry.samples))
    errors = []
    for row in table.rows[model]:
        predicted = 1.0 / knowledge.seconds_per_sample(row.ps, row.workers, batch, MODE)
        errors.append(abs(predicted / row.samples_per_sec - 1.0))
    return statistics.median(errors)


def per_position(result: SimulationResult) -> list[tuple[int, float]]:
    """(resizes, JCT) per job, in arrival order."""
    outcomes = sorted(result.outcomes, key=lambda o: o.arrival)
    return [(o.resizes, o.jct) for o in outcomes]


Runs = list[list[tuple[int, float]]]  # per seed, per job in arrival order: (resizes, JCT)


def resizes(runs: Runs, later: bool) -> float:
    """Mean resizes of the first job (later=False) or of the jobs after it."""
    picked = [r for run in runs for r in (run[1:] if later else run[:1])]
    return float(np.mean([r for r, _ in picked]))


def jct_ratio(runs: Runs, oracle: Runs, later: bool) -> float:
    """Geometric mean of the JCT over the oracle's, same job, same seed."""
    ratios = [run[i][1] / truth[i][1] for run, truth in zip(runs, oracle, strict=True)
              for i in (range(1, len(run)) if later else range(1))]
    return float(np.exp(np.mean(np.log(ratios))))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4, help="jobs of each model in a trace")
    parser.add_argument("--gap", type=float, default=2 * 86400.0,
                        help="seconds between arrivals (long enough that each runs alone)")
    args = parser.parse_args(argv)
    table = load_table()
    if table is None:
        return 2
    started = time.perf_counter()
    cluster = Cluster.uniform(4, 8, 64)
    base = SimulationConfig(policy="optimus", interval=60.0, restart_cost=30.0)
    labels = ("pooled", "seeded", "no pooling", "oracle")
    report = Table(title=f"{args.jobs} jobs of one model in turn, {args.seeds} seeds, "
                         "4 nodes x 8 GPUs, interval 60 s, restart 30 s")
    for column in ("model", "prior error after job 1", "resizes: job 1 / later (pooled)",
                   "job 1 seeded", "later, no pooling", "JCT / oracle: job 1 / later (pooled)",
                   "job 1 seeded ", "later, no pooling "):
        report.add_column(column, justify="left" if column == "model" else "right")
    totals: dict[str, list[float]] = {}
    for model in sorted(table.rows):
        surfaces = {model: surface_from_rows(table.rows[model])}
        results: dict[str, Runs] = {k: [] for k in labels}
        errors = []
        for seed in range(args.seeds):
            trace = kind_trace(model, table, surfaces[model], args.jobs, seed, args.gap)
            config = replace(base, seed=seed)
            runs = {
                "pooled": simulate(trace, surfaces, cluster, config),
                "seeded": simulate(trace, surfaces, cluster, config,
                                   store=seed_store(table, model)),
                "no pooling": simulate(trace, surfaces, cluster, replace(
                    config, pool_speed=False, convergence_prior=False)),
                "oracle": simulate(trace, surfaces, cluster, replace(config, oracle=True)),
            }
            for label, result in runs.items():
                results[label].append(per_position(result))
            first = simulate(trace[:1], surfaces, cluster, config)
            errors.append(prior_error(first.store, table, model))

        cells = {
            "first": resizes(results["pooled"], False),
            "later": resizes(results["pooled"], True),
            "seeded": resizes(results["seeded"], False),
            "none": resizes(results["no pooling"], True),
            "jct first": jct_ratio(results["pooled"], results["oracle"], False),
            "jct later": jct_ratio(results["pooled"], results["oracle"], True),
            "jct seeded": jct_ratio(results["seeded"], results["oracle"], False),
            "jct none": jct_ratio(results["no pooling"], results["oracle"], True),
        }
        for key, value in cells.items():
            totals.setdefault(key, []).append(value)
        totals.setdefault("error", []).append(statistics.median(errors))
        report.add_row(model, f"{statistics.median(errors):.1%}",
                       f"{cells['first']:.2f} / {cells['later']:.2f}", f"{cells['seeded']:.2f}",
                       f"{cells['none']:.2f}",
                       f"{cells['jct first']:.2f}x / {cells['jct later']:.2f}x",
                       f"{cells['jct seeded']:.2f}x", f"{cells['jct none']:.2f}x")
    mean = {key: float(np.mean(values)) for key, values in totals.items()}
    report.add_row("[bold]mean", f"{mean['error']:.1%}",
                   f"{mean['first']:.2f} / {mean['later']:.2f}", f"{mean['seeded']:.2f}",
                   f"{mean['none']:.2f}", f"{mean['jct first']:.2f}x / {mean['jct later']:.2f}x",
                   f"{mean['jct seeded']:.2f}x", f"{mean['jct none']:.2f}x")
    console.print(report)
    console.print(f"{platform.machine()}, {platform.python_version()}; "
                  f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

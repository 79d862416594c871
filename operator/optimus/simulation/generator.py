"""Trace and speed-table generators: the default workload of `optimus simulate` (pure).

`default_speed_table()` tabulates four synthetic model families with the operator's own
ps-sync speed model (`optimus.models.speed`) on the grid ps, workers = 1..16. Their
coefficients (below) are invented, not fitted to any data, and chosen to be as diverse as
real models are: one PS-bound family that gains little beyond two workers (as resnet-50
does in the public measurements), one that keeps scaling, one that needs many PS, and one
bound by per-step latency.

`generate_trace(table, ...)` draws jobs over any speed table (the default one, or the real
measurements that benchmarks/scheduling.py reads):
* arrivals: a Poisson process (exponential gaps with mean `mean_interarrival` seconds);
* model: uniform over the table's models;
* epochs to converge: uniform integers in `epochs`;
* size: a target run time drawn log-uniformly from `hours` at the job's requested
  configuration sets dataset_size = hours * 3600 * speed(requested) / epochs;
* requested configuration (what a user asks for; the `fixed` and DRF baselines use it):
  workers from {1, 2, 4, 8} with probabilities {0.2, 0.3, 0.3, 0.2}, as many PS as workers
  (the common 1:1 practice), both within the model's measured range.
Everything is drawn from numpy's generator seeded with `seed`.
"""

from __future__ import annotations

import math

import numpy as np

from optimus.models.speed import SpeedParams, samples_per_second
from optimus.simulation.inputs import SpeedRow, SpeedTable, TraceJob
from optimus.simulation.speeds import surface_from_rows

DEFAULT_SEED = 2018
#: (model, per-worker batch, ps-sync theta t0..t4): 1/steps = t0*M/w + t1 + t2*w/p + t3*w + t4*p
SYNTHETIC_MODELS: tuple[tuple[str, int, tuple[float, float, float, float, float]], ...] = (
    # PS-bound, like resnet-50 in the public measurements: best at ~10 PS and 2 workers
    ("cnn-ps-bound", 32, (0.010, 0.020, 0.150, 0.050, 0.002)),
    # compute-bound: keeps scaling to 16 workers
    ("resnet-scales", 32, (0.050, 0.020, 0.010, 0.004, 0.002)),
    # large parameters: needs many PS, best at ~12 PS and 4-5 workers
    ("transformer-big", 16, (0.040, 0.030, 0.200, 0.010, 0.005)),
    # latency-bound: saturates at 2 workers
    ("rnn-latency", 64, (0.002, 0.100, 0.020, 0.020, 0.003)),
)
GRID = range(1, 17)
REQUESTED_WORKERS = (1, 2, 4, 8)
REQUESTED_WEIGHTS = (0.2, 0.3, 0.3, 0.2)


def default_speed_table() -> SpeedTable:
    rows: dict[str, tuple[SpeedRow, ...]] = {}
    for model, batch, theta in SYNTHETIC_MODELS:
        params = SpeedParams("ps-sync", float(batch), theta)
        rows[model] = tuple(
            SpeedRow(model, p, w, round(samples_per_second(params, p, w), 3), batch)
            for p in GRID for w in GRID)
    return SpeedTable(rows, (), "the default speed table")


def generate_trace(table: SpeedTable, *, jobs: int = 60, mean_interarrival: float = 300.0,
                   seed: int = DEFAULT_SEED, epochs: tuple[int, int] = (20, 80),
                   hours: tuple[float, float] = (0.5, 4.0)) -> tuple[TraceJob, ...]:
    """A Poisson-arrival trace over `table`'s models (module docstring)."""
    rng = np.random.default_rng(seed)
    models = sorted(table.rows)
    surfaces = {model: surface_from_rows(table.rows[model]) for model in models}
    width = len(str(max(jobs - 1, 0)))
    arrival = 0.0
    out: list[TraceJob] = []
    for index in range(jobs):
        if index:
            arrival += float(rng.exponential(mean_interarrival))
        model = models[int(rng.integers(len(models)))]
        surface = surfaces[model]
        job_epochs = int(rng.integers(epochs[0], epochs[1] + 1))
        duration = math.exp(float(rng.uniform(math.log(hours[0]), math.log(hours[1])))) * 3600
        workers = int(rng.choice(REQUESTED_WORKERS, p=REQUESTED_WEIGHTS))
        workers = min(max(workers, surface.workers_min), surface.workers_max)
        ps = min(max(workers, surface.ps_min, 1), surface.ps_max)
        speed = surface.samples_per_sec(ps, workers)
        out.append(TraceJob(
            job=f"job-{index:0{width}d}", arrival=round(arrival, 3), model=model,
            epochs=job_epochs, dataset_size=round(duration * speed / job_epochs, 1),
            batch_size=table.batch_size(model), ps=ps, workers=workers))
    return tuple(out)


def default_workload() -> tuple[SpeedTable, tuple[TraceJob, ...]]:
    """The workload `optimus simulate` runs without --trace (fixed seed)."""
    table = default_speed_table()
    return table, generate_trace(table)


"""What a simulation run amounts to: JCT statistics, makespan, utilisation, resizes (pure).

Definitions: a job's completion time (JCT) is finish - arrival; the makespan is the last
finish minus the first arrival; GPU utilisation is the GPU-seconds held by jobs (restarts
included) over the cluster's GPUs times the makespan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from optimus.simulation.engine import SimulationResult


@dataclass(frozen=True)
class PolicyMetrics:
    policy: str
    jobs: int
    jobs_done: int
    avg_jct: float
    median_jct: float
    p95_jct: float
    makespan: float
    utilization: float
    resizes: int
    starts: int
    rounds: int

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def summarise(result: SimulationResult) -> PolicyMetrics:
    done = [o for o in result.outcomes if o.finish is not None]
    jcts = np.array([o.jct for o in done], dtype=float)
    if done:
        first_arrival = min(o.arrival for o in result.outcomes)
        makespan = max(o.finish or 0.0 for o in done) - first_arrival
    else:
        makespan = math.inf
    gpu_seconds = sum(o.gpu_seconds for o in result.outcomes)
    capacity = result.cluster_total.gpu * makespan
    return PolicyMetrics(
        policy=result.policy,
        jobs=len(result.outcomes),
        jobs_done=len(done),
        avg_jct=float(jcts.mean()) if done else math.inf,
        median_jct=float(np.median(jcts)) if done else math.inf,
        p95_jct=float(np.percentile(jcts, 95)) if done else math.inf,
        makespan=makespan,
        utilization=gpu_seconds / capacity if capacity > 0 and math.isfinite(capacity) else 0.0,
        resizes=sum(o.resizes for o in result.outcomes),
        starts=sum(o.starts for o in result.outcomes),
        rounds=len(result.rounds),
    )


def ratios(metrics: Mapping[str, PolicyMetrics], baseline: str = "optimus",
           fields: Sequence[str] = ("avg_jct", "makespan")) -> dict[str, dict[str, float]]:
    """Each policy's metric over `baseline`'s (> 1: the baseline is that many times better)."""
    reference = metrics[baseline]
    out: dict[str, dict[str, float]] = {}
    for name, m in metrics.items():
        out[name] = {}
        for key in fields:
            ours = float(getattr(reference, key))
            theirs = float(getattr(m, key))
            out[name][key] = theirs / ours if ours > 0 else math.inf
    return out

"""Job physics: how fast a simulated job truly trains under an allocation and a placement,
and what its true loss curve is. The simulator's ground truth; no policy ever sees it
directly (except under --oracle).

Network: a speed table is measured on the fewest nodes. When the PS and the workers of a job
are spread over more nodes, more parameter traffic crosses the network. With the cross-node
fraction `c` of a placement (the share of PS-worker pairs on different nodes; for all-reduce
the share of ring hops between nodes),

    speed(placement) = table_speed(p, w) * (1 + a * c_min) / (1 + a * c),
    a = NETWORK_SENSITIVITY * REFERENCE_BANDWIDTH_GBPS / bandwidth_gbps,

where `c_min` is the cross-node fraction of an even placement on the fewest nodes that can
hold the job (the measurement's setting) and `bandwidth_gbps` is the slowest node the job
uses. At the 10 Gb/s reference, a job whose every PS-worker pair crosses nodes runs
1/(1 + 0.5) = 67% as fast as the same job with no cross-node traffic. The factor never exceeds
1: a placement is never faster than the table.

Step split: the simulated workers also report where a step went (compute, communication,
bytes, the PS update), as real workers do (optimus_worker.metrics), so that the learned
path's white-box prior (optimus.round.knowledge.white_box_prior) runs here too. The split
is the speed equation's decomposition of the true surface: the mode's equation is fitted
once to the job's whole table (`equation_of_surface`), and at a configuration its compute,
transfer and other terms are rescaled to the true step (`emulated_split`; the network
slowdown of a placement adds to the communication). This is the physics' own split, so it
agrees with the equation's shape at the table's best fit: it tells a policy how a step
divides, not the table itself.
"""

from __future__ import annotations

import math
from collections import Counter

from optimus.models import (
    ModelError,
    SpeedMode,
    SpeedParams,
    SpeedSample,
    StepSplit,
    fit_speed,
)
from optimus.models.loss import LossParams
from optimus.models.speed import equation_terms
from optimus.round import model_speed, summed_steps_per_second
from optimus.round.knowledge import batch_scope
from optimus.scheduling.types import JobPlacement, Resources
from optimus.simulation.speeds import SpeedSurface

#: slowdown of a job whose every PS-worker pair crosses nodes, at the reference bandwidth
NETWORK_SENSITIVITY = 0.5
REFERENCE_BANDWIDTH_GBPS = 10.0


def curve_for_epochs(epochs: float, loss_delta: float, window: int, *,
                     b2: float = 0.1) -> LossParams:
    """A loss curve whose convergence rule fires at `epochs` (so a trace's loss curve agrees
    with its `epochs` column).

    The drop over `window` epochs at epoch k, d(b0) = 1/(b0(k-W)+b1) - 1/(b0 k+b1), rises from
    0, peaks at b0* = b1/sqrt(k(k-W)) with d* ~ W/(b1 (sqrt(k-W)+sqrt(k))^2), and falls again;
    b1 is chosen so that d* is twice `loss_delta`, and b0 is found by bisection on the falling
    side, where the drop shrinks with k, so the rule first fires at k = epochs."""
    target = float(max(math.ceil(epochs), window + 1))
    b1 = window / (2.0 * loss_delta * (math.sqrt(target - window) + math.sqrt(target)) ** 2)

    def drop(b0: float) -> float:
        return 1.0 / (b0 * (target - window) + b1) - 1.0 / (b0 * target + b1)

    low, high = b1 / math.sqrt(target * (target - window)), 1e9
    for _ in range(200):
        middle = math.sqrt(low * high)
        if drop(middle) >= loss_delta:
            low = middle
        else:
            high = middle
    return LossParams(high * (1.0 + 1e-6), b1, b2)  # strictly past the threshold


def cross_fraction(ps_nodes: tuple[str, ...], worker_nodes: tuple[str, ...]) -> float:
    """Share of the job's communication that crosses nodes (0 = all on one node)."""
    workers = len(worker_nodes)
    if workers == 0:
        return 0.0
    if not ps_nodes:  # all-reduce ring: hops between consecutive distinct nodes
        nodes = len(set(worker_nodes))
        return 0.0 if nodes <= 1 else min(1.0, nodes / workers)
    ps_count = Counter(ps_nodes)
    worker_count = Counter(worker_nodes)
    local = sum(count * worker_count.get(node, 0) for node, count in ps_count.items())
    return 1.0 - local / (len(ps_nodes) * workers)


def even_split(count: int, parts: int) -> list[int]:
    return [count // parts + (1 if i < count % parts else 0) for i in range(parts)]


def fewest_nodes_cross_fraction(ps: int, workers: int, ps_request: Resources,
                                worker_request: Resources, node: Resources) -> float:
    """Cross-node fraction of an even placement on the fewest nodes of shape `node` that hold
    the job: the configuration the speed table was measured in."""
    for parts in range(1, max(ps, workers, 1) + 1):
        per_node = (ps_request.scale(max(even_split(ps, parts), default=0))
                    + worker_request.scale(max(even_split(workers, parts))))
        if per_node.fits_in(node):
            break
    ps_nodes = tuple(str(i) for i, n in enumerate(even_split(ps, parts)) for _ in range(n))
    worker_nodes = tuple(str(i) for i, n in enumerate(even_split(workers, parts))
                         for _ in range(n))
    return cross_fraction(ps_nodes, worker_nodes)


def network_factor(placement: JobPlacement, bandwidth_gbps: float, c_min: float) -> float:
    """The factor (<= 1) that a placement multiplies the table speed by (module docstring)."""
    sensitivity = NETWORK_SENSITIVITY * REFERENCE_BANDWIDTH_GBPS / bandwidth_gbps
    c = cross_fraction(placement.ps_nodes, placement.worker_nodes)
    return min(1.0, (1.0 + sensitivity * c_min) / (1.0 + sensitivity * c))


def true_model_speed(samples_per_sec: float, mode: SpeedMode, batch: int, workers: int) -> float:
    """A true speed in the speed model's unit (optimus.round.knowledge's docstring)."""
    summed = summed_steps_per_second(samples_per_sec, batch, workers, mode)
    return model_speed(mode, summed, workers)


def equation_of_surface(surface: SpeedSurface, mode: SpeedMode, batch: int
                        ) -> SpeedParams | None:
    """The mode's speed equation fitted to the whole true surface (None when it cannot be):
    how the simulator divides a step into the equation's terms (module docstring)."""
    samples = []
    for ps in range(surface.ps_min, surface.ps_max + 1):
        for workers in range(surface.workers_min, surface.workers_max + 1):
            rate = surface.samples_per_sec(ps, workers)
            if rate > 0 and workers >= 1 and (ps >= 1 or mode == "allreduce"):
                samples.append(SpeedSample(ps, workers,
                                           true_model_speed(rate, mode, batch, workers)))
    try:
        return fit_speed(samples, mode, batch, batch_scope=batch_scope(mode))  # type: ignore[arg-type]
    except ModelError:
        return None


def emulated_split(equation: SpeedParams, ps: int, workers: int, table_speed: float,
                   true_speed: float, bandwidth_gbps: float) -> StepSplit | None:
    """The split of one worker's step at (ps, workers) (module docstring): speeds in the
    model's unit, `table_speed` without and `true_speed` with the placement's network
    slowdown. None where the equation gives no time."""
    try:
        terms = equation_terms(equation, ps, workers)
    except ModelError:
        return None
    total = sum(terms)
    if not (total > 0 and table_speed > 0 and true_speed > 0):
        return None
    # seconds of a worker's step per second of 1/speed: w model steps in ps-async
    per_step = float(workers) if equation.mode == "ps-async" else 1.0
    scale = per_step / (table_speed * total)
    if equation.mode == "ps-sync":
        compute, update, transfer = terms[0], terms[1], terms[2]
    elif equation.mode == "ps-async":
        compute, update, transfer = terms[0], 0.0, terms[1]
    else:
        compute, update, transfer = terms[0], 0.0, terms[2]
    compute, update, transfer = compute * scale, update * scale, transfer * scale
    communication = max(0.0, per_step / true_speed - compute)
    link = bandwidth_gbps * 1e9 / 8.0  # bytes/s
    # the bytes that take `transfer` on the bottleneck link (prior_from_split's reading)
    share = ps / workers if equation.mode != "allreduce" else 1.0
    return StepSplit(compute, communication, bytes_per_step=transfer * link * share,
                     update_seconds=min(update, communication), bandwidth=link)

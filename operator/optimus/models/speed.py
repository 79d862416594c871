"""Step 3 of a scheduling round (pure): the resource-speed model of a job.

Given a few measured (ps, workers, speed) samples of one job, fit how its training speed
depends on the number of parameter servers p and workers w, so that the allocator
(optimus.scheduling) can ask for the speed, hence the remaining time, of any (p, w).
`propose_probes` picks the next configurations to measure for a job that has too few.

The unit of every speed here
----------------------------
A speed is the job's *steps per second, where a step is one mini-batch of one worker*:
the job's total samples per second divided by the per-worker batch size. That is what the
paper's estimator measures (the sum of the workers' samples/s over the batch size) and
what the workers' step counters give (optimus_worker exports steps summed over workers).

How that unit relates to the paper's f(p, w): we fit the paper's equations *directly* to
this unit, i.e. ``speed(p, w) = f(p, w)``, and read the denominator of the sync equation as
the time one worker-step costs the job. A literal reading of the paper (f = job
iterations/s, every iteration = w worker-steps) would instead give speed = w * f(p, w),
i.e. ``1/speed = T_iteration(p, w) / w``. On the real MXNet dist_sync measurements that
benchmarks/models.py reads (fixed per-worker batch; benchmarks/README.md) 1/speed grows
linearly in w at fixed p (for resnet-50 at p = 1, from 2.0 s at w = 1 to 4.8 s at w = 12), so
T_iteration would have to grow like w**2, which no t >= 0 can express: the literal form
reaches only ~21% held-out MAPE at N = 10 random samples, the direct form ~9%
(benchmarks/models.py measures both in the same run). The direct form is also what the
paper's own estimator fits.

The equations, with 1/speed linear in theta (so NNLS fits theta >= 0):

* ps-sync   ``speed = 1 / (t0*M/w + t1 + t2*w/p + t3*w + t4*p)``
  (compute of a batch of M split over w, fixed overhead, PS traffic per PS, per-worker
  overhead, per-PS overhead);
* ps-async  ``speed = w / (t0 + t1*w/p + t2*w + t3*p)``
  (each worker steps on its own; M does not enter);
* allreduce ``speed = 1 / (t0*M/w + t1 + t2*(w-1)/w + t3*(w-1))``, p fixed at 0
  (compute, fixed overhead, ring all-reduce bandwidth term 2(w-1)/w, per-hop latency).

M is `batch_size` as given; its scale is absorbed into t0, so fitting with the per-worker
batch (the CLI, measured.csv) or the global batch (a TrainingJob's globalBatchSize) gives
the same predictions. `batch_scope` only says which one it is, for `samples_per_second`.

The fit weighs every sample by its own reciprocal, so it minimises *relative* errors, and
adds a small ridge shrinkage (`shrinkage`, on features scaled to unit root-mean-square)
that keeps fits from 5-10 samples from overshooting; its pull fades as 1/len(samples).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from scipy.optimize import nnls

from optimus.models.errors import ModelError

SpeedMode = Literal["ps-sync", "ps-async", "allreduce"]
BatchScope = Literal["per-worker", "global"]

#: Spellings accepted for a mode (the CLI's `sync`/`async` and the CRD's `ps-sync`...).
MODE_ALIASES: dict[str, SpeedMode] = {
    "sync": "ps-sync",
    "ps-sync": "ps-sync",
    "dist_sync": "ps-sync",
    "async": "ps-async",
    "ps-async": "ps-async",
    "dist_async": "ps-async",
    "allreduce": "allreduce",
    "all-reduce": "allreduce",
}

#: The names of theta's entries, in order, per mode (equations in the module docstring).
THETA_NAMES: dict[SpeedMode, tuple[str, ...]] = {
    "ps-sync": ("t0", "t1", "t2", "t3", "t4"),
    "ps-async": ("t0", "t1", "t2", "t3"),
    "allreduce": ("t0", "t1", "t2", "t3"),
}

#: Default pull of a white-box prior (`prior_from_split`) on a fit, in samples' worth per
#: parameter on features scaled to unit RMS (benchmarks/models.py measured the choice).
DEFAULT_PRIOR_WEIGHT = 1.0

#: Default ridge shrinkage, in samples' worth of pull towards 0 per parameter on features
#: scaled to unit RMS (0 = plain NNLS). 0.1 measured best on measured.csv at N = 5..20.
DEFAULT_SHRINKAGE = 0.1


def parse_mode(text: str) -> SpeedMode:
    """The canonical mode for any accepted spelling; ModelError names the accepted ones."""
    mode = MODE_ALIASES.get(text.strip().lower())
    if mode is None:
        accepted = ", ".join(sorted(MODE_ALIASES))
        raise ModelError(f"unknown speed mode {text!r}; use one of: {accepted}")
    return mode


@dataclass(frozen=True)
class SpeedSample:
    """One measurement: `speed` steps/s (a step = one mini-batch of ONE worker) at (ps, workers)."""

    ps: int
    workers: int
    speed: float


@dataclass(frozen=True)
class SpeedParams:
    """A fitted speed model: the equation of `mode` (module docstring) with theta >= 0.

    ps-sync   speed = 1 / (t0*M/w + t1 + t2*w/p + t3*w + t4*p)
    ps-async  speed = w / (t0 + t1*w/p + t2*w + t3*p)
    allreduce speed = 1 / (t0*M/w + t1 + t2*(w-1)/w + t3*(w-1))
    with M = batch_size; batch_scope says whether M is each worker's mini-batch or the
    global batch split over the workers (only `samples_per_second` depends on it).
    """

    mode: SpeedMode
    batch_size: float
    theta: tuple[float, ...]
    batch_scope: BatchScope = "per-worker"

    def named(self) -> dict[str, float]:
        """theta as {"t0": ..., ...}."""
        return dict(zip(THETA_NAMES[self.mode], self.theta, strict=True))


@dataclass(frozen=True)
class StepSplit:
    """Where the seconds of one step went, measured at one configuration: the white-box
    view of a job (the workers' and parameter servers' per-step accounting,
    optimus_worker.metrics; the simulator emulates it from its physics).

    compute_seconds: forward + backward of a worker's share of the batch;
    communication_seconds: the rest of the step: push and pull (or the all-reduce),
        waiting for the parameter servers included;
    bytes_per_step: bytes one worker sends and receives in a step (0: not measured);
    update_seconds: a parameter server's optimizer update per step, part of the workers'
        communication wait (0: none, or not measured);
    bandwidth: the network bandwidth of a node, bytes/s (None: not known, so every
        second of communication that is not the update is read as transfer).
    """

    compute_seconds: float
    communication_seconds: float
    bytes_per_step: float = 0.0
    update_seconds: float = 0.0
    bandwidth: float | None = None

    @property
    def step_seconds(self) -> float:
        return self.compute_seconds + self.communication_seconds


def prior_from_split(
    mode: SpeedMode | str,
    batch_size: float,
    ps: int,
    workers: int,
    split: StepSplit,
    *,
    batch_scope: BatchScope = "per-worker",
) -> SpeedParams:
    """The speed equation's theta seeded from one configuration's split (pure): the
    PALEO/Hemingway decomposition of a step into compute and communication, each term
    scaled to other (p, w) by how it grows. `split` holds the seconds of one step of
    every worker, which in the synchronous modes is the model's step (1/speed) and in
    ps-async w of them. With T = compute + communication at (p, w), B the bandwidth and
    b the bytes a worker moves per step:

      ps-sync   T = t0*M/w + t1 + t2*w/p + t3*w + t4*p
                t0 = compute*w/M (each worker computes M/w samples); t2*w/p = w*b/(p*B)
                (a PS's link carries 1/p of every worker's traffic), so t2 = b/B;
                t1 = update (once per step, whatever w); t3*w = the rest of the
                communication (a PS serves w requests a step); t4 = 0 (not separable from
                t3 at one configuration).
      ps-async  T = t0 + t1*w/p + t2*w + t3*p,  1/speed = T/w
                t0 = compute; t1 = b/B; t2*w = update and the rest (every push is
                applied on its own, w of them a round); t3 = 0.
      allreduce T = t0*M/w + t1 + t2*(w-1)/w + t3*(w-1)
                t0 = compute*w/M; the ring moves b = 2(w-1)/w*S a worker, t2 = 2S/B;
                t3*(w-1) = the rest (per hop); at w = 1 nothing is exchanged, t2 = t3 = 0.

    With no bandwidth (split.bandwidth None) or no bytes, all communication but the
    update is read as transfer (B = b/that time, the measured effective bandwidth). A
    transfer time above the communication measured is capped at it (the link was faster
    than configured). Raises ModelError for a split that is not finite and >= 0, or a
    configuration the mode does not allow.
    """
    mode = parse_mode(mode)
    _check_batch_size(batch_size)
    _check_config(mode, ps, workers, f"configuration (ps={ps}, workers={workers})")
    parts = (split.compute_seconds, split.communication_seconds, split.bytes_per_step,
             split.update_seconds)
    if not all(math.isfinite(x) and x >= 0 for x in parts) or split.step_seconds <= 0:
        raise ModelError(f"step split {split}: every part must be a finite number >= 0, and "
                         "the step must take some time")
    if split.bandwidth is not None and not (math.isfinite(split.bandwidth)
                                            and split.bandwidth > 0):
        raise ModelError(f"bandwidth = {split.bandwidth}; give bytes/s > 0 or None")
    p, w, m = float(ps), float(workers), float(batch_size)
    communication = split.communication_seconds
    update = min(split.update_seconds, communication) if mode != "allreduce" else 0.0
    exchanged = communication - update  # what is not the parameter servers' update
    if split.bandwidth is None or split.bytes_per_step <= 0:
        transfer = exchanged
    else:
        # the bottleneck link's bytes per step: a PS's share of every worker's traffic
        # (PS modes), each worker's own (ring)
        link_bytes = split.bytes_per_step * (w / p if mode != "allreduce" else 1.0)
        transfer = min(exchanged, link_bytes / split.bandwidth)
    rest = exchanged - transfer
    theta: tuple[float, ...]
    if mode == "ps-sync":
        theta = (split.compute_seconds * w / m, update, transfer * p / w, rest / w, 0.0)
    elif mode == "ps-async":
        theta = (split.compute_seconds, transfer * p / w, (update + rest) / w, 0.0)
    elif workers > 1:
        theta = (split.compute_seconds * w / m, 0.0, transfer * w / (w - 1.0),
                 rest / (w - 1.0))
    else:  # one worker exchanges nothing: its communication is fixed overhead
        theta = (split.compute_seconds * w / m, communication, 0.0, 0.0)
    return SpeedParams(mode, m, tuple(float(t) for t in theta), batch_scope)


def _reciprocal_terms(
    mode: SpeedMode, batch_size: float, p: Any, w: Any
) -> tuple[Any, ...]:
    """The terms x with 1/speed = x @ theta, for float or array p and w (constants as 1.0).

    Plain arithmetic, so the same equations serve the vectorised fit and the scalar
    prediction (which the allocator asks for hundreds of thousands of times a simulation;
    numpy's per-call overhead on one row was most of its cost).
    """
    if mode == "ps-sync":
        return (batch_size / w, 1.0, w / p, w, p)
    if mode == "ps-async":
        # speed = w / (t0 + t1*w/p + t2*w + t3*p)  =>  1/speed = t0/w + t1/p + t2 + t3*p/w
        return (1.0 / w, 1.0 / p, 1.0, p / w)
    return (batch_size / w, 1.0, (w - 1.0) / w, w - 1.0)


def _reciprocal_features(
    mode: SpeedMode, batch_size: float, ps: np.ndarray, workers: np.ndarray
) -> np.ndarray:
    """Rows x with 1/speed = x @ theta for each (ps, workers)."""
    terms = _reciprocal_terms(mode, batch_size, ps.astype(float), workers.astype(float))
    return np.stack(np.broadcast_arrays(*terms), axis=1)


def _check_config(mode: SpeedMode, ps: int, workers: int, what: str) -> None:
    if workers < 1:
        raise ModelError(f"{what}: workers = {workers}; every configuration needs >= 1 worker")
    if mode != "allreduce" and ps < 1:
        raise ModelError(
            f"{what}: ps = {ps}; {mode} needs >= 1 parameter server "
            "(use mode allreduce for jobs without parameter servers)"
        )


def _check_batch_size(batch_size: float) -> None:
    if not (math.isfinite(batch_size) and batch_size > 0):
        raise ModelError(f"batch_size = {batch_size}; it must be a positive number of samples")


def fit_speed(
    samples: Sequence[SpeedSample],
    mode: SpeedMode | str,
    batch_size: float,
    *,
    batch_scope: BatchScope = "per-worker",
    shrinkage: float = DEFAULT_SHRINKAGE,
    prior: SpeedParams | None = None,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
) -> SpeedParams:
    """Fit theta >= 0 of `mode`'s equation to the samples by (relative, shrunk) NNLS.

    With a `prior` (e.g. `prior_from_split`), the ridge pulls theta towards the prior's
    theta instead of towards 0, with `prior_weight` samples' worth of pull per parameter
    (fading as 1/len(samples) like the shrinkage), and one sample is enough: the
    samples then only refine the prior. Without one, raises ModelError for fewer distinct
    configurations than parameters. Raises ModelError for a speed that is not a positive
    finite number (filter failing configurations first: a zero speed has no reciprocal),
    for ps < 1 in a PS mode or workers < 1. All-reduce samples' ps is ignored (p is fixed
    at 0).
    """
    mode = parse_mode(mode)
    _check_batch_size(batch_size)
    if batch_scope not in get_args(BatchScope):
        raise ModelError(f"batch_scope = {batch_scope!r}; use 'per-worker' or 'global'")
    if not (math.isfinite(shrinkage) and shrinkage >= 0):
        raise ModelError(f"shrinkage = {shrinkage}; it must be a finite number >= 0")
    if prior is not None and (prior.mode != mode or prior.batch_size != float(batch_size)):
        raise ModelError(f"the prior is a {prior.mode} model at batch {prior.batch_size}; "
                         f"the fit is {mode} at batch {float(batch_size)}")
    if not (math.isfinite(prior_weight) and prior_weight > 0):
        raise ModelError(f"prior_weight = {prior_weight}; it must be a finite number > 0")
    for index, sample in enumerate(samples):
        _check_config(mode, sample.ps, sample.workers, f"sample {index}")
        if not (math.isfinite(sample.speed) and sample.speed > 0):
            raise ModelError(
                f"sample {index} at (ps={sample.ps}, workers={sample.workers}) has speed "
                f"{sample.speed}; speeds must be positive finite steps/s (drop failing "
                "configurations before fitting)"
            )
    n_params = len(THETA_NAMES[mode])
    configs = {(0 if mode == "allreduce" else s.ps, s.workers) for s in samples}
    if prior is not None and not samples:
        return prior
    if prior is None and len(configs) < n_params:
        raise ModelError(
            f"{mode} speed model has {n_params} parameters but the samples cover only "
            f"{len(configs)} distinct (ps, workers) configuration(s); measure at least "
            f"{n_params} (optimus.models.propose_probes suggests which)"
        )
    ps = np.array([s.ps for s in samples])
    workers = np.array([s.workers for s in samples])
    reciprocal = 1.0 / np.array([s.speed for s in samples], dtype=float)
    features = _reciprocal_features(mode, batch_size, ps, workers)
    # Relative errors: divide each row by its own target, so every target becomes 1.
    design = features / reciprocal[:, None]
    target = np.ones(len(samples))
    # Columns scaled to unit root-mean-square: the ridge term then weighs like one sample
    # per parameter, so its pull shrinks as 1/len(samples) as samples accumulate.
    scale = np.sqrt(np.mean(design**2, axis=0))
    scale[scale == 0] = 1.0
    design = design / scale
    if prior is not None:  # the ridge's centre is the prior (in the scaled coordinates)
        centre = np.array(prior.theta, dtype=float) * scale
        design = np.vstack([design, math.sqrt(prior_weight) * np.eye(n_params)])
        target = np.concatenate([target, math.sqrt(prior_weight) * centre])
    elif shrinkage > 0:
        design = np.vstack([design, math.sqrt(shrinkage) * np.eye(n_params)])
        target = np.concatenate([target, np.zeros(n_params)])
    scaled_theta, _ = nnls(design, target)
    theta = scaled_theta / scale
    return SpeedParams(mode, float(batch_size), tuple(float(t) for t in theta), batch_scope)


def predict_speed(params: SpeedParams, ps: int, workers: int) -> float:
    """Steps/s (a step = one mini-batch of one worker) at (ps, workers); ps ignored in allreduce."""
    _check_config(params.mode, ps, workers, f"configuration (ps={ps}, workers={workers})")
    terms = _reciprocal_terms(params.mode, params.batch_size, float(ps), float(workers))
    seconds_per_step = float(sum(x * t for x, t in zip(terms, params.theta, strict=True)))
    if not (math.isfinite(seconds_per_step) and seconds_per_step > 0):
        raise ModelError(
            f"the fitted {params.mode} model gives no time per step at (ps={ps}, "
            f"workers={workers}); refit with samples that include such a configuration"
        )
    return 1.0 / seconds_per_step


def equation_terms(params: SpeedParams, ps: int, workers: int) -> tuple[float, ...]:
    """The terms of 1/speed at (ps, workers), one per theta entry, in the order of the
    mode's equation (they sum to 1/predict_speed)."""
    _check_config(params.mode, ps, workers, f"configuration (ps={ps}, workers={workers})")
    terms = _reciprocal_terms(params.mode, params.batch_size, float(ps), float(workers))
    return tuple(float(x * t) for x, t in zip(terms, params.theta, strict=True))


def samples_per_second(params: SpeedParams, ps: int, workers: int) -> float:
    """The job's total training samples per second at (ps, workers).

    A step is one mini-batch of one worker, so samples/s = steps/s * per-worker batch: with
    batch_scope "per-worker" that batch is batch_size itself (measured.csv, the CLI), with
    "global" it is batch_size / workers (a TrainingJob's globalBatchSize split evenly).
    """
    per_worker = params.batch_size if params.batch_scope == "per-worker" else (
        params.batch_size / workers
    )
    return predict_speed(params, ps, workers) * per_worker


def remaining_seconds(
    params: SpeedParams,
    ps: int,
    workers: int,
    remaining_epochs: float,
    samples_per_epoch: float,
) -> float:
    """Wall-clock seconds to train `remaining_epochs` more epochs at (ps, workers).

    remaining_epochs * samples_per_epoch / samples_per_second: with the loss model's
    ConvergenceEstimate.remaining_epochs this is the allocator's RemainingTime for one job.
    A configuration that can make no progress (no worker, or no PS in a PS mode) takes
    math.inf, as the allocator expects; 0 epochs take 0 s.
    """
    if not (math.isfinite(remaining_epochs) and remaining_epochs >= 0):
        raise ModelError(f"remaining_epochs = {remaining_epochs}; it must be a number >= 0")
    if not (math.isfinite(samples_per_epoch) and samples_per_epoch > 0):
        raise ModelError(f"samples_per_epoch = {samples_per_epoch}; it must be a number > 0")
    if remaining_epochs == 0:
        return 0.0
    if workers < 1 or (params.mode != "allreduce" and ps < 1):
        return math.inf
    return remaining_epochs * samples_per_epoch / samples_per_second(params, ps, workers)


def _axis(low: int, high: int, limit: int) -> list[int]:
    """Integers in [low, high], thinned to at most `limit` roughly log-spaced values."""
    if high - low + 1 <= limit:
        return list(range(low, high + 1))
    spaced = np.geomspace(max(low, 1), high, limit) if low >= 1 else np.linspace(low, high, limit)
    return sorted({low, high, *(round(float(v)) for v in spaced)})


def _log_coordinate(values: np.ndarray, low: int, high: int) -> np.ndarray:
    """Position of each value in [low, high] on a log scale, in [0, 1] (0 if low == high)."""
    if high <= low:
        return np.zeros(len(values))
    lo, hi = math.log(low + 1.0), math.log(high + 1.0)
    return (np.log(values + 1.0) - lo) / (hi - lo)


def propose_probes(
    min_ps: int,
    max_ps: int,
    min_workers: int,
    max_workers: int,
    seen: Collection[tuple[int, int]],
    count: int,
    mode: SpeedMode | str,
    *,
    candidates: Collection[tuple[int, int]] | None = None,
) -> list[tuple[int, int]]:
    """The next `count` (ps, workers) configurations to measure for a job's speed model.

    Every proposal is within the bounds, off the p = w diagonal (diagonal-only samples
    cannot tell the w/p term from the constant one) and not in `seen`. They are spread out
    greedily: each maximises its distance to everything seen or already proposed, on log
    scales (speed changes most at small counts); the first one with nothing seen is the
    one nearest the middle. Ties go to the cheaper configuration (fewer pods). All-reduce
    proposals are (0, w). `candidates`, if given, restricts the choice to those
    configurations (e.g. a measured grid). Fewer than `count` come back when the bounds
    hold fewer eligible configurations.
    """
    mode = parse_mode(mode)
    if count < 0:
        raise ModelError(f"count = {count}; ask for zero or more probes")
    if mode == "allreduce":
        min_ps = max_ps = 0
    elif min_ps < 1:
        raise ModelError(f"min_ps = {min_ps}; {mode} needs at least 1 parameter server")
    if min_workers < 1:
        raise ModelError(f"min_workers = {min_workers}; a job needs at least 1 worker")
    if min_ps > max_ps or min_workers > max_workers:
        raise ModelError(
            f"bounds ps [{min_ps}, {max_ps}], workers [{min_workers}, {max_workers}] are "
            "empty; each min must be <= its max"
        )
    taken = {(0 if mode == "allreduce" else p, w) for p, w in seen}
    if candidates is None:
        pool = [
            (p, w)
            for p in _axis(min_ps, max_ps, 64)
            for w in _axis(min_workers, max_workers, 64)
        ]
    else:
        pool = [(0 if mode == "allreduce" else p, w) for p, w in candidates]
    pool = sorted(
        {
            (p, w)
            for p, w in pool
            if min_ps <= p <= max_ps
            and min_workers <= w <= max_workers
            and (mode == "allreduce" or p != w)
            and (p, w) not in taken
        },
        key=lambda c: (c[0] + c[1], c[0]),
    )
    if not pool or count == 0:
        return []
    pool_array = np.array(pool)
    coords = np.stack(
        [
            _log_coordinate(pool_array[:, 0], min_ps, max_ps),
            _log_coordinate(pool_array[:, 1], min_workers, max_workers),
        ],
        axis=1,
    )
    anchors = [
        (p, w) for p, w in taken if min_ps <= p <= max_ps and min_workers <= w <= max_workers
    ]
    if anchors:
        anchor_array = np.array(anchors)
        anchor_coords = np.stack(
            [
                _log_coordinate(anchor_array[:, 0], min_ps, max_ps),
                _log_coordinate(anchor_array[:, 1], min_workers, max_workers),
            ],
            axis=1,
        )
        nearest = np.min(
            np.linalg.norm(coords[:, None, :] - anchor_coords[None, :, :], axis=2), axis=1
        )
    else:
        nearest = np.full(len(pool), np.inf)
    chosen: list[tuple[int, int]] = []
    available = np.ones(len(pool), dtype=bool)
    for _ in range(min(count, len(pool))):
        if np.isinf(nearest[available]).all():
            # Nothing seen yet: start at the middle of the box.
            score = -np.linalg.norm(coords - 0.5, axis=1)
        else:
            score = nearest.copy()
        score[~available] = -np.inf
        # np.argmax takes the first maximum: the pool is sorted cheapest first.
        best = int(np.argmax(np.round(score, 12)))
        chosen.append(pool[best])
        available[best] = False
        nearest = np.minimum(nearest, np.linalg.norm(coords - coords[best], axis=1))
    return chosen


#: Probes stay within this many PS and workers while that box still has configurations to
#: measure: probing a large job at its extremes costs it (and its neighbours) dearly, and
#: the speed model extrapolates well from small counts (the simulator measured 25 % more
#: average JCT when probes roamed up to 23 PS and 12 workers).
PROBE_BOX: tuple[int, int] = (8, 4)


def probes_within_box(
    min_ps: int,
    max_ps: int,
    min_workers: int,
    max_workers: int,
    seen: Collection[tuple[int, int]],
    count: int,
    mode: SpeedMode | str,
    box: tuple[int | None, int | None] = PROBE_BOX,
) -> list[tuple[int, int]]:
    """`propose_probes` within the job's bounds capped at `box` (None: that count uncapped),
    and within the whole bounds once the box has nothing left to measure. The operator
    (optimus.kube.plan) and the simulator both choose their probes here."""
    capped_ps = max_ps if box[0] is None else min(max_ps, max(min_ps, box[0]))
    capped_workers = max_workers if box[1] is None else min(max_workers,
                                                            max(min_workers, box[1]))
    for high_ps, high_workers in ((capped_ps, capped_workers), (max_ps, max_workers)):
        probes = propose_probes(min_ps, high_ps, min_workers, high_workers, seen, count, mode)
        if probes:
            return probes
    return []

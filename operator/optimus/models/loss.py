"""Step 3 of a scheduling round (pure): the loss (convergence) model of a job.

From the (epoch, loss) points a job has reported so far, fit its loss curve and tell how
many more epochs it needs until its spec's convergence rule holds; the allocator turns
that, with the speed model (optimus.models.speed), into a remaining time.

The curve is the paper's ``l(k) = 1/(b0*k + b1) + b2`` with b0, b1, b2 >= 0, k = epochs
done. The fit:

* drops points that are not finite (NaN, inf) and counts them as rejected;
* normalises the loss scale (divides by the median loss), so thresholds are scale-free;
* weighs recent points more: a point's squared residual counts `recency_weight` ** x,
  x in [0, 1] its position between the first and the last epoch seen (the newest point
  counts `recency_weight` times the oldest);
* is a bounded least squares on the whole history: for a grid of b2 the curve is linear
  after a reciprocal, ``1/(l - b2) = b0*k + b1``, which NNLS solves (rows weighted so the
  reciprocal's residuals match the loss's); the best b2 seeds a bounded refinement
  (scipy's least_squares) in the loss space;
* rejects spikes: points whose residual exceeds `SPIKE_SIGMAS` robust standard deviations
  (and `SPIKE_FLOOR` of the scale) are dropped and counted, and the curve refitted, at most
  a third of the points in all.

Convergence follows the paper's code: the job has converged at the first whole epoch
k >= window where ``l(k - window) - l(k) < loss_delta`` (the fitted loss dropped by less
than loss_delta, in the loss's own units, over the last `window` epochs), capped at
`max_epochs`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from optimus.models.errors import ModelError

#: A residual beyond this many robust standard deviations is a spike.
SPIKE_SIGMAS = 4.0
#: ... and beyond this fraction of the loss scale (so near-perfect fits reject nothing).
SPIKE_FLOOR = 0.02
#: The scale-free RMSE that halves an estimate's confidence (real curves: 1-3%).
RMSE_HALF_CONFIDENCE = 0.05
#: Default weight of the newest point relative to the oldest.
DEFAULT_RECENCY_WEIGHT = 100.0
_B2_GRID = 48

#: A history: a sequence of numbers or a 1-D numpy array.
Numbers = Sequence[float] | npt.NDArray[Any]


@dataclass(frozen=True)
class ConvergenceRule:
    """Converged at the first epoch k >= window with l(k - window) - l(k) < loss_delta."""

    loss_delta: float = 0.05
    window: int = 10
    max_epochs: int = 100

    def __post_init__(self) -> None:
        if not (math.isfinite(self.loss_delta) and self.loss_delta > 0):
            raise ModelError(f"loss_delta = {self.loss_delta}; it must be a positive number")
        if self.window < 1:
            raise ModelError(f"window = {self.window}; it must be at least 1 epoch")
        if self.max_epochs < 1:
            raise ModelError(f"max_epochs = {self.max_epochs}; it must be at least 1 epoch")


@dataclass(frozen=True)
class LossParams:
    """l(k) = 1/(b0*k + b1) + b2, b0, b1, b2 >= 0, in the loss's own units."""

    b0: float
    b1: float
    b2: float


@dataclass(frozen=True)
class LossFit:
    """A fitted curve, the points it used and rejected, and its scale-free RMSE.

    rmse is the root mean square residual of the used points divided by the median loss.
    """

    params: LossParams
    points_used: int
    points_rejected: int
    rmse: float
    last_epoch: float = 0.0


@dataclass(frozen=True)
class ConvergenceEstimate:
    """When the rule will hold (absolute epoch), how many epochs remain, and how sure."""

    converged_epoch: float
    remaining_epochs: float
    confidence: float


def loss_at(params: LossParams, epoch: float) -> float:
    """l(epoch) = 1/(b0*epoch + b1) + b2 (math.inf where b0*epoch + b1 is 0)."""
    denominator = params.b0 * epoch + params.b1
    return math.inf if denominator <= 0 else 1.0 / denominator + params.b2


def _curve(b: np.ndarray, k: np.ndarray) -> np.ndarray:
    return 1.0 / np.maximum(b[0] * k + b[1], 1e-300) + b[2]


def _nnls_two_columns(
    k: np.ndarray, row: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per grid row g, (b0, b1) >= 0 minimising sum_i (row[g,i]*(b0*k_i + b1) - target[g,i])^2.

    The same answer scipy's nnls gives for the design [k*row, row], but for every b2 of
    the grid at once: the fit runs ~3 times a job and the grid loop of 48 nnls calls was
    half of a 1,000-job simulation's CPU. With two unknowns the non-negative optimum is
    the cheapest feasible one of four closed forms (its KKT point lies on one face of the
    quadrant): the unconstrained solution, b1 = 0, b0 = 0, or both 0; each is a 2x2
    normal-equation solve on sums that numpy reduces over the grid in one pass.
    """
    kr = k * row
    s00 = np.sum(kr * kr, axis=1)
    s01 = np.sum(kr * row, axis=1)
    s11 = np.sum(row * row, axis=1)
    c0 = np.sum(kr * target, axis=1)
    c1 = np.sum(row * target, axis=1)

    def cost(b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
        # ||A b - t||^2 less the constant ||t||^2, which does not change the argmin.
        return b0 * b0 * s00 + 2.0 * b0 * b1 * s01 + b1 * b1 * s11 - 2.0 * (b0 * c0 + b1 * c1)

    tiny = np.finfo(float).tiny
    det = s00 * s11 - s01 * s01
    solvable = det > 1e-12 * s00 * s11
    safe_det = np.where(solvable, det, 1.0)
    both0 = (c0 * s11 - c1 * s01) / safe_det
    both1 = (c1 * s00 - c0 * s01) / safe_det
    both_ok = solvable & (both0 >= 0) & (both1 >= 0)
    only0 = np.maximum(c0, 0.0) / np.maximum(s00, tiny)  # b1 = 0
    only1 = np.maximum(c1, 0.0) / np.maximum(s11, tiny)  # b0 = 0
    zeros = np.zeros_like(s00)
    candidates0 = np.stack([np.where(both_ok, both0, 0.0), only0, zeros, zeros])
    candidates1 = np.stack([np.where(both_ok, both1, 0.0), zeros, only1, zeros])
    costs = cost(candidates0, candidates1)
    costs[0] = np.where(both_ok, costs[0], np.inf)
    pick = np.argmin(costs, axis=0)
    columns = np.arange(len(pick))
    return candidates0[pick, columns], candidates1[pick, columns]


def _fit_normalised(
    k: np.ndarray, y: np.ndarray, weight: np.ndarray, *, robust: bool = False
) -> np.ndarray:
    """(b0, b1, b2) >= 0 minimising sum weight * (l(k) - y)^2, for y normalised to ~1.

    robust: refine with a soft-L1 loss instead, so that spikes barely pull the curve
    (used before deciding which points are spikes).
    """
    floor = float(np.min(y))
    # b2 below the lowest loss; denser near it, where the asymptote usually is.
    grid = floor * (1.0 - np.geomspace(1.0, 1e-3, _B2_GRID))
    gap = y[None, :] - grid[:, None]
    valid = np.all(gap > 0, axis=1)
    grid, gap = grid[valid], gap[valid]
    best: tuple[float, np.ndarray] | None = None
    if len(grid):
        # d(1/gap) = -d(gap)/gap^2: scale the rows by gap^2 to weigh loss-space residuals.
        row = np.sqrt(weight)[None, :] * gap**2
        b0, b1 = _nnls_two_columns(k, row, row / gap)
        denominator = b0[:, None] * k[None, :] + b1[:, None]
        usable = np.min(denominator, axis=1) > 0
        with np.errstate(over="ignore"):  # unusable rows may overflow; they are inf anyway
            fitted = 1.0 / np.maximum(denominator, 1e-300) + grid[:, None]
            costs = np.where(usable, np.sum(weight * (fitted - y) ** 2, axis=1), np.inf)
        at = int(np.argmin(costs))  # the first of equal costs, as the loop it replaces
        if usable[at]:
            best = (float(costs[at]), np.array([b0[at], b1[at], grid[at]]))
    if best is None:  # every point at the same loss 0: a flat curve at 0 is not 1/(..)
        return np.array([0.0, 1e12, 0.0])
    start = best[1]
    # Keep the start strictly inside the bounds (least_squares requires it).
    start = np.maximum(start, 1e-12)

    root_weight = np.sqrt(weight)

    def residuals(b: np.ndarray) -> np.ndarray:
        return root_weight * (_curve(b, k) - y)

    def jacobian(b: np.ndarray) -> np.ndarray:
        # The analytic derivatives: least_squares' default finite differences cost 3 more
        # residual evaluations per iteration, a third of the fit's time.
        u = b[0] * k + b[1]
        slope = np.where(u > 1e-300, -root_weight / np.maximum(u, 1e-300) ** 2, 0.0)
        return np.stack([slope * k, slope, root_weight], axis=1)

    if robust:
        refined = least_squares(
            residuals, start, jac=jacobian, bounds=(0.0, np.inf), method="trf", max_nfev=200,
            loss="soft_l1", f_scale=SPIKE_FLOOR,
        )
        return np.asarray(refined.x)
    refined = least_squares(residuals, start, jac=jacobian, bounds=(0.0, np.inf),
                            method="trf", max_nfev=200)
    cost_refined = float(np.sum(residuals(refined.x) ** 2))
    return refined.x if cost_refined <= best[0] else best[1]


def fit_loss(
    epochs: Numbers,
    losses: Numbers,
    *,
    recency_weight: float = DEFAULT_RECENCY_WEIGHT,
) -> LossFit:
    """Fit l(k) = 1/(b0*k + b1) + b2 to a job's history (see the module docstring).

    Raises ModelError when the lists differ in length, an epoch is negative or not finite,
    a loss is negative, recency_weight is not positive, or fewer than 3 distinct epochs
    remain after rejecting outliers. A flat history is not an error: it fits b0 = 0.
    """
    if len(epochs) != len(losses):
        raise ModelError(
            f"got {len(epochs)} epochs but {len(losses)} losses; give one loss per epoch"
        )
    if not (math.isfinite(recency_weight) and recency_weight > 0):
        raise ModelError(f"recency_weight = {recency_weight}; it must be a positive number")
    k_all = np.asarray(epochs, dtype=float)
    y_all = np.asarray(losses, dtype=float)
    if np.any(~np.isfinite(k_all)) or np.any(k_all < 0):
        raise ModelError("every epoch must be a finite number >= 0 (epochs done so far)")
    finite = np.isfinite(y_all)
    if np.any(y_all[finite] < 0):
        raise ModelError(
            "a loss is negative; the model l(k) = 1/(b0*k + b1) + b2 needs losses >= 0 "
            "(shift the loss by a known lower bound first)"
        )
    k = k_all[finite]
    y = y_all[finite]
    if len(np.unique(k)) < 3:
        raise ModelError(
            f"only {len(np.unique(k))} distinct epoch(s) with a finite loss; the loss model "
            "has 3 parameters: report at least 3 epochs"
        )
    order = np.argsort(k, kind="stable")
    k, y = k[order], y[order]
    scale = float(np.median(y))
    if scale <= 0:
        scale = float(np.max(y)) or 1.0
    y_norm = y / scale
    span = float(k[-1] - k[0]) or 1.0
    weight = recency_weight ** ((k - k[0]) / span)

    keep = np.ones(len(k), dtype=bool)
    max_rejected = len(k) // 3
    b = _fit_normalised(k, y_norm, weight, robust=True)
    refitted = False
    for _ in range(4):
        # Judge every point against the current curve, so that a point rejected under an
        # early, spike-pulled fit comes back once the curve is right.
        signed = _curve(b, k) - y_norm
        centre = float(np.median(signed[keep]))
        # Robust standard deviation of the residuals (1.4826 * MAD is sigma for Gaussians).
        sigma = 1.4826 * float(np.median(np.abs(signed[keep] - centre)))
        residual = np.abs(signed - centre)
        threshold = max(SPIKE_SIGMAS * sigma, SPIKE_FLOOR)
        worst_first = np.argsort(-residual, kind="stable")
        outliers = [int(i) for i in worst_first[:max_rejected] if residual[i] > threshold]
        candidate_keep = np.ones(len(k), dtype=bool)
        candidate_keep[outliers] = False
        if len(np.unique(k[candidate_keep])) < 3 or np.array_equal(candidate_keep, keep):
            break
        keep = candidate_keep
        b = _fit_normalised(k[keep], y_norm[keep], weight[keep])
        refitted = True

    if not refitted:  # the robust start was never replaced by a plain fit
        b = _fit_normalised(k[keep], y_norm[keep], weight[keep])
    residual = _curve(b, k[keep]) - y_norm[keep]
    rmse = float(np.sqrt(np.mean(residual**2)))
    params = LossParams(b0=float(b[0]) / scale, b1=float(b[1]) / scale, b2=float(b[2]) * scale)
    rejected = int(np.sum(~finite)) + int(np.sum(~keep))
    return LossFit(params, int(np.sum(keep)), rejected, rmse, last_epoch=float(k[-1]))


def converged_epoch(params: LossParams, rule: ConvergenceRule) -> int:
    """The first whole epoch k >= window where l(k - window) - l(k) < loss_delta, capped.

    With u = b0*k + b1 the drop is b0*W / ((u - b0*W) * u), decreasing in u, so the rule
    holds from the root u* of u^2 - b0*W*u - b0*W/delta = 0 on: k = ceil((u* - b1)/b0).
    """
    window, delta = rule.window, rule.loss_delta
    if params.b0 == 0:
        return min(window, rule.max_epochs)
    drop = params.b0 * window
    u_star = (drop + math.sqrt(drop * drop + 4.0 * drop / delta)) / 2.0
    k = max(window, math.ceil((u_star - params.b1) / params.b0))
    # Guard the ceiling against rounding: step to the exact first epoch.
    while k > window and loss_at(params, k - 1 - window) - loss_at(params, k - 1) < delta:
        k -= 1
    while k < rule.max_epochs and not (
        loss_at(params, k - window) - loss_at(params, k) < delta
    ):
        k += 1
    return min(k, rule.max_epochs)


def estimate_convergence(
    fit: LossFit, rule: ConvergenceRule, epochs_done: float
) -> ConvergenceEstimate:
    """The converged epoch, the epochs remaining after `epochs_done`, and a confidence.

    confidence = seen * quality * support, each in [0, 1]:
    seen = epochs_done / converged_epoch (how much of the curve up to convergence has been
    observed; 1 once there), quality = 1 / (1 + (rmse / RMSE_HALF_CONFIDENCE)^2) (a 5% RMSE
    halves it), support = used / (used + 3) (3 points for 3 parameters give one half).
    """
    if not (math.isfinite(epochs_done) and epochs_done >= 0):
        raise ModelError(f"epochs_done = {epochs_done}; it must be a finite number >= 0")
    epoch = float(converged_epoch(fit.params, rule))
    remaining = max(0.0, epoch - epochs_done)
    seen = 1.0 if epoch <= 0 else min(1.0, epochs_done / epoch)
    quality = 1.0 / (1.0 + (fit.rmse / RMSE_HALF_CONFIDENCE) ** 2)
    support = fit.points_used / (fit.points_used + 3.0)
    confidence = min(1.0, max(0.0, seen * quality * support))
    return ConvergenceEstimate(epoch, remaining, confidence)

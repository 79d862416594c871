"""Step 3 of a scheduling round (pure): the Optimus loss (convergence) model and the
resource-speed model, each a frozen parameter tuple with its equation and a pure `fit_*`.
"""

from optimus.models.errors import ModelError
from optimus.models.loss import (
    ConvergenceEstimate,
    ConvergenceRule,
    LossFit,
    LossParams,
    converged_epoch,
    estimate_convergence,
    fit_loss,
    loss_at,
)
from optimus.models.speed import (
    MODE_ALIASES,
    THETA_NAMES,
    BatchScope,
    SpeedMode,
    SpeedParams,
    SpeedSample,
    StepSplit,
    fit_speed,
    parse_mode,
    predict_speed,
    prior_from_split,
    probes_within_box,
    propose_probes,
    remaining_seconds,
    samples_per_second,
)

__all__ = [
    "MODE_ALIASES",
    "THETA_NAMES",
    "BatchScope",
    "ConvergenceEstimate",
    "ConvergenceRule",
    "LossFit",
    "LossParams",
    "ModelError",
    "SpeedMode",
    "SpeedParams",
    "SpeedSample",
    "StepSplit",
    "converged_epoch",
    "estimate_convergence",
    "fit_loss",
    "fit_speed",
    "loss_at",
    "parse_mode",
    "predict_speed",
    "prior_from_split",
    "probes_within_box",
    "propose_probes",
    "remaining_seconds",
    "samples_per_second",
]

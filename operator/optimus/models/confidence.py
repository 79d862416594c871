"""Step 3 of a scheduling round (pure): how far the models' answers can be trusted.

The speed model (optimus.models.speed) and the loss model (optimus.models.loss) answer
every question the allocator asks, but not equally well: a configuration the job (or its
kind) measured is known to within the scatter of measurements; one between measured
configurations is known to within the fit's misfit, inflated by how few configurations
the fit had; one beyond every measured configuration is an extrapolation; and a job with
no model at all knows nothing. The round turns each answer's source into a relative error
band (`speed_band`, `convergence_band`), and a decision that can only be justified by a
gain inside that band is not taken (optimus.scheduling.greedy.move_pays,
optimus.scheduling.probes.probe_pays_back). docs/design-notes.md "Value of information"
says why these numbers.

Bands are relative (0.1: the truth is within about +-10% of the answer) and derived from
the fit itself, never from the truth: the fit's relative residual RMSE (`fit_error`, what
`fit_job` reports as the speed fit error) is the scatter of measurements about the model,
which bounds both a single measurement's noise (placement, contention) and the model's
misfit between measurements. A measurement, the job's own or its kind's pooled mean, gets
the same band: on the measured speeds a move to either was mispredicted alike (about 20%
RMS). A known limit: a fit with no more configurations than the equation has terms has a
residual of about 0, so its bands are narrow by construction (a job's own first fits in
the operator, which pools nothing yet); the kinds' pooled fits have many more.
"""

from __future__ import annotations

import math
from typing import Literal

#: where a speed answer comes from, best known first
SpeedSource = Literal["oracle", "measured", "model", "extrapolated", "nearest", "unknown"]

#: a band is never wider than this: the whole answer (a relative error of 100%)
UNKNOWN_BAND = 1.0
#: an extrapolated answer (beyond every measured configuration in PS or workers) is this
#: many times less certain than an interpolated one: nothing measured pins the equation's
#: terms there
EXTRAPOLATION_FACTOR = 2.0
#: the convergence band of a remaining-epochs answer taken from the kind's finished jobs
#: when they are too few to show their own spread
PRIOR_BAND_FEW = 0.5


def speed_band(source: SpeedSource, fit_error: float | None, configurations: int,
               parameters: int) -> float:
    """The relative error band of a speed answer from `source`.

    * oracle: 0 (the truth);
    * measured: the fit's scatter `fit_error` (a measurement at the configuration answers,
      and measurements scatter about the model by that much);
    * model: fit_error * sqrt(1 + parameters / configurations), the prediction interval of
      a least-squares fit of `parameters` terms to `configurations` distinct points;
    * extrapolated: EXTRAPOLATION_FACTOR times the model's band;
    * nearest (measured elsewhere, no model) and unknown: UNKNOWN_BAND.

    A missing or non-finite `fit_error` is an unknown band; every band is within
    [0, UNKNOWN_BAND]."""
    if source == "oracle":
        return 0.0
    if source in ("nearest", "unknown") or fit_error is None or not math.isfinite(fit_error):
        return UNKNOWN_BAND
    error = max(0.0, fit_error)
    if source == "measured":
        band = error
    else:
        band = error * math.sqrt(1.0 + parameters / max(1, configurations))
        if source == "extrapolated":
            band *= EXTRAPOLATION_FACTOR
    return min(UNKNOWN_BAND, band)


def convergence_band(*, oracle: bool, confidence: float | None,
                     prior_epochs: tuple[float, ...] = (), from_prior: bool = False) -> float:
    """The relative error band of a job's remaining epochs.

    * oracle: 0;
    * from the kind's finished jobs (`from_prior`): their coefficient of variation (the
      spread of the epochs they converged at), PRIOR_BAND_FEW while fewer than two;
    * from the job's own loss model: 1 - its `confidence` (estimate_convergence's);
    * neither (maxEpochs minus the epochs done): UNKNOWN_BAND."""
    if oracle:
        return 0.0
    if from_prior:
        if len(prior_epochs) < 2:
            return PRIOR_BAND_FEW
        mean = sum(prior_epochs) / len(prior_epochs)
        if not mean > 0:
            return UNKNOWN_BAND
        spread = math.sqrt(sum((e - mean) ** 2 for e in prior_epochs) / (len(prior_epochs) - 1))
        return min(UNKNOWN_BAND, spread / mean)
    if confidence is None or not math.isfinite(confidence):
        return UNKNOWN_BAND
    return min(UNKNOWN_BAND, max(0.0, 1.0 - confidence))

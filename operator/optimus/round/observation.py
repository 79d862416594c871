"""What step 2 of a scheduling round hands to step 3: one job's observation (pure types).

The operator fills them from Prometheus (optimus.metrics.observe), the simulator from its
simulated cluster (optimus.simulation.engine); the fit step (optimus.round.knowledge) reads
them the same way whichever produced them.
"""

from __future__ import annotations

from dataclasses import dataclass

from optimus.models import StepSplit

JobKey = tuple[str, str]  # (namespace, job)


@dataclass(frozen=True)
class SpeedWindow:
    """Which generation of a job to measure, and from when (its pods' start + warm-up)."""

    generation: int
    since: float


@dataclass(frozen=True)
class JobObservation:
    """What the cluster says about one job.

    loss_points: (whole epochs done, mean loss of the last finished epoch), one per epoch.
    epoch/step/loss: the newest values of the newest generation seen.
    speed: steps/s summed over the workers of the measured generation (each step one
        worker's share of a batch), or None when it has not run for `min_span` seconds
        since its warm-up. The fit step converts it to the speed model's unit
        (optimus.round.knowledge.model_speed).
    samples_per_epoch: samples the job processes per epoch (None until measurable).
    split: where the measured generation's steps went (compute, communication, bytes,
        the PS update; optimus.models.StepSplit, per step of one worker), over the same
        window as `speed`; None when not measured (the white-box prior needs it).
    first_step_at: when the newest generation's step counters first showed a step (the
        first sample above 0), or None when none has shown or the lookback does not reach
        back to before it (the counters were already moving in its first sample).
    """

    generation: int | None = None
    loss_points: tuple[tuple[float, float], ...] = ()
    epoch: float | None = None
    step: float | None = None
    loss: float | None = None
    speed: float | None = None
    speed_span: float = 0.0
    samples_per_epoch: float | None = None
    series: int = 0
    first_step_at: float | None = None
    split: StepSplit | None = None

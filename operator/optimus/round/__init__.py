"""One scheduling round's steps 3 to 5, pure, shared by the operator and the simulator:
the observation types step 2 hands over, the fit (knowledge of each job), the pins,
allocation, keep-running and placement (`run_round`). See docs/architecture.md."""

from optimus.round.knowledge import (
    MIN_REMAINING_EPOCHS,
    FitJob,
    Knowledge,
    ModelMemory,
    Oracle,
    batch_scope,
    fit_job,
    model_speed,
    samples_per_step,
    summed_steps_per_second,
)
from optimus.round.observation import JobKey, JobObservation, SpeedWindow
from optimus.round.round import (
    BASELINE_PLACEMENTS,
    FittedJob,
    JobDecision,
    RoundJob,
    RoundOutcome,
    SchedulingSettings,
    fit_round_job,
    keep_running,
    pool_observations,
    run_round,
    schedule,
)
from optimus.round.store import KindKnowledge, KnowledgeStore, PooledSample, kind_key

__all__ = [
    "BASELINE_PLACEMENTS",
    "MIN_REMAINING_EPOCHS",
    "FitJob",
    "FittedJob",
    "JobDecision",
    "JobKey",
    "JobObservation",
    "KindKnowledge",
    "Knowledge",
    "KnowledgeStore",
    "ModelMemory",
    "Oracle",
    "PooledSample",
    "RoundJob",
    "RoundOutcome",
    "SchedulingSettings",
    "SpeedWindow",
    "batch_scope",
    "fit_job",
    "fit_round_job",
    "keep_running",
    "kind_key",
    "model_speed",
    "pool_observations",
    "run_round",
    "samples_per_step",
    "schedule",
    "summed_steps_per_second",
]

"""The TrainingJob API (pure): spec and status as frozen dataclasses, parsing of raw
objects with errors that name the field and the fix, condition types and reasons.
"""

from optimus.api.conditions import Condition, derive_phase, set_condition
from optimus.api.spec import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Checkpoint,
    Convergence,
    FieldError,
    JobMeta,
    SpecError,
    TaskGroup,
    TrainingJob,
    TrainingJobSpec,
    parse_meta,
    parse_spec,
    parse_training_job,
)
from optimus.api.status import (
    AllocationStatus,
    ModelStatus,
    ProgressStatus,
    TrainingJobStatus,
    parse_status,
    status_patch,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "AllocationStatus",
    "Checkpoint",
    "Condition",
    "Convergence",
    "FieldError",
    "JobMeta",
    "ModelStatus",
    "ProgressStatus",
    "SpecError",
    "TaskGroup",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "derive_phase",
    "parse_meta",
    "parse_spec",
    "parse_status",
    "parse_training_job",
    "set_condition",
    "status_patch",
]

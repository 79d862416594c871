"""Names of the metrics the operator itself exports (prometheus-client), in one place.

The operator's exporter (optimus.metrics.exporter), the Grafana dashboards and the
PrometheusRule alerts (charts/optimus/) all use these names; a test checks that every
series a dashboard or alert charts is defined here or in optimus_worker.contract.
"""

from typing import Final

OP_JOBS_BY_PHASE: Final = "optimus_jobs"  # gauge, label phase
OP_ALLOCATED_PS: Final = "optimus_job_allocated_ps"  # gauge, labels namespace, job
OP_ALLOCATED_WORKERS: Final = "optimus_job_allocated_workers"  # gauge, labels namespace, job
OP_ALLOCATED_GPUS: Final = "optimus_job_allocated_gpus"  # gauge, labels namespace, job
OP_CLUSTER_GPUS: Final = "optimus_cluster_gpus"  # gauge, label state = allocated | free
OP_REMAINING_SECONDS: Final = "optimus_job_predicted_remaining_seconds"  # gauge, ns, job
OP_REMAINING_EPOCHS: Final = "optimus_job_predicted_remaining_epochs"  # gauge, ns, job
OP_CONVERGED_EPOCH: Final = "optimus_job_predicted_converged_epoch"  # gauge, ns, job
OP_FITTED_LOSS: Final = "optimus_job_fitted_loss"  # gauge, ns, job: l(k) of the fit at now
OP_PREDICTED_SPEED: Final = "optimus_job_predicted_speed"  # gauge, ns, job: f(p, w) now
OP_FIT_ERROR: Final = "optimus_model_fit_error"  # gauge, labels namespace, job, model
OP_RESTART_COST: Final = "optimus_restart_cost_seconds"  # gauge: the round's restart cost
OP_KNOWLEDGE_KINDS: Final = "optimus_knowledge_kinds"  # gauge: kinds in the knowledge store
OP_KNOWLEDGE_SAMPLES: Final = "optimus_knowledge_speed_samples"  # gauge: pooled speed samples
OP_ROUND_SECONDS: Final = "optimus_scheduling_round_seconds"  # histogram, label step
OP_RESIZES: Final = "optimus_resizes"  # counter (*_total), labels namespace, job
OP_PROM_FAILURES: Final = "optimus_prometheus_query_failures"  # counter (*_total)
OP_ROUNDS: Final = "optimus_scheduling_rounds"  # counter (*_total), label outcome

LABEL_PHASE: Final = "phase"
LABEL_STEP: Final = "step"  # snapshot | observe | fit | allocate | place | act
LABEL_MODEL: Final = "model"  # loss | speed
LABEL_STATE: Final = "state"
LABEL_OUTCOME: Final = "outcome"
DEFAULT_OPERATOR_METRICS_PORT: Final = 9500

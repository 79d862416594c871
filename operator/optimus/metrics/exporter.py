"""The operator's own metrics (prometheus-client), named in optimus.metrics.names: jobs by
phase, each job's allocation and predictions, fit errors, the duration of every step of a
scheduling round, resizes and Prometheus query failures. Served on the operator's metrics
port (OPTIMUS_METRICS_PORT) by `OperatorMetrics.serve`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from optimus.api.conditions import PHASES
from optimus.metrics import names

_ROUND_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ROUND_STEPS = ("snapshot", "observe", "fit", "allocate", "place", "act")


@dataclass(frozen=True)
class JobGauges:
    """The per-job values exported after every round (None: not known, series removed)."""

    ps: int = 0
    workers: int = 0
    gpus: float = 0.0
    remaining_seconds: float | None = None
    remaining_epochs: float | None = None
    converged_epoch: float | None = None
    fitted_loss: float | None = None
    predicted_speed: float | None = None
    fit_error_loss: float | None = None
    fit_error_speed: float | None = None


class OperatorMetrics:
    """All of the operator's series in one registry (a fresh one per instance, so tests
    and several operators in one process do not collide)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        job = ("namespace", "job")
        self.jobs = Gauge(names.OP_JOBS_BY_PHASE, "TrainingJobs by phase",
                          [names.LABEL_PHASE], registry=r)
        self.ps = Gauge(names.OP_ALLOCATED_PS, "Allocated parameter servers", job, registry=r)
        self.workers = Gauge(names.OP_ALLOCATED_WORKERS, "Allocated workers", job, registry=r)
        self.gpus = Gauge(names.OP_ALLOCATED_GPUS, "Allocated GPUs", job, registry=r)
        self.cluster_gpus = Gauge(names.OP_CLUSTER_GPUS, "Cluster GPUs by state",
                                  [names.LABEL_STATE], registry=r)
        self.remaining_seconds = Gauge(names.OP_REMAINING_SECONDS,
                                       "Predicted remaining seconds at the allocation", job,
                                       registry=r)
        self.remaining_epochs = Gauge(names.OP_REMAINING_EPOCHS, "Predicted remaining epochs",
                                      job, registry=r)
        self.converged_epoch = Gauge(names.OP_CONVERGED_EPOCH, "Predicted convergence epoch",
                                     job, registry=r)
        self.fitted_loss = Gauge(names.OP_FITTED_LOSS, "Fitted loss at the current epoch", job,
                                 registry=r)
        self.predicted_speed = Gauge(names.OP_PREDICTED_SPEED,
                                     "Predicted steps/s at the allocation", job, registry=r)
        self.fit_error = Gauge(names.OP_FIT_ERROR, "Model fit error (relative RMSE)",
                               [*job, names.LABEL_MODEL], registry=r)
        self.restart_cost_seconds = Gauge(
            names.OP_RESTART_COST, "Restart cost the last round used: the median measured "
            "restart on this cluster, or the configured value before 3 are measured",
            registry=r)
        self.knowledge_kinds = Gauge(
            names.OP_KNOWLEDGE_KINDS, "Kinds of job (model, mode, global batch) in the "
            "knowledge pooled across jobs", registry=r)
        self.knowledge_samples = Gauge(
            names.OP_KNOWLEDGE_SAMPLES, "Speed measurements pooled in the knowledge store, "
            "over all kinds", registry=r)
        self.round_seconds = Histogram(names.OP_ROUND_SECONDS,
                                       "Duration of each step of a scheduling round",
                                       [names.LABEL_STEP], buckets=_ROUND_BUCKETS, registry=r)
        self.resizes = Counter(names.OP_RESIZES, "Resizes of a job's allocation", job,
                               registry=r)
        self.prom_failures = Counter(names.OP_PROM_FAILURES, "Failed Prometheus queries",
                                     registry=r)
        self.rounds = Counter(names.OP_ROUNDS, "Scheduling rounds by outcome",
                              [names.LABEL_OUTCOME], registry=r)
        self._jobs_seen: set[tuple[str, str]] = set()

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def step_duration(self, step: str, seconds: float) -> None:
        self.round_seconds.labels(step).observe(seconds)

    def restart_cost(self, seconds: float) -> None:
        self.restart_cost_seconds.set(seconds)

    def set_knowledge(self, kinds: int, speed_samples: int) -> None:
        self.knowledge_kinds.set(kinds)
        self.knowledge_samples.set(speed_samples)

    def round_done(self, outcome: str) -> None:
        self.rounds.labels(outcome).inc()

    def resized(self, namespace: str, job: str) -> None:
        self.resizes.labels(namespace, job).inc()

    def prometheus_failed(self) -> None:
        self.prom_failures.inc()

    def set_phases(self, phases: Iterable[str]) -> None:
        counts = dict.fromkeys(PHASES, 0)
        for phase in phases:
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            self.jobs.labels(phase).set(count)

    def set_cluster_gpus(self, allocated: float, total: float) -> None:
        self.cluster_gpus.labels("allocated").set(allocated)
        self.cluster_gpus.labels("free").set(max(0.0, total - allocated))

    def set_jobs(self, jobs: Mapping[tuple[str, str], JobGauges]) -> None:
        """Per-job series for exactly these jobs: series of jobs no longer listed go away."""
        optional = {
            "remaining_seconds": self.remaining_seconds,
            "remaining_epochs": self.remaining_epochs,
            "converged_epoch": self.converged_epoch,
            "fitted_loss": self.fitted_loss,
            "predicted_speed": self.predicted_speed,
        }
        for gone in self._jobs_seen - set(jobs):
            self._remove(gone, [*optional.values(), self.ps, self.workers, self.gpus])
        for key, values in jobs.items():
            self.ps.labels(*key).set(values.ps)
            self.workers.labels(*key).set(values.workers)
            self.gpus.labels(*key).set(values.gpus)
            for attr, gauge in optional.items():
                value = getattr(values, attr)
                if value is None:
                    self._remove(key, [gauge])
                else:
                    gauge.labels(*key).set(value)
            for model, value in (("loss", values.fit_error_loss),
                                 ("speed", values.fit_error_speed)):
                if value is not None:
                    self.fit_error.labels(*key, model).set(value)
        self._jobs_seen = set(jobs)

    def _remove(self, key: tuple[str, str], gauges: Iterable[Gauge]) -> None:
        for gauge in gauges:
            with contextlib.suppress(KeyError):
                gauge.remove(*key)
        for model in ("loss", "speed"):
            with contextlib.suppress(KeyError):
                self.fit_error.remove(*key, model)

"""The Prometheus series a pod exports (names and labels from `optimus_worker.contract`).

Each task serves its own registry on ``OPTIMUS_METRICS_PORT``, bound to the pod's address.
Every series carries the labels job, namespace, role, rank and generation. Counters are
per task: a worker's steps counter counts the mini-batches it computed (in ps-sync and
allreduce that is the job's step count on every worker; in ps-async the job's pushes are the
sum over workers), its samples counter the samples it trained on.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from optimus_worker import contract

STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0)


class TaskMetrics:
    """The series of one task (a PS or a worker), already labelled with its identity."""

    def __init__(self, env: contract.PodEnv) -> None:
        self.registry = CollectorRegistry()
        labels = {
            contract.LABEL_JOB: env.job, contract.LABEL_NAMESPACE: env.namespace,
            contract.LABEL_ROLE: env.role, contract.LABEL_RANK: str(env.rank),
            contract.LABEL_GENERATION: str(env.generation),
        }
        names = list(contract.METRIC_LABELS)
        reg = self.registry
        self.loss = Gauge(contract.METRIC_LOSS, "Mean training loss of the last finished "
                          "epoch (all workers' samples)", names, registry=reg).labels(**labels)
        self.epoch = Gauge(contract.METRIC_EPOCH, "Fractional epochs done", names,
                           registry=reg).labels(**labels)
        self.samples = Counter(contract.METRIC_SAMPLES, "Samples this task trained on",
                               names, registry=reg).labels(**labels)
        self.steps = Counter(contract.METRIC_STEPS, "Mini-batches this task computed (PS: "
                             "updates applied)", names, registry=reg).labels(**labels)
        step_seconds = Histogram(contract.METRIC_STEP_SECONDS, "Seconds per step by phase",
                                 [*names, contract.LABEL_PHASE], buckets=STEP_BUCKETS,
                                 registry=reg)
        self.compute_seconds = step_seconds.labels(**labels, **{contract.LABEL_PHASE: "compute"})
        self.communication_seconds = step_seconds.labels(
            **labels, **{contract.LABEL_PHASE: "communication"})
        self.staleness = Gauge(contract.METRIC_STALENESS, "Updates applied between a "
                               "worker's pull and its push (ps-async)", names,
                               registry=reg).labels(**labels)
        self.checkpoint_step = Gauge(contract.METRIC_CHECKPOINT_STEP, "Step of the newest "
                                     "checkpoint", names, registry=reg).labels(**labels)
        self._evaluation = Gauge(contract.METRIC_EVALUATION, "The task's evaluation after "
                                 "the last finished epoch (chief)",
                                 [*names, contract.LABEL_METRIC], registry=reg)
        self._labels = labels

    def evaluated(self, results: dict[str, float]) -> None:
        for name, value in results.items():
            self._evaluation.labels(**self._labels, **{contract.LABEL_METRIC: name}).set(value)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

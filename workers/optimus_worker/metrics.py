"""The Prometheus series a pod exports (names and labels from `optimus_worker.contract`).

Each task serves its own registry on ``OPTIMUS_METRICS_PORT``, bound to the pod's address.
Every series carries the labels job, namespace, role, rank and generation. Counters are
per task: a worker's steps counter counts the mini-batches it computed (in ps-sync and
allreduce that is the job's step count on every worker; in ps-async the job's pushes are the
sum over workers), its samples counter the samples it trained on. Each step is also split
(the operator's white-box speed prior, optimus.models.prior_from_split): a worker's compute
and communication seconds and the bytes it exchanged, a PS's update seconds.
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
        self.identity = {
            contract.LABEL_JOB: env.job, contract.LABEL_NAMESPACE: env.namespace,
            contract.LABEL_ROLE: env.role, contract.LABEL_RANK: str(env.rank),
            contract.LABEL_GENERATION: str(env.generation),
        }
        names = list(contract.METRIC_LABELS)
        reg = self.registry
        self._loss = Gauge(contract.METRIC_LOSS, "Mean training loss of the last finished "
                           "epoch (all workers' samples)", names, registry=reg)
        self._epoch = Gauge(contract.METRIC_EPOCH, "Fractional epochs done", names,
                            registry=reg)
        self._samples = Counter(contract.METRIC_SAMPLES, "Samples this task trained on",
                                names, registry=reg)
        self._steps = Counter(contract.METRIC_STEPS, "Mini-batches this task computed (PS: "
                              "updates applied)", names, registry=reg)
        self._step_seconds = Histogram(contract.METRIC_STEP_SECONDS, "Seconds per step by "
                                       "phase", [*names, contract.LABEL_PHASE],
                                       buckets=STEP_BUCKETS, registry=reg)
        self._step_bytes = Counter(contract.METRIC_STEP_BYTES, "Bytes this worker sent and "
                                   "received in its steps' exchange", names, registry=reg)
        self._staleness = Gauge(contract.METRIC_STALENESS, "Updates applied between a "
                                "worker's pull and its push (ps-async)", names, registry=reg)
        self._checkpoint_step = Gauge(contract.METRIC_CHECKPOINT_STEP, "Step of the newest "
                                      "checkpoint", names, registry=reg)
        self._evaluation = Gauge(contract.METRIC_EVALUATION, "The task's evaluation after "
                                 "the last finished epoch (chief)",
                                 [*names, contract.LABEL_METRIC], registry=reg)
        self._bind()

    def _bind(self) -> None:
        labels = self.identity
        self.loss = self._loss.labels(**labels)
        self.epoch = self._epoch.labels(**labels)
        self.samples = self._samples.labels(**labels)
        self.steps = self._steps.labels(**labels)
        self.compute_seconds = self._step_seconds.labels(
            **labels, **{contract.LABEL_PHASE: contract.PHASE_COMPUTE})
        self.communication_seconds = self._step_seconds.labels(
            **labels, **{contract.LABEL_PHASE: contract.PHASE_COMMUNICATION})
        self.update_seconds = self._step_seconds.labels(
            **labels, **{contract.LABEL_PHASE: contract.PHASE_UPDATE})
        self.step_bytes = self._step_bytes.labels(**labels)
        self.staleness = self._staleness.labels(**labels)
        self.checkpoint_step = self._checkpoint_step.labels(**labels)

    def relabel(self, rank: int, generation: int) -> None:
        """After a resize in place the task serves under its new rank and generation (the
        operator measures each generation's speed from its own series); the old series go."""
        old = [self.identity[name] for name in contract.METRIC_LABELS]
        gauges = (self._loss, self._epoch, self._staleness, self._checkpoint_step)
        kept = {gauge: sample.value for gauge in gauges for family in gauge.collect()
                for sample in family.samples if sample.labels == self.identity}
        for metric in (*gauges, self._samples, self._steps, self._step_bytes):
            metric.remove(*old)
        for phase in contract.PHASES:
            self._step_seconds.remove(*old, phase)
        self.identity = {**self.identity, contract.LABEL_RANK: str(rank),
                         contract.LABEL_GENERATION: str(generation)}
        self._bind()
        for gauge, value in kept.items():  # a gauge's state goes on; counters start anew
            gauge.labels(**self.identity).set(value)

    def evaluated(self, results: dict[str, float]) -> None:
        for name, value in results.items():
            self._evaluation.labels(**self.identity, **{contract.LABEL_METRIC: name}).set(value)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

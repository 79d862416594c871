"""The cluster-wide scheduling loop: one round runs the numbered, timed steps of DESIGN.md
over every TrainingJob at once, and the act step carries out the resize protocol.

    1 snapshot  nodes and pods from the API, jobs from the kopf index
    2 observe   four Prometheus range queries for all jobs (optimus.metrics.observe)
    3 fit       per job: progress, models, conditions (optimus.kube.plan.assess)
    4 allocate  the policy over every schedulable job (optimus.scheduling.allocate)
    5 place     a node for every pod (optimus.scheduling.place), then the decisions
    6 act       write the changed statuses, record events, roll or delete pods

The round is the only writer of every status field (one round at a time, under a lock),
and it remembers what it wrote, so a round never works from a status older than its own
last write even when the watch has not caught up. Pod work runs in one background task
per job; a job whose task is still running is "busy" and is neither resized again nor
rolled until the task ends.

Resize protocol (`roll`): ask the chief of the old generation for a checkpoint (bounded
wait; a job running its own script instead checkpoints on the SIGTERM of the deletion,
within its terminationGracePeriodSeconds), delete the old generation's pods and wait until
they are gone (bounded), ensure the headless Service, create the new generation's pods.
The new pods resume from the newest checkpoint. A round later, when all of them run,
Resizing turns False. A suspended job's pods are deleted after the same checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from optimus_worker import contract

from optimus.api.conditions import FINISHED_PHASES
from optimus.api.spec import SpecError, TrainingJob, parse_meta, parse_training_job
from optimus.api.status import AllocationStatus, parse_status
from optimus.kube.builders import build_pods, build_service
from optimus.kube.client import KubeApi
from optimus.kube.config import OperatorConfig
from optimus.kube.plan import (
    Decision,
    JobState,
    RoundSettings,
    assess,
    decide,
    fit_probes_to_capacity,
    fitted_loss_now,
    keep_running,
    learned_restart_cost,
    previous_placement,
    speed_window,
    views,
)
from optimus.kube.snapshot import PodSnapshot, node_views, parse_pod
from optimus.metrics.exporter import JobGauges, OperatorMetrics
from optimus.metrics.observe import JobKey, JobObservation, SpeedWindow, fetch_observations
from optimus.metrics.prometheus import PrometheusClient, PrometheusError
from optimus.scheduling import NodeView, allocate, place

log = logging.getLogger("optimus.kube")

#: how long a roll waits for the old generation's pods to go
POD_DELETION_TIMEOUT = 60.0
#: at most this many status patches in flight at once
PATCH_CONCURRENCY = 16
#: the longest Prometheus back-off, in rounds
MAX_BACKOFF_ROUNDS = 8


@dataclass
class RoundReport:
    """What one round did, for logs, tests and the benchmark."""

    seconds: dict[str, float] = field(default_factory=dict)
    jobs: int = 0
    patched: int = 0
    rolled: int = 0
    deleted: int = 0
    metrics_error: str | None = None
    decisions: list[Decision] = field(default_factory=list)


class Controller:
    def __init__(
        self,
        config: OperatorConfig,
        api: KubeApi,
        prometheus: PrometheusClient,
        metrics: OperatorMetrics | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.api = api
        self.prometheus = prometheus
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock
        self.settings = RoundSettings(
            policy=config.policy,
            restart_cost_seconds=config.restart_cost_seconds,
            speed_warmup_seconds=config.speed_warmup_seconds,
            speed_span_seconds=config.speed_span_seconds,
            metrics_grace_seconds=max(60.0, 3 * config.interval_seconds),
            resize_timeout_seconds=config.resize_timeout_seconds,
            accelerator_resource=config.accelerator_resource,
        )
        self._lock = asyncio.Lock()
        self._pending = False
        self.last_round = -math.inf
        self._written: dict[str, dict[str, Any]] = {}  # uid -> status as last written
        self._tasks: dict[str, asyncio.Task[None]] = {}  # job key -> pod work in flight
        self._prom_failures = 0
        self._prom_retry_at = -math.inf
        self._prom_error: str | None = None
        self._loose: set[asyncio.Future[Any]] = set()  # fire-and-forget event posts

    # ---- when to run ------------------------------------------------------------------------
    async def tick(self, jobs: Callable[[], Iterable[Mapping[str, Any]]], *,
                   force: bool = False) -> RoundReport | None:
        """Run a round if one is due (or forced); a request while one runs queues one more."""
        if self._lock.locked():
            self._pending = self._pending or force
            return None
        if not force and self.clock() - self.last_round < self.config.interval_seconds:
            return None
        report = None
        async with self._lock:
            for _ in range(2):  # the round itself, then at most one queued request
                self._pending = False
                report = await self.run_round(list(jobs()))
                if not self._pending:
                    break
        return report

    async def settle(self) -> None:
        """Wait for the pod work the last rounds started (rolls and deletions)."""
        await asyncio.gather(*self._tasks.values())

    # ---- one round ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _step(self, report: RoundReport, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            report.seconds[name] = seconds
            self.metrics.step_duration(name, seconds)

    async def run_round(self, raw_jobs: Sequence[Mapping[str, Any]]) -> RoundReport:
        report = RoundReport(jobs=len(raw_jobs))
        now = self.clock()
        self.last_round = now
        try:
            await self._round(raw_jobs, now, report)
        except Exception:
            self.metrics.round_done("error")
            log.exception("scheduling round failed")
            raise
        self.metrics.round_done("metrics-unavailable" if report.metrics_error else "ok")
        log.info("round: %d jobs, %d patched, %d rolled, %d deleted; %s", report.jobs,
                 report.patched, report.rolled, report.deleted,
                 ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in report.seconds.items()))
        return report

    async def _round(self, raw_jobs: Sequence[Mapping[str, Any]], now: float,
                     report: RoundReport) -> None:
        # 1 snapshot
        with self._step(report, "snapshot"):
            raw_nodes, raw_pods = await asyncio.gather(self.api.list_nodes(),
                                                       self.api.list_pods())
            accelerator = self.config.accelerator_resource
            pods = [parse_pod(p, accelerator) for p in raw_pods]
            nodes = node_views(raw_nodes, pods, accelerator)
            states = self._states(raw_jobs, pods)
        # 2 observe
        with self._step(report, "observe"):
            observations, metrics_error = await self._observe(states, now)
            report.metrics_error = metrics_error
        # the round's restart cost: measured on this cluster once it can be, else configured
        settings = replace(self.settings, restart_cost_seconds=learned_restart_cost(
            states, self.config.restart_cost_seconds))
        self.metrics.restart_cost(settings.restart_cost_seconds)
        # 3 fit
        with self._step(report, "fit"):
            assessed = [
                assess(s, observations.get((s.meta.namespace, s.meta.name)),
                       metrics_error=metrics_error, now=now, settings=settings,
                       nodes=nodes)
                for s in states
            ]
            assessed = fit_probes_to_capacity(assessed, nodes)
        # 4 allocate
        with self._step(report, "allocate"):
            job_views = views(assessed)
            options: dict[str, Any] = {}
            if settings.policy in ("optimus", "optimus-paper"):
                options["restart_cost_seconds"] = settings.restart_cost_seconds
            allocations = keep_running(assessed, allocate(
                job_views, nodes, settings.policy, now=now, **options))
        # 5 place
        with self._step(report, "place"):
            placement = place(allocations, job_views, nodes, previous_placement(assessed))
            decisions = decide(assessed, placement, now=now, settings=settings)
            report.decisions = decisions
        # 6 act
        with self._step(report, "act"):
            await self._act(decisions, pods, report)
        self._export(decisions, nodes)

    def _states(self, raw_jobs: Sequence[Mapping[str, Any]],
                pods: list[PodSnapshot]) -> list[JobState]:
        by_job: dict[tuple[str, str], list[PodSnapshot]] = {}
        for pod in pods:
            if pod.job is not None:
                by_job.setdefault((pod.namespace, pod.job), []).append(pod)
        states = []
        alive = set()
        for raw in raw_jobs:
            meta = parse_meta(raw)
            alive.add(meta.uid)
            raw_status = self._written.get(meta.uid, raw.get("status"))
            try:
                job = parse_training_job(raw, self.config.accelerator_resource)
                error = None
            except SpecError as err:
                job, error = None, err
            key = meta.key
            task = self._tasks.get(key)
            states.append(JobState(
                meta=meta,
                raw_status=raw_status,
                status=parse_status(raw_status),
                job=job,
                error=error,
                pods=tuple(by_job.get((meta.namespace, meta.name), ())),
                busy=task is not None and not task.done(),
            ))
        for uid in set(self._written) - alive:
            del self._written[uid]
        return states

    async def _observe(self, states: list[JobState], now: float
                       ) -> tuple[dict[JobKey, JobObservation], str | None]:
        windows: dict[JobKey, SpeedWindow | None] = {
            (s.meta.namespace, s.meta.name): speed_window(s.status, self.settings)
            for s in states
            if s.job is not None and s.status.allocation is not None
            and s.status.phase not in ("Succeeded", "Failed")
        }
        if not windows:
            return {}, None
        if now < self._prom_retry_at:
            return {}, self._prom_error
        lookback = min(900.0, max(60.0, 3 * self.config.interval_seconds))
        try:
            observations = await fetch_observations(
                self.prometheus, windows, now=now, lookback=lookback,
                min_span=self.settings.speed_span_seconds)
        except PrometheusError as error:
            self._prom_failures += 1
            rounds = min(2 ** (self._prom_failures - 1), MAX_BACKOFF_ROUNDS)
            self._prom_retry_at = now + (rounds - 0.5) * self.config.interval_seconds
            self._prom_error = f"{error}; retrying in {rounds} round(s)"
            log.warning("%s", self._prom_error)
            return {}, self._prom_error
        self._prom_failures = 0
        self._prom_retry_at = -math.inf
        self._prom_error = None
        return observations, None

    # ---- 6: act ----------------------------------------------------------------------------
    async def _act(self, decisions: list[Decision], pods: list[PodSnapshot],
                   report: RoundReport) -> None:
        semaphore = asyncio.Semaphore(PATCH_CONCURRENCY)

        async def write(decision: Decision) -> bool:
            if decision.patch is None:
                return True
            async with semaphore:
                try:
                    ok = await self.api.patch_status(decision.meta, decision.patch)
                except Exception:  # one job's refused write must not stop the others
                    log.exception("writing the status of %s failed", decision.meta.key)
                    return False
            if ok:
                self._written[decision.meta.uid] = decision.status.to_dict()
                report.patched += 1
            return ok

        # statuses first: a new generation is recorded before any pod changes
        written = await asyncio.gather(*(write(d) for d in decisions))
        for decision, ok in zip(decisions, written, strict=True):
            if not ok:
                continue
            for event in decision.events:
                self._background(self.api.event(decision.meta, event.type, event.reason,
                                                event.message))
            new = decision.status.allocation
            if (new is not None and decision.previous is not None
                    and new.generation != decision.previous.generation
                    and (new.ps, new.workers) != (decision.previous.ps,
                                                  decision.previous.workers)):
                self.metrics.resized(decision.meta.namespace, decision.meta.name)
            key = decision.meta.key
            if decision.action == "none" or (key in self._tasks and not self._tasks[key].done()):
                continue
            job_pods = [p for p in pods if p.namespace == decision.meta.namespace
                        and p.job == decision.meta.name]
            if decision.action == "roll" and new is not None:
                report.rolled += 1
                self._tasks[key] = asyncio.create_task(self._roll(decision, new, job_pods))
            elif decision.action == "delete":
                report.deleted += 1
                self._tasks[key] = asyncio.create_task(self._delete(decision, job_pods))

    def _background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._loose.add(task)
        task.add_done_callback(self._loose.discard)

    async def _checkpoint(self, chief: PodSnapshot) -> None:
        """Ask the old chief for a checkpoint, bounded; a failure only costs the steps since
        the last periodic checkpoint."""
        url = f"http://{chief.ip}:{contract.DEFAULT_CONTROL_PORT}{contract.CONTROL_CHECKPOINT_PATH}"
        timeout = aiohttp.ClientTimeout(total=self.config.checkpoint_timeout_seconds)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.post(url) as reply:
                body = await reply.json(content_type=None)
                log.info("checkpoint of %s/%s: %s", chief.namespace, chief.name, body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("no checkpoint from %s/%s (%s); the newest periodic one is used",
                        chief.namespace, chief.name, error)

    async def _checkpoint_before_stopping(self, job: TrainingJob,
                                          pods: Sequence[PodSnapshot]) -> None:
        """Before `pods` are deleted (a resize, a suspension), have the job checkpoint: the
        library's chief on request (POST /checkpoint); a script of its own (spec.command)
        on the SIGTERM the deletion sends, within terminationGracePeriodSeconds."""
        if job.spec.runs_command:
            return
        chief = next((p for p in pods if p.role == "worker" and p.rank == 0
                      and p.phase == "Running" and p.ip and not p.deleting), None)
        if chief is not None:
            await self._checkpoint(chief)

    async def _remove_pods(self, namespace: str, job: str, names: set[str]) -> None:
        await asyncio.gather(*(self.api.delete_pod(namespace, n) for n in names))
        deadline = time.monotonic() + POD_DELETION_TIMEOUT
        while time.monotonic() < deadline:
            left = {p["metadata"]["name"] for p in await self.api.job_pods(namespace, job)}
            if not left & names:
                return
            await asyncio.sleep(0.5)
        log.warning("pods %s of %s/%s still exist after %.0f s", sorted(left & names),
                    namespace, job, POD_DELETION_TIMEOUT)

    async def _roll(self, decision: Decision, allocation: AllocationStatus,
                    pods: list[PodSnapshot]) -> None:
        meta = decision.meta
        try:
            job = decision.job
            assert job is not None, "only valid jobs are rolled"
            old = [p for p in pods if p.generation != allocation.generation and not p.deleting]
            await self._checkpoint_before_stopping(job, old)
            if old:
                await self._remove_pods(meta.namespace, meta.name, {p.name for p in old})
            await self.api.create(build_service(job))
            existing = {p.name for p in pods if p.generation == allocation.generation
                        and not p.deleting}
            for body in build_pods(job, allocation):
                if body["metadata"]["name"] not in existing:
                    await self.api.create(body)
            log.info("%s: generation %d has %d PS x %d workers", meta.key,
                     allocation.generation, allocation.ps, allocation.workers)
        except Exception:
            log.exception("rolling %s to generation %d failed; the next round retries",
                          meta.key, allocation.generation)

    async def _delete(self, decision: Decision, pods: list[PodSnapshot]) -> None:
        meta = decision.meta
        try:
            if decision.job is not None and decision.job.spec.suspend:
                await self._checkpoint_before_stopping(decision.job, pods)
            await self._remove_pods(meta.namespace, meta.name,
                                    {p.name for p in pods if not p.deleting})
            await self.api.delete_service(meta.namespace, contract.service_name(meta.name))
        except Exception:
            log.exception("deleting the pods of %s failed; the next round retries", meta.key)

    # ---- the operator's own metrics -------------------------------------------------------------
    def _export(self, decisions: list[Decision], nodes: Iterable[NodeView]) -> None:
        gauges: dict[tuple[str, str], JobGauges] = {}
        allocated_gpus = 0.0
        for d in decisions:
            allocation, job, k = d.status.allocation, d.job, d.knowledge
            if allocation is None or job is None or d.status.phase in FINISHED_PHASES:
                continue
            remaining, speed = d.predictions()
            gpus = (allocation.ps * job.spec.parameter_servers.request.gpu
                    + allocation.workers * job.spec.workers.request.gpu)
            gauges[(d.meta.namespace, d.meta.name)] = JobGauges(
                ps=allocation.ps, workers=allocation.workers, gpus=gpus,
                remaining_seconds=remaining,
                remaining_epochs=k.remaining_epochs,
                converged_epoch=k.estimate.converged_epoch if k.estimate else None,
                fitted_loss=fitted_loss_now(k),
                predicted_speed=speed,
                fit_error_loss=d.status.model.fit_error_loss,
                fit_error_speed=d.status.model.fit_error_speed,
            )
            allocated_gpus += gpus
        self.metrics.set_jobs(gauges)
        self.metrics.set_phases(d.status.phase for d in decisions)
        self.metrics.set_cluster_gpus(allocated_gpus, sum(n.allocatable.gpu for n in nodes))

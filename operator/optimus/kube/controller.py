"""The cluster-wide scheduling loop: one round runs the numbered, timed steps of a round
(docs/architecture.md) over every TrainingJob at once, and the act step carries out the
resize protocol.

    1 snapshot  jobs, nodes and pods (`Snapshot`): from kopf's indices in the operator
                (optimus.kube.handlers), or listed from the API (`listed_snapshot`)
    2 observe   four Prometheus range queries for all jobs (optimus.metrics.observe)
    3 fit       per job: progress, models, conditions (optimus.kube.plan.assess)
    4 allocate  pins, the policy, keep-running over every schedulable job (optimus.round)
    5 place     a node for every pod (optimus.round), then the decisions (plan.decide)
    6 act       write the changed statuses, record events, roll or delete pods

The round is the only writer of every status field (one round at a time, under a lock),
and it remembers what it wrote, so a round never works from a status older than its own
last write even when the watch has not caught up. Pod work runs in one background task
per job; a job whose task is still running is "busy" and is neither resized again nor
rolled until the task ends. The same holds for the pods a watch has not caught up with:
after a job's pod work ends, the job stays busy until the snapshot shows the pods that work
created and no longer shows those it deleted (bounded by EXPECTATION_SECONDS), so a round
never rolls or restarts a job from a pod list older than its own last pod work.

The controller talks to Kubernetes and Prometheus only through the `KubeApi` and
`PrometheusClient` protocols; tests/kube/fakes.py holds in-memory ones.

Resize protocol in place (`resize_in_place`, a worker or PS change plan.py chose to make
in place): create the added pods (they join the running job), post the new membership to
the chief (``POST /membership``: the workers, or with "ps" the PS count, one kind of change
per request; bounded by in_place_timeout_seconds), then delete the removed pods once they
exited (they leave after the switch). The attempt's outcome is kept in
memory (`InPlaceAttempt`) and the next round's `assess` turns it into status: the measured
pause, or, on a refusal (400/503), a timeout or any error, the fallback to the
checkpoint-restart below (a new generation of every pod).

Resize protocol by restart (`roll`): ask the chief of the old generation for a checkpoint (bounded
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
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from optimus_worker import contract

from optimus.api.conditions import FINISHED_PHASES
from optimus.api.spec import (
    GPU_RESOURCE,
    SpecError,
    TrainingJob,
    parse_meta,
    parse_training_job,
)
from optimus.api.status import RESIZE_IN_PLACE_PS, AllocationStatus, parse_status
from optimus.kube.builders import build_pods, build_service
from optimus.kube.client import KubeApi
from optimus.kube.config import OperatorConfig
from optimus.kube.plan import (
    Decision,
    InPlaceAttempt,
    JobState,
    RoundSettings,
    assess,
    decide,
    desired_pods,
    fitted_loss_now,
    learn,
    learned_resize_costs,
    learned_restart_cost,
    schedule_assessed,
    speed_window,
)
from optimus.kube.snapshot import PodSnapshot, node_views, parse_pod
from optimus.kube.store import ConfigMapStore
from optimus.metrics.exporter import JobGauges, OperatorMetrics
from optimus.metrics.observe import JobKey, JobObservation, SpeedWindow, fetch_observations
from optimus.metrics.prometheus import PrometheusClient, PrometheusError
from optimus.round import KnowledgeStore
from optimus.scheduling import NodeView

log = logging.getLogger("optimus.kube")

#: how long a roll waits for the old generation's pods to go
POD_DELETION_TIMEOUT = 60.0
CONNECT_RETRY_SECONDS = 1.0  # between tries to reach a chief whose endpoint is not up yet
#: at most this many status patches in flight at once
PATCH_CONCURRENCY = 16
#: the longest Prometheus back-off, in rounds
MAX_BACKOFF_ROUNDS = 8
#: how long a job stays busy waiting for the snapshot to show its last pod work
EXPECTATION_SECONDS = 60.0


class InPlaceError(RuntimeError):
    """A resize in place that did not happen (the job goes on at its old size)."""


def _number(raw: Any) -> float | None:
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None


@dataclass(frozen=True)
class Snapshot:
    """What one round reads of the cluster (step 1), taken when the round starts: the raw
    TrainingJobs and Nodes, and every pod, parsed."""

    jobs: Sequence[Mapping[str, Any]]
    nodes: Sequence[Mapping[str, Any]]
    pods: Sequence[PodSnapshot]


#: where a round's snapshot comes from (kopf's indices, or a listing)
SnapshotSource = Callable[[], Awaitable[Snapshot]]


async def listed_snapshot(api: KubeApi, jobs: Sequence[Mapping[str, Any]],
                          accelerator: str = GPU_RESOURCE) -> Snapshot:
    """The snapshot from listing every node and pod (two API calls, every pod parsed)."""
    raw_nodes, raw_pods = await asyncio.gather(api.list_nodes(), api.list_pods())
    return Snapshot(jobs=jobs, nodes=raw_nodes,
                    pods=[parse_pod(p, accelerator) for p in raw_pods])


@dataclass(frozen=True)
class PodExpectation:
    """What a job's finished pod work left behind, until the snapshot shows it: the pods
    it created (or found) and the pods it deleted."""

    present: frozenset[str]
    absent: frozenset[str]
    until: float

    def met(self, pods: Iterable[PodSnapshot]) -> bool:
        names = {p.name for p in pods}
        return self.present <= names and not self.absent & names


@dataclass
class RoundReport:
    """What one round did, for logs, tests and the benchmark."""

    seconds: dict[str, float] = field(default_factory=dict)
    #: the operator process's CPU time over the whole round (all threads)
    cpu_seconds: float = 0.0
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
            in_place_timeout_seconds=config.in_place_timeout_seconds,
            white_box_prior=config.speed_prior == "white-box",
        )
        self._lock = asyncio.Lock()
        self._pending = False
        self.last_round = -math.inf
        self._written: dict[str, dict[str, Any]] = {}  # uid -> status as last written
        self._tasks: dict[str, asyncio.Task[None]] = {}  # job key -> pod work in flight
        self._expected: dict[str, PodExpectation] = {}  # job key -> finished pod work
        self._in_place: dict[str, InPlaceAttempt] = {}  # job key -> last resize in place
        self._prom_failures = 0
        self._prom_retry_at = -math.inf
        self._prom_error: str | None = None
        self._loose: set[asyncio.Future[Any]] = set()  # fire-and-forget event posts
        # knowledge pooled across jobs (optimus.round.store): read from its ConfigMap before
        # the first round (on the active replica), written after a round that changed it
        self.store = KnowledgeStore()
        self.knowledge = (ConfigMapStore(api, config.store_namespace,
                                         config.knowledge_configmap)
                          if config.knowledge_configmap else None)
        self._store_loaded = self.knowledge is None
        #: the chief's control port (the contract's; tests point it at a fake chief)
        self.control_port = contract.DEFAULT_CONTROL_PORT

    # ---- when to run ------------------------------------------------------------------------
    async def tick(self, snapshot: SnapshotSource, *,
                   force: bool = False) -> RoundReport | None:
        """Run a round if one is due (or forced); a request while one runs queues one more.
        `snapshot` is taken anew for every round."""
        if self._lock.locked():
            self._pending = self._pending or force
            return None
        if not force and self.clock() - self.last_round < self.config.interval_seconds:
            return None
        report = None
        async with self._lock:
            for _ in range(2):  # the round itself, then at most one queued request
                self._pending = False
                report = await self.run_round(snapshot)
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

    async def run_round(self, source: SnapshotSource) -> RoundReport:
        """One round on the snapshot `source` takes (taking it is step 1)."""
        report = RoundReport()
        now = self.clock()
        self.last_round = now
        cpu = time.process_time()
        try:
            await self._round(source, now, report)
        except Exception:
            self.metrics.round_done("error")
            log.exception("scheduling round failed")
            raise
        finally:
            report.cpu_seconds = time.process_time() - cpu
        self.metrics.round_done("metrics-unavailable" if report.metrics_error else "ok")
        log.info("round: %d jobs, %d patched, %d rolled, %d deleted; %s", report.jobs,
                 report.patched, report.rolled, report.deleted,
                 ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in report.seconds.items()))
        return report

    async def _round(self, source: SnapshotSource, now: float, report: RoundReport) -> None:
        # 1 snapshot
        with self._step(report, "snapshot"):
            snapshot = await source()
            report.jobs = len(snapshot.jobs)
            nodes = node_views(snapshot.nodes, snapshot.pods, self.config.accelerator_resource)
            states = self._states(snapshot.jobs, snapshot.pods, now)
            if not self._store_loaded and self.knowledge is not None:
                self.store = await self.knowledge.load()
                self._store_loaded = True
        # 2 observe
        with self._step(report, "observe"):
            observations, metrics_error = await self._observe(states, now)
            report.metrics_error = metrics_error
        # the round's restart cost: measured on this cluster once it can be, else configured
        settings = replace(self.settings, restart_cost_seconds=learned_restart_cost(
            states, self.config.restart_cost_seconds), learned_costs=learned_resize_costs(states))
        self.metrics.restart_cost(settings.restart_cost_seconds)
        # 3 fit
        with self._step(report, "fit"):
            assessed = [
                assess(s, observations.get((s.meta.namespace, s.meta.name)),
                       metrics_error=metrics_error, now=now, settings=settings,
                       nodes=nodes, store=self.store)
                for s in states
            ]
        # 4 allocate and 5 place: the round's pins, policy, keep-running and placement
        with self._step(report, "allocate"):
            outcome = schedule_assessed(assessed, nodes, now=now, settings=settings)
        with self._step(report, "place"):
            decisions = decide(assessed, outcome, now=now, settings=settings)
            report.decisions = decisions
        # 6 act
        with self._step(report, "act"):
            await self._act(decisions, {s.meta.key: s.pods for s in states}, report)
            # what the round taught the store, as the simulator does after its rounds
            self.store = learn(self.store, assessed, observations)
            if self.knowledge is not None:
                self.store = await self.knowledge.save(self.store)
        self._export(decisions, nodes)
        self.metrics.set_knowledge(len(self.store.kinds),
                                   sum(k.observations for k in self.store.kinds.values()))

    def _states(self, raw_jobs: Sequence[Mapping[str, Any]],
                pods: Sequence[PodSnapshot], now: float) -> list[JobState]:
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
            job_pods = tuple(by_job.get((meta.namespace, meta.name), ()))
            states.append(JobState(
                meta=meta,
                raw_status=raw_status,
                status=parse_status(raw_status),
                job=job,
                error=error,
                pods=job_pods,
                busy=self._busy(key, job_pods, now),
                in_place=self._in_place.get(key),
            ))
        for uid in set(self._written) - alive:
            del self._written[uid]
        for key in set(self._expected) - {s.meta.key for s in states}:
            del self._expected[key]  # the job is gone
        for key in set(self._in_place) - {s.meta.key for s in states}:
            del self._in_place[key]
        return states

    def _busy(self, key: str, pods: Sequence[PodSnapshot], now: float) -> bool:
        """The job's pod work still runs, or the snapshot does not show its result yet."""
        task = self._tasks.get(key)
        if task is not None and not task.done():
            return True
        expected = self._expected.get(key)
        if expected is None:
            return False
        if expected.met(pods) or now > expected.until:
            del self._expected[key]
            return False
        return True

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
    async def _act(self, decisions: list[Decision],
                   pods: Mapping[str, Sequence[PodSnapshot]], report: RoundReport) -> None:
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
            job_pods = list(pods.get(key, ()))
            if decision.action == "roll" and new is not None:
                report.rolled += 1
                self._tasks[key] = asyncio.create_task(self._roll(decision, new, job_pods))
            elif decision.action == "in-place" and new is not None:
                report.rolled += 1
                self._tasks[key] = asyncio.create_task(
                    self.resize_in_place(decision, new, job_pods))
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
        url = f"http://{chief.ip}:{self.control_port}{contract.CONTROL_CHECKPOINT_PATH}"
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
            desired = desired_pods(meta, allocation)
            old = [p for p in pods if p.name not in desired and not p.deleting]
            if not allocation.in_place:  # in place, `old` are removed workers that exited
                await self._checkpoint_before_stopping(job, old)
            if old:
                await self._remove_pods(meta.namespace, meta.name, {p.name for p in old})
            await self.api.create(build_service(job))
            existing = {p.name for p in pods if p.name in desired and not p.deleting}
            bodies = build_pods(job, allocation)
            for body in bodies:
                if body["metadata"]["name"] not in existing:
                    await self.api.create(body)
            self._expect(meta.key, present={b["metadata"]["name"] for b in bodies},
                         absent={p.name for p in old})
            log.info("%s: generation %d has %d PS x %d workers", meta.key,
                     allocation.generation, allocation.ps, allocation.workers)
        except Exception:
            log.exception("rolling %s to generation %d failed; the next round retries",
                          meta.key, allocation.generation)

    async def resize_in_place(self, decision: Decision, allocation: AllocationStatus,
                              pods: list[PodSnapshot]) -> None:
        """Create the added pods, post the membership to the chief, retire the removed
        pods once they exited; the outcome goes to `_in_place` for the next round."""
        meta, job = decision.meta, decision.job
        assert job is not None, "only valid jobs are resized"
        key = meta.key
        desired = desired_pods(meta, allocation)
        try:
            chief = next((p for p in pods if p.role == "worker" and p.rank == 0
                          and p.name in desired and p.phase == "Running" and p.ip
                          and not p.deleting), None)
            if chief is None:
                raise InPlaceError("the chief worker is not running")
            existing = {p.name for p in pods if not p.deleting}
            bodies = [b for b in build_pods(job, allocation)
                      if b["metadata"]["name"] not in existing]
            for body in bodies:
                await self.api.create(body)
            answer = await self._announce(chief, allocation)
            self._in_place[key] = InPlaceAttempt(
                allocation.generation, ok=True, answered_at=self.clock(),
                switch_seconds=_number(answer.get("switch_s")))
            log.info("%s: generation %d switched in place to %d PS x %d workers: %s", key,
                     allocation.generation, allocation.ps, allocation.workers, answer)
            removed = {p.name for p in pods if p.name not in desired and not p.deleting}
            await self._retire(meta.namespace, meta.name, removed)
            self._expect(key, present={b["metadata"]["name"] for b in bodies}, absent=removed)
        except Exception as error:  # any failure: the next round restarts the job instead
            log.warning("%s: resize in place to generation %d failed (%s); falling back to "
                        "checkpoint-restart", key, allocation.generation, error)
            self._in_place[key] = InPlaceAttempt(allocation.generation, ok=False,
                                                 error=str(error) or type(error).__name__)

    async def _announce(self, chief: PodSnapshot,
                        allocation: AllocationStatus) -> dict[str, Any]:
        """POST the membership to the chief; its answer once the job trains at that size.
        A PS change names the new PS count ("ps"; the workers stay as they are). A refusal
        (400), a failed switch (503) or no answer in time raises InPlaceError."""
        url = f"http://{chief.ip}:{self.control_port}{contract.CONTROL_MEMBERSHIP_PATH}"
        deadline = time.monotonic() + self.settings.in_place_timeout_seconds
        body = {"workers": allocation.workers, "generation": allocation.generation}
        if allocation.resize_kind == RESIZE_IN_PLACE_PS:
            body["ps"] = allocation.ps
        while True:
            timeout = aiohttp.ClientTimeout(total=max(0.1, deadline - time.monotonic()))
            try:
                async with aiohttp.ClientSession(timeout=timeout) as session, \
                        session.post(url, json=body) as reply:
                    answer = await reply.json(content_type=None)
                    if reply.status != 200:
                        error = answer.get("error") if isinstance(answer, dict) else answer
                        raise InPlaceError(f"the chief answered {reply.status}: {error}")
                    return answer if isinstance(answer, dict) else {}
            except aiohttp.ClientConnectorError as error:
                # nothing was delivered: the chief's control endpoint is not up yet (a
                # generation that has just started loads its checkpoint first); ask again
                # until the deadline rather than fall back to a restart at once
                if time.monotonic() + CONNECT_RETRY_SECONDS < deadline:
                    await asyncio.sleep(CONNECT_RETRY_SECONDS)
                    continue
                failure: BaseException = error
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                failure = error
            raise InPlaceError(
                f"no answer from the chief within "
                f"{self.settings.in_place_timeout_seconds:.0f} s ({type(failure).__name__}: "
                f"{failure})") from None

    async def _retire(self, namespace: str, job: str, names: set[str]) -> None:
        """Delete the removed workers once they exited (bounded: then anyway)."""
        deadline = time.monotonic() + POD_DELETION_TIMEOUT
        while names and time.monotonic() < deadline:
            phases = {p["metadata"]["name"]: (p.get("status") or {}).get("phase")
                      for p in await self.api.job_pods(namespace, job)}
            if all(phases.get(n) in (None, "Succeeded", "Failed") for n in names):
                break
            await asyncio.sleep(0.5)
        await self._remove_pods(namespace, job, names)

    def _expect(self, key: str, *, present: set[str], absent: set[str]) -> None:
        self._expected[key] = PodExpectation(frozenset(present), frozenset(absent),
                                             self.clock() + EXPECTATION_SECONDS)

    async def _delete(self, decision: Decision, pods: list[PodSnapshot]) -> None:
        meta = decision.meta
        try:
            removed = {p.name for p in pods if not p.deleting}
            if decision.job is not None and decision.job.spec.suspend:
                await self._checkpoint_before_stopping(decision.job, pods)
            await self._remove_pods(meta.namespace, meta.name, removed)
            await self.api.delete_service(meta.namespace, contract.service_name(meta.name))
            self._expect(meta.key, present=set(), absent=removed)
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

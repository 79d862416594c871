"""Step 4, the Optimus allocator: greedy marginal gain over the dominant resource.

Every job starts at its minimum (admitted whole, in priority-then-arrival order, while
capacity remains); then one PS or one worker at a time goes to the job whose gain is
largest, until nothing fits or no gain is positive. The gain of a task is the cut it makes
in the job's remaining time, weighted (see `marginal_gain`), divided by the task's share
of the cluster's dominant resource.

A job's gain depends only on its own state, and capacity only shrinks while tasks are
handed out, so a heap of candidate grants with lazy re-evaluation (stale entries are
skipped by a version number, grants that no longer fit are dropped for good) gives
exactly the same result as re-scanning every job at every step (`greedy_reference`, kept
for the tests and the benchmark), in O(tasks * log(jobs)) instead of O(tasks * jobs).

Beyond the paper, a resize costs a restart: a running job moves from its current
allocation only when the move pays for its restart beyond the error band of what is known
of the job (`move_pays`; `OptimusPolicy._keep_current_unless_worth_a_restart`), and a
running job about to finish keeps its allocation (`OptimusConfig.finishing_restarts`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optimus.scheduling.cluster import (
    NOT_ADMITTED,
    Budget,
    ClusterIndex,
    admit,
    demand_triple,
    in_bounds,
    is_running,
    pinned,
    start_round,
    triple,
)
from optimus.scheduling.types import Allocation, JobView, NodeView

#: Remaining times below this count as this (a finished job has no time left to cut, and
#: the JCT-aware weight divides by the remaining time).
_TIME_FLOOR = 1e-6
#: A task that asks for nothing still costs this share, so that gains stay finite.
_SHARE_FLOOR = 1e-12

_PS, _WORKER = 0, 1


@dataclass(frozen=True)
class OptimusConfig:
    """Knobs of the Optimus allocator.

    restart_cost_seconds: what one resize of a running job costs (checkpoint, new pods,
        restore); a running job changes allocation only when that pays for itself.
    keep_running: apply that restart rule at all (the paper's Optimus does not).
    jct_aware: weigh gains towards jobs close to finishing (see `marginal_gain`).
    jct_exponent: how strongly; 0 is the paper's absolute cut, 1 maximises the rate at
        which jobs finish (the default), larger values favour short jobs even more.
    min_gain: a grant must have a gain above this (0: any positive gain).
    min_relative_gain: a running job also moves only when the move cuts its remaining
        time by more than this fraction (hysteresis: the models are refitted every round,
        and a move within their noise would be undone by the next refit).
    finishing_restarts: a running job predicted to finish within this many restart costs
        at its current allocation keeps it, when every such job can. Shrinking a job with
        R seconds left costs it a restart C and its slower finish, while the others gain
        the room for at most R (it is theirs anyway once the job ends, and growing costs
        them a restart too), at less than their full speed-up: with R under C it never
        pays, and up to 2 C it rarely does (the scheduling benchmark's learned runs: 1.90 h
        avg JCT at 2, 1.96 h at 1, 1.92 h at 4, 1.94 h without the rule). A higher priority
        that needs the room still shrinks it (0 turns this off).
    """

    restart_cost_seconds: float = 30.0
    keep_running: bool = True
    jct_aware: bool = True
    jct_exponent: float = 1.0
    min_gain: float = 0.0
    min_relative_gain: float = 0.1
    finishing_restarts: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_relative_gain < 1:
            raise ValueError(
                f"min_relative_gain={self.min_relative_gain}; give a fraction in [0, 1)"
            )
        if not self.restart_cost_seconds >= 0:
            raise ValueError(
                f"restart_cost_seconds={self.restart_cost_seconds}; give seconds >= 0"
            )
        if not self.finishing_restarts >= 0:
            raise ValueError(
                f"finishing_restarts={self.finishing_restarts}; give a number of restarts >= 0"
            )
        if not self.jct_exponent >= 0:
            raise ValueError(f"jct_exponent={self.jct_exponent}; give a number >= 0")

    @property
    def exponent(self) -> float:
        return self.jct_exponent if self.jct_aware else 0.0


#: The paper's rule: absolute cut in remaining time, resizes are free.
PAPER_CONFIG = OptimusConfig(restart_cost_seconds=0.0, keep_running=False, jct_aware=False)


def marginal_gain(t_now: float, t_next: float, share: float, exponent: float) -> float:
    """The gain of one more task that takes the job's remaining time from t_now to t_next.

        gain = (t_now - t_next) / (t_now * t_next) ** exponent / share

    exponent 0 is the paper's gain: the absolute cut in remaining time per unit of dominant
    resource. It favours long jobs (a 10 % speed-up of a 10-hour job saves an hour, of a
    1-hour job six minutes) while the average JCT rewards finishing short jobs first.

    exponent 1 (the default) gives gain = (1/t_next - 1/t_now) / share: the increase in the
    job's completion rate per unit of resource. By Little's law the average JCT is the
    average number of unfinished jobs divided by the arrival rate, so raising the rate at
    which jobs finish is what lowers it; for jobs that scale perfectly (t = work/tasks) this
    is 1/work per task, i.e. shortest-remaining-time-first, and with diminishing returns it
    still steers tasks to the jobs that are nearest to finishing. Exponent 0.5 is the
    relative cut (t_now - t_next)/t_now in the limit of small steps.

    Infinite remaining time (no progress possible) to a finite one is an infinite gain;
    no cut (or a NaN) is no gain.
    """
    if not t_next < t_now:
        return 0.0
    if math.isinf(t_now):
        return math.inf
    if t_next < _TIME_FLOOR:
        t_next = _TIME_FLOOR
        if t_now <= t_next:
            return 0.0
    cut = t_now - t_next
    if exponent:
        cut /= (t_now * t_next) ** exponent
    return cut / (share if share > _SHARE_FLOOR else _SHARE_FLOOR)


def move_pays(t_now: float, t_next: float, restart_cost: float, min_relative_gain: float,
              band: float = 0.0) -> bool:
    """Whether a running job with `t_now` seconds left where it runs should move to where
    it would have `t_next` left:

        t_next * (1 + band) + restart_cost < t_now * (1 - min_relative_gain)

    `band` is the relative error band of the answer at the candidate (JobView.speed_band,
    optimus.models.confidence): the move must still pay where the candidate is as much
    slower than predicted as the knowledge allows. The answer where the job runs is its
    own measurement there, the anchor every calibrated prediction is scaled by, so the
    candidate's band is the band of the ratio. With a band of 0 this is the restart rule
    with its hysteresis `min_relative_gain`; a wider band never lets a move pass that a
    narrower one stops."""
    return t_next * (1.0 + max(0.0, band)) + restart_cost < t_now * (1.0 - min_relative_gain)


def gain_function(exponent: float) -> Callable[[float, float, float], float]:
    """`marginal_gain` with its exponent fixed: (t_now, t_next, share) -> gain. For the
    exponents 0 (the paper) and 1 (the default) the power is written out, which halves the
    cost of a call in the greedy's inner loop; the result is the same (tests check)."""
    if exponent not in (0.0, 1.0):
        return lambda t_now, t_next, share: marginal_gain(t_now, t_next, share, exponent)
    inf, time_floor, share_floor = math.inf, _TIME_FLOOR, _SHARE_FLOOR
    rate = exponent == 1.0

    def gain(t_now: float, t_next: float, share: float) -> float:
        if not t_next < t_now:
            return 0.0
        if t_now == inf:
            return inf
        if t_next < time_floor:
            t_next = time_floor
            if t_now <= t_next:
                return 0.0
        cut = (t_now - t_next) / (t_now * t_next) if rate else t_now - t_next
        return cut / (share if share > share_floor else share_floor)

    return gain


def remaining(job: JobView, ps: int, workers: int) -> float:
    """job.remaining_time(ps, workers) as a clean float: NaN means no progress (inf),
    negative means done (0); an exception names the job."""
    try:
        value = float(job.remaining_time(ps, workers))
    except Exception as error:
        raise _remaining_time_error(job, ps, workers, error) from error
    if value != value:
        return math.inf
    return value if value > 0.0 else 0.0


def _remaining_time_error(job: JobView, ps: int, workers: int, error: Exception) -> ValueError:
    return ValueError(
        f"job {job.id!r}: remaining_time({ps}, {workers}) raised {error!r}; "
        "it must return seconds (math.inf when the job can make no progress)"
    )


class _GreedyState:
    """Per-job arrays the greedy loop works on (lists, not objects: it runs 100,000 times)."""

    def __init__(self, jobs: Sequence[JobView], index: ClusterIndex, exponent: float) -> None:
        self.jobs = jobs
        self.exponent = exponent
        total = index.total_free
        self.need = [(triple(j.ps_request), triple(j.worker_request)) for j in jobs]
        self.share = [
            (j.ps_request.dominant_share(total), j.worker_request.dominant_share(total))
            for j in jobs
        ]
        self.ps = [0] * len(jobs)
        self.workers = [0] * len(jobs)
        self.time = [math.inf] * len(jobs)
        self.version = [0] * len(jobs)
        self.active = [False] * len(jobs)

    def set(self, i: int, allocation: Allocation, active: bool) -> None:
        self.ps[i], self.workers[i] = allocation.ps, allocation.workers
        self.time[i] = remaining(self.jobs[i], allocation.ps, allocation.workers)
        self.version[i] += 1
        self.active[i] = active

    def candidates(self, i: int) -> list[tuple[float, float, int, int, int]]:
        """Heap entries (-gain, t_next, i, kind, version) for one more PS and one more
        worker of job i, best first; ties go to the shorter resulting time, then to arrival
        order."""
        job, p, w = self.jobs[i], self.ps[i], self.workers[i]
        out = []
        for kind, p2, w2 in ((_PS, p + 1, w), (_WORKER, p, w + 1)):
            if p2 > job.max_ps or w2 > job.max_workers:
                continue
            t_next = remaining(job, p2, w2)
            gain = marginal_gain(self.time[i], t_next, self.share[i][kind], self.exponent)
            if gain > 0:
                out.append((-gain, t_next, i, kind, self.version[i]))
        out.sort()
        return out

    def grant(self, i: int, kind: int, t_next: float) -> None:
        if kind == _PS:
            self.ps[i] += 1
        else:
            self.workers[i] += 1
        self.time[i] = t_next
        self.version[i] += 1

    def allocation(self, i: int) -> Allocation:
        return Allocation(self.ps[i], self.workers[i])


def _grow(state: _GreedyState, budget: Budget, which: Sequence[int], min_gain: float) -> None:
    """The greedy loop over the jobs `which`: grant the best-gain task that fits until none
    is left. The heap holds each job's best grant; its other grant waits in `spare` and
    goes in when the best one turns out not to fit (then never again: capacity only
    shrinks, so that kind of task is dead for this job). This loop runs once per task
    handed out (100,000 times at the paper's scale), hence the inlined steps and local
    names; `greedy_reference` is the same decision written plainly."""
    heap: list[tuple[float, float, int, int, int]] = []
    spare: list[tuple[float, float, int, int, int] | None] = [None] * len(state.jobs)
    jobs, version, need, share = state.jobs, state.version, state.need, state.share
    ps, workers, time_left, exponent = state.ps, state.workers, state.time, state.exponent
    dead = [0] * len(jobs)
    max_ps = [job.max_ps for job in jobs]
    max_workers = [job.max_workers for job in jobs]
    pools = [budget.pools_of(job.id) for job in jobs]
    tol_g, tol_c, tol_m = budget.tolerance
    pop, pushpop, gain_of = heapq.heappop, heapq.heappushpop, gain_function(exponent)

    remaining_time = [job.remaining_time for job in jobs]
    inf = math.inf

    def offer(i: int) -> tuple[float, float, int, int, int] | None:
        """Job i's best grant now (returned) and its other one (kept in `spare`)."""
        # remaining() inlined: NaN is inf, below 0 is 0, an exception names the job
        p, w, t, d, v = ps[i], workers[i], time_left[i], dead[i], version[i]
        best = second = None
        if p < max_ps[i] and not d & 1:
            try:
                t_next = float(remaining_time[i](p + 1, w))
            except Exception as error:
                raise _remaining_time_error(jobs[i], p + 1, w, error) from error
            t_next = inf if t_next != t_next else (t_next if t_next > 0.0 else 0.0)
            gain = gain_of(t, t_next, share[i][_PS])
            if gain > 0:
                best = (-gain, t_next, i, _PS, v)
        if w < max_workers[i] and not d & 2:
            try:
                t_next = float(remaining_time[i](p, w + 1))
            except Exception as error:
                raise _remaining_time_error(jobs[i], p, w + 1, error) from error
            t_next = inf if t_next != t_next else (t_next if t_next > 0.0 else 0.0)
            gain = gain_of(t, t_next, share[i][_WORKER])
            if gain > 0:
                entry = (-gain, t_next, i, _WORKER, v)
                if best is None:
                    best = entry
                elif entry < best:
                    best, second = entry, best
                else:
                    second = entry
        spare[i] = second
        return best

    for i in which:
        if state.active[i]:
            first = offer(i)
            if first is not None:
                heap.append(first)
    heapq.heapify(heap)
    # The entry just computed goes in and the best comes out in one step: when the job
    # that just got a task is still the best, the heap is not touched at all.
    pending: tuple[float, float, int, int, int] | None = None
    while heap or pending is not None:
        if pending is None:
            entry = pop(heap)
        elif heap:
            entry = pushpop(heap, pending)
        else:
            entry = pending
        pending = None
        neg_gain, t_next, i, kind, seen = entry
        if seen != version[i] or -neg_gain <= min_gain:
            continue
        g, c, m = need[i][kind]
        fits = True
        for left in pools[i]:
            if g - tol_g > left[0] or c - tol_c > left[1] or m - tol_m > left[2]:
                fits = False
                break
        if not fits:
            dead[i] |= 1 << kind
            other, spare[i] = spare[i], None
            if other is not None and other[4] == seen:
                pending = other
            continue
        for left in pools[i]:
            left[0] -= g
            left[1] -= c
            left[2] -= m
        if kind == _PS:
            ps[i] += 1
        else:
            workers[i] += 1
        time_left[i] = t_next
        version[i] += 1
        pending = offer(i)


@dataclass
class OptimusPolicy:
    """The Optimus allocator behind the Policy interface (`optimus` and `optimus-paper`)."""

    config: OptimusConfig = OptimusConfig()
    name: str = "optimus"

    def allocate(
        self, jobs: list[JobView], nodes: list[NodeView], *, now: float
    ) -> dict[str, Allocation]:
        del now  # the decision depends on remaining times only, not on the clock
        finishing = self._finishing(jobs)
        if finishing:
            kept = self._allocate([pinned(job, finishing[job.id]) if job.id in finishing
                                   else job for job in jobs], nodes)
            if all(kept[job_id] == current for job_id, current in finishing.items()):
                return kept
            # some job needs room that only shrinking a finishing one gives (a higher
            # priority, say): decide without the pins
        return self._allocate(jobs, nodes)

    def _finishing(self, jobs: Sequence[JobView]) -> dict[str, Allocation]:
        """The running jobs that keep their allocation because they are about to finish
        (see OptimusConfig.finishing_restarts), with that allocation."""
        horizon = self.config.finishing_restarts * self.config.restart_cost_seconds
        if not self.config.keep_running or horizon <= 0:
            return {}
        out = {}
        for job in jobs:
            current = job.current
            if (current is not None and is_running(job) and in_bounds(current, job)
                    and remaining(job, current.ps, current.workers) < horizon):
                out[job.id] = current
        return out

    def _allocate(self, jobs: Sequence[JobView], nodes: Sequence[NodeView]
                  ) -> dict[str, Allocation]:
        ordered, index, budget = start_round(jobs, nodes)
        state = _GreedyState(ordered, index, self.config.exponent)
        self._admit_and_grow(state, budget, range(len(ordered)))
        if self.config.keep_running:
            frozen, reverted = self._keep_current_unless_worth_a_restart(state, budget)
            if reverted:
                # Reverting a grow that was not worth its restart frees capacity: admit
                # queued jobs into it and let the jobs that are free to change grow again.
                # (Without a revert the capacity is unchanged and nothing more would fit.)
                self._admit_and_grow(
                    state, budget, [i for i in range(len(ordered)) if not frozen[i]]
                )
        return {job.id: state.allocation(i) for i, job in enumerate(ordered)}

    def _admit_and_grow(self, state: _GreedyState, budget: Budget, which: Sequence[int]) -> None:
        jobs = state.jobs
        queued = [i for i in which if not state.active[i]]
        admitted = admit([jobs[i] for i in queued], budget)
        for i in queued:
            allocation = admitted[jobs[i].id]
            if allocation != NOT_ADMITTED:
                state.set(i, allocation, active=True)
        _grow(state, budget, which, self.config.min_gain)

    def _keep_current_unless_worth_a_restart(
        self, state: _GreedyState, budget: Budget
    ) -> tuple[list[bool], bool]:
        """Apply the restart cost explicitly. For every running job whose current
        allocation is within its bounds: if the greedy left it there, freeze it (a further
        grow would pay a restart the greedy did not count); if the greedy moved it and the
        move pays for its cost (the job's cost of that kind of move when its view has
        `resize_costs`, else the one restart cost) beyond the band of the job's speed
        knowledge at the new allocation (`move_pays` with JobView.speed_band; none: exact)
        the move stands; otherwise the job goes back to its current allocation when that
        still fits (it always does when the greedy grew it) and is frozen. Returns which
        jobs are frozen, and whether a return to the current allocation gave any resource
        back."""
        frozen = [False] * len(state.jobs)
        reverted = False
        for i, job in enumerate(state.jobs):
            current = job.current
            if current is None or not is_running(job) or not in_bounds(current, job):
                continue
            new = state.allocation(i)
            if new == current:
                frozen[i] = True
                continue
            before = remaining(job, current.ps, current.workers)
            # the job's own cost of this kind of move when it has one (a worker change in
            # place costs less than a restart), else the one restart cost
            cost = (self.config.restart_cost_seconds if job.resize_costs is None
                    else job.resize_costs.seconds(current, new))
            band = 0.0 if job.speed_band is None else job.speed_band(new.ps, new.workers)
            worth_it = move_pays(before, state.time[i], cost, self.config.min_relative_gain,
                                 band)
            if state.active[i] and worth_it:
                continue
            have = demand_triple(job, new.ps, new.workers) if state.active[i] else (0.0, 0.0, 0.0)
            want = demand_triple(job, current.ps, current.workers)
            extra = tuple(w - h for w, h in zip(want, have, strict=True))
            if budget.fits(job.id, extra):
                budget.take(job.id, extra)
                state.set(i, current, active=True)
                frozen[i] = True
                reverted = reverted or any(e < 0 for e in extra)
        return frozen, reverted


def greedy_reference(
    jobs: Sequence[JobView], nodes: Sequence[NodeView], config: OptimusConfig = PAPER_CONFIG
) -> dict[str, Allocation]:
    """The same greedy without the heap: every step scans every job for its best grant.
    O(tasks * jobs); the tests check that the heap gives identical results and the
    benchmark measures the speed-up. No restart rule (it checks the greedy alone)."""
    ordered, index, budget = start_round(jobs, nodes)
    state = _GreedyState(ordered, index, config.exponent)
    admitted = admit(ordered, budget)
    for i, job in enumerate(ordered):
        if admitted[job.id] != NOT_ADMITTED:
            state.set(i, admitted[job.id], active=True)
    dead: set[tuple[int, int]] = set()  # grants that did not fit once: they never will
    while True:
        best: tuple[float, float, int, int, int] | None = None
        for i in range(len(ordered)):
            if not state.active[i]:
                continue
            for entry in state.candidates(i):
                if (i, entry[3]) in dead or -entry[0] <= config.min_gain:
                    continue
                if not budget.fits(ordered[i].id, state.need[i][entry[3]]):
                    dead.add((i, entry[3]))
                    continue
                if best is None or entry < best:
                    best = entry
        if best is None:
            break
        _, t_next, i, kind, _ = best
        budget.take(ordered[i].id, state.need[i][kind])
        state.grant(i, kind, t_next)
    return {job.id: state.allocation(i) for i, job in enumerate(ordered)}

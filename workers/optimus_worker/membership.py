"""Resizing a running job in place: a new membership at a step all workers agree on.

The flow of a worker change in all-reduce mode (`optimus_worker.allreduce` runs the
collectives, this module holds the rules and the chief's bookkeeping, torch-free):

1. the operator (or the local runner) starts the added workers with
   ``OPTIMUS_JOIN_IN_PLACE=1``, the new worker count and the new generation; each connects
   to the chief's store, announces itself under `ready_key` and waits for the new group;
2. it posts the new membership to the chief's control endpoint (``POST /membership``,
   checked by `parse_request`); the chief keeps it pending (`Switchboard`) until every
   added worker has announced itself, so the running workers go on training while the
   newcomers start;
3. the chief puts the membership into the step's control all-reduce (`encode`, `decode`),
   so every worker learns it after the same step: the switch step;
4. after that step the workers hand their sample ledgers to the chief in the old group,
   the leaving workers (rank >= the new count) exit 0, the others and the newcomers form
   the new group under a fresh store prefix (`group_prefix`); the chief broadcasts the
   model, the optimizer state, the step, the losses and its RNG to the newcomers (no
   checkpoint is read) and answers the request.

The flow in the PS modes (`optimus_worker.worker.PSWorker`, `optimus_worker.ps`) touches no
PS and no other worker beyond a step boundary. The job's RPC world is dynamic (every task
joins with ``world_size=None``), so a worker joins or leaves it without the others:

1. the added workers start with ``OPTIMUS_JOIN_IN_PLACE=1`` (as above), join the RPC world,
   set their `ready_key` and ask PS 0's coordinator when to start (``coord_join``);
2. ``POST /membership`` is kept pending by the chief's `Switchboard`, as above;
3. once due, the chief asks the coordinator for the switch step S, the next step no worker
   has pushed yet, and tells every PS that the sync barrier counts the new number of
   pushes from step S on (`workers_at`); every worker learns S in the answer to its push
   of step S - 1 (the coordinator's report rides on every push to PS 0);
4. after step S - 1 the leaving workers hand their sample ledgers to the coordinator and
   leave the RPC world (exit 0); the others train step S at the new size; the added
   workers start at S once every old worker has pushed step S - 1, pulling the parameters
   from the PS (in ps-sync once the PS applied step S - 1). The chief answers the request
   after its first step at the new size.

A PS change in the PS modes (``"ps"`` in the request, the workers unchanged) moves the
parameter blocks: the added PS start with ``OPTIMUS_JOIN_IN_PLACE=1``, join the RPC world
and set their `ps_join_key`; once due, the chief asks for a pause of every worker (the
coordinator's next pause step, as for a checkpoint) and there loads the balanced
assignment over the new PS (`optimus_worker.assignment`) with each block's values and
optimizer state, lets the removed PS leave the RPC world (exit 0), and releases the
workers with the PS to call from now on; they re-route and pull. No checkpoint is written
unless one is due at that step anyway.

The data plan is a pure function of (step, rank, worker count) (`optimus_worker.data`), so
the rest of the epoch is re-sharded over the new membership with no sample skipped or
repeated, and the global batch, hence the learning rate, stays as the spec says: each
worker's gradient weight is its share of the global batch (in ps-sync the PS sums the new
number of pushes from S on).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optimus_worker import contract

JOIN_TIMEOUT_S = 120.0  # how long a request waits for its added workers to announce themselves

Answer = dict[str, Any]


class MembershipError(ValueError):
    """A membership request the job cannot follow; the message names the field and the fix."""


class SwitchFailed(RuntimeError):
    """An accepted membership request whose switch did not happen (the added workers did
    not join in time, or the job ended first): resize by checkpoint-restart instead."""


@dataclass(frozen=True)
class Membership:
    """Who trains: `num_workers` workers (ranks 0..n-1) and `num_ps` PS (0 in all-reduce)
    of allocation `generation`."""

    generation: int
    num_workers: int
    num_ps: int = 0

    def newcomers(self, current_workers: int) -> range:
        """The ranks that join when `current_workers` workers switch to this membership."""
        return range(current_workers, self.num_workers)

    def added_ps(self, current_ps: int) -> range:
        """The PS indices that join when `current_ps` PS switch to this membership."""
        return range(current_ps, self.num_ps)


def group_prefix(generation: int) -> str:
    """The store prefix of one membership's process group: every membership rendezvous
    under its own keys, so a re-formed group never reads the previous group's."""
    return f"optimus/membership/{generation}/"


def ready_key(generation: int, rank: int) -> str:
    """The store key an added worker sets once it is ready to join `generation`."""
    return f"optimus/join/{generation}/{rank}"


def ps_join_key(generation: int, index: int) -> str:
    """The store key a PS added to a running job sets once it serves (a PS change)."""
    return f"optimus/join-ps/{generation}/{index}"


def ps_ready_key(index: int) -> str:
    """The store key a PS sets once it serves in the job's (dynamic) RPC world."""
    return f"optimus/ps-ready/{index}"


def workers_at(changes: Sequence[tuple[int, int]], step: int) -> int:
    """How many workers train step `step` (0-based) given the membership `changes`, pairs
    (first step, worker count) in increasing first step, the first covering `step`."""
    count = None
    for first, workers in changes:
        if first > step:
            break
        count = workers
    if count is None:
        raise ValueError(f"no membership covers step {step}: {list(changes)}")
    return count


def switch_step(pushed: int, final_step: int) -> int:
    """The step a PS-mode switch takes effect at: the first no worker has pushed yet
    (`pushed` steps are the most any worker pushed), so every worker learns it in time.
    SwitchFailed when the job ends before a step at the new size."""
    at = pushed + 1
    if at >= final_step:
        raise SwitchFailed(f"the job ends at step {final_step} before it could switch (the "
                           f"workers pushed {pushed} steps)")
    return at


def joins_in_place(environ: Mapping[str, str]) -> bool:
    """Whether this worker joins a running job (``OPTIMUS_JOIN_IN_PLACE``)."""
    raw = environ.get(contract.ENV_JOIN_IN_PLACE, "")
    if raw not in ("", "0", "1"):
        raise contract.ContractError(
            f"{contract.ENV_JOIN_IN_PLACE}={raw!r}: use 1 for a worker added to a running job, "
            f"0 or unset otherwise")
    return raw == "1"


def _field(body: Mapping[str, Any], name: str, minimum: int) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MembershipError(f"membership request: {name!r} must be an integer, got "
                              f"{value!r}")
    if value < minimum:
        raise MembershipError(f"membership request: {name!r}={value} must be >= {minimum}")
    return value


def parse_request(body: Mapping[str, Any], current: Membership) -> Membership:
    """The membership a ``POST /membership`` body asks for, checked against `current`."""
    if not isinstance(body, Mapping):
        raise MembershipError('membership request: send a JSON object {"workers": n, '
                              '"generation": g}')
    workers = _field(body, "workers", 1)
    generation = _field(body, "generation", 0)
    num_ps = _field(body, "ps", 1) if "ps" in body else current.num_ps
    if generation <= current.generation:
        raise MembershipError(
            f"membership request: 'generation'={generation} must be above the job's current "
            f"generation {current.generation} (each membership gets a new one)")
    if num_ps != current.num_ps:
        if current.num_ps == 0:
            raise MembershipError("membership request: an all-reduce job has no PS; leave "
                                  "'ps' out")
        if workers != current.num_workers:
            raise MembershipError(
                f"membership request: change the PS ({current.num_ps} -> {num_ps}) or the "
                f"workers ({current.num_workers} -> {workers}), one request each")
        return Membership(generation=generation, num_workers=workers, num_ps=num_ps)
    if workers == current.num_workers:
        raise MembershipError(f"membership request: the job already has {workers} workers")
    return Membership(generation=generation, num_workers=workers, num_ps=num_ps)


def request_timeout(body: Mapping[str, Any], default: float) -> float:
    """The optional ``"timeout_s"`` of a request body (> 0), else `default`."""
    value = body.get("timeout_s", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise MembershipError(f"membership request: 'timeout_s' must be a number of seconds "
                              f"> 0, got {value!r}")
    return float(value)


def encode(membership: Membership | None) -> tuple[float, float]:
    """The two entries the chief adds to a step's control all-reduce (the others add 0)."""
    if membership is None:
        return 0.0, 0.0
    return float(membership.num_workers), float(membership.generation)


def decode(workers: float, generation: float) -> Membership | None:
    """The membership a reduced control vector announces, if any."""
    if workers <= 0:
        return None
    return Membership(generation=round(generation), num_workers=round(workers))


@dataclass
class _Pending:
    membership: Membership
    answer: concurrent.futures.Future[Answer]
    deadline: float
    timeout_s: float


class Switchboard:
    """The chief's view of membership changes: requests come from the control endpoint's
    threads, the training thread asks at every step whether one is due and reports it done.

    One request at a time; it is due once every added worker is ready (`ready` is asked
    whether all of the given store keys exist) and fails after `timeout_s`, or when the job
    would end before it could switch, so the caller can fall back to a restart."""

    def __init__(self, current: Membership, final_step: int,
                 clock: Callable[[], float] = time.monotonic,
                 timeout_s: float = JOIN_TIMEOUT_S) -> None:
        self.current = current
        self.final_step = final_step
        self.clock = clock
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pending: _Pending | None = None
        self._finished = False

    def request(self, body: Mapping[str, Any]) -> concurrent.futures.Future[Answer]:
        """Register a request; its future is answered once the job trains at the new size.
        An optional ``"timeout_s"`` (> 0) in the body replaces `timeout_s` for it, so the
        caller can bound the wait for its added workers by its own fallback deadline."""
        with self._lock:
            if self._finished:
                raise MembershipError("membership request: the job has finished")
            if self._pending is not None:
                raise MembershipError(
                    f"membership request: generation {self._pending.membership.generation} "
                    f"is still being switched to; retry once it is answered")
            membership = parse_request(body, self.current)
            timeout_s = request_timeout(body, self.timeout_s)
            answer: concurrent.futures.Future[Answer] = concurrent.futures.Future()
            self._pending = _Pending(membership, answer, self.clock() + timeout_s, timeout_s)
            return answer

    def due(self, step: int, ready: Callable[[Sequence[str]], bool]) -> Membership | None:
        """The membership to switch to after step `step` (0-based), if its time has come."""
        with self._lock:
            pending = self._pending
            if pending is None:
                return None
            target = pending.membership
            if step + 1 >= self.final_step:
                self._fail(f"the job ends at step {self.final_step} before it could switch to "
                           f"{target.num_workers} workers")
                return None
            newcomers = target.newcomers(self.current.num_workers)
            added_ps = target.added_ps(self.current.num_ps)
            keys = ([ready_key(target.generation, r) for r in newcomers]
                    + [ps_join_key(target.generation, i) for i in added_ps])
            if not keys or ready(keys):
                return target
            if self.clock() > pending.deadline:
                added = (f"workers (ranks {newcomers.start}..{target.num_workers - 1})"
                         if newcomers else f"PS ({added_ps.start}..{target.num_ps - 1})")
                self._fail(f"the added {added} did not join within {pending.timeout_s:g}s")
            return None

    def switched(self, membership: Membership, answer: Answer) -> None:
        """The job trains with `membership` now: answer its request."""
        with self._lock:
            self.current = membership
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.answer.set_result(answer)

    def fail(self, reason: str) -> None:
        """The pending switch cannot happen (`reason`): answer its request 503."""
        with self._lock:
            self._fail(reason)

    def finish(self) -> None:
        """The job ended: refuse new requests, fail a pending one."""
        with self._lock:
            self._finished = True
            self._fail("the job finished before the switch")

    def _fail(self, reason: str) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.answer.set_exception(SwitchFailed(f"membership request: {reason}"))

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

The data plan is a pure function of (step, rank, worker count) (`optimus_worker.data`), so
the rest of the epoch is re-sharded over the new membership with no sample skipped or
repeated, and the global batch, hence the learning rate, stays as the spec says.
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
    """Who trains: `num_workers` workers (ranks 0..n-1) of allocation `generation`."""

    generation: int
    num_workers: int

    def newcomers(self, current_workers: int) -> range:
        """The ranks that join when `current_workers` workers switch to this membership."""
        return range(current_workers, self.num_workers)


def group_prefix(generation: int) -> str:
    """The store prefix of one membership's process group: every membership rendezvous
    under its own keys, so a re-formed group never reads the previous group's."""
    return f"optimus/membership/{generation}/"


def ready_key(generation: int, rank: int) -> str:
    """The store key an added worker sets once it is ready to join `generation`."""
    return f"optimus/join/{generation}/{rank}"


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
    if generation <= current.generation:
        raise MembershipError(
            f"membership request: 'generation'={generation} must be above the job's current "
            f"generation {current.generation} (each membership gets a new one)")
    if workers == current.num_workers:
        raise MembershipError(f"membership request: the job already has {workers} workers")
    return Membership(generation=generation, num_workers=workers)


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
        """Register a request; its future is answered once the job trains at the new size."""
        with self._lock:
            if self._finished:
                raise MembershipError("membership request: the job has finished")
            if self._pending is not None:
                raise MembershipError(
                    f"membership request: generation {self._pending.membership.generation} "
                    f"is still being switched to; retry once it is answered")
            membership = parse_request(body, self.current)
            answer: concurrent.futures.Future[Answer] = concurrent.futures.Future()
            self._pending = _Pending(membership, answer, self.clock() + self.timeout_s)
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
            keys = [ready_key(target.generation, r) for r in newcomers]
            if not keys or ready(keys):
                return target
            if self.clock() > pending.deadline:
                self._fail(f"the added workers (ranks {newcomers.start}.."
                           f"{target.num_workers - 1}) did not join within "
                           f"{self.timeout_s:.0f}s")
            return None

    def switched(self, membership: Membership, answer: Answer) -> None:
        """The job trains with `membership` now: answer its request."""
        with self._lock:
            self.current = membership
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.answer.set_result(answer)

    def finish(self) -> None:
        """The job ended: refuse new requests, fail a pending one."""
        with self._lock:
            self._finished = True
            self._fail("the job finished before the switch")

    def _fail(self, reason: str) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.answer.set_exception(SwitchFailed(f"membership request: {reason}"))

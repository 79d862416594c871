"""Knowledge pooled across jobs (pure): what finished and running jobs of one kind (the
same model or task, mode and global batch) taught, used as the prior of a new job of that
kind. Part of step 3 of a round (optimus.round.knowledge.fit_job reads a job's
`KindKnowledge`); whoever runs the rounds updates the store as jobs measure and finish
(the simulator after every round; the operator's persistence is the next step).

Two priors, each a setting of the round (`SchedulingSettings.pool_speed`,
`convergence_prior`) so that an ablation can switch it off:
* speed: the kind's pooled speed samples (the mean per configuration, in the speed model's
  unit) and the speed model fitted to them. A job with no fit of its own uses the kind's
  model (it need not probe); once it measures configurations of its own, its fit is made
  over its own samples plus the pooled ones at the configurations it has not measured, so
  a few own configurations already give a well-conditioned fit.
* convergence: the epochs at which the kind's finished jobs converged. Before the job's
  loss model has `PRIOR_LOSS_POINTS` points, its remaining epochs are the mean of
  (converged - done) over the finished jobs that converged after `done` epochs (what is
  known so far conditions the prior), instead of maxEpochs minus the epochs done.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from optimus.models import (
    THETA_NAMES,
    ModelError,
    SpeedMode,
    SpeedParams,
    SpeedSample,
    fit_speed,
)

#: the loss model's own estimate replaces the convergence prior from this many loss points
PRIOR_LOSS_POINTS = 8
#: the kind's speed model is refitted when its observations grew by this factor (or a
#: configuration is new): its samples are means, and a mean of many barely moves
POOL_REFIT_GROWTH = 2.0
#: at most this many finished jobs' epochs are remembered per kind (the newest)
MAX_FINISHED = 64


@dataclass(frozen=True)
class PooledSample:
    """The mean speed (model unit) of a kind at one configuration, over `count` samples."""

    ps: int
    workers: int
    speed: float
    count: int = 1


@dataclass(frozen=True)
class KindKnowledge:
    """What the jobs of one kind taught: pooled speed samples, the speed model fitted to
    them (theta, with the observation count it was fitted at), and finished jobs' epochs."""

    mode: str
    batch_size: int
    samples: tuple[PooledSample, ...] = ()
    theta: tuple[float, ...] | None = None
    observations_at_fit: int = 0
    finished_epochs: tuple[float, ...] = ()
    #: the samples per epoch of the finished jobs (None where a job did not measure it)
    finished_epoch_sizes: tuple[float, ...] = ()

    @property
    def samples_per_epoch(self) -> float | None:
        """The finished jobs' mean epoch size (None: none measured), a new job's guess
        until it measures its own."""
        sizes = self.finished_epoch_sizes
        return sum(sizes) / len(sizes) if sizes else None

    @property
    def observations(self) -> int:
        return sum(s.count for s in self.samples)

    def speed_samples(self) -> list[SpeedSample]:
        return [SpeedSample(s.ps, s.workers, s.speed) for s in self.samples]

    def speed(self, scope: str) -> SpeedParams | None:
        if self.theta is None:
            return None
        return SpeedParams(cast(SpeedMode, self.mode), float(self.batch_size), self.theta,
                           scope)  # type: ignore[arg-type]

    def remaining_epochs(self, done: float) -> float | None:
        """The mean epochs left over the finished jobs that converged after `done` epochs
        (None: no finished job tells)."""
        later = [e - done for e in self.finished_epochs if e > done]
        return sum(later) / len(later) if later else None


def kind_key(kind: str, mode: str, batch_size: int) -> str:
    """The store's key: jobs share knowledge only with the same kind, mode and batch."""
    return f"{kind}|{mode}|{batch_size}"


def _refit(entry: KindKnowledge, scope: str) -> KindKnowledge:
    configs = len(entry.samples)
    if configs < len(THETA_NAMES[cast(SpeedMode, entry.mode)]):
        return entry
    try:
        speed = fit_speed(entry.speed_samples(), entry.mode, entry.batch_size,
                          batch_scope=scope)  # type: ignore[arg-type]
    except ModelError:
        return entry
    return replace(entry, theta=speed.theta, observations_at_fit=entry.observations)


@dataclass(frozen=True)
class KnowledgeStore:
    """Every kind's pooled knowledge, by `kind_key`. Frozen: each update returns a new
    store."""

    kinds: Mapping[str, KindKnowledge] = field(default_factory=dict)

    def get(self, key: str) -> KindKnowledge | None:
        return self.kinds.get(key)

    def _entry(self, key: str, mode: str, batch_size: int) -> KindKnowledge:
        entry = self.kinds.get(key)
        if entry is None:
            return KindKnowledge(mode, batch_size)
        if entry.mode != mode or entry.batch_size != batch_size:
            raise ValueError(f"kind {key!r} holds mode {entry.mode}, batch {entry.batch_size}"
                             f"; got {mode}, {batch_size}: build keys with kind_key")
        return entry

    def with_speed(self, key: str, mode: str, batch_size: int, scope: str,
                   measured: Sequence[tuple[int, int, float]]) -> KnowledgeStore:
        """The store with speed samples (ps, workers, speed in the model's unit) pooled
        into the kind's means, its model refitted when a configuration is new or its
        observations grew `POOL_REFIT_GROWTH`-fold since the last fit."""
        if not measured:
            return self
        if any(not (speed > 0) or workers < 1 for _, workers, speed in measured):
            raise ValueError("pooled speed samples need workers >= 1 and a speed > 0")
        entry = self._entry(key, mode, batch_size)
        by_config = {(s.ps, s.workers): s for s in entry.samples}
        new_config = False
        for ps, workers, speed in measured:
            old = by_config.get((ps, workers))
            if old is None:
                by_config[(ps, workers)] = PooledSample(ps, workers, speed)
                new_config = True
            else:
                count = old.count + 1
                by_config[(ps, workers)] = PooledSample(
                    ps, workers, old.speed + (speed - old.speed) / count, count)
        entry = replace(entry, samples=tuple(by_config[k] for k in sorted(by_config)))
        if new_config or entry.theta is None or (
                entry.observations >= POOL_REFIT_GROWTH * entry.observations_at_fit):
            entry = _refit(entry, scope)
        return replace(self, kinds={**self.kinds, key: entry})

    def with_finished(self, key: str, mode: str, batch_size: int, epochs: float,
                      samples_per_epoch: float | None = None) -> KnowledgeStore:
        """The store with a finished job's converged epoch count (and its epoch size,
        when measured) remembered."""
        if not epochs > 0:
            raise ValueError(f"a finished job's epochs must be > 0, got {epochs}")
        entry = self._entry(key, mode, batch_size)
        finished = (*entry.finished_epochs, float(epochs))[-MAX_FINISHED:]
        sizes = entry.finished_epoch_sizes
        if samples_per_epoch is not None and samples_per_epoch > 0:
            sizes = (*sizes, float(samples_per_epoch))[-MAX_FINISHED:]
        return replace(self, kinds={**self.kinds, key: replace(
            entry, finished_epochs=finished, finished_epoch_sizes=sizes)})


# ---- serialization (pure): the store as a versioned, validated dict --------------------------
#: the serialized store's format; `store_from_dict` refuses any other
STORE_FORMAT_VERSION = 1
_MODES = tuple(THETA_NAMES)


class StoreFormatError(ValueError):
    """A serialized store that cannot be read: the message names the field and what is
    wrong with it."""


def _kind_to_dict(entry: KindKnowledge) -> dict[str, Any]:
    return {
        "mode": entry.mode,
        "batchSize": entry.batch_size,
        "samples": [[s.ps, s.workers, s.speed, s.count] for s in entry.samples],
        "theta": None if entry.theta is None else list(entry.theta),
        "observationsAtFit": entry.observations_at_fit,
        "finishedEpochs": list(entry.finished_epochs),
        "finishedEpochSizes": list(entry.finished_epoch_sizes),
    }


def store_to_dict(store: KnowledgeStore) -> dict[str, Any]:
    """The store as plain JSON-able data, `{"version": 1, "kinds": {key: {...}}}`, keys
    sorted so that an unchanged store serializes to the same text."""
    return {"version": STORE_FORMAT_VERSION,
            "kinds": {key: _kind_to_dict(store.kinds[key]) for key in sorted(store.kinds)}}


def _number(raw: Any, where: str, *, whole: bool = False, low: float = 0.0,
            above: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise StoreFormatError(f"{where}: {raw!r} is not a finite number")
    if whole and not float(raw).is_integer():
        raise StoreFormatError(f"{where}: {raw!r} is not a whole number")
    if raw < low or (above and raw == low):
        raise StoreFormatError(f"{where}: {raw!r} must be {'>' if above else '>='} {low:g}")
    return float(raw)


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise StoreFormatError(f"{where}: {type(raw).__name__} where a list belongs")
    return raw


def _kind_from_dict(key: str, raw: Any) -> KindKnowledge:
    at = f"kinds[{key!r}]"
    if not isinstance(raw, Mapping):
        raise StoreFormatError(f"{at}: {type(raw).__name__} where an object belongs")
    mode = raw.get("mode")
    if mode not in _MODES:
        raise StoreFormatError(f"{at}.mode: {mode!r} is not one of {', '.join(_MODES)}")
    batch = int(_number(raw.get("batchSize"), f"{at}.batchSize", whole=True, low=1))
    if not key.endswith(f"|{mode}|{batch}") or key == f"|{mode}|{batch}":
        raise StoreFormatError(f"{at}: the key does not name a kind with mode {mode} and "
                               f"batch {batch} (kind|mode|batch)")
    samples: list[PooledSample] = []
    seen: set[tuple[int, int]] = set()
    for i, item in enumerate(_list(raw.get("samples", []), f"{at}.samples")):
        where = f"{at}.samples[{i}]"
        item = _list(item, where)
        if len(item) != 4:
            raise StoreFormatError(f"{where}: {item!r} is not [ps, workers, speed, count]")
        ps = int(_number(item[0], f"{where}[0] (ps)", whole=True))
        workers = int(_number(item[1], f"{where}[1] (workers)", whole=True, low=1))
        speed = _number(item[2], f"{where}[2] (speed)", above=True)
        count = int(_number(item[3], f"{where}[3] (count)", whole=True, low=1))
        if (ps, workers) in seen:
            raise StoreFormatError(f"{where}: configuration ({ps}, {workers}) repeats")
        seen.add((ps, workers))
        samples.append(PooledSample(ps, workers, speed, count))
    theta_raw = raw.get("theta")
    theta: tuple[float, ...] | None = None
    if theta_raw is not None:
        names = THETA_NAMES[cast(SpeedMode, mode)]
        values = _list(theta_raw, f"{at}.theta")
        if len(values) != len(names):
            raise StoreFormatError(f"{at}.theta: {len(values)} values; the {mode} model has "
                                   f"{len(names)} ({', '.join(names)})")
        theta = tuple(_number(v, f"{at}.theta[{i}]") for i, v in enumerate(values))
    epochs = tuple(_number(v, f"{at}.finishedEpochs[{i}]", above=True) for i, v in
                   enumerate(_list(raw.get("finishedEpochs", []), f"{at}.finishedEpochs")))
    sizes = tuple(_number(v, f"{at}.finishedEpochSizes[{i}]", above=True) for i, v in
                  enumerate(_list(raw.get("finishedEpochSizes", []),
                                  f"{at}.finishedEpochSizes")))
    return KindKnowledge(
        mode=mode, batch_size=batch,
        samples=tuple(sorted(samples, key=lambda s: (s.ps, s.workers))), theta=theta,
        observations_at_fit=int(_number(raw.get("observationsAtFit", 0),
                                        f"{at}.observationsAtFit", whole=True)),
        finished_epochs=epochs[-MAX_FINISHED:], finished_epoch_sizes=sizes[-MAX_FINISHED:])


def store_from_dict(raw: Any) -> KnowledgeStore:
    """The store `store_to_dict` wrote; StoreFormatError (naming the field) for anything
    else: another version, a missing or mistyped field, a speed or epoch count <= 0, a
    parameter vector of the wrong length for its mode."""
    if not isinstance(raw, Mapping):
        raise StoreFormatError(f"{type(raw).__name__} where an object with 'version' and "
                               "'kinds' belongs")
    version = raw.get("version")
    if version != STORE_FORMAT_VERSION:
        raise StoreFormatError(f"version: {version!r}; this operator reads version "
                               f"{STORE_FORMAT_VERSION}")
    kinds = raw.get("kinds")
    if not isinstance(kinds, Mapping):
        raise StoreFormatError(f"kinds: {type(kinds).__name__} where an object belongs")
    return KnowledgeStore({str(key): _kind_from_dict(str(key), value)
                           for key, value in kinds.items()})

"""The knowledge store's serialization (optimus.round.store: `store_to_dict`,
`store_from_dict`): a round trip keeps every field, anything else is refused naming the
field, and a loaded store merges what later jobs teach like one never serialized."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimus.models import SpeedParams, predict_speed
from optimus.round import (
    KnowledgeStore,
    StoreFormatError,
    kind_key,
    pool_measurements,
    store_from_dict,
    store_to_dict,
)

MODES = ("ps-sync", "ps-async", "allreduce")
speeds = st.floats(1e-3, 1e4, allow_nan=False, allow_infinity=False)


@st.composite
def stores(draw: st.DrawFn) -> KnowledgeStore:
    store = KnowledgeStore()
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(("resnet", "mlp", "img cmd --x")))
        mode = draw(st.sampled_from(MODES))
        batch = draw(st.integers(1, 512))
        key = kind_key(kind, mode, batch)
        if store.get(key) is not None:
            continue
        ps_low = 0 if mode == "allreduce" else 1
        for ps, workers, speed in draw(st.lists(st.tuples(
                st.integers(ps_low, 4), st.integers(1, 8), speeds), max_size=12)):
            store = store.with_speed(key, mode, batch, "per-worker", [(ps, workers, speed)])
        for epochs in draw(st.lists(st.floats(0.5, 200), max_size=5)):
            size = draw(st.none() | st.floats(1, 1e6))
            store = store.with_finished(key, mode, batch, epochs, size)
    return store


@given(store=stores())
def test_a_store_survives_the_round_trip_through_json(store: KnowledgeStore) -> None:
    text = json.dumps(store_to_dict(store))
    assert store_from_dict(json.loads(text)) == store
    assert json.dumps(store_to_dict(store_from_dict(json.loads(text)))) == text


def _valid() -> dict[str, Any]:
    truth = SpeedParams("ps-sync", 64.0, (0.002, 0.05, 0.03, 0.01, 0.02), "per-worker")
    store = pool_measurements(KnowledgeStore(), "resnet", "ps-sync", 64, [
        (p, w, predict_speed(truth, p, w) * 64) for p in (1, 2) for w in (1, 2, 4)])
    store = store.with_finished(kind_key("resnet", "ps-sync", 64), "ps-sync", 64, 12.0, 6400.0)
    return store_to_dict(store)


KEY = "resnet|ps-sync|64"


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(_valid())
    node: Any = raw
    for part in path[:-1]:
        node = node[part]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


_DROP = object()


@pytest.mark.parametrize(("raw", "named"), [
    ([], "list where an object"),
    ({"kinds": {}}, "version: None"),
    (_with(("version",), 2), "version: 2; this operator reads version 1"),
    (_with(("kinds",), []), "kinds: list"),
    (_with(("kinds", KEY, "mode"), "sync"), f"kinds[{KEY!r}].mode: 'sync'"),
    (_with(("kinds", KEY, "batchSize"), 32), "the key does not name a kind"),
    (_with(("kinds", KEY, "batchSize"), 0), ".batchSize: 0 must be >= 1"),
    (_with(("kinds", KEY, "samples", 0, 2), -1.0), ".samples[0][2] (speed): -1.0 must be > 0"),
    (_with(("kinds", KEY, "samples", 0, 2), float("nan")), "(speed): nan is not a finite"),
    (_with(("kinds", KEY, "samples", 0, 1), 0), "(workers): 0 must be >= 1"),
    (_with(("kinds", KEY, "samples", 0, 3), 1.5), "(count): 1.5 is not a whole number"),
    (_with(("kinds", KEY, "samples", 0), [1, 1, 2.0]), "is not [ps, workers, speed, count]"),
    (_with(("kinds", KEY, "samples", 1), [1, 1, 2.0, 1]), "configuration (1, 1) repeats"),
    (_with(("kinds", KEY, "samples"), "x"), ".samples: str where a list"),
    (_with(("kinds", KEY, "theta"), [1.0, 2.0]), ".theta: 2 values; the ps-sync model has 5"),
    (_with(("kinds", KEY, "theta", 0), "a"), ".theta[0]: 'a' is not a finite number"),
    (_with(("kinds", KEY, "finishedEpochs", 0), 0), ".finishedEpochs[0]: 0 must be > 0"),
    (_with(("kinds", KEY, "finishedEpochSizes"), {}), ".finishedEpochSizes: dict"),
    (_with(("kinds", KEY), 7), f"kinds[{KEY!r}]: int where an object"),
    (_with(("kinds", KEY, "observationsAtFit"), True), "True is not a finite number"),
])
def test_a_bad_store_is_refused_naming_the_field(raw: Any, named: str) -> None:
    with pytest.raises(StoreFormatError) as error:
        store_from_dict(raw)
    assert named in str(error.value)


def test_optional_fields_may_be_left_out() -> None:
    raw = _valid()
    for field in ("samples", "theta", "finishedEpochs", "finishedEpochSizes",
                  "observationsAtFit"):
        del raw["kinds"][KEY][field]
    entry = store_from_dict(raw).get(KEY)
    assert entry is not None and entry.samples == () and entry.theta is None


@given(extra=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 6), speeds), max_size=8),
       epochs=st.lists(st.floats(1, 100), max_size=4))
def test_a_loaded_store_merges_like_the_one_it_was_saved_from(
        extra: list[tuple[int, int, float]], epochs: list[float]) -> None:
    saved = store_from_dict(_valid())
    loaded = store_from_dict(json.loads(json.dumps(store_to_dict(saved))))
    for ps, workers, speed in extra:
        saved = saved.with_speed(KEY, "ps-sync", 64, "per-worker", [(ps, workers, speed)])
        loaded = loaded.with_speed(KEY, "ps-sync", 64, "per-worker", [(ps, workers, speed)])
    for e in epochs:
        saved = saved.with_finished(KEY, "ps-sync", 64, e)
        loaded = loaded.with_finished(KEY, "ps-sync", 64, e)
    assert loaded == saved
    entry = loaded.get(KEY)
    assert entry is not None
    assert entry.observations == 6 + len(extra)
    assert len(entry.finished_epochs) == 1 + len(epochs)


def test_seeded_measurements_are_pooled_in_the_speed_model_unit() -> None:
    # a synchronous job's unit is job steps/s: the total samples/s over the global batch
    store = pool_measurements(KnowledgeStore(), "m", "ps-sync", 64, [(1, 2, 640.0)])
    async_store = pool_measurements(KnowledgeStore(), "m", "ps-async", 64, [(1, 2, 640.0)])
    sync_entry, async_entry = store.get("m|ps-sync|64"), async_store.get("m|ps-async|64")
    assert sync_entry is not None and async_entry is not None
    assert sync_entry.samples[0].speed == pytest.approx(10.0)
    # an asynchronous job's: summed worker steps/s, each of M/w samples
    assert async_entry.samples[0].speed == pytest.approx(20.0)
    with pytest.raises(ValueError, match="need a kind"):
        pool_measurements(KnowledgeStore(), "", "ps-sync", 64, [(1, 2, 640.0)])

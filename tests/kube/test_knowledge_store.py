"""The knowledge store's ConfigMap edge (optimus.kube.store) against the in-memory FakeKube:
loaded once, written only when changed, never over a ConfigMap it cannot read or one
someone else changed since, and an unreadable one gives a warning that names the key and
the fix instead of a crash."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from optimus.kube.store import (
    STORE_KEY,
    ConfigMapStore,
    knowledge_configmap,
    store_from_configmap,
)
from optimus.round import KnowledgeStore, StoreFormatError, kind_key

from tests.kube.fakes import FakeKube

NS, NAME = "optimus-system", "optimus-knowledge"
KEY = kind_key("mlp", "ps-sync", 64)


def _store(*speeds: float) -> KnowledgeStore:
    store = KnowledgeStore()
    for speed in speeds:
        store = store.with_speed(KEY, "ps-sync", 64, "per-worker", [(1, 1, speed)])
    return store


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def _writes(kube: FakeKube) -> list[tuple[Any, ...]]:
    return [c for c in kube.calls if c[0] in ("create_configmap", "replace_configmap")]


def test_the_manifest_round_trips_and_is_labelled() -> None:
    store = _store(2.0, 4.0)
    body = knowledge_configmap(store, NS, NAME)
    assert body["metadata"]["labels"]["optimus.dev/knowledge-store"] == "true"
    assert store_from_configmap(body) == store


@pytest.mark.parametrize(("data", "named"), [
    (None, f"no data key {STORE_KEY!r} (its keys: none)"),
    ({"other": "x"}, "(its keys: other); it is not an Optimus knowledge store"),
    ({STORE_KEY: "{not json"}, f"data key {STORE_KEY!r} is not JSON"),
    ({STORE_KEY: json.dumps({"version": 9, "kinds": {}})}, "version: 9"),
])
def test_an_unreadable_configmap_is_refused_naming_the_key(data: Any, named: str) -> None:
    with pytest.raises(StoreFormatError) as error:
        store_from_configmap({"data": data})
    assert named in str(error.value)


def test_an_absent_store_is_created_once_and_replaced_only_when_it_changed() -> None:
    kube = FakeKube()
    cm = ConfigMapStore(kube, NS, NAME)

    async def scenario() -> None:
        assert await cm.load() == KnowledgeStore()
        assert await cm.save(KnowledgeStore()) == KnowledgeStore()
        assert _writes(kube) == [], "an empty, unchanged store is not written"
        store = _store(2.0)
        await cm.save(store)
        await cm.save(store)
        assert _writes(kube) == [("create_configmap", NS, NAME)]
        changed = _store(2.0, 4.0)
        await cm.save(changed)
        await cm.save(changed)
        assert _writes(kube)[1:] == [("replace_configmap", NS, NAME)]
        # a new ConfigMapStore (an operator restart) reads what was written
        assert await ConfigMapStore(kube, NS, NAME).load() == changed

    _run(scenario())


@pytest.mark.parametrize("data", [{"foreign": "data"}, {STORE_KEY: "[1, 2"}])
def test_an_unreadable_store_starts_empty_is_left_alone_and_used_once_fixed(
        data: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube()
    kube.put_configmap({"metadata": {"namespace": NS, "name": NAME}, "data": data})
    cm = ConfigMapStore(kube, NS, NAME)

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, "optimus.kube"):
            assert await cm.load() == KnowledgeStore()
        (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert STORE_KEY in warning and f"kubectl -n {NS} delete configmap {NAME}" in warning
        learned = _store(3.0)
        assert await cm.save(learned) == learned
        assert _writes(kube) == [] and kube.configmaps[(NS, NAME)]["data"] == data
        # the user deletes it: the next save creates the store
        del kube.configmaps[(NS, NAME)]
        await cm.save(learned)
        assert _writes(kube) == [("create_configmap", NS, NAME)]
        assert store_from_configmap(kube.configmaps[(NS, NAME)]) == learned

    _run(scenario())


def test_an_unreadable_store_seeded_anew_is_adopted() -> None:
    kube = FakeKube()
    kube.put_configmap({"metadata": {"namespace": NS, "name": NAME}, "data": {STORE_KEY: "x"}})
    cm = ConfigMapStore(kube, NS, NAME)
    seed = _store(9.0)

    async def scenario() -> None:
        await cm.load()
        kube.put_configmap(knowledge_configmap(seed, NS, NAME))  # kubectl apply
        assert await cm.save(_store(1.0)) == seed
        assert _writes(kube) == []

    _run(scenario())


def test_a_store_changed_by_someone_else_is_not_overwritten_but_adopted() -> None:
    kube = FakeKube()
    cm = ConfigMapStore(kube, NS, NAME)
    seed = _store(7.0, 7.0)

    async def scenario() -> None:
        await cm.load()
        await cm.save(_store(1.0))
        kube.put_configmap(knowledge_configmap(seed, NS, NAME))  # a seed applied meanwhile
        assert await cm.save(_store(1.0, 2.0)) == seed
        assert store_from_configmap(kube.configmaps[(NS, NAME)]) == seed
        # from then on it writes over the seed's version
        grown = seed.with_speed(KEY, "ps-sync", 64, "per-worker", [(1, 2, 5.0)])
        assert await cm.save(grown) == grown
        assert store_from_configmap(kube.configmaps[(NS, NAME)]) == grown

    _run(scenario())


def test_an_api_failure_keeps_the_store_in_memory_and_retries(
        caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube()
    cm = ConfigMapStore(kube, NS, NAME)

    async def refuse(body: Any) -> Any:
        raise RuntimeError("forbidden")

    async def scenario() -> None:
        await cm.load()
        create = kube.create_configmap
        kube.create_configmap = refuse  # type: ignore[method-assign]
        learned = _store(2.0)
        with caplog.at_level(logging.WARNING, "optimus.kube"):
            assert await cm.save(learned) == learned
        assert "retrying next round" in caplog.text
        kube.create_configmap = create  # type: ignore[method-assign]
        await cm.save(learned)
        assert store_from_configmap(kube.configmaps[(NS, NAME)]) == learned

    _run(scenario())

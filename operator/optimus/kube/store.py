"""The knowledge store's ConfigMap: where the operator keeps the knowledge pooled across
jobs (optimus.round.store.KnowledgeStore) so that it survives an operator restart.

The ConfigMap (OPTIMUS_KNOWLEDGE_NAMESPACE / OPTIMUS_KNOWLEDGE_CONFIGMAP, by default
`optimus-knowledge` in the operator's namespace) holds the store as one JSON document under
the data key `STORE_KEY`, in the pure versioned format of optimus.round.store
(`store_to_dict` / `store_from_dict`). `knowledge_configmap` and `store_from_configmap`
are pure (`optimus fit store` prints the same manifest for `kubectl apply -f -`);
`ConfigMapStore` does the three API calls (get, create, update) for the controller:

* `load`, once, before the first round: an absent ConfigMap is an empty store; one that
  cannot be read (another format, corrupt JSON, a foreign ConfigMap of that name) is an
  empty store too, with a warning naming the key and the fix, never a crash loop. Such a
  ConfigMap is not overwritten: `save` writes again once it is gone (deleted by the user)
  or readable (seeded anew), whichever it finds first.
* `save`, at most once a round and only when the store changed since it was last loaded
  or written. Writes carry the resourceVersion last seen, so a ConfigMap changed by
  someone else meanwhile (a new seed applied with kubectl, another operator replica that
  was active) is not overwritten: the write conflicts, and the store read back replaces
  the one in memory (the changes of the last round are dropped, the seed wins).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from optimus.round import KnowledgeStore, StoreFormatError, store_from_dict, store_to_dict

log = logging.getLogger("optimus.kube")

#: the ConfigMap's data key that holds the store
STORE_KEY = "store.json"
#: the label that marks the ConfigMap as the operator's knowledge store
STORE_LABEL = "optimus.dev/knowledge-store"
DEFAULT_CONFIGMAP = "optimus-knowledge"
#: a ConfigMap holds at most 1 MiB; the store is refused a little below
MAX_STORE_BYTES = 1_000_000


class ConfigMapConflict(Exception):
    """The ConfigMap changed (or appeared) since it was last read: a write would lose it."""


class ConfigMapApi(Protocol):
    """The three calls the store needs (optimus.kube.client.KubernetesApi; the tests'
    FakeKube)."""

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap, or None when there is none."""
        ...

    async def create_configmap(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create it; ConfigMapConflict when it exists already."""
        ...

    async def replace_configmap(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace it (body's metadata.resourceVersion must be current, else
        ConfigMapConflict)."""
        ...


def knowledge_configmap(store: KnowledgeStore, namespace: str, name: str) -> dict[str, Any]:
    """The ConfigMap manifest that holds `store` (pure)."""
    text = json.dumps(store_to_dict(store), separators=(",", ":"), sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {STORE_LABEL: "true",
                                "app.kubernetes.io/part-of": "optimus"}},
        "data": {STORE_KEY: text},
    }


def store_from_configmap(raw: Mapping[str, Any]) -> KnowledgeStore:
    """The store a ConfigMap holds (pure); StoreFormatError naming the key and what is
    wrong when it holds none this operator can read."""
    data = raw.get("data") or {}
    text = data.get(STORE_KEY) if isinstance(data, Mapping) else None
    if not isinstance(text, str):
        keys = ", ".join(sorted(data)) if isinstance(data, Mapping) and data else "none"
        raise StoreFormatError(f"no data key {STORE_KEY!r} (its keys: {keys}); it is not "
                               "an Optimus knowledge store")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise StoreFormatError(f"data key {STORE_KEY!r} is not JSON ({error})") from None
    try:
        return store_from_dict(parsed)
    except StoreFormatError as error:
        raise StoreFormatError(f"data key {STORE_KEY!r}: {error}") from None


class ConfigMapStore:
    """The store's ConfigMap, as the controller loads and saves it (module docstring)."""

    def __init__(self, api: ConfigMapApi, namespace: str, name: str) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self._version: str | None = None  # resourceVersion of the ConfigMap last read/written
        self._unreadable = False  # it exists but holds nothing we can read: never overwrite
        self._saved: KnowledgeStore = KnowledgeStore()  # what the ConfigMap holds

    @property
    def where(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    async def load(self) -> KnowledgeStore:
        """The stored knowledge; empty (with a warning) when it cannot be read."""
        try:
            raw = await self.api.read_configmap(self.namespace, self.name)
        except Exception as error:  # the API: a round must not fail for the store
            log.warning("could not read the knowledge store %s (%s); starting from an empty "
                        "store (check the operator's RBAC for configmaps get/create/update)",
                        self.where, error)
            self._unreadable = True
            return KnowledgeStore()
        if raw is None:
            self._version, self._unreadable = None, False
            self._saved = KnowledgeStore()
            log.info("no knowledge store %s yet: starting from an empty store", self.where)
            return self._saved
        self._version = str((raw.get("metadata") or {}).get("resourceVersion") or "") or None
        try:
            store = store_from_configmap(raw)
        except StoreFormatError as error:
            self._unreadable = True
            log.warning("the knowledge store %s cannot be read: %s. Starting from an empty "
                        "store and leaving the ConfigMap as it is; fix: delete it "
                        "(kubectl -n %s delete configmap %s) to start a new store, or apply "
                        "one written by `optimus fit store`, or point "
                        "OPTIMUS_KNOWLEDGE_CONFIGMAP at another name",
                        self.where, error, self.namespace, self.name)
            return KnowledgeStore()
        self._unreadable = False
        self._saved = store
        log.info("knowledge store %s loaded: %d kind(s)", self.where, len(store.kinds))
        return store

    async def save(self, store: KnowledgeStore) -> KnowledgeStore:
        """Write `store` when it differs from what the ConfigMap holds. Returns the store
        to keep using: `store`, or the ConfigMap's when someone else changed it (module
        docstring)."""
        if store == self._saved and not self._unreadable:
            return store
        try:
            if self._unreadable:
                return await self._recover(store)
            body = knowledge_configmap(store, self.namespace, self.name)
            size = len(body["data"][STORE_KEY])
            if size > MAX_STORE_BYTES:
                log.warning("the knowledge store has grown to %d bytes, over the %d a "
                            "ConfigMap can hold; it is kept in memory only (delete kinds "
                            "no longer trained from %s)", size, MAX_STORE_BYTES, self.where)
                return store
            if self._version is None:
                written = await self.api.create_configmap(body)
            else:
                body["metadata"]["resourceVersion"] = self._version
                written = await self.api.replace_configmap(body)
        except ConfigMapConflict:
            log.warning("the knowledge store %s was changed by someone else (a seed applied, "
                        "another operator replica); using it from now on", self.where)
            return await self.load()
        except Exception as error:  # a round must not fail for the store: retried next round
            log.warning("could not write the knowledge store %s (%s); retrying next round",
                        self.where, error)
            return store
        self._version = str((written.get("metadata") or {}).get("resourceVersion") or "") or None
        self._saved = store
        return store

    async def _recover(self, store: KnowledgeStore) -> KnowledgeStore:
        """The ConfigMap could not be read before: write once it is gone, adopt it once it
        is readable, else leave it alone."""
        raw = await self.api.read_configmap(self.namespace, self.name)
        if raw is None:
            self._unreadable, self._version = False, None
            self._saved = KnowledgeStore()
            return await self.save(store)
        try:
            loaded = store_from_configmap(raw)
        except StoreFormatError:
            return store  # warned at load; still unreadable
        self._unreadable = False
        self._version = str((raw.get("metadata") or {}).get("resourceVersion") or "") or None
        self._saved = loaded
        log.info("the knowledge store %s is readable again: using it", self.where)
        return loaded

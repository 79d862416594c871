"""The object store: every object by resource and (namespace, name), one global
resourceVersion counter, a bounded history of changes, and the watchers fed from it.

Everything here runs on the server's event loop thread; nothing blocks, so each write is
atomic with respect to the other handlers and the controllers.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import meta

Key = tuple[str, str]  # (group, plural)
Obj = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One write, as watchers and controllers see it."""

    revision: int
    key: Key
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class Watcher:
    key: Key
    namespace: str | None
    labels: list[meta.Requirement]
    fields: list[meta.FieldRequirement]
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        md = obj.get("metadata", {})
        if self.namespace is not None and md.get("namespace") != self.namespace:
            return False
        return meta.labels_match(self.labels, md.get("labels")) and meta.fields_match(
            self.fields, obj
        )

    def translate(self, change: Change) -> tuple[str, Obj] | None:
        """The event this watcher sees: objects moving in or out of its selection are
        reported as ADDED / DELETED, as the real API server does."""
        now, before = self.matches(change.obj), self.matches(change.old)
        if change.type == "DELETED":
            return ("DELETED", change.obj) if now or before else None
        if now and before:
            return ("MODIFIED", change.obj)
        if now:
            return ("ADDED", change.obj)
        if before:
            return ("DELETED", change.obj)
        return None


class Store:
    def __init__(self, history_limit: int = 2000) -> None:
        self.revision = 1
        self._data: dict[Key, dict[tuple[str, str], Obj]] = {}
        self._history: deque[Change] = deque(maxlen=max(history_limit, 1))
        self.compacted = 0  # every change at or below this revision left the history
        self.watchers: set[Watcher] = set()
        self.uids: dict[str, tuple[Key, str, str]] = {}
        self.listeners: list[Callable[[Change], None]] = []

    # ---- reads ------------------------------------------------------------------------
    def get(self, key: Key, namespace: str, name: str) -> Obj | None:
        obj = self._data.get(key, {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def peek(self, key: Key, namespace: str, name: str) -> Obj | None:
        """The stored object itself, not a copy: read-only use by controllers."""
        return self._data.get(key, {}).get((namespace, name))

    def items(self, key: Key, namespace: str | None = None) -> Iterator[Obj]:
        """Stored objects (not copies), in namespace/name order."""
        bucket = self._data.get(key, {})
        for (ns, _name), obj in sorted(bucket.items()):
            if namespace is None or ns == namespace:
                yield obj

    def resource_keys(self) -> list[Key]:
        return list(self._data)

    def exists_uid(self, uid: str) -> bool:
        return uid in self.uids

    # ---- writes -----------------------------------------------------------------------
    def _next(self) -> int:
        self.revision += 1
        return self.revision

    def write(self, key: Key, obj: Obj, old: Obj | None) -> Obj:
        """Store `obj` (ADDED when `old` is None, else MODIFIED) with a new resourceVersion."""
        revision = self._next()
        obj = copy.deepcopy(obj)
        md = obj["metadata"]
        md["resourceVersion"] = str(revision)
        ident = (md.get("namespace", ""), md["name"])
        self._data.setdefault(key, {})[ident] = obj
        self.uids[md["uid"]] = (key, ident[0], ident[1])
        self._emit(Change(revision, key, "MODIFIED" if old else "ADDED", obj, old))
        return copy.deepcopy(obj)

    def remove(self, key: Key, namespace: str, name: str) -> Obj | None:
        old = self._data.get(key, {}).pop((namespace, name), None)
        if old is None:
            return None
        revision = self._next()
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(revision)
        self.uids.pop(old["metadata"].get("uid", ""), None)
        self._emit(Change(revision, key, "DELETED", gone, old))
        return copy.deepcopy(gone)

    def drop_resource(self, key: Key) -> None:
        for ns, name in list(self._data.get(key, {})):
            self.remove(key, ns, name)
        self._data.pop(key, None)
        for watcher in list(self.watchers):
            if watcher.key == key:
                watcher.queue.put_nowait(None)

    def _emit(self, change: Change) -> None:
        if len(self._history) == self._history.maxlen:
            self.compacted = self._history[0].revision
        self._history.append(change)
        for watcher in list(self.watchers):
            if watcher.key == change.key:
                watcher.queue.put_nowait(change)
        for listener in list(self.listeners):
            listener(change)

    # ---- watch ------------------------------------------------------------------------
    def since(self, key: Key, revision: int) -> list[Change] | None:
        """Changes of one resource after `revision`; None when they left the history."""
        if revision < self.compacted:
            return None
        return [c for c in self._history if c.key == key and c.revision > revision]

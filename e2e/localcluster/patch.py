"""The four PATCH flavours of the Kubernetes API over plain JSON values.

- JSON merge patch (RFC 7386),
- JSON patch (RFC 6902; a failing `test` is reported by the caller as 422),
- strategic merge patch, approximated: a merge patch whose well-known lists (containers,
  env, ports, volumes, volumeMounts, conditions...) merge item by key, `$patch` directives
  honoured for `replace`/`delete`, other `$` directives dropped,
- server-side apply, approximated: the applied configuration is merged in (lists replaced)
  and the fields the same field manager applied last time but no longer applies are removed.
"""

from __future__ import annotations

import copy
from typing import Any

JSON = Any


class PatchError(Exception):
    """A patch that cannot be applied; `test_failed` marks a failing JSON-patch `test`."""

    def __init__(self, message: str, test_failed: bool = False) -> None:
        super().__init__(message)
        self.test_failed = test_failed


def merge_patch(target: JSON, patch: JSON) -> JSON:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---- JSON patch -----------------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: JSON, parts: list[str]) -> JSON:
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, dict):
            if part not in cur:
                raise PatchError(f"doc is missing path: {'/' + '/'.join(parts)}")
            cur = cur[part]
        elif isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError) as exc:
                raise PatchError(f"doc is missing path: {'/' + '/'.join(parts)}") from exc
        else:
            raise PatchError(f"doc is missing path: {'/' + '/'.join(parts)}")
    return cur


def _get(doc: JSON, parts: list[str]) -> JSON:
    if not parts:
        return doc
    parent = _parent(doc, parts)
    key = parts[-1]
    try:
        return parent[int(key)] if isinstance(parent, list) else parent[key]
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise PatchError(f"doc is missing path: {'/' + '/'.join(parts)}") from exc


def _remove(doc: JSON, parts: list[str]) -> JSON:
    parent = _parent(doc, parts)
    key = parts[-1]
    try:
        if isinstance(parent, list):
            return parent.pop(int(key))
        return parent.pop(key)
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise PatchError(f"unable to remove nonexistent key: {key}") from exc


def _add(doc: JSON, parts: list[str], value: JSON) -> JSON:
    if not parts:
        return copy.deepcopy(value)
    parent = _parent(doc, parts)
    key = parts[-1]
    if isinstance(parent, list):
        if key == "-":
            parent.append(copy.deepcopy(value))
        else:
            try:
                index = int(key)
            except ValueError as exc:
                raise PatchError(f"invalid array index {key!r}") from exc
            if index > len(parent) or index < 0:
                raise PatchError(f"add operation index out of bounds: {index}")
            parent.insert(index, copy.deepcopy(value))
    elif isinstance(parent, dict):
        parent[key] = copy.deepcopy(value)
    else:
        raise PatchError(f"doc is missing path: {'/' + '/'.join(parts)}")
    return doc


def json_patch(target: JSON, operations: JSON) -> JSON:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation: {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, op.get("value"))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            if not parts:
                doc = copy.deepcopy(op.get("value"))
            else:
                parent = _parent(doc, parts)
                key = parts[-1]
                if isinstance(parent, list):
                    parent[int(key)] = copy.deepcopy(op.get("value"))
                else:
                    parent[key] = copy.deepcopy(op.get("value"))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _get(doc, source) if kind == "copy" else _remove(doc, source)
            doc = _add(doc, parts, value)
        elif kind == "test":
            try:
                actual = _get(doc, parts)
            except PatchError as exc:
                raise PatchError(f"testing value {op['path']} failed: {exc}", True) from exc
            if actual != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed", True)
        else:
            raise PatchError(f"unexpected JSON patch operation {kind!r}")
    return doc


# ---- strategic merge patch ------------------------------------------------------------

# Lists the real API server merges item by item, with their merge keys (by field name).
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "conditions": ("type",),
    "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey",),
}
MERGED_PRIMITIVE_LISTS = {"finalizers"}


def _merge_key(field: str, items: list[Any]) -> str | None:
    for key in MERGE_KEYS.get(field, ()):
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def _strip_directives(value: JSON) -> JSON:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def strategic_merge_patch(target: JSON, patch: JSON, field: str = "") -> JSON:
    if isinstance(patch, dict):
        directive = patch.get("$patch")
        if directive == "delete":
            return None
        if directive == "replace":
            return _strip_directives(patch)
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            if value is None:
                result.pop(key, None)
                continue
            merged = strategic_merge_patch(result.get(key), value, key)
            if merged is None and isinstance(value, dict) and value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = merged
        return result
    if isinstance(patch, list) and isinstance(target, list):
        if field in MERGED_PRIMITIVE_LISTS:
            return list(target) + [v for v in patch if v not in target]
        key = _merge_key(field, [p for p in patch if not (isinstance(p, dict) and "$patch" in p
                                                         and len(p) == 1)])
        if key and all(isinstance(t, dict) and key in t for t in target):
            items: list[Any] = copy.deepcopy(target)
            for item in patch:
                index = next((i for i, t in enumerate(items) if t.get(key) == item.get(key)), None)
                if item.get("$patch") == "delete":
                    if index is not None:
                        items.pop(index)
                elif index is None:
                    items.append(_strip_directives(item))
                else:
                    items[index] = strategic_merge_patch(items[index], item, "")
            return items
    return _strip_directives(patch)


# ---- server-side apply ----------------------------------------------------------------

def remove_unapplied(current: JSON, previous: JSON, applied: JSON) -> JSON:
    """Drop from `current` the fields `previous` (the manager's last apply) set but
    `applied` (its new apply) no longer sets."""
    if not (isinstance(current, dict) and isinstance(previous, dict)):
        return current
    result = dict(current)
    applied = applied if isinstance(applied, dict) else {}
    for key, old in previous.items():
        if key not in applied:
            result.pop(key, None)
        elif isinstance(old, dict) and key in result:
            result[key] = remove_unapplied(result[key], old, applied[key])
    return result


def apply_merge(current: JSON, applied: JSON) -> JSON:
    """Merge an applied configuration in: maps merge, lists and scalars are replaced."""
    if isinstance(applied, dict) and isinstance(current, dict):
        result = copy.deepcopy(current)
        for key, value in applied.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = apply_merge(result.get(key), value)
        return result
    return copy.deepcopy(applied)

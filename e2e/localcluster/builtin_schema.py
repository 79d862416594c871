"""Decoding checks of built-in objects, as the real API server's typed decoder does them:
field types, and unknown fields (dropped, or a 400 with `fieldValidation=Strict`).

The schemas are Kubernetes' own OpenAPI definitions as JSON Schema, shipped by the
`kubernetes-validate` package (strict variant: undeclared fields are errors); one compiled
validator per kind is cached. Without that package the checks are skipped.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = (1, 37)
_UNEXPECTED = re.compile(r"'([^']+)'")


@dataclass(frozen=True)
class Findings:
    type_errors: list[str]  # "field: message", as the decoder would refuse them
    unknown: list[list[Any]]  # paths of undeclared fields
    required: list[str]  # fields the schema requires that are missing


def _schema_dir() -> Any:
    try:
        root = importlib.resources.files("kubernetes_validate").joinpath(
            "kubernetes-json-schema")
    except ModuleNotFoundError:
        return None
    best = None
    for entry in root.iterdir():
        match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", entry.name)
        if match and (int(match[1]), int(match[2])) <= SCHEMA_VERSION and (
                best is None or (int(match[1]), int(match[2])) > best[0]):
            best = ((int(match[1]), int(match[2])), entry)
    return best[1] if best else None


@functools.cache
def _registry_and_dir() -> tuple[Any, Any] | None:
    directory = _schema_dir()
    if directory is None:
        return None
    try:
        from referencing import Registry, Resource
    except ModuleNotFoundError:
        return None
    definitions = json.loads(directory.joinpath("_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry(), directory


@functools.cache
def _validator(kind: str, group: str, version: str) -> Any:
    loaded = _registry_and_dir()
    if loaded is None:
        return None
    registry, directory = loaded
    prefix = f"{group.split('.')[0]}-" if group else ""
    path = directory.joinpath(f"{kind.lower()}-{prefix}{version}.json")
    if not path.is_file():
        return None
    import jsonschema
    from referencing import Resource

    schema = json.loads(path.read_text())
    return jsonschema.validators.Draft202012Validator(
        schema, registry=Resource.from_contents(schema) @ registry)


def field_path(parts: list[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def check(obj: dict[str, Any], kind: str, group: str, version: str) -> Findings | None:
    """What the decoder would say about `obj`; None when no schema is known for the kind."""
    validator = _validator(kind, group, version)
    if validator is None:
        return None
    type_errors: list[str] = []
    unknown: list[list[Any]] = []
    required: list[str] = []
    for error in validator.iter_errors(obj):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties":
            for name in _UNEXPECTED.findall(error.message.split("(", 1)[-1]):
                unknown.append([*path, name])
        elif error.validator == "required":
            missing = _UNEXPECTED.findall(error.message)
            required += [field_path([*path, m]) for m in missing[:1]]
        elif error.validator in ("type", "format"):
            expected = error.schema.get("type") if isinstance(error.schema, dict) else None
            if isinstance(expected, list):
                expected = " or ".join(t for t in expected if t != "null")
            actual = type(error.instance).__name__
            actual = {"str": "string", "int": "number", "float": "number", "bool": "bool",
                      "list": "array", "dict": "object", "NoneType": "null"}.get(actual, actual)
            type_errors.append(f"json: cannot unmarshal {actual} into Go struct field "
                               f"{field_path(path)} of type {expected}")
        elif error.validator not in ("enum", "oneOf", "anyOf", "allOf"):
            type_errors.append(f"{field_path(path)}: {error.message}")
    return Findings(type_errors, unknown, required)


def drop(obj: Any, path: list[Any]) -> None:
    """Remove the field at `path` (unknown fields are dropped like the decoder does)."""
    for part in path[:-1]:
        try:
            obj = obj[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(obj, dict):
        obj.pop(path[-1], None)

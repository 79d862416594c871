"""Structural-schema handling of custom objects, as the apiextensions server does it:
defaulting, pruning of unknown fields, and validation with the real server's messages.

Covered: type (with nullable, x-kubernetes-int-or-string), properties, additionalProperties,
items, required, enum, minimum/maximum (and exclusive), minLength/maxLength, pattern,
minItems/maxItems, default, x-kubernetes-preserve-unknown-fields, and
x-kubernetes-validations rules in the CEL subset `cel.py` evaluates. Not covered: format,
allOf/anyOf/oneOf/not, uniqueItems, the rest of CEL (see e2e/README.md).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from . import cel
from .errors import Cause

ROOT_FIELDS = {"apiVersion", "kind", "metadata"}


def _go_value(value: Any) -> str:
    """How the API server prints an invalid value (Go's %v with strings quoted)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(json.dumps(value, separators=(",", ":")))
    return str(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, expected: str) -> bool:
    actual = _type_name(value)
    if expected == "number":
        return actual in ("number", "integer")
    return actual == expected


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in `default`s of absent properties, recursively; drop non-nullable nulls."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            elif key in value and value[key] is None and not sub.get("nullable"):
                if "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                else:
                    del value[key]
        for key, child in list(value.items()):
            sub = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None and child is not None:
                value[key] = apply_defaults(sub, child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def prune(schema: dict[str, Any], value: Any, path: str = "", root: bool = True) -> list[str]:
    """Remove fields the schema does not declare; return their paths."""
    unknown: list[str] = []
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get(
            "x-kubernetes-embedded-resource"
        ):
            for key, child in value.items():
                sub = (schema.get("properties") or {}).get(key)
                if sub is not None:
                    unknown += prune(sub, child, _join(path, key), False)
            return unknown
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in list(value):
            if root and key in ROOT_FIELDS:
                continue
            if key in props:
                unknown += prune(props[key], value[key], _join(path, key), False)
            elif isinstance(extra, dict):
                unknown += prune(extra, value[key], _join(path, key), False)
            elif extra is True:
                continue
            else:
                unknown.append(_join(path, key))
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            unknown += prune(schema["items"], item, f"{path}[{index}]", False)
    return unknown


def validate(schema: dict[str, Any], value: Any, path: str = "") -> list[Cause]:
    causes: list[Cause] = []
    if value is None and schema.get("nullable"):
        return causes
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            causes.append(Cause(path, f'Invalid value: "{_type_name(value)}": {path} in body must '
                                      f'be of type integer or string: "{_type_name(value)}"'))
            return causes
    elif expected and not _type_ok(value, expected):
        actual = _type_name(value)
        causes.append(Cause(path, f'Invalid value: "{actual}": {path} in body must be of type '
                                  f'{expected}: "{actual}"'))
        return causes
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_go_value(v) for v in schema["enum"])
        causes.append(Cause(path, f"Unsupported value: {_go_value(value)}: supported values: "
                                  f"{supported}", "FieldValueNotSupported"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = _go_value(value)
        if "minimum" in schema:
            low = schema["minimum"]
            if schema.get("exclusiveMinimum") and value <= low:
                causes.append(Cause(path, f"Invalid value: {shown}: {path} in body should be "
                                          f"greater than {_go_value(low)}"))
            elif value < low:
                causes.append(Cause(path, f"Invalid value: {shown}: {path} in body should be "
                                          f"greater than or equal to {_go_value(low)}"))
        if "maximum" in schema:
            high = schema["maximum"]
            if schema.get("exclusiveMaximum") and value >= high:
                causes.append(Cause(path, f"Invalid value: {shown}: {path} in body should be "
                                          f"less than {_go_value(high)}"))
            elif value > high:
                causes.append(Cause(path, f"Invalid value: {shown}: {path} in body should be "
                                          f"less than or equal to {_go_value(high)}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            causes.append(Cause(path, f"Invalid value: {_go_value(value)}: {path} in body should "
                                      f"be at least {schema['minLength']} chars long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(Cause(path, f"Too long: may not be more than {schema['maxLength']} "
                                      "bytes", "FieldValueTooLong"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            causes.append(Cause(path, f"Invalid value: {_go_value(value)}: {path} in body should "
                                      f"match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            causes.append(Cause(path, f"Invalid value: {len(value)}: {path} in body should have "
                                      f"at least {schema['minItems']} items"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(Cause(path, f"Too many: {len(value)}: must have at most "
                                      f"{schema['maxItems']} items", "FieldValueTooMany"))
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                causes += validate(schema["items"], item, f"{path}[{index}]")
    if isinstance(value, dict):
        for key in schema.get("required") or []:
            if key not in value:
                causes.append(Cause(_join(path, key), "Required value", "FieldValueRequired"))
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            if not path and key in ROOT_FIELDS:
                continue
            if key in props:
                causes += validate(props[key], child, _join(path, key))
            elif isinstance(extra, dict):
                causes += validate(extra, child, _join(path, key))
    if not causes:
        for rule in schema.get("x-kubernetes-validations") or []:
            cause = _check_rule(rule, value, path)
            if cause:
                causes.append(cause)
    return causes


def _check_rule(rule: dict[str, Any], value: Any, path: str) -> Cause | None:
    """One x-kubernetes-validations rule; None when it holds or cannot be evaluated here."""
    try:
        if cel.holds(rule.get("rule", ""), value):
            return None
    except (cel.Unsupported, cel.EvalError):
        return None
    message = rule.get("message") or f"failed rule: {rule.get('rule')}"
    field = path + rule.get("fieldPath", "") if rule.get("fieldPath") else path
    return Cause(field, f'Invalid value: "{_type_name(value)}": {message}')

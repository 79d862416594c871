"""Object metadata rules shared by every resource: timestamps, name and label validation,
label and field selectors. Pure functions over plain dicts (the API server's JSON)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from .errors import Cause, bad_request

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = DNS1123_LABEL + r"(\." + DNS1123_LABEL + r")*"
DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"


def now() -> str:
    """RFC 3339 with second precision, as the API server writes timestamps."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)


def age(timestamp: str | None) -> str:
    """kubectl's short age: 5s, 3m, 2h, 4d."""
    if not timestamp:
        return "<unknown>"
    seconds = int((dt.datetime.now(dt.UTC) - parse_time(timestamp)).total_seconds())
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600 * 3:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def dns1123_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not re.fullmatch(DNS1123_LABEL, value):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            f"'123-abc', regex used for validation is '{DNS1123_LABEL}')"
        )
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not re.fullmatch(DNS1123_SUBDOMAIN, value):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'example.com', regex used for validation is '{DNS1123_SUBDOMAIN}')"
        )
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not re.fullmatch(DNS1035_LABEL, value):
        errs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character (e.g. "
            f"'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL}')"
        )
    return errs


NameValidator = Callable[[str], list[str]]


def _qualified_name_errors(key: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    errs = []
    if "/" in key and (not prefix or dns1123_subdomain_errors(prefix)):
        errs.append("prefix part must be a lowercase RFC 1123 subdomain")
    if len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not re.fullmatch(_QUALIFIED_NAME, name or ""):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character"
        )
    return errs


def metadata_causes(meta: dict[str, Any], name_rule: NameValidator) -> list[Cause]:
    """Validation of metadata.name, labels and annotations like the real API server."""
    causes: list[Cause] = []
    name = meta.get("name", "")
    if not name:
        if not meta.get("generateName"):
            causes.append(Cause("metadata.name", "Required value: name or generateName is required",
                                "FieldValueRequired"))
    else:
        for err in name_rule(name):
            causes.append(Cause("metadata.name", f'Invalid value: "{name}": {err}'))
    for key, value in (meta.get("labels") or {}).items():
        for err in _qualified_name_errors(key):
            causes.append(Cause("metadata.labels", f'Invalid value: "{key}": {err}'))
        if not isinstance(value, str):
            causes.append(Cause(f"metadata.labels.{key}", "Invalid value: must be a string"))
            continue
        if len(value) > 63:
            causes.append(Cause("metadata.labels",
                                f'Invalid value: "{value}": must be no more than 63 characters'))
        elif not re.fullmatch(_LABEL_VALUE, value):
            causes.append(Cause(
                "metadata.labels",
                f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character",
            ))
    for key in (meta.get("annotations") or {}):
        for err in _qualified_name_errors(key):
            causes.append(Cause("metadata.annotations", f'Invalid value: "{key}": {err}'))
    return causes


# ---- label selectors ------------------------------------------------------------------

Requirement = tuple[str, str, tuple[str, ...]]  # key, operator, values

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_label_selector(text: str) -> list[Requirement]:
    reqs: list[Requirement] = []
    for raw in _split_top(text or ""):
        part = raw.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = part.partition(op)
                reqs.append((key.strip(), "!=" if op == "!=" else "=", (value.strip(),)))
                break
        else:
            match = _SET_RE.match(part)
            if not match:
                raise bad_request(f"unable to parse requirement: {part!r}")
            neg, key, op, values = match.groups()
            if op:
                vals = tuple(v.strip() for v in values.split(",") if v.strip())
                reqs.append((key, op, vals))
            else:
                reqs.append((key, "!" if neg else "exists", ()))
    return reqs


def labels_match(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        if op == "=" and value != values[0]:
            return False
        if op == "!=" and value == values[0]:
            return False
        if op == "in" and value not in values:
            return False
        if op == "notin" and present and value in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


def selector_from_label_selector(selector: dict[str, Any] | None) -> list[Requirement]:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as requirements."""
    reqs: list[Requirement] = []
    if not selector:
        return reqs
    for key, value in (selector.get("matchLabels") or {}).items():
        reqs.append((key, "=", (value,)))
    for expr in selector.get("matchExpressions") or []:
        ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
        op = ops[expr["operator"]]
        reqs.append((expr["key"], op, tuple(expr.get("values") or ())))
    return reqs


# ---- field selectors ------------------------------------------------------------------

FieldRequirement = tuple[str, bool, str]  # path, equal?, value

COMMON_FIELDS = ("metadata.name", "metadata.namespace")
FIELDS_BY_RESOURCE: dict[str, tuple[str, ...]] = {
    "pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "events": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    "secrets": ("type",),
    "nodes": ("spec.unschedulable",),
    "namespaces": ("status.phase",),
}


def parse_field_selector(text: str, plural: str) -> list[FieldRequirement]:
    reqs: list[FieldRequirement] = []
    allowed = COMMON_FIELDS + FIELDS_BY_RESOURCE.get(plural, ())
    for raw in (text or "").split(","):
        part = raw.strip()
        if not part:
            continue
        if "!=" in part:
            key, _, value = part.partition("!=")
            equal = False
        else:
            key, _, value = part.partition("==") if "==" in part else part.partition("=")
            equal = True
        key = key.strip()
        if key not in allowed:
            raise bad_request(f'field label not supported: {key}')
        reqs.append((key, equal, value.strip()))
    return reqs


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def fields_match(reqs: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all((field_value(obj, path) == value) == equal for path, equal, value in reqs)

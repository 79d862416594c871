"""Server-side printing: the `meta.k8s.io/v1 Table` kubectl asks for with
`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, with the columns a real server
prints for the built-in types and a CRD's additionalPrinterColumns for custom objects."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from . import meta
from .resources import ResourceType

Obj = dict[str, Any]
Column = tuple[str, str, int, Callable[[Obj], Any]]  # name, type, priority, cell


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _age(obj: Obj) -> str:
    return meta.age(obj["metadata"].get("creationTimestamp"))


def pod_status(obj: Obj) -> str:
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            term = state["terminated"]
            reason = term.get("reason") or f"ExitCode:{term.get('exitCode')}"
    if reason == "Pending" and obj.get("spec", {}).get("nodeName"):
        reason = "ContainerCreating"
    return str(reason)


def _pod_ready(obj: Obj) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _restarts(obj: Obj) -> int:
    return sum(int(s.get("restartCount", 0))
               for s in (obj.get("status") or {}).get("containerStatuses") or [])


def _node_status(obj: Obj) -> str:
    ready = next((c for c in (obj.get("status") or {}).get("conditions") or []
                  if c.get("type") == "Ready"), None)
    text = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _ports(obj: Obj) -> str:
    ports = (obj.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


BUILTIN_COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        ("Name", "string", 0, _name), ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, pod_status), ("Restarts", "string", 0, _restarts),
        ("Age", "string", 0, _age),
        ("IP", "string", 1, lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
        ("Node", "string", 1, lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
    ],
    ("", "nodes"): [
        ("Name", "string", 0, _name), ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, lambda o: "<none>"), ("Age", "string", 0, _age),
        ("Version", "string", 0, lambda o: (((o.get("status") or {}).get("nodeInfo") or {})
                                            .get("kubeletVersion", ""))),
    ],
    ("", "namespaces"): [
        ("Name", "string", 0, _name),
        ("Status", "string", 0, lambda o: (o.get("status") or {}).get("phase", "")),
        ("Age", "string", 0, _age),
    ],
    ("", "services"): [
        ("Name", "string", 0, _name),
        ("Type", "string", 0, lambda o: (o.get("spec") or {}).get("type", "")),
        ("Cluster-IP", "string", 0, lambda o: (o.get("spec") or {}).get("clusterIP", "")),
        ("External-IP", "string", 0, lambda o: "<none>"),
        ("Port(s)", "string", 0, _ports), ("Age", "string", 0, _age),
    ],
    ("", "configmaps"): [
        ("Name", "string", 0, _name),
        ("Data", "integer", 0, lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        ("Age", "string", 0, _age),
    ],
    ("", "secrets"): [
        ("Name", "string", 0, _name), ("Type", "string", 0, lambda o: o.get("type", "")),
        ("Data", "integer", 0, lambda o: len(o.get("data") or {})), ("Age", "string", 0, _age),
    ],
    ("", "events"): [
        ("Last Seen", "string", 0, lambda o: meta.age(o.get("lastTimestamp") or o.get(
            "eventTime") or o["metadata"].get("creationTimestamp"))),
        ("Type", "string", 0, lambda o: o.get("type", "")),
        ("Reason", "string", 0, lambda o: o.get("reason", "")),
        ("Object", "string", 0, lambda o: f"{(o.get('involvedObject') or {}).get('kind', '')}"
                                          f"/{(o.get('involvedObject') or {}).get('name', '')}"
                                          .lower()),
        ("Message", "string", 0, lambda o: o.get("message", "")),
    ],
    ("apps", "deployments"): [
        ("Name", "string", 0, _name),
        ("Ready", "string", 0, lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                                         f"{(o.get('spec') or {}).get('replicas', 1)}"),
        ("Up-to-date", "integer", 0, lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
        ("Available", "integer", 0,
         lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
        ("Age", "string", 0, _age),
    ],
    ("apiextensions.k8s.io", "customresourcedefinitions"): [
        ("Name", "string", 0, _name),
        ("Created At", "date", 0, lambda o: o["metadata"].get("creationTimestamp", "")),
    ],
}


# ---- a small JSONPath for printer columns: .a.b, [0], [*], [?(@.k=="v")] ---------------
_TOKEN = re.compile(r"\.([A-Za-z0-9_\-/]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*"
                    r"[\"']([^\"']*)[\"']\)\]|\['([^']+)'\]")


def jsonpath(obj: Any, path: str) -> list[Any]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.removeprefix("$")
    values = [obj]
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if not match:
            return []
        position = match.end()
        key, index, fkey, fval, quoted = match.groups()
        key = key or quoted
        nxt: list[Any] = []
        for value in values:
            if key is not None and isinstance(value, dict) and key in value:
                nxt.append(value[key])
            elif index is not None and isinstance(value, list):
                if index == "*":
                    nxt.extend(value)
                elif int(index) < len(value):
                    nxt.append(value[int(index)])
            elif fkey is not None and isinstance(value, list):
                for item in value:
                    found = jsonpath(item, "." + fkey)
                    if found and str(found[0]) == fval:
                        nxt.append(item)
        values = nxt
    return values


def _cell(column: dict[str, Any], obj: Obj) -> Any:
    found = jsonpath(obj, column.get("jsonPath", ""))
    if not found:
        return None
    value = found[0]
    kind = column.get("type", "string")
    if kind == "date" and isinstance(value, str):
        return meta.age(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


def _cell_of(column: dict[str, Any]) -> Callable[[Obj], Any]:
    return lambda obj: _cell(column, obj)


def columns_for(rt: ResourceType, version: str) -> list[Column]:
    if rt.custom:
        printer = rt.printer_columns.get(version) or []
        if not printer:
            return [("Name", "string", 0, _name), ("Age", "date", 0, _age)]
        cols: list[Column] = [("Name", "string", 0, _name)]
        for column in printer:
            cols.append((column["name"], column.get("type", "string"),
                         int(column.get("priority", 0)), _cell_of(column)))
        return cols
    return BUILTIN_COLUMNS.get(rt.key, [("Name", "string", 0, _name), ("Age", "string", 0, _age)])


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"]}


def table(rt: ResourceType, version: str, objs: list[Obj], resource_version: str,
          include: str = "Metadata", with_columns: bool = True) -> Obj:
    cols = columns_for(rt, version)
    rows = []
    for obj in objs:
        row: Obj = {"cells": [fn(obj) for _n, _t, _p, fn in cols]}
        partial = _row_object(obj, include)
        if partial is not None:
            row["object"] = partial
        rows.append(row)
    result: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"resourceVersion": resource_version}, "rows": rows}
    if with_columns:
        result["columnDefinitions"] = [
            {"name": n, "type": "string" if t == "date" else t, "format": "name" if n == "Name"
             else "", "description": n, "priority": p} for n, t, p, _fn in cols]
    return result

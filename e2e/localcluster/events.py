"""core/v1 Events written by the control plane (scheduler, kubelet), as kubectl shows them."""

from __future__ import annotations

import contextlib
from typing import Any

from . import meta
from .api import Api
from .errors import ApiError


def record_event(api: Api, obj: dict[str, Any], kind: str, reason: str, message: str,
                 component: str, host: str = "") -> None:
    rt = api.registry.by_key(("", "events"))
    if rt is None:
        return
    md = obj["metadata"]
    namespace = md.get("namespace") or "default"
    when = meta.now()
    source: dict[str, Any] = {"component": component}
    if host:
        source["host"] = host
    event = {
        "metadata": {"generateName": f"{md['name']}."},
        "involvedObject": {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""),
                           "namespace": md.get("namespace", ""), "name": md["name"],
                           "uid": md.get("uid", ""), "resourceVersion": md.get(
                               "resourceVersion", "")},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "firstTimestamp": when, "lastTimestamp": when, "source": source,
        "reportingComponent": component, "reportingInstance": host,
    }
    with contextlib.suppress(ApiError):
        api.create(rt, "v1", namespace, event)

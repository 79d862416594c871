"""Controllers of the control plane besides the scheduler and the kubelet:
- garbage collection: dependents whose ownerReferences all point to deleted uids are
  deleted (background propagation);
- namespace lifecycle: a terminating namespace is emptied, then removed;
- endpoints: each Service with a selector gets an Endpoints object listing its pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import logging
from typing import Any

from . import aio, meta
from .api import Api
from .errors import ApiError
from .store import Change

log = logging.getLogger("localcluster.controllers")
MIN_ROUND_S = 0.05


class Controllers:
    def __init__(self, api: Api, interval_s: float = 1.0, event_ttl_s: float = 3600.0) -> None:
        self.api = api
        self.interval_s = interval_s
        self.event_ttl_s = event_ttl_s
        self._wake = asyncio.Event()
        api.store.listeners.append(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.type == "DELETED" or change.key in (("", "pods"), ("", "services"),
                                                      ("", "namespaces")):
            self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            for step in (self.collect_garbage, self.finish_namespaces, self.sync_endpoints,
                         self.expire_events):
                try:
                    step()
                except Exception:
                    log.exception("controller step %s failed", step.__name__)
            await asyncio.sleep(MIN_ROUND_S)  # batch bursts of changes into one round
            await aio.wait_event(self._wake, self.interval_s)

    def collect_garbage(self) -> None:
        store = self.api.store
        for key in store.resource_keys():
            rt = self.api.registry.by_key(key)
            if rt is None:
                continue
            for obj in list(store.items(key)):
                md = obj["metadata"]
                refs = md.get("ownerReferences") or []
                if not refs or md.get("deletionTimestamp"):
                    continue
                if any(store.exists_uid(ref.get("uid", "")) for ref in refs):
                    continue
                with contextlib.suppress(ApiError):
                    self.api.delete(rt, rt.versions[0], md.get("namespace", ""), md["name"],
                                    {"propagationPolicy": "Background"})

    def finish_namespaces(self) -> None:
        store = self.api.store
        ns_rt = self.api.registry.by_key(("", "namespaces"))
        assert ns_rt is not None
        for namespace in list(store.items(("", "namespaces"))):
            if not namespace["metadata"].get("deletionTimestamp"):
                continue
            name = namespace["metadata"]["name"]
            left = 0
            for key in store.resource_keys():
                rt = self.api.registry.by_key(key)
                if rt is None or not rt.namespaced:
                    continue
                for obj in list(store.items(key, name)):
                    left += 1
                    if not obj["metadata"].get("deletionTimestamp"):
                        with contextlib.suppress(ApiError):
                            self.api.delete(rt, rt.versions[0], name, obj["metadata"]["name"])
            if left == 0 and not namespace["metadata"].get("finalizers"):
                store.remove(ns_rt.key, "", name)

    def expire_events(self) -> None:
        """Events live an hour, as with the API server's default --event-ttl."""
        store = self.api.store
        now = dt.datetime.now(dt.UTC)
        for key in (("", "events"), ("events.k8s.io", "events")):
            for event in list(store.items(key)):
                created = event["metadata"].get("creationTimestamp")
                if created and (now - meta.parse_time(created)).total_seconds() > self.event_ttl_s:
                    store.remove(key, event["metadata"].get("namespace", ""),
                                 event["metadata"]["name"])

    def sync_endpoints(self) -> None:
        store = self.api.store
        ep_rt = self.api.registry.by_key(("", "endpoints"))
        assert ep_rt is not None
        for service in list(store.items(("", "services"))):
            spec = service.get("spec") or {}
            selector = spec.get("selector") or {}
            if not selector:
                continue
            md = service["metadata"]
            reqs: list[meta.Requirement] = [(k, "=", (v,)) for k, v in selector.items()]
            ready: list[dict[str, Any]] = []
            not_ready: list[dict[str, Any]] = []
            for pod in store.items(("", "pods"), md["namespace"]):
                status = pod.get("status") or {}
                if not status.get("podIP") or not meta.labels_match(
                        reqs, pod["metadata"].get("labels")):
                    continue
                address: dict[str, Any] = {
                    "ip": status["podIP"], "nodeName": (pod.get("spec") or {}).get("nodeName"),
                    "targetRef": {"kind": "Pod", "namespace": md["namespace"],
                                  "name": pod["metadata"]["name"],
                                  "uid": pod["metadata"]["uid"]}}
                if (pod.get("spec") or {}).get("hostname"):
                    address["hostname"] = pod["spec"]["hostname"]
                is_ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                               for c in status.get("conditions") or [])
                (ready if is_ready or spec.get("publishNotReadyAddresses") else not_ready
                 ).append(address)
            subset: dict[str, Any] = {"ports": [
                {k: v for k, v in (("name", p.get("name")), ("port", _target(p)),
                                   ("protocol", p.get("protocol", "TCP"))) if v is not None}
                for p in spec.get("ports") or []]}
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            subsets = [subset] if (ready or not_ready) else []
            current = store.peek(ep_rt.key, md["namespace"], md["name"])
            if current is None:
                with contextlib.suppress(ApiError):
                    self.api.create(ep_rt, "v1", md["namespace"], {
                        "metadata": {"name": md["name"], "labels": md.get("labels") or {}},
                        "subsets": subsets})
            elif current.get("subsets", []) != subsets:
                new = copy.deepcopy(current)
                new["subsets"] = subsets
                store.write(ep_rt.key, new, current)


def _target(port: dict[str, Any]) -> Any:
    target = port.get("targetPort", port.get("port"))
    return target if isinstance(target, int) else port.get("port")

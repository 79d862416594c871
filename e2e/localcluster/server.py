"""The HTTP face of the local API server (aiohttp): routing of Kubernetes REST paths,
content negotiation (JSON, YAML, Table), list and chunked watch streams, and the pod
subresources (binding, eviction, log) and the scale subresource."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from pathlib import Path
from typing import Any, Protocol

import yaml
from aiohttp import web

from . import aio, discovery, errors, meta, patch, protobuf, tables
from .api import Api
from .errors import ApiError
from .resources import ResourceType
from .store import Change, Watcher

log = logging.getLogger("localcluster.server")

BOOKMARK_INTERVAL_S = 5.0
JSON_TYPE = "application/json"


class LogSource(Protocol):
    def log_path(self, namespace: str, name: str, container: str, previous: bool) -> Path: ...
    def container_running(self, namespace: str, name: str, container: str) -> bool: ...


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type=JSON_TYPE)


def _status_ok(code: int = 200, details: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success", "code": code}
    if details:
        body["details"] = details
    return _json(body, code)


class Server:
    def __init__(self, api: Api, logs: LogSource | None = None) -> None:
        self.api = api
        self.logs = logs
        self.address = "127.0.0.1:0"
        self.closing = asyncio.Event()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    # ---- entry ------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return _json(exc.body(), exc.code)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug here must still answer like a server would
            log.exception("internal error on %s %s", request.method, request.path)
            return _json(ApiError(500, "InternalError", f"internal error: {exc}").body(), 500)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        registry = self.api.registry
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/version":
            return _json(discovery.KUBE_VERSION)
        if path == "/api":
            return _json(discovery.core_versions(self.address))
        if path == "/apis":
            return _json(discovery.group_list(registry))
        if parts[:2] == ["openapi", "v3"]:
            return self._openapi(parts[2:])
        if parts == ["openapi", "v2"]:
            return web.Response(body=protobuf.empty_openapi_v2(),
                                content_type="application/com.github.proto-openapi.spec.v2.v1.0"
                                             "+protobuf")
        if parts and parts[0] == "openapi":
            raise errors.not_found("openapi", "", "/".join(parts[1:]))
        if parts and parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                doc = discovery.group(registry, parts[1])
                if doc is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested "
                                                    "resource")
                return _json(doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            doc = discovery.resource_list(registry, group, version)
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested "
                                                "resource")
            return _json(doc)
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        namespace: str | None = None
        if rest and rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in (
                "status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if plural == "bindings" and group == "" and namespace and request.method == "POST":
            body = await self._body(request)
            return self._bind(namespace, (body.get("metadata") or {}).get("name", ""), body)
        rt = registry.find(group, version, plural)
        if rt is None or len(rest) > 3 or (sub and sub not in rt.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt.namespaced and name and namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rt.namespaced and namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return await self._resource(request, rt, version, namespace, name, sub, watch_path)

    def _openapi(self, rest: list[str]) -> web.Response:
        registry = self.api.registry
        if not rest:
            return _json(discovery.openapi_root(registry))
        if rest[0] == "api" and len(rest) == 2:
            doc = discovery.openapi_document(registry, "", rest[1])
        elif rest[0] == "apis" and len(rest) == 3:
            doc = discovery.openapi_document(registry, rest[1], rest[2])
        else:
            doc = None
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return _json(doc)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        ctype = request.content_type
        if "protobuf" in ctype:
            try:
                return protobuf.decode(raw)
            except (ValueError, IndexError) as exc:
                raise errors.unsupported_media_type(
                    ctype, [JSON_TYPE, "application/yaml", "application/vnd.kubernetes.protobuf"]
                ) from exc
        if "cbor" in ctype:
            raise errors.unsupported_media_type(ctype, [JSON_TYPE, "application/yaml"])
        if not raw:
            return {}
        try:
            if "yaml" in ctype:
                return yaml.safe_load(raw.decode())
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"error decoding request body: {exc}") from exc

    # ---- resources --------------------------------------------------------------------
    async def _resource(self, request: web.Request, rt: ResourceType, version: str,
                        namespace: str | None, name: str, sub: str,
                        watch_path: bool) -> web.StreamResponse:
        q = request.query
        method = request.method
        api = self.api
        ns = namespace or ""
        dry_run = bool(q.get("dryRun"))
        strict = q.get("fieldValidation", "") == "Strict"
        as_table = "as=Table" in request.headers.get("Accept", "")
        if method == "GET" and not name:
            labels = meta.parse_label_selector(q.get("labelSelector", ""))
            fields = meta.parse_field_selector(q.get("fieldSelector", ""), rt.plural)
            if watch_path or _truthy(q.get("watch")):
                return await self._watch(request, rt, version, namespace, labels, fields,
                                         as_table)
            return self._list(rt, version, namespace, labels, fields, as_table,
                              q.get("includeObject", "Metadata"), q)
        if method == "GET" and sub == "log":
            return await self._log(request, ns, name)
        if method == "GET" and sub == "scale":
            return _json(self._scale(rt, version, api.get(rt, version, ns, name)))
        if method == "GET":
            obj = api.get(rt, version, ns, name)
            if as_table and not sub:
                return _json(tables.table(rt, version, [obj], obj["metadata"]["resourceVersion"],
                                          q.get("includeObject", "Metadata")))
            return _json(obj)
        if method == "POST" and not name:
            if rt.namespaced and namespace is None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method "
                                                        "on the requested resource")
            body = await self._body(request)
            created = api.create(rt, version, ns, body, dry_run, strict, q.get("fieldManager", ""))
            return _json(created, 201)
        if method == "POST" and sub == "binding":
            return self._bind(ns, name, await self._body(request))
        if method == "POST" and sub == "eviction":
            body = await self._body(request)
            api.delete(rt, version, ns, name, body.get("deleteOptions") or {}, dry_run)
            return _status_ok(201)
        if method == "PUT" and name:
            body = await self._body(request)
            if sub == "scale":
                return _json(self._set_scale(rt, version, ns, name, body))
            if sub == "finalize":
                return _json(api.get(rt, version, ns, name))
            return _json(api.update(rt, version, ns, name, body, sub, dry_run, strict))
        if method == "PATCH" and name:
            raw = await request.read()
            if sub == "scale":
                current = self._scale(rt, version, api.get(rt, version, ns, name))
                patched = patch.merge_patch(current, json.loads(raw or b"{}"))
                return _json(self._set_scale(rt, version, ns, name, patched))
            result = api.patch(rt, version, ns, name, request.content_type or "", raw, sub,
                               dry_run, strict, q.get("fieldManager", ""),
                               _truthy(q.get("force")))
            return _json(result)
        if method == "DELETE" and name:
            options = await self._body(request) if request.can_read_body else {}
            if q.get("gracePeriodSeconds") is not None:
                options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            if q.get("propagationPolicy"):
                options["propagationPolicy"] = q["propagationPolicy"]
            return _json(api.delete(rt, version, ns, name, options, dry_run))
        if method == "DELETE":
            options = await self._body(request) if request.can_read_body else {}
            labels = meta.parse_label_selector(q.get("labelSelector", ""))
            fields = meta.parse_field_selector(q.get("fieldSelector", ""), rt.plural)
            items = api.list_objects(rt, version, namespace, labels, fields)
            deleted = []
            for item in items:
                md = item["metadata"]
                with contextlib.suppress(ApiError):
                    deleted.append(api.delete(rt, version, md.get("namespace", ""), md["name"],
                                              options, dry_run))
            return _json(self._list_body(rt, version, deleted))
        raise errors.method_not_allowed()

    def _list_body(self, rt: ResourceType, version: str, items: list[dict[str, Any]]
                   ) -> dict[str, Any]:
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version(version),
                "metadata": {"resourceVersion": str(self.api.store.revision)}, "items": items}

    def _list(self, rt: ResourceType, version: str, namespace: str | None,
              labels: list[meta.Requirement], fields: list[meta.FieldRequirement],
              as_table: bool, include: str, q: Any) -> web.Response:
        match = q.get("resourceVersionMatch", "")
        wanted = q.get("resourceVersion", "")
        if match == "Exact" and wanted.isdigit() and int(wanted) < self.api.store.compacted:
            raise errors.gone(f"too old resource version: {wanted} ({self.api.store.compacted})")
        if wanted and wanted != "0" and wanted.isdigit() and int(wanted) > self.api.store.revision:
            raise ApiError(504, "Timeout", f"Too large resource version: {wanted}, current: "
                                           f"{self.api.store.revision}",
                           {"causes": [{"reason": "ResourceVersionTooLarge",
                                        "message": "Too large resource version"}],
                            "retryAfterSeconds": 1})
        items = self.api.list_objects(rt, version, namespace, labels, fields)
        if as_table:
            return _json(tables.table(rt, version, items, str(self.api.store.revision), include))
        return _json(self._list_body(rt, version, items))

    # ---- watch ------------------------------------------------------------------------
    async def _watch(self, request: web.Request, rt: ResourceType, version: str,
                     namespace: str | None, labels: list[meta.Requirement],
                     fields: list[meta.FieldRequirement], as_table: bool) -> web.StreamResponse:
        q = request.query
        store = self.api.store
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        send_initial = _truthy(q.get("sendInitialEvents"))
        since = q.get("resourceVersion", "")
        watcher = Watcher(rt.key, namespace if rt.namespaced else None, labels, fields)
        backlog: list[tuple[str, dict[str, Any]]] = []
        expired = False
        if since in ("", "0") or send_initial:
            for obj in self.api.list_objects(rt, version, namespace, labels, fields):
                backlog.append(("ADDED", obj))
        else:
            if not since.isdigit():
                raise errors.bad_request(f"invalid resource version: {since}")
            changes = store.since(rt.key, int(since))
            if changes is None:
                expired = True
            else:
                for past in changes:
                    translated = watcher.translate(past)
                    if translated:
                        backlog.append(translated)
        horizon = store.revision
        store.watchers.add(watcher)
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON_TYPE})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            if expired:
                status = errors.gone(f"too old resource version: {since} ({store.compacted})")
                await self._send(response, "ERROR", status.body())
                return response
            for kind, obj in backlog:
                await self._send(response, kind, self._shape(rt, version, obj, as_table))
            if send_initial:
                await self._send(response, "BOOKMARK", self._bookmark(
                    rt, version, str(horizon), {"k8s.io/initial-events-end": "true"}))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not self.closing.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                got, change = await aio.next_item(watcher.queue,
                                                  min(remaining, BOOKMARK_INTERVAL_S))
                if not got:
                    if request.transport is None or request.transport.is_closing():
                        break  # the client went away
                    if bookmarks:
                        await self._send(response, "BOOKMARK", self._bookmark(
                            rt, version, str(store.revision)))
                    continue
                if change is None:
                    break
                if change.revision <= horizon:
                    continue
                translated = watcher.translate(change)
                if translated:
                    kind, obj = translated
                    await self._send(response, kind, self._shape(rt, version, obj, as_table))
        except ConnectionResetError:
            pass  # the client went away
        finally:
            store.watchers.discard(watcher)
        return response

    def _shape(self, rt: ResourceType, version: str, obj: dict[str, Any],
               as_table: bool) -> dict[str, Any]:
        obj = self.api.output(rt, version, copy.deepcopy(obj))
        if as_table:
            return tables.table(rt, version, [obj], obj["metadata"]["resourceVersion"])
        return obj

    @staticmethod
    def _bookmark(rt: ResourceType, version: str, revision: str,
                  annotations: dict[str, str] | None = None) -> dict[str, Any]:
        md: dict[str, Any] = {"resourceVersion": revision}
        if annotations:
            md["annotations"] = annotations
        return {"kind": rt.kind, "apiVersion": rt.api_version(version), "metadata": md}

    @staticmethod
    async def _send(response: web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
        await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    def close_watches(self) -> None:
        self.closing.set()
        for watcher in list(self.api.store.watchers):
            watcher.queue.put_nowait(None)

    # ---- pod subresources ---------------------------------------------------------------
    def _bind(self, namespace: str, name: str, body: dict[str, Any]) -> web.Response:
        rt = self.api.registry.by_key(("", "pods"))
        assert rt is not None
        target = (body.get("target") or {}).get("name")
        if not target:
            raise errors.invalid("Binding", "", name, [errors.Cause("target.name",
                                                                    "Required value")])
        pod = self.api.get(rt, "v1", namespace, name)
        current = (pod.get("spec") or {}).get("nodeName")
        if current:
            raise errors.conflict("pods", "", name,
                                  f"pod {name} is already assigned to node \"{current}\"")
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict("pods", "", name, "pod is being deleted")
        bind(self.api, rt, namespace, name, target)
        return _status_ok(201)

    def _scale(self, rt: ResourceType, version: str, obj: dict[str, Any]) -> dict[str, Any]:
        paths = rt.scale_paths or {"specReplicasPath": ".spec.replicas",
                                   "statusReplicasPath": ".status.replicas"}
        spec_found = tables.jsonpath(obj, paths.get("specReplicasPath", ".spec.replicas"))
        status_found = tables.jsonpath(obj, paths.get("statusReplicasPath", ".status.replicas"))
        scale: dict[str, Any] = {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid",
                                                          "resourceVersion", "creationTimestamp")
                         if k in obj["metadata"]},
            "spec": {"replicas": spec_found[0] if spec_found else 0},
            "status": {"replicas": status_found[0] if status_found else 0},
        }
        if paths.get("labelSelectorPath"):
            selector = tables.jsonpath(obj, paths["labelSelectorPath"])
            if selector:
                scale["status"]["selector"] = selector[0]
        return scale

    def _set_scale(self, rt: ResourceType, version: str, namespace: str, name: str,
                   body: dict[str, Any]) -> dict[str, Any]:
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int):
            raise errors.invalid("Scale", "autoscaling", name, [errors.Cause(
                "spec.replicas", "Required value", "FieldValueRequired")])
        path = (rt.scale_paths or {}).get("specReplicasPath", ".spec.replicas").lstrip(".")
        patch_body: dict[str, Any] = {}
        cursor = patch_body
        keys = path.split(".")
        for key in keys[:-1]:
            cursor = cursor.setdefault(key, {})
        cursor[keys[-1]] = replicas
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        if want_rv:
            patch_body.setdefault("metadata", {})["resourceVersion"] = want_rv
        updated = self.api.patch(rt, version, namespace, name, "application/merge-patch+json",
                                 json.dumps(patch_body).encode())
        return self._scale(rt, version, updated)

    async def _log(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        rt = self.api.registry.by_key(("", "pods"))
        assert rt is not None
        pod = self.api.get(rt, "v1", namespace, name)
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        q = request.query
        container = q.get("container", "")
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(containers)}]")
            container = containers[0]
        if container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        if self.logs is None:
            raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to '
                                     "start: ContainerCreating")
        previous = _truthy(q.get("previous"))
        path = self.logs.log_path(namespace, name, container, previous)
        if not path.exists():
            if previous:
                raise errors.bad_request(f'previous terminated container "{container}" in pod '
                                         f'"{name}" not found')
            raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to '
                                     "start: ContainerCreating")
        data = path.read_bytes()
        if q.get("tailLines"):
            lines = data.splitlines(keepends=True)
            count = int(q["tailLines"])
            data = b"".join(lines[-count:]) if count > 0 else b""
        if q.get("limitBytes"):
            data = data[: int(q["limitBytes"])]
        if not _truthy(q.get("follow")):
            return web.Response(body=data, content_type="text/plain")
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(data)
            offset = path.stat().st_size
            while not self.closing.is_set():
                size = path.stat().st_size if path.exists() else offset
                if size > offset:
                    with path.open("rb") as handle:
                        handle.seek(offset)
                        chunk = handle.read(size - offset)
                    offset = size
                    await response.write(chunk)
                    continue
                if not self.logs.container_running(namespace, name, container):
                    break
                await asyncio.sleep(0.1)
        except ConnectionResetError:
            pass  # the client went away
        return response


def bind(api: Api, rt: ResourceType, namespace: str, name: str, node: str) -> None:
    """Set a pod's node and its PodScheduled condition (the binding subresource's effect)."""
    def change(pod: dict[str, Any]) -> None:
        pod["spec"]["nodeName"] = node
        status = pod.setdefault("status", {})
        set_condition(status, "PodScheduled", "True")
    old = api.store.get(rt.key, namespace, name)
    if old is None:
        raise errors.not_found("pods", "", name)
    new = copy.deepcopy(old)
    change(new)
    api.store.write(rt.key, new, old)


def set_condition(status: dict[str, Any], kind: str, value: str, reason: str = "",
                  message: str = "") -> None:
    conditions = status.setdefault("conditions", [])
    for condition in conditions:
        if condition["type"] == kind:
            if condition["status"] != value:
                condition["lastTransitionTime"] = meta.now()
            condition["status"] = value
            if reason:
                condition["reason"] = reason
            else:
                condition.pop("reason", None)
            if message:
                condition["message"] = message
            else:
                condition.pop("message", None)
            return
    entry: dict[str, Any] = {"type": kind, "status": value, "lastProbeTime": None,
                             "lastTransitionTime": meta.now()}
    if reason:
        entry["reason"] = reason
    if message:
        entry["message"] = message
    conditions.append(entry)


__all__ = ["Change", "Server", "bind", "set_condition"]

"""Discovery documents (/api, /apis, /apis/G/V, /version) and the minimal OpenAPI v3
documents kubectl reads to decide that the server does field validation itself."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import Registry, ResourceType

KUBE_VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0-localcluster",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"}

_SUB_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"],
              "binding": ["create"], "eviction": ["create"], "log": ["get"],
              "finalize": ["update"]}
_SUB_KIND = {"scale": ("autoscaling", "v1", "Scale"), "binding": ("", "v1", "Binding"),
             "eviction": ("policy", "v1", "Eviction"), "log": ("", "v1", "Pod")}


def core_versions(address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def group_list(registry: Registry) -> dict[str, Any]:
    groups = []
    for group, versions in registry.groups().items():
        if group == "":
            continue
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str) -> dict[str, Any] | None:
    versions = registry.groups().get(name)
    if not versions:
        return None
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": entries,
            "preferredVersion": entries[0]}


def resource_list(registry: Registry, group_name: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group_name, version)
    if not types:
        return None
    entries: list[dict[str, Any]] = []
    for rt in sorted(types, key=lambda r: r.plural):
        entry: dict[str, Any] = {
            "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
            "kind": rt.kind, "verbs": rt.verbs(),
            "storageVersionHash": hashlib.sha256(f"{rt.group}/{rt.plural}".encode())
            .hexdigest()[:12],
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        entries.append(entry)
        for sub in sorted(rt.subresources):
            sub_entry: dict[str, Any] = {"name": f"{rt.plural}/{sub}", "singularName": "",
                                         "namespaced": rt.namespaced, "kind": rt.kind,
                                         "verbs": _SUB_VERBS.get(sub, ["get"])}
            if sub in _SUB_KIND:
                g, v, kind = _SUB_KIND[sub]
                sub_entry.update({"group": g, "version": v, "kind": kind})
            entries.append(sub_entry)
    gv = f"{group_name}/{version}" if group_name else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": entries}


# ---- OpenAPI v3 ---------------------------------------------------------------------------

def _gv_path(group_name: str, version: str) -> str:
    return f"apis/{group_name}/{version}" if group_name else f"api/{version}"


def _schema_name(rt: ResourceType, version: str) -> str:
    if rt.custom:
        reversed_group = ".".join(reversed(rt.group.split(".")))
        return f"{reversed_group}.{version}.{rt.kind}"
    if rt.group == "apiextensions.k8s.io":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{rt.kind}"
    group_part = rt.group.split(".")[0] if rt.group else "core"
    return f"io.k8s.api.{group_part}.{version}.{rt.kind}"


_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _operation(rt: ResourceType, version: str, action: str, verb: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{_schema_name(rt, version)}"}
    params = [{"name": p, "in": "query", "schema": {"type": "string"}} for p in _QUERY_PARAMS]
    return {
        "operationId": f"{verb}{rt.kind}",
        "parameters": params,
        "responses": {"200": {"description": "OK",
                              "content": {"application/json": {"schema": ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": version,
                                            "kind": rt.kind},
    }


def openapi_document(registry: Registry, group_name: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group_name, version)
    if not types:
        return None
    prefix = "/" + _gv_path(group_name, version)
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in types:
        base = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else \
            f"{prefix}/{rt.plural}"
        paths[base] = {"get": _operation(rt, version, "list", "list"),
                       "post": _operation(rt, version, "post", "create")}
        paths[f"{base}/{{name}}"] = {
            "get": _operation(rt, version, "get", "read"),
            "put": _operation(rt, version, "put", "replace"),
            "patch": _operation(rt, version, "patch", "patch"),
            "delete": _operation(rt, version, "delete", "delete"),
        }
        body: dict[str, Any] = dict(rt.schemas.get(version) or {}) if rt.custom else {}
        if not body:
            body = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        body = dict(body)
        body["x-kubernetes-group-version-kind"] = [{"group": rt.group, "version": version,
                                                    "kind": rt.kind}]
        schemas[_schema_name(rt, version)] = body
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"},
            "paths": paths, "components": {"schemas": schemas}}


def openapi_root(registry: Registry) -> dict[str, Any]:
    paths = {}
    for group_name, versions in registry.groups().items():
        for version in versions:
            doc = openapi_document(registry, group_name, version)
            digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64]
            path = _gv_path(group_name, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": paths}

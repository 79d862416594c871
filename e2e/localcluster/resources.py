"""The resource types the server knows: the built-in ones and those registered by CRDs.

A `ResourceType` is everything discovery, OpenAPI, routing and storage need to know about
one resource (group, versions, plural, kind, scope, subresources, schema, printer columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import meta


@dataclass(frozen=True)
class ResourceType:
    group: str
    versions: tuple[str, ...]
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    # per served version: openAPIV3Schema and additionalPrinterColumns (CRDs only)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)
    printer_columns: dict[str, list[dict[str, Any]]] = field(default_factory=dict, compare=False)
    scale_paths: dict[str, str] = field(default_factory=dict, compare=False)
    custom: bool = False
    has_generation: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def name_errors(self, name: str) -> list[str]:
        if self.plural in ("namespaces",):
            return meta.dns1123_label_errors(name)
        if self.plural in ("services",):
            return meta.dns1035_label_errors(name)
        if self.plural in ("roles", "clusterroles", "rolebindings", "clusterrolebindings"):
            return [] if name and "/" not in name and name not in (".", "..") else [
                "may not contain '/'"]
        return meta.dns1123_subdomain_errors(name)

    def verbs(self) -> list[str]:
        return ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _rt(group: str, version: str, plural: str, kind: str, namespaced: bool = True,
        short: tuple[str, ...] = (), sub: tuple[str, ...] = (), generation: bool = False,
        categories: tuple[str, ...] = ()) -> ResourceType:
    return ResourceType(group, (version,), plural, kind.lower(), kind, namespaced, short,
                        categories, frozenset(sub), has_generation=generation)


BUILTINS: tuple[ResourceType, ...] = (
    _rt("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize")),
    _rt("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    _rt("", "v1", "pods", "Pod", True, ("po",), ("status", "binding", "log", "eviction"),
        True, ("all",)),
    _rt("", "v1", "services", "Service", True, ("svc",), ("status",), False, ("all",)),
    _rt("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    _rt("", "v1", "events", "Event", True, ("ev",)),
    _rt("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    _rt("", "v1", "secrets", "Secret", True),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    _rt("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",),
        ("status",)),
    _rt("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",)),
    _rt("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), ("status",)),
    _rt("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    _rt("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), True,
        ("all",)),
    _rt("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), True,
        ("all",)),
    _rt("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), True,
        ("all",)),
    _rt("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), True, ("all",)),
    _rt("batch", "v1", "jobs", "Job", True, (), ("status",), True, ("all",)),
    _rt("coordination.k8s.io", "v1", "leases", "Lease", True),
    _rt("events.k8s.io", "v1", "events", "Event", True, ("ev",)),
    _rt("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    _rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",),
        ("status",), True),
    _rt("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _rt("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _rt("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    _rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",), (),
        True),
    _rt("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), ("status",), True),
    _rt("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
        False, ("crd", "crds"), ("status",), True),
)

# Group ordering in /apis, like a real server lists its built-in groups.
GROUP_PRIORITY = [rt.group for rt in BUILTINS]


def from_crd(crd: dict[str, Any]) -> ResourceType:
    """The resource a CustomResourceDefinition registers (served versions only)."""
    spec = crd["spec"]
    names = spec["names"]
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    storage = [v["name"] for v in versions if v.get("storage")]
    ordered = storage + [v["name"] for v in versions if v["name"] not in storage]
    subresources: set[str] = set()
    schemas: dict[str, dict[str, Any]] = {}
    columns: dict[str, list[dict[str, Any]]] = {}
    scale_paths: dict[str, str] = {}
    for version in versions:
        subs = version.get("subresources") or {}
        if "status" in subs:
            subresources.add("status")
        if "scale" in subs:
            subresources.add("scale")
            scale_paths = dict(subs["scale"])
        schemas[version["name"]] = ((version.get("schema") or {}).get("openAPIV3Schema") or {})
        columns[version["name"]] = list(version.get("additionalPrinterColumns") or [])
    return ResourceType(
        group=spec["group"],
        versions=tuple(ordered),
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=frozenset(subresources),
        schemas=schemas,
        printer_columns=columns,
        scale_paths=scale_paths,
        custom=True,
        has_generation=True,
    )


class Registry:
    """The resource types being served, looked up by (group, version, plural)."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {rt.key: rt for rt in BUILTINS}
        self.generation = 0  # bumped on every change, for discovery/OpenAPI caches

    def register(self, rt: ResourceType) -> None:
        self._types[rt.key] = rt
        self.generation += 1

    def unregister(self, key: tuple[str, str]) -> None:
        if self._types.pop(key, None) is not None:
            self.generation += 1

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self._types.get((group, plural))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def by_key(self, key: tuple[str, str]) -> ResourceType | None:
        return self._types.get(key)

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions, preferred first, in a stable order."""
        result: dict[str, list[str]] = {}
        order = {g: i for i, g in enumerate(GROUP_PRIORITY)}
        for rt in sorted(self._types.values(), key=lambda r: (order.get(r.group, 1000), r.group)):
            versions = result.setdefault(rt.group, [])
            for version in rt.versions:
                if version not in versions:
                    versions.append(version)
        return result

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and version in rt.versions]

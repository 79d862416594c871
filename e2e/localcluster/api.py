"""The API semantics, independent of HTTP: create, read, update, patch and delete with the
real server's rules (uid, generation, resourceVersion preconditions, status subresource,
finalizers and graceful deletion, schema validation of custom objects, CRD registration).

The HTTP layer (server.py) and the controllers (scheduler, kubelet, garbage collector) both
call this; all of it runs on the server's event loop thread.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import yaml

from . import builtin_schema, errors, meta, patch, resources, schema
from .errors import ApiError, Cause
from .resources import ResourceType
from .store import Obj, Store

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

# Pod spec fields an update may change (the rest is immutable, as on a real server).
_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def _strip_server_fields(md: dict[str, Any]) -> None:
    for key in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                "deletionGracePeriodSeconds", "generation", "managedFields", "selfLink"):
        md.pop(key, None)


class Api:
    def __init__(self, store: Store, registry: resources.Registry) -> None:
        self.store = store
        self.registry = registry
        # server-side apply: (resource, namespace, name, field manager) -> last applied config
        self._applied: dict[tuple[tuple[str, str], str, str, str], Obj] = {}
        self._cluster_ips: set[str] = set()
        # hooks the kubelet sets: called after a pod is marked for graceful deletion
        self.on_pod_deleting: Callable[[Obj], None] | None = None

    # ---- helpers ----------------------------------------------------------------------
    def output(self, rt: ResourceType, version: str, obj: Obj) -> Obj:
        if rt.custom:
            obj["apiVersion"] = rt.api_version(version)
        return obj

    def _require_namespace(self, rt: ResourceType, namespace: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.peek(("", "namespaces"), "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden",
                           f'{rt.plural} "" is forbidden: unable to create new content in '
                           f"namespace {namespace} because it is being terminated",
                           {"kind": rt.plural, "group": rt.group})

    def _current(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return obj

    def get(self, rt: ResourceType, version: str, namespace: str, name: str) -> Obj:
        return self.output(rt, version, self._current(rt, namespace, name))

    def list_objects(self, rt: ResourceType, version: str, namespace: str | None,
             labels: list[meta.Requirement], fields: list[meta.FieldRequirement]) -> list[Obj]:
        items = []
        for obj in self.store.items(rt.key, namespace if rt.namespaced else None):
            md = obj["metadata"]
            if meta.labels_match(labels, md.get("labels")) and meta.fields_match(fields, obj):
                items.append(self.output(rt, version, copy.deepcopy(obj)))
        return items

    def _status_separate(self, rt: ResourceType) -> bool:
        return "status" in rt.subresources

    # ---- admission: defaults, validation ------------------------------------------------
    def _admit(self, rt: ResourceType, version: str, obj: Obj, old: Obj | None,
               strict: bool) -> None:
        md = obj.setdefault("metadata", {})
        causes: list[Cause] = []
        if old is None:
            causes += meta.metadata_causes(md, rt.name_errors)
        else:
            causes += [c for c in meta.metadata_causes(md, rt.name_errors)
                       if c.field != "metadata.name"]
        if rt.custom:
            sch = rt.schemas.get(version) or {}
            if sch:
                schema.apply_defaults(sch, obj)
                unknown = schema.prune(sch, obj)
                if unknown and strict:
                    fields = ", ".join(f'unknown field "{u}"' for u in unknown)
                    raise errors.bad_request(
                        f"{rt.kind} in version \"{version}\" cannot be handled as a {rt.kind}: "
                        f"strict decoding error: {fields}")
                causes += schema.validate(sch, obj)
        else:
            causes += self._decode_checks(rt, version, obj, strict)
            causes += self._builtin_causes(rt, obj, old)
            causes = list(dict.fromkeys(causes))
        if causes:
            raise errors.invalid(rt.kind, rt.group, md.get("name") or md.get("generateName", ""),
                                 causes)

    def _decode_checks(self, rt: ResourceType, version: str, obj: Obj, strict: bool
                       ) -> list[Cause]:
        """What the typed decoder enforces: field types (400), unknown fields (dropped,
        or 400 when strict), and the schema's required fields (422 causes)."""
        findings = builtin_schema.check(obj, rt.kind, rt.group, version)
        if findings is None:
            return []
        prefix = f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: '
        if findings.type_errors:
            raise errors.bad_request(prefix + findings.type_errors[0])
        if findings.unknown:
            if strict:
                fields = ", ".join(f'unknown field "{builtin_schema.field_path(path)}"'
                                   for path in findings.unknown)
                raise errors.bad_request(prefix + "strict decoding error: " + fields)
            for path in findings.unknown:
                builtin_schema.drop(obj, path)
        return [Cause(field, "Required value", "FieldValueRequired")
                for field in findings.required]

    def _builtin_causes(self, rt: ResourceType, obj: Obj, old: Obj | None) -> list[Cause]:
        causes: list[Cause] = []
        spec = obj.get("spec") or {}
        if rt.plural == "pods":
            containers = spec.get("containers") or []
            if not containers:
                causes.append(Cause("spec.containers", "Required value", "FieldValueRequired"))
            for i, container in enumerate(containers):
                name = container.get("name", "")
                if not name:
                    causes.append(Cause(f"spec.containers[{i}].name", "Required value",
                                        "FieldValueRequired"))
                else:
                    for err in meta.dns1123_label_errors(name):
                        causes.append(Cause(f"spec.containers[{i}].name",
                                            f'Invalid value: "{name}": {err}'))
                if not container.get("image"):
                    causes.append(Cause(f"spec.containers[{i}].image", "Required value",
                                        "FieldValueRequired"))
            for fld in ("hostname", "subdomain"):
                if spec.get(fld):
                    for err in meta.dns1123_label_errors(spec[fld]):
                        causes.append(Cause(f"spec.{fld}", f'Invalid value: "{spec[fld]}": {err}'))
            if old is not None and self._pod_spec_frozen_changed(old.get("spec") or {}, spec):
                causes.append(Cause("spec", "Forbidden: pod updates may not change fields other "
                                            "than `spec.containers[*].image`,"
                                            "`spec.initContainers[*].image`,"
                                            "`spec.activeDeadlineSeconds`,`spec.tolerations` "
                                            "(only additions to existing tolerations),"
                                            "`spec.terminationGracePeriodSeconds` (allow it to "
                                            "be set to 1 if it was previously negative)",
                                    "FieldValueForbidden"))
        elif rt.plural == "services":
            for i, port in enumerate(spec.get("ports") or []):
                if "port" not in port:
                    causes.append(Cause(f"spec.ports[{i}].port", "Required value",
                                        "FieldValueRequired"))
        elif rt.plural == "customresourcedefinitions":
            names = spec.get("names") or {}
            expected = f"{names.get('plural')}.{spec.get('group')}"
            name = obj["metadata"].get("name", "")
            if name != expected:
                causes.append(Cause("metadata.name", f'Invalid value: "{name}": must be '
                                                     'spec.names.plural+"."+spec.group'))
            versions = spec.get("versions") or []
            if sum(1 for v in versions if v.get("storage")) != 1:
                causes.append(Cause("spec.versions", "Invalid value: must have exactly one "
                                                     "version marked as storage version"))
            if not names.get("kind"):
                causes.append(Cause("spec.names.kind", "Required value", "FieldValueRequired"))
            if spec.get("scope") not in ("Namespaced", "Cluster"):
                causes.append(Cause("spec.scope", f"Unsupported value: "
                                                  f"{json.dumps(spec.get('scope'))}: supported "
                                                  'values: "Cluster", "Namespaced"',
                                    "FieldValueNotSupported"))
        return causes

    @staticmethod
    def _pod_spec_frozen_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
        def frozen(spec: dict[str, Any]) -> dict[str, Any]:
            spec = copy.deepcopy(spec)
            for key in _POD_MUTABLE:
                spec.pop(key, None)
            for kind in ("containers", "initContainers"):
                for container in spec.get(kind) or []:
                    container.pop("image", None)
            if not old.get("nodeName"):
                spec.pop("nodeName", None)
            return spec
        return frozen(old) != frozen(new)

    def _defaults(self, rt: ResourceType, obj: Obj) -> None:
        spec = obj.get("spec")
        if rt.plural == "pods" and isinstance(spec, dict):
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("dnsPolicy", "ClusterFirst")
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
            spec.setdefault("priority", 0)
            spec.setdefault("enableServiceLinks", True)
            for container in spec.get("containers") or []:
                container.setdefault("imagePullPolicy", "IfNotPresent")
                container.setdefault("terminationMessagePath", "/dev/termination-log")
                container.setdefault("terminationMessagePolicy", "File")
                container.setdefault("resources", {})
                for port in container.get("ports") or []:
                    port.setdefault("protocol", "TCP")
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}
        elif rt.plural == "services" and isinstance(spec, dict):
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            if not spec.get("clusterIP"):
                spec["clusterIP"] = self._allocate_cluster_ip()
            if spec["clusterIP"] != "None":
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
            else:
                spec.setdefault("clusterIPs", ["None"])
            obj.setdefault("status", {"loadBalancer": {}})
        elif rt.plural == "namespaces":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
            labels = obj["metadata"].setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif rt.plural == "secrets":
            data = obj.setdefault("data", {}) or {}
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
            if not obj.get("type"):
                obj["type"] = "Opaque"
        elif rt.plural == "customresourcedefinitions":
            self._crd_status(obj)
        elif rt.plural == "persistentvolumeclaims":
            obj["status"] = {"phase": "Bound", "accessModes": (spec or {}).get("accessModes", []),
                             "capacity": ((spec or {}).get("resources") or {}).get("requests", {})}

    def _allocate_cluster_ip(self) -> str:
        for _ in range(10000):
            ip = f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
            if ip not in self._cluster_ips:
                self._cluster_ips.add(ip)
                return ip
        raise ApiError(500, "InternalError", "service IP range exhausted")

    def _crd_status(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        when = meta.now()
        crd["status"] = {
            "acceptedNames": copy.deepcopy(spec.get("names") or {}),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": when},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": when},
            ],
            "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
        }

    # ---- create -----------------------------------------------------------------------
    def create(self, rt: ResourceType, version: str, namespace: str, body: Obj,
               dry_run: bool = False, strict: bool = False, field_manager: str = "") -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        md = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = md
        if rt.namespaced:
            if md.get("namespace") and md["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        obj["apiVersion"] = rt.api_version(version)
        obj["kind"] = rt.kind
        if not md.get("name") and md.get("generateName"):
            suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
            md["name"] = md["generateName"] + suffix
        _strip_server_fields(md)
        if rt.custom and self._status_separate(rt):
            obj.pop("status", None)
        self._defaults(rt, obj)
        self._admit(rt, version, obj, None, strict)
        self._require_namespace(rt, namespace)
        ns_key = namespace if rt.namespaced else ""
        if self.store.peek(rt.key, ns_key, md["name"]) is not None:
            raise errors.already_exists(rt.plural, rt.group, md["name"])
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = meta.now()
        if rt.has_generation:
            md["generation"] = 1
        if dry_run:
            md["resourceVersion"] = ""
            return self.output(rt, version, obj)
        stored = self.store.write(rt.key, obj, None)
        self._after_write(rt, stored)
        return self.output(rt, version, stored)

    def _after_write(self, rt: ResourceType, obj: Obj) -> None:
        if rt.plural == "customresourcedefinitions" and rt.group == "apiextensions.k8s.io":
            new = resources.from_crd(obj)
            old = self.registry.by_key(new.key)
            if old is not None and not old.custom:
                return
            self.registry.register(new)
        elif rt.plural == "namespaces" and rt.group == "":
            name = obj["metadata"]["name"]
            if self.store.peek(("", "serviceaccounts"), name, "default") is None and not obj[
                    "metadata"].get("deletionTimestamp"):
                sa_rt = self.registry.by_key(("", "serviceaccounts"))
                assert sa_rt is not None
                self.create(sa_rt, "v1", name, {"metadata": {"name": "default"}})

    # ---- update -----------------------------------------------------------------------
    def update(self, rt: ResourceType, version: str, namespace: str, name: str, body: Obj,
               subresource: str = "", dry_run: bool = False, strict: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        old = self._current(rt, namespace, name)
        md = body.get("metadata") or {}
        if md.get("name") and md["name"] != name:
            raise errors.bad_request(f'the name of the object ({md["name"]}) does not match the '
                                     f"name on the URL ({name})")
        wanted_rv = md.get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name)
        if rt.custom and not wanted_rv and subresource == "":
            raise errors.invalid(rt.kind, rt.group, name, [Cause(
                "metadata.resourceVersion",
                "Invalid value: 0x0: must be specified for an update")])
        return self._commit(rt, version, old, copy.deepcopy(body), subresource, dry_run, strict)

    def _commit(self, rt: ResourceType, version: str, old: Obj, new: Obj, subresource: str,
                dry_run: bool = False, strict: bool = False) -> Obj:
        """Store `new` as the next state of `old`, applying the update rules."""
        name = old["metadata"]["name"]
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            # a status write may still change labels/annotations? No: metadata is kept,
            # except that the resourceVersion precondition already applied.
            new = merged
        else:
            if self._status_separate(rt):
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            if rt.plural == "customresourcedefinitions":
                new["status"] = copy.deepcopy(old.get("status"))
        new["apiVersion"] = old["apiVersion"]
        new["kind"] = old["kind"]
        md = new.setdefault("metadata", {}) or {}
        new["metadata"] = md
        old_md = old["metadata"]
        for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                    "deletionGracePeriodSeconds", "generation"):
            if key in old_md:
                md[key] = old_md[key]
            else:
                md.pop(key, None)
        md.pop("managedFields", None)
        if rt.plural == "secrets":
            data = new.setdefault("data", {}) or {}
            for key, value in (new.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            new["data"] = data
        if old_md.get("deletionTimestamp"):
            added = set(md.get("finalizers") or []) - set(old_md.get("finalizers") or [])
            if added:
                raise errors.invalid(rt.kind, rt.group, name, [Cause(
                    "metadata.finalizers",
                    f"Forbidden: no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {json.dumps(sorted(added))}", "FieldValueForbidden")])
        if rt.plural == "services":
            for key in ("clusterIP", "clusterIPs"):
                if key in (old.get("spec") or {}) and key not in (new.get("spec") or {}):
                    new.setdefault("spec", {})[key] = old["spec"][key]
        if rt.plural == "customresourcedefinitions":
            new.setdefault("status", {})
            self._crd_status(new)
        self._admit(rt, version, new, old, strict)
        if rt.has_generation and subresource == "" and _spec_changed(rt, old, new):
            md["generation"] = int(old_md.get("generation", 1)) + 1
        if not md.get("finalizers"):
            md.pop("finalizers", None)
        if _same_content(old, new):
            return self.output(rt, version, old)
        if dry_run:
            return self.output(rt, version, new)
        if md.get("deletionTimestamp") and not md.get("finalizers") and not self._graceful_pending(
                rt, new):
            gone = self.store.remove(rt.key, md.get("namespace", ""), name)
            assert gone is not None
            self._after_remove(rt, gone)
            return self.output(rt, version, gone)
        stored = self.store.write(rt.key, new, old)
        self._after_write(rt, stored)
        return self.output(rt, version, stored)

    def _graceful_pending(self, rt: ResourceType, obj: Obj) -> bool:
        """A pod marked for graceful deletion stays until its kubelet confirms the end."""
        return rt.plural == "pods" and rt.group == "" and bool(
            obj["metadata"].get("deletionGracePeriodSeconds"))

    # ---- patch ------------------------------------------------------------------------
    def patch(self, rt: ResourceType, version: str, namespace: str, name: str,
              content_type: str, raw: bytes, subresource: str = "", dry_run: bool = False,
              strict: bool = False, field_manager: str = "", force: bool = False) -> Obj:
        content_type = content_type.split(";")[0].strip()
        if content_type == APPLY_PATCH:
            return self._apply(rt, version, namespace, name, raw, subresource, dry_run, strict,
                               field_manager)
        accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
        if not rt.custom:
            accepted.insert(2, STRATEGIC_PATCH)
        if content_type not in accepted:
            raise errors.unsupported_media_type(content_type, accepted)
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        old = self._current(rt, namespace, name)
        base = copy.deepcopy(old)
        if rt.custom:
            base["apiVersion"] = rt.api_version(version)
        try:
            if content_type == JSON_PATCH:
                new = patch.json_patch(base, body)
            elif content_type == MERGE_PATCH:
                new = patch.merge_patch(base, body)
            else:
                new = patch.strategic_merge_patch(base, body)
        except patch.PatchError as exc:
            if exc.test_failed:
                raise ApiError(422, "Invalid", str(exc)) from exc
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error "
                                           f"in our request: {exc}") from exc
        if not isinstance(new, dict):
            raise errors.bad_request("the patch produced something other than an object")
        wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name)
        return self._commit(rt, version, old, new, subresource, dry_run, strict)

    def _apply(self, rt: ResourceType, version: str, namespace: str, name: str, raw: bytes,
               subresource: str, dry_run: bool, strict: bool, field_manager: str) -> Obj:
        if not field_manager:
            raise errors.bad_request("PATCH /apply requires a fieldManager query parameter")
        try:
            applied = yaml.safe_load(raw.decode() or "{}")
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from exc
        if not isinstance(applied, dict):
            raise errors.bad_request("an applied configuration must be an object")
        for required in ("apiVersion", "kind"):
            if not applied.get(required):
                raise errors.bad_request(f"{required} must be set in an applied configuration")
        applied_md = applied.setdefault("metadata", {}) or {}
        if applied_md.get("name") and applied_md["name"] != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        ns_key = namespace if rt.namespaced else ""
        slot = (rt.key, ns_key, name, f"{field_manager}/{subresource}")
        existing = self.store.get(rt.key, ns_key, name)
        if existing is None:
            if subresource:
                raise errors.not_found(rt.plural, rt.group, name)
            body = copy.deepcopy(applied)
            body["metadata"]["name"] = name
            result = self.create(rt, version, namespace, body, dry_run, strict, field_manager)
        else:
            previous = self._applied.get(slot, {})
            wanted_rv = applied_md.get("resourceVersion")
            if wanted_rv and wanted_rv != existing["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name)
            cleaned = patch.remove_unapplied(existing, previous, applied)
            new = patch.apply_merge(cleaned, applied)
            result = self._commit(rt, version, existing, new, subresource, dry_run, strict)
        if not dry_run:
            self._applied[slot] = copy.deepcopy(applied)
        return result

    # ---- delete -----------------------------------------------------------------------
    def delete(self, rt: ResourceType, version: str, namespace: str, name: str,
               options: dict[str, Any] | None = None, dry_run: bool = False) -> Obj:
        options = options or {}
        old = self._current(rt, namespace, name)
        md = old["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != md["uid"]:
            raise errors.conflict(rt.plural, rt.group, name,
                                  f"Precondition failed: UID in precondition: {pre['uid']}, "
                                  f"UID in object meta: {md['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name,
                                  f"Precondition failed: ResourceVersion in precondition: "
                                  f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                  f"{md['resourceVersion']}")
        if dry_run:
            return self.output(rt, version, old)
        policy = options.get("propagationPolicy") or (
            "Orphan" if options.get("orphanDependents") else "Background")
        if policy == "Orphan":
            self._orphan(md["uid"])
        grace = self._grace(rt, old, options)
        if grace > 0 or md.get("finalizers") or (rt.plural == "namespaces" and rt.group == ""):
            new = copy.deepcopy(old)
            nmd = new["metadata"]
            if rt.plural == "namespaces" and rt.group == "":
                new.setdefault("status", {})["phase"] = "Terminating"
            if not nmd.get("deletionTimestamp"):
                when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)
                nmd["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
                nmd["deletionGracePeriodSeconds"] = grace
                if "generation" in nmd:
                    nmd["generation"] = int(nmd["generation"]) + 1
            elif grace < int(nmd.get("deletionGracePeriodSeconds") or 0):
                nmd["deletionGracePeriodSeconds"] = grace
            elif grace == 0 and not nmd.get("finalizers"):
                nmd["deletionGracePeriodSeconds"] = 0
            if rt.plural == "pods" and grace == 0:
                nmd["deletionGracePeriodSeconds"] = 0
            if not nmd.get("finalizers") and not self._graceful_pending(rt, new) and not (
                    rt.plural == "namespaces" and rt.group == ""):
                return self._remove(rt, version, old)
            stored = self.store.write(rt.key, new, old)
            if rt.plural == "pods" and rt.group == "" and self.on_pod_deleting:
                self.on_pod_deleting(stored)
            return self.output(rt, version, stored)
        return self._remove(rt, version, old)

    def _grace(self, rt: ResourceType, obj: Obj, options: dict[str, Any]) -> int:
        if rt.plural != "pods" or rt.group != "":
            return 0
        spec = obj.get("spec") or {}
        if not spec.get("nodeName") or (obj.get("status") or {}).get("phase") in (
                "Succeeded", "Failed"):
            return 0
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return max(int(grace), 0)

    def _remove(self, rt: ResourceType, version: str, old: Obj) -> Obj:
        md = old["metadata"]
        gone = self.store.remove(rt.key, md.get("namespace", ""), md["name"])
        assert gone is not None
        self._after_remove(rt, gone)
        return self.output(rt, version, gone)

    def _after_remove(self, rt: ResourceType, gone: Obj) -> None:
        md = gone["metadata"]
        for slot in [s for s in self._applied if s[0] == rt.key and s[1] == md.get(
                "namespace", "") and s[2] == md["name"]]:
            del self._applied[slot]
        if rt.plural == "customresourcedefinitions" and rt.group == "apiextensions.k8s.io":
            spec = gone.get("spec") or {}
            key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
            registered = self.registry.by_key(key)
            if registered is not None and registered.custom:
                self.registry.unregister(key)
                self.store.drop_resource(key)
        if rt.plural == "services" and rt.group == "":
            self._cluster_ips.discard((gone.get("spec") or {}).get("clusterIP", ""))

    def _orphan(self, uid: str) -> None:
        for key in self.store.resource_keys():
            rt = self.registry.by_key(key)
            if rt is None:
                continue
            for obj in list(self.store.items(key)):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    new = copy.deepcopy(obj)
                    new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                    if not new["metadata"]["ownerReferences"]:
                        del new["metadata"]["ownerReferences"]
                    self.store.write(key, new, obj)

    def force_remove(self, rt: ResourceType, namespace: str, name: str) -> None:
        """Remove an object now, finalizers or not (the kubelet's final delete of a pod)."""
        old = self.store.get(rt.key, namespace, name)
        if old is None:
            return
        if old["metadata"].get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if not new["metadata"].get("deletionTimestamp"):
                new["metadata"]["deletionTimestamp"] = meta.now()
            if new != old:
                self.store.write(rt.key, new, old)
            return
        self._remove(rt, rt.versions[0], old)

    # ---- controller helpers -----------------------------------------------------------
    def mutate(self, rt: ResourceType, namespace: str, name: str,
               change: Callable[[Obj], None], subresource: str = "status") -> Obj | None:
        """Read-modify-write by a controller; None when the object is gone."""
        old = self.store.get(rt.key, namespace, name)
        if old is None:
            return None
        new = copy.deepcopy(old)
        change(new)
        if new == old:
            return old
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status")
            new = merged
        stored = self.store.write(rt.key, new, old)
        return stored


def _qos_class(spec: dict[str, Any]) -> str:
    requests_any = limits_all = False
    guaranteed = True
    for container in spec.get("containers") or []:
        res = container.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            requests_any = True
        for resource in ("cpu", "memory"):
            if resource not in lim or (resource in req and req[resource] != lim[resource]):
                guaranteed = False
        limits_all = limits_all or bool(lim)
    if not requests_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed and limits_all else "Burstable"


def _spec_changed(rt: ResourceType, old: Obj, new: Obj) -> bool:
    ignored = {"metadata", "status"} if ("status" in rt.subresources) else {"metadata"}
    if not rt.custom and "status" not in rt.subresources:
        ignored = {"metadata", "status"}
    strip = {"apiVersion", "kind"} | ignored
    return {k: v for k, v in old.items() if k not in strip} != {
        k: v for k, v in new.items() if k not in strip}


def _same_content(old: Obj, new: Obj) -> bool:
    a, b = copy.deepcopy(old), copy.deepcopy(new)
    for obj in (a, b):
        obj["metadata"].pop("resourceVersion", None)
        obj["metadata"].pop("managedFields", None)
    return a == b


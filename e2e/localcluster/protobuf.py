"""Decoding of the protobuf request bodies kubectl insists on sending.

`kubectl create configmap|secret|namespace|serviceaccount` POST their objects, and helm
sends its DeleteOptions, as `application/vnd.kubernetes.protobuf` (both accept JSON
answers). This decodes the Kubernetes envelope (magic `k8s\\0` + runtime.Unknown) and
those few message types into the JSON shape the rest of the server handles; any other type
is refused with 415.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

MAGIC = b"k8s\x00"

Schema = dict[int, tuple[str, Any]]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, raw value) for each field of a message."""
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos:pos + length]
            pos += length
        elif wire == 1:
            value = data[pos:pos + 8]
            pos += 8
        elif wire == 5:
            value = data[pos:pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


TIME: Schema = {1: ("seconds", "int"), 2: ("nanos", "int")}
OWNER_REFERENCE: Schema = {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                           5: ("apiVersion", "string"), 6: ("controller", "bool"),
                           7: ("blockOwnerDeletion", "bool")}
OBJECT_META: Schema = {
    1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
    5: ("uid", "string"), 6: ("resourceVersion", "string"), 7: ("generation", "int"),
    8: ("creationTimestamp", "time"), 11: ("labels", "map"), 12: ("annotations", "map"),
    13: ("ownerReferences", ("repeated", OWNER_REFERENCE)), 14: ("finalizers", "strings"),
}
LOCAL_REF: Schema = {1: ("name", "string")}
TYPES: dict[str, Schema] = {
    "ConfigMap": {1: ("metadata", OBJECT_META), 2: ("data", "map"),
                  3: ("binaryData", "bytesmap"), 4: ("immutable", "bool")},
    "Secret": {1: ("metadata", OBJECT_META), 2: ("data", "bytesmap"), 3: ("type", "string"),
               4: ("stringData", "map"), 5: ("immutable", "bool")},
    "Namespace": {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", "strings")})},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int"),
                      2: ("preconditions", {1: ("uid", "string"), 2: ("resourceVersion",
                                                                      "string")}),
                      3: ("orphanDependents", "bool"), 4: ("propagationPolicy", "string"),
                      5: ("dryRun", "strings")},
    "ServiceAccount": {1: ("metadata", OBJECT_META),
                       2: ("secrets", ("repeated", {1: ("kind", "string"),
                                                    2: ("namespace", "string"),
                                                    3: ("name", "string")})),
                       3: ("imagePullSecrets", ("repeated", LOCAL_REF)),
                       4: ("automountServiceAccountToken", "bool")},
}


def _decode(data: bytes, schema: Schema) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, _wire, raw in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind == "string":
            obj[name] = raw.decode()
        elif kind == "int":
            obj[name] = raw
        elif kind == "bool":
            obj[name] = bool(raw)
        elif kind == "strings":
            obj.setdefault(name, []).append(raw.decode())
        elif kind in ("map", "bytesmap"):
            entry = {n: v for n, _w, v in _fields(raw)}
            key = entry.get(1, b"").decode()
            value = entry.get(2, b"")
            obj.setdefault(name, {})[key] = (base64.b64encode(value).decode()
                                             if kind == "bytesmap" else value.decode())
        elif kind == "time":
            seconds = _decode(raw, TIME).get("seconds", 0)
            obj[name] = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            obj.setdefault(name, []).append(_decode(raw, kind[1]))
        elif isinstance(kind, dict):
            obj[name] = _decode(raw, kind)
    return obj


def _encode_field(number: int, payload: bytes) -> bytes:
    key, length = number << 3 | 2, len(payload)
    out = bytearray()
    for value in (key, length):
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                break
    return bytes(out) + payload


def empty_openapi_v2() -> bytes:
    """An OpenAPI v2 document (gnostic protobuf) with no paths and no definitions: what
    kubectl falls back to for kinds the v3 documents do not describe yet (a custom object
    applied together with its CRD), so that it reports the missing mapping as a real
    server's clients do."""
    info = _encode_field(1, b"Kubernetes") + _encode_field(2, b"v1.37.0")
    return _encode_field(1, b"2.0") + _encode_field(2, info)


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object; ValueError for what it cannot read."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf envelope")
    envelope = {n: v for n, _w, v in _fields(body[len(MAGIC):])}
    type_meta = {n: v for n, _w, v in _fields(envelope.get(1, b""))}
    api_version = type_meta.get(1, b"").decode()
    kind = type_meta.get(2, b"").decode()
    if kind not in TYPES:
        raise ValueError(f"protobuf bodies of kind {kind!r} are not supported")
    obj = _decode(envelope.get(2, b""), TYPES[kind])
    obj["apiVersion"] = api_version
    obj["kind"] = kind
    return obj

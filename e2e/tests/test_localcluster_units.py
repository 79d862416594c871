"""Unit tests of the harness's pure parts: patches, schema validation, selectors, the
scheduler's node choice, quantities and protobuf decoding."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from e2e.localcluster import cel, meta, patch, protobuf, quantity, schema, tables
from e2e.localcluster.errors import ApiError
from e2e.localcluster.scheduler import choose_node
from e2e.localcluster.store import Store, Watcher

ROOT = Path(__file__).resolve().parents[2]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=10,
)
objects = st.dictionaries(st.text(max_size=4), json_values, max_size=4)


# ---- patches ------------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "body", "expected"), [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
])
def test_merge_patch_follows_rfc7386(target: Any, body: Any, expected: Any) -> None:
    assert patch.merge_patch(target, body) == expected


@given(objects)
def test_merge_patch_with_itself_or_nothing_is_identity(obj: dict[str, Any]) -> None:
    without_nulls = patch.merge_patch({}, obj)
    assert patch.merge_patch(without_nulls, {}) == without_nulls
    assert patch.merge_patch(without_nulls, without_nulls) == without_nulls


def test_json_patch_operations_and_failing_test() -> None:
    doc = {"spec": {"list": [1, 2], "a": 1}}
    result = patch.json_patch(doc, [
        {"op": "add", "path": "/spec/list/-", "value": 3},
        {"op": "remove", "path": "/spec/list/0"},
        {"op": "replace", "path": "/spec/a", "value": 5},
        {"op": "copy", "from": "/spec/a", "path": "/spec/b"},
        {"op": "move", "from": "/spec/b", "path": "/spec/c"},
        {"op": "test", "path": "/spec/c", "value": 5},
        {"op": "add", "path": "/metadata~1x", "value": {}},
    ])
    assert result == {"spec": {"list": [2, 3], "a": 5, "c": 5}, "metadata/x": {}}
    assert doc == {"spec": {"list": [1, 2], "a": 1}}  # the input is not changed
    with pytest.raises(patch.PatchError) as info:
        patch.json_patch(doc, [{"op": "test", "path": "/spec/a", "value": 2}])
    assert info.value.test_failed
    with pytest.raises(patch.PatchError) as missing:
        patch.json_patch(doc, [{"op": "remove", "path": "/nope"}])
    assert not missing.value.test_failed


def test_strategic_merge_merges_known_lists_by_key() -> None:
    env = [{"name": "K", "value": "1"}]
    pod = {"spec": {"containers": [{"name": "a", "image": "x", "env": env},
                                   {"name": "b", "image": "y"}],
                    "finalizers": ["f1"]}}
    body = {"spec": {"containers": [{"name": "a", "env": [{"name": "L", "value": "2"}]},
                                    {"name": "b", "$patch": "delete"},
                                    {"name": "c", "image": "z"}],
                     "finalizers": ["f2"]}}
    result = patch.strategic_merge_patch(pod, body)
    assert result["spec"]["containers"] == [
        {"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}, {"name": "L",
                                                                            "value": "2"}]},
        {"name": "c", "image": "z"}]
    assert result["spec"]["finalizers"] == ["f1", "f2"]
    assert patch.strategic_merge_patch({"args": [1, 2]}, {"args": [3]}) == {"args": [3]}


def test_apply_removes_only_what_the_same_manager_stopped_applying() -> None:
    live = {"data": {"a": "1", "b": "2", "theirs": "x"}, "metadata": {"name": "n"}}
    previous = {"data": {"a": "1", "b": "2"}, "metadata": {"name": "n"}}
    applied = {"data": {"a": "3"}, "metadata": {"name": "n"}}
    result = patch.apply_merge(patch.remove_unapplied(live, previous, applied), applied)
    assert result == {"data": {"a": "3", "theirs": "x"}, "metadata": {"name": "n"}}


# ---- schema ------------------------------------------------------------------------------
SPEC_SCHEMA = {"type": "object", "properties": {"spec": {
    "type": "object", "required": ["workers"], "properties": {
        "mode": {"type": "string", "enum": ["ps-sync", "allreduce"], "default": "ps-sync"},
        "workers": {"type": "object", "properties": {
            "min": {"type": "integer", "minimum": 0}, "max": {"type": "integer", "maximum": 8}},
            "x-kubernetes-validations": [{"rule": "self.min <= self.max",
                                          "message": "min must be <= max"}]},
        "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "minLength": 1}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "port": {"x-kubernetes-int-or-string": True},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "opt": {"type": "string", "nullable": True},
    }}}}


def causes_of(obj: dict[str, Any]) -> list[str]:
    return [c.text() for c in schema.validate(SPEC_SCHEMA, obj)]


@pytest.mark.parametrize(("spec", "expected"), [
    ({"workers": {"min": 1, "max": 2}}, []),
    ({}, ["spec.workers: Required value"]),
    ({"workers": {"min": -1}}, ["spec.workers.min: Invalid value: -1: spec.workers.min in body "
                                "should be greater than or equal to 0"]),
    ({"workers": {"max": 9}}, ["spec.workers.max: Invalid value: 9: spec.workers.max in body "
                               "should be less than or equal to 8"]),
    ({"workers": {"min": 3, "max": 2}}, ['spec.workers: Invalid value: "object": min must be '
                                         "<= max"]),
    ({"workers": {}, "mode": "x"}, ['spec.mode: Unsupported value: "x": supported values: '
                                    '"ps-sync", "allreduce"']),
    ({"workers": {}, "ratio": 0}, ["spec.ratio: Invalid value: 0: spec.ratio in body should be "
                                   "greater than 0"]),
    ({"workers": {}, "tags": ["a", ""]}, ['spec.tags[1]: Invalid value: "": spec.tags[1] in body '
                                          "should be at least 1 chars long"]),
    ({"workers": {}, "tags": ["a", "b", "c"]}, ["spec.tags: Too many: 3: must have at most 2 "
                                                "items"]),
    ({"workers": {}, "labels": {"k": 1}}, ['spec.labels.k: Invalid value: "integer": '
                                           'spec.labels.k in body must be of type string: '
                                           '"integer"']),
    ({"workers": {}, "port": 1.5}, ['spec.port: Invalid value: "number": spec.port in body '
                                    'must be of type integer or string: "number"']),
    ({"workers": {}, "port": "http", "opt": None, "free": {"x": [1]}}, []),
])
def test_validation_messages_match_the_api_server(spec: dict[str, Any],
                                                  expected: list[str]) -> None:
    assert causes_of({"spec": spec}) == expected


def test_defaults_then_pruning() -> None:
    obj: dict[str, Any] = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
                           "spec": {"workers": {"min": 1, "bogus": 2}, "free": {"y": 1}},
                           "top": 1}
    schema.apply_defaults(SPEC_SCHEMA, obj)
    assert obj["spec"]["mode"] == "ps-sync"
    assert sorted(schema.prune(SPEC_SCHEMA, obj)) == ["spec.workers.bogus", "top"]
    assert obj["spec"]["free"] == {"y": 1} and obj["metadata"] == {"name": "n"}


# ---- selectors and names ---------------------------------------------------------------------
@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ("a=b", {"a": "b"}, True),
    ("a==b,c!=d", {"a": "b", "c": "e"}, True),
    ("a!=b", {}, True),
    ("a in (x, y),b notin (z)", {"a": "y", "b": "q"}, True),
    ("a in (x,y)", {"a": "z"}, False),
    ("a", {"a": ""}, True),
    ("!a", {"a": "1"}, False),
    ("", {}, True),
])
def test_label_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert meta.labels_match(meta.parse_label_selector(selector), labels) is matches


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
                       st.from_regex(r"[a-z0-9]{0,5}", fullmatch=True), max_size=4))
def test_an_object_matches_a_selector_of_its_own_labels(labels: dict[str, str]) -> None:
    text = ",".join(f"{k}={v}" for k, v in labels.items())
    assert meta.labels_match(meta.parse_label_selector(text), labels)


def test_field_selectors_and_unknown_fields() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"},
           "spec": {"nodeName": "node-1"}}
    reqs = meta.parse_field_selector("status.phase=Running,spec.nodeName!=node-0", "pods")
    assert meta.fields_match(reqs, pod)
    assert not meta.fields_match(meta.parse_field_selector("metadata.name=q", "pods"), pod)
    with pytest.raises(ApiError) as info:
        meta.parse_field_selector("spec.size=1", "widgets")
    assert info.value.code == 400


def test_names_and_labels_are_validated_like_the_api_server() -> None:
    assert meta.dns1123_subdomain_errors("a" * 253) == []
    assert meta.dns1123_subdomain_errors("a" * 254) == ["must be no more than 253 characters"]
    assert meta.dns1123_label_errors("a" * 64)[0] == "must be no more than 63 characters"
    assert meta.dns1035_label_errors("1abc")
    causes = meta.metadata_causes({"name": "ok", "labels": {"k": "v" * 64, "bad key!": "x"}},
                                  meta.dns1123_subdomain_errors)
    assert [c.field for c in causes] == ["metadata.labels", "metadata.labels"]


# ---- the scheduler's choice --------------------------------------------------------------------
def node(name: str, gpus: int = 4, taints: list[dict[str, str]] | None = None,
         **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
            "spec": {"taints": taints or []},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110",
                                       "nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, gpus: int = 0, cpu: str = "1", on: str = "", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": name},
            "spec": {"nodeName": on, "containers": [{"name": "c", "resources": {
                "requests": {"cpu": cpu}, "limits": {"nvidia.com/gpu": str(gpus)}}}], **spec},
            "status": {"phase": "Running" if on else "Pending"}}


def test_choose_node_spreads_and_respects_resources() -> None:
    nodes = [node("node-0"), node("node-1")]
    assert choose_node(pod("p", gpus=2), nodes, []).node == "node-0"
    assert choose_node(pod("p", gpus=2), nodes, [pod("q", gpus=2, on="node-0")]).node == "node-1"
    full = [pod("a", gpus=4, on="node-0"), pod("b", gpus=3, on="node-1")]
    decision = choose_node(pod("p", gpus=2), nodes, full)
    assert decision.node is None
    assert decision.message == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    done = [pod("a", gpus=4, on="node-0")]
    done[0]["status"]["phase"] = "Succeeded"
    assert choose_node(pod("p", gpus=4), [node("node-0")], done).node == "node-0"


def test_choose_node_selectors_affinity_and_taints() -> None:
    taint = {"key": "gpu", "value": "a100", "effect": "NoSchedule"}
    nodes = [node("node-0", zone="a"), node("node-1", taints=[taint], zone="b")]
    assert choose_node(pod("p", nodeSelector={"zone": "b"}), nodes, []).message == (
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "1 node(s) had untolerated taint {gpu: a100}.")
    tolerant = pod("p", nodeSelector={"zone": "b"},
                   tolerations=[{"key": "gpu", "operator": "Exists"}])
    assert choose_node(tolerant, nodes, []).node == "node-1"
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn",
                                                     "values": ["a"]}]},
                              {"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": ["node-0"]}]}]}}}
    assert choose_node(pod("p", affinity=affinity), nodes, []).node == "node-0"


# ---- quantities and protobuf -------------------------------------------------------------------
@pytest.mark.parametrize(("text", "value"), [
    ("500m", 0.5), ("2", 2.0), (3, 3.0), ("32Gi", 32 * 2**30), ("1G", 1e9), ("1e3", 1000.0),
])
def test_quantities(text: Any, value: float) -> None:
    assert quantity.parse(text) == pytest.approx(value)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def test_protobuf_configmap_decodes_to_json() -> None:
    entry = _field(1, "mode") + _field(2, "fast")
    meta_bytes = _field(1, "settings") + _field(3, "default") + _field(11, _field(1, "a")
                                                                       + _field(2, "b"))
    configmap = _field(1, meta_bytes) + _field(2, entry)
    envelope = protobuf.MAGIC + _field(1, _field(1, "v1") + _field(2, "ConfigMap")) + _field(
        2, configmap)
    assert protobuf.decode(envelope) == {
        "apiVersion": "v1", "kind": "ConfigMap", "data": {"mode": "fast"},
        "metadata": {"name": "settings", "namespace": "default", "labels": {"a": "b"}}}
    with pytest.raises(ValueError):
        protobuf.decode(protobuf.MAGIC + _field(1, _field(1, "apps/v1") + _field(2, "Deployment")))


def test_merge_patch_does_not_alias_its_inputs() -> None:
    target = {"a": {"b": [1]}}
    body = {"c": {"d": 1}}
    result = patch.merge_patch(target, body)
    result["a"]["b"].append(2)
    result["c"]["d"] = 2
    assert target == {"a": {"b": [1]}} and body == {"c": {"d": 1}}
    assert copy.deepcopy(result) == result


# ---- CEL rules -------------------------------------------------------------------------------
ALLREDUCE_NO_PS = ("!has(self.mode) || self.mode != 'allreduce' || !has(self.parameterServers)"
                   " || self.parameterServers.max == 0")


@pytest.mark.parametrize(("rule", "value", "expected"), [
    ("self.min <= self.max", {"min": 1, "max": 2}, True),
    ("self.min <= self.max", {"min": 3, "max": 2}, False),
    (ALLREDUCE_NO_PS, {"mode": "allreduce", "parameterServers": {"max": 2}}, False),
    (ALLREDUCE_NO_PS, {"mode": "allreduce", "parameterServers": {"max": 0}}, True),
    (ALLREDUCE_NO_PS, {"mode": "ps-sync", "parameterServers": {"max": 2}}, True),
    ("has(self.x) && self.x > 0", {}, False),  # && short-circuits past the missing field
    ("self.x > 0 || true", {}, True),  # || absorbs the error on its other side
    ("size(self.l) == 2 && 'b' in self.l && self.l[0] == 'a'", {"l": ["a", "b"]}, True),
    ("self.a * 2 + 1 >= 7 ? self.b : !self.b", {"a": 3, "b": True}, True),
    ("self['k'] / 2 == 2", {"k": 5}, True),  # integer division
    ("self.metadata.name.size() <= 3", {"metadata": {"name": "abc"}}, True),
    ("self.metadata.name.size() <= 3", {"metadata": {"name": "abcd"}}, False),
    ("self.l.size() == size(self.l) && self.m.size() == 1", {"l": [1, 2], "m": {"a": 1}},
     True),
    ("(self.s + 'x').size() == 2", {"s": "a"}, True),
])
def test_cel_subset(rule: str, value: Any, expected: bool) -> None:
    assert cel.holds(rule, value) is expected


@pytest.mark.parametrize("rule", ["self.l.all(x, x > 0)", "self == oldSelf",
                                  "self.name.startsWith('a')", "int(self.x) > 0",
                                  "self.name.size(1) == 1"])
def test_cel_outside_the_subset_is_reported_unsupported(rule: str) -> None:
    with pytest.raises(cel.Unsupported):
        cel.holds(rule, {"l": [1], "name": "a", "x": 1})


def test_size_of_a_scalar_is_a_runtime_error() -> None:
    with pytest.raises(cel.EvalError):
        cel.holds("self.x.size() == 1", {"x": 1})


def test_every_rule_of_the_trainingjob_crd_is_in_the_subset() -> None:
    """The local cluster skips rules it cannot evaluate; the CRD's must all be evaluated, or
    the bad-input scenario would pass against it without the rule ever running."""
    crd = yaml.safe_load((ROOT / "manifests" / "crd" / "trainingjobs.optimus.dev.yaml")
                         .read_text())
    rules: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            rules.extend(r["rule"] for r in node.get("x-kubernetes-validations") or [])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(crd)
    assert len(rules) >= 6
    for rule in rules:
        # a missing field at run time is fine: the rule itself was understood
        with contextlib.suppress(cel.EvalError):
            cel.holds(rule, {})


@pytest.mark.parametrize(("length", "refused"), [(40, False), (41, True), (63, True)])
def test_the_crd_refuses_a_name_longer_than_the_operator_allows(length: int,
                                                                refused: bool) -> None:
    crd = yaml.safe_load((ROOT / "manifests" / "crd" / "trainingjobs.optimus.dev.yaml")
                         .read_text())
    (version,) = crd["spec"]["versions"]
    (sample,) = [doc for doc in yaml.safe_load_all(
        (ROOT / "manifests" / "samples" / "tiny-cpu.yaml").read_text())
        if doc["kind"] == "TrainingJob"]
    sample["metadata"]["name"] = "j" * length
    causes = [c.text() for c in schema.validate(version["schema"]["openAPIV3Schema"], sample)]
    assert bool(causes) is refused, causes
    assert all("metadata.name must be at most 40 characters" in c for c in causes)


def test_unsupported_or_failing_rules_never_reject() -> None:
    rules = {"type": "object", "x-kubernetes-validations": [
        {"rule": "self.l.all(x, x > 0)"}, {"rule": "self.missing > 0"}]}
    assert schema.validate(rules, {"l": [-1]}) == []
    failing = {"type": "object", "x-kubernetes-validations": [{"rule": "self.a < self.b"}]}
    assert [c.text() for c in schema.validate(failing, {"a": 2, "b": 1}, "spec")] == [
        'spec: Invalid value: "object": failed rule: self.a < self.b']


# ---- printing ----------------------------------------------------------------------------------
def test_jsonpath_for_printer_columns() -> None:
    obj = {"status": {"conditions": [{"type": "Ready", "status": "False"},
                                     {"type": "Valid", "status": "True"}],
                      "allocation": {"workers": 3}}}
    assert tables.jsonpath(obj, ".status.allocation.workers") == [3]
    assert tables.jsonpath(obj, '.status.conditions[?(@.type=="Valid")].status') == ["True"]
    assert tables.jsonpath(obj, ".status.conditions[0].type") == ["Ready"]
    assert tables.jsonpath(obj, ".status.conditions[*].type") == ["Ready", "Valid"]
    assert tables.jsonpath(obj, ".spec.missing") == []


def test_store_watchers_see_objects_entering_and_leaving_a_selection() -> None:
    store = Store(history_limit=3)
    watcher = Watcher(("", "pods"), "ns", meta.parse_label_selector("app=a"), [])
    store.watchers.add(watcher)
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "b"}}}
    first = store.write(("", "pods"), pod, None)
    labelled = copy.deepcopy(first)
    labelled["metadata"]["labels"] = {"app": "a"}
    second = store.write(("", "pods"), labelled, first)
    store.write(("", "pods"), first, second)
    seen = []
    while not watcher.queue.empty():
        change = watcher.queue.get_nowait()
        assert change is not None
        translated = watcher.translate(change)
        seen.append(translated[0] if translated else None)
    assert seen == [None, "ADDED", "DELETED"]
    since_first = int(first["metadata"]["resourceVersion"])
    assert [c.type for c in store.since(("", "pods"), since_first) or []] == ["MODIFIED",
                                                                              "MODIFIED"]
    store.remove(("", "pods"), "ns", "p")  # a fourth change pushes the first out
    assert store.since(("", "pods"), since_first - 1) is None
    assert [c.type for c in store.since(("", "pods"), since_first) or []] == [
        "MODIFIED", "MODIFIED", "DELETED"]

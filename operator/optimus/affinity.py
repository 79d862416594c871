"""What a pod asks of its node, typed (pure): its nodeSelector, the terms of its required node
affinity and its tolerations, parsed once from a pod template and matched against a node's
name, labels and taints by the placer (step 5).

Kubernetes' semantics: a pod fits a node when every nodeSelector label matches, at least one
required nodeSelectorTerm matches (a term matches when all its expressions and fields do),
and every NoSchedule/NoExecute taint is tolerated. Preferred terms are preferences, not
requirements: the placer does not read them (kube-scheduler still scores with them, among
the nodes the operator pinned, which is one).

`parse_node_requirements` reads the Kubernetes shape (`spec.nodeSelector`,
`spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`,
`spec.tolerations`) and raises `NodeRequirementError` naming the field and the fix;
`all_of` combines the requirements of a job's pod templates into one that accepts exactly
the nodes every one of them accepts (the placer puts a job's PS and workers on one set of
nodes).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Equal"  # "Equal" | "Exists"
    value: str = ""
    effect: str = ""  # "" matches every effect


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"  # "NoSchedule" | "PreferNoSchedule" | "NoExecute"



Operator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
OPERATORS: Final[tuple[str, ...]] = get_args(Operator)
#: the one node field Kubernetes lets matchFields select on
NODE_NAME_FIELD: Final = "metadata.name"
TOLERATION_OPERATORS: Final = ("Equal", "Exists")
TAINT_EFFECTS: Final = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class NodeRequirementError(ValueError):
    """A pod template's node requirements that Kubernetes would refuse or that match no node."""

    def __init__(self, path: str, problem: str, fix: str) -> None:
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path}: {problem}; fix: {fix}")


@dataclass(frozen=True)
class NodeSelectorRequirement:
    """One expression of a term: `key operator values` (Kubernetes' NodeSelectorRequirement)."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, value: str | None) -> bool:
        """Whether a node whose label `key` is `value` (None: no such label) satisfies it."""
        match self.operator:
            case "In":
                return value is not None and value in self.values
            case "NotIn":
                return value is None or value not in self.values
            case "Exists":
                return value is not None
            case "DoesNotExist":
                return value is None
            case "Gt" | "Lt":
                number = _integer(value)
                if number is None:
                    return False
                bound = int(self.values[0])
                return number > bound if self.operator == "Gt" else number < bound
        return False  # pragma: no cover - Operator is exhaustive


@dataclass(frozen=True)
class NodeSelectorTerm:
    """Expressions on the node's labels and on its fields (only metadata.name), all ANDed."""

    match_expressions: tuple[NodeSelectorRequirement, ...] = ()
    match_fields: tuple[NodeSelectorRequirement, ...] = ()

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        return all(e.matches(labels.get(e.key)) for e in self.match_expressions) and all(
            e.matches(name) for e in self.match_fields)


@dataclass(frozen=True)
class NodeRequirements:
    """What a pod asks of its node. `terms` are ORed; empty means no required affinity."""

    selector: tuple[tuple[str, str], ...] = ()
    terms: tuple[NodeSelectorTerm, ...] = ()
    tolerations: tuple[Toleration, ...] = ()

    def matches_labels(self, name: str, labels: Mapping[str, str]) -> bool:
        """The node-selection half (selector and affinity; taints are cluster.tolerates')."""
        if any(labels.get(key) != value for key, value in self.selector):
            return False
        return not self.terms or any(term.matches(name, labels) for term in self.terms)

    @property
    def uses_node_names(self) -> bool:
        return any(term.match_fields for term in self.terms)


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _mapping(raw: Any, path: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise NodeRequirementError(path, "is not an object", "write it as a mapping")
    return raw


def _list(raw: Any, path: str) -> Sequence[Any]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise NodeRequirementError(path, "is not a list", "write it as a list")
    return raw


def _requirement(raw: Any, path: str, *, field: bool) -> NodeSelectorRequirement:
    item = _mapping(raw, path)
    key, operator, values = item.get("key"), item.get("operator"), item.get("values")
    if not isinstance(key, str) or not key:
        raise NodeRequirementError(f"{path}.key", "is missing", "name the node label to match")
    if field and key != NODE_NAME_FIELD:
        raise NodeRequirementError(f"{path}.key", f"{key!r} is not a node field Kubernetes "
                                   f"selects on", f"use {NODE_NAME_FIELD}, or a label in "
                                   "matchExpressions")
    allowed = ("In", "NotIn") if field else OPERATORS
    if operator not in allowed:
        raise NodeRequirementError(f"{path}.operator", f"{operator!r} is not an operator here",
                                   f"use one of {', '.join(allowed)}")
    texts = tuple(str(v) for v in _list(values, f"{path}.values"))
    if operator in ("In", "NotIn") and not texts:
        raise NodeRequirementError(f"{path}.values", f"{operator} needs values",
                                   "list at least one value")
    if operator in ("Exists", "DoesNotExist") and texts:
        raise NodeRequirementError(f"{path}.values", f"{operator} takes no values",
                                   "remove values")
    if operator in ("Gt", "Lt") and (len(texts) != 1 or _integer(texts[0]) is None):
        raise NodeRequirementError(f"{path}.values", f"{operator} needs exactly one integer",
                                   "give one value such as '8'")
    return NodeSelectorRequirement(key, cast(Operator, operator), texts)


def _term(raw: Any, path: str) -> NodeSelectorTerm:
    term = _mapping(raw, path)
    expressions = tuple(
        _requirement(e, f"{path}.matchExpressions[{i}]", field=False)
        for i, e in enumerate(_list(term.get("matchExpressions"), f"{path}.matchExpressions")))
    fields = tuple(
        _requirement(e, f"{path}.matchFields[{i}]", field=True)
        for i, e in enumerate(_list(term.get("matchFields"), f"{path}.matchFields")))
    if not expressions and not fields:
        raise NodeRequirementError(path, "is an empty term, which Kubernetes matches with no "
                                   "node", "give it matchExpressions, or remove it")
    return NodeSelectorTerm(expressions, fields)


def _toleration(raw: Any, path: str) -> Toleration:
    item = _mapping(raw, path)
    operator = str(item.get("operator") or "Equal")
    if operator not in TOLERATION_OPERATORS:
        raise NodeRequirementError(f"{path}.operator", f"{operator!r} is not a toleration "
                                   "operator", "use Equal or Exists")
    effect = str(item.get("effect") or "")
    if effect and effect not in TAINT_EFFECTS:
        raise NodeRequirementError(f"{path}.effect", f"{effect!r} is not a taint effect",
                                   f"use one of {', '.join(TAINT_EFFECTS)}, or leave it out")
    return Toleration(str(item.get("key") or ""), operator, str(item.get("value") or ""),
                      effect)


def parse_node_requirements(pod_spec: Any, path: str = "spec") -> NodeRequirements:
    """The node requirements of a pod (or template) spec; `path` prefixes error paths."""
    spec = _mapping(pod_spec, path)
    selector = _mapping(spec.get("nodeSelector"), f"{path}.nodeSelector")
    affinity = _mapping(spec.get("affinity"), f"{path}.affinity")
    node_affinity = _mapping(affinity.get("nodeAffinity"), f"{path}.affinity.nodeAffinity")
    required_path = f"{path}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    terms: tuple[NodeSelectorTerm, ...] = ()
    if required is not None:
        raw_terms = _list(_mapping(required, required_path).get("nodeSelectorTerms"),
                          f"{required_path}.nodeSelectorTerms")
        if not raw_terms:
            raise NodeRequirementError(f"{required_path}.nodeSelectorTerms", "is empty",
                                       "give at least one term, or remove "
                                       "requiredDuringSchedulingIgnoredDuringExecution")
        terms = tuple(_term(t, f"{required_path}.nodeSelectorTerms[{i}]")
                      for i, t in enumerate(raw_terms))
    tolerations = tuple(_toleration(t, f"{path}.tolerations[{i}]")
                        for i, t in enumerate(_list(spec.get("tolerations"),
                                                    f"{path}.tolerations")))
    return NodeRequirements(
        selector=tuple(sorted((str(k), str(v)) for k, v in selector.items())),
        terms=terms,
        tolerations=tolerations,
    )


def all_of(requirements: Iterable[NodeRequirements]) -> NodeRequirements:
    """One requirement that accepts exactly the nodes' labels every one of `requirements`
    accepts, and tolerates a taint only when all of them do (a toleration they share; a
    taint each tolerates through a different toleration is conservatively not tolerated).

    Selectors are merged (a key with two values becomes an In-term on the second, which no
    node matches), and the terms are ANDed by distributing: (a or b) and (c) = (a and c) or
    (b and c)."""
    parts = list(requirements)
    if not parts:
        return NodeRequirements()
    selector: dict[str, str] = {}
    conflicts: list[NodeSelectorRequirement] = []
    for part in parts:
        for key, value in part.selector:
            if selector.setdefault(key, value) != value:
                conflicts.append(NodeSelectorRequirement(key, "In", (value,)))
    term_sets = [part.terms for part in parts if part.terms]
    if conflicts:
        term_sets.append((NodeSelectorTerm(tuple(conflicts)),))
    terms = tuple(
        NodeSelectorTerm(
            tuple(e for term in combination for e in term.match_expressions),
            tuple(f for term in combination for f in term.match_fields),
        )
        for combination in itertools.product(*term_sets)
    ) if term_sets else ()
    shared = tuple(t for t in parts[0].tolerations
                   if all(t in part.tolerations for part in parts[1:]))
    return NodeRequirements(tuple(sorted(selector.items())), terms, shared)

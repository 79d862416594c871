"""A small subset of CEL for `x-kubernetes-validations` rules.

Evaluated: `self` and field access (`self.a.b`, `self['a']`, list indexing), literals (int,
float, string, bool, null, lists), `has(self.x)`, `size(x)` and `x.size()`, `!`, `&&`,
`||`, `? :`, comparisons (`== != < <= > >=`, `in`), arithmetic (`+ - * / %`). Anything
else (macros such as `all`/`exists`, other methods, `oldSelf` transition rules,
`messageExpression`) raises `Unsupported`, and the caller skips the rule; a runtime error
(a missing field) also skips it rather than reject an object a real server might accept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


class Unsupported(Exception):
    """The rule uses CEL this evaluator does not implement."""


class EvalError(Exception):
    """The rule failed at run time (e.g. a missing field)."""


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>\d+\.\d+|\d+)u?
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>\|\||&&|==|!=|<=|>=|[<>!()\[\].,+\-*/%?:])
    | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.VERBOSE)

_MISSING = object()


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise Unsupported(f"cannot read {text[position:]!r}")
        position = match.end()
        if match.group("num") is not None:
            raw = match.group("num")
            out.append(("lit", float(raw) if "." in raw else int(raw)))
        elif match.group("str") is not None:
            out.append(("lit", bytes(match.group("str")[1:-1], "utf-8").decode("unicode_escape")))
        elif match.group("op") is not None:
            out.append(("op", match.group("op")))
        else:
            word = match.group("id")
            literal = {"true": True, "false": False, "null": None}
            out.append(("lit", literal[word]) if word in literal else ("id", word))
    return out


Thunk = Callable[[], Any]


class _Parser:
    """Recursive descent into closures, evaluated afterwards (so && and || short-circuit,
    and absorb errors on their other side, as CEL's commutative logic does)."""

    def __init__(self, text: str, self_value: Any) -> None:
        self.tokens = _tokens(text)
        self.position = 0
        self.self_value = self_value

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise Unsupported(f"expected {value!r}")
        self.position += 1
        return token

    def accept(self, value: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] == value:
            self.position += 1
            return True
        return False

    def run(self) -> Thunk:
        thunk = self.ternary()
        if self.peek() is not None:
            raise Unsupported("trailing input")
        return thunk

    def ternary(self) -> Thunk:
        condition = self.disjunction()
        if self.accept("?"):
            yes = self.ternary()
            self.take(":")
            no = self.ternary()
            return lambda: yes() if _truth(condition()) else no()
        return condition

    def disjunction(self) -> Thunk:
        thunk = self.conjunction()
        while self.accept("||"):
            thunk = _logic(thunk, self.conjunction(), absorbing=True)
        return thunk

    def conjunction(self) -> Thunk:
        thunk = self.relation()
        while self.accept("&&"):
            thunk = _logic(thunk, self.relation(), absorbing=False)
        return thunk

    def relation(self) -> Thunk:
        left = self.additive()
        token = self.peek()
        if token and ((token[0] == "op" and token[1] in _COMPARE) or token == ("id", "in")):
            self.position += 1
            right = self.additive()
            return _binary(_COMPARE.get(token[1], lambda a, b: a in b), left, right)
        return left

    def additive(self) -> Thunk:
        thunk = self.multiplicative()
        while (token := self.peek()) and token[0] == "op" and token[1] in ("+", "-"):
            self.position += 1
            thunk = _binary(_ARITHMETIC[token[1]], thunk, self.multiplicative())
        return thunk

    def multiplicative(self) -> Thunk:
        thunk = self.unary()
        while (token := self.peek()) and token[0] == "op" and token[1] in ("*", "/", "%"):
            self.position += 1
            thunk = _binary(_ARITHMETIC[token[1]], thunk, self.unary())
        return thunk

    def unary(self) -> Thunk:
        if self.accept("!"):
            inner = self.unary()
            return lambda: not _truth(inner())
        if self.accept("-"):
            negated = self.unary()
            return _binary(lambda a, _b: -a, negated, lambda: None)
        return self.postfix(self.primary())

    def primary(self) -> Thunk:
        kind, value = self.take()
        if kind == "lit":
            return lambda: value
        if kind == "op" and value == "(":
            inner = self.ternary()
            self.take(")")
            return inner
        if kind == "op" and value == "[":
            items: list[Thunk] = []
            if not self.accept("]"):
                items.append(self.ternary())
                while self.accept(","):
                    items.append(self.ternary())
                self.take("]")
            return lambda: [item() for item in items]
        if kind == "id" and value == "self":
            return lambda: self.self_value
        if kind == "id" and value == "has":
            self.take("(")
            self.take("self")
            names: list[str] = []
            while self.accept("."):
                names.append(str(self.take()[1]))
            self.take(")")
            return lambda: _lookup(self.self_value, names) is not _MISSING
        if kind == "id" and value == "size":
            self.take("(")
            inner = self.ternary()
            self.take(")")
            return _size(inner)
        raise Unsupported(f"unsupported {value!r}")

    def postfix(self, thunk: Thunk) -> Thunk:
        while True:
            if self.accept("."):
                kind, name = self.take()
                if kind != "id":
                    raise Unsupported("field name expected")
                if self.peek() == ("op", "("):
                    if name != "size":
                        raise Unsupported(f"method or macro {name}()")
                    self.take("(")
                    self.take(")")
                    thunk = _size(thunk)
                    continue
                thunk = _binary(_index, thunk, _constant(name))
            elif self.accept("["):
                key = self.ternary()
                self.take("]")
                thunk = _binary(_index, thunk, key)
            else:
                return thunk


def _size(inner: Thunk) -> Thunk:
    """CEL's size(x) and x.size(): characters of a string, items of a list or map."""
    return _binary(lambda a, _b: len(a) if isinstance(a, str | list | dict) else
                   _fail("size() of a scalar"), inner, lambda: None)


def _constant(value: Any) -> Thunk:
    return lambda: value


def _fail(message: str) -> Any:
    raise EvalError(message)


def _index(container: Any, key: Any) -> Any:
    try:
        if isinstance(container, dict) and isinstance(key, str):
            return container[key]
        if isinstance(container, list) and isinstance(key, int):
            return container[key]
    except (KeyError, IndexError):
        pass
    raise EvalError(f"no such key: {key}")


def _lookup(value: Any, names: list[str]) -> Any:
    for name in names:
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _binary(op: Callable[[Any, Any], Any], left: Thunk, right: Thunk) -> Thunk:
    def run() -> Any:
        try:
            return op(left(), right())
        except (TypeError, ZeroDivisionError) as exc:
            raise EvalError(str(exc)) from exc
    return run


def _logic(left: Thunk, right: Thunk, absorbing: bool) -> Thunk:
    """CEL's || (absorbing=True) and && (False): a decisive side wins over an error."""
    def run() -> bool:
        error: EvalError | None = None
        for side in (left, right):
            try:
                if _truth(side()) is absorbing:
                    return absorbing
            except EvalError as exc:
                error = exc
        if error is not None:
            raise error
        return not absorbing
    return run


def _divide(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return a / b


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": _divide, "%": lambda a, b: a % b,
}


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise EvalError("a condition is not a boolean")
    return value


def holds(rule: str, self_value: Any) -> bool:
    """Whether `rule` holds for `self_value`; raises Unsupported or EvalError."""
    if "oldSelf" in rule:
        raise Unsupported("transition rules")
    return _truth(_Parser(rule, self_value).run()())

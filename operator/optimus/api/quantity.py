"""Kubernetes resource quantities ("500m", "2Gi", "1e3") as numbers (pure).

The TrainingJob's pod templates and the nodes' allocatable resources carry quantities as
strings; the snapshot (optimus.kube) and the parser (optimus.api.spec) turn them into
floats here, once.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([a-zA-Z]*)$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: object) -> float:
    """The number a quantity stands for: "500m" -> 0.5, "2Gi" -> 2147483648.0, 3 -> 3.0."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity; write a number such as 2, 500m or 1Gi")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise QuantityError(f"{value!r} is not a quantity; write a number such as 2, 500m or 1Gi")
    match = _QUANTITY.match(value.strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise QuantityError(
            f"{value!r} is not a quantity; write a number with an optional suffix "
            "(m, k, M, G, Ki, Mi, Gi, ...), e.g. 500m or 2Gi"
        )
    number, suffix = match.groups()
    if "e" in number.lower() and suffix:
        raise QuantityError(f"{value!r} mixes an exponent and a suffix; use one of them")
    try:
        return float(Decimal(number) * _SUFFIXES[suffix])
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        raise QuantityError(f"{value!r} is not a number") from None

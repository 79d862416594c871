"""Amounts of schedulable resources, and the Kubernetes quantities they are written in
(pure; a leaf: it imports nothing from optimus).

The TrainingJob's pod templates (optimus.api), the nodes' allocatable resources
(optimus.kube's snapshot) and a plan input's cluster (optimus.scheduling.plan) carry
quantities as strings such as "500m" or "2Gi"; `parse_quantity` turns each into a float,
once, and `Resources` adds them up. The CRD types and the allocator both stand on this
module, so neither has to import the other.

`parse_quantity` is the only quantity parser of the operator. The kubernetes client ships
one (`kubernetes.utils.parse_quantity`), but the pure layers may not import kubernetes
(pyproject.toml's import-linter contracts); a property test holds the two to the same
value on every quantity that Kubernetes' grammar admits (tests/test_resources.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
# Kubernetes' grammar: a signed decimal number, then a binary or decimal SI suffix or a
# decimal exponent (e3, E-2), never both
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([a-zA-Z]*)$")


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity."""


def parse_quantity(value: object) -> float:
    """The number a quantity stands for: "500m" -> 0.5, "2Gi" -> 2147483648.0, 3 -> 3.0.

    Numbers pass through (YAML and JSON give 2 for "2"); booleans, other types and text
    outside Kubernetes' grammar raise QuantityError with the fix.
    """
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity; write a number such as 2, 500m or 1Gi")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise QuantityError(f"{value!r} is not a quantity; write a number such as 2, 500m or 1Gi")
    match = _QUANTITY.match(value)
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


@dataclass(frozen=True)
class Resources:
    """An amount of each schedulable resource: GPUs, CPU cores, memory in bytes."""

    gpu: float = 0.0
    cpu: float = 0.0
    memory: float = 0.0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.gpu + other.gpu, self.cpu + other.cpu, self.memory + other.memory)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.gpu - other.gpu, self.cpu - other.cpu, self.memory - other.memory)

    def scale(self, factor: float) -> Resources:
        return Resources(self.gpu * factor, self.cpu * factor, self.memory * factor)

    def fits_in(self, capacity: Resources, eps: float = 1e-9) -> bool:
        """True when every component of self is at most capacity's."""
        return (
            self.gpu <= capacity.gpu + eps
            and self.cpu <= capacity.cpu + eps
            and self.memory <= capacity.memory + eps
        )

    def dominant_share(self, total: Resources) -> float:
        """The largest fraction of the cluster's total that this amount takes (DRF's share)."""
        shares = [
            part / whole
            for part, whole in ((self.gpu, total.gpu), (self.cpu, total.cpu),
                                (self.memory, total.memory))
            if whole > 0
        ]
        return max(shares, default=0.0)


ZERO = Resources()

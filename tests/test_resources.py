"""The one quantity parser (optimus.resources) against the kubernetes client's.

The pure layers may not import kubernetes, so the operator keeps its own parser; these
tests hold it to `kubernetes.utils.parse_quantity` on every quantity of Kubernetes'
grammar, so the two cannot drift apart.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils import parse_quantity as kubernetes_parse_quantity
from optimus.resources import QuantityError, parse_quantity

_BINARY_SI = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL_SI = ("n", "u", "m", "", "k", "M", "G", "T", "P", "E")

_digits = st.text("0123456789", min_size=1, max_size=12)
_unsigned = st.one_of(
    _digits,
    st.builds(lambda a, b: f"{a}.{b}", _digits, _digits),
    st.builds(lambda a: f"{a}.", _digits),
    st.builds(lambda b: f".{b}", _digits),
)
_signed = st.builds(lambda sign, number: sign + number, st.sampled_from(["", "+", "-"]), _unsigned)
_exponent = st.builds(
    lambda e, sign, power: f"{e}{sign}{power}",
    st.sampled_from("eE"), st.sampled_from(["", "+", "-"]), st.integers(0, 30),
)
#: <quantity> ::= <signedNumber><suffix>, suffix a binary SI, decimal SI or decimal exponent
#: (k8s.io/apimachinery/pkg/api/resource/quantity.go)
_quantities = st.builds(
    lambda number, suffix: number + suffix,
    _signed,
    st.one_of(st.sampled_from(_BINARY_SI + _DECIMAL_SI), _exponent),
)


@given(_quantities)
def test_every_kubernetes_quantity_parses_as_the_kubernetes_client_parses_it(text: str) -> None:
    assert parse_quantity(text) == float(kubernetes_parse_quantity(text))


@given(st.text(alphabet="0123456789.+-eEkKmMGgiIunTPx ", max_size=8))
def test_whatever_it_accepts_the_kubernetes_client_reads_the_same(text: str) -> None:
    try:
        ours = parse_quantity(text)
    except QuantityError:
        return  # stricter than the client (e.g. "1e3Gi", "1K") is allowed
    assert ours == float(kubernetes_parse_quantity(text))


@given(st.one_of(st.integers(-(10**12), 10**12), st.floats(allow_nan=False)))
def test_numbers_pass_through(number: float) -> None:
    assert parse_quantity(number) == float(number)


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", 0.5), ("2Gi", 2.0 * 2**30), ("1e3", 1000.0), (3, 3.0), ("1.5", 1.5), ("10k", 1e4),
     ("-.5E", -5e17), ("100n", 1e-7)],
)
def test_quantities(text: object, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "hint"),
    [("", "500m or 2Gi"), ("lots", "500m or 2Gi"), ("1Qi", "500m or 2Gi"), (" 1", "500m or 2Gi"),
     (True, "such as 2"), (None, "such as 2"), ("1e3Gi", "use one of them")],
)
def test_bad_quantities_say_how_to_write_one(text: object, hint: str) -> None:
    with pytest.raises(QuantityError, match=hint):
        parse_quantity(text)

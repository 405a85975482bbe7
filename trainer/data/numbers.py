"""Exact numbers: the canonical decimal form every answer is stored and compared in.

``answer`` is always a *canonical decimal string* (:func:`canonical_number`):

* an optional ``-``, the integer part without leading zeros or separators and, only when the value
  is not whole, a ``.`` and the fractional digits without trailing zeros: ``"42"``, ``"-7"``,
  ``"12.5"``, ``"0.75"``; zero is ``"0"`` (never ``"-0"``), and there is never an exponent;
* exact: it is computed with integers and :class:`~fractions.Fraction`, never through float
  arithmetic, so ``"0.3"`` and never ``"0.30000000000000004"``;
* a value without a terminating decimal expansion (``1/3``) has no canonical form and is rejected.

Numbers :func:`canonical_number` accepts:

* ints, and finite floats read as their shortest ``repr`` (so the JSON ``0.1`` is exactly ``0.1``);
* strings, surrounding whitespace ignored, holding an optional sign (``-``, ``+``, or U+2212 MINUS
  SIGN) and either a decimal (``"42"``, ``"-3.5"``, ``".5"``, ``"3."``) with optional thousands
  separators in groups of exactly three (``"1,234,567"``; ``"1,23"`` is rejected as ambiguous), or
  a simple fraction of integers (``"3/4"`` -> ``"0.75"``);
* nothing else: booleans, NaN, infinities, exponents, currency and percent signs are rejected.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Final

__all__ = ["canonical_number", "format_decimal", "to_fraction"]

_MINUS_SIGNS: Final = frozenset("-\u2212")
_DECIMAL_RE: Final = re.compile(r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?:\.(?P<frac>\d*))?")
_FRACTION_RE: Final = re.compile(r"(?P<num>\d+)\s*/\s*(?P<den>\d+)")


def _parse_text(text: str) -> Fraction:
    body = text.strip()
    negative = False
    if body[:1] in ("-", "+", "\u2212"):
        negative = body[0] in _MINUS_SIGNS
        body = body[1:]
    value: Fraction
    if (frac_match := _FRACTION_RE.fullmatch(body)) is not None:
        denominator = int(frac_match["den"])
        if denominator == 0:
            raise ValueError(f"zero denominator: {text!r}")
        value = Fraction(int(frac_match["num"]), denominator)
    else:
        match = _DECIMAL_RE.fullmatch(body)
        # The pattern also matches "" and "." : a number needs at least one digit.
        if match is None or not any(ch.isdigit() for ch in body):
            raise ValueError(f"not a number: {text!r}")
        digits = match["frac"] or ""
        whole = int((match["int"] or "0").replace(",", ""))
        scale = 10 ** len(digits)
        value = Fraction(whole * scale + int(digits or "0"), scale)
    return -value if negative else value


def to_fraction(value: object) -> Fraction:
    # bool is an int subclass, but `"answer": true` is a data error, not the number 1.
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a number: {value!r}")
        # repr is the shortest string that round-trips, i.e. the decimal the JSON file spelled;
        # Fraction(value) would be the binary approximation (0.1 -> 3602879701896397/2**55).
        return Fraction(repr(value))
    if isinstance(value, str):
        return _parse_text(value)
    raise ValueError(f"not a number: {value!r}")


def format_decimal(value: Fraction) -> str:
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        raise ValueError(f"{value} has no exact decimal representation")
    # The smallest power of ten the denominator divides leaves no trailing zeros to strip.
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    sign = "-" if value < 0 else ""
    if places == 0:
        return f"{sign}{scaled}"
    digits = str(scaled).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def canonical_number(value: str | int | float) -> str:
    """The canonical decimal string of ``value`` (rules in the module docstring).

    Raises:
        ValueError: ``value`` is not a number, or has no terminating decimal expansion.
    """
    return format_decimal(to_fraction(value))

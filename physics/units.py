"""Units: one pint registry for the whole program, with the codes an MES sends.

Twin specs, requests and sensor maps name units as text. ``parse_unit`` reads that text
(pint's own names, UCUM codes and UNECE Recommendation 20 common codes), ``convert``
turns a value in a sent unit into the spec's unit, so everything inside works on plain
floats in the spec's unit. The registry is built on first use (pint's "one registry
per application"): importing this module costs nothing.

Where the extra spellings come from:

* UCUM, The Unified Code for Units of Measure (Regenstrief Institute), case-sensitive
  codes, https://ucum.org/ucum: ``um``, ``mm``, ``m``, ``/min``, ``{rpm}`` (an
  annotation: the unit is 1/min), ``Cel``, ``K``, ``s``, ``min``, ``h``, ``N``, ``W``,
  ``kW``, ``J``, ``deg``, ``%``, ``1``.
* UNECE Recommendation No. 20, Codes for Units of Measure Used in International Trade,
  Rev. 17 (2021), Annexes II and III, https://unece.org/trade/uncefact/cl-recommendations
  (machine-readable copy: github.com/uncefact/vocab-codes, CLR/Rec20): ``4H``
  micrometre, ``MMT`` millimetre, ``MTR`` metre, ``RPM`` revolutions per minute
  (1.666 67 x 10^-2 s^-1), ``CEL`` degree Celsius, ``KEL`` kelvin, ``SEC`` second,
  ``MIN`` minute, ``HUR`` hour, ``NEW`` newton, ``WTT`` watt, ``KWT`` kilowatt, ``HTZ`` hertz,
  ``JOU`` joule, ``KJO`` kilojoule, ``DD`` degree [unit of angle], ``P1`` percent, ``C62`` one,
  ``H87`` piece, ``EA`` each.
* Currency is a dimension of its own (ISO 4217 codes, ``EUR``): a price converts to
  nothing but itself.

A revolution per minute is 1/min here, as in UCUM and UNECE (a spindle speed of 6000 rpm
is 100 Hz); pint's own ``rpm`` counts a revolution as 2 pi radians, which would turn
6000 rpm into 37699 1/min.

Exceptions::

    ValueError
    └── UnitError   a unit that does not parse, or two units that do not convert
"""

from __future__ import annotations

import math
import re
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pint

__all__ = ["EXAMPLES", "UnitError", "convert", "dimension", "parse_unit", "registry"]

# Shown when a unit does not parse, so the caller sees how to write one.
EXAMPLES = ("um", "µm", "4H", "mm", "MMT", "1/min", "rpm", "RPM", "Cel", "degC", "s", "%")

# Codes pint's parser cannot read as a name (a leading digit, braces, a bare "/"):
# looked up as whole strings before parsing.
_WHOLE = {"4H": "micrometer", "{rpm}": "1 / minute", "/min": "1 / minute"}

# Definitions added to pint's defaults. Aliases of pint's own units where the unit
# exists; new units where pint has none (currency, pieces) or where its meaning differs
# (rpm, see the module docstring).
_DEFINITIONS = (
    "revolutions_per_minute = 1 / minute = rpm = RPM",
    "MMT = millimeter",
    "@alias meter = MTR",
    "@alias degree_Celsius = Cel = CEL",
    "@alias kelvin = KEL",
    "@alias second = SEC",
    "@alias minute = MIN",
    "@alias hour = HUR",
    "@alias newton = NEW",
    "@alias watt = WTT",
    "@alias hertz = HTZ",
    "KWT = 1000 * watt",
    "@alias joule = JOU",
    "KJO = 1000 * joule",
    "@alias degree = DD",
    "@alias percent = P1",
    "C62 = 1",
    "piece = 1 = _ = pieces = part = parts = H87 = EA",
    "euro = [currency] = EUR",
)


class UnitError(ValueError):
    """A unit that does not parse (``unit``), or does not convert to ``expected``."""

    def __init__(self, message: str, *, unit: str, expected: str | None = None) -> None:
        self.unit = unit
        self.expected = expected
        super().__init__(message)


@cache
def registry() -> pint.UnitRegistry:
    """The program's one unit registry (built on first use)."""
    import pint

    # "ignore" only lets our rpm replace pint's (the one intended redefinition);
    # tests/physics/test_units.py checks every alias against pint's own units.
    reg: pint.UnitRegistry = pint.UnitRegistry(
        on_redefinition="ignore", autoconvert_offset_to_baseunit=False)
    for line in _DEFINITIONS:
        reg.define(line)
    return reg


@cache
def _parsed(text: str) -> Any:
    reg = registry()
    source = _WHOLE.get(text, text)
    if not source or source != source.strip() or re.search(r"\d\s*[A-Za-z]", source):
        # "4 mm" would parse as a unit four times a millimetre: no unit is a number.
        raise _unknown(text)
    try:
        unit = reg.parse_units(source)
    except Exception:  # pint's UndefinedUnitError, or a tokenizer/syntax error
        raise _unknown(text) from None
    return unit


def _unknown(text: str) -> UnitError:
    return UnitError(
        f"{text!r} is not a unit; write a UCUM code, a UNECE Rec 20 code or a pint "
        f"name, e.g. {', '.join(EXAMPLES)}",
        unit=text,
    )


def parse_unit(text: str) -> pint.Unit:
    """The unit ``text`` names; UnitError if it names none."""
    if not isinstance(text, str):
        raise UnitError(f"{text!r} is not a unit (expected text such as 'mm')", unit=str(text))
    return _parsed(text)


def dimension(text: str) -> str:
    """The dimension of a unit as pint writes it: '[length]', 'dimensionless'."""
    dims = registry().get_dimensionality(parse_unit(text))
    return "dimensionless" if not dims else str(dims)


@cache
def _check_pair(unit: str, to: str) -> tuple[Any, Any]:
    reg = registry()
    source, target = parse_unit(unit), parse_unit(to)
    if reg.get_dimensionality(source) != reg.get_dimensionality(target):
        raise UnitError(
            f"{unit!r} ({dimension(unit)}) does not convert to {to!r} ({dimension(to)})",
            unit=unit, expected=to,
        )
    return source, target


def convert(value: float, unit: str, to: str) -> float:
    """``value`` in ``unit`` expressed in ``to`` (offsets included: 20 degC is 293.15 K);
    UnitError when either does not parse or their dimensions differ.

    The result is rounded to 12 significant digits, far below any measurement's
    resolution, so that 80 um is 0.08 mm and not 0.08000000000000002: a value sent in
    another unit then gives the same answer as the same value sent in the spec's."""
    if unit == to:
        return float(value)
    source, target = _check_pair(unit, to)
    out = float(registry().Quantity(float(value), source).to(target).magnitude)
    if not math.isfinite(out):
        raise UnitError(f"{value!r} {unit} is not finite in {to}", unit=unit, expected=to)
    return float(f"{out:.12g}")

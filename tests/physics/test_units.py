"""physics.units: every unit the spindle spec uses, its UCUM and UNECE spellings checked
against pint's own default registry (a second, independent registry), offsets, and the
exact errors; the spec's units validated at load; material aliases of a choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pint
import pytest

from physics.spec import SpecError, TwinSpec, load_spec
from physics.units import UnitError, convert, dimension, parse_unit

SPEC = Path(__file__).resolve().parents[2] / "experiments" / "specs" / "spindle.yaml"
PINT: pint.UnitRegistry = pint.UnitRegistry()  # pint's defaults, without our aliases: the reference


def spec_units() -> set[str]:
    spec = load_spec(SPEC)
    units = {i.unit for i in spec.inputs.values() if i.unit}
    for section in (spec.kpis, spec.quality, spec.maintenance, spec.feasibility):
        units |= {item.unit for item in section.values()}
    return units | {spec.require_quantity().unit}


def test_the_spindle_spec_uses_these_units() -> None:
    # If the spec gains a unit, it gets a row in SPELLINGS below.
    assert spec_units() == {"rpm", "mm", "deg", "s", "degC", "1", "parts", "um", "min",
                            "EUR", "J", "W", "Hz", "N/um"}


# spec unit -> (other spellings an MES may send, a value, the same value in pint's units)
SPELLINGS: dict[str, tuple[list[str], float, str]] = {
    "um": (["µm", "μm", "4H", "micrometer"], 55.4, "micrometer"),
    "mm": (["MMT", "millimeter"], 0.08, "millimeter"),
    "s": (["SEC", "second"], 45.0, "second"),
    "min": (["MIN", "minute"], 12.5, "minute"),
    "degC": (["Cel", "CEL", "°C", "degree_Celsius"], 21.5, "degC"),
    "J": (["JOU", "joule"], 3.6e6, "joule"),
    "deg": (["DD", "degree"], 30.0, "degree"),
    "W": (["WTT", "watt"], 20000.0, "watt"),
    "Hz": (["HTZ", "hertz", "1/s"], 900.0, "hertz"),
    "N/um": (["N/µm", "newton / micrometer"], 50.0, "newton / micrometer"),
}


@pytest.mark.parametrize("unit", sorted(SPELLINGS))
def test_each_spelling_converts_like_pint(unit: str) -> None:
    others, value, pint_name = SPELLINGS[unit]
    for other in others:
        assert convert(value, other, unit) == pytest.approx(value, rel=1e-12), other
    # Against pint's own registry: the spec unit to a neighbour of another scale.
    reference = {"um": "mm", "mm": "m", "s": "min", "min": "h", "degC": "K", "J": "kJ",
                 "deg": "rad", "W": "kW", "Hz": "kHz", "N/um": "N/mm"}[unit]
    expected = PINT.Quantity(value, pint_name).to(reference).magnitude
    assert convert(value, unit, reference) == pytest.approx(expected, rel=1e-12)


def test_length_codes_against_pint() -> None:
    assert convert(1.0, "MMT", "um") == PINT.Quantity(1.0, "mm").to("um").magnitude == 1000
    assert convert(0.055, "MTR", "mm") == pytest.approx(55.0, rel=1e-12)
    assert convert(80.0, "µm", "mm") == 0.08  # exactly: rounded to 12 digits


def test_speed_rpm_is_one_per_minute_not_two_pi_radians() -> None:
    for spelling in ("rpm", "RPM", "{rpm}", "1/min", "/min"):
        assert convert(6000.0, spelling, "rpm") == 6000.0, spelling
    assert convert(6000.0, "rpm", "Hz") == pytest.approx(
        PINT.Quantity(6000.0, "1/min").to("Hz").magnitude, rel=1e-12) == pytest.approx(100)
    # pint's own rpm counts 2 pi radians per revolution: the reason ours is redefined.
    assert PINT.Quantity(6000.0, "rpm").to("1/min").magnitude == pytest.approx(37699.1, 1e-5)


def test_temperatures_keep_their_offset() -> None:
    assert convert(20.0, "degC", "K") == pytest.approx(293.15, abs=1e-9)
    assert convert(293.15, "KEL", "Cel") == pytest.approx(20.0, abs=1e-9)
    assert convert(68.0, "degF", "degC") == pytest.approx(
        PINT.Quantity(68.0, "degF").to("degC").magnitude, abs=1e-9) == pytest.approx(20.0)


def test_dimensionless_counts_currency_and_power() -> None:
    assert convert(50.0, "%", "1") == 0.5
    assert convert(50.0, "P1", "1") == 0.5
    assert convert(3.0, "C62", "1") == 3.0
    assert convert(40.0, "H87", "parts") == 40.0
    assert convert(12.0, "EUR", "EUR") == 12.0
    assert convert(2.5, "KWT", "W") == 2500.0
    assert convert(2.5, "kW", "WTT") == 2500.0
    assert convert(10.0, "NEW", "N") == 10.0
    assert convert(1.5, "HUR", "min") == 90.0
    assert dimension("EUR") == "[currency]"
    assert dimension("parts") == "dimensionless"


def test_an_unknown_unit_names_itself_and_examples() -> None:
    for text in ("mmm", "4 mm", "", " mm", "{x}"):
        with pytest.raises(UnitError) as err:
            parse_unit(text)
        assert str(err.value) == (
            f"{text!r} is not a unit; write a UCUM code, a UNECE Rec 20 code or a pint "
            "name, e.g. um, µm, 4H, mm, MMT, 1/min, rpm, RPM, Cel, degC, s, %")
        assert err.value.unit == text


def test_incompatible_units_name_both_dimensions() -> None:
    with pytest.raises(UnitError, match=r"^'mm' \(\[length\]\) does not convert to 'degC' "
                                        r"\(\[temperature\]\)$"):
        convert(1.0, "mm", "degC")
    with pytest.raises(UnitError, match=r"^'EUR' \(\[currency\]\) does not convert to '1' "
                                        r"\(dimensionless\)$"):
        convert(1.0, "EUR", "1")


def spindle_data() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(SPEC.read_text(encoding="utf-8"))


def test_a_bad_unit_in_the_spec_is_a_spec_error_naming_the_field() -> None:
    data = spindle_data()
    data["inputs"]["spindle_speed"]["unit"] = "rpmm"
    data["kpis"]["wall_error_max"]["unit"] = "mikron"
    with pytest.raises(SpecError) as err:
        TwinSpec.from_dict(data, source="s.yaml")
    assert err.value.problems == [
        "inputs.spindle_speed.unit: 'rpmm' is not a unit; write a UCUM code, a UNECE Rec 20 "
        "code or a pint name, e.g. um, µm, 4H, mm, MMT, 1/min, rpm, RPM, Cel, degC, s, %",
        "kpis.wall_error_max.unit: 'mikron' is not a unit; write a UCUM code, a UNECE Rec "
        "20 code or a pint name, e.g. um, µm, 4H, mm, MMT, 1/min, rpm, RPM, Cel, degC, s, %",
    ]


def test_material_aliases_give_the_canonical_choice() -> None:
    material = load_spec(SPEC).inputs["material"]
    for sent in ("steel_c45", "C45", "1.0503", "AISI 1045", "aisi-1045", "UNS G10450"):
        assert material.coerce(sent) == "steel_c45", sent
    assert material.coerce("X2CrNiMo17-12-2") == "stainless_316l"
    assert material.coerce("Ti-6Al-4V") == "ti6al4v"
    assert material.coerce("EN-GJL-250") == "cast_iron_gjl250"
    assert material.coerce("EN AW-6061") == "aluminium_6061"
    with pytest.raises(ValueError, match=r"^'1\.05030' is not one of aluminium_6061 \(EN "
                                         r"AW-6061, .*\), steel_c45 \(C45, 1\.0503, "):
        material.coerce("1.05030")  # dots count: not the same number


def test_alias_problems_are_spec_errors() -> None:
    data = spindle_data()
    data["inputs"]["material"]["aliases"] = {"steel_c45": ["AISI 1045"], "stainless_316l":
                                             ["aisi-1045"], "brass": ["CuZn39Pb3"]}
    with pytest.raises(SpecError) as err:
        TwinSpec.from_dict(data)
    assert err.value.problems == [
        "inputs.material.aliases.stainless_316l: 'aisi-1045' already names 'steel_c45'",
        "inputs.material.aliases.brass: not a choice; choices: aluminium_6061, steel_c45, "
        "stainless_316l, ti6al4v, cast_iron_gjl250",
    ]


def test_spec_hash_leaves_out_the_unused_new_fields() -> None:
    """A spec without aliases keeps the hash it had before they existed (its datasets and
    bundles stay valid); aliases, once given, are part of it."""
    from physics._spec_text import canonical

    data = spindle_data()
    del data["inputs"]["material"]["aliases"]
    del data["inputs"]["material"]["from_material_requirements"]
    plain = TwinSpec.from_dict(data)
    assert plain.material_input is None and load_spec(SPEC).material_input == "material"
    entry = canonical(plain)["inputs"]["material"]
    assert "aliases" not in entry and "from_material_requirements" not in entry
    assert plain.spec_hash != load_spec(SPEC).spec_hash

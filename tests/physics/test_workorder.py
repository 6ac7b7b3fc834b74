"""Work orders into simulation cases, and every kind of bad order with its message."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from physics.spec import SpecError, TwinSpec, load_spec
from physics.variables import catalogue_from_model_table
from physics.workorder import OrderError, SimulationCase
from tests.physics.test_spec import swap

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "experiments" / "specs" / "spindle.yaml")
CATALOGUE = catalogue_from_model_table(ROOT / "physics" / "models" / "spindle" / "model.yaml")
INPUT_IDS = (
    "material, finished_surface, spindle_speed, feed_per_tooth, axial_depth, radial_width, "
    "tool_diameter, n_teeth, corner_radius, helix_angle, tool_overhang, path_length, "
    "load_time, coolant_on, coolant_temperature, replace_worn_tool, tool_measure_interval, "
    "ambient_temperature, rated_power, spindle_stiffness, spindle_natural_frequency, tool_wear, "
    "bearing_damage, radius_compensation, warmup"
)
ORDER: dict[str, Any] = {
    "material": "steel_c45",
    "spindle_speed": 5000,  # vc = pi * 12 mm * 5000 rpm = 188.5 m/min
    "feed_per_tooth": 0.1,
    "axial_depth": 3.0,
    "radial_width": 6.0,
    "tool_diameter": 12.0,
    "n_teeth": 3,
    "corner_radius": 0.8,
    "tool_overhang": 40.0,
    "path_length": 1500.0,
}


# The spec's materials with the names an MES may send for each (inputs.material.aliases).
MATERIALS = (
    "aluminium_6061 (EN AW-6061, EN AW-AlMg1SiCu, AlMg1SiCu, 3.3211, AA 6061, 6061, "
    "UNS A96061, A96061, aluminum_6061), steel_c45 (C45, 1.0503, AISI 1045, SAE 1045, "
    "UNS G10450, G10450), stainless_316l (X2CrNiMo17-12-2, 1.4404, AISI 316L, 316L, "
    "UNS S31603, S31603), ti6al4v (Ti-6Al-4V, TiAl6V4, 3.7165, Ti Grade 5, ASTM Grade 5, "
    "UNS R56400, R56400), cast_iron_gjl250 (EN-GJL-250, GJL-250, EN-JL1040, JL1040, "
    "GG-25, 0.6025)"
)

def order(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**ORDER, **changes}.items() if v is not ...}


def order_problems(values: dict[str, Any], quantity: Any = 10) -> list[str]:
    with pytest.raises(OrderError) as err:
        SPEC.case_from_order(values, quantity, CATALOGUE)
    return err.value.problems


def test_good_order_becomes_start_values_and_stop_time() -> None:
    case = SPEC.case_from_order(order(ambient_temperature=24.5, tool_wear=0.12), 25, CATALOGUE)
    # 25 parts of 60 * 1500 mm / (0.1 mm * 3 * 5000 rpm) = 60 s cutting + 60 s loading.
    assert case.stop_time == 25 * (60 * 1500 / (0.1 * 3 * 5000) + 60) == 3000.0
    assert case.quantity == 25 and isinstance(case.quantity, int)
    assert case.start_values == {
        "material": 2,  # steel_c45 is the second item of the Material enumeration
        "finished_surface": 1,  # wall, the default, is the first item of Surface
        "spindle_speed": 5000.0,
        "feed_per_tooth": 0.1,
        "axial_depth": 3.0,
        "radial_width": 6.0,
        "tool_diameter": 12.0,
        "n_teeth": 3,
        "corner_radius": 0.8,
        "helix_angle": 30.0,
        "tool_overhang": 40.0,
        "path_length": 1500.0,
        "load_time": 60.0,
        "coolant_on": True,
        "coolant_temperature": 20.0,
        "replace_worn_tool": True,
        "tool_measure_interval": 0,
        "ambient_temperature": 24.5,
        "rated_power": 20000.0,
        "spindle_stiffness": 50.0,
        "spindle_natural_frequency": 900.0,
        "tool_wear_start": 0.12,
        "bearing_damage_start": 0.0,
        "radius_compensation": 0.0,
        "warmup_fraction": 0.0,
    }
    assert type(case.start_values["n_teeth"]) is int
    assert type(case.start_values["material"]) is int
    assert type(case.start_values["finished_surface"]) is int
    assert type(case.start_values["tool_measure_interval"]) is int
    assert case.start_values["replace_worn_tool"] is True
    assert case.inputs == {"ambient_temperature": 24.5}  # the FMU's only input variable
    assert case.values["material"] == "steel_c45"
    assert case.values["finished_surface"] == "wall"
    assert case.values["tool_wear"] == 0.12
    assert case.values["load_time"] == 60.0  # default filled in
    with pytest.raises(dataclasses.FrozenInstanceError):
        case.stop_time = 1.0  # type: ignore[misc]


def test_text_values_from_a_command_line() -> None:
    text = {k: str(v) for k, v in ORDER.items()}
    case = SPEC.case_from_order(
        {**text, "coolant_on": "False", "load_time": " 30 "}, "4", CATALOGUE
    )
    typed = SPEC.case_from_order({**ORDER, "coolant_on": False, "load_time": 30}, 4, CATALOGUE)
    assert case == typed
    assert case.start_values["coolant_on"] is False
    assert case.stop_time == 4 * (60 + 30)


def test_none_counts_as_not_given() -> None:
    case = SPEC.case_from_order(order(load_time=None), 1, CATALOGUE)
    assert case.values["load_time"] == 60.0
    assert order_problems(order(spindle_speed=None)) == [
        "spindle_speed: missing (required, allowed range [500, 24000] rpm)"
    ]


def test_resolve_order_needs_no_fmu() -> None:
    resolved = SPEC.resolve_order(ORDER, 10)
    assert resolved.stop_time == 1200.0
    assert resolved.quantity == 10
    assert resolved.values["coolant_on"] is True


@pytest.mark.parametrize(
    ("values", "quantity", "expected"),
    [
        pytest.param(
            order(spindle_speed=..., spindle_sped=5000),
            10,
            [
                f"spindle_sped: unknown input (did you mean 'spindle_speed'?); valid inputs are "
                f"{INPUT_IDS}",
                "spindle_speed: missing (required, allowed range [500, 24000] rpm)",
            ],
            id="unknown-id",
        ),
        pytest.param(
            order(material=..., coolant_on=..., n_teeth=...),
            10,
            [
                "material: missing (required, one of aluminium_6061, steel_c45, stainless_316l, "
                "ti6al4v, cast_iron_gjl250)",
                "n_teeth: missing (required, allowed range [2, 6])",
            ],
            id="missing",
        ),
        pytest.param(
            order(spindle_speed=30000),
            10,
            ["spindle_speed: 30000 is outside the allowed range [500, 24000] rpm"],
            id="out-of-range",
        ),
        pytest.param(
            order(bearing_damage=2.5),
            10,
            ["bearing_damage: 2.5 is outside the allowed range [0, 2]"],
            id="out-of-range-dimensionless",
        ),
        pytest.param(
            order(material="brass"),
            10,
            [
                "material: 'brass' is not one of " + MATERIALS
            ],
            id="not-a-choice",
        ),
        pytest.param(
            order(spindle_speed="fast", feed_per_tooth=True, axial_depth=[3]),
            10,
            [
                "spindle_speed: 'fast' is not a number",
                "feed_per_tooth: true is not a number",
                "axial_depth: [3] is not a number",
            ],
            id="not-a-number",
        ),
        pytest.param(
            order(spindle_speed="nan", path_length=float("inf")),
            10,
            [
                "spindle_speed: 'nan' is not a finite number",
                "path_length: inf is not a finite number",
            ],
            id="not-finite",
        ),
        pytest.param(
            order(n_teeth=2.5), 10, ["n_teeth: 2.5 is not a whole number"], id="not-whole"
        ),
        pytest.param(
            order(coolant_on="yes", material=2),
            10,
            [
                "material: 2 is not one of aluminium_6061, steel_c45, stainless_316l, ti6al4v, "
                "cast_iron_gjl250",
                "coolant_on: 'yes' is not a boolean (use true or false)",
            ],
            id="not-boolean",
        ),
        pytest.param(
            order(),
            600,
            ["quantity: 600 is outside the allowed range [1, 500] parts"],
            id="quantity-range",
        ),
        pytest.param(
            order(), "2.5", ["quantity: '2.5' is not a whole number"], id="quantity-whole"
        ),
        pytest.param(
            order(radial_width=13.0),
            10,
            [
                "constraint: radial width of cut cannot exceed the tool diameter "
                "(radial_width <= tool_diameter)"
            ],
            id="constraint",
        ),
        pytest.param(
            order(material="ti6al4v", feed_per_tooth=0.06),
            10,
            [
                # 188.5 m/min, far above carbide's 90 m/min in Ti-6Al-4V, and 3.1 vc_ref
                "constraint: cutting speed is above the carbide window for this material "
                "(cutting_speed <= cutting_speed_max)",
                "constraint: cutting speed is above the tool-life law's validity window for "
                "this material (model.flank_wear_life[material] < 0.5 or cutting_speed <= "
                "model.taylor_speed_ratio_max * vc_ref)",
            ],
            id="cutting-speed-window",
        ),
        pytest.param(
            order(material="aluminium_6061"),
            10,
            [
                # 188.5 m/min, below carbide's 250 m/min in aluminium
                "constraint: cutting speed is below the carbide window for this material "
                "(cutting_speed >= cutting_speed_min)"
            ],
            id="cutting-speed-too-low",
        ),
        pytest.param(
            order(material="ti6al4v"),
            10,
            [
                # fz 0.1 mm at ae = D/2 is also a 0.1 mm chip, above 1.5 * 0.0045 * 12 mm
                "constraint: cutting speed is above the carbide window for this material "
                "(cutting_speed <= cutting_speed_max)",
                "constraint: cutting speed is above the tool-life law's validity window for "
                "this material (model.flank_wear_life[material] < 0.5 or cutting_speed <= "
                "model.taylor_speed_ratio_max * vc_ref)",
                "constraint: the chip is thicker than 1.5 times the supplier's recommendation "
                "(chip_max <= 1.5 * chip_recommended)",
            ],
            id="every-constraint-at-once",
        ),
        pytest.param(
            order(feed_per_tooth=0.03),
            10,
            [
                # 0.03 mm, below half of 0.0067 * 12 mm = 0.0804 mm in C45
                "constraint: the chip is thinner than half the supplier's recommendation "
                "(the edge rubs) (chip_max >= 0.5 * chip_recommended)"
            ],
            id="chip-too-thin",
        ),
        pytest.param(
            order(radial_width=1.0, feed_per_tooth=0.05),
            10,
            [
                # chip thinning: 0.05 mm * 2 sqrt(1/12 * 11/12) = 0.0276 mm at ae = 1 mm
                "constraint: the chip is thinner than half the supplier's recommendation "
                "(the edge rubs) (chip_max >= 0.5 * chip_recommended)"
            ],
            id="chip-thinning",
        ),
        pytest.param(
            order(feed_per_tooth=0.15),
            10,
            [
                "constraint: the chip is thicker than 1.5 times the supplier's recommendation "
                "(chip_max <= 1.5 * chip_recommended)"
            ],
            id="chip-too-thick",
        ),
        pytest.param(
            order(axial_depth=13.0, tool_overhang=36.0),
            10,
            [
                # 13 mm * 6 mm = 78 mm2, above 0.5 * (12 mm)^2 = 72 mm2 in C45 (3 D reach)
                "constraint: the chip cross-section ap * ae exceeds the supplier limit for this "
                "tool, reach and material (axial_depth * radial_width <= section_limit * "
                "reach_factor * tool_diameter ** 2)"
            ],
            id="chip-section",
        ),
        pytest.param(
            order(axial_depth=10.0),
            10,
            [
                # 60 mm2 is within 72 mm2 at 3 D reach, but not at 40 mm: * (36 / 40)^2
                "constraint: the chip cross-section ap * ae exceeds the supplier limit for this "
                "tool, reach and material (axial_depth * radial_width <= section_limit * "
                "reach_factor * tool_diameter ** 2)"
            ],
            id="chip-section-long-reach",
        ),
        pytest.param(
            order(tool_overhang=61.0),
            10,
            [
                "constraint: the tool sticks out more than 5 diameters "
                "(tool_overhang <= 5 * tool_diameter)"
            ],
            id="overhang",
        ),
    ],
)
def test_bad_orders(values: dict[str, Any], quantity: Any, expected: list[str]) -> None:
    assert order_problems(values, quantity) == expected


def test_order_error_lists_every_problem() -> None:
    with pytest.raises(OrderError) as err:
        SPEC.case_from_order(order(spindle_speed=30000, material="brass"), 0, CATALOGUE)
    assert str(err.value) == (
        "invalid work order:\n"
        "  material: 'brass' is not one of " + MATERIALS + "\n"
        "  spindle_speed: 30000 is outside the allowed range [500, 24000] rpm\n"
        "  quantity: 0 is outside the allowed range [1, 500] parts"
    )


def spec_with(**changes: Any) -> TwinSpec:
    data = yaml.safe_load((ROOT / "experiments" / "specs" / "spindle.yaml").read_text())
    data = copy.deepcopy(data)
    data.update(changes)
    return TwinSpec.from_dict(data)


@pytest.mark.parametrize(
    ("stop_time", "load_time", "shown"),
    [
        ("quantity * (load_time - 100)", 60, "-400"),
        ("quantity / (load_time - 60)", 60, "inf"),
        ("sqrt(30 - load_time)", 60, "nan"),
    ],
)
def test_stop_time_must_be_positive_and_finite(
    stop_time: str, load_time: float, shown: str
) -> None:
    spec = spec_with(stop_time=stop_time)
    with pytest.raises(OrderError) as err:
        spec.case_from_order(order(load_time=load_time), 10, CATALOGUE)
    assert err.value.problems == [
        f"stop_time: {stop_time!r} gives {shown} s; it must be positive and finite"
    ]


def test_integer_choices_map_to_their_values() -> None:
    data = yaml.safe_load((ROOT / "experiments" / "specs" / "spindle.yaml").read_text())
    data["inputs"]["n_teeth"] = {
        "variable": "n_teeth",
        "source": "order",
        "choices": {"two": 2, "four": 4},
        "default": "four",
    }
    data["doe"]["factors"]["n_teeth"] = {}
    teeth = "(2 + 2 * n_teeth_is_four)"
    data["derived"] = {k: swap(v, teeth) for k, v in data["derived"].items()}
    spec = TwinSpec.from_dict(data)
    spec.check_against(CATALOGUE)
    case = spec.case_from_order(order(n_teeth=...), 1, CATALOGUE)
    assert case.start_values["n_teeth"] == 4 and case.values["n_teeth"] == "four"
    # 1500 mm at 0.1 mm * 4 teeth * 5000 rpm: 45 s cutting, then 60 s loading
    assert case.stop_time == 105.0


def test_a_catalogue_without_the_variable_is_a_spec_problem() -> None:
    partial = {k: v for k, v in CATALOGUE.items() if k != "corner_radius"}
    with pytest.raises(SpecError) as err:
        SPEC.case_from_order(ORDER, 1, partial)
    assert err.value.problems == [
        "inputs.corner_radius.variable: 'corner_radius' is not a variable of the FMU "
        "(run check_against first)"
    ]


def test_simulation_case_is_a_plain_record() -> None:
    case = SimulationCase(
        start_values={"a": 1.0}, stop_time=5.0, inputs={}, values={"a": 1.0}, quantity=1
    )
    assert dataclasses.asdict(case)["stop_time"] == 5.0


def test_numpy_scalars_from_a_doe_are_numbers() -> None:
    values = {
        **ORDER,
        "spindle_speed": np.float64(5000.0),
        "n_teeth": np.int64(3),
        "coolant_on": np.bool_(True),
        "material": np.str_("steel_c45"),
    }
    case = SPEC.case_from_order(values, np.int64(10), CATALOGUE)
    assert case == SPEC.case_from_order(ORDER, 10, CATALOGUE)
    assert type(case.values["n_teeth"]) is int
    assert order_problems({**ORDER, "n_teeth": np.float64(2.5)}) == [
        "n_teeth: 2.5 is not a whole number"
    ]

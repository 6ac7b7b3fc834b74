"""The twin spec: the spindle spec is valid, and each kind of mistake is named exactly."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from physics.spec import SpecError, TwinSpec, load_spec
from physics.variables import catalogue_from_model_table

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"
CATALOGUE = catalogue_from_model_table(ROOT / "physics" / "models" / "spindle" / "model.yaml")
RAW: dict[str, Any] = yaml.safe_load(SPEC.read_text())
# A time_above KPI, which the spindle spec does not use, for the mistakes that need one.
HOT_TIME: dict[str, Any] = {
    "variable": "bearing_temperature",
    "reduction": "time_above",
    "limit": 35.0,
    "unit": "s",
    "role": "process",
}


def hot_time(**changes: Any) -> Callable[[dict[str, Any]], object]:
    """An edit adding ``bearing_hot_time`` (HOT_TIME changed by ``changes``, None: removed)."""

    def edit(d: dict[str, Any]) -> None:
        kpi = {**HOT_TIME, **changes}
        d["kpis"]["bearing_hot_time"] = {k: v for k, v in kpi.items() if v is not None}

    return edit


def spindle(edit: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    """The spindle spec as data, changed by ``edit``."""
    data = copy.deepcopy(RAW)
    if edit is not None:
        edit(data)
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as err:
        TwinSpec.from_dict(data)
    return err.value.problems


def catalogue_problems(data: dict[str, Any]) -> list[str]:
    spec = TwinSpec.from_dict(data)
    with pytest.raises(SpecError) as err:
        spec.check_against(CATALOGUE)
    return err.value.problems


# ---- the real spec -------------------------------------------------------------------


def test_spindle_spec_loads_and_matches_the_fmu() -> None:
    spec = load_spec(SPEC)
    spec.check_against(CATALOGUE)
    assert spec.name == "milling_spindle"
    assert spec.source_dir == SPEC.parent
    assert spec.fmu.model == "spindle" and spec.fmu_file() is None
    assert spec.fmu.sampling_interval == 10.0
    assert {k: i.kind for k, i in spec.inputs.items() if i.kind != "real"} == {
        "material": "categorical",
        "finished_surface": "categorical",
        "n_teeth": "integer",
        "coolant_on": "boolean",
        "replace_worn_tool": "boolean",
        "tool_measure_interval": "integer",
    }
    assert {i.source for i in spec.inputs.values()} == {"order", "environment", "machine", "state"}
    assert list(spec.derived_exprs)[:19] == [
        "cutting_speed",
        "feed_rate",
        "cycle_time",
        "cut_minutes",
        "order_cut_minutes",
        "slenderness",
        "cutting_speed_min",
        "cutting_speed_max",
        "engagement",
        "chip_max",
        "chip_recommended",
        "section_limit",
        "reach_factor",
        "removal_rate",
        "chip_mean",
        "kc_planned",
        "edge_force_planned",
        "power_planned",
        "power_s1",
    ]
    # then the tool-life bookkeeping (baselines) and the features where physics is periodic
    assert list(spec.derived_exprs)[19:24] == [
        "engaged_share", "engaged_share_ref", "taylor_n", "life_ref", "vc_ref",
    ]  # fmt: skip
    assert {k: v.baseline for k, v in spec.kpis.items() if v.baseline} == {
        "tool_wear_end": "tool_wear_planned",
        "tool_changes": "tool_changes_planned",
        "tool_life": "tool_life_planned",
        "tool_remaining_parts_end": "tool_parts_left_planned",
        "tool_cost_per_part": "tool_cost_planned",
        "part_cycle_time": "cycle_time",
        "parts_completed": "parts_planned",
        "energy": "energy_planned",
    }
    assert spec.inputs["spindle_speed"].domain() == "allowed range [500, 24000] rpm"
    assert spec.inputs["warmup"].variable == "warmup_fraction"
    assert spec.inputs["warmup"].domain() == "allowed range [0, 1]"
    assert [k for k, v in spec.kpis.items() if v.role == "quality"] == list(spec.quality)
    assert [k for k, v in spec.kpis.items() if v.role == "maintenance"] == [
        "tool_wear_end",
        "tool_changes",
        "tool_broken_end",
        "breakage_hazard_end",
        "p_tool_life_reached",
        "bearing_temperature_max",
    ]
    assert set(spec.maintenance) == {
        "tool_wear_end",
        "tool_changes",
        "tool_broken_end",
        "bearing_temperature_max",
    }
    assert set(spec.feasibility) == {
        "spindle_rating_load_max",
        "preload_ratio_max",
        "tool_stress_ratio_max",
        "tool_deflection_ratio_max",
        "stability_margin",
    }
    assert {spec.kpis[k].role for k in spec.feasibility} == {"process"}
    assert spec.doe is not None and spec.doe.stratify == "material"
    # Every quality characteristic has an accuracy a surrogate must reach.
    assert set(spec.quality) <= set(spec.acceptance) <= set(spec.kpis)


def test_derived_names_and_constraints_vectorised() -> None:
    spec = load_spec(SPEC)
    values: dict[str, Any] = {
        "material": np.array(["steel_c45", "ti6al4v", "aluminium_6061", "steel_c45", "steel_c45"]),
        "spindle_speed": np.array([8000.0, 8000.0, 20000.0, 8000.0, 8000.0]),
        "tool_diameter": np.array([10.0, 10.0, 12.0, 10.0, 10.0]),
        "radial_width": np.array([5.0, 5.0, 13.0, 5.0, 1.0]),
        "feed_per_tooth": np.array([0.08, 0.08, 0.08, 0.08, 0.03]),
        "n_teeth": 3,
        "axial_depth": np.array([2.0, 2.0, 2.0, 12.0, 2.0]),
        "tool_overhang": 40.0,
        "corner_radius": 0.5,
        "rated_power": 20000.0,
        "spindle_stiffness": 50.0,
        "spindle_natural_frequency": 900.0,
    }
    names = spec.namespace(values)
    np.testing.assert_allclose(
        names["cutting_speed"], np.pi * values["tool_diameter"] * values["spindle_speed"] / 1000
    )
    np.testing.assert_array_equal(names["cutting_speed_max"], [300.0, 90.0, 1000.0, 300.0, 300.0])
    np.testing.assert_array_equal(names["material_is_ti6al4v"], [0.0, 1.0, 0.0, 0.0, 0.0])
    # hex = fz at ae >= D/2 (also for ae > D, where the thinning branch is not taken);
    # 2 fz sqrt(ae/D (1 - ae/D)) = 0.06 * 0.3 at ae = D/10
    np.testing.assert_allclose(names["chip_max"], [0.08, 0.08, 0.08, 0.08, 0.018])
    np.testing.assert_allclose(names["chip_recommended"], [0.067, 0.045, 0.108, 0.067, 0.067])
    # ae * ap * fz * z * n / 1000: 5 * 2 * 1920 / 1000 = 19.2 cm3/min for the first two
    # (3 D / overhang)^2 at a 40 mm overhang: 30/40 and 36/40 squared
    np.testing.assert_allclose(names["reach_factor"], [0.5625, 0.5625, 0.81, 0.5625, 0.5625])
    np.testing.assert_allclose(names["removal_rate"], [19.2, 19.2, 124.8, 115.2, 1.44])
    # Kienzle at the mean chip thickness hm = 2 fz (ae/D) / acos(1 - 2 ae/D): at ae = D/2
    # hm = fz / (pi/2); power = removal rate / 60 * kc1.1 hm^-mc (C45 2220/0.14, Ti
    # 1400/0.23). A 13 mm cut on a 12 mm tool counts as a slot (ae = D), and is refused.
    hm_half, hm_tenth = 0.08 / (np.pi / 2), 2 * 0.03 * 0.1 / np.arccos(0.8)
    # The edge force adds Kte ap z phi_e / (2 pi) times vc / 60 (Kte of C45 and Ti 25,
    # of 6061 7.5 N/mm; phi_e pi/2 at ae = D/2, pi in a slot, acos(0.8) at ae = D/10).
    vc10, vc12 = np.pi * 10 * 8000 / 1000, np.pi * 12 * 20000 / 1000
    expected = [
        19.2 / 60 * 2220 * hm_half**-0.14 + 25 * 2 * 3 / 4 * vc10 / 60,
        19.2 / 60 * 1400 * hm_half**-0.23 + 25 * 2 * 3 / 4 * vc10 / 60,
        124.8 / 60 * 830 * (2 * 0.08 / np.pi) ** -0.23 + 7.5 * 2 * 3 / 2 * vc12 / 60,
        115.2 / 60 * 2220 * hm_half**-0.14 + 25 * 12 * 3 / 4 * vc10 / 60,
        1.44 / 60 * 2220 * hm_tenth**-0.14 + 25 * 2 * 3 * np.arccos(0.8) / (2 * np.pi) * vc10 / 60,
    ]
    np.testing.assert_allclose(names["power_planned"], expected, rtol=1e-12)
    # 1.1 kW of shear for 19 cm3/min of C45, and 0.16 kW of edge force
    assert expected[0] == pytest.approx(1078.0 + 157.1, abs=1.0)
    np.testing.assert_array_equal(names["power_s1"], 20000.0)  # above the 7000 rpm base speed
    low = spec.namespace({"spindle_speed": 3500.0, "rated_power": 20000.0})
    assert low["power_s1"] == 10000.0  # constant torque
    # steel at 251 m/min is fine; titanium at 251 m/min is too fast (and its chip too
    # thick); 13 mm > 12 mm width; ap * ae = 60 mm2 > 0.5 D^2; a 0.018 mm chip rubs.
    np.testing.assert_array_equal(spec.constraints_mask(values), [True, False, False, False, False])
    one = {k: v[0] if isinstance(v, np.ndarray) else v for k, v in values.items()}
    assert spec.constraints_mask(one) is True


def test_user_fmu_path_is_relative_to_the_spec(tmp_path: Path) -> None:
    from physics.fmu import fmu_for_model

    data = spindle(lambda d: d.update(fmu={"path": "fmus/spindle.fmu", "step_size": 0.5}))
    path = tmp_path / "twin.yaml"
    path.write_text(yaml.safe_dump(data))
    # The spec reads the model's constants from the FMU there when it loads.
    (tmp_path / "fmus").mkdir()
    shutil.copy(fmu_for_model("spindle"), tmp_path / "fmus" / "spindle.fmu")
    spec = load_spec(path)
    assert spec.fmu_file() == tmp_path / "fmus" / "spindle.fmu"
    assert spec.fmu.sampling_interval == 0.5


# ---- spec hash -------------------------------------------------------------------------


def test_spec_hash_ignores_layout_and_key_order(tmp_path: Path) -> None:
    reference = load_spec(SPEC).spec_hash
    reordered = {k: RAW[k] for k in reversed(list(RAW))}
    reordered["inputs"] = {k: RAW["inputs"][k] for k in reversed(list(RAW["inputs"]))}
    block = tmp_path / "block.yaml"
    block.write_text(yaml.safe_dump(reordered, default_flow_style=False, sort_keys=False))
    as_json = tmp_path / "flow.yaml"  # JSON is YAML too
    as_json.write_text(json.dumps(RAW, indent=1))
    spaced = spindle(lambda d: d.update(stop_time="quantity*cycle_time"))
    spaced["inputs"]["spindle_speed"]["min"] = 500.0  # 500 and 500.0 are one bound
    assert load_spec(block).spec_hash == reference
    assert load_spec(as_json).spec_hash == reference
    assert TwinSpec.from_dict(spaced).spec_hash == reference
    assert len(reference) == 64


def test_spec_hash_changes_with_a_bound() -> None:
    changed = spindle(lambda d: d["inputs"]["load_time"].update(max=500))
    assert TwinSpec.from_dict(changed).spec_hash != load_spec(SPEC).spec_hash


# ---- structural mistakes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            lambda d: d["doe"]["factors"]["spindle_speed"].update(low=30000, high=24000),
            ["doe.factors.spindle_speed.low: 30000 is not below high 24000"],
            id="low>=high",
        ),
        pytest.param(
            lambda d: d["inputs"]["feed_per_tooth"].update(min=0.35),
            ["inputs.feed_per_tooth.min: 0.35 is not below max 0.3"],
            id="min>=max",
        ),
        pytest.param(
            lambda d: d["inputs"]["spindle_speed"].pop("unit"),
            ["inputs.spindle_speed.unit: missing"],
            id="input-unit-missing",
        ),
        pytest.param(
            lambda d: d["kpis"]["wall_error_max"].pop("unit"),
            ["kpis.wall_error_max.unit: missing"],
            id="kpi-unit-missing",
        ),
        pytest.param(
            lambda d: d["doe"]["factors"]["spindle_speed"].update(low=400),
            ["doe.factors.spindle_speed.low: 400 is below the input's min 500"],
            id="factor-wider-than-input",
        ),
        pytest.param(
            lambda d: d["doe"]["factors"]["n_teeth"].update(high=8),
            ["doe.factors.n_teeth.high: 8 is above the input's max 6"],
            id="factor-above-max",
        ),
        pytest.param(
            lambda d: d["doe"]["factors"].update(spindle_sped={"low": 2000}),
            ["doe.factors.spindle_sped: not an input (did you mean 'spindle_speed'?)"],
            id="factor-unknown-input",
        ),
        pytest.param(
            lambda d: d["doe"]["fixed"].update(coolant_temperature=50),
            ["doe.fixed.coolant_temperature: 50 is outside the allowed range [15, 30] degC"],
            id="fixed-out-of-range",
        ),
        pytest.param(
            lambda d: d["doe"]["factors"].pop("quantity"),
            ["doe: quantity sets the stop time; make it a factor or fix it"],
            id="doe-without-quantity",
        ),
        pytest.param(
            lambda d: d["doe"]["factors"].pop("spindle_speed"),
            ["doe: input 'spindle_speed' has no default; make it a factor or fix it"],
            id="doe-input-uncovered",
        ),
        pytest.param(
            lambda d: d["doe"]["factors"]["path_length"].update(distribution="normal", std=-1),
            [
                "doe.factors.path_length.mean: missing (required by the normal distribution)",
                "doe.factors.path_length.std: -1 must be positive",
            ],
            id="normal-parameters",
        ),
        pytest.param(
            lambda d: d["doe"]["factors"]["material"].update(
                choices=["steel_c45", "brass"], weights=[1.0]
            ),
            [
                "doe.factors.material.choices: 'brass' is not one of aluminium_6061, steel_c45, "
                "stainless_316l, ti6al4v, cast_iron_gjl250",
                "doe.factors.material.weights: expected one per choice (2), got 1",
            ],
            id="factor-choices",
        ),
        pytest.param(
            lambda d: d["doe"]["factors"]["coolant_on"].update(choices=["yes"], low=0),
            [
                "doe.factors.coolant_on.low: not used for a boolean input",
                "doe.factors.coolant_on.choices: 'yes' is not one of true, false",
                "doe.factors.coolant_on.weights: expected one per choice (1), got 2",
            ],
            id="boolean-factor",
        ),
        pytest.param(
            lambda d: d["inputs"]["load_time"].update(default=900),
            ["inputs.load_time.default: 900 is outside the allowed range [10, 600] s"],
            id="default-out-of-range",
        ),
        pytest.param(
            lambda d: d["inputs"]["coolant_on"].update(min=0),
            ["inputs.coolant_on.min: not used by a boolean input"],
            id="boolean-with-min",
        ),
        pytest.param(
            lambda d: d.update(stop_time="quantity * cycle_tme"),
            ["stop_time: unknown name 'cycle_tme' (did you mean 'cycle_time'?)"],
            id="unknown-name-stop-time",
        ),
        pytest.param(
            lambda d: d["constraints"].append({"expr": "material > 1", "message": "m"}),
            [
                "constraints[14].expr: 'material' is categorical; use its indicators, e.g. "
                "material_is_aluminium_6061"
            ],
            id="categorical-bare-name",
        ),
        pytest.param(
            lambda d: d["derived"].update(cutting_speed="math.pi * tool_diameter"),
            [
                "derived.cutting_speed: 'math.pi * tool_diameter' uses attribute access, which "
                "is not allowed"
            ],
            id="refused-construct",
        ),
        pytest.param(
            lambda d: d["derived"].update(feed_rate="cycle_time / 2"),
            ["derived.feed_rate: circular definition feed_rate -> cycle_time -> feed_rate"],
            id="derived-cycle",
        ),
        pytest.param(
            lambda d: d["derived"].update(spindle_speed="1"),
            ["derived.spindle_speed: 'spindle_speed' is already input 'spindle_speed'"],
            id="derived-shadows-input",
        ),
        pytest.param(
            lambda d: d["kpis"]["wall_error_max"].update(reduction="maximum"),
            [
                "kpis.wall_error_max.reduction: 'maximum' is not one of 'final', 'max', "
                "'min', 'max_abs', 'mean', 'integral' or 'time_above'"
            ],
            id="kpi-reduction",
        ),
        pytest.param(
            hot_time(limit=None),
            ["kpis.bearing_hot_time.limit: missing (required by time_above)"],
            id="time-above-without-limit",
        ),
        pytest.param(
            hot_time(unit="min"),
            ["kpis.bearing_hot_time.unit: time_above measures time, so the unit is 's', not 'min'"],
            id="time-above-unit",
        ),
        pytest.param(
            hot_time(limit=None, limt=35.0),
            ["kpis.bearing_hot_time.limt: unknown key (did you mean 'limit'?)"],
            id="typo-key",
        ),
        pytest.param(
            lambda d: d.update(stoptime=d.pop("stop_time")),
            # stop_time may be left out now (the FMU's default): the typo is what is wrong.
            ["stoptime: unknown key (did you mean 'stop_time'?)"],
            id="typo-top-level-key",
        ),
        pytest.param(
            lambda d: d["kpis"]["energy"].update(colour="red"),
            [
                "kpis.energy.colour: unknown key (allowed: variable, reduction, unit, role, "
                "limit, start, baseline, margins, cap, description)"
            ],
            id="unknown-key",
        ),
        pytest.param(
            lambda d: d["inputs"]["spindle_speed"].update(min="fast"),
            ["inputs.spindle_speed.min: 'fast' is not a number"],
            id="type-error",
        ),
        pytest.param(
            lambda d: d["quality"].update(
                spindle_load_max={"characteristic_id": "LOAD", "usl": 1, "unit": "1"}
            ),
            [
                "quality.spindle_load_max: KPI 'spindle_load_max' has role "
                "'process'; only quality KPIs belong here"
            ],
            id="quality-of-process-kpi",
        ),
        pytest.param(
            lambda d: d["quality"]["wall_error_max"].update(lsl=None, usl=None, unit="mm"),
            [
                "quality.wall_error_max: give lsl, usl or both",
                "quality.wall_error_max.unit: 'mm' differs from the KPI's unit 'um'",
            ],
            id="quality-limits-and-unit",
        ),
        pytest.param(
            lambda d: d["quality"]["surface_roughness_max"].update(lsl=4.0, target=1.0),
            ["quality.surface_roughness_max.lsl: 4 is not below usl 3.2"],
            id="lsl>=usl",
        ),
        pytest.param(
            lambda d: d["maintenance"].update(tool_wear_ned=d["maintenance"].pop("tool_wear_end")),
            ["maintenance.tool_wear_ned: not a KPI (did you mean 'tool_wear_end'?)"],
            id="maintenance-unknown-kpi",
        ),
        pytest.param(
            lambda d: d["acceptance"].update(energy={"min_r2": 1.5, "max_rmse": 0}),
            [
                "acceptance.energy.max_rmse: 0 must be positive",
                "acceptance.energy.min_r2: 1.5 is above 1",
            ],
            id="acceptance-values",
        ),
        pytest.param(
            lambda d: d["fmu"].update(path="x.fmu", output_interval=0.5),
            [
                "fmu: give model or path, not both",
                "fmu.output_interval: 0.5 is below the step size 1",
            ],
            id="fmu",
        ),
        pytest.param(
            lambda d: d["fmu"].update(output_interval=2.5),
            [
                "fmu.output_interval: 2.5 is not a whole multiple of the step size 1 (it is 2.5 "
                "steps); expected e.g. 2"
            ],
            id="output-interval-not-a-multiple",
        ),
        pytest.param(
            lambda d: (
                d.update(stop_time=3600) or d["fmu"].update(step_size=1e-9, output_interval=None)
            ),
            [
                "stop_time: 3600 s is 3.6e+12 steps of fmu.step_size 1e-09 s, more than 1e+08; "
                "use a larger step size"
            ],
            id="absurd-step-count",
        ),
        pytest.param(
            lambda d: d.update(stop_time="1e308 * 10"),
            ["stop_time: '1e308 * 10' gives inf s; expected a positive time"],
            id="fixed-stop-time-infinite",
        ),
        pytest.param(
            lambda d: d["inputs"]["coolant_on"].update(variable="coolant_temperature"),
            [
                "inputs.coolant_temperature.variable: 'coolant_temperature' is already set by "
                "input 'coolant_on'"
            ],
            id="variable-set-twice",
        ),
        pytest.param(
            lambda d: d["derived"].update(
                cutting_speed_min=d["derived"]["cutting_speed_min"].replace("c45", "c46")
            ),
            [
                "derived.cutting_speed_min: unknown name 'material_is_steel_c46'; 'steel_c46' is "
                "not a choice of input 'material' (did you mean 'steel_c45'?)"
            ],
            id="unknown-choice-indicator",
        ),
        pytest.param(
            lambda d: d["inputs"].update({"Feed": d["inputs"]["feed_per_tooth"]}),
            [
                "inputs.Feed: 'Feed' is not a valid name (lower-case letters, digits and _, "
                "starting with a letter)",
                "inputs.Feed.variable: 'feed_per_tooth' is already set by input 'feed_per_tooth'",
                "doe: input 'Feed' has no default; make it a factor or fix it",
            ],
            id="input-name",
        ),
        pytest.param(
            lambda d: d["kpis"]["tool_wear_end"].update(start="tool_wer"),
            ["kpis.tool_wear_end.start: 'tool_wer' is not an input (did you mean 'tool_wear'?)"],
            id="start-unknown",
        ),
        pytest.param(
            lambda d: d["kpis"]["tool_wear_end"].update(start="ambient_temperature"),
            [
                "kpis.tool_wear_end.start: input 'ambient_temperature' has source "
                "'environment', expected 'state'"
            ],
            id="start-not-a-state",
        ),
        pytest.param(
            lambda d: d["kpis"]["tool_wear_end"].update(start="warmup"),
            ["kpis.tool_wear_end.start: input 'warmup' is in '1', the KPI in 'mm'"],
            id="start-unit",
        ),
        pytest.param(
            lambda d: d["kpis"]["tool_life"].update(baseline="tool_life_planed"),
            [
                "kpis.tool_life.baseline: 'tool_life_planed' is not a derived value "
                "(did you mean 'tool_life_planned'?)"
            ],
            id="baseline-unknown",
        ),
        pytest.param(
            lambda d: d["kpis"]["tool_broken_end"].update(margins=[]),
            [
                "kpis.tool_broken_end.margins: empty; name the derived values or KPIs whose "
                "reaching 1 is the event, or leave margins out"
            ],
            id="margins-empty",
        ),
        pytest.param(
            lambda d: d["kpis"]["tool_broken_end"].update(
                margins=["fracture_margn", "tool_broken_end", "energy"], start="tool_wear"
            ),
            [
                "kpis.tool_broken_end.start: input 'tool_wear' is in 'mm', the KPI in '1'",
                "kpis.tool_broken_end.margins: an event derived from margins has no start or "
                "baseline",
                "kpis.tool_broken_end.margins: 'fracture_margn' is neither a derived value nor "
                "a KPI (did you mean 'fracture_margin'?)",
                "kpis.tool_broken_end.margins: 'tool_broken_end' is this KPI itself",
            ],
            id="margins-unknown-self",
        ),
        pytest.param(
            lambda d: d["kpis"]["breakage_cause_end"].update(margins=["tool_broken_end"]),
            [
                "kpis.breakage_cause_end.margins: 'tool_broken_end' is itself an event derived "
                "from margins"
            ],
            id="margins-of-margins",
        ),
        pytest.param(
            lambda d: d["kpis"]["stability_margin"].update(cap=float("inf")),
            ["kpis.stability_margin.cap: inf is not a finite number"],
            id="cap-infinite",
        ),
        pytest.param(
            lambda d: d["kpis"]["tool_life"].update(cap=10.0),
            [
                "kpis.tool_life.cap: a capped KPI is learned as it is: no start, baseline or "
                "margins beside it"
            ],
            id="cap-with-baseline",
        ),
    ],
)
def test_structural_mistakes(edit: Callable[[dict[str, Any]], object], expected: list[str]) -> None:
    assert problems(spindle(edit)) == expected


# ---- feasibility ------------------------------------------------------------------------


def with_feasibility(**entries: dict[str, Any]) -> dict[str, Any]:
    """The spindle spec with its own ``feasibility`` section (``energy`` is a KPI in J)."""
    return spindle(lambda d: d.update(feasibility=entries))


def test_feasibility_limits_load_and_enter_the_hash() -> None:
    limit = {"max": 5e6, "unit": "J", "description": "energy budget of one order"}
    spec = TwinSpec.from_dict(with_feasibility(energy=limit))
    f = spec.feasibility["energy"]
    assert (f.min, f.max, f.unit, f.description) == (None, 5e6, "J", limit["description"])
    # a quality KPI judged on the feasible runs needs the limits that say which they are
    assert problems(spindle(lambda d: d.pop("feasibility")))[0] == (
        "acceptance.wall_error_max.scope: 'feasible' needs a feasibility section"
    )

    def unlimited(d: dict[str, Any]) -> None:
        d.pop("feasibility")
        for a in d["acceptance"].values():
            a.pop("scope", None)

    plain = TwinSpec.from_dict(spindle(unlimited))
    assert plain.feasibility == {}
    assert spec.spec_hash != plain.spec_hash
    looser = TwinSpec.from_dict(with_feasibility(energy={**limit, "max": 6e6}))
    assert looser.spec_hash not in (spec.spec_hash, plain.spec_hash)
    both = TwinSpec.from_dict(with_feasibility(energy={"min": 1, "max": 2, "unit": "J"}))
    assert (both.feasibility["energy"].min, both.feasibility["energy"].max) == (1, 2)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        pytest.param(
            {"energy": {"unit": "J"}},
            ["feasibility.energy: give min, max or both"],
            id="no-limit",
        ),
        pytest.param(
            {"energy": {"min": 2, "max": 1, "unit": "J"}},
            ["feasibility.energy.min: 2 is not below max 1"],
            id="min>=max",
        ),
        pytest.param(
            {"energy": {"min": 1.5, "max": 1.5, "unit": "J"}},
            ["feasibility.energy.min: 1.5 is not below max 1.5"],
            id="min==max",
        ),
        pytest.param(
            {"energy": {"max": 1, "unit": "kJ"}},
            ["feasibility.energy.unit: 'kJ' differs from the KPI's unit 'J'"],
            id="unit",
        ),
        pytest.param(
            {"enrgy": {"max": 1, "unit": "J"}},
            ["feasibility.enrgy: not a KPI (did you mean 'energy'?)"],
            id="unknown-kpi",
        ),
        pytest.param(
            {"energy": {"max": 1}},
            ["feasibility.energy.unit: missing"],
            id="unit-missing",
        ),
        pytest.param(
            {"energy": {"max": "high", "unit": "J"}},
            ["feasibility.energy.max: 'high' is not a number"],
            id="not-a-number",
        ),
        pytest.param(
            {"energy": {"maximum": 1, "unit": "J"}},
            ["feasibility.energy.maximum: unknown key (did you mean 'max'?)"],
            id="typo-key",
        ),
        pytest.param(
            {"energy": {"min": 3, "max": 1, "unit": "Wh"}},
            [
                "feasibility.energy.min: 3 is not below max 1",
                "feasibility.energy.unit: 'Wh' differs from the KPI's unit 'J'",
            ],
            id="every-problem",
        ),
    ],
)
def test_feasibility_mistakes(entries: dict[str, Any], expected: list[str]) -> None:
    assert problems(with_feasibility(**entries)) == expected


def test_every_problem_is_reported_at_once() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["inputs"]["spindle_speed"].pop("unit")
        d["doe"]["factors"]["spindle_speed"].update(low=30000, high=24000)
        hot_time(limit=None)(d)

    assert problems(spindle(edit)) == [
        "inputs.spindle_speed.unit: missing",
        "doe.factors.spindle_speed.low: 30000 is not below high 24000",
        "kpis.bearing_hot_time.limit: missing (required by time_above)",
    ]


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    cases = {
        "twice.yaml": (
            "name: a\nname: b\n",
            "not valid YAML: duplicate key 'name' (line 2, column 1)",
        ),
        "broken.yaml": (
            "name: [a\n",
            "not valid YAML: expected ',' or ']', but got '<stream end>' (line 2, column 1)",
        ),
        "list.yaml": ("- a\n", "expected a mapping of sections at the top level, got list"),
    }
    for name, (text, problem) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SpecError) as err:
            load_spec(tmp_path / name)
        assert err.value.problems == [problem]
        assert str(err.value) == f"invalid twin spec {tmp_path / name}:\n  {problem}"
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "absent.yaml")
    assert err.value.problems == ["cannot read the file: No such file or directory"]


def test_spec_problems_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spindle(lambda d: d["inputs"]["n_teeth"].update(max=1))))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == (
        f"invalid twin spec {path}:\n  inputs.n_teeth.min: 2 is not below max 1"
    )


# ---- against the FMU's variables ------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            lambda d: d["inputs"]["spindle_speed"].update(variable="spindle_sped"),
            [
                "inputs.spindle_speed.variable: 'spindle_sped' is not a variable of the FMU "
                "(did you mean 'spindle_speed'?)"
            ],
            id="unknown-variable",
        ),
        pytest.param(
            lambda d: d["inputs"]["spindle_speed"].update(variable="cutting_speed"),
            [
                "inputs.spindle_speed.variable: 'cutting_speed' has causality "
                "calculatedParameter; only parameter and input variables, and those with "
                'initial="exact", can be set'
            ],
            id="not-settable",
        ),
        pytest.param(
            lambda d: d["inputs"]["spindle_speed"].update(unit="1/min"),
            ["inputs.spindle_speed.unit: '1/min' differs from the FMU variable's unit 'rpm'"],
            id="input-unit",
        ),
        pytest.param(
            lambda d: d["inputs"]["tool_overhang"].update(min=2),
            ["inputs.tool_overhang.min: 2 is below the FMU variable's min 5"],
            id="below-fmu-min",
        ),
        pytest.param(
            lambda d: d["inputs"]["spindle_speed"].update(max=30000),
            ["inputs.spindle_speed.max: 30000 is above the FMU variable's max 24000"],
            id="above-fmu-max",
        ),
        pytest.param(
            # (A material the model's table lacks is refused at load: the expressions read
            # its constants; tests/physics/test_spec_model_constants.py.)
            lambda d: d["inputs"]["finished_surface"]["choices"].append("flor"),
            [
                "inputs.finished_surface.choices: 'flor' is not an item of 'finished_surface' "
                "(did you mean 'floor'?)"
            ],
            id="choice-not-an-item",
        ),
        pytest.param(
            lambda d: d["inputs"]["material"].update(
                choices={c: i + 1 for i, c in enumerate(d["inputs"]["material"]["choices"])}
            ),
            [
                "inputs.material.choices: 'material' is an Enumeration variable; list item "
                "names, not a mapping"
            ],
            id="mapping-for-enumeration",
        ),
        pytest.param(
            lambda d: d["inputs"]["n_teeth"].update(integer=False, unit="1"),
            [
                "inputs.n_teeth.integer: 'n_teeth' is an Integer variable; declare the input "
                "with integer: true"
            ],
            id="integer-variable",
        ),
        pytest.param(
            lambda d: d["kpis"]["energy"].update(variable="enrgy"),
            ["kpis.energy.variable: 'enrgy' is not a variable of the FMU (did you mean 'energy'?)"],
            id="kpi-unknown-variable",
        ),
        pytest.param(
            lambda d: d["kpis"]["tool_life"].update(unit="s"),
            ["kpis.tool_life.unit: 's' differs from the FMU variable's unit 'min'"],
            id="kpi-unit",
        ),
        pytest.param(
            lambda d: d["kpis"].update(
                energy_used={
                    "variable": "spindle_power",
                    "reduction": "integral",
                    "unit": "kWh",
                    "role": "process",
                }
            ),
            [
                "kpis.energy_used.unit: the time integral of 'spindle_power' [W] is in 'J' or "
                "'W.s', not 'kWh'"
            ],
            id="integral-unit",
        ),
    ],
)
def test_catalogue_mistakes(edit: Callable[[dict[str, Any]], object], expected: list[str]) -> None:
    assert catalogue_problems(spindle(edit)) == expected


def test_boolean_input_on_a_real_variable() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["inputs"]["coolant_on"]["variable"] = "roughness_floor"

    assert catalogue_problems(spindle(edit)) == [
        "inputs.coolant_on.boolean: 'roughness_floor' is a Real variable, not Boolean"
    ]


def swap(entry: Any, teeth: str) -> Any:
    """A derived value (an expression, or a block's expressions) with n_teeth replaced."""
    if isinstance(entry, str):
        return re.sub(r"\bn_teeth\b", teeth, entry)
    if isinstance(entry, dict):
        return {k: swap(v, teeth) for k, v in entry.items()}
    if isinstance(entry, list):
        return [swap(v, teeth) for v in entry]
    return entry


def test_integral_in_joules_and_integer_choices_are_accepted() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["kpis"]["energy_used"] = {
            "variable": "spindle_power",
            "reduction": "integral",
            "unit": "J",
            "role": "process",
        }
        d["inputs"]["n_teeth"] = {
            "variable": "n_teeth",
            "source": "order",
            "choices": {"two": 2, "four": 4},
        }
        d["doe"]["factors"]["n_teeth"] = {"weights": [1, 3]}
        teeth = "(2 * n_teeth_is_two + 4 * n_teeth_is_four)"
        d["derived"] = {k: swap(v, teeth) for k, v in d["derived"].items()}

    TwinSpec.from_dict(spindle(edit)).check_against(CATALOGUE)

    def listed(d: dict[str, Any]) -> None:
        edit(d)
        d["inputs"]["n_teeth"]["choices"] = ["two", "four"]

    assert catalogue_problems(spindle(listed)) == [
        "inputs.n_teeth.choices: 'n_teeth' is an Integer variable; map each choice to its "
        "value, e.g. {two: 1}"
    ]


def test_the_spec_imports_nothing_heavy() -> None:
    # Serving imports the spec in a small image: no fmpy, scipy, matplotlib or torch.
    code = (
        "import sys, physics.spec, physics.workorder, physics.kpi\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'fmpy', 'scipy', 'matplotlib', 'torch', 'click'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[]"


def test_fmu_fields_left_out_keep_the_spec_hash() -> None:
    """Fields added to fmu: later (start_time, interface, tolerance) are left out of the
    hash while unset, so specs written before them keep their hash (and their datasets and
    bundles stay valid); set, they change it."""
    from physics._spec_text import canonical

    spec = load_spec(SPEC)
    assert {"start_time", "interface", "tolerance"}.isdisjoint(canonical(spec)["fmu"])
    data = yaml.safe_load(SPEC.read_text())
    assert TwinSpec.from_dict(data).spec_hash == spec.spec_hash
    data["fmu"]["interface"] = "co_simulation"
    assert TwinSpec.from_dict(data).spec_hash != spec.spec_hash


# ---- quantity.variable: the FMU variable the work order's quantity sets ------------------


@pytest.mark.parametrize(
    ("variable", "quantity", "expected"),
    [
        ("prts_completed", {},
         ["quantity.variable: 'prts_completed' is not a variable of the FMU"]),
        ("parts_completed", {}, ["quantity.variable: 'parts_completed' has causality output; the "
                                 "quantity sets a parameter or an input"]),
        ("path_length", {}, ["quantity.variable: 'path_length' is set by inputs.path_length "
                             "already"]),
        ("explicit_start_temperatures", {}, ["quantity.variable: 'explicit_start_temperatures' "
                                             "is a Boolean variable; the quantity is a number"]),
        ("warmup_speed", {}, ["quantity.unit: 'parts' differs from the FMU variable's unit 'rpm'"]),
        ("stability_nodes_per_cycle", {"integer": False},
         ["quantity.variable: 'stability_nodes_per_cycle' is an integer variable; the quantity "
          "is not (quantity.integer: true)",
          "quantity.min: 1 is below the FMU variable's min 2",
          "quantity.max: 500 is above the FMU variable's max 100"]),
        ("stability_max_nodes", {}, ["quantity.max: 500 is above the FMU variable's max 40"]),
    ],
)  # fmt: skip
def test_quantity_variable_mistakes(variable: str, quantity: dict, expected: list[str]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["quantity"].update(variable=variable, **quantity)

    assert catalogue_problems(spindle(edit)) == expected


def test_quantity_variable_sets_the_fmu_and_enters_the_hash_only_when_used() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["quantity"].update(variable="stability_max_nodes", max=40)
        d["doe"]["factors"]["quantity"]["high"] = 40

    from physics._spec_text import canonical

    plain = load_spec(SPEC)
    assert plain.quantity is not None and plain.quantity.variable is None
    assert "variable" not in canonical(plain)["quantity"]  # left out of the hash while unused
    spec = TwinSpec.from_dict(spindle(edit))
    spec.check_against(CATALOGUE)
    assert spec.spec_hash != TwinSpec.from_dict(spindle()).spec_hash
    values = {k: inp.default for k, inp in spec.inputs.items() if inp.default is not None}
    values.update(material="steel_c45", finished_surface="wall", spindle_speed=5300,
                  feed_per_tooth=0.08, axial_depth=2.0, radial_width=3.0, tool_diameter=12.0,
                  n_teeth=4, corner_radius=0.5, tool_overhang=36.0, path_length=2400.0,
                  load_time=45.0)  # fmt: skip
    case = spec.case_from_order(values, 30, CATALOGUE)
    assert case.start_values["stability_max_nodes"] == 30 and case.quantity == 30
    plain_case = TwinSpec.from_dict(spindle()).case_from_order(values, 30, CATALOGUE)
    assert "stability_max_nodes" not in plain_case.start_values

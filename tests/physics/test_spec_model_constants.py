"""One place for each constant: the spindle spec reads the model's constants from the FMU.

The spec's closed forms (the S1 curve, Kienzle, the Taylor tool life, the wear curve,
the tool-tip mode, the breakage margins) use the model's constants as ``model.<name>``
and ``model.<column>[material]``; they are read from the FMU's model description when
the spec loads. Changing a constant in the model moves every baseline with it, and a
reference to a constant the FMU lacks is refused by name.
"""

from __future__ import annotations

import copy
import math
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import fmpy
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from physics.blocks import BlockExpr
from physics.cli import main
from physics.dataset import read_runs
from physics.expr import ExpressionError, compile_expr
from physics.fmu import BuildError, Fmu, build_model, fmu_for_model
from physics.fmu._build import MODELS_DIR
from physics.fmu._codegen import load_table
from physics.spec import SpecError, TwinSpec, load_spec
from physics.study import generate
from physics.variables import (
    catalogue_from_fmu_file,
    catalogue_from_model_description,
    catalogue_from_model_table,
)
from tests._trained import random_inputs
from tests.fmus import build_test_fmu

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"
RAW: dict[str, Any] = yaml.safe_load(SPEC.read_text())
TABLE = MODELS_DIR / "spindle" / "model.yaml"
WHERE = f"model 'spindle' ({TABLE})"
MATERIALS = RAW["inputs"]["material"]["choices"]
COLUMNS = [
    "kc11", "mc", "vc_ref", "hex_ref_ratio", "life_ref", "taylor_n", "coolant_factor",
    "flank_wear_life", "edge_tangential", "indentation_coefficient",
]  # fmt: skip
# The constants the spec's expressions wrote as numbers before they read them from the
# FMU (spec version 5), each with a derived value that must follow it.
SCALARS = {
    "base_speed": "power_s1",
    "tool_modulus": "tool_bending_stiffness",
    "tool_density": "tool_mode",
    "tool_core_ratio": "stress_planned",
    "tool_fatigue_strength": "stress_planned",
    "tool_deflection_limit": "deflection_planned",
    "wear_force_coefficient": "stress_peak_planned",
    "tool_price_per_mm": "tool_cost_planned",
    "wear_breakin": "tool_wear_planned",
    "wear_breakin_life": "tool_wear_planned",
    "wear_acceleration_life": "tool_wear_planned",
    "wear_acceleration_at_limit": "tool_wear_planned",
    "vb_limit": "wear_b",
    "vb_breakage": "tool_wear_planned",
    "taylor_feed_exponent": "tool_life_planned",
    "life_reference_engagement": "tool_life_planned",
    "tool_runout": "tool_life_planned",
    # the stepped tool: flutes, neck and shank (spec v8)
    "flute_length_ratio": "beam_compliance",
    "neck_length": "beam_compliance",
    "vb_breakage_diameter": "vb_fracture",
    "vb_breakage_exponent": "vb_fracture",
    # the drive's energy in closed form (spec v13)
    "motor_efficiency": "energy_planned",
    "motor_speed_loss": "energy_planned",
    "bearing_count": "energy_planned",
    "bearing_pitch_diameter": "bearing_m0_planned",
    "bearing_f0": "bearing_m0_planned",
    "lubricant_viscosity": "bearing_m0_planned",
    # the chatter limit in closed form (spec v14)
    "tool_damping_ratio": "chatter_limit_zoa",
    "spindle_damping_ratio": "chatter_limit_zoa",
    "radial_force_ratio": "chatter_limit_zoa",
    "edge_contact_width": "chatter_limit_zoa",
}
# The machine constants are inputs (source machine) whose default is the FMU's start
# value (default: model): read at load, moving the inputs' defaults, not an expression.
MACHINE_DEFAULTS = ("rated_power", "spindle_stiffness", "spindle_natural_frequency")
# The neck's diameter moves the tool's compliance only where the tool has a neck, and
# the default tool has none (neck_length 0): tested with one.
NECK_ONLY = ("neck_ratio",)
# Constants only the constraints read (the tool-life law's speed window): changing one
# moves which orders the spec admits.
CONSTRAINT_SCALARS = ("taylor_speed_ratio_min", "taylor_speed_ratio_max")
# Per material: kc11 and mc set the planned cutting force, the others the tool life.
TARGETS = {"kc11": "kc_planned", "mc": "kc_planned", "edge_tangential": "edge_force_planned",
           "indentation_coefficient": "chatter_limit_zoa"}  # fmt: skip
CELLS = {
    f"{column}_{m}": (TARGETS.get(column, "tool_life_planned"), m)
    for column in COLUMNS
    for m in MATERIALS
}
# 6061's reference speed moves only vc_ref itself: flank wear does not end a tool's life
# there, so its life has no speed term and no speed window.
CELLS["vc_ref_aluminium_6061"] = ("vc_ref", "aluminium_6061")


def spec_data(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(RAW)
    data.update(changes)
    return data


def spec_on(fmu: Path, data: dict[str, Any] | None = None) -> TwinSpec:
    """The spindle spec (or ``data``) reading the FMU (file or folder) at ``fmu``."""
    data = copy.deepcopy(data or RAW)
    data["fmu"] = {**data["fmu"], "path": str(fmu)}
    del data["fmu"]["model"]
    return TwinSpec.from_dict(data)


def description_with(folder: Path, **starts: float) -> Path:
    """An FMU folder holding the spindle FMU's modelDescription.xml with other start
    values (no binary: enough for a spec to read the model's constants from)."""
    with zipfile.ZipFile(fmu_for_model("spindle")) as zf:
        root = ET.fromstring(zf.read("modelDescription.xml"))
    found = set()
    for var in root.iterfind("ModelVariables/ScalarVariable"):
        if var.get("name") in starts:
            value = starts[str(var.get("name"))]
            text = str(value) if isinstance(value, int) else repr(float(value))
            next(iter(var)).set("start", text)
            found.add(var.get("name"))
    assert found == set(starts)
    folder.mkdir(parents=True)
    ET.ElementTree(root).write(folder / "modelDescription.xml", encoding="UTF-8")
    return folder


@pytest.fixture(scope="module")
def rows() -> dict[str, Any]:
    """Orders inside the spec's DOE ranges, every material and coolant setting."""
    spec = load_spec(SPEC)
    values = random_inputs(spec, np.random.default_rng(5), 3000)
    values["material"] = np.array(MATERIALS * 600)
    return {"values": values, "quantity": np.random.default_rng(6).integers(1, 500, 3000)}


def derived(spec: TwinSpec, rows: dict[str, Any]) -> dict[str, np.ndarray]:
    names = spec.namespace(rows["values"], rows["quantity"])
    n = len(rows["quantity"])
    return {k: np.broadcast_to(np.asarray(names[k]), (n,)) for k in spec.derived}


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as err:
        TwinSpec.from_dict(data)
    return err.value.problems


# ---- every constant comes from the FMU ---------------------------------------------------


def test_the_spec_reads_every_model_constant_it_uses_from_the_fmu() -> None:
    spec = load_spec(SPEC)
    table = catalogue_from_model_table(TABLE)
    built = catalogue_from_fmu_file(fmu_for_model("spindle"))
    read = spec.model_constant_values
    assert set(read) == (
        set(SCALARS) | set(CELLS) | set(CONSTRAINT_SCALARS) | set(NECK_ONLY) | set(MACHINE_DEFAULTS)
    )
    for name, value in read.items():
        assert value == table[name].start == built[name].start, name
    assert read["rated_power"] == 20000.0 and read["kc11_steel_c45"] == 2220.0
    # The model_constants section names each one's unit, as the FMU declares it.
    for key, unit in spec.model_constants.items():
        names = [key] if key in read else [f"{key}_{m}" for m in MATERIALS]
        assert {built[n].unit or "1" for n in names} == {unit}, key


@pytest.mark.parametrize("name", [*SCALARS, *CELLS])
def test_each_constant_moves_the_derived_values_that_use_it(
    name: str, rows: dict[str, Any], tmp_path: Path
) -> None:
    """Change one parameter of the FMU by 10 %: the derived value the closed form
    builds on it changes, and for a material's constant only on that material's rows."""
    base_spec = load_spec(SPEC)
    base = derived(base_spec, rows)
    value = base_spec.model_constant_values[name]
    # flank_wear_life is 0 in 6061; bearing_count an integer
    new = value + 1 if name == "bearing_count" else value * 1.1 if value else 0.1
    spec = spec_on(description_with(tmp_path / "fmu", **{name: new}), spec_data())
    assert spec.model_constant_values[name] == new
    moved = derived(spec, rows)
    target, material = SCALARS.get(name), None
    if target is None:
        target, material = CELLS[name]
    mine = np.ones(len(rows["quantity"]), bool)
    if material is not None:
        mine = rows["values"]["material"] == material
        if name.startswith("coolant_factor"):
            mine &= rows["values"]["coolant_on"]
    ok = np.isfinite(base[target]) & np.isfinite(moved[target])
    assert (base[target][mine & ok] != moved[target][mine & ok]).mean() > 0.2, target
    for key in base:  # nothing else moves: no other material, no unrelated row
        np.testing.assert_array_equal(base[key][~mine], moved[key][~mine], err_msg=key)


def test_the_neck_diameter_moves_the_compliance_of_a_tool_with_a_neck(
    rows: dict[str, Any], tmp_path: Path
) -> None:
    base = derived(spec_on(description_with(tmp_path / "a", neck_length=10.0)), rows)
    thinner = description_with(tmp_path / "b", neck_length=10.0, neck_ratio=0.8)
    thin = derived(spec_on(thinner), rows)
    v = rows["values"]
    has_neck = v["tool_overhang"] > np.minimum(base["flute_len"], v["tool_overhang"]) + 1e-9
    assert has_neck.mean() > 0.5
    # A thinner neck is softer, by the difference of its 1 / EI over its segment.
    assert np.all(thin["beam_compliance"][has_neck] > base["beam_compliance"][has_neck])
    np.testing.assert_array_equal(
        thin["beam_compliance"][~has_neck], base["beam_compliance"][~has_neck]
    )


def test_the_closed_forms_follow_the_new_values_exactly(
    rows: dict[str, Any], tmp_path: Path
) -> None:
    base = derived(load_spec(SPEC), rows)
    changed = {
        "base_speed": 7700.0,
        "kc11_steel_c45": 2400.0,
        "life_ref_steel_c45": 36.0,
        "vc_ref_ti6al4v": 66.0,
        "tool_price_per_mm": 8.0,
    }
    new = derived(spec_on(description_with(tmp_path / "fmu", **changed)), rows)
    v = rows["values"]
    steel, ti = v["material"] == "steel_c45", v["material"] == "ti6al4v"
    # S1 curve: the machine's rated power above the base speed, constant torque below.
    expected_s1 = v["rated_power"] * np.minimum(1, v["spindle_speed"] / 7700.0)
    np.testing.assert_allclose(new["power_s1"], expected_s1, rtol=1e-15)
    # Kienzle for steel with the new kc1.1, the other materials as before.
    kc = 2400.0 * base["chip_mean"][steel] ** -0.14
    assert np.array_equal(new["kc_planned"][steel], kc)
    assert np.array_equal(new["kc_planned"][~steel], base["kc_planned"][~steel])
    # Taylor: T ~ life_ref and T ~ vc_ref^(1/n), n = 0.25.
    ratio = new["tool_life_planned"] / base["tool_life_planned"]
    ok = np.isfinite(ratio)
    assert (ok & steel).sum() > 200 and (ok & ti).sum() > 200
    np.testing.assert_allclose(ratio[ok & steel], 36.0 / 45.0, rtol=1e-14)
    np.testing.assert_allclose(ratio[ok & ti], 1.1**4, rtol=1e-14)
    # The tool price per mm of diameter (where the tool life stayed as it was).
    same_life = ~steel & ~ti & (base["tool_cost_planned"] > 0) & ok
    cost = new["tool_cost_planned"][same_life] / base["tool_cost_planned"][same_life]
    np.testing.assert_allclose(cost, 8.0 / 6.0, rtol=1e-15)
    # A machine constant's default follows the FMU (default: model); its value in a
    # row is the machine's, so the derived values do not move.
    machine = spec_on(description_with(tmp_path / "m", spindle_natural_frequency=1100.0))
    assert machine.inputs["spindle_natural_frequency"].default == 1100.0
    assert machine.model_constant_values["spindle_natural_frequency"] == 1100.0
    np.testing.assert_array_equal(derived(machine, rows)["spindle_lobe_ratio"],
                                  base["spindle_lobe_ratio"])


def test_resolved_expressions_are_plain_expressions_with_the_same_values(
    rows: dict[str, Any],
) -> None:
    """``Expr.text`` holds the numbers in place of the references: compiled again without
    the FMU (as the ONNX export of surrogates does), it gives the same values."""
    spec = load_spec(SPEC)
    names = spec.namespace(rows["values"], rows["quantity"])
    exprs = spec.derived_exprs
    assert exprs["power_s1"].text == "rated_power * min(1, spindle_speed / 7000.0)"
    assert exprs["kc_planned"].text.startswith(
        "(830.0 * material_is_aluminium_6061 + 2220.0 * material_is_steel_c45 + "
    )
    for key, expr in exprs.items():
        assert "model." not in expr.text, key
        if isinstance(expr, BlockExpr):  # a block's text is its expressions, resolved
            inner = [*expr.steps, *expr.at_each, *([("value", expr.value)] if expr.value else [])]
            for name, e in inner:
                assert compile_expr(e.text, field=name).names == e.names, (key, name)
            continue
        again = compile_expr(expr.text, field=key)
        assert again.names == expr.names, key
        np.testing.assert_array_equal(again.evaluate(names), names[key], err_msg=key)


@pytest.mark.parametrize("name", CONSTRAINT_SCALARS)
def test_each_window_constant_moves_the_orders_the_spec_admits(
    name: str, rows: dict[str, Any], tmp_path: Path
) -> None:
    base_spec = load_spec(SPEC)
    value = base_spec.model_constant_values[name]
    spec = spec_on(description_with(tmp_path / "fmu", **{name: value * 1.1}), spec_data())

    def admitted(s: TwinSpec) -> np.ndarray:
        names = s.namespace(rows["values"], rows["quantity"])
        ok = np.ones(len(rows["quantity"]), bool)
        for e in s.constraint_exprs:
            ok &= np.broadcast_to(np.asarray(e.evaluate(names)) != 0, ok.shape)
        return ok

    # Rows within the carbide window whose admission the 10 % change flips.
    assert (admitted(base_spec) != admitted(spec)).any(), name


# ---- a model built with other constants --------------------------------------------------

# Constants of a spindle unlike the shipped one: a steel grade with a shorter reference
# life, a faster wear-in, another feed exponent, a dearer tool and a stronger drive.
CHANGED_STARTS = {
    "rated_power": (20000.0, 25000.0),
    "tool_price_per_mm": (6.0, 8.0),
    "wear_breakin": (0.05, 0.06),
    "taylor_feed_exponent": (0.25, 0.3),
}


@pytest.fixture(scope="module")
def changed_fmu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spindle model with the constants above changed in its model.yaml, built."""
    root = tmp_path_factory.mktemp("changed-spindle")
    model = root / "spindle"
    shutil.copytree(MODELS_DIR / "spindle", model)
    text = (model / "model.yaml").read_text()
    text, count = re.subn(r"(\n +steel_c45: +\{kc11: [^}]*life_ref: )45\.0,", r"\g<1>36.0,", text)
    assert count == 1
    for name, (old_value, new_value) in CHANGED_STARTS.items():
        pattern = rf"(\{{name: {name}, causality: parameter, unit: [^,]+, start: ){old_value!r}"
        text, count = re.subn(pattern, rf"\g<1>{new_value!r}", text)
        assert count == 1, name
    (model / "model.yaml").write_text(text)
    return build_model(model, out_dir=root / "cache").path


def test_a_changed_model_moves_the_spec_with_it(changed_fmu: Path) -> None:
    spec = spec_on(changed_fmu)
    read = spec.model_constant_values
    assert read["life_ref_steel_c45"] == 36.0 and read["rated_power"] == 25000.0
    assert read["tool_price_per_mm"] == 8.0 and read["taylor_feed_exponent"] == 0.3
    assert (
        spec.spec_hash != load_spec(SPEC).spec_hash
    )  # a bundle of the old model no longer matches
    assert spec_on(changed_fmu).spec_hash == spec.spec_hash


def test_the_spec_loaded_for_one_model_is_refused_on_another(changed_fmu: Path) -> None:
    """The values read at load are checked again against the FMU a run opens."""
    md = fmpy.read_model_description(str(changed_fmu))
    with pytest.raises(SpecError) as err:
        load_spec(SPEC).check_against(catalogue_from_model_description(md))
    assert err.value.problems == [
        "model.rated_power: the spec's expressions read 20000 at load; the FMU it runs "
        "starts it at 25000 (load the spec again)",
        "model.life_ref_steel_c45: the spec's expressions read 45 at load; the FMU it runs "
        "starts it at 36 (load the spec again)",
        "model.taylor_feed_exponent: the spec's expressions read 0.25 at load; the FMU it "
        "runs starts it at 0.3 (load the spec again)",
        "model.wear_breakin: the spec's expressions read 0.05 at load; the FMU it runs "
        "starts it at 0.06 (load the spec again)",
        "model.tool_price_per_mm: the spec's expressions read 6 at load; the FMU it runs "
        "starts it at 8 (load the spec again)",
    ]
    spec_on(changed_fmu).check_against(catalogue_from_model_description(md))


def test_the_changed_fmu_and_the_spec_baselines_agree(changed_fmu: Path, tmp_path: Path) -> None:
    """As tests/physics/test_spindle_baselines.py, on the changed model: the closed-form
    baselines equal its FMU runs, and the shipped constants would not."""
    spec = spec_on(changed_fmu)
    out = tmp_path / "d"
    generate(spec, out, n=120, method="lhs", seed=11, progress=False)
    frame = read_runs(out).to_pandas()
    frame = frame[(frame["status"] == "ok") & (frame["tool_broken_end"] < 0.5)]
    assert len(frame) > 80 and (frame["tool_changes"] > 0).mean() > 0.15  # tools are changed
    values = {k: frame[k].to_numpy() for k in spec.inputs}
    names = spec.namespace(values, frame["quantity"])
    shipped = load_spec(SPEC).namespace(values, frame["quantity"])
    # energy_planned leaves out the load-dependent bearing friction (test_spindle_baselines)
    baselines = {k: v.baseline for k, v in spec.kpis.items() if v.baseline and k != "energy"}
    assert len(baselines) == 7
    for kpi, key in baselines.items():
        y = frame[kpi].to_numpy()
        np.testing.assert_allclose(names[key], y, rtol=1e-8, atol=1e-9, err_msg=kpi)
    life = frame["tool_life"].to_numpy()
    steel = values["material"] == "steel_c45"
    off = np.abs(shipped["tool_life_planned"] / life - 1)
    assert np.median(off) > 0.05 and np.median(off[steel]) > 0.15  # y and life_ref moved
    cost = np.abs(shipped["tool_cost_planned"] / frame["tool_cost_per_part"].to_numpy() - 1)
    assert np.median(cost) > 0.1


def test_table_values_are_parameters_a_run_can_override() -> None:
    """The material table is FMU parameters (kc11_steel_c45, ...) with the column's unit,
    which the C model reads: a run that sets one cuts with it."""
    md = fmpy.read_model_description(str(fmu_for_model("spindle")))
    cat = catalogue_from_model_description(md)
    kc = cat["kc11_steel_c45"]
    assert (kc.causality, kc.unit, kc.start) == ("parameter", "N/mm2", 2220.0)
    assert kc.description.startswith("material_data.kc11[steel_c45]: Kienzle")
    assert cat["life_ref_ti6al4v"].unit == "min" and cat["vc_ref_ti6al4v"].unit == "m/min"
    outputs = ["specific_cutting_force"]
    with Fmu(fmu_for_model("spindle")) as fmu:
        plain = fmu.simulate({"material": 2}, 30.0, step_size=1.0, outputs=outputs)
        harder = fmu.simulate(
            {"material": 2, "kc11_steel_c45": 2400.0}, 30.0, step_size=1.0, outputs=outputs
        )
        other = fmu.simulate(
            {"material": 1, "kc11_steel_c45": 2400.0}, 30.0, step_size=1.0, outputs=outputs
        )
        aluminium = fmu.simulate({"material": 1}, 30.0, step_size=1.0, outputs=outputs)
    kc_plain = np.asarray(plain["specific_cutting_force"])
    np.testing.assert_allclose(
        np.asarray(harder["specific_cutting_force"]), kc_plain * 2400.0 / 2220.0, rtol=1e-13
    )
    assert np.array_equal(other["specific_cutting_force"], aluminium["specific_cutting_force"])


# ---- refused references -------------------------------------------------------------------


def test_an_unknown_parameter_is_refused_naming_it_the_file_and_the_expression(
    tmp_path: Path,
) -> None:
    data = spec_data()
    data["derived"]["power_s1"] = "model.rated_powr * min(1, spindle_speed / model.base_speed)"
    path = tmp_path / "spindle.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    line = (
        "derived.power_s1: 'model.rated_powr * min(1, spindle_speed / model.base_speed)' "
        f"reads model.rated_powr, but {WHERE} has no parameter 'rated_powr' (did you mean "
        "'rated_power'?)"
    )
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert err.value.problems == [line]
    assert str(err.value) == f"invalid twin spec {path}:\n  {line}"
    result = CliRunner().invoke(main, ["fmu", "simulate", "--spec", str(path)])
    assert result.exit_code == 2
    assert f"error: invalid twin spec {path}:\n  {line}\n" in result.output


def test_an_unknown_table_column_or_choice_is_refused_naming_the_parameter() -> None:
    data = spec_data()
    data["derived"]["kc_planned"] = "model.kc12[material] * chip_mean ** -model.mc[material]"
    assert problems_of(data) == [
        "derived.kc_planned: 'model.kc12[material] * chip_mean ** -model.mc[material]' reads "
        "model.kc12[material] (parameter 'kc12_aluminium_6061' for choice 'aluminium_6061'), "
        f"but {WHERE} has no parameter 'kc12_aluminium_6061' (did you mean "
        "'kc11_aluminium_6061'?)"
    ]
    data = spec_data()
    data["inputs"]["material"]["choices"] = [*MATERIALS, "brass"]
    line = (
        "derived.life_ref: 'model.life_ref[material]' reads model.life_ref[material] (parameter "
        f"'life_ref_brass' for choice 'brass'), but {WHERE} has no parameter 'life_ref_brass'"
    )
    assert any(p.startswith(line) for p in problems_of(data))


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        (
            "model.spindle_speed",
            "reads model.spindle_speed, but the spec's input 'spindle_speed' sets parameter "
            "'spindle_speed' for each run, so its start value is not what a run uses; use "
            "spindle_speed instead",
        ),
        (
            "model.tool_life",
            f"reads model.tool_life, but 'tool_life' is an output variable of {WHERE}; "
            "model.<name> reads the start value of a parameter",
        ),
        (
            "model.kc11[spindle_speed]",
            "reads model.kc11[spindle_speed], but 'spindle_speed' is not a categorical input "
            "of the spec; a table column is indexed by one (categorical inputs: material, "
            "finished_surface)",
        ),
        (
            "model.kc11[1]",
            "indexes model.kc11 with '1'; a table column takes the name of a categorical "
            "input, e.g. model.kc11[material]",
        ),
        ("model.base_speed.x", "uses attribute access, which is not allowed"),
    ],
)
def test_references_that_are_not_model_constants_are_refused(expression: str, problem: str) -> None:
    data = spec_data()
    data["derived"]["probe"] = expression
    assert problems_of(data) == [f"derived.probe: {expression!r} {problem}"]


def test_units_are_declared_once_per_constant_and_must_be_the_fmus() -> None:
    data = spec_data()
    data["model_constants"] = {**RAW["model_constants"], "base_speed": "1/s"}
    assert problems_of(data) == [
        "model_constants.base_speed: '1/s' differs from the unit of the FMU's parameter "
        "'base_speed', 'rpm'; the expressions were written for '1/s': convert them, then "
        "declare 'rpm'"
    ]
    data = spec_data()
    data["model_constants"] = {k: u for k, u in RAW["model_constants"].items() if k != "kc11"}
    assert problems_of(data) == [
        "model_constants.kc11: missing; declare the unit the expressions that read "
        "model.kc11[material] are written for (the FMU's parameter 'kc11_aluminium_6061' is "
        "in 'N/mm2')"
    ]
    data = spec_data()
    data["model_constants"] = {**RAW["model_constants"], "s3_period": "s"}
    assert problems_of(data) == [
        "model_constants.s3_period: not read by any expression (as model.s3_period or "
        "model.s3_period[<input>]); remove it"
    ]


def test_an_fmu_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.fmu"
    assert problems_of_spec_on(missing) == [
        f"fmu.path: {missing} does not exist; the expressions read the model's constants "
        "(model.<name>) from it"
    ]
    text = tmp_path / "notes.fmu"
    text.write_text("not a zip")
    assert problems_of_spec_on(text) == [
        f"fmu.path: the model's constants (model.<name>) cannot be read: {text}: not an FMU "
        "(a zip file): File is not a zip file"
    ]
    data = spec_data(fmu={**RAW["fmu"], "model": "lathe"})
    assert problems_of(data) == [
        "fmu.model: the model's constants (model.<name>) cannot be read: model 'lathe': no "
        "model.yaml found (models here: spindle)"
    ]


def problems_of_spec_on(fmu: Path) -> list[str]:
    with pytest.raises(SpecError) as err:
        spec_on(fmu)
    return err.value.problems


def test_a_relative_fmu_path_is_read_from_the_spec_folder(tmp_path: Path) -> None:
    data = spec_data(fmu={"path": "fmus/changed", "step_size": 1.0})
    description_with(tmp_path / "fmus" / "changed", base_speed=7700.0, rated_power=22000.0)
    path = tmp_path / "spindle.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    spec = load_spec(path)
    assert spec.model_constant_values["base_speed"] == 7700.0
    assert spec.inputs["rated_power"].default == 22000.0  # default: model


def test_model_constants_outside_a_spec_are_refused() -> None:
    with pytest.raises(ExpressionError) as err:
        compile_expr("2 * model.rated_power", field="f")
    assert str(err.value) == (
        "f: '2 * model.rated_power' reads model.rated_power; model constants are read only "
        "in a twin spec"
    )


def test_the_hash_holds_the_section_and_the_values_read() -> None:
    """Left out while unused, so a spec that reads no model constants keeps its hash."""
    from physics._spec_text import canonical
    from tests.fmus import ridge_spec

    assert "model_constants" not in canonical(ridge_spec())
    assert "model_constant_values" not in canonical(ridge_spec())
    spec = load_spec(SPEC)
    data = canonical(spec)
    assert data["model_constants"] == spec.model_constants
    assert data["model_constant_values"]["rated_power"] == 20000.0


# ---- the model description, read without fmpy -----------------------------------------


@pytest.mark.parametrize("fmu", ["spindle", "lag3"])
def test_the_standard_library_reader_agrees_with_fmpy(fmu: str) -> None:
    path = fmu_for_model("spindle") if fmu == "spindle" else build_test_fmu("lag3")
    ours = catalogue_from_fmu_file(path)
    theirs = catalogue_from_model_description(fmpy.read_model_description(str(path)))
    scalar = {k: v for k, v in theirs.items() if not v.shape and v.type != "Binary"}
    assert set(ours) == set(scalar)
    for name, v in scalar.items():
        got = ours[name]
        assert (got.type, got.causality, got.variability, got.unit) == (
            v.type, v.causality, v.variability, v.unit,
        ), name  # fmt: skip
        assert got.start == v.start or (
            isinstance(v.start, float) and math.isnan(v.start) and math.isnan(float(got.start))
        ), name


def test_a_table_column_named_like_a_variable_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "spindle"
    shutil.copytree(MODELS_DIR / "spindle", model)
    table = model / "model.yaml"
    text = table.read_text().replace(
        "variables:\n",
        'variables:\n  - {name: mc_ti6al4v, causality: parameter, start: 1.0, description: ""}\n',
        1,
    )
    table.write_text(text)
    with pytest.raises(BuildError) as err:
        load_table(table)
    assert str(err.value) == (
        f"{table}: tables.material_data.columns.mc: its parameter mc_ti6al4v has the name of "
        "a variable; rename the column or the variable"
    )

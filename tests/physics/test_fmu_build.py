"""Building FMUs from model tables: validity, caching, one source of truth, errors."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import fmpy
import numpy as np
import pytest
from fmpy.validation import validate_fmu

from physics.fmu import BuildError, Fmu, build_model, fmu_for_model
from physics.fmu._build import MODELS_DIR
from physics.variables import catalogue_from_model_description, catalogue_from_model_table


def copy_model(tmp_path: Path, name: str = "spindle") -> Path:
    target = tmp_path / name
    shutil.copytree(MODELS_DIR / name, target)
    return target


def test_built_fmu_passes_fmpy_validation() -> None:
    assert validate_fmu(str(fmu_for_model("spindle"))) == []


def test_fmu_holds_binary_sources_and_description() -> None:
    with zipfile.ZipFile(fmu_for_model("spindle")) as zf:
        names = set(zf.namelist())
    assert {
        "modelDescription.xml",
        "binaries/linux64/spindle.so",
        "sources/spindle.c",
        "sources/fmi2_framework.c",
        "sources/model_vars.h",
        "sources/model.yaml",
    } <= names


def test_value_references_agree_between_header_and_description() -> None:
    path = fmu_for_model("spindle")
    with zipfile.ZipFile(path) as zf:
        header = zf.read("sources/model_vars.h").decode()
    in_header = {m[1]: int(m[2]) for m in re.finditer(r"VR_(\w+) = (\d+),", header)}
    md = fmpy.read_model_description(str(path))
    in_xml = {v.name: v.valueReference for v in md.modelVariables}
    assert in_header == in_xml
    assert len(in_xml) == len(catalogue_from_model_table(MODELS_DIR / "spindle" / "model.yaml"))


def test_description_carries_the_table_units_bounds_and_enumeration() -> None:
    md = fmpy.read_model_description(str(fmu_for_model("spindle")))
    from_fmu = catalogue_from_model_description(md)
    from_table = catalogue_from_model_table(MODELS_DIR / "spindle" / "model.yaml")
    for name, v in from_table.items():
        got = from_fmu[name]
        assert (got.type, got.causality, got.unit, got.min, got.max) == (
            v.type,
            v.causality,
            v.unit,
            v.min,
            v.max,
        ), name
    assert from_fmu["material"].items == {
        "aluminium_6061": 1,
        "steel_c45": 2,
        "stainless_316l": 3,
        "ti6al4v": 4,
        "cast_iron_gjl250": 5,
    }
    units = {u.name: u.baseUnit for u in md.unitDefinitions}
    assert units["degC"].K == 1 and units["degC"].offset == 273.15
    assert units["rpm"].factor == pytest.approx(2 * np.pi / 60)


def test_simulate_fmu_runs_it_and_agrees_with_our_adapter() -> None:
    path = fmu_for_model("spindle")
    result = fmpy.simulate_fmu(
        str(path),
        stop_time=600.0,
        step_size=1.0,
        output_interval=10.0,
        output=["tool_wear", "bearing_temperature", "energy"],
    )
    with Fmu(path) as fmu:
        ours = fmu.simulate(
            {},
            600.0,
            step_size=1.0,
            output_interval=10.0,
            outputs=["tool_wear", "bearing_temperature", "energy"],
        )
    # fmpy accumulates communication times by addition, we multiply: last-bit differences.
    for name in ("tool_wear", "bearing_temperature", "energy"):
        np.testing.assert_allclose(result[name], ours[name], rtol=1e-12, atol=1e-15)


def test_build_is_cached_by_source_hash(tmp_path: Path) -> None:
    model = copy_model(tmp_path)
    first = build_model(model, out_dir=tmp_path / "cache")
    again = build_model(model, out_dir=tmp_path / "cache")
    assert not first.cached and again.cached and again.path == first.path
    # Same sources, fresh build: byte-identical FMU.
    rebuilt = build_model(model, out_dir=tmp_path / "cache", force=True)
    assert rebuilt.path.read_bytes() == first.path.read_bytes()
    c_file = model / "spindle.c"
    c_file.write_text(c_file.read_text() + "\n/* a change */\n")
    changed = build_model(model, out_dir=tmp_path / "cache")
    assert not changed.cached and changed.source_hash != first.source_hash


def test_compiler_errors_are_reported(tmp_path: Path) -> None:
    model = copy_model(tmp_path)
    (model / "spindle.c").write_text("this is not C;\n")
    with pytest.raises(BuildError, match=r"model 'spindle': the C compiler failed:\n.*error"):
        build_model(model, out_dir=tmp_path / "cache")


def test_a_call_to_an_undeclared_function_fails_the_build(tmp_path: Path) -> None:
    # It would link into a library that fails only when the FMU is loaded.
    model = copy_model(tmp_path)
    c_file = model / "spindle.c"
    source = c_file.read_text().replace(
        "V(cut_time) = 60.0", "helper_nobody_wrote(); V(cut_time) = 60.0"
    )
    c_file.write_text(source)
    with pytest.raises(BuildError, match=r"(?s)the C compiler failed:.*helper_nobody_wrote"):
        build_model(model, out_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "unit: rpm, start: 5000.0",
            "unit: furlongs, start: 5000.0",
            "variables.spindle_speed.unit: 'furlongs' is not a known unit",
        ),
        (
            "min: 100.0, max: 24000.0",
            "min: 100.0, max: 2.4e4",
            "variables.spindle_speed.max: '2.4e4' is not a number (YAML needs a signed exponent",
        ),
        (
            "start: 5000.0, min: 100.0",
            "start: 50.0, min: 100.0",
            "variables.spindle_speed.start: 50.0 is outside [100.0, 24000.0]",
        ),
        (
            "{name: feed_rate, causality: calculatedParameter",
            "{name: feed_rate, causality: sometimes",
            "variables.feed_rate.causality: 'sometimes' is not one of parameter,",
        ),
        ("{name: feed_rate,", "{name: spindle_speed,", "variables.spindle_speed: defined twice"),
    ],
)
def test_bad_model_tables_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    model = copy_model(tmp_path)
    table = model / "model.yaml"
    text = table.read_text()
    assert old in text
    table.write_text(text.replace(old, new, 1))
    with pytest.raises(BuildError) as info:
        build_model(model, out_dir=tmp_path / "cache")
    assert message in str(info.value)
    assert not (tmp_path / "cache" / "spindle").exists() or not any(
        (tmp_path / "cache" / "spindle").rglob("*.fmu")
    )


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(
        BuildError, match=r"model 'lathe': no model.yaml found \(models here: .*spindle"
    ):
        build_model("lathe")

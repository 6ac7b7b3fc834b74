"""The trained spindle surrogate as an FMU: generated C against onnxruntime, both FMI
versions validated by fmpy and simulated by fmpy and by a second importer (Vico's ecos),
the domain flag, the model description's figures, and the CLI."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from surrogates._export import run, session

PARITY_ROWS = 1000


@pytest.fixture(scope="module")
def signature(trained):  # type: ignore[no-untyped-def]
    return json.loads((trained.bundle / "signature.json").read_text())


@pytest.fixture(scope="module")
def fmus(trained, tmp_path_factory):  # type: ignore[no-untyped-def]
    from surrogates._fmu import export_fmu

    out = tmp_path_factory.mktemp("fmu")
    return {v: export_fmu(trained.bundle, out / f"spindle{v}.fmu", v) for v in ("2", "3")}


@pytest.fixture(scope="module")
def rows(signature, fmus):  # type: ignore[no-untyped-def]
    """1,000 rows of the spec's domain: 900 in the training domain, 100 outside it."""
    from fmpy import read_model_description

    from surrogates._fmu import check_rows

    md = read_model_description(str(fmus["2"].path))
    bounds = {v.name: (float(v.min), float(v.max)) for v in md.modelVariables
              if v.causality == "input" and v.min is not None}  # fmt: skip
    return check_rows(signature, bounds, PARITY_ROWS, seed=11)


def _scale_diff(mine: np.ndarray, want: np.ndarray, scale: np.ndarray) -> float:
    assert np.array_equal(np.isnan(mine), np.isnan(want))
    d = np.abs(mine.astype(np.float64) - want) / np.maximum(scale, 1.0)
    return float(np.nanmax(d))


def test_generated_c_equals_onnxruntime_over_the_domain(trained, signature, rows, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from surrogates._cgen import NativeGraph, compile_library, generate

    prog = generate(trained.bundle / "model.onnx")
    library, warnings = compile_library(prog, tmp_path)
    assert warnings == ""  # -Wall -Wextra, C99
    got = NativeGraph(prog, library).run(rows)
    want = run(session(str(trained.bundle / "model.onnx")), rows)
    assert set(got) == set(want) == {"mean", "std", "lower", "upper", "probability"}
    scale = np.nanmax(np.abs(np.concatenate([want[k] for k in ("mean", "lower", "upper")])), axis=0)
    # the means to 1e-5; the spread and bounds to 1e-4 (surrogates._fmu.PARITY says why)
    assert _scale_diff(got["mean"], want["mean"], scale) <= 1e-5
    for name in ("std", "lower", "upper"):
        assert _scale_diff(got[name], want[name], scale) <= 1e-4, name
    assert _scale_diff(got["probability"], want["probability"], np.ones(1)) <= 1e-5
    # the rows are the domain's, not the FMU's failures: most give numbers
    assert np.isfinite(want["mean"]).mean() > 0.3


@pytest.mark.parametrize("fmi", ["2", "3"])
def test_fmu_validates_and_fmpy_equals_onnxruntime(trained, signature, fmus, rows, fmi) -> None:  # type: ignore[no-untyped-def]
    from fmpy.validation import validate_fmu

    from surrogates._fmu import FmuRows, domain_violations

    made = fmus[fmi]
    assert validate_fmu(str(made.path)) == []
    fmu = FmuRows(made.path)
    try:
        got = fmu.run(rows, signature)
    finally:
        fmu.close()
    want = run(session(str(trained.bundle / "model.onnx")), rows)
    names = signature["outputs"]
    scale = np.nanmax(np.abs(np.concatenate([want[k] for k in ("mean", "lower", "upper")])), axis=0)
    suffix = {"mean": "", "std": "_std", "lower": "_lower", "upper": "_upper"}
    for what, end in suffix.items():
        mine = np.stack([got[k + end] for k in names[what]], axis=1)
        assert _scale_diff(mine, want[what], scale) <= (1e-5 if what == "mean" else 1e-4), what
    probs = np.stack([got[f"{e}_probability"] for e in names["probability"]], axis=1)
    assert _scale_diff(probs, want["probability"], np.ones(1)) <= 1e-5
    # the training-domain check: the count of inputs outside, row by row
    count = domain_violations(signature, rows)
    assert (count > 0).sum() == 100 and count.max() >= 2
    np.testing.assert_array_equal(got["domain_violations"], count)
    np.testing.assert_array_equal(got["in_domain"], (count == 0).astype(float))


def test_variables_follow_the_spec(trained, signature, fmus) -> None:  # type: ignore[no-untyped-def]
    from fmpy import read_model_description

    md = read_model_description(str(fmus["2"].path))
    by_name = {v.name: v for v in md.modelVariables}
    material = by_name["material"]
    assert material.causality == "input" and material.type == "Enumeration"
    items = [item.name for item in material.declaredType.items]
    assert items == trained.spec.inputs["material"].choice_names
    speed = by_name["spindle_speed"]
    spec_speed = trained.spec.inputs["spindle_speed"]
    assert (speed.unit, float(speed.min), float(speed.max)) == (
        "rpm",
        spec_speed.min,
        spec_speed.max,
    )
    assert by_name["coolant_on"].type == "Boolean"
    assert by_name["n_teeth"].type == "Integer"
    q = trained.spec.require_quantity()
    assert (float(by_name["quantity"].min), float(by_name["quantity"].max)) == (q.min, q.max)
    for kpi in signature["outputs"]["mean"]:
        for end in ("", "_std", "_lower", "_upper"):
            assert by_name[kpi + end].causality == "output"
    assert by_name["wall_error_max"].unit == "um"
    assert by_name["tool_broken_end_probability"].causality == "output"
    assert by_name["in_domain"].type == "Boolean"
    assert by_name["domain_violations"].type == "Integer"
    assert signature["bundle_hash"] in md.description
    assert f"spec version {signature['spec']['version']}" in md.description
    assert (
        md.fmiVersion == "2.0" and read_model_description(str(fmus["3"].path)).fmiVersion == "3.0"
    )


def test_sources_and_resources_travel_in_the_fmu(fmus, signature) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(fmus["3"].path) as z:
        names = set(z.namelist())
        assert (
            json.loads(z.read("resources/signature.json"))["bundle_hash"]
            == signature["bundle_hash"]
        )
        card = z.read("resources/model_card.md").decode()
    assert "## As an FMU" in card and "`wall_error_max_lower`" in card
    ident = fmus["3"].model_name
    assert {f"sources/{ident}.c", "sources/buildDescription.xml", "sources/fmi3_framework.c",
            "sources/framework_core.c", "resources/model_card.md"} <= names  # fmt: skip
    with zipfile.ZipFile(fmus["2"].path) as z:
        assert f"sources/{ident}.c" in z.namelist()
        assert not any(n.startswith("sources/fmi3") for n in z.namelist())


def _ecos_loads() -> bool:
    try:
        import ecospy  # noqa: F401
    except OSError:  # its library needs Debian's libtbb12
        return False
    return True


@pytest.mark.parametrize("fmi", ["2", "3"])
def test_a_second_importer_gives_the_same_answers(trained, signature, rows, tmp_path, fmi) -> None:  # type: ignore[no-untyped-def]
    if not _ecos_loads():
        if os.environ.get("CI"):
            pytest.fail("ecospy cannot load its library (apt-get install libtbb12; make setup)")
        pytest.skip("ecospy needs libtbb12 (make setup installs it)")
    from ecospy import EcosSimulation, EcosSimulationStructure

    from surrogates._fmu import export_fmu

    # ecos has no enumerations: the categorical inputs as integers numbered like them
    made = export_fmu(trained.bundle, tmp_path / "ecos.fmu", fmi, choices="integer")
    cols = signature["inputs"]
    picked = rows[:40]
    want = run(session(str(trained.bundle / "model.onnx")), picked)
    names = signature["outputs"]["mean"]
    with EcosSimulationStructure() as ss:
        ss.add_model("s", str(made.path))
        with EcosSimulation(structure=ss, step_size=1.0) as sim:
            sim.init()
            for i, row in enumerate(picked):
                for j, c in enumerate(cols):
                    key = f"s::{c['name']}"
                    if c["kind"] == "real":
                        sim.set_real(key, float(row[j]))
                    elif c["kind"] == "boolean":
                        sim.set_bool(key, bool(row[j]))
                    else:
                        shift = 1 if c["kind"] == "categorical" else 0
                        sim.set_integer(key, int(row[j]) + shift)
                sim.step(1)
                mine = np.array([sim.get_real(f"s::{k}") for k in names])
                ok = np.isfinite(want["mean"][i])
                np.testing.assert_allclose(mine[ok], want["mean"][i][ok], rtol=1e-5, atol=1e-5)
                assert np.isnan(mine[~ok]).all()
                assert sim.get_integer("s::domain_violations") == int(
                    np.asarray(_violations(signature, row[None]))[0]
                )


def _violations(signature, rows):  # type: ignore[no-untyped-def]
    from surrogates._fmu import domain_violations

    return domain_violations(signature, rows)


def test_cli_exports_checks_and_refuses(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from physics.cli import main

    out = tmp_path / "s.fmu"
    r = CliRunner().invoke(main, ["export", str(trained.bundle), "--fmu", str(out), "--fmi", "3",
                                  "--no-register"], catch_exceptions=False)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"exported {out}: FMI 3.0 co-simulation, 26 inputs" in r.output
    assert (
        "parity FMU (fmpy) vs onnxruntime over 1000 rows, 100 outside the training domain"
        in r.output
    )
    r = CliRunner().invoke(main, ["export", str(trained.bundle)])
    assert r.exit_code == 2
    assert f"{trained.bundle} is a bundle: give --fmu OUT.fmu to export it as an FMU" in r.output
    r = CliRunner().invoke(main, ["export", str(trained.bundle), "--fmu", str(tmp_path / "s.zip")])
    assert r.exit_code == 2
    assert "--fmu: '" + str(tmp_path / "s.zip") + "' must end in .fmu" in r.output
    r = CliRunner().invoke(main, ["export", str(trained.bundle), "--fmu", str(out), "--fmi", "4"])
    assert r.exit_code == 2 and "'4' is not one of '2', '3'" in r.output
    assert out.is_file()  # the refused calls left the FMU that was there


def test_twin_fmu_simulate_runs_the_fmu_by_its_spec(trained, signature, fmus) -> None:  # type: ignore[no-untyped-def]
    """The spec written beside the FMU: `twin fmu simulate` runs a job order through it, the
    order's quantity included, and gets the served model's answer."""
    from click.testing import CliRunner

    from physics.cli import main

    made = fmus["3"]
    assert made.spec == made.path.with_suffix(".yaml") and made.spec.is_file()
    order = Path(__file__).resolve().parents[2] / "experiments" / "orders" / "demo.yaml"
    args = ["fmu", "simulate", "--spec", str(made.spec), "--order", str(order), "--json"]
    r = CliRunner().invoke(main, [*args, "--quantity", "300"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["quantity"] == 300 and result["values"]["material"] == "steel_c45"
    row = []
    for c in signature["inputs"]:
        v = 300 if c["name"] == "quantity" else result["values"][c["name"]]
        row.append(c["choices"].index(v) if c["kind"] == "categorical" else float(v))
    want = run(session(str(trained.bundle / "model.onnx")), np.array([row], np.float32))
    kpis = result["kpis"]
    for k, name in enumerate(signature["outputs"]["mean"]):
        got, ref = kpis[name]["value"], float(want["mean"][0, k])
        assert abs(got - ref) <= 1e-5 * max(1.0, abs(ref)), name
        assert kpis[name]["unit"] == (signature["kpis"][name].get("unit") or "1")
        lower = kpis[f"{name}_lower"]["value"]
        assert abs(lower - float(want["lower"][0, k])) <= 1e-4 * max(1.0, abs(ref)), name
    assert kpis["domain_violations"]["value"] == 0 and kpis["in_domain"]["value"] == 1
    # the quantity reaches the FMU: another quantity, other parts completed
    r = CliRunner().invoke(main, [*args, "--quantity", "40"], catch_exceptions=False)
    assert json.loads(r.output)["kpis"]["parts_completed"]["value"] < 0.2 * kpis[
        "parts_completed"]["value"]


def test_the_fmu_rebuilds_from_its_own_sources(trained, signature, fmus, rows, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Another platform's importer builds the binary from sources/ and buildDescription.xml
    alone: done here with the C compiler, the result simulates like the shipped binary."""
    import subprocess
    import xml.etree.ElementTree as ET

    from physics.fmu._build import compiler, fmi3_platform
    from surrogates._fmu import FmuRows

    made = fmus["3"]
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(made.path) as z:
        z.extractall(unpacked)
    build = ET.parse(unpacked / "sources" / "buildDescription.xml").getroot()
    config = build.find("BuildConfiguration")
    assert config is not None
    files = [f.get("name") for f in config.iter("SourceFile")]
    binary = unpacked / "binaries" / fmi3_platform() / f"{config.get('modelIdentifier')}.so"
    binary.unlink()
    src = unpacked / "sources"
    cmd = [compiler(), "-shared", "-fPIC", "-O2", "-std=c99", "-I", str(src), "-o", str(binary),
           *[str(src / str(f)) for f in files], "-lm"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    rebuilt = tmp_path / "rebuilt.fmu"
    with zipfile.ZipFile(rebuilt, "w") as z:
        for path in sorted(p for p in unpacked.rglob("*") if p.is_file()):
            z.write(path, path.relative_to(unpacked).as_posix())
    shipped, again = FmuRows(made.path), FmuRows(rebuilt)
    try:
        a, b = shipped.run(rows[:50], signature), again.run(rows[:50], signature)
    finally:
        shipped.close()
        again.close()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)

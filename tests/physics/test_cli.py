"""The ``twin`` command line, run as a real process where it matters."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from physics.cli import main
from tests.physics import spindle_reference as ref
from tests.physics.test_workorder import MATERIALS

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"
ORDER = ROOT / "experiments" / "orders" / "demo.yaml"
TWIN = Path(sys.executable).with_name("twin")


def twin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TWIN), *args], capture_output=True, text=True, timeout=120)


def simulate_demo(*extra: str) -> subprocess.CompletedProcess[str]:
    """``twin fmu simulate`` of the demo order, with extra arguments."""
    return twin("fmu", "simulate", "--spec", str(SPEC), "--order", str(ORDER), *extra)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def demo_params(**overrides) -> dict:
    """Parameters of the demo order file (its ids are the FMU's names), for the closed forms."""
    order = yaml.safe_load(ORDER.read_text())
    values = {item["id"]: item["value"] for item in order["job_order_parameters"]}
    values["ambient_temperature"] = order["environment"]["ambient_temperature"]
    values["tool_wear_start"] = order["state"]["tool_wear"]
    values["bearing_damage_start"] = order["state"]["bearing_damage"]
    values["warmup_fraction"] = order["state"]["warmup"]
    return ref.params(**{**values, **overrides})


def wear_after(p: dict, parts: int) -> float:
    """Closed form: VB after ``parts`` parts, the wear clock advancing 1 / life per minute
    of cutting from the clock of the starting VB (no tool change within the order)."""
    clock = ref.clock_of_vb(p, p["tool_wear_start"])
    clock += parts * ref.geometry(p)["cut_time"] / (60 * ref.tool_life(p))
    assert clock < 1  # the tool lasts the order: the control changes no tool
    return float(ref.vb_of_clock(p, clock))


def test_build_then_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSET_TWIN_CACHE", str(tmp_path))
    first = invoke("fmu", "build")
    second = invoke("fmu", "build", "spindle")
    assert first.exit_code == 0 and second.exit_code == 0
    assert first.output.startswith("built  spindle")
    assert second.output.startswith("cached spindle")
    spindle_line, driver_line = first.output.splitlines()
    assert spindle_line.split()[-1] == second.output.split()[-1]
    assert Path(spindle_line.split()[-1]).is_file()
    assert driver_line.startswith("driver native")
    assert Path(driver_line.split()[-1]).is_file()
    assert Path(driver_line.split()[-1]).is_relative_to(tmp_path)


def test_validate_and_info() -> None:
    result = invoke("fmu", "validate")
    assert result.exit_code == 0
    assert result.output.startswith("ok   spindle: no problems")
    info = invoke("fmu", "info", "spindle")
    assert info.exit_code == 0
    lines = info.output.splitlines()
    assert lines[0] == "model      spindle  (FMI 2.0 co-simulation)"
    speed = next(line for line in lines if line.split()[:1] == ["spindle_speed"])
    assert speed.split() == ["spindle_speed", "Real", "rpm", "=", "5000", "[100,", "24000]"]
    assert "{aluminium_6061, steel_c45, stainless_316l, ti6al4v, cast_iron_gjl250}" in info.output


def test_unknown_model_is_refused() -> None:
    result = invoke("fmu", "info", "lathe")
    assert result.exit_code == 1
    assert "error: model 'lathe': no model.yaml found (models here: spindle)" in result.output


def test_simulate_a_work_order_end_to_end(tmp_path: Path) -> None:
    csv_path, png_path = tmp_path / "t.csv", tmp_path / "t.png"
    proc = simulate_demo(
        "--set",
        "coolant_on=false",
        "--quantity",
        "12",
        "--csv",
        str(csv_path),
        "--plot",
        str(png_path),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # The expected figures come from the closed forms, with the order's values.
    p = demo_params(coolant_on=False)
    g = ref.geometry(p)
    assert out["quantity"] == 12
    assert out["stop_time"] == pytest.approx(12 * g["cycle_time"], rel=1e-12)
    # Dry, the C45 tool lives longer (coolant_factor 0.8 applies with coolant only).
    assert out["kpis"]["tool_life"]["value"] == pytest.approx(ref.tool_life(p), rel=1e-9)
    vb_end = wear_after(p, 12)
    assert out["kpis"]["tool_wear_end"]["value"] == pytest.approx(vb_end, rel=1e-9)
    assert out["kpis"]["tool_wear_end"]["unit"] == "mm"
    assert out["kpis"]["parts_completed"]["value"] == 12
    assert out["kpis"]["tool_changes"]["value"] == 0
    assert out["kpis"]["part_cycle_time"]["value"] == pytest.approx(g["cycle_time"], rel=1e-12)
    with open(csv_path) as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert header[0] == "time [s]" and "tool_wear [mm]" in header
    times = np.array([float(r[0]) for r in rows[1:]])
    assert times[0] == 0.0 and times[-1] == pytest.approx(out["stop_time"])
    assert len(times) == math.ceil(out["stop_time"] / 10.0) + 1
    wear = np.array([float(r[header.index("tool_wear [mm]")]) for r in rows[1:]])
    assert wear[-1] == pytest.approx(vb_end, rel=1e-9)
    data = png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_table_output_checks_quality_and_maintenance() -> None:
    result = invoke(
        "fmu", "simulate", "--spec", str(SPEC), "--order", str(ORDER), "--quantity", "2"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("milling_spindle | WO-2026-1001 | 2 parts | simulated")
    roughness = next(line for line in lines if line.startswith("surface_roughness_max"))
    # Ra of the wall is largest at the end, with the most wear: closed form with the
    # demo's values.
    p = demo_params()
    ra_end = ref.roughness(p, wear_after(p, 2))
    assert float(roughness.split()[1]) == pytest.approx(ra_end, rel=1e-4)  # 5 digits printed
    assert roughness.endswith("quality      OK RA [..3.2]")
    checks = {line.split()[0]: line for line in lines[2:]}
    assert checks["wall_error_max"].endswith("quality      OK WALL [-100..100]")
    assert checks["tool_wear_end"].endswith("maintenance  below limit 0.3 (replace_tool)")
    assert checks["tool_changes"].endswith("maintenance  below limit 0.5 (stage_sister_tools)")
    assert checks["spindle_rating_load_max"].endswith("process      OK FEAS [..1]")
    assert checks["spindle_load_max"].endswith("process      ")  # reported, no limit
    assert checks["static_safety_min"].endswith("process      ")  # never binds: no limit
    assert checks["stability_margin"].endswith("FEAS [1..]")  # a feasibility limit
    assert checks["energy"].endswith("process      ")  # no limit: no check


def test_bad_order_is_refused_with_every_problem_and_writes_nothing(tmp_path: Path) -> None:
    out_csv = tmp_path / "never.csv"
    proc = simulate_demo(
        "--set",
        "spindle_speed=30000",
        "--set",
        "n_teeth=2.5",
        "--set",
        "material=brass",
        "--csv",
        str(out_csv),
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: invalid work order:",
        "  material: 'brass' is not one of " + MATERIALS,
        "  spindle_speed: 30000 is outside the allowed range [500, 24000] rpm",
        "  n_teeth: '2.5' is not a whole number",
    ]
    assert not out_csv.exists()


def test_order_file_units_and_shape_are_checked(tmp_path: Path) -> None:
    order = tmp_path / "o.yaml"
    order.write_text(
        ORDER.read_text()
        .replace("unit: rpm", "unit: rev/s")
        .replace("planned_quantity: 30\n", "planned_qty: 30\n")
    )
    result = invoke("fmu", "simulate", "--spec", str(SPEC), "--order", str(order))
    assert result.exit_code == 2
    assert "  planned_qty: unknown field (expected one of " in result.output
    assert (
        "  job_order_parameters.spindle_speed.unit: 'rev/s' does not match the twin "
        "spec's unit 'rpm'"
    ) in result.output
    assert "  planned_quantity: missing" in result.output


def test_constraint_violation_is_explained() -> None:
    result = invoke(
        "fmu", "simulate", "--spec", str(SPEC), "--order", str(ORDER), "--set", "radial_width=14"
    )
    assert result.exit_code == 2
    assert "constraint: " in result.output and "radial_width <= tool_diameter" in result.output


def test_missing_quantity_is_reported_with_the_other_problems() -> None:
    result = invoke(
        "fmu", "simulate", "--spec", str(SPEC), "--order", str(ORDER), "--set", "material=brass"
    )
    assert result.exit_code == 2  # the demo order has a quantity: no quantity problem
    no_qty = invoke("fmu", "simulate", "--spec", str(SPEC), "--set", "material=steel_c45")
    assert no_qty.exit_code == 2
    assert "  quantity: missing (required, allowed range [1, 500] parts)" in no_qty.output
    assert "  spindle_speed: missing (required, allowed range [500, 24000] rpm)" in no_qty.output

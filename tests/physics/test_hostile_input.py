"""Hostile input to ``twin data generate``: every case exits 2 with one line that names
the file or field and the problem, and writes nothing (the --out folder is never made)."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from physics.cli import main
from tests.fmus import build_test_fmu, ridge_spec_data

MD = "modelDescription.xml"
IDENT, EVIL = re.compile(r'modelIdentifier="\w+"'), 'modelIdentifier="../../evil"'
OUTSIDE, SRC = ("../outside.txt", b"x"), "sources/ridge.c"


def generate_from(tmp_path: Path, data: dict, *, n: int, out: str = "ds") -> tuple[Any, Path]:
    """Write ``data`` as a spec file and run ``twin data generate`` on it into ``out``."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    folder = tmp_path / out
    args = ["data", "generate", "--spec", str(spec), "--n", str(n), "--out", str(folder)]
    return CliRunner().invoke(main, [*args, "--no-progress"]), folder


def rewrite(src: Path, dst: Path, change: Callable[[str, bytes], tuple[str, bytes] | None]) -> None:
    """Copy an FMU, passing each member through ``change`` (None drops it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            kept = change(info.filename, zin.read(info.filename))
            if kept is not None:
                zout.writestr(kept[0], kept[1])


def _md(edit: Callable[[str], str]) -> Callable[[str, bytes], tuple[str, bytes]]:
    return lambda name, data: (name, edit(data.decode()).encode()) if name == MD else (name, data)


def _binary(data: bytes | None) -> Callable[[str, bytes], tuple[str, bytes] | None]:
    def change(name: str, blob: bytes) -> tuple[str, bytes] | None:
        if name.startswith("binaries/linux64/"):
            return None if data is None else (name, data)
        return name, blob

    return change


CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "not-a-zip": (
        lambda src, dst: dst.write_text("hello"),
        "{fmu}: not an FMU (not a zip archive: File is not a zip file)",
    ),
    "no-model-description": (
        lambda src, dst: rewrite(src, dst, lambda n, d: None if n == MD else (n, d)),
        "{fmu}: not an FMU (no modelDescription.xml in the archive)",
    ),
    "invalid-xml": (
        lambda src, dst: rewrite(src, dst, _md(lambda x: x[: len(x) // 2])),
        "{fmu}: modelDescription.xml is not valid XML (",
    ),
    "fmi-1": (
        lambda src, dst: rewrite(src, dst, _md(lambda x: x.replace('"2.0"', '"1.0"', 1))),
        "{fmu}: FMI 1.0 is not supported (FMI 2.0 and 3.0 are)",
    ),
    "model-identifier-path": (
        lambda src, dst: rewrite(src, dst, _md(lambda x: IDENT.sub(EVIL, x))),
        "{fmu}: modelIdentifier '../../evil' is not a C identifier",
    ),
    "member-outside": (
        lambda src, dst: rewrite(src, dst, lambda n, d: OUTSIDE if n == SRC else (n, d)),
        "{fmu}: the archive member '../outside.txt' points outside the FMU",
    ),
    "no-binary-here": (
        lambda src, dst: rewrite(src, dst, _binary(None)),
        "{fmu}: no binary for this platform (binaries/linux64/ridge.so); it has no binaries",
    ),
    "broken-binary": (
        lambda src, dst: rewrite(src, dst, _binary(b"\x7fELF but not really")),
        "{fmu}: its binary binaries/linux64/ridge.so does not load or instantiate (",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_fmu_is_refused_before_any_work(case: str, tmp_path: Path) -> None:
    make, message = CASES[case]
    fmu = tmp_path / "ridge.fmu"
    make(build_test_fmu("ridge"), fmu)
    result, out = generate_from(tmp_path, ridge_spec_data(fmu), n=4, out="out")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: " + message.format(fmu=fmu)), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not out.exists()
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_a_spec_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(
        yaml.safe_dump(ridge_spec_data(build_test_fmu("ridge"))).encode() + b"# \xff\xfe\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["data", "generate", "--spec", str(spec), "--n", "4", "--out", str(out), "--no-progress"],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: invalid twin spec {spec}"), result.stderr
    assert "UTF-8" in result.stderr
    assert not out.exists()


def test_an_unwritable_out_is_refused(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:  # root writes anywhere: use a path below a file instead
        parent = tmp_path / "a-file"
        parent.write_text("x")
        out = parent / "ds"
        expected = f"error: --out: cannot write to {out} (Not a directory)\n"
    else:
        parent = tmp_path / "ro"
        parent.mkdir(mode=0o500)
        out = parent / "ds"
        expected = f"error: --out: cannot write to {out} (Permission denied)\n"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(ridge_spec_data(build_test_fmu("ridge"))))
    result = CliRunner().invoke(
        main,
        ["data", "generate", "--spec", str(spec), "--n", "4", "--out", str(out), "--no-progress"],
    )
    assert (result.exit_code, result.stderr) == (2, expected)
    shutil.rmtree(tmp_path / "ro", ignore_errors=True)


def lag3_with_binary_array_and_string(tmp_path: Path) -> Path:
    """lag3 (FMI 3.0) with a Binary, a 3x3 array and a String parameter added to its
    description: variables the spec never names, which once crashed every command."""
    extra = (
        '<Binary name="blob" valueReference="20" causality="parameter" variability="fixed">'
        '<Start value="666f6f"/></Binary>'
        '<Float64 name="R" valueReference="21" causality="parameter" variability="fixed" '
        'start="1 0 0 0 1 0 0 0 1"><Dimension start="3"/><Dimension start="3"/></Float64>'
        '<String name="label" valueReference="22" causality="parameter" variability="fixed">'
        '<Start value="abc"/></String></ModelVariables>'
    )
    fmu = tmp_path / "lag3x.fmu"
    rewrite(build_test_fmu("lag3"), fmu, _md(lambda x: x.replace("</ModelVariables>", extra)))
    return fmu


def lag3_spec(fmu: Path, kpi_variable: str = "y") -> dict:
    return {
        "name": "lag3x",
        "version": 1,
        "fmu": {"path": str(fmu), "step_size": 0.1, "output_interval": 0.5},
        "inputs": {"u": {"variable": "u", "source": "order", "unit": "1", "min": -2, "max": 2}},
        "quantity": {"unit": "1", "min": 1, "max": 2},
        "stop_time": "2.0",
        "doe": {"factors": {"u": {}}, "fixed": {"quantity": 1}},
        "kpis": {
            "k": {"variable": kpi_variable, "reduction": "final", "unit": "1", "role": "process"}
        },
    }


def test_binary_array_and_string_variables_are_listed_and_never_read(tmp_path: Path) -> None:
    import math

    from physics.dataset import read_runs

    fmu = lag3_with_binary_array_and_string(tmp_path)
    info = CliRunner().invoke(main, ["fmu", "info", str(fmu)])
    assert info.exit_code == 0, info.output
    lines = info.stdout.splitlines()
    assert "  R                              Real[3x3]            = 1 0 0 0 1 0 0 0 1   " \
        "(array: not supported)" in lines  # fmt: skip
    assert any(
        x.startswith("  blob ") and x.endswith("= 666f6f         (not sampled)") for x in lines
    )
    assert any(x.startswith("  tol ") and x.endswith("[0, ..]") for x in lines)  # no max: not -inf
    assert any(x.startswith("  settle_rule ") and "= absolute " in x for x in lines)
    # A study on y runs; y(2) of the lag from 0 with tau = 1 is u (1 - exp(-2)).
    result, out = generate_from(tmp_path, lag3_spec(fmu), n=3, out="ds")
    assert result.exit_code == 0, result.output
    rows = read_runs(out).to_pylist()
    assert [r["status"] for r in rows] == ["ok"] * 3
    for r in rows:
        assert r["k"] == pytest.approx(r["u"] * (1 - math.exp(-2.0)), rel=1e-12)


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        ("R", "'R' is an array variable (3x3 Real); arrays are not supported; a KPI reduces "
              "one number per sample"),
        ("blob", "'blob' is a Binary variable; KPIs need numbers"),
        ("label", "'label' is a String variable; KPIs need numbers"),
    ],
)  # fmt: skip
def test_a_kpi_on_an_array_binary_or_string_is_refused_by_name(
    tmp_path: Path, variable: str, problem: str
) -> None:
    data = lag3_spec(lag3_with_binary_array_and_string(tmp_path), variable)
    result, out = generate_from(tmp_path, data, n=3)
    assert result.exit_code == 2
    assert result.stderr == f"error: invalid twin spec lag3x:\n  kpis.k.variable: {problem}\n"
    assert not out.exists()


def test_the_readme_bring_your_own_fmu_example_runs(tmp_path: Path) -> None:
    import math

    import pandas as pd

    root = Path(__file__).resolve().parents[2]
    shutil.copy(root / "experiments" / "byo" / "lag3.yaml", tmp_path / "lag3.yaml")
    shutil.copy(build_test_fmu("lag3"), tmp_path / "lag3.fmu")
    out = tmp_path / "out"
    args = [
        "data",
        "generate",
        "--spec",
        str(tmp_path / "lag3.yaml"),
        "--n",
        "8",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(out / "runs")
    assert len(rows) == 8 and set(rows["status"]) == {"ok"}
    # y(3 s) from y_start = 0: u (1 - exp(-3 / tau)); 30 steps of 0.1 s, one count each.
    expected = rows["u"] * (1 - (-3.0 / rows["tau"]).map(math.exp))
    assert rows["y_end"].tolist() == pytest.approx(expected.tolist(), rel=1e-12)
    assert rows["steps"].tolist() == [30.0] * 8


def test_enumeration_items_with_spaces_can_be_chosen(tmp_path: Path) -> None:
    from physics.dataset import read_runs

    fmu = tmp_path / "lag3s.fmu"
    rename = _md(lambda x: x.replace('<Item name="relative"', '<Item name="relative to u"'))
    rewrite(build_test_fmu("lag3"), fmu, rename)
    data = lag3_spec(fmu, "settled")
    data["inputs"].update(
        settle_rule={"variable": "settle_rule", "source": "order",
                     "choices": ["absolute", "relative to u"]},
        tol={"variable": "tol", "source": "order", "unit": "1", "min": 0, "max": 1},
    )  # fmt: skip
    data["doe"] = {"factors": {"settle_rule": {}}, "fixed": {"quantity": 1, "u": 2.0, "tol": 0.6}}
    # The indicator of the spaced item is a name like any other: settle_rule_is_relative_to_u.
    data["stop_time"] = "1.0 + 0.0 * settle_rule_is_relative_to_u"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    out = tmp_path / "ds"
    args = ["data", "generate", "--spec", str(spec), "--doe", "grid", "--n", "1", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = {r["settle_rule"]: r for r in read_runs(out).to_pylist()}
    # |y - u| = 2 exp(-1) = 0.74 at t = 1: outside the absolute band 0.6, inside the
    # relative one 0.6 |u| = 1.2: the item set really is the one chosen.
    assert (rows["absolute"]["k"], rows["relative to u"]["k"]) == (0.0, 1.0)
    assert {r["status"] for r in rows.values()} == {"ok"}


def test_a_model_exchange_fmu_without_its_functions_is_refused_before_any_run(
    tmp_path: Path,
) -> None:
    # The ridge's description rewritten to model exchange; its binary has only the
    # co-simulation functions.
    fmu = tmp_path / "ridge_me.fmu"
    to_me = re.compile(r"<CoSimulation .*?</CoSimulation>", re.S)
    rewrite(
        build_test_fmu("ridge"),
        fmu,
        _md(lambda x: to_me.sub('<ModelExchange modelIdentifier="ridge"/>', x)),
    )
    info = CliRunner().invoke(main, ["fmu", "info", str(fmu)])
    assert info.exit_code == 0, info.output
    assert info.stdout.splitlines()[:2] == [
        "model      ridge  (FMI 2.0 model exchange)",
        "           model exchange only: runs through CVode "
        "(continuous states: 0, event indicators: 0)",
    ]
    assert any(line.startswith("  x1 ") for line in info.stdout.splitlines())
    result, out = generate_from(tmp_path, ridge_spec_data(fmu), n=4, out="out")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {fmu}: its binary binaries/linux64/ridge.so does not load or instantiate "
        "(AttributeError: "
    )
    assert "undefined symbol: fmi2" in result.stderr
    assert not out.exists()


def test_a_variable_with_initial_exact_can_be_set(tmp_path: Path) -> None:
    import math

    from physics.dataset import read_runs

    # y_start declared as FMI declares a state's start value: a local with initial="exact".
    fmu = tmp_path / "lag3_state.fmu"
    old = 'causality="parameter" variability="fixed" description="y at the start time"'
    new = 'causality="local" variability="continuous" initial="exact" description="y at t0"'
    rewrite(build_test_fmu("lag3"), fmu, _md(lambda x: x.replace(old, new)))
    info = CliRunner().invoke(main, ["fmu", "info", str(fmu)]).stdout
    assert "\nlocal (2)\n  y_start " in info  # no longer a parameter (der_y is the other)
    data = lag3_spec(fmu)
    data["inputs"]["y0"] = {
        "variable": "y_start",
        "source": "state",
        "unit": "1",
        "min": -1,
        "max": 1,
    }
    data["doe"]["factors"]["y0"] = {}
    result, out = generate_from(tmp_path, data, n=4, out="ds")
    assert result.exit_code == 0, result.output
    for r in read_runs(out).to_pylist():  # y(2) = u + (y0 - u) exp(-2), tau = 1
        assert r["k"] == pytest.approx(r["u"] + (r["y0"] - r["u"]) * math.exp(-2.0), rel=1e-12)


def test_simulate_needs_no_quantity_for_a_fixed_horizon_and_prints_its_unit(
    tmp_path: Path,
) -> None:
    import math

    data = lag3_spec(build_test_fmu("lag3"))  # stop_time "2.0": a fixed horizon
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["fmu", "simulate", "--spec", str(spec), "--set", "u=1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "lag3x | work order | fixed horizon | simulated 2.0 s (0.00 h)"
    assert float(lines[2].split()[1]) == pytest.approx(1 - math.exp(-2.0), rel=1e-4)
    # A horizon from the quantity prints the quantity in its unit, not in "parts".
    data["quantity"]["unit"], data["stop_time"] = "s", "quantity"
    spec.write_text(yaml.safe_dump(data))
    args = ["fmu", "simulate", "--spec", str(spec), "--set", "u=1", "--quantity", "1.5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "lag3x | work order | 1.5 s | simulated 1.5 s (0.00 h)"


@pytest.fixture(scope="module")
def ramp_fmu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fmus/pythonfmu/Ramp.py built by PythonFMU's own CLI."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("pythonfmu")
    source = Path(__file__).resolve().parents[1] / "fmus" / "pythonfmu" / "Ramp.py"
    exe = Path(sys.executable).with_name("pythonfmu")
    subprocess.run([str(exe), "build", "-f", str(source), "-d", str(out)], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    return out / "Ramp.fmu"


@pytest.mark.parametrize("engine", ["native", "fmpy"])
def test_an_fmu_from_pythonfmu_runs_to_its_closed_form(ramp_fmu: Path, engine: str) -> None:
    from physics.runner import KpiDef, LocalPool, PoolOptions, SimulationJob, Task

    job = SimulationJob(
        str(ramp_fmu), 0.1, 0.5,
        (KpiDef("y_end", "y", "final"), KpiDef("y_int", "y", "integral"),
         KpiDef("steps", "cycles", "final")),
        ("y",), engine=engine,
    )  # fmt: skip
    tasks = [Task(i, {"k": k}, 2.0) for i, k in enumerate([0.5, 1.0, 3.0])]
    results = sorted(LocalPool(job, PoolOptions(workers=1)).run(tasks), key=lambda r: r.run_id)
    for r, k in zip(results, [0.5, 1.0, 3.0], strict=True):
        assert r.status == "ok", r.message
        assert r.kpis["y_end"] == pytest.approx(2.0 * k, rel=1e-12)
        assert r.kpis["y_int"] == pytest.approx(k * 2.0**2 / 2, rel=1e-12)
        assert r.kpis["steps"] == 20
        assert r.trajectory is not None and len(r.trajectory["time"]) == 5  # 0, 0.5 .. 2


def test_a_twin_with_nothing_to_set_studies_its_horizon(tmp_path: Path) -> None:
    import math

    from physics.dataset import read_runs

    data = lag3_spec(build_test_fmu("lag3"))
    data["inputs"] = {}  # the FMU's own start values: u = 1, tau = 1, y_start = 0
    data["quantity"] = {"unit": "s", "min": 1, "max": 5}
    data["stop_time"] = "quantity"
    data["doe"] = {"factors": {"quantity": {}}}
    result, out = generate_from(tmp_path, data, n=5, out="ds")
    assert result.exit_code == 0, result.output
    for r in read_runs(out).to_pylist():
        assert r["k"] == pytest.approx(1 - math.exp(-r["quantity"]), rel=1e-12)


def test_a_twin_without_a_quantity_studies_a_fixed_horizon(tmp_path: Path) -> None:
    import math

    from physics.dataset import read_runs
    from physics.spec import SpecError, TwinSpec

    data = lag3_spec(build_test_fmu("lag3"))
    del data["quantity"]
    data["doe"] = {"factors": {"u": {}}}  # nothing to fix: there is no quantity
    result, out = generate_from(tmp_path, data, n=4, out="ds")
    assert result.exit_code == 0, result.output
    rows = read_runs(out).to_pylist()
    assert "quantity" not in rows[0]  # no column for what the twin does not have
    for r in rows:
        assert r["k"] == pytest.approx(r["u"] * (1 - math.exp(-2.0)), rel=1e-12)
    simulate = ["fmu", "simulate", "--spec", str(tmp_path / "spec.yaml"), "--set", "u=1"]
    result = CliRunner().invoke(main, [*simulate, "--quantity", "3"])
    assert (result.exit_code, result.stderr) == (
        2,
        "error: invalid work order:\n  quantity: '3' given, but this twin has no quantity\n",
    )
    # Expressions cannot use a quantity that is not there; the later stages say they need one.
    with pytest.raises(SpecError) as info:
        TwinSpec.from_dict({**data, "stop_time": "2 * quantity"})
    assert info.value.problems == [
        "stop_time: unknown name 'quantity'; expressions can use inputs, derived values "
        "(the spec declares no quantity)"
    ]
    with pytest.raises(SpecError) as info:
        TwinSpec.from_dict(data).require_quantity()
    assert info.value.problems == [
        "quantity: missing; surrogates and the MES service need a work-order quantity"
    ]


def test_the_stop_time_defaults_to_the_fmus_default_experiment(tmp_path: Path) -> None:
    import math

    data = lag3_spec(build_test_fmu("lag3"))  # lag3's default experiment: 0 to 10 s
    del data["quantity"], data["stop_time"]
    data["doe"] = {"factors": {"u": {}}}
    spec = tmp_path / "spec.yaml"
    for stop_time, horizon in ((None, 10.0), ("default_stop_time / 5", 2.0)):
        if stop_time is not None:
            data["stop_time"] = stop_time
        spec.write_text(yaml.safe_dump(data))
        result = CliRunner().invoke(main, ["fmu", "simulate", "--spec", str(spec), "--set", "u=1"])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert (
            lines[0] == f"lag3x | work order | fixed horizon | simulated {horizon:.1f} s (0.00 h)"
        )
        assert float(lines[2].split()[1]) == pytest.approx(1 - math.exp(-horizon), rel=1e-4)
    # An FMU without a default stop time: the order says what to write instead.
    bare = tmp_path / "bare.fmu"
    no_exp = re.compile(r"<DefaultExperiment[^>]*/>")
    rewrite(build_test_fmu("lag3"), bare, _md(lambda x: no_exp.sub("", x)))
    del data["stop_time"]
    data["fmu"]["path"] = str(bare)
    spec.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["fmu", "simulate", "--spec", str(spec), "--set", "u=1"])
    assert (result.exit_code, result.stderr) == (
        2,
        "error: invalid work order:\n  stop_time: 'default_stop_time' needs the FMU's default "
        "experiment stop time, which the FMU does not give (or was not read); write the stop "
        "time in the spec\n",
    )

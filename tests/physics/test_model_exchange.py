"""Model-exchange FMUs run through CVode behind the same runner, watchdog and dataset.

The tank and the faulty lag (FMI 2.0) and lag3 (FMI 3.0) are built with both
interfaces in one binary (``model_exchange`` in their model.yaml): their model-exchange
runs are checked
against the closed forms of tests/physics/test_test_fmus.py and against the same
FMU's co-simulation interface; a copy with the co-simulation interface removed is
what a Modelica tool exports by default.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import fmpy
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from physics.cli import main
from physics.dataset import read_card, read_runs
from physics.fmu import Fmu
from physics.fmu._codegen import load_table
from physics.fmu._errors import BuildError
from physics.runner import PoolOptions
from physics.study import generate
from tests.fmus import build_test_fmu
from tests.physics.test_hostile_input import _md, generate_from, rewrite
from tests.physics.test_runner import FAULT_STATUS, faulty_spec
from tests.physics.test_test_fmus import Tank, tank_reference

CO_SIMULATION = re.compile(r"\s*<CoSimulation\b[^>]*?/>|\s*<CoSimulation\b.*?</CoSimulation>", re.S)


def model_exchange_only(src: Path, dst: Path) -> Path:
    """A copy of an FMU whose description offers model exchange only."""
    rewrite(src, dst, _md(lambda x: CO_SIMULATION.sub("", x)))
    return dst


def test_the_build_describes_states_derivatives_and_event_indicators() -> None:
    md = fmpy.read_model_description(str(build_test_fmu("tank")))
    assert md.modelExchange.modelIdentifier == md.coSimulation.modelIdentifier == "tank"
    assert (md.numberOfContinuousStates, md.numberOfEventIndicators) == (1, 1)
    (der,) = md.derivatives
    assert (der.variable.name, der.variable.derivative.name) == ("der_level", "level")
    lag = fmpy.read_model_description(str(build_test_fmu("faulty")))
    assert (lag.numberOfContinuousStates, lag.numberOfEventIndicators) == (1, 0)
    # A table without model_exchange builds co-simulation only, as before.
    assert fmpy.read_model_description(str(build_test_fmu("ridge"))).modelExchange is None


def test_fmpys_own_model_exchange_loop_agrees_with_the_closed_form() -> None:
    # An importer we did not write drives our model-exchange functions.
    c = Tank()
    result = fmpy.simulate_fmu(
        str(build_test_fmu("tank")),
        fmi_type="ModelExchange",
        start_values=asdict(c),
        stop_time=1000.0,
        output_interval=2.0,
        relative_tolerance=1e-8,
        output=["level", "switches"],
        record_events=False,
    )
    expected = [tank_reference(c, t) for t in result["time"]]
    np.testing.assert_allclose(result["level"], [e[0] for e in expected], atol=1e-6)
    assert result["switches"].tolist() == [e[2] for e in expected]


def test_model_exchange_follows_the_co_simulation_of_the_same_fmu() -> None:
    values = asdict(Tank(inflow=0.31, outflow=0.73, area=0.1, level_low=0.2, level_high=0.8))
    path = build_test_fmu("tank")
    with Fmu(path) as cs, Fmu(path, interface="model_exchange") as me:
        assert (cs.interface, me.interface) == ("co_simulation", "model_exchange")
        a = cs.simulate(values, 100.0, step_size=0.25)
        b = me.simulate(values, 100.0, step_size=0.25)
    # About 600 events, each located by CVode's root finder.
    assert a["switches"][-1] == b["switches"][-1] == 594
    assert a["switches"].tolist() == b["switches"].tolist()
    np.testing.assert_allclose(b["level"], a["level"], rtol=0, atol=1e-8)


def test_cvode_converges_to_the_lag_as_the_tolerance_tightens() -> None:
    path = build_test_fmu("faulty")
    errors = []
    for tolerance in (1e-4, 1e-6, 1e-8, 1e-10):
        with Fmu(path, interface="model_exchange", tolerance=tolerance) as lag:
            traj = lag.simulate({"tau": 2.0, "u": 1.5}, 10.0, step_size=0.1)
        exact = 1.5 * (1 - np.exp(-traj.time / 2.0))
        errors.append(float(np.max(np.abs(traj["y"] - exact))))
    # Each 100x tighter tolerance buys at least 10x accuracy; the default 1e-6 is 4e-6.
    assert all(b < a / 10 for a, b in itertools.pairwise(errors)), errors
    assert errors[1] < 1e-5 and errors[-1] < 1e-8


def tank_spec(fmu: Path, **fmu_options: Any) -> dict[str, Any]:
    band = {"source": "order", "unit": "1", "min": 0.5, "max": 0.95}
    return {
        "name": "tank",
        "version": 1,
        "fmu": {"path": str(fmu), "step_size": 1.0, **fmu_options},
        "inputs": {"level_high": {"variable": "level_high", **band}},
        "quantity": {"unit": "s", "min": 10, "max": 2000},
        "stop_time": "quantity",
        "doe": {"factors": {"level_high": {}}, "fixed": {"quantity": 1000}},
        "kpis": {
            "switches": {"variable": "switches", "reduction": "final", "unit": "1",
                         "role": "process"},
            "level_end": {"variable": "level", "reduction": "final", "unit": "1",
                          "role": "process"},
            "level_max": {"variable": "level", "reduction": "max", "unit": "1",
                          "role": "process"},
        },
    }  # fmt: skip


def test_a_model_exchange_only_fmu_runs_a_study_to_the_closed_form(tmp_path: Path) -> None:
    fmu = model_exchange_only(build_test_fmu("tank"), tmp_path / "tank_me.fmu")
    info = CliRunner().invoke(main, ["fmu", "info", str(fmu)])
    assert info.stdout.splitlines()[:2] == [
        "model      tank  (FMI 2.0 model exchange)",
        "           model exchange only: runs through CVode "
        "(continuous states: 1, event indicators: 1)",
    ]
    result, out = generate_from(tmp_path, tank_spec(fmu), n=6)
    assert result.exit_code == 0, result.output
    assert read_card(out)["fmu"]["interface"] == "model_exchange"
    rows = read_runs(out).to_pylist()
    assert [r["status"] for r in rows] == ["ok"] * 6
    for r in rows:
        c = Tank(level_high=r["level_high"], inflow=0.002, outflow=0.005, area=0.5)
        level, _, switches = tank_reference(c, 1000.0)
        assert r["switches"] == switches
        assert r["level_end"] == pytest.approx(level, abs=1e-8)
        # Reduced at every communication step (1 s), as in co-simulation.
        peak = max(tank_reference(c, t)[0] for t in np.arange(0.0, 1001.0))
        assert r["level_max"] == pytest.approx(peak, abs=1e-8)


def test_the_interface_is_chosen_by_the_spec_and_refused_by_name(tmp_path: Path) -> None:
    both = build_test_fmu("tank")
    me_only = model_exchange_only(both, tmp_path / "tank_me.fmu")
    result, out = generate_from(tmp_path, tank_spec(me_only, interface="co_simulation"), n=2)
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {me_only}: no co-simulation interface (fmu.interface); it has model-exchange\n",
    )
    assert not out.exists()
    result, _ = generate_from(tmp_path, tank_spec(both, tolerance=1e-8), n=2, out="tol")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: invalid twin spec:\n  fmu.tolerance: 1e-08 is for model exchange, and this "
        "twin runs the FMU's co-simulation interface; set fmu.interface: model_exchange or "
        "leave the tolerance out\n",
    )
    result, _ = generate_from(tmp_path, tank_spec(both, tolerance=0), n=2, out="zero")
    assert result.exit_code == 2
    assert "fmu.tolerance: 0 must be in (0, 1), e.g. 1e-6" in result.stderr
    result, _ = generate_from(tmp_path, tank_spec(both, interface="cvode"), n=2, out="name")
    assert result.exit_code == 2 and "fmu.interface" in result.stderr
    result, out = generate_from(
        tmp_path, tank_spec(both, interface="model_exchange", tolerance=1e-8), n=2, out="me"
    )
    assert result.exit_code == 0, result.output
    assert read_card(out)["fmu"]["interface"] == "model_exchange"


def test_every_failure_of_a_model_exchange_run_becomes_a_row(tmp_path: Path) -> None:
    data = faulty_spec(build_test_fmu("faulty")).model_dump(exclude_none=True)
    data["fmu"]["interface"] = "model_exchange"
    out = tmp_path / "ds"
    from physics.spec import TwinSpec

    generate(TwinSpec.from_dict(data), out, n=1, method="grid", levels=5, progress=False,
             pool=PoolOptions(workers=2, timeout=1.5))  # fmt: skip
    rows = read_runs(out).to_pylist()
    assert sorted({r["fault"] for r in rows}) == [0, 1, 2, 3, 4]
    messages = {}
    for r in rows:
        assert r["status"] == FAULT_STATUS[r["fault"]], r
        messages[r["status"]] = r["message"]
        if r["status"] == "ok":
            # y(3) of the lag from 0 with tau = 1, through CVode at rtol 1e-6.
            assert r["y_end"] == pytest.approx(r["u"] * (1 - math.exp(-3.0)), abs=1e-5)
    assert "fmi2GetDerivatives" in messages["error"] and "injected error" in messages["error"]
    assert messages["crash"] == "worker process killed by SIGSEGV during the run"
    assert messages["timeout"] == "no answer within 1.5 s; worker killed"
    assert re.fullmatch(r"faulty: the derivative of y is nan at t = 1\.\d+", messages["nan"])


def test_fmu_simulate_runs_model_exchange(tmp_path: Path) -> None:
    fmu = model_exchange_only(build_test_fmu("tank"), tmp_path / "tank_me.fmu")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tank_spec(fmu)))
    csv = tmp_path / "traj.csv"
    args = ["fmu", "simulate", "--spec", str(spec), "--set", "level_high=0.8",
            "--quantity", "300", "--csv", str(csv)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = np.loadtxt(csv, delimiter=",", skiprows=1)
    c = Tank(level_high=0.8, inflow=0.002, outflow=0.005, area=0.5)
    for t, level in rows[::25, :2]:
        assert level == pytest.approx(tank_reference(c, t)[0], abs=1e-8)


def test_fmi3_model_exchange_runs_to_the_closed_form_and_the_co_simulation(
    tmp_path: Path,
) -> None:
    path = build_test_fmu("lag3")
    md = fmpy.read_model_description(str(path))
    assert (md.fmiVersion, md.modelExchange.modelIdentifier) == ("3.0", "lag3")
    assert (md.numberOfContinuousStates, md.numberOfEventIndicators) == (1, 0)
    values = {"tau": 2.0, "u": 1.5, "tol": 0.02}
    with Fmu(path) as cs, Fmu(path, interface="model_exchange", tolerance=1e-10) as me:
        a = cs.simulate(values, 10.0, step_size=0.1)
        b = me.simulate(values, 10.0, step_size=0.1)
    exact = 1.5 * (1 - np.exp(-b.time / 2.0))
    assert np.max(np.abs(b["y"] - exact)) < 1e-8
    np.testing.assert_allclose(b["y"], a["y"], atol=1e-8)
    # settled follows y in both; steps_taken counts steps, which model exchange has none of.
    assert b["settled"].tolist() == a["settled"].tolist() and b["settled"][-1]
    assert b["steps_taken"].max() == 0 and a["steps_taken"][-1] == 100
    # A model-exchange-only copy runs a study through CVode by default.
    fmu = model_exchange_only(path, tmp_path / "lag3_me.fmu")
    info = CliRunner().invoke(main, ["fmu", "info", str(fmu)])
    assert info.stdout.splitlines()[:2] == [
        "model      lag3  (FMI 3.0 model exchange)",
        "           model exchange only: runs through CVode "
        "(continuous states: 1, event indicators: 0)",
    ]
    data = yaml.safe_load((Path(__file__).parents[2] / "experiments/byo/lag3.yaml").read_text())
    data["fmu"]["path"] = str(fmu)
    result, out = generate_from(tmp_path, data, n=5)
    assert result.exit_code == 0, result.output
    assert read_card(out)["fmu"]["interface"] == "model_exchange"
    assert {r["status"] for r in read_runs(out).to_pylist()} == {"ok"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("model_exchange"),
         "variables.der_level.derivative_of: only a table with a model_exchange section "
         "declares derivatives"),
        (lambda t: t.update(fmi_version="3.0"),
         "model_exchange.event_indicators: 1 in an FMI 3.0 table; FMI 3.0 model-exchange "
         "builds have no event indicators yet"),
        (lambda t: t["model_exchange"].update(event_indicators=-1),
         "model_exchange.event_indicators: -1 must be an integer in [0, 1000]"),
        (lambda t: t["variables"][-1].update(derivative_of="area"),
         "variables.der_level.derivative_of: the state area must be a Real output or local "
         "(it is a Real parameter)"),
        (lambda t: t["variables"][-1].update(derivative_of="volume"),
         "variables.der_level.derivative_of: 'volume' is not a variable"),
    ],
)  # fmt: skip
def test_a_bad_model_exchange_table_is_refused_by_field(
    tmp_path: Path, edit: Any, message: str
) -> None:
    table = yaml.safe_load((Path(__file__).parents[1] / "fmus/tank/model.yaml").read_text())
    edit(table)
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(table))
    with pytest.raises(BuildError) as info:
        load_table(path)
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.parametrize("interface", ["co_simulation", "model_exchange"])
def test_an_input_profile_is_held_between_communication_points(interface: str) -> None:
    # d follows a ramp, set at each communication point and held over the step: y obeys
    # y' = (u + d_i - y) / tau on step i, whose exact solution the recursion below gives.
    path = build_test_fmu("faulty")
    step, tau, u = 0.25, 0.8, 1.0
    profile = {"d": ([0.0, 2.0, 4.0], [0.0, 1.0, -0.5])}
    with Fmu(path, interface=interface, tolerance=1e-10 if interface != "co_simulation"
             else None) as lag:  # fmt: skip
        traj = lag.simulate({"tau": tau, "u": u}, 4.0, step_size=step, inputs=profile)
    y, expected = 0.0, [0.0]
    for t in traj.time[:-1]:
        target = u + float(np.interp(t, *profile["d"]))
        y = target + (y - target) * math.exp(-step / tau)
        expected.append(y)
    np.testing.assert_allclose(traj["y"], expected, rtol=0,
                               atol=1e-12 if interface == "co_simulation" else 1e-8)  # fmt: skip

"""The native driver against the fmpy path, the reference it must reproduce."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from physics.fmu import Fmu, SimulationError, fmu_for_model
from physics.fmu._native import NativeFmu
from physics.kpi import REDUCTIONS, reduce
from physics.runner import KpiDef, LocalPool, PoolOptions, SimulationJob, Task
from tests.fmus import build_test_fmu


@pytest.fixture(scope="module")
def spindle() -> Iterator[tuple[Fmu, NativeFmu]]:
    fmu = Fmu(fmu_for_model("spindle"))
    native = NativeFmu(fmu)
    yield fmu, native
    native.close()
    fmu.close()


def check_against_fmpy(
    fmu: Fmu,
    native: NativeFmu,
    start: dict,
    stop: float,
    step: float,
    interval: float,
    variables: list[str],
    limits: dict[str, float],
) -> None:
    kpis = [(v, r, limits[v] if r == "time_above" else None) for v in variables for r in REDUCTIONS]
    got = native.run(
        start, stop, step_size=step, output_interval=interval, kpis=kpis, trajectory=variables
    )
    ref = fmu.simulate(start, stop, step_size=step, output_interval=interval, outputs=variables)
    np.testing.assert_array_equal(got.time, ref.time)
    for v in variables:
        np.testing.assert_array_equal(got.samples[v], np.asarray(ref[v], dtype=float))
    # KPIs reduce every communication step, not only the output samples.
    steps = fmu.simulate(start, stop, step_size=step, output_interval=step, outputs=variables)
    np.testing.assert_array_equal(steps.every(round(interval / step)).time, ref.time)
    expected = [reduce(r, steps.time, steps[v], lim) for v, r, lim in kpis]
    np.testing.assert_allclose(got.kpis, expected, rtol=1e-12, atol=1e-300)
    assert got.step_seconds > 0


@pytest.mark.parametrize(
    ("start", "stop", "step", "interval"),
    [
        ({}, 1800.0, 1.0, 10.0),
        ({"material": 4, "spindle_speed": 2500.0, "coolant_on": False}, 2000.5, 0.5, 2.0),
        (
            {"material": 1, "spindle_speed": 20000.0, "n_teeth": 2, "tool_wear_start": 0.1},
            907.0,
            1.0,
            1.0,
        ),
    ],
)
def test_spindle_runs_match_the_fmpy_path(spindle, start, stop, step, interval) -> None:
    fmu, native = spindle
    check_against_fmpy(
        fmu,
        native,
        start,
        stop,
        step,
        interval,
        ["tool_wear", "bearing_temperature", "spindle_power", "cutting", "parts_completed"],
        {
            "tool_wear": 0.05,
            "bearing_temperature": 21.5,
            "spindle_power": 1000.0,
            "cutting": 0.5,
            "parts_completed": 3.0,
        },
    )


def test_tank_events_integers_and_booleans_match() -> None:
    with Fmu(build_test_fmu("tank")) as fmu:
        native = NativeFmu(fmu)
        check_against_fmpy(
            fmu,
            native,
            {"inflow": 0.004, "outflow": 0.05, "area": 0.2},
            600.0,
            5.0,
            10.0,
            ["level", "valve_open", "switches"],
            {"level": 0.5, "valve_open": 0.5, "switches": 10.0},
        )
        native.close()


def test_counter_matches() -> None:
    with Fmu(build_test_fmu("counter")) as fmu:
        native = NativeFmu(fmu)
        check_against_fmpy(
            fmu,
            native,
            {"start": 7, "increment": 3, "count_down": True},
            50.0,
            0.1,
            1.0,
            ["count", "even"],
            {"count": 0.0, "even": 0.5},
        )
        native.close()


def test_failures_carry_the_function_time_and_message() -> None:
    with Fmu(build_test_fmu("faulty")) as fmu:
        native = NativeFmu(fmu)
        kpis = [("y", "final", None)]
        with pytest.raises(SimulationError) as info:
            native.run(
                {"fault": 1, "fault_time": 1.0}, 3.0, step_size=0.1, output_interval=0.5, kpis=kpis
            )
        assert (info.value.function, info.value.kind) == ("fmi2DoStep", "error")
        assert "injected error at t=" in str(info.value)
        with pytest.raises(SimulationError) as info:
            native.run({"tau": 0.0005}, 3.0, step_size=0.1, output_interval=0.5, kpis=kpis)
        assert info.value.function == "fmi2ExitInitializationMode"
        assert str(info.value).endswith("tau = 0.0005 s is below the stable minimum 0.001 s")
        with pytest.raises(SimulationError) as info:
            native.run(
                {"fault": 4, "fault_time": 2.0}, 3.0, step_size=0.1, output_interval=0.5, kpis=kpis
            )
        assert info.value.kind == "nan"
        assert str(info.value) == "faulty: output y is nan at t = 2"
        # A step count past the cap fails loudly (it once ran one step and said ok).
        with pytest.raises(SimulationError) as info:
            native.run({"u": 2.0}, 3.0, step_size=1e-300, output_interval=1e-300, kpis=kpis)
        assert str(info.value) == (
            "stop time 3 s at step size 1e-300 s is 3e+300 steps, more than 1e+08"
        )
        # After the failures the driver runs a healthy case again.
        ok = native.run({"u": 2.0}, 3.0, step_size=0.1, output_interval=0.5, kpis=kpis)
        assert ok.kpis[0] == pytest.approx(2.0 * (1 - np.exp(-3.0)), rel=1e-12)
        native.close()


def test_runner_engines_agree() -> None:
    path = str(fmu_for_model("spindle"))
    kpis = (
        KpiDef("vb", "tool_wear", "final"),
        KpiDef("hot", "bearing_temperature", "time_above", 21.0),
    )
    tasks = [
        Task(i, {"spindle_speed": 2000.0 + 700 * i, "material": 1 + i % 5}, 1200.0)
        for i in range(6)
    ]
    by_engine = {}
    for engine in ("native", "fmpy"):
        job = SimulationJob(path, 1.0, 10.0, kpis, ("tool_wear",), engine=engine)
        results = sorted(LocalPool(job, PoolOptions(workers=1)).run(tasks), key=lambda r: r.run_id)
        by_engine[engine] = results
    for a, b in zip(by_engine["native"], by_engine["fmpy"], strict=True):
        assert a.status == b.status == "ok"
        assert a.kpis == pytest.approx(b.kpis, rel=1e-12)
        np.testing.assert_array_equal(a.trajectory["tool_wear"], b.trajectory["tool_wear"])


def test_fmi3_runs_match_the_fmpy_path() -> None:
    # lag3: Float64, Int32 and Boolean outputs, an Enumeration (Int64) and Int32 parameter.
    with Fmu(build_test_fmu("lag3")) as fmu:
        native = NativeFmu(fmu)
        start = {"u": 2.0, "tau": 0.5, "y_start": -1.0, "increment": 3, "settle_rule": 2,
                 "tol": 0.04}  # fmt: skip
        for stop, step, interval in ((3.0, 0.1, 0.5), (2.05, 0.1, 0.1)):
            check_against_fmpy(
                fmu, native, start, stop, step, interval, ["y", "steps_taken", "settled"],
                {"y": 1.0, "steps_taken": 10.0, "settled": 0.5},
            )  # fmt: skip
        native.close()

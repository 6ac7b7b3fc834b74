"""FMU state: get, set, serialize and continue a run from a saved state."""

from __future__ import annotations

import numpy as np
import pytest
from fmpy import extract, read_model_description
from fmpy.fmi2 import FMU2Slave

from physics.fmu import Fmu, SimulationError, fmu_for_model

OUTPUTS = [
    "motor_temperature",
    "bearing_temperature",
    "housing_temperature",
    "tool_wear",
    "bearing_damage",
    "energy",
    "parts_completed",
]


def start(unzipdir: str, md, values: dict[str, float]) -> FMU2Slave:
    slave = FMU2Slave(
        guid=md.guid,
        unzipDirectory=unzipdir,
        modelIdentifier=md.coSimulation.modelIdentifier,
        instanceName="s",
    )
    slave.instantiate()
    slave.setupExperiment(startTime=0.0)
    slave.enterInitializationMode()
    vrs = {v.name: v.valueReference for v in md.modelVariables}
    slave.setReal([vrs[k] for k in values], list(values.values()))
    slave.exitInitializationMode()
    return slave


def advance(slave: FMU2Slave, md, t0: float, t1: float, h: float = 1.0) -> np.ndarray:
    t = t0
    while t < t1 - 1e-9:
        slave.doStep(currentCommunicationPoint=t, communicationStepSize=h)
        t += h
    vrs = {v.name: v.valueReference for v in md.modelVariables}
    reals = slave.getReal([vrs[n] for n in OUTPUTS[:-1]])
    return np.array([*reals, slave.getInteger([vrs["parts_completed"]])[0]])


def test_a_run_continues_from_a_serialized_state(tmp_path) -> None:
    path = str(fmu_for_model("spindle"))
    md = read_model_description(path)
    unzipdir = extract(path, str(tmp_path / "x"))
    values = {"spindle_speed": 9000.0, "load_time": 25.0}

    straight = start(unzipdir, md, values)
    expected = advance(straight, md, 0.0, 1500.0)

    first = start(unzipdir, md, values)
    advance(first, md, 0.0, 700.0)
    blob = first.serializeFMUstate(first.getFMUstate())
    first.terminate()
    first.freeInstance()

    second = start(unzipdir, md, {"spindle_speed": 2000.0})  # different parameters: overwritten
    state = second.deSerializeFMUstate(blob)
    second.setFMUstate(state)
    second.freeFMUstate(state)
    resumed = advance(second, md, 700.0, 1500.0)
    np.testing.assert_array_equal(resumed, expected)
    assert resumed[3] > 0.0  # the tool did wear


def test_get_and_set_state_rewinds_a_run(tmp_path) -> None:
    path = str(fmu_for_model("spindle"))
    md = read_model_description(path)
    slave = start(extract(path, str(tmp_path / "x")), md, {})
    advance(slave, md, 0.0, 300.0)
    saved = slave.getFMUstate()
    ahead = advance(slave, md, 300.0, 900.0)
    slave.setFMUstate(saved)
    again = advance(slave, md, 300.0, 900.0)
    np.testing.assert_array_equal(again, ahead)


def test_a_foreign_state_is_refused(tmp_path) -> None:
    path = str(fmu_for_model("spindle"))
    md = read_model_description(path)
    slave = start(extract(path, str(tmp_path / "x")), md, {})
    blob = bytearray(slave.serializeFMUstate(slave.getFMUstate()))
    blob[0:8] = b"NOTSTATE"
    with pytest.raises(Exception, match="fmi2DeSerializeFMUstate failed with status 3"):
        slave.deSerializeFMUstate(bytes(blob))


def test_fixed_parameters_are_refused_after_initialization(tmp_path) -> None:
    path = str(fmu_for_model("spindle"))
    md = read_model_description(path)
    slave = start(extract(path, str(tmp_path / "x")), md, {})
    vr = next(v.valueReference for v in md.modelVariables if v.name == "spindle_speed")
    with pytest.raises(Exception, match="fmi2SetReal failed with status 3"):
        slave.setReal([vr], [6000.0])
    assert slave.getReal([vr]) == [5000.0]


def test_profiles_only_drive_inputs() -> None:
    profile = {"spindle_speed": ([0, 10], [1, 2])}
    with (
        Fmu(fmu_for_model("spindle")) as fmu,
        pytest.raises(ValueError, match=r"^inputs.spindle_speed: not an input of spindle$"),
    ):
        fmu.simulate({}, 10.0, step_size=1.0, inputs=profile)


def test_fmi_errors_carry_function_status_and_message() -> None:
    with Fmu(fmu_for_model("spindle")) as fmu:
        with pytest.raises(SimulationError) as info:
            fmu.simulate({"radial_width": 20.0}, 10.0, step_size=1.0)
        err = info.value
        assert (err.function, err.status, err.time) == ("fmi2ExitInitializationMode", 3, 0.0)
        assert str(err) == (
            "spindle in fmi2ExitInitializationMode at t = 0: fmi2ExitInitializationMode:"
            " radial_width = 20 mm exceeds tool_diameter = 12 mm"
        )
        # The adapter recovers: the next run works.
        ok = fmu.simulate({}, 10.0, step_size=1.0, outputs=["tool_wear"])
        assert ok["tool_wear"][-1] > 0.0

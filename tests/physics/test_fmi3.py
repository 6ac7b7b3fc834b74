"""FMI 3.0 co-simulation: the lag3 test FMU built from the same model framework.

lag3 (tests/fmus/lag3) is the healthy first-order lag of the faulty FMU with an
Int32 parameter and output, a Boolean output and an Enumeration parameter, so
every FMI 3.0 type the framework maps to is checked against a closed form.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import fmpy
import numpy as np
import pytest
from fmpy import extract, read_model_description
from fmpy.fmi1 import FMICallException
from fmpy.fmi3 import FMU3Slave
from fmpy.model_description import ModelDescription
from fmpy.validation import validate_fmu

from physics.fmu import BuildError, build_model, fmu_for_model
from physics.fmu._build import MODELS_DIR, fmi3_platform
from physics.fmu._codegen import load_table
from tests.fmus import FMUS_DIR, build_test_fmu

# Parameters for which no sample below lies near the settling threshold.
U, TAU, Y0, INCREMENT = 2.0, 0.5, -1.0, 3
BAND = 0.08  # settled when |y - u| < BAND, first at t = TAU ln(3 / BAND) = 1.81 s


@pytest.fixture(scope="module")
def lag3() -> Path:
    return build_test_fmu("lag3")


def closed_form(t: np.ndarray, t0: float = 0.0) -> np.ndarray:
    return U + (Y0 - U) * np.exp(-(t - t0) / TAU)


def test_lag3_is_an_fmi3_fmu_that_passes_fmpy_validation(lag3: Path) -> None:
    assert validate_fmu(str(lag3)) == []
    md = read_model_description(str(lag3))
    assert md.fmiVersion == "3.0"
    cs = md.coSimulation
    assert cs.modelIdentifier == "lag3"
    assert cs.canGetAndSetFMUstate and cs.canSerializeFMUstate and cs.hasEventMode
    assert cs.canHandleVariableCommunicationStepSize
    types = {v.name: v.type for v in md.modelVariables}
    assert types == {
        "u": "Float64",
        "tau": "Float64",
        "y_start": "Float64",
        "tol": "Float64",
        "settle_rule": "Enumeration",
        "increment": "Int32",
        "y": "Float64",
        "steps_taken": "Int32",
        "settled": "Boolean",
        "der_y": "Float64",
        "time": "Float64",
    }
    with zipfile.ZipFile(lag3) as zf:
        names = set(zf.namelist())
        header = zf.read("sources/model_vars.h").decode()
    assert f"binaries/{fmi3_platform()}/lag3.so" in names
    assert {"sources/fmi3_framework.c", "sources/fmi3Functions.h"} <= names
    assert not [n for n in names if "fmi2" in n]
    # One table, one numbering; time takes the value reference after the table's.
    in_header = {m[1]: int(m[2]) for m in re.finditer(r"VR_(\w+) = (\d+),", header)}
    in_xml = {v.name: v.valueReference for v in md.modelVariables}
    assert in_xml == {**in_header, "time": len(in_header)}
    (time,) = [v for v in md.modelVariables if v.causality == "independent"]
    assert time.name == "time" and time.unit == "s"


@pytest.mark.parametrize(
    ("rule", "tol", "start_time", "event_mode"),
    [("absolute", BAND, 0.0, False), ("relative", BAND / U, 0.5, True)],
)
def test_simulate_fmu_matches_the_closed_forms(
    lag3: Path, rule: str, tol: float, start_time: float, event_mode: bool
) -> None:
    result = fmpy.simulate_fmu(
        str(lag3),
        start_values={
            "u": U,
            "tau": TAU,
            "y_start": Y0,
            "tol": tol,
            "settle_rule": {"absolute": 1, "relative": 2}[rule],
            "increment": INCREMENT,
        },
        start_time=start_time,
        stop_time=start_time + 3.0,
        output_interval=0.1,
        use_event_mode=event_mode,
    )
    k = np.arange(31)
    np.testing.assert_allclose(result["time"], start_time + 0.1 * k, rtol=0, atol=1e-12)
    expected = closed_form(result["time"], start_time)
    np.testing.assert_allclose(result["y"], expected, rtol=0, atol=1e-12)
    assert result["steps_taken"].dtype == np.int32
    np.testing.assert_array_equal(result["steps_taken"], INCREMENT * k)
    settled = np.abs(expected - U) < BAND
    assert settled.any() and not settled.all()
    np.testing.assert_array_equal(result["settled"], settled)


class Slave:
    """An instantiated lag3 FMU3Slave with its value references and log."""

    def __init__(self, unzipdir: str, md: ModelDescription) -> None:
        self.vr = {v.name: v.valueReference for v in md.modelVariables}
        self.log: list[str] = []
        self.fmu = FMU3Slave(
            guid=md.guid,
            unzipDirectory=unzipdir,
            modelIdentifier=md.coSimulation.modelIdentifier,
            instanceName="lag3",
        )
        self.fmu.instantiate(logMessage=lambda env, status, cat, msg: self.log.append(msg.decode()))

    def start(self, **values: float) -> Slave:
        self.fmu.enterInitializationMode(startTime=0.0)
        self.fmu.setFloat64([self.vr[k] for k in values], list(values.values()))
        self.fmu.exitInitializationMode()
        return self

    def advance(self, t0: float, t1: float, h: float = 0.1) -> tuple[float, float, int, bool]:
        for i in range(round((t1 - t0) / h)):
            self.fmu.doStep(currentCommunicationPoint=t0 + i * h, communicationStepSize=h)
        (t, y) = self.fmu.getFloat64([self.vr["time"], self.vr["y"]])
        (steps,) = self.fmu.getInt32([self.vr["steps_taken"]])
        (settled,) = self.fmu.getBoolean([self.vr["settled"]])
        return t, y, steps, settled


def make_slaves(lag3: Path, tmp_path: Path, n: int) -> list[Slave]:
    md = read_model_description(str(lag3))
    unzipdir = extract(str(lag3), str(tmp_path / "lag3"))
    return [Slave(unzipdir, md) for _ in range(n)]


def test_a_run_continues_identically_from_a_saved_and_a_serialized_state(
    lag3: Path, tmp_path: Path
) -> None:
    straight, first, second = make_slaves(lag3, tmp_path, 3)
    values = {"u": U, "tau": TAU, "y_start": Y0}
    expected = straight.start(**values).advance(0.0, 2.5)

    first.start(**values).advance(0.0, 1.0)
    state = first.fmu.getFMUState()
    blob = first.fmu.serializeFMUState(state)
    assert first.advance(1.0, 2.5) == expected
    # The same instance, set back to the saved state.
    first.fmu.setFMUState(state)
    assert first.fmu.getFloat64([first.vr["time"]]) == [1.0]
    assert first.advance(1.0, 2.5) == expected
    first.fmu.freeFMUState(state)

    # Another instance, never initialized, from the serialized bytes.
    restored = second.fmu.deserializeFMUState(blob)
    second.fmu.setFMUState(restored)
    second.fmu.freeFMUState(restored)
    assert second.advance(1.0, 2.5) == expected
    assert expected[1] == pytest.approx(float(closed_form(np.array(2.5))), abs=1e-12)
    for s in (straight, first, second):
        s.fmu.freeInstance()


def test_refused_sets_raise_and_change_nothing(lag3: Path, tmp_path: Path) -> None:
    (s,) = make_slaves(lag3, tmp_path, 1)
    fmu, vr = s.fmu, s.vr
    fmu.enterInitializationMode()
    with pytest.raises(FMICallException, match="fmi3SetFloat64 failed with status 3"):
        fmu.setFloat64([vr["u"], vr["tau"]], [5.0, 0.0])  # u is fine, tau is not
    with pytest.raises(FMICallException):
        fmu.setInt32([vr["increment"]], [1001])
    with pytest.raises(FMICallException):
        fmu.setInt64([vr["settle_rule"]], [3])
    with pytest.raises(FMICallException):
        fmu.setInt32([vr["settle_rule"]], [2])  # an Enumeration is Int64 in FMI 3.0
    with pytest.raises(FMICallException):
        fmu.setFloat64([vr["time"]], [1.0])
    assert s.log == [
        "fmi3SetFloat64: tau = 0 is outside its range [0.001, 1000]",
        "fmi3SetInt32: increment = 1001 is outside its range [0, 1000]",
        "fmi3SetInt64: settle_rule = 3 is outside its range [1, 2]",
        "fmi3SetInt32: variable settle_rule (value reference 4) is of type Int64 (Enumeration),"
        " not Int32",
        f"fmi3SetFloat64: time (value reference {vr['time']}) is the independent variable and "
        "cannot be set",
    ]
    assert fmu.getFloat64([vr["u"], vr["tau"]]) == [1.0, 1.0]
    assert fmu.getInt32([vr["increment"]]) == [1]
    assert fmu.getInt64([vr["settle_rule"]]) == [1]

    fmu.exitInitializationMode()
    with pytest.raises(FMICallException):
        fmu.setFloat64([vr["u"]], [3.0])
    assert s.log[-1] == "fmi3SetFloat64: u is a fixed parameter; set it before initialization ends"
    assert fmu.getFloat64([vr["u"]]) == [1.0]
    # Functions outside co-simulation fail with a message, never crash.
    with pytest.raises(FMICallException, match="fmi3GetFloat32"):
        fmu.getFloat32([vr["u"]])
    assert s.log[-1] == "fmi3GetFloat32: not supported"
    fmu.freeInstance()


def test_a_wrong_instantiation_token_is_refused(lag3: Path, tmp_path: Path) -> None:
    md = read_model_description(str(lag3))
    fmu = FMU3Slave(
        guid="{00000000-0000-0000-0000-000000000000}",
        unzipDirectory=extract(str(lag3), str(tmp_path / "lag3")),
        modelIdentifier="lag3",
    )
    log: list[str] = []
    with pytest.raises(Exception, match="Failed to instantiate FMU"):
        fmu.instantiate(logMessage=lambda env, status, cat, msg: log.append(msg.decode()))
    assert log == [
        "fmi3InstantiateCoSimulation: instantiation token "
        f"{{00000000-0000-0000-0000-000000000000}} does not match this binary's {md.guid}"
    ]


def test_a_bad_fmi_version_is_refused_naming_the_field(tmp_path: Path) -> None:
    model = tmp_path / "lag3"
    shutil.copytree(FMUS_DIR / "lag3", model)
    table = model / "model.yaml"
    text = table.read_text()
    assert 'fmi_version: "3.0"' in text
    table.write_text(text.replace('fmi_version: "3.0"', 'fmi_version: "4.0"'))
    with pytest.raises(BuildError) as info:
        build_model(model, out_dir=tmp_path / "cache")
    assert str(info.value) == f"{table}: fmi_version: '4.0' is not one of '2.0', '3.0'"


def test_fmi_version_defaults_to_2_and_reserves_time_in_3(tmp_path: Path) -> None:
    text = (FMUS_DIR / "lag3" / "model.yaml").read_text()
    table = tmp_path / "model.yaml"
    table.write_text(text.replace('fmi_version: "3.0"\n', ""))
    assert load_table(table).fmi_version == "2.0"
    table.write_text(text.replace('fmi_version: "3.0"', "fmi_version: 3.0"))  # a YAML number
    assert load_table(table).fmi_version == "3.0"
    table.write_text(text.replace("{name: tol,", "{name: time,"))
    with pytest.raises(BuildError, match=r"variables\.time: the name is reserved"):
        load_table(table)


def test_fmi2_models_still_build_fmi2_fmus_only() -> None:
    path = fmu_for_model("spindle")
    assert read_model_description(str(path)).fmiVersion == "2.0"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert 'fmiVersion="2.0"' in zf.read("modelDescription.xml").decode()
    assert "sources/fmi2_framework.c" in names and "binaries/linux64/spindle.so" in names
    assert not [n for n in names if "fmi3" in n or "buildDescription" in n]


@pytest.mark.parametrize(
    ("model_dir", "start_values", "stop_time"),
    [
        (MODELS_DIR / "spindle", {"material": 4, "spindle_speed": 9000.0}, 300.0),
        (FMUS_DIR / "counter", {"start": 7, "increment": 2, "count_down": True}, 5.0),
    ],
)
def test_a_model_built_as_fmi3_runs_bit_identically_to_its_fmi2_build(
    tmp_path: Path, model_dir: Path, start_values: dict[str, object], stop_time: float
) -> None:
    # The spindle brings an Enumeration, units and calculated parameters, the
    # counter Integer and Boolean parameters and a local.
    as_fmi3 = tmp_path / model_dir.name
    shutil.copytree(model_dir, as_fmi3)
    table = as_fmi3 / "model.yaml"
    header = f"name: {model_dir.name}\n"
    table.write_text(table.read_text().replace(header, header + 'fmi_version: "3.0"\n', 1))
    fmi3 = build_model(as_fmi3, out_dir=tmp_path / "cache").path
    assert validate_fmu(str(fmi3)) == []
    assert read_model_description(str(fmi3)).fmiVersion == "3.0"
    run = {"start_values": start_values, "stop_time": stop_time, "output_interval": stop_time / 20}
    expected = fmpy.simulate_fmu(str(build_model(model_dir).path), **run)
    got = fmpy.simulate_fmu(str(fmi3), **run)
    assert got.dtype.names == expected.dtype.names
    for name in expected.dtype.names:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)

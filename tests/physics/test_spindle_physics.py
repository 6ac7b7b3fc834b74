"""The spindle FMU against closed forms of its physics: forces, drive, heat, bearings.

Every expected value is computed in numpy/scipy from the model table (see
spindle_reference.py), never read back from the FMU. Tool wear, breakage and
quality outputs are in test_spindle_tool.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from scipy.linalg import expm

from physics.fmu import Fmu, fmu_for_model
from tests.physics import spindle_reference as ref

NODES = ("motor_temperature", "shaft_temperature", "bearing_temperature", "housing_temperature")


@pytest.fixture(scope="module")
def fmu() -> Iterator[Fmu]:
    with Fmu(fmu_for_model("spindle")) as f:
        yield f


def run(fmu: Fmu, p: dict, stop: float, interval: float = 10.0, step: float = 1.0):
    return fmu.simulate(ref.fmu_start_values(p), stop, step_size=step, output_interval=interval)


def temps(tr, i: int = -1) -> np.ndarray:
    return np.array([tr[n][i] for n in NODES])


@pytest.mark.parametrize("material", ref.MATERIALS)
def test_cutting_force_torque_and_power_follow_kienzle(fmu: Fmu, material: str) -> None:
    p = ref.params(
        material=material,
        spindle_speed=4000.0,
        feed_per_tooth=0.08,
        axial_depth=4.0,
        radial_width=3.0,
        tool_diameter=16.0,
        n_teeth=4,
        tool_wear_start=0.1,
    )
    tr = run(fmu, p, stop=10.0, interval=1.0)
    # Cold start with coolant and air at 20 degC: every node at 20, preload as mounted.
    expected = ref.heat(p, np.full(4, 20.0), cutting=True, vb=0.1)
    assert tr["cutting"][0]
    assert tr["tool_wear"][0] == pytest.approx(0.1, rel=1e-12)
    assert tr["cutting_force"][0] == pytest.approx(expected["force"], rel=1e-12)
    assert tr["cutting_power"][0] == pytest.approx(expected["power_cut"], rel=1e-12)
    assert tr["spindle_torque"][0] == pytest.approx(expected["torque"], rel=1e-12)
    assert tr["spindle_power"][0] == pytest.approx(expected["p_el"], rel=1e-12)
    assert tr["bearing_heat"][0] == pytest.approx(expected["q_bearing"], rel=1e-12)
    # The textbook form of the same power: Pc = ae ap vf kc / 60e3 (W, mm, mm/min, N/mm2),
    # plus the edge force's Kte ap z phi_e / 2 pi (N) at vc / 60, both raised by wear.
    g, m = ref.geometry(p), ref.material(p)
    edge = m["edge_tangential"] * p["axial_depth"] * p["n_teeth"] * g["phi"] / (2 * math.pi)
    pc = p["radial_width"] * p["axial_depth"] * g["vf"] * ref.kc(p, 0.1) / 60e3
    pc += edge * (1 + p["wear_force_coefficient"] * 0.1) * g["vc"] / 60
    assert tr["cutting_power"][0] == pytest.approx(pc, rel=1e-12)
    # S1 curve: constant torque up to the base speed, constant power above it.
    s1 = p["rated_power"] * min(1.0, p["spindle_speed"] / p["base_speed"])
    assert tr["spindle_load"][0] == pytest.approx(expected["p_shaft"] / s1, rel=1e-12)


def test_spindle_load_is_torque_over_s1_torque_below_base_speed(fmu: Fmu) -> None:
    p = ref.params(
        material="ti6al4v",
        spindle_speed=1200.0,
        axial_depth=10.0,
        radial_width=4.0,
        tool_diameter=20.0,
        tool_overhang=60.0,
        feed_per_tooth=0.08,
    )
    tr = run(fmu, p, stop=2.0, interval=1.0)
    s1_torque = p["rated_power"] / (2 * math.pi * p["base_speed"] / 60)  # 27.3 N.m
    assert s1_torque == pytest.approx(27.28, abs=0.01)
    assert tr["spindle_load"][0] == pytest.approx(tr["spindle_torque"][0] / s1_torque, rel=1e-12)


@pytest.mark.parametrize(
    ("path_length", "load_time", "s3"),
    [(600.0, 60.0, True), (600.0, 5.0, False), (20000.0, 1000.0, False)],
)
def test_short_intermittent_cycles_may_use_the_s3_rating(
    fmu: Fmu, path_length: float, load_time: float, s3: bool
) -> None:
    # IEC 60034-1 S3-40 %: a cycle of at most 10 min that cuts at most 40 % of it and
    # stands still the rest (the spindle stops for load/unload).
    p = ref.params(spindle_speed=6000.0, path_length=path_length, load_time=load_time)
    g = ref.geometry(p)
    assert (g["cut_time"] <= 0.4 * g["cycle_time"] and g["cycle_time"] <= 600.0) is s3
    tr = run(fmu, p, stop=2.0, interval=1.0)
    factor = p["s3_power_factor"] if s3 else 1.0
    assert tr["spindle_rating_load"][0] == pytest.approx(tr["spindle_load"][0] / factor, rel=1e-12)


@pytest.mark.parametrize("coolant_on", [True, False])
def test_steady_temperatures_solve_the_thermal_network(fmu: Fmu, coolant_on: bool) -> None:
    # Continuous cutting with the force independent of wear and worn tools changed
    # part by part: every heat input settles, and the network must reach
    # G T = q(T) + s, where q depends on T through the thermal preload of the bearings.
    p = ref.params(
        load_time=0.0,
        wear_force_coefficient=0.0,
        coolant_on=coolant_on,
        coolant_temperature=18.0,
        ambient_temperature=24.0,
        path_length=2000.0,
        material="aluminium_6061",
        spindle_speed=16000.0,
        axial_depth=6.0,
        feed_per_tooth=0.1,
    )
    tr = run(fmu, p, stop=8 * 3600.0, interval=600.0)
    expected = ref.steady_temperatures(p, cutting=True)
    np.testing.assert_allclose(temps(tr), expected, atol=1e-6)
    h = ref.heat(p, expected, cutting=True)
    assert tr["bearing_heat"][-1] == pytest.approx(h["q_bearing"], rel=1e-9)
    assert tr["bearing_axial_load"][-1] == pytest.approx(h["fa"], rel=1e-9)
    assert tr["preload_ratio"][-1] == pytest.approx(h["fa"] / p["bearing_preload"], rel=1e-9)
    # Not a trivial case: the shaft runs hotter than the outer ring, raising the preload.
    assert expected[1] - expected[2] > 5.0 and h["fa"] > 1.2 * p["bearing_preload"]


def test_temperature_transient_matches_matrix_exponential(fmu: Fmu) -> None:
    # Spindle stopped (no path to cut): a linear network relaxing from a measured hot
    # start, T(t) = T_ss + expm(A t) (T0 - T_ss), sampled every 10 s.
    t0 = np.array([55.0, 48.0, 45.0, 35.0])
    p = ref.params(
        path_length=0.0,
        load_time=30.0,
        explicit_start_temperatures=True,
        motor_temperature_start=t0[0],
        shaft_temperature_start=t0[1],
        bearing_temperature_start=t0[2],
        housing_temperature_start=t0[3],
        coolant_temperature=16.0,
        ambient_temperature=26.0,
    )
    tr = run(fmu, p, stop=3600.0, interval=10.0)
    g, c, s = ref.thermal_system(p)
    a = -g / c[:, None]
    t_ss = np.linalg.solve(g, s)
    expected = np.array([t_ss + expm(a * t) @ (t0 - t_ss) for t in tr.time])
    got = np.column_stack([tr[n] for n in NODES])
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert not tr["cutting"].any()
    assert (tr["spindle_power"] == 0.0).all()


@pytest.mark.parametrize(("warmup", "warmup_speed"), [(0.0, 0.0), (0.6, 0.0), (1.0, 18000.0)])
def test_start_temperatures_follow_the_warmup_state(
    fmu: Fmu, warmup: float, warmup_speed: float
) -> None:
    # One number for the thermal state: cold equilibrium plus a share of the rise to
    # the steady state of idling at warmup_speed (0: at the order's own speed).
    p = ref.params(
        warmup_fraction=warmup,
        warmup_speed=warmup_speed,
        spindle_speed=9000.0,
        coolant_temperature=19.0,
        ambient_temperature=27.0,
    )
    tr = run(fmu, p, stop=1.0, interval=1.0)
    cold = ref.steady_temperatures(p, cutting=False, n=0.0)
    warm = ref.steady_temperatures(p, cutting=False, n=warmup_speed or p["spindle_speed"])
    np.testing.assert_allclose(temps(tr, 0), cold + warmup * (warm - cold), atol=1e-9)
    assert tr["axial_drift"][0] == 0.0  # the tool length is referenced at the start
    if warmup == 1.0:
        assert warm[2] > cold[2] + 5.0


def test_warm_up_takes_30_to_60_minutes(fmu: Fmu) -> None:
    # Idling at 20000 rpm from cold: the front bearing's rise reaches 95 % within the
    # 30-60 min that motor-spindle warm-up measurements show, and not in seconds.
    p = ref.params(
        spindle_speed=20000.0,
        axial_depth=0.1,
        radial_width=0.1,
        feed_per_tooth=0.01,
        path_length=1.0e6,
        load_time=0.0,
        material="aluminium_6061",
    )
    tr = run(fmu, p, stop=4 * 3600.0, interval=10.0)
    rise = tr["bearing_temperature"] - tr["bearing_temperature"][0]
    t95 = tr.time[np.argmax(rise >= 0.95 * rise[-1])] / 60
    assert 30.0 <= t95 <= 60.0
    assert rise[-1] == pytest.approx(
        ref.steady_temperatures(p, cutting=True)[2] - tr["bearing_temperature"][0], abs=0.02
    )


def test_axial_drift_counts_only_what_lies_in_front_of_the_locating_bearing(fmu: Fmu) -> None:
    # Z drift since the reference: the shaft from the front bearing to the tool tip and
    # the housing from its flange to the bearing grow; the rest of the shaft floats.
    # With a tool-length measurement every 4 parts, the reference is re-taken then.
    p = ref.params(
        spindle_speed=15000.0,
        path_length=3000.0,
        load_time=30.0,
        material="aluminium_6061",
        tool_measure_interval=4,
    )
    g = ref.geometry(p)
    cycle = g["cycle_time"]
    tr = run(fmu, p, stop=12 * cycle, interval=cycle / 10)
    ts, th = tr["shaft_temperature"], tr["housing_temperature"]
    k = np.floor(tr.time / cycle + 1e-9)
    ref_index = np.searchsorted(tr.time, np.floor(k / 4) * 4 * cycle - 1e-6)
    length = p["nose_to_holder"] + p["tool_overhang"]
    expected = (
        1e3
        * p["expansion_coefficient"]
        * (length * (ts - ts[ref_index]) + p["flange_to_bearing"] * (th - th[ref_index]))
    )
    # The sample at the start of a measured part still shows the drift before it.
    at_measure = (np.abs(tr.time / cycle - np.round(tr.time / cycle)) < 1e-9) & (k % 4 == 0)
    at_measure &= k > 0
    np.testing.assert_allclose(tr["axial_drift"][~at_measure], expected[~at_measure], atol=1e-9)
    assert tr["axial_drift"].max() > 5.0  # the shaft warms: the tip moves toward the part


def test_bearing_figures_follow_iso_281_and_iso_76(fmu: Fmu) -> None:
    p = ref.params(
        spindle_speed=12000.0, material="steel_c45", feed_per_tooth=0.05, tool_overhang=50.0
    )
    tr = run(fmu, p, stop=5.0, interval=1.0)
    h = ref.heat(p, np.full(4, 20.0), cutting=True)
    assert tr["bearing_load"][0] == pytest.approx(h["load"], rel=1e-12)
    fr_peak = ref.bearing_radial(p, ref.peak_force(p))
    p0 = max(p["bearing_X0"] * fr_peak + p["bearing_Y0"] * h["fa"], fr_peak)
    assert tr["static_safety"][0] == pytest.approx(p["bearing_static_load_rating"] / p0, rel=1e-5)
    ndm = p["spindle_speed"] * p["bearing_pitch_diameter"]
    assert tr["bearing_speed_factor"][0] == pytest.approx(ndm, rel=1e-12)
    assert tr["bearing_speed_ratio"][0] == pytest.approx(ndm / p["bearing_speed_limit"], rel=1e-12)
    k_tp = ref.thermal_preload_coefficient(p)
    assert k_tp == pytest.approx(38.2, abs=0.1)  # 40 N/um * 0.955 um/K
    later = tr["bearing_axial_load"][-1]
    expected = p["bearing_preload"] + k_tp * (
        tr["shaft_temperature"][-1] - tr["bearing_temperature"][-1]
    )
    assert later == pytest.approx(expected, rel=1e-12)


def test_bearing_damage_follows_palmgren_miner(fmu: Fmu) -> None:
    # Preload fixed (no axial stiffness) and force independent of wear: P is constant
    # while cutting, so the damage grows linearly in cutting time.
    p = ref.params(
        bearing_damage_start=0.2,
        bearing_axial_stiffness=0.0,
        wear_force_coefficient=0.0,
        spindle_speed=9000.0,
        path_length=1200.0,
        load_time=40.0,
        axial_depth=4.0,
    )
    tr = run(fmu, p, stop=2000.0, interval=10.0)
    assert not tr["tool_broken"].any()
    load = ref.heat(p, np.full(4, 20.0), cutting=True)["load"]
    life_rev = p["bearing_life_factor"] * (p["bearing_dynamic_load_rating"] / load) ** 3 * 1e6
    rate = p["spindle_speed"] / 60 / life_rev
    expected = 0.2 + rate * ref.cutting_time(p, tr.time)
    np.testing.assert_allclose(tr["bearing_damage"], expected, rtol=1e-10)
    np.testing.assert_allclose(tr["bearing_damage_order"], expected - 0.2, rtol=1e-8, atol=1e-16)


def test_energy_is_the_integral_of_electrical_power(fmu: Fmu) -> None:
    # With the preload fixed and wear not raising the force, the power is constant in
    # each phase: energy = P_cut * cutting time exactly.
    p = ref.params(
        bearing_axial_stiffness=0.0,
        wear_force_coefficient=0.0,
        spindle_speed=7000.0,
        path_length=900.0,
        load_time=25.0,
    )
    tr = run(fmu, p, stop=1500.0, interval=10.0)
    p_el = ref.heat(p, np.full(4, 20.0), cutting=True)["p_el"]
    np.testing.assert_allclose(tr["energy"], p_el * ref.cutting_time(p, tr.time), rtol=1e-10)
    # With every coupling on, it still equals the integral of the sampled power.
    p = ref.params(spindle_speed=5000.0, path_length=900.0, load_time=0.0, replace_worn_tool=False)
    tr = run(fmu, p, stop=600.0, interval=0.25, step=0.25)
    assert not tr["tool_broken"].any() and tr["tool_wear"][-1] > 0.1  # no jumps; wear does act
    integral = np.concatenate(
        [
            [0],
            np.cumsum(np.diff(tr.time) * (tr["spindle_power"][1:] + tr["spindle_power"][:-1]) / 2),
        ]
    )
    np.testing.assert_allclose(tr["energy"], integral, rtol=1e-6)

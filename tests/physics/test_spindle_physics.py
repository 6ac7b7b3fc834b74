"""The spindle FMU against closed forms of its physics.

Every expected value is computed in numpy from the model table (see
spindle_reference.py), never read back from the FMU.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from scipy.linalg import expm

from physics.fmu import Fmu, fmu_for_model
from tests.physics import spindle_reference as ref


@pytest.fixture(scope="module")
def fmu() -> Iterator[Fmu]:
    with Fmu(fmu_for_model("spindle")) as f:
        yield f


def run(fmu: Fmu, p: dict, stop: float, interval: float = 10.0, step: float = 1.0):
    return fmu.simulate(ref.fmu_start_values(p), stop, step_size=step, output_interval=interval)


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
    expected = ref.heat_while_cutting(p, vb=0.1)
    assert tr["cutting"][0]
    assert tr["cutting_force"][0] == pytest.approx(expected["force"], rel=1e-12)
    assert tr["cutting_power"][0] == pytest.approx(expected["power_cut"], rel=1e-12)
    assert tr["spindle_torque"][0] == pytest.approx(expected["torque"], rel=1e-12)
    assert tr["spindle_power"][0] == pytest.approx(expected["p_el"], rel=1e-12)
    assert tr["bearing_heat"][0] == pytest.approx(expected["q_bearing"], rel=1e-12)
    # The textbook form of the same power: Pc = ae ap vf kc / 60e3 (W, mm, mm/min, N/mm2).
    g, m = ref.geometry(p), ref.material(p)
    kc = m["kc11"] * g["hm"] ** -m["mc"] * (1 + p["wear_force_coefficient"] * 0.1)
    pc = p["radial_width"] * p["axial_depth"] * g["vf"] * kc / 60e3
    assert tr["cutting_power"][0] == pytest.approx(pc, rel=1e-12)


@pytest.mark.parametrize("coolant_on", [True, False])
def test_steady_temperatures_solve_the_thermal_network(fmu: Fmu, coolant_on: bool) -> None:
    # Continuous cutting (no load time) with the force independent of wear: every
    # heat input is constant, so the network must settle at G T = q + s.
    p = ref.params(
        load_time=0.0,
        wear_force_coefficient=0.0,
        coolant_on=coolant_on,
        coolant_temperature=18.0,
        ambient_temperature=24.0,
        path_length=1.0e5,
        material="aluminium_6061",
        spindle_speed=12000.0,
        axial_depth=6.0,
    )
    tr = run(fmu, p, stop=6 * 3600.0, interval=600.0)
    heat = ref.heat_while_cutting(p)
    q = np.array([heat["q_motor"], heat["q_bearing"] + heat["q_nose"], 0.0])
    expected = ref.steady_temperatures(p, q)
    got = [tr[n][-1] for n in ("motor_temperature", "bearing_temperature", "housing_temperature")]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert tr["motor_heat"][-1] == pytest.approx(heat["q_motor"], rel=1e-12)
    assert expected[1] > 28.0  # well above coolant and ambient: not a trivial case


def test_temperature_transient_matches_matrix_exponential(fmu: Fmu) -> None:
    # Spindle stopped (no path to cut): a linear network relaxing from a hot start,
    # T(t) = T_ss + expm(A t) (T0 - T_ss), sampled every 10 s.
    p = ref.params(
        path_length=0.0,
        load_time=30.0,
        motor_temperature_start=55.0,
        bearing_temperature_start=45.0,
        housing_temperature_start=35.0,
        coolant_temperature=16.0,
        ambient_temperature=26.0,
    )
    tr = run(fmu, p, stop=3600.0, interval=10.0)
    g, c, s = ref.thermal_system(p)
    a = -g / c[:, None]
    t_ss = np.linalg.solve(g, s)
    t0 = np.array([55.0, 45.0, 35.0])
    expected = np.array([t_ss + expm(a * t) @ (t0 - t_ss) for t in tr.time])
    got = np.column_stack(
        [tr["motor_temperature"], tr["bearing_temperature"], tr["housing_temperature"]]
    )
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert not tr["cutting"].any()
    assert (tr["spindle_power"] == 0.0).all()


@pytest.mark.parametrize("material", ref.MATERIALS)
def test_flank_wear_follows_the_integrated_wear_law(fmu: Fmu, material: str) -> None:
    p = ref.params(
        vb_breakage=5.0,  # the law itself, without the tool breaking on the way
        material=material,
        spindle_speed=3000.0,
        tool_wear_start=0.05,
        path_length=800.0,
        load_time=45.0,
    )
    tr = run(fmu, p, stop=3000.0, interval=5.0)
    expected = 0.05 + ref.wear_rate(p) * ref.cutting_time(p, tr.time)
    np.testing.assert_allclose(tr["tool_wear"], expected, rtol=1e-10, atol=1e-12)
    # VB grows only while cutting.
    idle = ~tr["cutting"][:-1] & ~tr["cutting"][1:]
    assert np.all(np.diff(tr["tool_wear"])[idle] == 0.0)


@pytest.mark.parametrize("material", ref.MATERIALS)
def test_tool_life_at_the_reference_condition(fmu: Fmu, material: str) -> None:
    # Dry, 20 degC, vc = vc_ref, fz = fz_ref: VB reaches vb_limit after life_ref minutes.
    m = ref.MATERIAL_DATA[material]
    d = 10.0
    p = ref.params(
        material=material,
        tool_diameter=d,
        radial_width=2.0,
        spindle_speed=1000 * m["vc_ref"] / (math.pi * d),
        feed_per_tooth=m["fz_ref"],
        coolant_on=False,
        ambient_temperature=20.0,
        load_time=0.0,
        path_length=1.0e6,
    )
    life = 60.0 * m["life_ref"]
    tr = run(fmu, p, stop=life, interval=life / 10)
    assert tr["tool_wear"][-1] == pytest.approx(p["vb_limit"], rel=1e-10)
    assert tr["tool_wear_rate"][0] == pytest.approx(p["vb_limit"] / m["life_ref"], rel=1e-10)


def test_bearing_damage_follows_palmgren_miner(fmu: Fmu) -> None:
    p = ref.params(
        wear_force_coefficient=0.0,
        bearing_damage_start=0.2,
        spindle_speed=12000.0,
        material="aluminium_6061",
        axial_depth=8.0,
        radial_width=6.0,
        path_length=3000.0,
        load_time=20.0,
    )
    tr = run(fmu, p, stop=7200.0, interval=60.0)
    load = ref.bearing_load(p, ref.resultant(p))
    l10_rev = p["bearing_life_factor"] * (p["bearing_dynamic_load_rating"] / load) ** 3 * 1e6
    rate = (p["spindle_speed"] / 60.0) / l10_rev
    expected = 0.2 + rate * ref.cutting_time(p, tr.time)
    np.testing.assert_allclose(tr["bearing_damage"], expected, rtol=1e-10)
    assert tr["bearing_load"][0] == pytest.approx(load, rel=1e-12)


def test_energy_is_the_integral_of_electrical_power(fmu: Fmu) -> None:
    # Force independent of wear: power is constant while cutting and 0 at rest.
    p = ref.params(wear_force_coefficient=0.0, path_length=2000.0, load_time=40.0)
    tr = run(fmu, p, stop=4000.0, interval=10.0)
    p_cut = ref.heat_while_cutting(p)["p_el"]
    np.testing.assert_allclose(tr["energy"], p_cut * ref.cutting_time(p, tr.time), rtol=1e-10)
    # With wear coupling on, compare against the trapezoid of finely sampled power,
    # phase edges on sample points (cut time 40 s, load 20 s).
    g = ref.geometry(ref.params())
    p2 = ref.params(path_length=40.0 * g["vf"] / 60.0, load_time=20.0, tool_wear_start=0.2)
    tr2 = run(fmu, p2, stop=1200.0, interval=0.25, step=0.25)
    power, t = tr2["spindle_power"], tr2.time
    cutting = tr2["cutting"]
    # Right-continuous samples: take the left value of each interval from the phase.
    left = np.where(cutting[:-1], power[:-1], 0.0)
    right = np.where(cutting[:-1], np.where(cutting[1:], power[1:], power[:-1]), 0.0)
    trapezoid = np.sum(0.5 * (left + right) * np.diff(t))
    assert tr2["energy"][-1] == pytest.approx(trapezoid, rel=1e-6)


def test_quality_outputs_match_their_closed_forms(fmu: Fmu) -> None:
    p = ref.params(
        tool_wear_start=0.15,
        motor_temperature_start=34.0,
        bearing_temperature_start=28.0,
        reference_temperature=20.0,
        feed_per_tooth=0.12,
        corner_radius=0.4,
        tool_overhang=55.0,
    )
    tr = run(fmu, p, stop=10.0, interval=10.0)
    elongation = 1e3 * p["expansion_coefficient"] * p["spindle_length"] * ((34 + 28) / 2 - 20)
    d = p["tool_core_ratio"] * p["tool_diameter"]
    deflection = (
        1e3 * ref.resultant(p, 0.15) * 55.0**3 / (3 * p["tool_modulus"] * math.pi * d**4 / 64)
    )
    offset = 1e3 * 0.15 * math.tan(math.radians(p["clearance_angle"]))
    ra = (1e3 * 0.12**2 / (32 * 0.4) + p["roughness_floor"]) * (
        1 + p["roughness_wear_coefficient"] * 0.15
    )
    assert tr["thermal_elongation"][0] == pytest.approx(elongation, rel=1e-12)
    assert tr["tool_deflection"][0] == pytest.approx(deflection, rel=1e-12)
    assert tr["wear_offset"][0] == pytest.approx(offset, rel=1e-12)
    assert tr["part_deviation"][0] == pytest.approx(elongation + deflection + offset, rel=1e-12)
    assert tr["surface_roughness"][0] == pytest.approx(ra, rel=1e-12)


def test_parts_are_counted_per_cycle(fmu: Fmu) -> None:
    p = ref.params()
    g = ref.geometry(p)
    quantity = 7
    tr = run(fmu, p, stop=quantity * g["cycle_time"], interval=1.0)
    assert tr["parts_completed"][-1] == quantity
    expected = np.floor(tr.time / g["cycle_time"] + 1e-9)
    np.testing.assert_array_equal(tr["parts_completed"], expected)
    # Cutting exactly while the position in the cycle is below the cut time.
    pos = np.mod(tr.time + 1e-9, g["cycle_time"])
    np.testing.assert_array_equal(tr["cutting"], pos < g["cut_time"])


def test_the_tool_breaks_at_vb_breakage_and_the_machine_halts(fmu: Fmu) -> None:
    p = ref.params(
        material="ti6al4v",
        spindle_speed=2500.0,
        coolant_on=False,
        tool_wear_start=0.7,
        path_length=800.0,
        load_time=30.0,
    )
    rate = ref.wear_rate(p)
    g = ref.geometry(p)
    # Cutting time needed to go from 0.7 to 1.0 mm, then the wall time at which it is reached.
    need = (p["vb_breakage"] - 0.7) / rate
    parts, rest = divmod(need, g["cut_time"])
    t_break = parts * g["cycle_time"] + rest
    tr = run(fmu, p, stop=t_break + 600.0, interval=1.0)
    assert tr["breakage_time"][-1] == pytest.approx(t_break, rel=1e-12)
    after = tr.time > t_break
    before = tr.time <= t_break
    assert tr["tool_broken"][after].all() and not tr["tool_broken"][before].any()
    np.testing.assert_allclose(tr["tool_wear"][after], p["vb_breakage"], rtol=1e-12)
    assert not tr["cutting"][after].any() and (tr["spindle_power"][after] == 0.0).all()
    assert (tr["parts_completed"][after] == parts).all()
    # Up to the breakage, the wear law as before.
    np.testing.assert_allclose(
        tr["tool_wear"][before], 0.7 + rate * ref.cutting_time(p, tr.time[before]), rtol=1e-10
    )


def test_a_tool_already_past_breakage_never_cuts(fmu: Fmu) -> None:
    tr = run(fmu, ref.params(tool_wear_start=1.2), stop=300.0, interval=10.0)
    assert tr["tool_broken"].all() and not tr["cutting"].any()
    assert tr["breakage_time"][-1] == 0.0 and tr["parts_completed"][-1] == 0
    assert (tr["tool_wear"] == 1.2).all()


def test_an_overloaded_tool_snaps_as_the_first_cut_starts(fmu: Fmu) -> None:
    p = ref.params(
        tool_diameter=6.0,
        radial_width=6.0,
        axial_depth=12.0,
        tool_overhang=30.0,
        feed_per_tooth=0.2,
        spindle_speed=3000.0,
        tool_wear_start=0.05,
    )
    assert ref.bending_stress(p, 0.05) > p["tool_bending_strength"]  # the case is one
    tr = run(fmu, p, stop=300.0, interval=10.0)
    # The sample at t = 0 is taken before the first cut starts: the tool is whole there.
    assert not tr["tool_broken"][0] and tr["breakage_cause"][0] == 0
    assert tr["tool_broken"][1:].all() and (tr["breakage_cause"][1:] == 2).all()
    assert tr["breakage_time"][-1] == 0.0 and tr["parts_completed"][-1] == 0
    assert (tr["tool_wear"] == 0.05).all() and not tr["cutting"][1:].any()


def test_wear_drives_the_tool_into_overload(fmu: Fmu) -> None:
    # A long, slender tool: the force rising with VB reaches the bending limit
    # before VB reaches vb_breakage.
    p = ref.params(
        tool_diameter=8.0,
        radial_width=4.0,
        axial_depth=8.0,
        tool_overhang=40.0,
        feed_per_tooth=0.1,
        spindle_speed=4000.0,
        path_length=600.0,
        load_time=20.0,
    )
    vb_crit = ref.overload_wear(p)
    assert 0.0 < vb_crit < p["vb_breakage"]  # the case is one
    need = vb_crit / ref.wear_rate(p)
    g = ref.geometry(p)
    parts, rest = divmod(need, g["cut_time"])
    t_break = parts * g["cycle_time"] + rest
    tr = run(fmu, p, stop=t_break + 200.0, interval=5.0)
    assert tr["breakage_time"][-1] == pytest.approx(t_break, rel=1e-12)
    assert tr["breakage_cause"][-1] == 2
    assert tr["tool_wear"][-1] == pytest.approx(vb_crit, rel=1e-12)
    assert ref.bending_stress(p, tr["tool_wear"][-1]) == pytest.approx(
        p["tool_bending_strength"], rel=1e-12
    )

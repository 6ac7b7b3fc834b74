"""The spindle's physics written again in numpy, from the model table.

Each function is the closed form the C model must reproduce; the tests
compare the FMU against these.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from physics.variables import catalogue_from_model_table

TABLE_PATH = Path(__file__).resolve().parents[2] / "physics" / "models" / "spindle" / "model.yaml"
TABLE = yaml.safe_load(TABLE_PATH.read_text())
CATALOGUE = catalogue_from_model_table(TABLE_PATH)
MATERIALS = [item["name"] for item in TABLE["enumerations"]["Material"]["items"]]
MATERIAL_DATA = TABLE["tables"]["material_data"]["rows"]


def params(**overrides: Any) -> dict[str, Any]:
    """Every parameter at its start value, with overrides (material by name)."""
    p = {n: v.start for n, v in CATALOGUE.items() if v.causality in ("parameter", "input")}
    p.update(overrides)
    if isinstance(p["material"], str):
        p["material"] = MATERIALS.index(p["material"]) + 1
    return p


def fmu_start_values(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if CATALOGUE[k].causality in ("parameter", "input")}


def material(p: dict[str, Any]) -> dict[str, float]:
    return MATERIAL_DATA[MATERIALS[int(p["material"]) - 1]]


def geometry(p: dict[str, Any]) -> dict[str, float]:
    d, ae, fz, z, n = (
        p["tool_diameter"],
        p["radial_width"],
        p["feed_per_tooth"],
        p["n_teeth"],
        p["spindle_speed"],
    )
    phi = math.acos(1 - 2 * ae / d)
    vf = fz * z * n
    cut = 60 * p["path_length"] / vf
    return {
        "phi": phi,
        "hm": 2 * fz * ae / (d * phi),
        "vc": math.pi * d * n / 1000,
        "vf": vf,
        "cut_time": cut,
        "cycle_time": cut + p["load_time"],
    }


def cutting_force(p: dict[str, Any], vb: float = 0.0) -> float:
    g, m = geometry(p), material(p)
    kc = m["kc11"] * g["hm"] ** -m["mc"] * (1 + p["wear_force_coefficient"] * vb)
    return kc * p["axial_depth"] * g["hm"] * p["n_teeth"] * g["phi"] / (2 * math.pi)


def resultant(p: dict[str, Any], vb: float = 0.0) -> float:
    return cutting_force(p, vb) * math.hypot(1.0, p["radial_force_ratio"])


def bearing_load(p: dict[str, Any], tool_force: float) -> float:
    """ISO 281 equivalent dynamic load of one front bearing."""
    lever = 1 + (p["nose_to_holder"] + p["tool_overhang"]) / p["spindle_bearing_span"]
    fr = tool_force * lever / p["bearing_count"]
    fa = p["bearing_preload"]
    if fr > 0 and fa / fr <= p["bearing_e"]:
        return fr
    return p["bearing_X"] * fr + p["bearing_Y"] * fa


def heat_while_cutting(p: dict[str, Any], vb: float = 0.0) -> dict[str, float]:
    """Heat flows and powers (W) while cutting, from Palmgren, Kienzle and the drive."""
    g = geometry(p)
    n = p["spindle_speed"]
    omega = 2 * math.pi * n / 60
    force = cutting_force(p, vb)
    power_cut = force * g["vc"] / 60
    load = bearing_load(p, resultant(p, vb))
    nu_n = p["lubricant_viscosity"] * n
    dm = p["bearing_pitch_diameter"]
    m0 = (
        1e-7 * p["bearing_f0"] * nu_n ** (2 / 3) * dm**3
        if nu_n >= 2000
        else 160e-7 * p["bearing_f0"] * dm**3
    )
    m_total = p["bearing_count"] * (m0 + p["bearing_f1"] * load * dm)  # N mm
    q_bearing = m_total * 1e-3 * omega
    p_shaft = power_cut + q_bearing
    p_el = p_shaft / p["motor_efficiency"] + p["motor_speed_loss"] * n
    return {
        "force": force,
        "power_cut": power_cut,
        "load": load,
        "q_bearing": q_bearing,
        "q_motor": p_el - p_shaft,
        "q_nose": p["cutting_heat_fraction"] * power_cut,
        "p_el": p_el,
        "torque": force * p["tool_diameter"] / 2000 + m_total * 1e-3,
    }


def thermal_system(p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dT/dt = A T + b(q): returns A, the capacities C and the conductance part of b."""
    gmh, gbh = p["conductance_motor_housing"], p["conductance_bearing_housing"]
    gmj, gbj = p["conductance_motor_jacket"], p["conductance_bearing_jacket"]
    gbf = p["conductance_bearing_flood"] if p["coolant_on"] else 0.0
    gba, gha = p["conductance_bearing_ambient"], p["conductance_housing_ambient"]
    tc, ta = p["coolant_temperature"], p["ambient_temperature"]
    # Conductance matrix G (W/K) and source vector for G T = q + s.
    g = np.array(
        [
            [gmh + gmj, 0.0, -gmh],
            [0.0, gbh + gbj + gbf + gba, -gbh],
            [-gmh, -gbh, gmh + gbh + gha],
        ]
    )
    s = np.array([gmj * tc, (gbj + gbf) * tc + gba * ta, gha * ta])
    c = np.array([p["motor_heat_capacity"], p["bearing_heat_capacity"], p["housing_heat_capacity"]])
    return g, c, s


def steady_temperatures(p: dict[str, Any], q: np.ndarray) -> np.ndarray:
    """Solve G T = q + s: the steady state of the thermal network for heat inputs q."""
    g, _, s = thermal_system(p)
    return np.linalg.solve(g, q + s)


def wear_rate(p: dict[str, Any]) -> float:
    """Usui-type flank wear rate while cutting, mm/s."""
    g, m = geometry(p), material(p)
    t_env = p["coolant_temperature"] if p["coolant_on"] else p["ambient_temperature"]
    rise = (
        m["dT_ref"]
        * (g["vc"] / m["vc_ref"]) ** p["temperature_speed_exponent"]
        * (p["feed_per_tooth"] / m["fz_ref"]) ** p["temperature_feed_exponent"]
        * ((1 - p["coolant_temperature_reduction"]) if p["coolant_on"] else 1.0)
    )
    theta = t_env + rise + 273.15
    theta_ref = 20 + m["dT_ref"] + 273.15
    return (
        p["vb_limit"]
        / (60 * m["life_ref"])
        * g["vc"]
        / m["vc_ref"]
        * math.exp(p["wear_activation"] * (1 / theta_ref - 1 / theta))
    )


def cutting_time(p: dict[str, Any], t: np.ndarray) -> np.ndarray:
    """Time spent cutting in [0, t] for the part cycle of a work order."""
    g = geometry(p)
    full, pos = np.divmod(t, g["cycle_time"])
    return full * g["cut_time"] + np.minimum(pos, g["cut_time"])


def bending_stress(p: dict[str, Any], vb: float = 0.0) -> float:
    """Bending stress at the tool's root (N/mm2): F L / (pi d^3 / 32), d the core diameter."""
    d = p["tool_core_ratio"] * p["tool_diameter"]
    return resultant(p, vb) * p["tool_overhang"] / (math.pi * d**3 / 32)


def overload_wear(p: dict[str, Any]) -> float:
    """Flank wear at which the bending stress reaches the tool's strength."""
    sharp = bending_stress(p)
    return (p["tool_bending_strength"] / sharp - 1) / p["wear_force_coefficient"]

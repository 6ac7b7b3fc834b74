"""The spindle's physics written again in numpy/scipy, from the model table.

Each function is the closed form (or an independent numerical solution: scipy
quadrature, root finding, eigenvalues) that the C model must reproduce; the tests
compare the FMU against these.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import integrate, optimize

from physics.variables import catalogue_from_model_table

TABLE_PATH = Path(__file__).resolve().parents[2] / "physics" / "models" / "spindle" / "model.yaml"
TABLE = yaml.safe_load(TABLE_PATH.read_text())
CATALOGUE = catalogue_from_model_table(TABLE_PATH)
MATERIALS = [item["name"] for item in TABLE["enumerations"]["Material"]["items"]]
MATERIAL_DATA = TABLE["tables"]["material_data"]["rows"]


def params(**overrides: Any) -> dict[str, Any]:
    """Every parameter at its start value, with overrides (material and surface by name)."""
    p = {n: v.start for n, v in CATALOGUE.items() if v.causality in ("parameter", "input")}
    p.update(overrides)
    if isinstance(p["material"], str):
        p["material"] = MATERIALS.index(p["material"]) + 1
    if isinstance(p["finished_surface"], str):
        p["finished_surface"] = {"wall": 1, "floor": 2}[p["finished_surface"]]
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
        "hex": fz * math.sin(phi) if phi < math.pi / 2 else fz,
        "vc": math.pi * d * n / 1000,
        "vf": vf,
        "cut_time": cut,
        "cycle_time": cut + p["load_time"],
    }


# ---- forces ---------------------------------------------------------------------------


def kc(p: dict[str, Any], vb: float = 0.0) -> float:
    m = material(p)
    return m["kc11"] * geometry(p)["hm"] ** -m["mc"] * (1 + p["wear_force_coefficient"] * vb)


def cutting_force(p: dict[str, Any], vb: float = 0.0) -> float:
    """Mean tangential force: Kienzle at hm times the mean number of teeth in the cut."""
    g = geometry(p)
    return kc(p, vb) * p["axial_depth"] * g["hm"] * p["n_teeth"] * g["phi"] / (2 * math.pi)


def tool_force(p: dict[str, Any], theta: float) -> tuple[float, float]:
    """(Fx, Fy) on a sharp tool, tooth 0's bottom point at immersion theta (down milling).

    Each flute element dz at immersion phi carries dFt = kc11 (fz sin phi)^(1-mc) dz
    and dFr = Kr dFt; elements trail the bottom point by 2 tan(helix) z / D.
    Integrated along the flute with scipy's adaptive quadrature.
    """
    m = material(p)
    z, ap, d = int(p["n_teeth"]), p["axial_depth"], p["tool_diameter"]
    kappa = 2 * math.tan(math.radians(p["helix_angle"])) / d
    kr, fz = p["radial_force_ratio"], p["feed_per_tooth"]
    entry = math.pi - geometry(p)["phi"]

    def element(phi: float) -> tuple[float, float]:
        phi = phi % (2 * math.pi)
        if not entry <= phi <= math.pi:
            return 0.0, 0.0
        ft = m["kc11"] * (fz * math.sin(phi)) ** (1 - m["mc"])
        return -ft * math.cos(phi) - kr * ft * math.sin(phi), ft * math.sin(
            phi
        ) - kr * ft * math.cos(phi)

    fx = fy = 0.0
    for j in range(z):
        bottom = theta - 2 * math.pi * j / z
        if kappa == 0.0:
            ex, ey = element(bottom)
            fx, fy = fx + ex * ap, fy + ey * ap
            continue
        # Break the flute where it crosses an engagement edge so quad sees smooth pieces.
        cuts = {0.0, ap}
        for k in range(-3, 4):
            for edge in (entry, math.pi):
                zc = (bottom - edge - 2 * math.pi * k) / kappa
                if 0 < zc < ap:
                    cuts.add(zc)
        for a, b in itertools.pairwise(sorted(cuts)):
            for axis in (0, 1):
                part = integrate.quad(
                    lambda s, b0=bottom, i=axis: element(b0 - kappa * s)[i], a, b, epsabs=1e-10
                )[0]
                fx, fy = (fx + part, fy) if axis == 0 else (fx, fy + part)
    return fx, fy


def peak_force(p: dict[str, Any]) -> float:
    """Largest |F| of a sharp tool over a revolution: a fine scan, then a bounded search."""
    pitch = 2 * math.pi / p["n_teeth"]
    grid = np.linspace(0, pitch, 721)
    mags = [math.hypot(*tool_force(p, t)) for t in grid]
    i = int(np.argmax(mags))
    res = optimize.minimize_scalar(
        lambda t: -math.hypot(*tool_force(p, t)),
        bounds=(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return max(mags[i], -res.fun)


def tool_ei(p: dict[str, Any]) -> float:
    d = p["tool_core_ratio"] * p["tool_diameter"]
    return p["tool_modulus"] * math.pi * d**4 / 64


def tip_compliance(p: dict[str, Any], a: float) -> float:
    """mm/N at the tip for a load a mm from the clamp, cantilever plus spindle spring."""
    length = p["tool_overhang"]
    return a**2 * (3 * length - a) / (6 * tool_ei(p)) + 1 / (1e3 * p["spindle_stiffness"])


def load_arm(p: dict[str, Any]) -> float:
    return p["tool_overhang"] - p["axial_depth"] / 2


def root_stress(p: dict[str, Any], force: float) -> float:
    d = p["tool_core_ratio"] * p["tool_diameter"]
    return force * load_arm(p) / (math.pi * d**3 / 32)


# ---- chatter stability ----------------------------------------------------------------


def _directional_eigenvalues(p: dict[str, Any]) -> np.ndarray:
    kr = p["radial_force_ratio"]
    st, ex = math.pi - geometry(p)["phi"], math.pi

    def terms(q: float) -> np.ndarray:
        c, s = math.cos(2 * q), math.sin(2 * q)
        return 0.5 * np.array(
            [
                [c - 2 * kr * q + kr * s, -s - 2 * q + kr * c],
                [-s + 2 * q + kr * c, -c - 2 * kr * q - kr * s],
            ]
        )

    return np.linalg.eigvals(terms(ex) - terms(st))


def _mu_g(p: dict[str, Any], mu: complex, r: Any) -> Any:
    """mu G(i w) at r = w / wn, with the tool tip's static stiffness k (N/mm)."""
    k_tip = 1 / tip_compliance(p, p["tool_overhang"])
    return mu / (k_tip * (1 - r * r + 2j * p["tool_damping_ratio"] * r))


def critical_depth(p: dict[str, Any]) -> float:
    """Zeroth-order milling stability: a_crit = 2 pi / (z Kt max Re(mu G)), mu of [alpha]."""
    best = 0.0
    for mu in _directional_eigenvalues(p):
        r = np.geomspace(0.1, 10, 20001)
        vals = _mu_g(p, mu, r).real
        i = int(np.argmax(vals))
        res = optimize.minimize_scalar(
            lambda x, mu=mu: -float(_mu_g(p, mu, x).real),
            bounds=(r[max(i - 1, 0)], r[i + 1]),
            method="bounded",
            options={"xatol": 1e-12},
        )
        best = max(best, vals[i], -res.fun)
    return 2 * math.pi / (p["n_teeth"] * kc(p) * best)


def stability_limit(p: dict[str, Any], f_n: float, lobes: int = 40) -> float:
    """The lowest stability lobe through the spindle speed (rpm) at natural frequency f_n.

    On lobe k the chatter frequency w and the tooth period T = 60 / (z n) hold
    w T = eps + 2 pi k, eps = pi - 2 atan(-Im(mu G) / Re(mu G)), where Re(mu G) > 0;
    every crossing is solved with brentq on a fine grid of r in [0.2, 5]. Lobes past
    ``lobes`` crowd onto the critical depth, taken where they could reach n.
    """
    n, z, wn = p["spindle_speed"], p["n_teeth"], 2 * math.pi * f_n
    crit = critical_depth(p)
    r = np.geomspace(0.2, 5, 20001)
    best, reach = math.inf, 0.0
    for mu in _directional_eigenvalues(p):

        def speed(x: Any, k: int, mu: complex = mu) -> Any:
            g = _mu_g(p, mu, x)
            eps = math.pi - 2 * np.arctan(-g.imag / g.real)
            return np.where(g.real > 0, 60 * wn * x / (z * (eps + 2 * math.pi * k)), np.nan)

        reach = max(reach, float(np.nanmax(speed(r, lobes + 1))))
        for k in range(lobes + 1):
            f = speed(r, k) - n
            sign = np.sign(f)
            for i in np.flatnonzero(sign[:-1] * sign[1:] <= 0):
                if np.isnan(f[i]) or np.isnan(f[i + 1]):
                    continue
                root = optimize.brentq(
                    lambda x, k=k: float(speed(x, k)) - n, r[i], r[i + 1], xtol=1e-14
                )
                depth = 2 * math.pi / (z * kc(p) * float(_mu_g(p, mu, root).real))
                best = min(best, depth)
    if n <= reach:
        best = min(best, crit)
    return max(best, crit)


def tool_natural_frequency(p: dict[str, Any]) -> float:
    """Tool cantilever (first mode, beta1 L = 1.8751) and spindle mode, by Dunkerley."""
    d = 1e-3 * p["tool_core_ratio"] * p["tool_diameter"]
    length = 1e-3 * p["tool_overhang"]
    ei = tool_ei(p) * 1e-6  # N m2
    f_tool = (
        1.875104068711961**2
        / (2 * math.pi * length**2)
        * math.sqrt(ei / (p["tool_density"] * math.pi * d * d / 4))
    )
    return 1 / math.sqrt(1 / f_tool**2 + 1 / p["spindle_natural_frequency"] ** 2)


# ---- tool wear and life -----------------------------------------------------------------


def wear_curve(p: dict[str, Any]) -> dict[str, float]:
    a, s1, s2 = p["wear_breakin"], p["wear_breakin_life"], p["wear_acceleration_life"]
    c = p["wear_acceleration_at_limit"] / math.expm1(1 / s2)
    b = p["vb_limit"] - a * (1 - math.exp(-1 / s1)) - p["wear_acceleration_at_limit"]
    return {"a": a, "s1": s1, "b": b, "c": c, "s2": s2}


def vb_of_clock(p: dict[str, Any], s: Any) -> Any:
    """Three-stage flank wear over the wear clock s (share of the tool life used)."""
    w = wear_curve(p)
    s = np.asarray(s, dtype=float)
    return w["a"] * (1 - np.exp(-s / w["s1"])) + w["b"] * s + w["c"] * np.expm1(s / w["s2"])


def clock_of_vb(p: dict[str, Any], vb: float) -> float:
    if vb <= 0:
        return 0.0
    return float(optimize.brentq(lambda s: float(vb_of_clock(p, s)) - vb, 0.0, 50.0, xtol=1e-15))


def tool_life(p: dict[str, Any]) -> float:
    """Minutes of cutting to vb_limit: extended Taylor in engaged time."""
    g, m = geometry(p), material(p)
    eps = g["phi"] / (2 * math.pi)
    eps_ref = math.acos(1 - 2 * p["life_reference_engagement"]) / (2 * math.pi)
    hex_ref = m["hex_ref_ratio"] * p["tool_diameter"]
    life = (
        m["life_ref"]
        * (eps_ref / eps)
        * (m["vc_ref"] / g["vc"]) ** (1 / m["taylor_n"])
        * (hex_ref / g["hex"]) ** (p["taylor_feed_exponent"] / m["taylor_n"])
    )
    return life * (m["coolant_factor"] if p["coolant_on"] else 1.0)


def cutting_time(p: dict[str, Any], t: np.ndarray) -> np.ndarray:
    """Time spent cutting in [0, t] for the part cycle of a work order."""
    g = geometry(p)
    full, pos = np.divmod(t, g["cycle_time"])
    return full * g["cut_time"] + np.minimum(pos, g["cut_time"])


def time_of_cutting(p: dict[str, Any], tc: float) -> float:
    """Inverse of cutting_time: when the tool has cut for tc seconds."""
    g = geometry(p)
    parts, rest = divmod(tc, g["cut_time"])
    return parts * g["cycle_time"] + rest


# ---- bearings, drive and heat -------------------------------------------------------------


def thermal_preload_coefficient(p: dict[str, Any]) -> float:
    """N/K: axial stiffness times the rings' interference alpha (dm/2) cot(contact angle)."""
    return (
        1e3
        * p["bearing_axial_stiffness"]
        * p["expansion_coefficient"]
        * p["bearing_pitch_diameter"]
        / 2
        / math.tan(math.radians(p["bearing_contact_angle"]))
    )


def axial_load(p: dict[str, Any], t_shaft: float, t_bearing: float) -> float:
    return max(0.0, p["bearing_preload"] + thermal_preload_coefficient(p) * (t_shaft - t_bearing))


def bearing_radial(p: dict[str, Any], tool_force: float) -> float:
    lever = 1 + (p["nose_to_holder"] + p["tool_overhang"]) / p["spindle_bearing_span"]
    return tool_force * lever / p["bearing_count"]


def equivalent_load(p: dict[str, Any], fr: float, fa: float) -> float:
    """ISO 281 equivalent dynamic load of one bearing."""
    if fr > 0 and fa / fr <= p["bearing_e"]:
        return fr
    return p["bearing_X"] * fr + p["bearing_Y"] * fa


def palmgren_m0(p: dict[str, Any], n: float) -> float:
    nu_n = p["lubricant_viscosity"] * n
    dm3 = p["bearing_pitch_diameter"] ** 3
    if n <= 0:
        return 0.0
    return (
        1e-7 * p["bearing_f0"] * nu_n ** (2 / 3) * dm3
        if nu_n >= 2000
        else 160e-7 * p["bearing_f0"] * dm3
    )


def heat(
    p: dict[str, Any], temps: np.ndarray, *, cutting: bool, n: float | None = None, vb: float = 0.0
) -> dict[str, float]:
    """Heat flows and powers (W) at temperatures (stator, shaft, bearing, housing)."""
    n = p["spindle_speed"] if n is None else n
    force = cutting_force(p, vb) if cutting else 0.0
    power_cut = force * geometry(p)["vc"] / 60
    fr = bearing_radial(p, force * math.hypot(1, p["radial_force_ratio"]))
    fa = axial_load(p, temps[1], temps[2])
    p1 = max(0.9 * fa / math.tan(math.radians(p["bearing_contact_angle"])) - 0.1 * fr, fr)
    m_total = p["bearing_count"] * (
        palmgren_m0(p, n) + p["bearing_f1"] * p1 * p["bearing_pitch_diameter"]
    )
    q_bearing = m_total * 1e-3 * 2 * math.pi * n / 60
    p_shaft = power_cut + q_bearing
    p_el = p_shaft / p["motor_efficiency"] + p["motor_speed_loss"] * n if n > 0 else 0.0
    q_motor = p_el - p_shaft if n > 0 else 0.0
    return {
        "force": force,
        "power_cut": power_cut,
        "fr": fr,
        "fa": fa,
        "load": equivalent_load(p, fr, fa),
        "q_bearing": q_bearing,
        "q_motor": q_motor,
        "p_shaft": p_shaft,
        "p_el": p_el,
        "torque": force * p["tool_diameter"] / 2000 + m_total * 1e-3 if n > 0 else 0.0,
    }


def node_heat(p: dict[str, Any], h: dict[str, float]) -> np.ndarray:
    rotor, inner = p["rotor_loss_share"], p["bearing_inner_heat_share"]
    return np.array(
        [
            (1 - rotor) * h["q_motor"],
            rotor * h["q_motor"]
            + inner * h["q_bearing"]
            + p["cutting_heat_fraction"] * h["power_cut"],
            (1 - inner) * h["q_bearing"],
            0.0,
        ]
    )


def thermal_system(p: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """G T = q + s: conductance matrix G, capacities C and sources s (coolant, air)."""
    gmj, gmh, gms = (p[f"conductance_motor_{k}"] for k in ("jacket", "housing", "shaft"))
    gsb, gsa = p["conductance_shaft_bearing"], p["conductance_shaft_ambient"]
    gbj, gba, gbh = (p[f"conductance_bearing_{k}"] for k in ("jacket", "ambient", "housing"))
    gbf = p["conductance_bearing_flood"] if p["coolant_on"] else 0.0
    gha = p["conductance_housing_ambient"]
    tc, ta = p["coolant_temperature"], p["ambient_temperature"]
    g = np.array(
        [
            [gmj + gmh + gms, -gms, 0, -gmh],
            [-gms, gms + gsb + gsa, -gsb, 0],
            [0, -gsb, gsb + gbj + gbf + gba + gbh, -gbh],
            [-gmh, 0, -gbh, gmh + gbh + gha],
        ],
        dtype=float,
    )
    s = np.array([gmj * tc, gsa * ta, (gbj + gbf) * tc + gba * ta, gha * ta])
    c = np.array([p[f"{k}_heat_capacity"] for k in ("motor", "shaft", "bearing", "housing")])
    return g, c, s


def steady_temperatures(
    p: dict[str, Any], *, cutting: bool, n: float | None = None, vb: float = 0.0
) -> np.ndarray:
    """Solve G T = q(T) + s by Newton's method (q depends on T via the preload).

    q is affine in T wherever the preload stays positive and the friction load is
    the axial branch, so the finite-difference Jacobian is exact there.
    """
    g, _, s = thermal_system(p)

    def residual(t: np.ndarray) -> np.ndarray:
        return g @ t - node_heat(p, heat(p, t, cutting=cutting, n=n, vb=vb)) - s

    x = np.full(4, 30.0)
    for _ in range(20):
        r = residual(x)
        jac = np.column_stack([(residual(x + np.eye(4)[i]) - r) for i in range(4)])
        x = x - np.linalg.solve(jac, r)
        if np.max(np.abs(residual(x))) < 1e-10:
            break
    assert np.max(np.abs(residual(x))) < 1e-10, residual(x)
    return x


def surface_rt(p: dict[str, Any]) -> float:
    """Feed-mark height (mm) of the finished surface, with runout."""
    r = p["tool_diameter"] / 2 if p["finished_surface"] == 1 else p["corner_radius"]
    fz, z, e = p["feed_per_tooth"], p["n_teeth"], 1e-3 * p["tool_runout"]
    return min(fz**2 / (8 * r) + e, (z * fz) ** 2 / (8 * r))


def roughness(p: dict[str, Any], vb: float) -> float:
    ra_marks = 4 / (9 * math.sqrt(3)) * 1e3 * surface_rt(p)
    return math.hypot(ra_marks, p["roughness_floor"]) * (1 + p["roughness_wear_coefficient"] * vb)

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
from scipy import integrate, optimize, stats

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


def axial_force_ratio(p: dict[str, Any]) -> float:
    """Kac/Ktc of an oblique edge at the helix angle i, Stabler's rule eta = i (Armarego &
    Whitfield 1985): the ratio of the axial and tangential rows of the oblique model."""
    i, bn, an = (math.radians(p[k]) for k in ("helix_angle", "friction_angle", "rake_angle"))
    eta = i
    axial = math.cos(bn - an) * math.tan(i) - math.tan(eta) * math.sin(bn)
    tangential = math.cos(bn - an) + math.tan(i) * math.tan(eta) * math.sin(bn)
    return axial / tangential


def mean_forces(p: dict[str, Any], vb: float = 0.0) -> tuple[float, float, float]:
    """Mean (tangential, radial, axial) force: the shear part by Kienzle at hm times the
    mean teeth in the cut, the edge part Ke ap z phi_e / 2 pi; times 1 + k_w VB."""
    g, m = geometry(p), material(p)
    engaged = p["axial_depth"] * p["n_teeth"] * g["phi"] / (2 * math.pi)
    shear = kc(p) * g["hm"] * engaged
    wear = 1 + p["wear_force_coefficient"] * vb
    return (
        (shear + m["edge_tangential"] * engaged) * wear,
        (p["radial_force_ratio"] * shear + m["edge_radial"] * engaged) * wear,
        (axial_force_ratio(p) * shear + m["edge_axial"] * engaged) * wear,
    )


def cutting_force(p: dict[str, Any], vb: float = 0.0) -> float:
    """Mean tangential force: shear plus edge force."""
    return mean_forces(p, vb)[0]


def element_forces(p: dict[str, Any], phi: float) -> tuple[float, float, float]:
    """(dFx, dFy, dFa) per mm of flute height of an element at immersion phi: dFt =
    kc11 h^(1 - mc) + Kte, dFr = Kr kc11 h^(1 - mc) + Kre, dFa = Ka kc11 h^(1 - mc) +
    Kae with h = fz sin(phi), nothing outside the engagement [pi - phi_e, pi]."""
    m = material(p)
    phi = phi % (2 * math.pi)
    if not math.pi - geometry(p)["phi"] - 1e-12 <= phi <= math.pi + 1e-12:
        return 0.0, 0.0, 0.0
    shear = m["kc11"] * max(0.0, p["feed_per_tooth"] * math.sin(phi)) ** (1 - m["mc"])
    ft = shear + m["edge_tangential"]
    fr = p["radial_force_ratio"] * shear + m["edge_radial"]
    fa = axial_force_ratio(p) * shear + m["edge_axial"]
    return (
        -ft * math.cos(phi) - fr * math.sin(phi),
        ft * math.sin(phi) - fr * math.cos(phi),
        fa,
    )


def flute_breaks(p: dict[str, Any], bottom: float, extra: tuple[float, ...] = ()) -> list[float]:
    """Heights (0..ap) where a flute whose tip is at `bottom` crosses an engagement edge:
    quad integrates the smooth pieces between them."""
    ap, d = p["axial_depth"], p["tool_diameter"]
    kappa = 2 * math.tan(math.radians(p["helix_angle"])) / d
    cuts = {0.0, ap, *(e for e in extra if 0 < e < ap)}
    if kappa > 0:
        for k in range(-3, 4):
            for edge in (math.pi - geometry(p)["phi"], math.pi):
                zc = (bottom - edge - 2 * math.pi * k) / kappa
                if 0 < zc < ap:
                    cuts.add(zc)
    return sorted(cuts)


def tool_forces(p: dict[str, Any], theta: float) -> tuple[float, float, float]:
    """(Fx, Fy, Fa) on a sharp tool, tooth 0's bottom point at immersion theta (down
    milling); elements trail the bottom point by 2 tan(helix) z / D. Integrated along
    the flute with scipy's adaptive quadrature."""
    z, d = int(p["n_teeth"]), p["tool_diameter"]
    kappa = 2 * math.tan(math.radians(p["helix_angle"])) / d
    total = [0.0, 0.0, 0.0]
    for j in range(z):
        bottom = theta - 2 * math.pi * j / z
        for a, b in itertools.pairwise(flute_breaks(p, bottom)):
            for axis in range(3):
                total[axis] += integrate.quad(
                    lambda s, b0=bottom, i=axis: element_forces(p, b0 - kappa * s)[i],
                    a, b, epsabs=1e-10,
                )[0]  # fmt: skip
    return total[0], total[1], total[2]


def tool_force(p: dict[str, Any], theta: float) -> tuple[float, float]:
    """(Fx, Fy) on a sharp tool, tooth 0's bottom point at immersion theta."""
    fx, fy, _ = tool_forces(p, theta)
    return fx, fy


def peak_force(p: dict[str, Any], axial: bool = False) -> float:
    """Largest |F| in the plane (or |Fa|) of a sharp tool over a revolution: a fine scan,
    then a bounded search."""

    def size(t: float) -> float:
        fx, fy, fa = tool_forces(p, t)
        return abs(fa) if axial else math.hypot(fx, fy)

    pitch = 2 * math.pi / p["n_teeth"]
    grid = np.linspace(0, pitch, 721)
    mags = [size(t) for t in grid]
    i = int(np.argmax(mags))
    res = optimize.minimize_scalar(
        lambda t: -size(t),
        bounds=(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return max(mags[i], -res.fun)


def tool_ei(p: dict[str, Any]) -> float:
    d = p["tool_core_ratio"] * p["tool_diameter"]
    return p["tool_modulus"] * math.pi * d**4 / 64


def tool_segments(p: dict[str, Any]) -> list[tuple[float, float]]:
    """(length mm, bending diameter mm) of shank, neck and flutes from the holder face."""
    d, big_l = p["tool_diameter"], p["tool_overhang"]
    flute = min(p["flute_length_ratio"] * d, big_l)
    neck = min(p["neck_length"], big_l - flute)
    parts = [
        (big_l - flute - neck, d),
        (neck, p["neck_ratio"] * d),
        (flute, p["tool_core_ratio"] * d),
    ]
    return [(length, dia) for length, dia in parts if length > 1e-9 * big_l]


def tip_compliance(p: dict[str, Any], a: float) -> float:
    """mm/N at the tip for a load a mm from the clamp: the stepped carbide beam by
    quadrature of the unit-load integral (a - x)(L - x) / EI(x), plus the spindle spring."""
    big_l, x0, total = p["tool_overhang"], 0.0, 0.0
    for length, dia in tool_segments(p):
        ei = p["tool_modulus"] * math.pi * dia**4 / 64
        hi = min(x0 + length, a)
        if hi > x0:
            integrand = lambda x, ei=ei: (a - x) * (big_l - x) / ei  # noqa: E731
            total += integrate.quad(integrand, x0, hi, epsrel=1e-13)[0]
        x0 += length
    return total + 1 / (1e3 * p["spindle_stiffness"])


def influence(p: dict[str, Any], a: float, c: float) -> float:
    """mm/N at c mm from the holder face under a unit load at a: the unit-load integral
    (a - x)(c - x) / EI(x) over [0, min(a, c)], exact by two-point Gauss-Legendre on each
    uniform piece (the integrand is quadratic), plus the spindle spring."""
    top, x0, total = min(a, c), 0.0, 0.0
    for length, dia in tool_segments(p):
        ei = p["tool_modulus"] * math.pi * dia**4 / 64
        hi = min(x0 + length, top)
        if hi > x0:
            total += integrate.fixed_quad(lambda x, ei=ei: (a - x) * (c - x) / ei, x0, hi, n=2)[0]
        x0 += length
    return total + 1 / (1e3 * p["spindle_stiffness"])


WALL_HEIGHTS = 33  # the model's sampling of the engaged height


def wall_deflection(p: dict[str, Any], height: float, wall: str = "down") -> float:
    """mm of material left at `height` above the tip on the down-milled wall (phi = pi) or
    a slot's up-milled wall (phi = 0), sharp tool: the element at that height is on the
    wall's angle; every element's dFy times the influence compliance, by quad."""
    big_l, d = p["tool_overhang"], p["tool_diameter"]
    kappa = 2 * math.tan(math.radians(p["helix_angle"])) / d
    theta = (math.pi if wall == "down" else 0.0) + kappa * height
    total = 0.0
    for j in range(int(p["n_teeth"])):
        bottom = theta - 2 * math.pi * j / p["n_teeth"]
        for a, b in itertools.pairwise(flute_breaks(p, bottom, (height,))):
            total += integrate.quad(
                lambda s, b0=bottom: element_forces(p, b0 - kappa * s)[1]
                * influence(p, big_l - s, big_l - height),
                a, b, epsabs=1e-13, epsrel=1e-11, limit=200,
            )[0]  # fmt: skip
    return total if wall == "down" else -total


def wall_error(p: dict[str, Any], vb: float = 0.0) -> float:
    """um, + = material left: of the heights (and walls of a slot), the largest |error|,
    the deflection times 1 + k_w VB plus VB tan(alpha) less the radius compensation."""
    walls = ["down", "up"] if p["radial_width"] >= p["tool_diameter"] else ["down"]
    offset = vb * math.tan(math.radians(p["clearance_angle"])) - p["radius_compensation"]
    wear = 1 + p["wear_force_coefficient"] * vb
    errors = [
        wear * wall_deflection(p, zi, w) + offset
        for zi in np.linspace(0, p["axial_depth"], WALL_HEIGHTS)
        for w in walls
    ]
    return 1e3 * max(errors, key=abs)


def load_arm(p: dict[str, Any]) -> float:
    return p["tool_overhang"] - p["axial_depth"] / 2


def root_stress(p: dict[str, Any], force: float) -> float:
    d = p["tool_core_ratio"] * p["tool_diameter"]
    return force * load_arm(p) / (math.pi * d**3 / 32)


# Chatter stability: tests/physics/chatter_reference.py.


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


def longest_chip(p: dict[str, Any], h: float) -> float:
    """Chip of the longest tooth where the others take h: runout e added, at most z h."""
    return min(h + 1e-3 * p["tool_runout"], p["n_teeth"] * h)


def tool_life(p: dict[str, Any]) -> float:
    """Median minutes of cutting to vb_limit: extended Taylor in engaged time, on the
    longest tooth's chip; no speed term where flank wear does not end the life."""
    g, m = geometry(p), material(p)
    eps = g["phi"] / (2 * math.pi)
    eps_ref = math.acos(1 - 2 * p["life_reference_engagement"]) / (2 * math.pi)
    hex_ref = m["hex_ref_ratio"] * p["tool_diameter"]
    life = (
        m["life_ref"]
        * (eps_ref / eps)
        * (m["vc_ref"] / g["vc"]) ** (m["flank_wear_life"] / m["taylor_n"])
        * (hex_ref / longest_chip(p, g["hex"])) ** (p["taylor_feed_exponent"] / m["taylor_n"])
    )
    return life * (m["coolant_factor"] if p["coolant_on"] else 1.0)


def life_probability(p: dict[str, Any], clock: float) -> float:
    """P(a tool's life is at most `clock` median lives): the lognormal CDF, written as
    the integral of its density (scipy quad), with sigma_ln from the material's CV."""
    if clock <= 0:
        return 0.0
    sigma = math.sqrt(math.log1p(material(p)["life_cv"] ** 2))
    dist = stats.lognorm(s=sigma, scale=1.0)
    return float(integrate.quad(dist.pdf, 0.0, clock, epsabs=1e-14, epsrel=1e-12)[0])


def fracture_wear(p: dict[str, Any]) -> float:
    ratio = p["tool_diameter"] / p["vb_breakage_diameter"]
    return float(p["vb_breakage"] * ratio ** p["vb_breakage_exponent"])


def sharp_breakage_rate(p: dict[str, Any], margin: float = math.inf) -> float:
    """Hazard (1/s) of a sharp tool in the cut: z tooth entries per revolution, each
    breaking with breakage_hazard_ref S^m, S the edge load over the reference's (the
    larger of the thickest chip's and the entry chip's times the impact factor, both as
    (h / hex_ref)^(1 - mc), over the reference's impact); the longest tooth's chips with
    runout; chatter thickens the chips up to chatter_chip_factor at a margin of 0."""
    g, m = geometry(p), material(p)
    e, k = 1 - m["mc"], p["entry_impact_factor"]
    ref = m["hex_ref_ratio"] * p["tool_diameter"]
    amp = 1 + (p["chatter_chip_factor"] - 1) * min(1.0, max(0.0, 1 - margin))
    h, h_in = g["hex"], p["feed_per_tooth"] * math.sin(g["phi"])

    def load(hh: float, hh_in: float) -> float:
        return max((amp * hh / ref) ** e / k, (amp * hh_in / ref) ** e)

    wm = p["carbide_weibull_modulus"]
    per_rev = (
        load(longest_chip(p, h), longest_chip(p, h_in)) ** wm
        + (p["n_teeth"] - 1) * load(h, h_in) ** wm
    )
    return p["spindle_speed"] / 60 * p["breakage_hazard_ref"] * per_rev


def breakage_rate(p: dict[str, Any], vb: Any, margin: float = math.inf) -> Any:
    """Hazard (1/s) at flank wear vb: the sharp rate times (1 + k_w VB)^m."""
    scale = (1 + p["wear_force_coefficient"] * np.asarray(vb)) ** p["carbide_weibull_modulus"]
    return sharp_breakage_rate(p, margin) * scale


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
    ft, fr_tool, _ = mean_forces(p, vb) if cutting else (0.0, 0.0, 0.0)
    force = ft
    power_cut = force * geometry(p)["vc"] / 60
    fr = bearing_radial(p, math.hypot(ft, fr_tool))
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


def wall_rt(p: dict[str, Any]) -> float:
    """Feed-mark height (mm) of a wall, swept by the cutter's radius, with radial runout."""
    r = p["tool_diameter"] / 2
    fz, z, e = p["feed_per_tooth"], p["n_teeth"], 1e-3 * p["tool_runout"]
    return min(fz**2 / (8 * r) + e, (z * fz) ** 2 / (8 * r))


def end_edge_profile(u: np.ndarray, r: float, dish: float) -> np.ndarray:
    """Height (mm) of a tooth's section along the feed above its lowest point, u from that
    point (+ toward the periphery): the corner circle's lower arc, centre (0, r), then the
    end edge, the circle's tangent at slope tan(dish) toward the centre; nothing cuts
    beyond the periphery (u >= r)."""
    u = np.asarray(u, dtype=float)
    circle = np.where(np.abs(u) < r, r - np.sqrt(np.maximum(r * r - u * u, 0.0)), np.inf)
    foot = -r * math.sin(dish)
    line = r * (1 - math.cos(dish)) + (foot - u) * math.tan(dish)
    out = np.where(u >= foot, circle, line)
    return np.where(u >= r, np.inf, out)


def floor_profile(p: dict[str, Any], samples: int = 400_001) -> tuple[np.ndarray, np.ndarray]:
    """x over one period z fz and the floor height: the lowest of the teeth's profiles
    fz apart, tooth 0 lower by the face runout."""
    fz, z = p["feed_per_tooth"], int(p["n_teeth"])
    r, dish, e = p["corner_radius"], math.radians(p["dish_angle"]), 1e-3 * p["axial_runout"]
    period = z * fz
    x = np.linspace(0.0, period, samples)
    teeth = [
        end_edge_profile(x - j * fz - k * period, r, dish) - (e if j == 0 else 0.0)
        for j in range(z) for k in (-1, 0, 1)
    ]  # fmt: skip
    return x, np.min(teeth, axis=0)


def floor_ra(p: dict[str, Any]) -> float:
    """Ra (mm) of the floor profile, by the trapezoidal rule over one period."""
    x, y = floor_profile(p)
    period = x[-1] - x[0]
    mean = integrate.trapezoid(y, x) / period
    return float(integrate.trapezoid(np.abs(y - mean), x) / period)


def chatter_ra(p: dict[str, Any], margin: float) -> float:
    """Ra (um) of a wall's chatter marks: a waviness of peak to valley (chatter_chip_factor
    - 1) hex (1 - margin) below margin 1, Ra = Rt / pi of a sine."""
    if p["finished_surface"] != 1 or not margin < 1:
        return 0.0
    rt = (p["chatter_chip_factor"] - 1) * geometry(p)["hex"] * min(1.0, 1 - margin)
    return 1e3 * rt / math.pi


def roughness(p: dict[str, Any], vb: float, margin: float = math.inf) -> float:
    if p["finished_surface"] == 1:
        ra_marks = 4 / (9 * math.sqrt(3)) * 1e3 * wall_rt(p)
    else:
        ra_marks = 1e3 * floor_ra(p)
    total = math.sqrt(ra_marks**2 + chatter_ra(p, margin) ** 2 + p["roughness_floor"] ** 2)
    return total * (1 + p["roughness_wear_coefficient"] * vb)

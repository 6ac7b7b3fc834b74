"""The spindle over the whole input domain of its twin spec: no NaN, sane physics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import qmc

from physics.run import open_twin
from physics.spec import load_spec
from physics.variables import catalogue_from_model_table

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"
# The machine constants, at their start values (the spec sets none of them).
CONSTANTS = {
    name: v.start
    for name, v in catalogue_from_model_table(
        ROOT / "physics" / "models" / "spindle" / "model.yaml"
    ).items()
    if v.causality == "parameter"
}
TEMPERATURES = (
    "motor_temperature",
    "shaft_temperature",
    "bearing_temperature",
    "housing_temperature",
)


def domain_points(n_random: int, n_corners: int, seed: int) -> list[dict[str, Any]]:
    """Latin-hypercube points inside, plus random corners of, the inputs' ranges.

    Each numeric input gets a coordinate in [0, 1]; those the constraints tie to
    others are placed inside what the constraints allow for this material and tool
    (the carbide cutting-speed window, the chip-thickness window after chip thinning,
    ap * ae within the section and reach limit, ap <= 2 D, D/2 + ap <= overhang <= 5 D,
    corner radius <= D/4), so corners are corners of the feasible region.
    """
    spec = load_spec(SPEC)
    numeric = {k: v for k, v in spec.inputs.items() if v.kind in ("real", "integer")}
    rng = np.random.default_rng(seed)
    u = np.vstack(
        [
            qmc.LatinHypercube(d=len(numeric), seed=seed).random(n_random),
            rng.integers(0, 2, size=(n_corners, len(numeric))).astype(float),
        ]
    )
    materials = spec.inputs["material"].choice_names
    points = []
    for i, row in enumerate(u):
        x = dict(zip(numeric, row, strict=True))

        def between(low: float, high: float, key: str, x: dict[str, float] = x) -> float:
            return low + x[key] * (high - low)

        values: dict[str, Any] = {}
        for key, inp in numeric.items():
            assert inp.min is not None and inp.max is not None
            value = between(inp.min, inp.max, key)
            values[key] = round(value) if inp.kind == "integer" else value
        values["material"] = materials[i % len(materials)]
        values["finished_surface"] = ("wall", "floor")[i // len(materials) % 2]
        values["coolant_on"] = bool(i % 2)
        values["replace_worn_tool"] = bool(i // 2 % 3)
        d = values["tool_diameter"]
        values["tool_overhang"] = between(max(10.0, 0.6 * d), min(125.0, 5 * d), "tool_overhang")
        values["radial_width"] = between(0.1, d, "radial_width")
        names = spec.namespace(values)
        section = float(names["section_limit"] * names["reach_factor"]) * d * d
        ap_max = min(40.0, 2 * d, section / values["radial_width"], values["tool_overhang"] - d / 2)
        values["axial_depth"] = between(0.1, ap_max, "axial_depth")
        values["corner_radius"] = between(0.1, min(4.0, d / 4), "corner_radius")
        e = values["radial_width"] / d
        thinning = 2 * math.sqrt(e * (1 - e)) if e < 0.5 else 1.0
        hex_ = between(0.5, 1.5, "feed_per_tooth") * float(names["chip_recommended"])
        values["feed_per_tooth"] = float(np.clip(hex_ / thinning, 0.01, 0.3))
        vc_min, vc_max = float(names["cutting_speed_min"]), float(names["cutting_speed_max"])
        vc = between(vc_min, vc_max, "spindle_speed")
        values["spindle_speed"] = float(np.clip(1000 * vc / (math.pi * d), 500, 24000))
        points.append(values)
    return points


def rise_per_watt(coolant_on: bool) -> np.ndarray:
    """(G^-1 1)_j, K/W: node j's steady rise above the sinks with 1 W into every node.

    The four-node network of model.yaml (stator, shaft, bearing, housing), the flood
    coolant on the nose only when it is on.
    """
    c = CONSTANTS
    gmj, gmh, gms = (c[f"conductance_motor_{k}"] for k in ("jacket", "housing", "shaft"))
    gsb, gsa = c["conductance_shaft_bearing"], c["conductance_shaft_ambient"]
    gbj, gba, gbh = (c[f"conductance_bearing_{k}"] for k in ("jacket", "ambient", "housing"))
    gbf = c["conductance_bearing_flood"] if coolant_on else 0.0
    gha = c["conductance_housing_ambient"]
    g = np.array(
        [
            [gmj + gmh + gms, -gms, 0, -gmh],
            [-gms, gms + gsb + gsa, -gsb, 0],
            [0, -gsb, gsb + gbj + gbf + gba + gbh, -gbh],
            [-gmh, 0, -gbh, gmh + gbh + gha],
        ]
    )
    return np.linalg.solve(g, np.ones(4))


def test_no_nan_and_sane_physics_across_the_domain() -> None:
    spec = load_spec(SPEC)
    # More random points than corners: the tool-life law's speed window (spec v8) admits
    # few corners of the box.
    points = domain_points(n_random=480, n_corners=160, seed=3)
    ok = spec.constraints_mask({k: np.array([p[k] for p in points]) for k in points[0]})
    vb_breakage, tan_clearance = CONSTANTS["vb_breakage"], math.tan(math.radians(10.0))
    assert CONSTANTS["clearance_angle"] == 10.0
    ran = broken = changed = 0
    with open_twin(spec) as fmu:
        for values, allowed in zip(points, ok, strict=True):
            if not allowed:
                continue
            case = spec.case_from_order(values, 2, fmu.catalogue)
            # At least four samples per cut, so the peak power of a part is seen.
            cut = case.stop_time / 2 - values["load_time"]
            dt = min(10.0, cut / 4)
            tr = fmu.simulate(case.start_values, case.stop_time, step_size=dt, output_interval=dt)
            why = (values, case.stop_time)
            # The fracture wear grows with the tool diameter (model.yaml: vb_breakage).
            ratio = values["tool_diameter"] / CONSTANTS["vb_breakage_diameter"]
            vb_fracture = vb_breakage * ratio ** CONSTANTS["vb_breakage_exponent"]
            for name, y in tr.values.items():
                assert np.all(np.isfinite(y.astype(float))), (name, *why)

            # Accumulated quantities never fall; VB falls only where a tool is changed.
            for name in ("bearing_damage", "energy", "parts_completed", "tool_changes"):
                assert np.all(np.diff(tr[name]) >= 0), (name, *why)
            vb, changes = tr["tool_wear"], tr["tool_changes"]
            fell = np.diff(vb) < 0
            assert np.all(np.diff(changes)[fell] > 0), why
            assert tr["bearing_damage"][0] == values["bearing_damage"]
            # (the start VB goes through the wear clock and back: 1e-12)
            assert math.isclose(vb[0], values["tool_wear"], rel_tol=1e-12) or (
                changes[0] > 0 and vb[0] == 0
            ), why
            if changes[-1] > 0:
                assert values["replace_worn_tool"], why
                changed += 1

            # Temperatures: never below the colder of coolant and air (every heat flow
            # into the network is >= 0); a cold start lies between the two; and above
            # the warmer of them by at most the steady rise with the run's peak
            # electrical power fed into every node at once (all heat is part of that
            # power), or by what the start holds above that.
            low = min(values["coolant_temperature"], values["ambient_temperature"])
            high = max(values["coolant_temperature"], values["ambient_temperature"])
            temps = np.column_stack([tr[name] for name in TEMPERATURES])
            assert np.all(temps >= low - 1e-9), why
            if values["warmup"] == 0:
                assert np.all(temps[0] <= high + 1e-9), why
            bound = high + 1.05 * float(np.max(tr["spindle_power"])) * rise_per_watt(
                values["coolant_on"]
            )
            bound += max(0.0, float(np.max(temps[0] - bound)))
            assert np.all(temps <= bound + 1e-9), why
            assert np.all(temps < 150.0), why

            # Quality: the wall error includes the wear offset VB tan(alpha) less the
            # radius compensation, plus a deflection that pushes the tool away from a
            # down-milled wall (a slot's up-milled wall may be overcut); Ra has its floor;
            # the Z drift is zero at the tool-length reference, before the first part.
            np.testing.assert_allclose(tr["wear_offset"], 1e3 * vb * tan_clearance, rtol=1e-12)
            if values["radial_width"] < values["tool_diameter"]:
                net = tr["wear_offset"] - 1e3 * values["radius_compensation"]
                assert np.all(tr["wall_error"] >= net - 1e-9), why
            assert np.all(tr["surface_roughness"] >= CONSTANTS["roughness_floor"]), why
            assert tr["axial_drift"][0] == 0.0

            # The order either finishes, or the tool broke and the machine halted.
            cause = int(tr["breakage_cause"][-1])
            if tr["tool_broken"][-1]:
                broken += 1
                assert tr["parts_completed"][-1] < 2 and cause in (1, 2), why
                if cause == 1:  # worn out: at the fracture wear (or past it from the start)
                    worn = max(vb_fracture, values["tool_wear"])
                    assert math.isclose(vb[-1], worn, rel_tol=1e-12), why
            else:
                assert tr["parts_completed"][-1] == 2 and cause == 0, why
                assert np.all(vb < vb_fracture), why
            for name in ("tool_life", "stability_margin", "static_safety", "part_cycle_time"):
                assert np.all(tr[name] > 0), (name, *why)
            for name in ("spindle_load", "preload_ratio", "tool_remaining_parts"):
                assert np.all(tr[name] >= 0), (name, *why)
            ran += 1
    # The constraints exclude some corners, not nearly all; tools break and are changed.
    assert ran > 250 and broken > 0 and changed > 0, (ran, broken, changed)

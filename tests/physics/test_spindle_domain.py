"""The spindle over the whole input domain of its twin spec: no NaN, sane physics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import qmc

from physics.run import open_twin
from physics.spec import load_spec
from tests.physics import spindle_reference as ref

SPEC = Path(__file__).resolve().parents[2] / "experiments" / "specs" / "spindle.yaml"


def domain_points(n_random: int, n_corners: int, seed: int) -> list[dict]:
    """Latin-hypercube points inside, plus random corners of, the inputs' ranges."""
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
    keys = list(numeric)
    points = []
    for i, row in enumerate(u):
        values: dict = {}
        for (key, inp), x in zip(numeric.items(), row, strict=True):
            value = inp.min + x * (inp.max - inp.min)
            values[key] = round(value) if inp.kind == "integer" else value
        values["material"] = materials[i % len(materials)]
        values["coolant_on"] = bool(i % 2)
        # Speed, width, depth and overhang coordinates are placed inside what the
        # constraints allow for this material and tool: the carbide cutting-speed
        # window, ae <= D, ap <= 2 D, overhang <= 5 D.
        d = values["tool_diameter"]
        values["radial_width"] = 0.5 + row[keys.index("radial_width")] * (d - 0.5)
        values["axial_depth"] = 0.5 + row[keys.index("axial_depth")] * (min(15, 2 * d) - 0.5)
        values["tool_overhang"] = 15 + row[keys.index("tool_overhang")] * (min(100, 5 * d) - 15)
        ns = spec.namespace(values)
        lo, hi = float(ns["cutting_speed_min"]), float(ns["cutting_speed_max"])
        vc = lo + row[keys.index("spindle_speed")] * (hi - lo)
        values["spindle_speed"] = float(np.clip(1000 * vc / (np.pi * d), 1000, 24000))
        points.append(values)
    return points


def test_no_nan_and_sane_physics_across_the_domain() -> None:
    spec = load_spec(SPEC)
    points = domain_points(n_random=240, n_corners=160, seed=3)
    ok = spec.constraints_mask({k: np.array([p[k] for p in points]) for k in points[0]})
    ran = 0
    with open_twin(spec) as fmu:
        for values, allowed in zip(points, ok, strict=True):
            if not allowed:
                continue
            case = spec.case_from_order(values, 2, fmu.catalogue)
            tr = fmu.simulate(
                case.start_values, case.stop_time, step_size=1.0, output_interval=10.0
            )
            for name, y in tr.values.items():
                assert np.all(np.isfinite(y.astype(float))), (name, values)
            for name in ("tool_wear", "bearing_damage", "energy", "parts_completed"):
                assert np.all(np.diff(tr[name]) >= 0), (name, values)
            # Comparison principle for the linear network (conductances >= 0): with
            # heat inputs between 0 and their largest value, temperatures stay between
            # the two steady states, widened by how far the start lies outside them.
            p = ref.params(**case.start_values)
            heat = ref.heat_while_cutting(p, vb=float(tr["tool_wear"][-1]))
            hot = ref.steady_temperatures(
                p, np.array([heat["q_motor"], heat["q_bearing"] + heat["q_nose"], 0.0])
            )
            cold = ref.steady_temperatures(p, np.zeros(3))
            start = np.array(
                [
                    p["motor_temperature_start"],
                    p["bearing_temperature_start"],
                    p["housing_temperature_start"],
                ]
            )
            upper = hot + max(0.0, float(np.max(start - hot)))
            lower = cold - max(0.0, float(np.max(cold - start)))
            temps = np.column_stack(
                [tr["motor_temperature"], tr["bearing_temperature"], tr["housing_temperature"]]
            )
            assert np.all(temps <= upper + 1e-9) and np.all(temps >= lower - 1e-9), values
            vb_end = float(tr["tool_wear"][-1])
            strength = ref.CATALOGUE["tool_bending_strength"].start
            if tr["tool_broken"][-1]:
                # The machine halted: worn out at the breakage wear (the FMU's default:
                # the spec does not set it, and starts below it), or overloaded.
                assert tr["parts_completed"][-1] < 2
                if tr["breakage_cause"][-1] == 1:
                    assert vb_end == ref.CATALOGUE["vb_breakage"].start
                else:
                    assert tr["breakage_cause"][-1] == 2
                    assert ref.bending_stress(p, vb_end) >= strength * (1 - 1e-9)
            else:
                assert tr["parts_completed"][-1] == 2
                assert ref.bending_stress(p, vb_end) < strength
            ran += 1
    # The constraints (cutting-speed windows) exclude many corners, not nearly all.
    assert ran > 300

"""Is the spindle twin credible to a machining engineer? Figures over a fresh DOE.

Runs a fresh, material-balanced design of the spindle's twin spec through the
study runner and prints:

* every KPI per material (p5 / p50 / p95);
* the share of orders that pass each quality limit and each feasibility limit,
  with the named cause of every failure; the share that break, by cause;
* tool lives in minutes per material against the catalogue window;
* how much of each KPI's variance the starting state alone explains;
* the front bearing's warm-up (time to 63 % and 95 % of its rise);
* a hand-checked reference order (C45, vc 200 m/min, fz 0.1 mm, ap = ae = 5 mm,
  D 12 mm, z 4, 50 parts) beside hand calculations and published values.

    .venv/bin/python experiments/credibility_spindle.py [--n 1000] [--seed 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physics.dataset import read_runs  # noqa: E402
from physics.fmu import Fmu  # noqa: E402
from physics.run import fmu_path_of, open_twin, simulate_order  # noqa: E402
from physics.spec import TwinSpec, load_spec  # noqa: E402
from physics.study import generate  # noqa: E402

SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"
STATE_INPUTS = ("tool_wear", "warmup", "bearing_damage")
# Minutes of cutting a coated solid-carbide end mill lasts at catalogue cutting data:
# the window the catalogue starting values aim at (the model's reference lives sit in it).
CATALOGUE_LIFE = {
    "aluminium_6061": (60.0, 480.0),
    "steel_c45": (15.0, 90.0),
    "stainless_316l": (10.0, 60.0),
    "ti6al4v": (10.0, 60.0),
    "cast_iron_gjl250": (20.0, 120.0),
}
# Reference cutting speeds of the model's material table (m/min).
VC_REF = {
    "aluminium_6061": 600.0,
    "steel_c45": 200.0,
    "stainless_316l": 140.0,
    "ti6al4v": 60.0,
    "cast_iron_gjl250": 220.0,
}
BREAKAGE = {1: "worn out (VB = vb_breakage)", 2: "fatigue (root stress)", 3: "deflection"}


def quantiles(x: np.ndarray) -> tuple[float, float, float]:
    p5, p50, p95 = np.quantile(x, [0.05, 0.5, 0.95])
    return float(p5), float(p50), float(p95)


def fmt(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def kpi_table(spec: TwinSpec, rows: dict[str, np.ndarray], materials: list[str]) -> list[str]:
    head = f"{'KPI':26s} {'unit':5s} " + " ".join(f"{m[:16]:>24s}" for m in materials)
    out = ["KPIs per material: p50 [p5 .. p95]", head]
    for name, kpi in spec.kpis.items():
        cells = []
        for m in materials:
            p5, p50, p95 = quantiles(rows[name][rows["material"] == m])
            cells.append(f"{fmt(p50):>7s} [{fmt(p5)} .. {fmt(p95)}]")
        out.append(f"{name:26s} {kpi.unit:5s} " + " ".join(f"{c:>24s}" for c in cells))
    return out


def limit_checks(spec: TwinSpec, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per limit, a bool array: the order passes it."""
    checks: dict[str, np.ndarray] = {}
    for name, q in spec.quality.items():
        ok = np.ones(len(rows[name]), bool)
        if q.lsl is not None:
            ok &= rows[name] >= q.lsl
        if q.usl is not None:
            ok &= rows[name] <= q.usl
        checks[f"quality {q.characteristic_id} ({name})"] = ok
    for name, f in spec.feasibility.items():
        ok = np.ones(len(rows[name]), bool)
        if f.min is not None:
            ok &= rows[name] >= f.min
        if f.max is not None:
            ok &= rows[name] <= f.max
        checks[f"feasibility {name}"] = ok
    return checks


def failure_causes(spec: TwinSpec, rows: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """A nameable cause for each quality failure, from what the order did."""
    vb_limit = spec.maintenance["tool_wear_end"].limit
    worn = rows["tool_wear_end"] > vb_limit
    broke = rows["tool_broken_end"] > 0.5
    cold = rows["warmup"] < 0.5
    causes: dict[str, dict[str, int]] = {}

    def count(name: str, fail: np.ndarray, labels: list[tuple[str, np.ndarray]]) -> None:
        left = fail.copy()
        out: dict[str, int] = {}
        for label, mask in labels:
            hit = left & mask
            if hit.any():
                out[label] = int(hit.sum())
            left &= ~mask
        if left.any():
            out["other"] = int(left.sum())
        causes[name] = out

    for name, q in spec.quality.items():
        ok = np.ones(len(rows[name]), bool)
        if q.lsl is not None:
            ok &= rows[name] >= q.lsl
        if q.usl is not None:
            ok &= rows[name] <= q.usl
        if name.startswith("axial_drift"):
            labels = [("cold start (warmup < 0.5)", cold), ("warm start, heat of the order", ~cold)]
        else:
            sharp = (
                "deflection: cutting data and overhang"
                if name.startswith("wall")
                else ("feed marks: feed per tooth and corner radius")
            )
            labels = [
                ("tool broke", broke),
                (f"tool worn past VB {vb_limit:g} mm in the order", worn),
                (sharp, np.ones_like(worn)),
            ]
        count(q.characteristic_id, ~ok, labels)
    return causes


def state_share(rows: dict[str, np.ndarray], name: str, bins: int = 10) -> tuple[float, str]:
    """Largest correlation ratio eta^2 of the KPI on one starting-state input."""
    y = rows[name]
    best, which = 0.0, ""
    var = float(np.var(y))
    if var <= 0:
        return 0.0, ""
    for key in STATE_INPUTS:
        x = rows.get(key)
        if x is None or np.ptp(x) == 0:
            continue
        edges = np.quantile(x, np.linspace(0, 1, bins + 1))
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
        means = np.array([y[idx == b].mean() if (idx == b).any() else 0.0 for b in range(bins)])
        counts = np.bincount(idx, minlength=bins)
        eta2 = float(np.sum(counts * (means - y.mean()) ** 2) / (len(y) * var))
        if eta2 > best:
            best, which = eta2, key
    return best, which


def warmup(spec: TwinSpec, speed: float = 20000.0) -> dict[str, float]:
    """Idle at ``speed`` from cold for 4 h: times to 63 % and 95 % of the bearing's rise."""
    with Fmu(fmu_path_of(spec)) as fmu:
        tr = fmu.simulate(
            {
                "spindle_speed": speed,
                "axial_depth": 0.1,
                "radial_width": 0.1,
                "feed_per_tooth": 0.01,
                "path_length": 1.0e6,
                "load_time": 0.0,
                "material": 1,
            },
            4 * 3600.0,
            step_size=1.0,
            output_interval=5.0,
        )
    t, y = tr.time, tr["bearing_temperature"]
    rise = y - y[0]
    final = float(rise[-1])
    return {
        "speed": speed,
        "rise": final,
        "t63_min": float(t[np.argmax(rise >= 0.632 * final)]) / 60,
        "t95_min": float(t[np.argmax(rise >= 0.95 * final)]) / 60,
        "shaft_rise": float(tr["shaft_temperature"][-1] - tr["shaft_temperature"][0]),
        "axial_drift": float(tr["axial_drift"][-1]),
    }


REFERENCE = {
    "material": "steel_c45",
    "finished_surface": "wall",
    "spindle_speed": 1000 * 200 / (math.pi * 12),  # vc = 200 m/min
    "feed_per_tooth": 0.1,
    "axial_depth": 5.0,
    "radial_width": 5.0,
    "tool_diameter": 12.0,
    "n_teeth": 4,
    "corner_radius": 0.5,
    "tool_overhang": 36.0,
    "path_length": 600.0,
    "load_time": 30.0,
    "coolant_on": False,  # carbide in steel: dry, as suppliers recommend
    "warmup": 1.0,
}


def catalogue_wear_test(spec: TwinSpec) -> tuple[float, float]:
    """A published wear test: Sumitomo Electric general catalogue 2018-2019, technical
    guidance "Basics of endmilling" (N11): S50C (C50) steel, 10 mm two-flute coated
    solid-carbide end mill, vc 88 m/min (2800 rpm), fz 0.1 mm, ap 15 mm, ae 0.5 mm,
    dry, side milling; its plot shows VB of 0.04-0.06 mm after 250 m of cut (down-cut
    the lower). The nearest work material here is C45. Returns (cut length m, VB mm)."""
    d, n = 10.0, 2800.0
    vf = 0.1 * 2 * n
    stop = 250e3 / vf * 60  # s of cutting for 250 m
    with Fmu(fmu_path_of(spec)) as fmu:
        tr = fmu.simulate(
            {
                "material": 2,
                "tool_diameter": d,
                "n_teeth": 2,
                "spindle_speed": n,
                "feed_per_tooth": 0.1,
                "axial_depth": 15.0,
                "radial_width": 0.5,
                "tool_overhang": 35.0,
                "coolant_on": False,
                "path_length": 250e3,
                "load_time": 0.0,
            },
            stop,
            step_size=stop / 50,
            output_interval=stop / 50,
        )
    return 250.0, float(tr["tool_wear"][-1])


def reference_order(spec: TwinSpec) -> list[tuple[str, str, str, str]]:
    with open_twin(spec) as fmu:
        outputs = [*fmu.default_outputs(), "tool_modal_stiffness"]
        run = simulate_order(spec, fmu, REFERENCE, 50, outputs=outputs)
    tr, k = run.trajectories, run.kpis
    d, n, fz, ap, ae, z = 12.0, REFERENCE["spindle_speed"], 0.1, 5.0, 5.0, 4
    phi = math.acos(1 - 2 * ae / d)
    hm = 2 * fz * ae / (d * phi)
    kc = 2220 * hm**-0.14  # König & Klocke: C45, kc1.1 2220 N/mm2, mc 0.14
    vf = fz * z * n
    pc = ap * ae * vf * kc / 60e6  # kW, Sandvik's milling power formula
    kc_sv = 1500 * hm**-0.25  # Sandvik P1.2 planning value: kc1 1500 N/mm2, mc 0.25
    pc_sv = ap * ae * vf * kc_sv / 60e6
    torque = pc * 1e3 / (2 * math.pi * n / 60)
    rt = fz**2 / (4 * d) * 1e3
    # Tlusty's oriented limit for the tool mode alone: b = 1 / (2 Kt N* |Re G|min),
    # |Re G|min = 1 / (4 k zeta (1 + zeta)), N* = z phi_e / 2 pi teeth in the cut, with
    # the tangent Kt = (1 - mc) kc(hm) and the beam's modal stiffness.
    k_tool, zeta = 1e3 * float(tr["tool_modal_stiffness"][0]), 0.03  # N/mm
    teeth = z * phi / (2 * math.pi)
    tlusty = 4 * k_tool * zeta * (1 + zeta) / (2 * (1 - 0.14) * kc * teeth)
    return [
        ("spindle speed n", f"{n:.0f} rpm", "1000 vc / (pi D)", "-"),
        ("feed rate vf", f"{vf:.0f} mm/min", "fz z n", "-"),
        ("mean chip thickness hm", f"{hm:.4f} mm", "2 fz ae / (D phi_e)", "-"),
        (
            "cutting power Pc",
            f"{tr['cutting_power'][0] / 1e3:.2f} kW",
            f"{pc:.2f} kW (ap ae vf kc / 60e6)",
            f"{pc_sv:.2f} kW (Sandvik kc1 1500, mc 0.25)",
        ),
        (
            "cutting torque",
            f"{tr['cutting_force'][0] * d / 2000:.2f} N.m",
            f"{torque:.2f} N.m",
            "27.3 N.m S1 limit",
        ),
        ("spindle load (S1)", f"{k['spindle_load_max']:.2f}", "-", "< 1"),
        (
            "tool life to VB 0.3",
            f"{k['tool_life']:.1f} min",
            "-",
            f"{CATALOGUE_LIFE['steel_c45'][0]:g}-{CATALOGUE_LIFE['steel_c45'][1]:g} min catalogue",
        ),
        (
            "parts per tool",
            f"{tr['tool_remaining_parts'][0] / 1:.1f} (from VB 0)",
            "tool life / cut time",
            "-",
        ),
        ("tool cost per part", f"{k['tool_cost_per_part']:.2f} EUR", "-", "-"),
        ("VB at the end", f"{k['tool_wear_end']:.3f} mm", "-", "0.3 mm ISO 8688-2 limit"),
        ("parts completed", f"{k['parts_completed']:.0f} of 50", "-", "-"),
        ("peak tool force", f"{tr['peak_tool_force'][0]:.0f} N", "-", "-"),
        ("tool deflection (peak)", f"{tr['tool_deflection'][0]:.0f} um", "-", "-"),
        ("wall error, sharp tool", f"{tr['wall_error'][0]:.1f} um", "-", "-"),
        ("wall error max", f"{k['wall_error_max']:.1f} um", "-", "+-100 um ISO 2768-f"),
        (
            "Ra wall, sharp tool",
            f"{tr['surface_roughness'][0]:.2f} um",
            f"Rt {rt:.2f} um without runout",
            "Ra 0.8-3.2 um side milling",
        ),
        ("Z drift max (warm start)", f"{k['axial_drift_max']:.1f} um", "-", "-"),
        (
            "chatter limit at this speed",
            f"{tr['stability_limit'][0]:.2f} mm",
            f"{tlusty:.2f} mm Tlusty, tool mode, no process damping",
            "0.5-1 mm for a 12 mm end mill at 3 D in steel without process damping",
        ),
        (
            "stability margin",
            f"{k['stability_margin']:.2f}",
            "-",
            "< 1: chatter predicted (process damping included)",
        ),
    ]


GJL_SLOT: dict[str, Any] = {
    "material": "cast_iron_gjl250", "finished_surface": "floor", "tool_diameter": 12.0,
    "n_teeth": 4, "helix_angle": 30.0, "spindle_speed": 1000 * 200 / (math.pi * 12),
    "feed_per_tooth": 0.08, "axial_depth": 6.0, "radial_width": 12.0,
    "tool_overhang": 36.0, "path_length": 600.0, "coolant_on": False, "warmup": 1.0,
}
# The three orders of the Physics V review (issue 26), each a routine cut of its
# material: what the model makes of them beside what a machining engineer expects.
REVIEW_ORDERS: dict[str, tuple[dict[str, Any], str]] = {
    "Ti-6Al-4V wall finishing, vc 60 m/min": (
        {"material": "ti6al4v", "finished_surface": "wall", "tool_diameter": 12.0,
         "n_teeth": 4, "helix_angle": 40.0, "spindle_speed": 1000 * 60 / (math.pi * 12),
         "feed_per_tooth": 0.1, "axial_depth": 12.0, "radial_width": 0.5,
         "tool_overhang": 40.0, "path_length": 1000.0, "coolant_on": True, "warmup": 1.0},
        "stable (process damping at 60 m/min); a long life: the edge is engaged 7 % of a "
        "revolution (ae/D 0.04) against the 17 % of the 30 min reference, under coolant",
    ),
    "6061 roughing, vc 900 m/min": (
        {"material": "aluminium_6061", "finished_surface": "wall", "tool_diameter": 16.0,
         "n_teeth": 3, "helix_angle": 40.0, "spindle_speed": 1000 * 900 / (math.pi * 16),
         "feed_per_tooth": 0.12, "axial_depth": 8.0, "radial_width": 8.0,
         "tool_overhang": 50.0, "path_length": 2000.0, "coolant_on": True, "warmup": 1.0},
        "tool cost a few cents to 0.2 EUR per part (hours of life in aluminium)",
    ),
    "GJL-250 slot 0.5 D, vc 200 m/min": (
        GJL_SLOT, "a catalogue slot (ap 0.5 D); life 30-60 min dry",
    ),
    "the same slot on a stiffer spindle (MILL-02 of the demo shift: 75 N/um at 1150 Hz)": (
        {**GJL_SLOT, "rated_power": 22000.0, "spindle_stiffness": 75.0,
         "spindle_natural_frequency": 1150.0},
        "two machines of one type differ: the stiffer spindle mode carries the slot",
    ),
}
REVIEW_OUTPUTS = ("stability_limit", "stability_method", "tool_life", "tool_frequency")


def review_orders(spec: TwinSpec) -> list[tuple[str, dict[str, float], str]]:
    """Each review order, 20 parts: the KPIs that decide it, the chatter limit with and
    without process damping (edge_contact_width 0), and what an engineer expects."""
    out = []
    with open_twin(spec) as fmu:
        for name, (order, expected) in REVIEW_ORDERS.items():
            outputs = [*fmu.default_outputs(), *REVIEW_OUTPUTS]
            run = simulate_order(spec, fmu, order, 20, outputs=outputs)
            k, tr = run.kpis, run.trajectories
            case = spec.case_from_order(order, 1, fmu.catalogue)
            bare = fmu.simulate({**case.start_values, "edge_contact_width": 0.0}, 1.0,
                                step_size=1.0, output_interval=1.0,
                                outputs=["stability_margin"])
            out.append((name, {
                "stability_margin": k["stability_margin"],
                "margin_without_process_damping": float(bare["stability_margin"][0]),
                "stability_limit_mm": float(tr["stability_limit"][0]),
                "method": float(tr["stability_method"][0]),
                "tool_mode_hz": float(tr["tool_frequency"][0]),
                "tool_life_min": k["tool_life"],
                "p_tool_life_reached": k.get("p_tool_life_reached", math.nan),
                "p_breakage": -math.expm1(-k.get("breakage_hazard_end", math.nan)),
                "tool_cost_per_part_eur": k["tool_cost_per_part"],
                "wall_error_max_um": k["wall_error_max"],
                "surface_roughness_max_um": k["surface_roughness_max"],
            }, expected))
    return out


def load_rows(folder: Path, spec: TwinSpec) -> dict[str, np.ndarray]:
    table = read_runs(folder)
    ok = np.asarray(table.column("status").to_pylist()) == "ok"
    rows: dict[str, np.ndarray] = {}
    for name in table.column_names:
        values = table.column(name).to_numpy(zero_copy_only=False)
        rows[name] = values[ok]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="orders in the fresh DOE")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    spec = load_spec(SPEC)
    materials = spec.inputs["material"].choice_names
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        generate(spec, Path(tmp) / "ds", n=args.n, method="lhs", seed=args.seed, progress=False)
        rows = load_rows(Path(tmp) / "ds", spec)
    n_ok = len(rows["material"])
    print(f"fresh DOE: lhs seed {args.seed}, {n_ok} orders ok, {time.perf_counter() - t0:.1f} s\n")
    for line in kpi_table(spec, rows, materials):
        print(line)

    print("\nshare of orders that pass each limit (all, then per material)")
    checks = limit_checks(spec, rows)
    figures: dict[str, Any] = {"n": n_ok, "pass": {}, "breakage": {}, "life": {}, "state": {}}
    for label, ok in checks.items():
        per = " ".join(f"{ok[rows['material'] == m].mean():5.0%}" for m in materials)
        print(f"  {label:52s} {ok.mean():5.0%}   {per}")
        figures["pass"][label] = float(ok.mean())
    stable = rows["stability_margin"] >= 1.0
    per = " ".join(f"{stable[rows['material'] == m].mean():5.0%}" for m in materials)
    label = "stable at its speed (stability_margin >= 1)"
    print(f"  {label:52s} {stable.mean():5.0%}   {per}")
    figures["pass"][label] = float(stable.mean())
    every = np.logical_and.reduce([ok for lab, ok in checks.items() if lab.startswith("quality")])
    print(f"  {'every quality limit':52s} {every.mean():5.0%}")
    figures["pass"]["every quality limit"] = float(every.mean())
    print("\ncauses of the quality failures (orders)")
    for char, counts in failure_causes(spec, rows).items():
        text = ", ".join(f"{label}: {c}" for label, c in counts.items()) or "none"
        print(f"  {char:14s} {text}")

    broken = rows["tool_broken_end"] > 0.5
    print(f"\ntools broken in the order: {broken.mean():.1%}")
    for code, label in BREAKAGE.items():
        share = float((rows["breakage_cause_end"] == code).mean())
        figures["breakage"][label] = share
        print(f"  {label:32s} {share:6.1%}")
    at_start = float((broken & (rows["parts_completed"] == 0)).mean())
    label = "of which in the first part"
    print(f"  {label:32s} {at_start:6.1%}  (set-ups over a feasibility limit)")
    figures["breakage"]["in the first part"] = at_start
    worn = float((rows["tool_wear_end"] > spec.maintenance["tool_wear_end"].limit).mean())
    print(f"  {'VB past 0.3 mm at the end':32s} {worn:6.1%}")

    print(
        "\ntool life in minutes of cutting per material, p5 / p50 / p95: over the whole DOE, "
        "then at catalogue data\n(vc within 15 % of the reference speed, hex within 20 % of the "
        "recommendation, ae/D 0.1-0.5) against the catalogue window"
    )
    names = spec.namespace({k: rows[k] for k in spec.inputs if k in rows}, rows.get("quantity"))
    table = {r: dict(zip(("vc_ref",), (v,), strict=True)) for r, v in VC_REF.items()}
    for m in materials:
        mine = rows["material"] == m
        life = rows["tool_life"][mine]
        vc = names["cutting_speed"][mine] / table[m]["vc_ref"]
        hex_ratio = (names["chip_max"] / names["chip_recommended"])[mine]
        engagement = names["engagement"][mine]
        at_data = (abs(vc - 1) <= 0.15) & (abs(hex_ratio - 1) <= 0.2)
        at_data &= (engagement >= 0.1) & (engagement <= 0.5)
        p5, p50, p95 = quantiles(life)
        lo, hi = CATALOGUE_LIFE[m]
        c5, c50, c95 = quantiles(life[at_data]) if at_data.sum() >= 3 else (math.nan,) * 3
        inside = float(((life[at_data] >= lo) & (life[at_data] <= hi)).mean())
        figures["life"][m] = {
            "p5": p5,
            "p50": p50,
            "p95": p95,
            "catalogue": [c5, c50, c95],
            "catalogue_orders": int(at_data.sum()),
            "in_window": inside,
        }
        print(
            f"  {m:18s} {p5:6.1f} {p50:6.1f} {p95:7.0f} | {int(at_data.sum()):3d} orders "
            f"{c5:6.1f} {c50:6.1f} {c95:6.1f}  window {lo:g}-{hi:g} min: {inside:.0%} inside"
        )

    print("\nvariance share explained by the starting state alone (largest eta^2)")
    for name in spec.kpis:
        share, key = state_share(rows, name)
        figures["state"][name] = share
        flag = "  <- mostly the starting state" if share > 0.5 else ""
        print(f"  {name:26s} {share:5.2f} {key}{flag}")

    w = warmup(spec)
    figures["warmup"] = w
    print(
        f"\nwarm-up, idling at {w['speed']:.0f} rpm from cold: the front bearing rises "
        f"{w['rise']:.1f} K, 63 % after {w['t63_min']:.1f} min, 95 % after "
        f"{w['t95_min']:.1f} min (shaft +{w['shaft_rise']:.1f} K, "
        f"Z drift {w['axial_drift']:.0f} um)"
    )

    print(
        "\nreference order: C45, vc 200 m/min, fz 0.1 mm, ap 5 mm, ae 5 mm, D 12 mm, z 4, "
        "50 parts, 36 mm overhang, dry, warm spindle"
    )
    ref = reference_order(spec)
    print(f"  {'quantity':26s} {'model':>18s}  {'hand calculation':34s} published / typical")
    for label, model, hand, published in ref:
        print(f"  {label:26s} {model:>18s}  {hand:34s} {published}")
    figures["reference"] = {label: model for label, model, _, _ in ref}
    print("\nthe review's hand-checked orders (20 parts each; margin without process damping:"
          " edge_contact_width 0)")
    figures["review_orders"] = {}
    for name, got, expected in review_orders(spec):
        figures["review_orders"][name] = got
        method = "semi-discretization" if got["method"] == 2 else "zeroth order"
        print(f"  {name}")
        print(f"    chatter: margin {got['stability_margin']:.2f} (without process damping "
              f"{got['margin_without_process_damping']:.2f}), limit "
              f"{got['stability_limit_mm']:.2f} mm, {method}, tool mode "
              f"{got['tool_mode_hz']:.0f} Hz")
        print(f"    tool: life {got['tool_life_min']:.0f} min, P(life reached) "
              f"{got['p_tool_life_reached']:.3f}, P(breakage) {got['p_breakage']:.4f}, "
              f"{got['tool_cost_per_part_eur']:.3f} EUR/part")
        print(f"    part: wall error {got['wall_error_max_um']:.1f} um, Ra "
              f"{got['surface_roughness_max_um']:.2f} um")
        print(f"    expected: {expected}")
    length, vb = catalogue_wear_test(spec)
    figures["catalogue_wear_test"] = {"cut_m": length, "vb_mm": vb}
    print(
        f"\npublished wear test (Sumitomo catalogue, S50C, 10 mm 2-flute, vc 88 m/min, fz 0.1, "
        f"ap 15, ae 0.5, dry):\n  VB after {length:.0f} m of cut: model {vb:.3f} mm, "
        "catalogue plot 0.04-0.06 mm"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

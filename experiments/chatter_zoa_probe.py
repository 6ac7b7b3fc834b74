"""How close a closed-form-able chatter limit comes to the FMU's, on a dataset's runs.

    .venv/bin/python experiments/chatter_zoa_probe.py out/demo/dataset

The spindle's stability_margin is the FMU's chatter limit over ap, capped at 3. This
probe solves the zeroth-order chatter equation (Altintas & Budak, CIRP Annals 44, 1995)
for the two-mode tool tip with process damping, as physics/models/spindle/stability.c
does, but from what the surrogate can compute: the spec's derived values (the tool's
mode from Rayleigh's quotient, its stiffness from the static tip compliance, the tangent
coefficient from kc_planned) and the model's constants (model.yaml: damping ratios,
the radial force ratio, the edge's contact width, each material's indentation
coefficient). Per frequency of a log grid the depth a solves
a (1 - exp(-i w T)) = (1/G(w) + i w a c) / lambda, a quadratic in a; the lobes are where
w T - eps(w) crosses a multiple of 2 pi. It prints the share of runs the FMU solves by
the zeroth-order method (more semi-discretization steps than stability_max_nodes), and
the FMU's limit over the probe's on the runs below the cap (quantiles, and the log
ratio's spread against the log limit's own). The spec's own closed form since v14
(chatter_limit_zoa, a grid block of 48 frequencies spaced as each mode's resonance) is
the same solution; this probe keeps a 2,000-point log grid as its reference.

``--exact-mode`` compiles physics/models/spindle/stability.c (gcc, into a temporary
folder) and takes the tool's first bending mode from its beam_first_mode (the stepped
beam's exact frequency and modal stiffness) in place of the spec's Rayleigh estimate
and static stiffness: what is left is the probe's own error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physics.dataset import read_runs  # noqa: E402
from physics.spec import load_spec  # noqa: E402
from surrogates._features import input_columns, namespace, raw_matrix  # noqa: E402

SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"
MODEL = ROOT / "physics" / "models" / "spindle" / "model.yaml"


def constants() -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    model = yaml.safe_load(MODEL.read_text())
    starts = {v["name"]: v.get("start") for v in model["variables"]}
    return starts, model["tables"]["material_data"]["rows"]


def per_material(frame: Any, rows: dict[str, dict[str, float]], column: str) -> np.ndarray:
    material = frame["material"].to_numpy()
    return np.array([rows[m][column] for m in material], dtype=np.float64)


def immersion_integrals(st: np.ndarray, ex: float, kr: float) -> tuple[list, list]:
    """The cutting and process-damping matrices integrated over the immersion (the
    antiderivatives of stability.c's cutting_terms and damping_terms)."""

    def parts(p: np.ndarray | float) -> tuple[Any, Any, Any]:
        return 0.5 * p - 0.25 * np.sin(2 * p), 0.5 * p + 0.25 * np.sin(2 * p), -0.25 * np.cos(2 * p)

    s2a, c2a, sca = parts(st)
    s2b, c2b, scb = parts(ex)
    s2, c2, sc = s2b - s2a, c2b - c2a, scb - sca
    return [-sc - kr * s2, -c2 - kr * sc, s2 - kr * sc, sc - kr * c2], [s2, sc, sc, c2]


def probe(ns: dict[str, Any], frame: Any, grid: int = 2000) -> np.ndarray:
    """The probe's chatter limit [mm] per run."""
    starts, rows = constants()
    mc = per_material(frame, rows, "mc")
    kd = per_material(frame, rows, "indentation_coefficient")  # N/mm3
    kt = (1 - mc) * ns["kc_planned"]  # N/mm2
    z = ns["n_teeth"]
    phi_e = np.arccos(1 - 2 * np.minimum(ns["engagement"], 1))
    cut, damp = immersion_integrals(np.pi - phi_e, np.pi, starts["radial_force_ratio"])
    h = [kt * z / (2 * np.pi) * c for c in cut]  # N/mm per mm of depth
    width = starts["edge_contact_width"] + ns["tool_wear"]  # mm
    pd = kd * width**2 / (4 * ns["cutting_speed"] / 60 * 1e3)  # N s/mm2 per mm of flute
    r = [pd * z / (2 * np.pi) * d for d in damp]
    tr, det = h[0] + h[3], h[0] * h[3] - h[1] * h[2]
    disc = np.sqrt(0.25 * tr**2 - det + 0j)
    directions = []
    for lam in (0.5 * tr + disc, 0.5 * tr - disc):
        v0, v1 = h[1] + 0j, lam - h[0]
        norm = (v0 * v0.conj() + v1 * v1.conj()).real
        rq = v0.conj() * (r[0] * v0 + r[1] * v1) + v1.conj() * (r[2] * v0 + r[3] * v1)
        directions.append((lam, np.where(norm > 0, rq.real / np.where(norm > 0, norm, 1), 0.0)))
    modes = [
        (1 / ns["beam_compliance"], starts["tool_damping_ratio"], 2 * np.pi * ns["tool_mode"]),
        (1e3 * ns["spindle_stiffness"], starts["spindle_damping_ratio"],
         2 * np.pi * ns["spindle_natural_frequency"]),
    ]  # fmt: skip
    tooth = 60 / (z * ns["spindle_speed"])
    lo = 0.5 * np.minimum(modes[0][2], modes[1][2])
    hi = 3.0 * np.maximum(modes[0][2], modes[1][2])
    out = np.full(len(frame), np.inf)
    for i in range(0, len(frame), 500):
        s = slice(i, i + 500)
        w = lo[s, None] * (hi[s, None] / lo[s, None]) ** np.linspace(0, 1, grid)[None, :]
        g = sum(1 / (k[s, None] * (1 - (w / wn[s, None]) ** 2 + 2j * zeta * w / wn[s, None]))
                for k, zeta, wn in modes)  # fmt: skip
        p = 1 / g
        for lam, pdd in directions:
            # 2 a Re(mu (P + i c a)) = |mu|^2 |P + i c a|^2 with mu = 1 / lambda, c = w pd
            mu = 1 / lam[s, None]
            c = w * pdd[s, None]
            m2 = np.abs(mu) ** 2
            qa = -2 * mu.imag * c - m2 * c**2
            qb = 2 * (mu.real * p.real - mu.imag * p.imag) - 2 * m2 * p.imag * c
            qc = -m2 * np.abs(p) ** 2
            with np.errstate(all="ignore"):
                disc2 = qb**2 - 4 * qa * qc
                roots = np.stack([(-qb + sgn * np.sqrt(disc2)) / (2 * qa) for sgn in (1, -1)])
                roots = np.where((disc2 >= 0) & (roots > 0), roots, np.inf)
                a = np.where(np.abs(qa) > 0, roots.min(axis=0), -qc / qb)
                a = np.where(np.isfinite(a) & (a > 0), a, np.nan)
                q = mu * (p + 1j * c * np.nan_to_num(a))
                eps = 2 * np.arctan2(q.real, q.imag)
                psi = (w * tooth[s, None] - eps) / (2 * np.pi)
                lobe = np.floor(psi)
            valid = np.isfinite(a)
            cross = (lobe[:, 1:] > lobe[:, :-1]) & valid[:, 1:] & valid[:, :-1] & (lobe[:, 1:] >= 0)
            # one lobe between two frequencies: the depth where psi crosses it, linear in
            # psi; several (dense lobes): the lower depth, their envelope (stability.c)
            with np.errstate(all="ignore"):
                t = (lobe[:, 1:] - psi[:, :-1]) / (psi[:, 1:] - psi[:, :-1])
                at = a[:, :-1] + t * (a[:, 1:] - a[:, :-1])
            single = lobe[:, 1:] - lobe[:, :-1] <= 2
            depth = np.where(cross, np.where(single, at, np.fmin(a[:, 1:], a[:, :-1])), np.inf)
            out[s] = np.minimum(out[s], depth.min(axis=1))
    return out


def exact_modes(frame: Any) -> tuple[np.ndarray, np.ndarray]:
    """The stepped beam's first mode per run from stability.c: frequency [Hz] and modal
    stiffness at the tip [N/mm] (spindle.c: tool_beam, the same segments)."""
    import ctypes
    import subprocess
    import tempfile

    src = ROOT / "physics" / "models" / "spindle"
    lib_path = Path(tempfile.mkdtemp()) / "stability.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-I", str(src), "-o", str(lib_path),
                    str(src / "stability.c"), "-lm"], check=True)  # fmt: skip
    lib = ctypes.CDLL(str(lib_path))

    class Beam(ctypes.Structure):
        _fields_ = [("n", ctypes.c_int), ("length", ctypes.c_double * 4),
                    ("ei", ctypes.c_double * 4), ("mu", ctypes.c_double * 4)]  # fmt: skip

    starts, _ = constants()
    freq, stiff = np.empty(len(frame)), np.empty(len(frame))
    for i, (d, length) in enumerate(zip(frame["tool_diameter"], frame["tool_overhang"],
                                        strict=True)):  # fmt: skip
        flute = min(starts["flute_length_ratio"] * d, length)
        neck = min(starts["neck_length"], length - flute)
        beam = Beam()
        for seg, dia in ((length - flute - neck, d), (neck, starts["neck_ratio"] * d),
                         (flute, starts["tool_core_ratio"] * d)):  # fmt: skip
            if seg > 1e-9 * length:
                dm = 1e-3 * dia
                beam.length[beam.n] = 1e-3 * seg
                beam.ei[beam.n] = 1e6 * starts["tool_modulus"] * np.pi * dm**4 / 64
                beam.mu[beam.n] = starts["tool_density"] * np.pi * dm * dm / 4
                beam.n += 1
        wn, mass = ctypes.c_double(), ctypes.c_double()
        if not lib.beam_first_mode(ctypes.byref(beam), ctypes.byref(wn), ctypes.byref(mass)):
            raise SystemExit(f"error: no bending mode for run {i}")
        freq[i], stiff[i] = wn.value / (2 * np.pi), 1e-3 * wn.value**2 * mass.value
    return freq, stiff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--grid", type=int, default=2000, help="frequencies per run")
    ap.add_argument("--exact-mode", action="store_true",
                    help="the tool's mode from stability.c, not the spec's estimate")  # fmt: skip
    args = ap.parse_args()
    spec = load_spec(SPEC)
    frame = read_runs(args.dataset).to_pandas()
    frame = frame[frame["status"] == "ok"].reset_index(drop=True)
    columns = input_columns(spec, frame)
    ns = namespace(spec, columns, raw_matrix(columns, frame))
    if args.exact_mode:
        freq, stiff = exact_modes(frame)
        ratio = freq / ns["tool_mode"]
        print(f"tool mode: the beam's exact frequency over the spec's tool_mode "
              f"{ratio.min():.3f}..{ratio.max():.3f} (median {np.median(ratio):.3f})")  # fmt: skip
        ns = {**ns, "tool_mode": freq, "beam_compliance": 1 / stiff}
    starts, _ = constants()
    # stability.c: sdm_steps, the zeroth-order solution beyond stability_max_nodes steps
    kappa = 2 * np.tan(np.deg2rad(ns["helix_angle"])) / ns["tool_diameter"]
    phi_e = np.arccos(1 - 2 * np.minimum(ns["engagement"], 1))
    span = np.minimum(phi_e + kappa * ns["axial_depth"], 2 * np.pi / ns["n_teeth"])
    fast = np.maximum(ns["tool_mode"], ns["spindle_natural_frequency"])
    cycles = fast * span / (2 * np.pi * ns["spindle_speed"] / 60)
    zoa = np.ceil(starts["stability_nodes_per_cycle"] * cycles) > starts["stability_max_nodes"]
    limit = frame["stability_margin"].to_numpy() * ns["axial_depth"]
    below = frame["stability_margin"].to_numpy() < 3 - 1e-9
    est = probe(ns, frame, args.grid)
    ratio = limit[below] / est[below]
    log_ratio, log_limit = np.log(ratio), np.log(limit[below])
    print(f"{len(frame)} runs, {below.sum()} below the cap; the FMU takes the zeroth-order "
          f"method on {zoa.mean():.1%} of the runs")  # fmt: skip
    qs = [0.05, 0.25, 0.5, 0.75, 0.95]
    shown = zip(qs, np.quantile(ratio, qs), strict=True)
    print("FMU limit / probe, quantiles " + ", ".join(f"{q:g}: {v:.3f}" for q, v in shown))
    print(f"within 2 %: {np.mean(np.abs(ratio - 1) < 0.02):.1%} of the runs below the cap")
    print(f"log limit: standard deviation {log_limit.std():.3f}; log(FMU / probe) "
          f"{log_ratio.std():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()

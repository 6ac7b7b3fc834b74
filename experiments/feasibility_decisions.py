"""What a surrogate's feasibility limits decide on fresh FMU runs, per verification slice.

    .venv/bin/python experiments/feasibility_decisions.py out/demo/bundle \
        out/demo/verify-seed9001-n500

An acceptance threshold (RMSE, coverage) says how close the surrogate is; the MES asks
what it decides. For every feasibility limit of the bundle's spec (``feasibility:``, a
KPI's min or max) and every slice folder the verification simulated, this prints the
share of runs the FMU puts outside the limit, the share where the surrogate's mean is
on the other side of it from the FMU, the runs the conservative end of the 95 %
interval keeps inside while the FMU does not (an order such a rule would release and
the machine would not run: the costly error), and the share the interval holds back
though the FMU keeps the limit (releases lost to the surrogate's uncertainty).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physics.dataset import read_runs  # noqa: E402
from surrogates._bundle import bundle_spec, read_signature  # noqa: E402
from surrogates._verify import predict_bundle  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("runs", type=Path, help="the verification folder (one folder per slice)")
    args = ap.parse_args()
    signature = read_signature(args.bundle)
    spec = bundle_spec(args.bundle)
    slices = sorted(p for p in args.runs.iterdir() if (p / "dataset.json").exists())
    if not slices:
        sys.exit(f"error: {args.runs} holds no slice folders (dataset.json in each)")
    limits = {k: f for k, f in spec.feasibility.items() if k in signature["outputs"]["mean"]}
    print(f"{'limit':36s} {'slice':9s} {'runs':>5s} {'FMU out':>8s} {'mean wrong':>10s} "
          f"{'kept, FMU out':>14s} {'held, FMU in':>13s}")  # fmt: skip
    for name, f in limits.items():
        j = signature["outputs"]["mean"].index(name)
        sides = [f"{name} >= {f.min:g}"] if f.min is not None else []
        sides += [f"{name} <= {f.max:g}"] if f.max is not None else []
        text = " and ".join(sides)
        for folder in slices:
            frame = read_runs(folder).to_pandas()
            frame = frame[frame["status"] == "ok"].reset_index(drop=True)
            pred = predict_bundle(args.bundle, signature, frame)
            y = frame[name].to_numpy(dtype=np.float64)
            mean, lower, upper = pred.mean[:, j], pred.lower[:, j], pred.upper[:, j]
            inside = np.ones(len(y), bool)
            said = np.ones(len(y), bool)
            kept = np.ones(len(y), bool)
            if f.min is not None:
                inside &= y >= f.min
                said &= mean >= f.min
                kept &= lower >= f.min
            if f.max is not None:
                inside &= y <= f.max
                said &= mean <= f.max
                kept &= upper <= f.max
            print(f"{text:36s} {folder.name:9s} {len(y):5d} {np.mean(~inside):8.1%} "
                  f"{np.mean(said != inside):10.1%} {int(np.sum(kept & ~inside)):14d} "
                  f"{np.mean(~kept & inside):13.1%}")  # fmt: skip


if __name__ == "__main__":
    main()

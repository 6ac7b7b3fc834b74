"""Adaptive sampling against a plain Latin hypercube at the same number of simulations.

    .venv/bin/python experiments/bench_adaptive.py            # the ridge test FMU (~3 min)
    .venv/bin/python experiments/bench_adaptive.py --spec experiments/specs/spindle.yaml \\
        --budget 2000 --initial 500 --batch 250 --config experiments/training/spindle.yaml

Runs `twin train --adaptive`'s loop (surrogates._adaptive) up to the budget, then trains
the same config on Latin hypercubes of the sizes the loop needed and more (x1, x1.5,
x2), and scores every model on the loop's own held-out fresh runs against the spec's
acceptance thresholds. Prints, per design and size, the thresholds missed and the
figure of the first acceptance KPI; and how many LHS runs the thresholds needed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", help="twin spec (default: the ridge test FMU)")
    ap.add_argument("--config", help="training config (default: the ridge one)")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--initial", type=int, default=40)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--holdout", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--explore", type=float, default=0.0, help="share of each batch spread out")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args()

    import torch

    from physics.dataset import read_runs
    from physics.spec import load_spec
    from physics.study import generate
    from surrogates._adaptive import adaptive
    from surrogates._config import load_config
    from surrogates._fit import load_rows, train
    from surrogates._metrics import gate, score

    torch.set_num_threads(1)
    from tests.fmus import RIDGE_TRAINING, ridge_spec

    spec = load_spec(args.spec) if args.spec else ridge_spec()
    config = load_config(args.config, [] if args.config or args.spec else RIDGE_TRAINING)
    first = next(iter(spec.acceptance))
    tmp = Path(tempfile.mkdtemp(prefix="bench-adaptive-"))
    t0 = time.monotonic()
    result = adaptive(
        spec, config, tmp / "adaptive", budget=args.budget, initial=args.initial,
        batch=args.batch, holdout=args.holdout, seed=args.seed, explore=args.explore,
        progress=False,
        log=lambda line: print("  " + line),
    )  # fmt: skip
    seconds = time.monotonic() - t0
    hold = read_runs(tmp / "adaptive" / "holdout").to_pandas()
    hold = hold.loc[hold["status"] == "ok"].reset_index(drop=True)
    runs = result.rounds[-1].runs

    def median_r2(metrics: dict[str, dict[str, float]]) -> float:
        values = [m["r2"] for m in metrics.values() if "r2" in m and m["r2"] == m["r2"]]
        return float(sorted(values)[len(values) // 2]) if values else float("nan")

    rows: list[dict[str, Any]] = [
        {"design": "adaptive", "runs": r.runs, "missed": len(r.failures),
         "figure": r.metrics.get(first, {}), "median_r2": median_r2(r.metrics)}
        for r in result.rounds
    ]  # fmt: skip
    for factor in (1.0, 1.5, 2.0):
        n = round(runs * factor)
        data = tmp / f"lhs-{n}"
        generate(spec, data, n=n, method="lhs", seed=args.seed, progress=False)
        model = train(load_rows(data, spec), spec, config, tmp / f"run-{n}", dataset=data,
                      progress=False)  # fmt: skip
        metrics = score(model.surrogate.predict_frame(hold), hold, spec)
        missed = len(gate(spec, metrics))
        figure = metrics.get(first, {})
        rows.append(
            {"design": "lhs", "runs": n, "missed": missed, "figure": figure,
             "median_r2": median_r2(metrics)}
        )  # fmt: skip

    limits = spec.acceptance[first].model_dump(exclude_none=True)
    print(f"\n{spec.name}: {len(hold)} held-out fresh runs; acceptance of {first}: {limits}")
    print(f"adaptive loop: {len(result.rounds)} rounds, {seconds:.0f} s, "
          f"thresholds {'met' if result.met else 'not met'} at {runs} runs")  # fmt: skip
    head = f"{'design':10s} {'runs':>6s} {'missed':>7s} {'rmse':>10s} {'r2':>8s}"
    print(f"{head}  median R² of all KPIs")
    for r in rows:
        f = r["figure"]
        rmse, r2 = f.get("rmse", float("nan")), f.get("r2", float("nan"))
        print(f"{r['design']:10s} {r['runs']:6d} {r['missed']:7d} {rmse:10.4g} {r2:8.4f}  "
              f"{r['median_r2']:.4f}")  # fmt: skip
    lhs_ok = [r["runs"] for r in rows if r["design"] == "lhs" and r["missed"] == 0]
    need = f"{min(lhs_ok)}" if lhs_ok else f"more than {rows[-1]['runs']}"
    print(f"LHS runs needed to meet the thresholds: {need}; adaptive: "
          f"{runs if result.met else 'not met within the budget'}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "adaptive_met": result.met}, indent=2))


if __name__ == "__main__":
    main()

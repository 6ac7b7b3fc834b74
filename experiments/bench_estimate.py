"""The point-mass filter (physics/estimate.py) against streamed machines' hidden truth.

    .venv/bin/python experiments/bench_estimate.py [--seeds 8] [--parts 3] [--window 1]
        [--plot out/bench/estimate.png]

Per seed: a machine (experiments/machines/spindle.yaml) whose tool's true start wear is
drawn uniformly in 0-0.15 mm plays the demo order (its MES belief: 0.04 mm) with the
machine file's noise and dropouts; the filter, with the belief as its prior (0.04 +-
0.05 mm, truncated to 0-0.3), weighs every sample in machine-time order and is updated
once per ``--window`` seconds of machine time. Printed: the end wear's error against the
truth and the belief's, the interval's z, the refinements, and the cost per second of
machine signals (observe + update, wall time on this machine, one core), with the
figures pooled over the seeds; the plot shows each seed's estimate +- 2 sd against the
truth over the order.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physics.estimate import OrderFilter, Prior  # noqa: E402
from physics.machine import load_machine, orders_of, simulate_play  # noqa: E402
from physics.run import open_twin  # noqa: E402
from physics.spec import load_spec  # noqa: E402

PRIOR = Prior(mean=0.04, std=0.05, lo=0.0, hi=0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--parts", type=int, default=3, help="the order's quantity")
    parser.add_argument("--window", type=float, default=1.0, help="machine s between updates")
    parser.add_argument("--plot", type=Path, help="write the estimates over time (PNG)")
    args = parser.parse_args()
    config = load_machine(ROOT / "experiments" / "machines" / "spindle.yaml")
    spec = load_spec(config.spec_path)
    order = dataclasses.replace(orders_of([ROOT / "experiments" / "orders" / "demo.yaml"],
                                          spec)[0], quantity=args.parts)  # fmt: skip
    rows, traces = [], []
    with open_twin(spec) as fmu:
        belief = simulate_play(spec, fmu, config, order.values, args.parts, "WO", 0.0,
                               np.random.default_rng(0))  # fmt: skip
        print(
            f"{args.seeds} machines, {args.parts} parts each, update every {args.window:g} "
            f"s of machine time; prior {PRIOR.mean} +- {PRIOR.std} mm"
        )
        print(
            f"{'seed':>4s} {'true start':>10s} {'truth end':>9s} {'estimate':>17s} "
            f"{'belief err':>10s} {'z':>6s} {'refine':>6s} {'ms / s':>7s}"
        )
        for seed in range(args.seeds):
            rng = np.random.default_rng(1000 + seed)
            start = float(rng.uniform(0.0, 0.15))
            truth = simulate_play(spec, fmu, config, {**order.values, "tool_wear": start},
                                  args.parts, "WO", 0.0, rng)  # fmt: skip
            f = OrderFilter(spec, fmu, config, order.values, args.parts, "tool_wear", PRIOR)
            t_wall, last, trace = 0.0, 0.0, []
            for s in truth.samples:
                t0 = time.perf_counter()
                if s.t - last >= args.window:
                    f.update()
                    last = s.t
                f.observe(s.signal, s.t, s.value, s.good)
                t_wall += time.perf_counter() - t0
                if not trace or s.t - trace[-1][0] >= 5.0:
                    e = f.at("tool_wear", s.t)
                    trace.append((s.t, e.mean, e.std))
            f.update()
            t_end = float(truth.time[-1])
            e = f.at("tool_wear", t_end)
            end = float(truth.columns["tool_wear"][-1])
            z = (e.mean - end) / e.std
            cost = 1e3 * t_wall / t_end
            rows.append((e.mean - end, float(belief.columns["tool_wear"][-1]) - end, z, cost))
            traces.append((np.array(trace), truth.time, truth.columns["tool_wear"]))
            print(
                f"{seed:4d} {start:10.4f} {end:9.4f} {e.mean:9.4f} +- {e.std:.4f} "
                f"{rows[-1][1]:10.4f} {z:6.2f} {f.refinements:6d} {cost:7.2f}"
            )
    err, berr, z, cost = (np.array(c) for c in zip(*rows, strict=True))
    print(
        f"\nend wear RMSE {np.sqrt(np.mean(err**2)) * 1e3:.2f} um (the belief's "
        f"{np.sqrt(np.mean(berr**2)) * 1e3:.1f} um); |z| < 2 for {np.sum(np.abs(z) < 2)} "
        f"of {len(z)}; cost per second of machine signals: median {np.median(cost):.2f} ms, "
        f"max {cost.max():.2f} ms (target < 5 ms)"
    )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5))
        for k, (trace, t, w) in enumerate(traces):
            color = f"C{k % 10}"
            ax.plot(t, w * 1e3, color=color, lw=1.0, ls="--")
            ax.plot(trace[:, 0], trace[:, 1] * 1e3, color=color, lw=1.5)
            ax.fill_between(
                trace[:, 0],
                (trace[:, 1] - 2 * trace[:, 2]) * 1e3,
                (trace[:, 1] + 2 * trace[:, 2]) * 1e3,
                color=color,
                alpha=0.15,
            )
        ax.set_xlabel("machine time in the order [s]")
        ax.set_ylabel("tool wear VB [um]")
        ax.set_title("estimate +- 2 sd (solid, band) against the hidden truth (dashed)")
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()

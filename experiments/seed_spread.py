"""Margin, not luck: the demo's model trained with several seeds, each threshold's spread.

    .venv/bin/python experiments/seed_spread.py --dataset out/demo/dataset \
        --config experiments/training/spindle.yaml --runs out/demo/verify-seed9001-n500 \
        --seeds 0 1 2 --out out/seeds
    .venv/bin/python experiments/seed_spread.py --bundles out/seeds/seed0/bundle ...

Per seed: ``twin train --set seed=S``, ``twin export``, ``twin verify`` on a copy of the
fresh runs in ``--runs`` (the same verification orders for every seed, simulated once by
the demo's ``twin verify``). Then, from the bundles' verification figures, one row per
acceptance threshold and one column per slice (and the pooled runs): the lowest and
highest value over the seeds and how many seeds meet it. A threshold met by one seed
and missed by another is met by chance. ``--bundles`` skips the training and reads
bundles already verified.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from surrogates._bundle import bundle_spec, read_signature  # noqa: E402
from surrogates._metrics import OPS, meets, threshold_rows  # noqa: E402


def train_seed(args: argparse.Namespace, seed: int) -> Path:
    """Train, export and verify one seed; its bundle."""
    twin = str(Path(sys.executable).parent / "twin")
    folder = args.out / f"seed{seed}"
    runs = folder / "verify"
    if runs.exists():
        shutil.rmtree(runs)
    shutil.copytree(args.runs, runs)
    n = args.n
    steps = [
        [twin, "train", "--dataset", str(args.dataset), "--config", str(args.config),
         "--out", str(folder / "surrogate"), "--set", f"seed={seed}"],
        [twin, "export", str(folder / "surrogate"), "--out", str(folder / "bundle")],
        [twin, "verify", str(folder / "bundle"), "--n", str(n), "--seed", str(args.verify_seed),
         "--out", str(runs)],
    ]  # fmt: skip
    for step in steps:
        print(f"seed {seed}: {' '.join(step[1:3])} ...", flush=True)
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            raise SystemExit(f"seed {seed}: {step[1]} failed (exit {done.returncode})")
    return folder / "bundle"


def columns_of(signature: dict[str, Any]) -> dict[str, tuple[dict[str, Any], bool]]:
    """Slice (or pooled) -> (its metrics per KPI, whether coverage is judged by the test)."""
    ver = (signature.get("metrics") or {}).get("verification")
    if not ver:
        raise SystemExit(f"{signature['name']}: not verified (run twin verify on the bundle)")
    out = {name: (s["kpis"], True) for name, s in ver["slices"].items()}
    out["pooled"] = (ver["kpis"], False)
    return out


def spread_table(bundles: list[Path]) -> list[str]:
    spec = bundle_spec(bundles[0])
    per_seed = [columns_of(read_signature(b)) for b in bundles]
    names = list(per_seed[0])
    lines = ["  " + f"{'threshold':44s}" + "".join(f"{c:>22s}" for c in names)]
    always = sometimes = never = 0
    for _name, key, crit, metric, limit in threshold_rows(spec):
        cells = []
        for column in names:
            got = [seed[column][0].get(key) for seed in per_seed]
            if any(g is None or metric not in g for g in got):
                cells.append(f"{'-':>22s}")
                continue
            values = [g[metric] for g in got]
            met = sum(meets(g, crit, limit, tested=per_seed[0][column][1]) for g in got)
            always += met == len(got)
            sometimes += 0 < met < len(got)
            never += met == 0
            text = f"{min(values):.3g}..{max(values):.3g} {met}/{len(got)}"
            cells.append(" " + text.rjust(21))
        lines.append("  " + f"{f'{key} {metric} {OPS[crit]} {limit:g}':44s}" + "".join(cells))
    lines.append(
        f"checks met by every seed {always}, by some {sometimes} (met by chance), by none {never}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="+", type=Path, help="verified bundles, one per seed")
    parser.add_argument("--dataset", type=Path, help="training dataset (twin data generate)")
    parser.add_argument("--config", type=Path, default=ROOT / "experiments/training/spindle.yaml")
    parser.add_argument("--runs", type=Path, help="fresh runs of a twin verify, reused per seed")
    parser.add_argument("--n", type=int, default=500, help="that verify's --n")
    parser.add_argument("--verify-seed", type=int, default=9001, help="that verify's --seed")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("out/seeds"))
    args = parser.parse_args()
    bundles = args.bundles
    if not bundles:
        if args.dataset is None or args.runs is None:
            parser.error("--dataset and --runs are needed to train the seeds (or give --bundles)")
        bundles = [train_seed(args, seed) for seed in args.seeds]
    print(f"each threshold over {len(bundles)} seeds: lowest..highest value, seeds meeting it")
    print("\n".join(spread_table(bundles)))


if __name__ == "__main__":
    main()

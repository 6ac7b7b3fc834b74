"""Margin, not luck: the demo's model trained with several seeds, each threshold's spread.

    .venv/bin/python experiments/seed_spread.py --dataset out/demo/dataset \
        --config experiments/training/spindle.yaml --runs out/demo/verify-seed9001-n500 \
        --seeds 0 1 2 --out out/seeds
    .venv/bin/python experiments/seed_spread.py --bundles out/seeds/seed0/bundle ...

Per seed: ``twin train --set seed=S``, ``twin export``, ``twin verify`` on a copy of the
fresh runs in ``--runs`` (the same verification orders for every seed, simulated once by
the demo's ``twin verify``). Then, from the bundles' verification figures, one row per
acceptance threshold and one column per slice (and the pooled runs, and each partition
part, such as one material, on the coverages the gate judges there): the lowest and
highest value over the seeds and how many seeds meet it. A threshold met by one seed
and missed by another is met by chance. ``--bundles`` skips the training and reads
bundles already verified. ``--card BUNDLE`` (the demo's bundle, say) writes the spread
into that bundle's signature, and so into its model card.
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

from surrogates._bundle import bundle_spec, read_signature, save_signature  # noqa: E402
from surrogates._metrics import OPS, meets, threshold_rows  # noqa: E402
from surrogates._verify import MIN_PARTITION_ROWS  # noqa: E402


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
    """Slice, pooled or partition part -> (its metrics per KPI, whether coverage is judged
    by the test). A part (``material=...``) is judged as the gate judges it: coverage
    only, where it has MIN_PARTITION_ROWS runs."""
    ver = (signature.get("metrics") or {}).get("verification")
    if not ver:
        raise SystemExit(f"{signature['name']}: not verified (run twin verify on the bundle)")
    out = {name: (s["kpis"], True) for name, s in ver["slices"].items()}
    out["pooled"] = (ver["kpis"], False)
    out.update({part: (kpis, True) for part, kpis in (ver.get("partitions") or {}).items()})
    return out


def spread(bundles: list[Path]) -> dict[str, Any]:
    """Each threshold's lowest and highest value over the bundles (one per seed) and how
    many meet it, per slice and pooled: the record a model card shows."""
    spec = bundle_spec(bundles[0])
    signatures = [read_signature(b) for b in bundles]
    per_seed = [columns_of(sig) for sig in signatures]
    names = list(per_seed[0])
    rows = []
    for _name, key, crit, metric, limit in threshold_rows(spec):
        cells: dict[str, dict[str, Any]] = {}
        for column in names:
            got = [seed[column][0].get(key) for seed in per_seed]
            if any(g is None or metric not in g for g in got):
                continue
            if "=" in column and (metric != "coverage" or min(g["n"] for g in got) <
                                  MIN_PARTITION_ROWS):  # fmt: skip
                continue
            values = [float(g[metric]) for g in got]
            met = sum(meets(g, crit, limit, tested=per_seed[0][column][1]) for g in got)
            cells[column] = {"low": min(values), "high": max(values), "met": met}
        rows.append({"threshold": f"{key} {metric} {OPS[crit]} {limit:g}", "cells": cells})
    counts = [c["met"] for r in rows for c in r["cells"].values()]
    n = len(bundles)
    return {
        "seeds": [sig["training"]["config"].get("seed") for sig in signatures],
        "bundles": [sig["bundle_hash"][:12] for sig in signatures],
        "columns": names,
        "rows": rows,
        "always": sum(m == n for m in counts),
        "sometimes": sum(0 < m < n for m in counts),
        "never": sum(m == 0 for m in counts),
    }


def spread_table(record: dict[str, Any]) -> list[str]:
    """The slices and pooled runs as one table, then the partitions' coverages as one."""
    n = len(record["bundles"])
    lines: list[str] = []
    for names in ([c for c in record["columns"] if "=" not in c],
                  [c for c in record["columns"] if "=" in c]):  # fmt: skip
        rows = [r for r in record["rows"] if any(c in r["cells"] for c in names)]
        if not names or not rows:
            continue
        width = max(22, *(len(c) + 2 for c in names))
        lines.append("  " + f"{'threshold':44s}" + "".join(f"{c:>{width}s}" for c in names))
        for row in rows:
            cells = []
            for column in names:
                c = row["cells"].get(column)
                text = "-" if c is None else f"{c['low']:.3g}..{c['high']:.3g} {c['met']}/{n}"
                cells.append(" " + text.rjust(width - 1))
            lines.append("  " + f"{row['threshold']:44s}" + "".join(cells))
    lines.append(
        f"checks met by every seed {record['always']}, by some {record['sometimes']} (met by "
        f"chance), by none {record['never']}"
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
    parser.add_argument("--card", type=Path, action="append", default=[],
                        help="a bundle whose model card gets the spread (repeatable)")  # fmt: skip
    args = parser.parse_args()
    bundles = args.bundles
    if not bundles:
        if args.dataset is None or args.runs is None:
            parser.error("--dataset and --runs are needed to train the seeds (or give --bundles)")
        bundles = [train_seed(args, seed) for seed in args.seeds]
    record = spread(bundles)
    print(f"each threshold over {len(bundles)} seeds: lowest..highest value, seeds meeting it")
    print("\n".join(spread_table(record)))
    for bundle in args.card:
        signature = read_signature(bundle)
        signature["seed_spread"] = record
        save_signature(bundle, signature)
        print(f"{bundle / 'model_card.md'}: the spread over seeds {record['seeds']}")


if __name__ == "__main__":
    main()

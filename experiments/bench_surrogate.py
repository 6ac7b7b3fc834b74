"""Surrogate benchmark: a model bundle's ONNX graph against the FMU, on the same work orders.

    .venv/bin/python experiments/bench_surrogate.py BUNDLE [LABEL=BUNDLE ...] [--orders 300]
        [--seed 4242] [--json out/bench/surrogate.json]

Everything is measured in one run, on this machine, and reported as ratios to a
baseline measured in that same run (nothing is asserted about the times):

- ``FMU, runner``: ``physics.study.generate`` draws ``--orders`` fresh uniform random
  orders of the bundle's own spec and simulates them with one worker and the native
  driver into a temporary dataset; its whole wall clock (design, pool start, runs,
  writing) divided by the orders is the cost of an answer from the FMU;
- ``FMU, native``: the mean of the rows' ``wall_time``, the run's own time inside the
  worker (the FMU's compute and the KPI reduction, without the runner around it);
- ``surrogate, batch 1``: onnxruntime on ``model.onnx`` (one intra-op thread), one
  order per call, cycling through the ok orders: the median of at least 500 timed
  calls after a warm-up, i.e. the latency of one answer;
- ``surrogate, batch 1024``: the ok orders tiled to 1024 rows, the median of at least
  20 calls divided by 1024, with one and with two intra-op threads: the throughput;
- the first bundle as an FMU (``twin export BUNDLE --fmu``, FMI 2, built into a temporary
  folder; ``--no-fmu`` skips it), one order per call like batch 1: ``surrogate FMU,
  fmpy`` sets the order's inputs, steps once and reads every output through fmpy;
  ``surrogate FMU, native driver`` is one run of it (reset, inputs, initialization, one
  step, every output read) through the project's C driver (physics/cdriver), as the
  runner drives the physics FMU; ``surrogate as C, in process`` is the generated C of
  the same graph without FMI around it, every order in one ctypes call (the C loops over
  them one row at a time): its cost per order.

Each surrogate figure is the best of ``--rounds`` rounds over all the bundles given (a
median per round), after a few seconds of untimed calls, and the FMU's figures the best
of as many studies of the same orders: on a shared machine a slow spell then costs a
round, not a configuration or the baseline.

Speed-ups are the FMU's time per order over the surrogate's time per order. The
model's size and its verification figures (from signature.json, where ``twin verify``
has put them; else the test split's, labelled so) are printed alongside, so that
configurations can be compared on accuracy and speed across runs. Given several
bundles of one spec (configurations tried), each is timed in the same run against the
same FMU baseline, and a trade-off table closes the output: parameters, nodes, the
acceptance thresholds each misses per verification slice (from its ``twin verify``),
and its batch-1 latency and batched cost per row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physics.dataset import read_runs  # noqa: E402
from physics.runner import PoolOptions  # noqa: E402
from physics.study import generate  # noqa: E402
from surrogates._bundle import MODEL, bundle_spec, read_signature  # noqa: E402
from surrogates._export import run, session  # noqa: E402
from surrogates._features import raw_matrix  # noqa: E402
from surrogates._verify import bundle_columns  # noqa: E402

BATCH = 1024


def fmu_orders(bundle: Path, orders: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """Simulate fresh random orders with one worker; the ok rows and the FMU's figures."""
    spec = bundle_spec(bundle)
    with tempfile.TemporaryDirectory(prefix="bench-surrogate-") as tmp:
        t0 = time.perf_counter()
        result = generate(
            spec, Path(tmp) / "orders", n=orders, method="random", seed=seed,
            pool=PoolOptions(workers=1), progress=False,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        frame = read_runs(result.folder).to_pandas()
    ok = frame.loc[frame["status"] == "ok"].reset_index(drop=True)
    if ok.empty:
        raise SystemExit(f"none of the {len(frame)} orders simulated ok")
    return ok, {
        "orders": len(frame),
        "ok": len(ok),
        "study_wall_s": wall,
        "runner_per_order_s": wall / len(frame),
        "native_per_run_s": float(ok["wall_time"].mean()),
    }


def median_call(sess: Any, rows: list[np.ndarray], calls: int, warmup: int) -> float:
    """Median seconds of one ``run`` call, cycling through ``rows``."""
    for i in range(warmup):
        run(sess, rows[i % len(rows)])
    times = np.empty(calls)
    for i in range(calls):
        x = rows[i % len(rows)]
        t0 = time.perf_counter()
        run(sess, x)
        times[i] = time.perf_counter() - t0
    return float(np.median(times))


def surrogate_times(bundle: Path, raw: np.ndarray) -> dict[str, float]:
    model = str(bundle / MODEL)
    singles = [np.ascontiguousarray(raw[i : i + 1]) for i in range(len(raw))]
    reps = -(-BATCH // len(raw))
    batch = np.ascontiguousarray(np.tile(raw, (reps, 1))[:BATCH])
    out = {"batch1_s": median_call(session(model, threads=1), singles, max(500, len(raw)), 50)}
    for threads in (1, 2):
        per_call = median_call(session(model, threads=threads), [batch], 20, 3)
        out[f"batch{BATCH}_{threads}t_per_row_s"] = per_call / BATCH
    return out


def accuracy(signature: dict[str, Any]) -> dict[str, Any] | None:
    """Median/min R² and event accuracies from the verification (else test) figures."""
    metrics = signature.get("metrics") or {}
    verification = metrics.get("verification")
    source = "verification" if verification else "test"
    kpis = verification["kpis"] if verification else metrics.get("test") or {}
    if not kpis:
        return None
    r2 = {k: m["r2"] for k, m in kpis.items() if m.get("r2") is not None and np.isfinite(m["r2"])}
    return {
        "source": source,
        "runs": verification.get("runs") if verification else None,
        "r2_median": float(np.median(list(r2.values()))) if r2 else None,
        "r2_min": min(r2.values()) if r2 else None,
        "r2_min_kpi": min(r2, key=r2.__getitem__) if r2 else None,
        "r2_kpis": len(r2),
        "event_accuracy": {k: m["accuracy"] for k, m in kpis.items() if "accuracy" in m},
        "nrmse": {k: m["nrmse"] for k, m in kpis.items() if "nrmse" in m},
    }


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:8.2f} {unit}"
    return f"{seconds / 1e-9:8.1f} ns"


def settle(bundle: Path, frame: Any, seconds: float = 3.0) -> None:
    """Run the first bundle at batch 1 for a few seconds, untimed: right after the FMU
    study the first configuration timed measured up to twice its later figure."""
    signature = read_signature(bundle)
    raw = raw_matrix(bundle_columns(signature), frame).astype(np.float32)
    sess = session(str(bundle / MODEL), threads=1)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        run(sess, raw[:1])


def gate_misses(signature: dict[str, Any]) -> dict[str, int] | None:
    """Acceptance thresholds missed, per slice or partition, from ``twin verify``'s gate
    (None when the bundle was not verified)."""
    gate = signature.get("gate") or {}
    if not (signature.get("metrics") or {}).get("verification"):
        return None
    misses: dict[str, int] = {}
    for failure in gate.get("failures", []):
        where = failure.split(":", 1)[0].removeprefix("slice ")
        where = "partitions" if "=" in where else where
        misses[where] = misses.get(where, 0) + 1
    return misses


def parse_bundles(items: list[str]) -> list[tuple[str, Path]]:
    """``PATH`` or ``LABEL=PATH``; the label defaults to the folder's name."""
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        out.append((label, Path(path)) if sep else (Path(item).name, Path(item)))
    return out


def fmu_times(bundle: Path, raw: np.ndarray, calls: int = 500) -> dict[str, float]:
    """The bundle as an FMU and as in-process C: median seconds per order (see above)."""
    from physics.fmu._adapter import Fmu
    from physics.fmu._native import NativeFmu
    from surrogates._cgen import NativeGraph, compile_library
    from surrogates._fmu import FmuRows, export_fmu

    signature = read_signature(bundle)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fmu-"))
    made = export_fmu(bundle, tmp / "surrogate.fmu", "2")
    out: dict[str, float] = {}

    rows = FmuRows(made.path)
    fmu_rows = rows.fmu_rows(raw, signature)
    inputs = [v.name for v in rows.inputs]
    out["fmu_fmpy_s"] = _median(lambda i: rows.step(fmu_rows[i % len(fmu_rows)]), calls)
    rows.close()

    with Fmu(made.path) as fmu:
        native = NativeFmu(fmu)
        outputs = [(n, "final", None) for n in made.outputs
                   if fmu.variable(n).type == "Real"]  # fmt: skip
        starts = [dict(zip(inputs, r, strict=True)) for r in fmu_rows]

        def one(i: int) -> None:
            native.run(starts[i % len(starts)], 1.0, step_size=1.0, output_interval=1.0,
                       kpis=outputs)  # fmt: skip

        out["fmu_native_s"] = _median(one, calls)
        native.close()

    lib, _ = compile_library(made.program, tmp / "c")
    graph = NativeGraph(made.program, lib)
    block = np.ascontiguousarray(raw)
    out["c_inprocess_s"] = _median(lambda i: graph.run(block), 20, warmup=3) / len(block)
    return out


def _median(call: Any, calls: int, warmup: int = 50) -> float:
    for i in range(warmup):
        call(i)
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        call(i)
        times[i] = time.perf_counter() - t0
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "bundles", nargs="+", help="model bundle folders (twin export), as PATH or LABEL=PATH"
    )
    parser.add_argument("--orders", type=int, default=300, help="fresh random orders to simulate")
    parser.add_argument("--seed", type=int, default=4242, help="seed of their random design")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timing rounds over the bundles (best is kept)"
    )
    parser.add_argument("--no-fmu", action="store_true", help="skip the first bundle as an FMU")
    args = parser.parse_args()
    import onnxruntime as ort

    bundles = parse_bundles(args.bundles)
    first = read_signature(bundles[0][1])
    frame, fmu = fmu_orders(bundles[0][1], args.orders, args.seed)
    for _ in range(args.rounds - 1):  # the FMU's best round too: best against best
        _, again = fmu_orders(bundles[0][1], args.orders, args.seed)
        for key in ("study_wall_s", "runner_per_order_s", "native_per_run_s"):
            fmu[key] = min(fmu[key], again[key])
    runner = fmu["runner_per_order_s"]
    print(
        f"{os.cpu_count()} cores, onnxruntime {ort.__version__}; orders: {fmu['orders']} "
        f"random (seed {args.seed}) of {first['name']}, {fmu['ok']} ok; FMU study "
        f"{fmu['study_wall_s']:.2f} s wall, 1 worker"
    )
    settle(bundles[0][1], frame)
    signatures, raws = [], []
    for _, bundle in bundles:
        signature = read_signature(bundle)
        if signature["spec"]["hash"] != first["spec"]["hash"]:
            raise SystemExit(f"{bundle}: another spec than {bundles[0][1]}'s; time it on its own")
        signatures.append(signature)
        raws.append(raw_matrix(bundle_columns(signature), frame).astype(np.float32))
    # Rounds over the bundles, each figure the best round's median: a shared machine's
    # slow spells then hit a round, not a configuration.
    times: list[dict[str, float]] = [{} for _ in bundles]
    for _ in range(args.rounds):
        for i, (_, bundle) in enumerate(bundles):
            for key, value in surrogate_times(bundle, raws[i]).items():
                times[i][key] = min(times[i].get(key, np.inf), value)
            if i == 0 and not args.no_fmu:
                for key, value in fmu_times(bundle, raws[i]).items():
                    times[i][key] = min(times[i].get(key, np.inf), value)
    rows = [
        report(label, bundle, signature, sur, fmu)
        for (label, bundle), signature, sur in zip(bundles, signatures, times, strict=True)
    ]
    if len(rows) > 1:
        print("\nconfigurations (thresholds missed per slice from twin verify; - not verified):")
        slices = list(dict.fromkeys(k for r in rows for k in r["slices"]))
        columns = [*slices, "pooled", "partitions"]
        head = f"  {'configuration':16s} {'params':>9s} {'nodes':>6s} " + " ".join(
            f"{c[:10]:>10s}" for c in columns
        ) + f" {'batch 1':>10s} {'x FMU':>6s} {'per row':>10s} {'x FMU':>6s}"
        print(head)
        for r in rows:
            m = r["misses"]
            cells = " ".join(f"{'-' if m is None else m.get(c, 0):>10}" for c in columns)
            b1, bn = r["surrogate"]["batch1_s"], r["surrogate"][f"batch{BATCH}_1t_per_row_s"]
            print(
                f"  {r['label']:16s} {r['model']['parameters']:>9,} {r['model']['nodes']:>6} "
                f"{cells} {fmt_time(b1):>10s} {runner / b1:5.0f}x {fmt_time(bn):>10s} "
                f"{runner / bn:5.0f}x"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "cores": os.cpu_count(),
            "onnxruntime": ort.__version__,
            "seed": args.seed,
            "fmu": fmu,
            "bundles": rows,
        }
        args.json.write_text(json.dumps(figures, indent=2, default=str))


def report(
    label: str, bundle: Path, signature: dict[str, Any], sur: dict[str, float], fmu: dict
) -> dict[str, Any]:
    """Print one bundle's timings against the FMU and its accuracy; its figures."""
    model = signature["model"]
    runner, native = fmu["runner_per_order_s"], fmu["native_per_run_s"]
    print(f"\n{label}: bundle {bundle} ({signature['bundle_hash'][:12]})")
    print(
        f"model: {model['members']} members, per_kpi {model['per_kpi']}, hidden {model['hidden']}, "
        f"{model['parameters']:,} parameters, {model['nodes']} nodes\n"
    )
    print(f"{'':38s} {'per order':>11s}   {'speed-up vs FMU: runner':>23s} {'native':>8s}")
    table = [
        ("FMU, runner (1 worker, wall)", runner),
        ("FMU, native compute (wall_time)", native),
        ("surrogate, batch 1 (1 thread)", sur["batch1_s"]),
        (f"surrogate, batch {BATCH} (1 thread)", sur[f"batch{BATCH}_1t_per_row_s"]),
        (f"surrogate, batch {BATCH} (2 threads)", sur[f"batch{BATCH}_2t_per_row_s"]),
    ]
    if "fmu_fmpy_s" in sur:
        table += [
            ("surrogate FMU, fmpy (1 step)", sur["fmu_fmpy_s"]),
            ("surrogate FMU, native driver (1 run)", sur["fmu_native_s"]),
            ("surrogate as C, in process (per row)", sur["c_inprocess_s"]),
        ]
    speedups: dict[str, dict[str, float]] = {}
    for name, t in table:
        line = f"{name:38s} {fmt_time(t):>11s}"
        if name.startswith("surrogate"):
            speedups[name] = {"vs_runner": runner / t, "vs_native": native / t}
            line += f"   {runner / t:22.0f}x {native / t:7.0f}x"
        print(line)
    acc = accuracy(signature)
    if acc is None:
        print("\naccuracy: no figures in signature.json")
    else:
        where = f"{acc['runs']} fresh runs" if acc["source"] == "verification" else "no twin verify"
        print(f"\naccuracy ({acc['source']}; {where}):")
        if acc["r2_kpis"]:
            print(
                f"  R² over {acc['r2_kpis']} KPIs: median {acc['r2_median']:.4f}, "
                f"min {acc['r2_min']:.4f} ({acc['r2_min_kpi']})"
            )
        for kpi, a in acc["event_accuracy"].items():
            print(f"  {kpi:30s} event accuracy {a:.4f}")
    misses = gate_misses(signature)
    if misses is not None:
        status = signature["gate"].get("status")
        print(f"  gate: {status}, {sum(misses.values())} thresholds missed")
    return {
        "label": label,
        "bundle": str(bundle),
        "bundle_hash": signature["bundle_hash"],
        "model": {k: model[k] for k in ("members", "per_kpi", "hidden", "parameters", "nodes")},
        "surrogate": sur,
        "speedups": speedups,
        "accuracy": acc,
        "misses": misses,
        "slices": list(((signature.get("metrics") or {}).get("verification") or {}).get(
            "slices", {})),
    }


if __name__ == "__main__":
    main()

"""Data-generation benchmark: our runner against fmpy.simulate_fmu, same FMU, same points.

    .venv/bin/python experiments/bench_datagen.py [--quick] [--json out/bench/datagen.json]

For each FMU (the spindle, a small first-order lag, the same lag as an FMI 3.0 FMU, and
the lag through its FMI 2.0 model-exchange interface, "lag ME") and each run length
(100 and 1,000 communication steps), on the same DOE points, it measures:

- ``simulate_fmu``: ``fmpy.simulate_fmu`` called per point, what users write today
  (with ``fmi_type="ModelExchange"`` for the ME rows: fmpy's CVode loop);
- ``native loop``: our C driver called in this process, run after run: the time
  inside the FMU plus a few microseconds, i.e. the limit; for the ME rows,
  ``Fmu.simulate`` (CVode) in this process instead;
- ``runner x1`` / ``runner xN``: our runner (worker processes, watchdog, KPI
  reduction) with one worker and with one per core, in steady state; the one-off
  start of the workers is reported on its own.

Overhead per run = wall time per run minus the native loop's time per run. The
target: the runner's overhead (one worker) at most a tenth of simulate_fmu's.
Then the 2,000-order spindle study (LHS, seed 1) end to end, into a dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.fmus: the small FMU lives with the tests

from physics.doe import make_design  # noqa: E402
from physics.fmu import Fmu, fmu_for_model  # noqa: E402
from physics.fmu._native import NativeFmu  # noqa: E402
from physics.runner import KpiDef, LocalPool, PoolOptions, SimulationJob, Task  # noqa: E402
from physics.spec import load_spec  # noqa: E402
from physics.study import generate  # noqa: E402

SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"


def spindle_points(n: int) -> tuple[Path, list[dict[str, Any]], list[tuple[str, str, Any]]]:
    spec = load_spec(SPEC)
    path = fmu_for_model("spindle")
    with Fmu(path) as fmu:
        design = make_design(spec, n, method="sobol", seed=11)
        starts = []
        for p in design.points:
            values = {k: v for k, v in p.items() if k != "quantity"}
            starts.append(spec.case_from_order(values, p["quantity"], fmu.catalogue).start_values)
    kpis = [(k.variable, k.reduction, k.limit) for k in spec.kpis.values()]
    return path, starts, kpis


def lag_points(n: int) -> tuple[Path, list[dict[str, Any]], list[tuple[str, str, Any]]]:
    from tests.fmus import build_test_fmu

    rng = np.random.default_rng(11)
    starts = [
        {"u": float(u), "tau": float(t)}
        for u, t in zip(rng.uniform(-2, 2, n), rng.uniform(0.5, 2.0, n), strict=True)
    ]
    return build_test_fmu("faulty"), starts, [("y", "final", None), ("y", "max", None)]


def lag3_points(n: int) -> tuple[Path, list[dict[str, Any]], list[tuple[str, str, Any]]]:
    """The same lag as an FMI 3.0 FMU (the native driver steps both standards)."""
    from tests.fmus import build_test_fmu

    _, starts, kpis = lag_points(n)
    return build_test_fmu("lag3"), starts, kpis


def per_run(seconds: float, runs: int) -> float:
    return seconds / runs


def native_loop(
    path: Path, starts: list[dict[str, Any]], stop: float, step: float, kpis: list[Any]
) -> tuple[float, float]:
    """Seconds per run of our C driver called in this process, and the time in the FMU."""
    with Fmu(path) as fmu:
        native = NativeFmu(fmu)
        native.run(starts[0], stop, step_size=step, output_interval=step, kpis=kpis)  # warm
        in_step = 0.0
        t0 = time.perf_counter()
        for sv in starts:
            in_step += native.run(
                sv, stop, step_size=step, output_interval=step, kpis=kpis
            ).step_seconds
        seconds = per_run(time.perf_counter() - t0, len(starts))
        native.close()
    return seconds, in_step


def cvode_loop(
    path: Path, starts: list[dict[str, Any]], stop: float, step: float, kpis: list[Any]
) -> tuple[float, float]:
    """Model exchange: seconds per run of Fmu.simulate (CVode) called in this process,
    run after run (the limit for the runner), and that same time as the time in the FMU
    and the solver."""
    outputs = list(dict.fromkeys(k[0] for k in kpis))
    with Fmu(path, interface="model_exchange") as fmu:
        fmu.simulate(starts[0], stop, step_size=step, outputs=outputs)  # warm
        t0 = time.perf_counter()
        for sv in starts:
            fmu.simulate(sv, stop, step_size=step, outputs=outputs)
        seconds = time.perf_counter() - t0
    return per_run(seconds, len(starts)), seconds


def bench_case(
    name: str,
    path: Path,
    starts: list[dict[str, Any]],
    kpis: list[Any],
    steps: int,
    step: float,
    n_fmpy: int,
    workers: int,
    interface: str = "co_simulation",
) -> dict[str, Any]:
    import fmpy

    stop = steps * step
    outputs = list(dict.fromkeys(k[0] for k in kpis))
    n = len(starts)
    me = interface == "model_exchange"
    # fmpy.simulate_fmu per point, as a user would call it (subset: it is slow).
    t0 = time.perf_counter()
    for sv in starts[:n_fmpy]:
        fmpy.simulate_fmu(
            str(path),
            start_values=sv,
            stop_time=stop,
            step_size=None if me else step,
            output_interval=step,
            output=outputs,
            fmi_type="ModelExchange" if me else "CoSimulation",
            record_events=False,
        )
    t_fmpy = per_run(time.perf_counter() - t0, n_fmpy)
    # The loop in this process, the limit: our C driver, or CVode for model exchange.
    t_native, in_step = (cvode_loop if me else native_loop)(path, starts, stop, step, kpis)
    with Fmu(path) as fmu:
        fmi3 = fmu.fmi3

    # Our runner, one worker and all cores: the time to the first answer (starting
    # the workers: a new interpreter, imports, FMU extraction) is reported apart
    # from the steady state that follows, which is what each further run costs.
    job = SimulationJob(
        str(path),
        step,
        step,
        tuple(KpiDef(f"k{i}", v, r, lim) for i, (v, r, lim) in enumerate(kpis)),
        interface=interface,
    )
    tasks = [Task(i, sv, stop) for i, sv in enumerate(starts)]
    walls, startup = {}, {}
    for w in (1, workers):
        t0 = time.perf_counter()
        results = LocalPool(job, PoolOptions(workers=w)).run(tasks)
        first = [next(results)]
        t1 = time.perf_counter()
        rest = list(results)
        walls[w] = per_run(time.perf_counter() - t1, n - 1)
        startup[w] = t1 - t0
        bad = [r for r in first + rest if r.status != "ok"]
        if bad:
            raise SystemExit(f"{name}: {len(bad)} runs failed, first: {bad[0].message}")
    over_fmpy = t_fmpy - t_native
    over_runner = walls[1] - t_native
    return {
        "fmu": name + (" ME" if me else ""),
        "interface": interface,
        "steps": steps,
        "runs": n,
        "fmpy_runs": n_fmpy,
        "simulate_fmu_runs_per_s": 1 / t_fmpy,
        "fmi": "3.0" if fmi3 else "2.0",
        "native_runs_per_s": 1 / t_native,
        "runner_1_runs_per_s": 1 / walls[1],
        f"runner_{workers}_runs_per_s": 1 / walls[workers],
        "fmu_share_of_native_loop": in_step / (t_native * n),
        "simulate_fmu_overhead_ms": 1e3 * over_fmpy,
        "runner_overhead_ms": 1e3 * over_runner,
        "overhead_ratio": over_runner / over_fmpy,
        "scaling": walls[1] / walls[workers],
        "runner_startup_s": startup[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    n, n_fmpy = (200, 20) if args.quick else (2000, 60)
    print(f"machine: {workers} cores; runs per case: {n} (simulate_fmu: {n_fmpy})\n")
    rows = []
    cases = (
        ("spindle", spindle_points, "co_simulation"),
        ("lag", lag_points, "co_simulation"),
        ("lag3", lag3_points, "co_simulation"),
        # The same lag through its model-exchange interface: CVode in Python callbacks.
        ("lag", lag_points, "model_exchange"),
    )
    for name, points, interface in cases:
        path, starts, kpis = points(n)
        for steps in (100, 1000):
            rows.append(
                bench_case(
                    name,
                    path,
                    starts,
                    kpis,
                    steps,
                    1.0 if name == "spindle" else 0.01,
                    n_fmpy,
                    workers,
                    interface,
                )
            )
    head = (
        f"{'FMU':10s} {'steps':>5s} {'simulate_fmu':>12s} {'runner x1':>10s} "
        f"{'runner x' + str(workers):>10s} {'native':>9s}   {'overhead/run: fmpy':>18s} "
        f"{'runner':>8s} {'ratio':>6s} {'in FMU':>7s} {'scaling':>7s} {'start':>6s}"
    )
    print(head)
    print(f"{'':10s} {'':5s} {'runs/s':>12s} {'runs/s':>10s} {'runs/s':>10s} {'runs/s':>9s}")
    for r in rows:
        print(
            f"{r['fmu']:10s} {r['steps']:5d} {r['simulate_fmu_runs_per_s']:12.1f} "
            f"{r['runner_1_runs_per_s']:10.1f} {r[f'runner_{workers}_runs_per_s']:10.1f} "
            f"{r['native_runs_per_s']:9.1f}   {r['simulate_fmu_overhead_ms']:15.3f} ms "
            f"{r['runner_overhead_ms']:5.3f} ms {r['overhead_ratio']:6.3f} "
            f"{100 * r['fmu_share_of_native_loop']:6.1f}% {r['scaling']:6.2f}x "
            f"{r['runner_startup_s']:5.2f}s"
        )
    # The whole 2,000-order study, into a dataset.
    spec = load_spec(SPEC)
    out = Path(tempfile.mkdtemp(prefix="bench-study-"))
    try:
        t0 = time.perf_counter()
        result = generate(spec, out / "ds", n=2000, method="lhs", seed=1, progress=False)
        study = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    c = result.card["counts"]
    print(
        f"\nspindle study, 2000 orders (LHS seed 1, {workers} workers): {study:.1f} s "
        f"wall, {2000 / study:.0f} orders/s, {c['ok']} ok, {c['failed']} failed"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cases": rows, "study_seconds": study}, indent=2))


if __name__ == "__main__":
    main()

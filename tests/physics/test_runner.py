"""The runner survives faulty FMUs: each failure is one row, never the study."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from physics.dataset import read_card, read_runs
from physics.runner import KpiDef, LocalPool, PoolOptions, SimulationJob, Task
from physics.spec import TwinSpec
from physics.study import generate
from tests.fmus import build_test_fmu

FAULT_STATUS = {0: "ok", 1: "error", 2: "timeout", 3: "crash", 4: "nan"}


def faulty_spec(fmu: Path) -> TwinSpec:
    return TwinSpec.from_dict(
        {
            "name": "faulty_lag",
            "version": 1,
            "fmu": {"path": str(fmu), "step_size": 0.1, "output_interval": 0.5},
            "inputs": {
                "u": {"variable": "u", "source": "order", "min": -5, "max": 5, "unit": "1"},
                "tau": {
                    "variable": "tau",
                    "source": "order",
                    "unit": "s",
                    "min": 0.5,
                    "max": 2,
                    "default": 1.0,
                },
                "fault": {
                    "variable": "fault",
                    "source": "order",
                    "min": 0,
                    "max": 5,
                    "integer": True,
                },
                "fault_time": {
                    "variable": "fault_time",
                    "source": "order",
                    "unit": "s",
                    "min": 0,
                    "max": 10,
                    "default": 1.0,
                },
            },
            "quantity": {"unit": "s", "min": 1, "max": 10},
            "stop_time": "quantity",
            "doe": {
                "factors": {"fault": {"low": 0, "high": 4}, "u": {"low": -2, "high": 2}},
                "fixed": {"quantity": 3},
            },
            "kpis": {
                "y_end": {"variable": "y", "reduction": "final", "unit": "1", "role": "process"}
            },
        }
    )


def test_every_failure_becomes_a_row_and_the_study_goes_on(tmp_path: Path) -> None:
    spec = faulty_spec(build_test_fmu("faulty"))
    out = tmp_path / "ds"
    # Grid: faults 0..4 by 3 values of u = 15 runs, crashes and hangs among them.
    generate(
        spec,
        out,
        n=1,
        method="grid",
        levels=5,
        progress=False,
        chunk_size=4,
        pool=PoolOptions(workers=2, timeout=1.5),
    )
    table = read_runs(out)
    data = {c: table.column(c).to_pylist() for c in table.column_names}
    assert data["run_id"] == list(range(len(data["run_id"])))
    assert sorted(set(data["fault"])) == [0, 1, 2, 3, 4]
    for fault, status, message, u, y_end in zip(
        data["fault"], data["status"], data["message"], data["u"], data["y_end"], strict=True
    ):
        assert status == FAULT_STATUS[fault], (fault, message)
        if status == "ok":
            # y(3) of the lag from y0 = 0 with tau = 1: u (1 - exp(-3)).
            assert y_end == pytest.approx(u * (1 - math.exp(-3.0)), rel=1e-12, abs=1e-15)
            assert message == ""
        else:
            assert math.isnan(y_end)
    messages = {s: m for s, m in zip(data["status"], data["message"], strict=True)}
    assert "injected error at t=" in messages["error"]
    assert messages["crash"] == "worker process killed by SIGSEGV during the run"
    assert messages["timeout"] == "no answer within 1.5 s; worker killed"
    assert "output y is nan at t = " in messages["nan"]
    counts = read_card(out)["counts"]
    n_per_fault = len(data["run_id"]) // 5
    assert {s: counts[s] for s in ("ok", "error", "timeout", "crash", "nan")} == dict.fromkeys(
        ("ok", "error", "timeout", "crash", "nan"), n_per_fault
    )
    assert counts["failed"] == 4 * n_per_fault and read_card(out)["complete"]


def lag_job(fmu: Path) -> SimulationJob:
    return SimulationJob(str(fmu), 0.1, 0.5, (KpiDef("y_end", "y", "final"),))


def test_workers_are_recycled_after_max_runs(tmp_path: Path) -> None:
    pool = LocalPool(
        lag_job(build_test_fmu("faulty")), PoolOptions(workers=1, max_runs_per_worker=3)
    )
    tasks = [Task(i, {"u": float(i)}, 2.0) for i in range(8)]
    results = sorted(pool.run(tasks), key=lambda r: r.run_id)
    assert [r.status for r in results] == ["ok"] * 8
    assert [r.kpis["y_end"] for r in results] == pytest.approx(
        [i * (1 - math.exp(-2.0)) for i in range(8)], rel=1e-12
    )
    assert pool.recycled == 2  # after runs 3 and 6


def test_the_watchdog_times_runs_not_worker_start_up() -> None:
    # A worker takes longer than 0.2 s to start Python and open the FMU; the runs take
    # milliseconds. Only the hang (fault 2) times out, here and on the replaced workers.
    pool = LocalPool(lag_job(build_test_fmu("faulty")), PoolOptions(workers=2, timeout=0.2))
    tasks = [Task(i, {"u": 1.0, "fault": 2 if i == 3 else 0, "fault_time": 0.5}, 2.0)
             for i in range(8)]  # fmt: skip
    results = sorted(pool.run(tasks), key=lambda r: r.run_id)
    assert [r.status for r in results] == ["ok"] * 3 + ["timeout"] + ["ok"] * 4
    assert results[3].message == "no answer within 0.2 s; worker killed"
    assert pool.replaced == 1


def test_a_leaking_fmu_is_recycled_by_memory(tmp_path: Path) -> None:
    # fault 5 leaks 1 MiB per step: 10 s at 0.1 s is 100 MiB per run, from about 45 MiB.
    # With one run queued at a time the check acts after every run.
    options = PoolOptions(workers=1, max_rss_mb=200.0, prefetch=1)
    pool = LocalPool(lag_job(build_test_fmu("faulty")), options)
    tasks = [Task(i, {"fault": 5, "fault_time": 0.0}, 10.0) for i in range(6)]
    results = list(pool.run(tasks))
    assert [r.status for r in results] == ["ok"] * 6
    # Above 200 MiB after every second run: recycled after runs 2, 4 and 6.
    assert pool.recycled == 3 and pool.replaced == 0


def test_bad_pool_options_are_refused() -> None:
    with pytest.raises(
        ValueError,
        match=r"^workers: -1 must be >= 0 \(0 = one per core\); "
        r"timeout: 0 must be > 0 seconds$",
    ):
        PoolOptions(workers=-1, timeout=0).checked()


def test_retry_reruns_only_the_failed_rows_named(tmp_path: Path) -> None:
    spec = faulty_spec(build_test_fmu("faulty"))
    out = tmp_path / "ds"
    options = dict(n=1, method="grid", levels=5, progress=False, chunk_size=4)
    generate(spec, out, pool=PoolOptions(workers=2, timeout=1.0), **options)  # type: ignore[arg-type]
    before = read_runs(out).to_pylist()
    untouched = [c for c in read_card(out)["chunks"] if not {"timeout", "crash"} & set(c["status"])]
    again = generate(
        spec,
        out,
        pool=PoolOptions(workers=2, timeout=0.5),
        retry=("timeout", "crash"),
        **options,  # type: ignore[arg-type]
    )
    after = read_runs(out).to_pylist()
    retried = [r for r in before if r["status"] in ("timeout", "crash")]
    assert again.retried == len(retried) == again.ran and again.ran > 0
    assert [r["run_id"] for r in after] == [r["run_id"] for r in before]  # each run once
    for old, new in zip(before, after, strict=True):
        assert new["status"] == old["status"]  # the faults are still there, and nothing else
        if old["status"] in ("timeout", "crash"):
            assert new["wall_time"] != old["wall_time"]  # simulated again
            if old["status"] == "timeout":
                assert new["message"] == "no answer within 0.5 s; worker killed"
        else:
            assert repr(new) == repr(old)  # kept as it was (repr: NaN equals NaN)
    chunks = read_card(out)["chunks"]
    assert all(c in chunks for c in untouched)  # chunks without such rows are not rewritten
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        Path(c["name"]).name for c in chunks
    )


def test_retry_of_a_status_that_cannot_be_retried_is_refused(tmp_path: Path) -> None:
    from physics.dataset import DatasetError

    with pytest.raises(DatasetError) as info:
        generate(faulty_spec(build_test_fmu("faulty")), tmp_path / "d", n=2, retry=("ok",))
    assert str(info.value) == (
        "--retry: 'ok' cannot be retried; expected some of error, nan, timeout, crash"
    )
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("engine", ["native", "fmpy"])
def test_runs_start_at_the_start_time(engine: str) -> None:
    # From y_start = 0 at t0 = 2 to 5: y = u (1 - exp(-(5 - 2) / tau)), tau = 1.
    job = SimulationJob(
        str(build_test_fmu("faulty")), 0.1, 0.5, (KpiDef("y_end", "y", "final"),
                                                   KpiDef("y_int", "y", "integral")),
        ("y",), engine=engine, start_time=2.0,
    )  # fmt: skip
    [result] = LocalPool(job, PoolOptions(workers=1)).run([Task(0, {"u": 1.5}, 5.0)])
    assert result.status == "ok", result.message
    assert result.kpis["y_end"] == pytest.approx(1.5 * (1 - math.exp(-3.0)), rel=1e-12)
    assert result.trajectory is not None
    assert result.trajectory["time"][0] == 2.0 and result.trajectory["time"][-1] == 5.0
    # The trapezoid over the 0.5 s grid of u (3 - (1 - exp(-3))): to the grid's accuracy.
    assert result.kpis["y_int"] == pytest.approx(1.5 * (3.0 - (1 - math.exp(-3.0))), rel=2e-2)


def test_a_study_starts_at_fmu_start_time_and_refuses_stops_before_it(tmp_path: Path) -> None:
    data = faulty_spec(build_test_fmu("faulty")).model_dump(exclude_none=True)
    data["fmu"]["start_time"] = 2.0
    data["doe"]["fixed"] = {"quantity": 3, "fault": 0}
    data["doe"]["factors"] = {"u": {"low": -2, "high": 2}}
    # quantity 3 s from the start; one fixed point below is refused as it ends before t0.
    data["stop_time"] = "quantity + 2 - 3 * (u <= -1.9)"
    spec = TwinSpec.from_dict(data)
    out = tmp_path / "ds"
    generate(spec, out, n=1, method="grid", levels=5, progress=False)
    rows = read_runs(out).to_pylist()
    assert read_card(out)["simulation"]["start_time"] == 2.0
    assert [r["status"] for r in rows] == ["invalid"] + ["ok"] * 4
    assert rows[0]["message"] == "stop_time: 2 s is not after the start time 2 s (fmu.start_time)"
    for r in rows[1:]:
        assert r["y_end"] == pytest.approx(r["u"] * (1 - math.exp(-3.0)), rel=1e-12)


def test_a_study_unpacks_its_fmu_once_and_crashed_workers_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from physics.fmu import cache_dir, file_sha256

    fmu = build_test_fmu("faulty")
    spec = faulty_spec(fmu)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the workers would extract copies
    # Faults 0..4 by values of u: one in five runs segfaults and kills its worker mid-run.
    generate(spec, tmp_path / "ds", n=1, method="grid", levels=5, progress=False,
             pool=PoolOptions(workers=2, timeout=1.0))  # fmt: skip
    statuses = read_runs(tmp_path / "ds").column("status").to_pylist()
    assert statuses.count("crash") == statuses.count("ok") > 0
    assert list(scratch.iterdir()) == []  # no worker made its own copy
    unpacked = cache_dir().parent / "unpacked" / file_sha256(fmu)[:32]
    assert (unpacked / ".unpacked").is_file()
    assert (unpacked / "binaries" / "linux64" / "faulty.so").is_file()


@pytest.mark.parametrize("engine", ["native", "fmpy"])
def test_kpis_reduce_every_step_not_only_the_output_grid(engine: str) -> None:
    from dataclasses import asdict

    from tests.physics.test_test_fmus import Tank, tank_reference

    # The tank's level is a sawtooth between 0.2 and 0.8 m (hysteresis valve); on a
    # 50 s output grid its peaks fall between samples.
    c = Tank()
    job = SimulationJob(
        str(build_test_fmu("tank")), 1.0, 50.0,
        (KpiDef("peak", "level", "max"), KpiDef("low", "level", "min")), ("level",),
        engine=engine,
    )  # fmt: skip
    [result] = LocalPool(job, PoolOptions(workers=1)).run([Task(0, asdict(c), 600.0)])
    assert result.status == "ok", result.message
    steps = np.arange(0.0, 601.0, 1.0)
    level = np.array([tank_reference(c, t)[0] for t in steps])
    assert result.kpis["peak"] == pytest.approx(level.max(), abs=1e-12)
    assert result.kpis["low"] == pytest.approx(level.min(), abs=1e-12)
    assert result.trajectory is not None
    grid = result.trajectory["level"]
    assert len(grid) == 13 and result.kpis["peak"] > grid.max() + 0.01  # missed on the grid


def _stat(proc: Path) -> list[str]:
    """The fields of /proc/PID/stat after the command's name ([] for a process gone)."""
    try:
        return (proc / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _ppid(proc: Path) -> int:
    fields = _stat(proc)
    return int(fields[1]) if fields else -1


def _state(proc: Path) -> str:
    fields = _stat(proc)
    return fields[0] if fields else "X"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_worker_that_dies_between_runs_loses_no_run() -> None:
    """The worker is killed while idle, after its answer and before its next task: the
    parent's send finds the pipe broken, starts another worker and runs the task there
    (it used to raise BrokenPipeError out of the study)."""
    pool = LocalPool(lag_job(build_test_fmu("faulty")), PoolOptions(workers=1, prefetch=1))
    tasks = [Task(i, {"u": float(i + 1)}, 2.0) for i in range(3)]
    results = pool.run(tasks)
    first = next(results)  # the generator waits here, the worker idle
    (pid,) = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
              and _ppid(d) == os.getpid()
              and b"worker_main" in (d / "cmdline").read_bytes()]
    os.kill(pid, signal.SIGKILL)
    # Dead before the parent sends: every thread a zombie (the last one to exit closes
    # the worker's socket; the main thread turns zombie first).
    deadline = time.monotonic() + 10
    while not all(_state(t) in "ZX" for t in (Path("/proc") / str(pid) / "task").iterdir()):
        assert time.monotonic() < deadline, "the killed worker did not exit"
        time.sleep(0.01)
    rest = list(results)
    assert [r.status for r in [first, *rest]] == ["ok"] * 3
    assert [r.kpis["y_end"] for r in [first, *rest]] == pytest.approx(
        [(i + 1) * (1 - math.exp(-2.0)) for i in range(3)], rel=1e-12)
    assert pool.replaced == 1

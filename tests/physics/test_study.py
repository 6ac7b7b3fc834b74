"""Studies end to end on the spindle: dataset, card, KPIs against the FMU, resume, Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from physics.dataset import DatasetError, read_card, read_runs
from physics.run import open_twin, simulate_order
from physics.runner import PoolOptions
from physics.spec import load_spec
from physics.study import generate

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"
TWIN = Path(sys.executable).with_name("twin")
# Long enough (about 2 s on one worker here) that the kill lands in the middle.
N_KILL = 400


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPEC)


def rows(folder: Path) -> dict[str, list]:
    table = read_runs(folder)
    return {name: table.column(name).to_pylist() for name in table.column_names}


def test_generate_writes_every_run_with_kpis_equal_to_the_fmu(spec, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = generate(
        spec,
        out,
        n=24,
        method="sobol",
        seed=4,
        chunk_size=5,
        progress=False,
        pool=PoolOptions(workers=2),
    )
    data = rows(out)
    assert data["run_id"] == list(range(24))
    assert set(data["status"]) == {"ok"}
    card = read_card(out)
    # 24 rows in chunks of 5, each listed with its rows and checksum
    assert [e["rows"] for e in card["chunks"]] == [5, 5, 5, 5, 4]
    assert sorted(e["name"] for e in card["chunks"]) == sorted(
        f"runs/{p.name}" for p in (out / "runs").glob("*.parquet")
    )
    # One line in pandas reads the same rows (the card beside the chunks is not in the way).
    import pandas as pd

    frame = pd.read_parquet(out / "runs").sort_values("run_id", ignore_index=True)
    assert frame["run_id"].tolist() == data["run_id"]
    assert frame["energy"].tolist() == data["energy"]
    assert card["counts"]["rows"] == 24 and card["counts"]["ok"] == 24 and card["complete"]
    assert card["spec"]["hash"] == spec.spec_hash
    with open_twin(spec) as twin:
        assert card["fmu"]["sha256"] == twin.sha256 and card["fmu"]["guid"] == twin.guid
        assert card["doe"] == {**card["doe"], "method": "sobol", "seed": 4, "n": 24, "points": 24}
        # Two rows recomputed in this process, straight through the FMU.
        for i in (0, 17):
            values = {k: data[k][i] for k in spec.inputs}
            direct = simulate_order(spec, twin, values, data["quantity"][i])
            for name, value in direct.kpis.items():
                assert data[name][i] == pytest.approx(value, rel=1e-12), name
            assert data["stop_time"][i] == pytest.approx(direct.case.stop_time, rel=1e-12)
    assert card["columns"]["spindle_speed"] == {
        "role": "input",
        "source": "order",
        "variable": "spindle_speed",
        "kind": "real",
        "unit": "rpm",
        "min": 500.0,
        "max": 24000.0,
    }
    assert card["columns"]["tool_wear_end"]["unit"] == "mm"
    assert result.ran == 24 and result.skipped == 0


def test_rerun_resumes_and_a_different_study_is_refused(spec, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    # Two points per material: about 6 % of the spindle's factor box is valid, and each
    # stratum may draw 50 candidates per point.
    generate(spec, out, n=10, method="halton", seed=2, progress=False)
    again = generate(spec, out, n=10, method="halton", seed=2, progress=False)
    assert again.ran == 0 and again.skipped == 10
    assert rows(out)["run_id"] == list(range(10))
    with pytest.raises(DatasetError) as info:
        generate(spec, out, n=10, method="halton", seed=3, progress=False)
    assert str(info.value) == (
        f"{out} holds a different study; use another --out folder:\n"
        "  doe.seed: the folder has 2, this command 3"
    )


def test_kill_9_loses_at_most_the_chunk_in_flight(spec, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    cmd = [
        str(TWIN),
        "data",
        "generate",
        "--spec",
        str(SPEC),
        "--n",
        str(N_KILL),
        "--doe",
        "sobol",
        "--seed",
        "7",
        "--out",
        str(out),
        "--workers",
        "1",
        "--chunk-size",
        "4",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    def committed() -> int:
        """Chunks the manifest lists: a chunk file on disk before its manifest entry is
        the chunk in flight, which a kill may lose."""
        try:
            return len(json.loads((out / "dataset.json").read_text()).get("chunks", []))
        except (OSError, ValueError):
            return 0

    deadline = time.monotonic() + 60
    while committed() < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: parent and its workers
    proc.wait()
    before = rows(out)["run_id"]
    assert 12 <= len(before) < N_KILL and len(before) % 4 == 0  # whole chunks only
    assert json.loads((out / "dataset.json").read_text()).get("complete") is not True
    # data info counts what is on disk, not what the killed process last said.
    info = subprocess.run([str(TWIN), "data", "info", str(out)], capture_output=True, text=True)
    assert (
        f"runs       {len(before)} of {N_KILL} on disk, INCOMPLETE (run the same command to resume)"
        in info.stdout.splitlines()
    ), info.stdout + info.stderr
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = rows(out)
    assert after["run_id"] == list(range(N_KILL))  # complete, and no run twice
    assert done.stdout.endswith(
        f"simulated {N_KILL - len(before)} now, {len(before)} were already on disk\n"
    )
    # The resumed rows equal those of an uninterrupted study.
    fresh = tmp_path / "fresh"
    generate(spec, fresh, n=N_KILL, method="sobol", seed=7, progress=False)
    ref = rows(fresh)
    for name in ("tool_wear_end", "wall_error_max", "energy"):
        np.testing.assert_array_equal(after[name], ref[name])


def test_dask_cluster_gives_the_local_results(spec, tmp_path: Path) -> None:
    from distributed import LocalCluster

    from physics.dask_executor import dask_executor_for

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        generate(
            spec,
            tmp_path / "dask",
            n=10,
            method="lhs",
            seed=5,
            progress=False,
            executor=dask_executor_for(cluster.scheduler_address, batch_size=3),
        )
    generate(spec, tmp_path / "local", n=10, method="lhs", seed=5, progress=False)
    dask_rows, local_rows = rows(tmp_path / "dask"), rows(tmp_path / "local")
    assert dask_rows["run_id"] == list(range(10))
    for name in spec.kpis:
        np.testing.assert_array_equal(dask_rows[name], local_rows[name])
    assert read_card(tmp_path / "dask")["runner"]["executor"] == "dask"


def test_data_info_describes_the_dataset(spec, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    generate(spec, out, n=5, method="random", seed=1, progress=False)
    info = subprocess.run(
        [str(TWIN), "data", "info", str(out)], capture_output=True, text=True, timeout=60
    )
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert lines[1].startswith(
        f"spec       milling_spindle v{spec.version}  hash {spec.spec_hash[:16]}")
    assert "runs       5 of 5 on disk, complete" in lines
    assert "           ok 5  error 0  nan 0  timeout 0  crash 0  invalid 0" in lines
    speed = next(x for x in lines if x.startswith("spindle_speed "))
    assert speed.split()[:4] == ["spindle_speed", "input", "rpm", "[500,"]


def test_progress_is_plain_lines_without_a_terminal(spec, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(TWIN),
            "data",
            "generate",
            "--spec",
            str(SPEC),
            "--n",
            "10",
            "--doe",
            "random",
            "--out",
            str(tmp_path / "ds"),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CI": "true"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    assert len(lines) == 10  # one line per tenth of 10 runs
    assert lines[-1].startswith("milling_spindle random 10/10 100%")
    assert lines[-1].endswith("failed 0")


def test_trajectories_are_stored_on_the_sampling_grid(spec, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "ds"
    generate(
        spec, out, n=4, method="random", seed=9, progress=False, trajectories=True, chunk_size=3
    )
    card = read_card(out)
    traj = [out / e["trajectories"]["name"] for e in card["chunks"]]
    # Beside each runs chunk, by the same name: one pair per chunk of 3 runs.
    assert [p.relative_to(out).as_posix() for p in traj] == [
        e["name"].replace("runs/", "trajectories/") for e in card["chunks"]
    ]
    assert len(traj) == 2
    table = pq.read_table(traj[0])
    assert table.column("run_id").to_pylist() == [0, 1, 2]
    assert card["simulation"]["trajectories"] == list(
        dict.fromkeys(k.variable for k in spec.kpis.values())
    )
    data = rows(out)
    with open_twin(spec) as twin:
        values = {k: data[k][1] for k in spec.inputs}
        direct = simulate_order(spec, twin, values, data["quantity"][1])
    times = table.column("time")[1].as_py()
    np.testing.assert_array_equal(times, direct.trajectories.time)
    np.testing.assert_array_equal(
        table.column("tool_wear")[1].as_py(), direct.trajectories["tool_wear"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0"], "error: n: 0 must be a whole number >= 1"),
        (["--n", "5", "--timeout", "0"], "error: timeout: 0.0 must be > 0 seconds"),
        (["--n", "5", "--workers", "-2"], "error: workers: -2 must be >= 0 (0 = one per core)"),
        (
            ["--n", "5", "--doe", "grid"],
            "error: levels: 3 levels over 24 factors make 139,471,376,040 grid points, more than "
            "1,000,000; use fewer levels or another method",
        ),
        # Sized before anything is allocated (this grid once took 23.5 GB, then a kill); the
        # integer factors have at most their range of levels (quantity 1-500: 500).
        (
            ["--n", "5", "--doe", "grid", "--levels", "100000000"],
            "error: levels: 100000000 levels over 24 factors make about 1e+149 grid points, "
            "more than 1,000,000; use fewer levels or another method",
        ),
        (
            ["--n", "2000000"],
            "error: n: 2,000,000 points is more than 1,000,000; split the study into several "
            "datasets (different seeds)",
        ),
        (["--n", "5", "--workers", "100000"], "error: workers: 100000 is more than 256 processes"),
        (["--n", "5", "--timeout", "inf"], "error: timeout: inf must be at most 86400 seconds"),
        (["--n", "5", "--timeout", "nan"], "error: timeout: nan must be > 0 seconds"),
        (["--n", "5", "--chunk-size", "0"], "error: --chunk-size: 0; expected 1 to 100,000 rows"),
        (
            ["--n", "5", "--chunk-size", "1000000"],
            "error: --chunk-size: 1000000; expected 1 to 100,000 rows",
        ),
        (
            ["--n", "5", "--executor", "dask", "--address", "tcp://[::1"],
            "error: --address 'tcp://[::1': expected SCHEME://HOST:PORT (e.g. "
            "tcp://127.0.0.1:8786), port 1 to 65535",
        ),
        (
            ["--n", "5", "--executor", "dask", "--address", "tcp://127.0.0.1:99999"],
            "error: --address 'tcp://127.0.0.1:99999': expected SCHEME://HOST:PORT (e.g. "
            "tcp://127.0.0.1:8786), port 1 to 65535",
        ),
        (
            ["--n", "5", "--retry", "ok"],
            "error: --retry: 'ok' cannot be retried; expected some of error, nan, timeout, crash",
        ),
    ],
)
def test_bad_generate_options_are_refused_and_write_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    from click.testing import CliRunner

    from physics.cli import main

    out = tmp_path / "never"
    result = CliRunner().invoke(
        main, ["data", "generate", "--spec", str(SPEC), "--out", str(out), "--no-progress", *args]
    )
    assert result.exit_code == 2
    assert result.output.strip() == message
    assert not out.exists()

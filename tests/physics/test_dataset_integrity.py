"""A dataset folder is never lost, corrupted or misreported: one writer at a time,
nothing outside the dataset touched, and a resume that checks every chunk against
the manifest, moves what does not match aside and simulates those runs again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from physics.cli import main
from physics.dataset import DatasetFolder, read_card, read_runs
from physics.spec import TwinSpec
from tests.fmus import ridge_spec_data

TWIN = Path(sys.executable).with_name("twin")
N = 12


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ridge FMU (a static map: fast runs) as a spec file for the CLI."""
    data = ridge_spec_data()
    TwinSpec.from_dict(data)  # valid
    path = tmp_path_factory.mktemp("spec") / "ridge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def generate_args(spec_file: Path, out: Path | str, *extra: str) -> list[str]:
    return [
        "data", "generate", "--spec", str(spec_file), "--n", str(N), "--doe", "sobol",
        "--seed", "3", "--out", str(out), "--workers", "1", "--chunk-size", "3",
        "--no-progress", *extra,
    ]  # fmt: skip


def run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a failure of its own
    return result.exit_code, result.stdout, result.stderr


def listing(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """y by run id from an undisturbed study."""
    out = tmp_path_factory.mktemp("ref") / "ds"
    code, _, err = run(generate_args(spec_file, out))
    assert code == 0, err
    table = read_runs(out)
    return dict(zip(table.column("run_id").to_pylist(), table.column("y").to_pylist(), strict=True))


def assert_complete(out: Path, reference: dict[int, float]) -> None:
    table = read_runs(out)
    ids = table.column("run_id").to_pylist()
    assert ids == list(range(N))  # every run, none twice
    assert dict(zip(ids, table.column("y").to_pylist(), strict=True)) == reference
    card = read_card(out)
    assert card["complete"] and card["counts"]["rows"] == N and card["counts"]["ok"] == N


def test_a_second_writer_is_refused_and_changes_nothing(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with DatasetFolder(out):  # this process writes the folder
        before = listing(out)
        code, _, err = run(generate_args(spec_file, out))
        assert code == 2
        assert err == (
            f"error: --out: {out} is being written by another process (pid "
            f"{__import__('os').getpid()}); wait for it to finish or use another folder\n"
        )
        assert listing(out) == before


def test_two_processes_on_one_folder_give_each_run_once(
    spec_file: Path, tmp_path: Path, reference: dict[int, float]
) -> None:
    out = tmp_path / "ds"
    cmd = [str(TWIN), *generate_args(spec_file, out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for code, err in outcomes:
        # Either it held the lock (and wrote or resumed), or it was refused by name.
        assert code == 0 or (code == 2 and "is being written by another process" in err), err
    assert_complete(out, reference)


@pytest.mark.parametrize("out_name", ["notes", "empty-string"])
def test_a_folder_that_is_not_a_dataset_is_refused_and_left_alone(
    spec_file: Path, tmp_path: Path, out_name: str
) -> None:
    if out_name == "empty-string":
        code, _, err = run(generate_args(spec_file, ""))
        assert (code, err) == (2, "error: --out: '' is empty; expected a dataset folder\n")
        return
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / ".draft.tmp").write_text("mine too")
    (out / "traj-000000.parquet").write_bytes(b"not ours")
    before = listing(out)
    code, _, err = run(generate_args(spec_file, out))
    assert code == 2
    assert err == (
        f"error: --out: {out} is not empty (.draft.tmp, notes.txt, traj-000000.parquet) and is "
        "not a dataset (no dataset.json); expected a new or empty folder, or a dataset to resume\n"
    )
    assert listing(out) == before


def test_resume_quarantines_damaged_and_unlisted_chunks_and_reruns_them(
    spec_file: Path, tmp_path: Path, reference: dict[int, float]
) -> None:
    out, other = tmp_path / "ds", tmp_path / "other"
    assert run(generate_args(spec_file, out))[0] == 0
    assert run(generate_args(spec_file, other, "--n", "6", "--seed", "8"))[0] == 0
    chunks = read_card(out)["chunks"]
    assert len(chunks) == 4
    flipped, truncated, missing = (out / c["name"] for c in chunks[:3])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-10])
    missing.unlink()
    stranger = out / "runs" / "000009-0123abcd.parquet"  # another study's chunk, copied in
    shutil.copy(other / read_card(other)["chunks"][0]["name"], stranger)

    # data info says what is damaged, and leaves those rows out.
    code, info, _ = run(["data", "info", str(out)])
    assert code == 0
    assert f"runs       3 of {N} on disk, INCOMPLETE (run the same command to resume)" in info
    damaged = [line for line in info.splitlines() if line.startswith("damaged")]
    size = chunks[1]["size"]
    assert damaged == [
        f"damaged    {chunks[0]['name']} (3 runs) does not match its sha256 in the manifest",
        f"damaged    {chunks[1]['name']} (3 runs) has {size - 10} bytes, the manifest {size}",
        f"damaged    {chunks[2]['name']} (3 runs) is missing",
        "damaged    runs/000009-0123abcd.parquet is not in the manifest",
    ]
    # Reading the rows refuses a damaged folder by name rather than return wrong rows.
    with pytest.raises(ValueError, match=r"does not match its sha256 in the manifest; the same"):
        read_runs(out)

    code, stdout, err = run(generate_args(spec_file, out))
    assert code == 0, err
    assert stdout.endswith("simulated 9 now, 3 were already on disk\n")
    warnings = err.splitlines()
    assert len(warnings) == 4 and all(w.startswith("warning: moved ") for w in warnings)
    assert "not in the manifest; their runs run again" in warnings[-1]
    assert_complete(out, reference)
    moved = sorted(p.name for p in (out / "_quarantine").rglob("*.parquet"))
    assert moved == sorted(
        [f"runs__{Path(c['name']).name}" for c in chunks[:2]] + ["runs__000009-0123abcd.parquet"]
    )
    assert run(generate_args(spec_file, out))[1].endswith(
        "simulated 0 now, 12 were already on disk\n"
    )


@pytest.mark.parametrize("damage", ["missing", "not-json", "not-utf8"])
def test_a_lost_or_corrupt_card_is_set_aside_with_its_chunks(
    spec_file: Path, tmp_path: Path, reference: dict[int, float], damage: str
) -> None:
    out = tmp_path / "ds"
    assert run(generate_args(spec_file, out))[0] == 0
    card = out / "dataset.json"
    if damage == "missing":
        card.unlink()
    else:
        card.write_bytes(b'{"format": ' if damage == "not-json" else b"\xff\xfe{}")
        code, _, err = run(["data", "info", str(out)])
        why = (
            "is not valid JSON (Expecting value at line 1 column 12)"
            if damage == "not-json"
            else "is not UTF-8 text"
        )
        assert (code, err) == (2, f"error: {card} {why}\n")
    code, stdout, err = run(generate_args(spec_file, out))
    assert code == 0, err
    assert stdout.endswith(f"simulated {N} now, 0 were already on disk\n")
    assert "so they cannot be checked" in err
    assert_complete(out, reference)
    assert len(list((out / "_quarantine").rglob("runs__*.parquet"))) == 4


def test_switching_trajectories_on_mid_study_is_refused(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert run(generate_args(spec_file, out, "--n", "3"))[0] == 0
    before = listing(out)
    code, _, err = run(generate_args(spec_file, out, "--n", "3", "--trajectories"))
    assert code == 2
    assert err == (
        f"error: {out} holds a different study; use another --out folder:\n"
        "  simulation.trajectories: the folder has [], this command ['y']\n"
    )
    assert {k: v for k, v in listing(out).items() if k != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }


def test_card_lists_each_chunk_with_rows_status_and_checksum(
    spec_file: Path, tmp_path: Path
) -> None:
    import hashlib

    out = tmp_path / "ds"
    assert run(generate_args(spec_file, out, "--n", "4"))[0] == 0
    card = json.loads((out / "dataset.json").read_text())
    assert [
        (c["rows"], c["first_run_id"], c["last_run_id"], c["status"]) for c in card["chunks"]
    ] == [
        (3, 0, 2, {"ok": 3}),
        (1, 3, 3, {"ok": 1}),
    ]
    for c in card["chunks"]:
        blob = (out / c["name"]).read_bytes()
        assert (c["size"], c["sha256"]) == (len(blob), hashlib.sha256(blob).hexdigest())


def test_a_forged_manifest_name_never_moves_a_file_outside_the_dataset(
    spec_file: Path, tmp_path: Path, reference: dict[int, float]
) -> None:
    out = tmp_path / "ds"
    assert run(generate_args(spec_file, out))[0] == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("not the dataset's")
    card = json.loads((out / "dataset.json").read_text())
    card["chunks"][0]["name"] = "../victim.txt"
    (out / "dataset.json").write_text(json.dumps(card))
    code, _, err = run(["data", "info", str(out)])
    assert (code, err) == (
        2,
        f"error: {out / 'dataset.json'} has a damaged manifest entry chunks[0]: name "
        "'../victim.txt' is not runs/<number>-<token>.parquet\n",
    )
    code, _, err = run(generate_args(spec_file, out))
    assert code == 0, err
    assert victim.read_text() == "not the dataset's"
    assert_complete(out, reference)


def test_a_full_disk_is_one_clear_error_and_the_same_command_resumes(
    spec_file: Path, tmp_path: Path
) -> None:
    import resource
    import signal

    def small_files() -> None:  # no file this process writes grows past 60 kB: a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    out, n = tmp_path / "ds", 600  # 300 chunks of 2: the card outgrows 60 kB on the way
    cmd = [str(TWIN), *generate_args(spec_file, out, "--n", str(n), "--chunk-size", "2")]
    full = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert full.returncode == 1, full.stderr
    assert full.stderr.startswith(f"error: {out / 'dataset.json'}: File too large; ")
    assert full.stderr.endswith("what was written before is kept (the same command resumes)\n")
    assert len(full.stderr.splitlines()) == 1  # no traceback
    kept = read_card(out)["counts"]["rows"]
    assert 0 < kept < n
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(f"simulated {n - kept} now, {kept} were already on disk\n")
    assert read_runs(out).column("run_id").to_pylist() == list(range(n))


def test_trajectories_stream_to_disk_and_an_oversized_run_is_refused(
    spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import physics.dataset
    import physics.study
    from physics.spec import load_spec
    from physics.study import generate

    spec = load_spec(spec_file)
    # Past the buffer bound a chunk is written early: here after every run.
    monkeypatch.setattr(physics.dataset, "MAX_BUFFER_BYTES", 1)
    out = tmp_path / "ds"
    generate(spec, out, n=4, method="sobol", progress=False, trajectories=True, chunk_size=100)
    assert [c["rows"] for c in read_card(out)["chunks"]] == [1, 1, 1, 1]
    # A run whose trajectories would exceed the per-run bound is an invalid row, not a
    # worker that sends gigabytes.
    monkeypatch.setattr(physics.study, "MAX_TRAJECTORY_VALUES", 5)
    big = tmp_path / "big"
    generate(spec, big, n=2, method="sobol", progress=False, trajectories=True)
    rows = read_runs(big).to_pylist()
    assert [r["status"] for r in rows] == ["invalid", "invalid"]
    assert rows[0]["message"] == (
        "--trajectories: 3 samples of 1 variables up to stop_time 1 s are more than 5 values "
        "per run; use a longer fmu.output_interval or no --trajectories"
    )

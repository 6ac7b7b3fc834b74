"""Datasets: Parquet chunks in two folders, and a card that lists them.

    DIR/dataset.json                        the card: spec, FMU, DOE, columns, counts,
                                            and the manifest of chunks (rows, run ids,
                                            status counts, size and sha256 of each file)
    DIR/runs/<seq>-<token>.parquet          one row per run, failed runs included
    DIR/trajectories/<seq>-<token>.parquet  optional: output trajectories of those runs
    DIR/_quarantine/                        what a resume found damaged or unlisted
    DIR/.lock                               held by the one process writing the folder

Any Parquet reader takes the rows in one line (pyarrow.dataset skips names that
start with "." or "_"); run ids are unique, rows are not sorted::

    pandas.read_parquet("DIR/runs")            polars.read_parquet("DIR/runs/*.parquet")
    pyarrow.dataset.dataset("DIR/runs")        dask.dataframe.read_parquet("DIR/runs")

``read_runs`` does the same after checking every chunk against the manifest.

Writing: one process at a time (an exclusive ``flock`` on ``.lock``; a second
writer gets a DatasetError naming the first one's pid). A chunk is written under a
temporary name, renamed into place (trajectories first, runs last), and then added
to the manifest, so a reader never sees half a chunk and a killed study loses at most
the rows it had not flushed. Chunk names carry a random token, so no two chunks can
share a name. Resuming trusts only what the manifest lists and what still matches its
size and sha256: anything else in ``runs/`` and ``trajectories/`` is moved to
``_quarantine/`` (never deleted), each move is reported, and those runs are simulated
again. Nothing outside the dataset's own entries is ever touched, and a folder that is
neither empty nor a dataset is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from physics.runner import STATUSES, RunResult

CARD = "dataset.json"
FORMAT = "asset-twin-dataset/2"
RUNS, TRAJECTORIES, QUARANTINE, LOCK = "runs", "trajectories", "_quarantine", ".lock"
# Entries a dataset folder may hold (``rounds``: adaptive studies' proposed points).
_OWN = {CARD, RUNS, TRAJECTORIES, QUARANTINE, LOCK, "rounds", f".{CARD}.tmp"}
_CHUNK = re.compile(r"^(\d{6,})-[0-9a-f]{8}\.parquet$")
_TMP = re.compile(r"^\.\d{6,}-[0-9a-f]{8}\.parquet\.tmp$")
META_COLUMNS = ("run_id", "status", "message", "wall_time", "stop_time")
MAX_CHUNK_SIZE = 100_000  # rows per chunk: a chunk is held in memory until written
# Trajectories held before a chunk is written early (fewer rows): long runs stream to
# disk instead of growing the parent process.
MAX_BUFFER_BYTES = 256 << 20


class DatasetError(ValueError):
    """A dataset folder that cannot be used as asked."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with _naming(path):
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
        os.replace(tmp, path)


@contextlib.contextmanager
def _naming(path: Path) -> Any:
    """An OSError while writing ``path`` names it (a write on a full disk names nothing)."""
    try:
        yield
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _card_problem(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The card at ``path``, or why it cannot be used."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    try:
        card = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if not isinstance(card, dict):
        return None, f"holds a JSON {type(card).__name__}, expected an object"
    if card.get("format") != FORMAT:
        return None, f"has format {card.get('format')!r}, expected {FORMAT!r}"
    missing = [k for k in ("spec", "fmu", "doe", "simulation", "columns") if k not in card]
    if missing:
        return None, f"lacks {', '.join(missing)}"
    chunks = card.get("chunks", [])
    if not isinstance(chunks, list):
        return None, "has a manifest ('chunks') that is not a list"
    for i, entry in enumerate(chunks):
        if problem := _entry_problem(entry):
            return None, f"has a damaged manifest entry chunks[{i}]: {problem}"
    return card, None


def _entry_problem(entry: Any, sub: str = RUNS) -> str | None:
    """Why a manifest entry cannot be trusted (its name must be one of our chunk names:
    a forged "../" name would make a resume move a file outside the dataset)."""
    if not isinstance(entry, dict):
        return "not an object"
    name = entry.get("name")
    if not (
        isinstance(name, str) and name.startswith(f"{sub}/") and _CHUNK.match(name[len(sub) + 1 :])
    ):
        return f"name {name!r} is not {sub}/<number>-<token>.parquet"
    if not (isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)):
        return f"{name}: no size or sha256"
    if sub == RUNS:
        if not isinstance(entry.get("rows"), int) or not isinstance(entry.get("status", {}), dict):
            return f"{name}: no row count"
        if entry.get(TRAJECTORIES) is not None:
            return _entry_problem(entry[TRAJECTORIES], TRAJECTORIES)
    return None


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a dataset folder; DatasetError says what is wrong with it."""
    path = Path(folder) / CARD
    if not path.is_file():
        raise DatasetError(f"{folder}: not a dataset (no {CARD})")
    card, problem = _card_problem(path)
    if card is None:
        raise DatasetError(f"{path} {problem}")
    return card


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_entry(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    return {"name": name, "size": path.stat().st_size, "sha256": _sha256(path)}


def _damage(folder: Path, entry: Mapping[str, Any]) -> str | None:
    """Why a listed file no longer is what the manifest says, or None."""
    path = folder / str(entry["name"])
    if not path.is_file():
        return "is missing"
    size = path.stat().st_size
    if size != entry["size"]:
        return f"has {size} bytes, the manifest {entry['size']}"
    if _sha256(path) != entry["sha256"]:
        return "does not match its sha256 in the manifest"
    return None


@dataclass
class FolderCheck:
    """What a dataset folder holds against its manifest."""

    good: list[dict[str, Any]] = field(default_factory=list)  # manifest entries that match
    damaged: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # entry, why
    unlisted: list[str] = field(default_factory=list)  # chunk files the manifest lacks

    @property
    def rows(self) -> int:
        return sum(int(e["rows"]) for e in self.good)

    def problems(self) -> list[str]:
        lines = [
            f"{e['name']} ({e['rows']} runs) {why}"
            + (" (or its trajectories file)" if e.get(TRAJECTORIES) else "")
            for e, why in self.damaged
        ]
        lines += [f"{name} is not in the manifest" for name in self.unlisted]
        return lines


def check_folder(folder: str | Path, card: Mapping[str, Any]) -> FolderCheck:
    """Check every chunk the manifest lists (size, sha256) and find unlisted ones."""
    folder = Path(folder)
    out = FolderCheck()
    listed: set[str] = set()
    for entry in card.get("chunks", []):
        files = [entry] + ([entry[TRAJECTORIES]] if entry.get(TRAJECTORIES) else [])
        listed.update(str(f["name"]) for f in files)
        why = next((w for f in files if (w := _damage(folder, f))), None)
        if why is None:
            out.good.append(dict(entry))
        else:
            out.damaged.append((dict(entry), why))
    for sub in (RUNS, TRAJECTORIES):
        if (folder / sub).is_dir():
            for path in sorted((folder / sub).iterdir()):
                name = f"{sub}/{path.name}"
                if name not in listed and not _TMP.match(path.name):
                    out.unlisted.append(name)
    return out


def read_runs(folder: str | Path, columns: list[str] | None = None) -> Any:
    """All rows of a dataset as one pyarrow Table in run_id order, every chunk checked
    against the manifest first (a damaged one raises DatasetError naming it)."""
    folder = Path(folder)
    entries = read_card(folder).get("chunks", [])
    for entry in entries:
        if why := _damage(folder, entry):
            raise DatasetError(
                f"{folder / entry['name']} {why}; the same `twin data generate` command "
                "moves it aside and simulates its runs again"
            )
    return read_entries(folder, entries, columns)


def read_entries(
    folder: Path, entries: Iterable[Mapping[str, Any]], columns: list[str] | None = None
) -> Any:
    """The rows of these manifest entries as one pyarrow Table in run_id order (unchecked)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(folder / e["name"], columns=columns) for e in entries]
    if not tables:
        return pa.table({"run_id": pa.array([], pa.int64())})
    table = pa.concat_tables(tables)
    return table.sort_by("run_id") if "run_id" in table.column_names else table


def lock_holder(folder: str | Path) -> int | None:
    """The pid writing the dataset now, or None when no process holds its lock."""
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_chunk_size(chunk_size: int) -> int:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise DatasetError(f"--chunk-size: {chunk_size}; expected 1 to {MAX_CHUNK_SIZE:,} rows")
    return chunk_size


def dataset_path(folder: str | Path) -> Path:
    """``--out`` as a Path; an empty one (which would mean the current folder) is refused."""
    if isinstance(folder, str) and folder.strip() == "":
        raise DatasetError(f"--out: {folder!r} is empty; expected a dataset folder")
    return Path(folder)


class DatasetFolder:
    """Exclusive use of a dataset folder, for writing it (a context manager).

    Entering refuses a path that is not a folder, a folder that is neither empty nor
    a dataset and a folder another process writes; it then reads the card already
    there (``old_card``; None for a new dataset). A damaged card is moved to the
    quarantine with every chunk, which are then simulated again (``repairs`` says so).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = dataset_path(folder)
        self.old_card: dict[str, Any] | None = None
        self.repairs: list[str] = []
        self._fd: int | None = None

    def __enter__(self) -> DatasetFolder:
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise DatasetError(f"--out: {folder} is a file; expected a dataset folder")
        if folder.is_dir():
            foreign = sorted(p.name for p in folder.iterdir() if p.name not in _OWN)
            if foreign and not (folder / CARD).exists():
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise DatasetError(
                    f"--out: {folder} is not empty ({shown}) and is not a dataset (no {CARD}); "
                    "expected a new or empty folder, or a dataset to resume"
                )
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DatasetError(f"--out: cannot write to {folder} ({exc.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            self._release()
            raise DatasetError(
                f"--out: {folder} is being written by another process (pid {pid}); "
                "wait for it to finish or use another folder"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        try:
            self._read_old_card()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _read_old_card(self) -> None:
        path = self.folder / CARD
        if not path.exists():
            chunks = [
                f"{sub}/{p.name}"
                for sub in (RUNS, TRAJECTORIES)
                if (self.folder / sub).is_dir()
                for p in sorted((self.folder / sub).iterdir())
            ]
            if chunks:
                self.quarantine(chunks, f"{CARD} is missing, so they cannot be checked")
            return
        card, problem = _card_problem(path)
        if card is not None:
            self.old_card = card
            return
        if isinstance(problem, str) and problem.startswith("has format"):
            raise DatasetError(
                f"--out: {path} {problem}: made by another version of asset-twin; "
                "use another folder"
            )
        self.quarantine([CARD], str(problem))
        self._read_old_card()  # now without a card: its chunks follow it

    def quarantine(self, names: Iterable[str], why: str) -> None:
        """Move dataset files (relative names) to ``_quarantine/``, and say so."""
        names = list(names)
        if not names:
            return
        target = self.folder / QUARANTINE / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            src = self.folder / name
            if src.exists():
                os.replace(src, target / name.replace("/", "__"))
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        self.repairs.append(f"moved {shown} to {target}: {why}")

    def writer(
        self, card: dict[str, Any], schema: Mapping[str, str], *, chunk_size: int = 256
    ) -> DatasetWriter:
        """A writer that keeps the chunks of ``old_card`` that still check out."""
        kept: list[dict[str, Any]] = []
        if self.old_card is not None:
            found = check_folder(self.folder, self.old_card)
            for entry, why in found.damaged:
                files = [entry["name"]]
                if entry.get(TRAJECTORIES):
                    files.append(entry[TRAJECTORIES]["name"])
                self.quarantine(files, f"{entry['name']} {why}; its {entry['rows']} runs run again")
            self.quarantine(found.unlisted, "not in the manifest; their runs run again")
            kept = found.good
            card["created"] = self.old_card.get("created", card.get("created", _now()))
        for sub in (RUNS, TRAJECTORIES):
            if (self.folder / sub).is_dir():
                for tmp in (self.folder / sub).iterdir():
                    if _TMP.match(tmp.name):  # a chunk in flight when a writer was killed
                        tmp.unlink()
        return DatasetWriter(self, card=card, schema=schema, chunks=kept, chunk_size=chunk_size)


class DatasetWriter:
    """Appends run rows to a locked dataset folder in atomic, listed chunks.

    ``schema`` maps column name -> "float" | "int" | "bool" | "str"; the card
    describes the columns for people and later stages. Made by ``DatasetFolder.writer``.
    """

    def __init__(
        self,
        owner: DatasetFolder,
        *,
        card: dict[str, Any],
        schema: Mapping[str, str],
        chunks: list[dict[str, Any]],
        chunk_size: int = 256,
    ) -> None:
        check_chunk_size(chunk_size)
        self.folder = owner.folder
        self.schema = dict(schema)
        self.chunk_size = chunk_size
        self._rows: list[dict[str, Any]] = []
        self._traj: list[dict[str, Any]] = []
        self._traj_bytes = 0
        self.card = card
        self.card["chunks"] = chunks
        seqs = [int(m.group(1)) for e in chunks if (m := _CHUNK.match(Path(e["name"]).name))]
        self._next = max(seqs, default=-1) + 1
        self._update_card()

    def done_run_ids(self) -> set[int]:
        """Run ids of the listed chunks, each read from its file."""
        table = read_entries(self.folder, self.card["chunks"], ["run_id"])
        return set(table.column("run_id").to_pylist())

    def drop_runs(self, statuses: Iterable[str]) -> int:
        """Take the rows with these statuses out of the dataset, so they run again.

        Each chunk holding such rows is rewritten without them under a new name; the
        manifest then lists the new chunk instead of the old one, and only then is the
        old file deleted (a kill in between leaves it unlisted: the next resume moves it
        to the quarantine). Returns how many rows were taken out.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        wanted = set(statuses)
        dropped = 0
        for i, entry in enumerate(list(self.card["chunks"])):
            counts = entry.get("status", {})
            if not any(counts.get(s) for s in wanted):
                continue
            table = pq.read_table(self.folder / entry["name"])
            keep = pc.invert(pc.is_in(table.column("status"), pa.array(sorted(wanted))))
            kept = table.filter(keep)
            old_files = [entry["name"]]
            traj = None
            if entry.get(TRAJECTORIES):
                traj = pq.read_table(self.folder / entry[TRAJECTORIES]["name"])
                traj = traj.filter(pc.is_in(traj.column("run_id"), kept.column("run_id")))
                old_files.append(entry[TRAJECTORIES]["name"])
            self.card["chunks"][i] = self._land(kept, traj)
            self._update_card()
            for name in old_files:
                (self.folder / name).unlink()
            dropped += table.num_rows - kept.num_rows
        return dropped

    def add(self, row: dict[str, Any], trajectory: Mapping[str, Any] | None = None) -> None:
        self._rows.append(row)
        if trajectory is not None:
            arrays = {k: np.asarray(v, dtype=float) for k, v in trajectory.items()}
            self._traj.append({"run_id": row["run_id"], **arrays})
            self._traj_bytes += sum(a.nbytes for a in arrays.values())
        if len(self._rows) >= self.chunk_size or self._traj_bytes >= MAX_BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        import pyarrow as pa

        types = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "str": pa.string()}
        columns = {
            name: pa.array([r.get(name) for r in self._rows], type=types[kind])
            for name, kind in self.schema.items()
        }
        traj = None
        if self._traj:
            traj_cols = {"run_id": pa.array([t["run_id"] for t in self._traj], pa.int64())}
            for key in self._traj[0]:
                if key != "run_id":
                    traj_cols[key] = pa.array(
                        [t[key] for t in self._traj], type=pa.list_(pa.float64())
                    )
            traj = pa.table(traj_cols)
        self.card["chunks"].append(self._land(pa.table(columns), traj))
        self._rows.clear()
        self._traj.clear()
        self._traj_bytes = 0
        self._update_card()

    def _land(self, runs: Any, trajectories: Any | None) -> dict[str, Any]:
        """Write a runs chunk (and its trajectories) under a new name; its manifest entry.

        The trajectories land first and the runs chunk last; the caller then lists the
        entry in the card, which is what marks these runs as done.
        """
        stem = f"{self._next:06d}-{secrets.token_hex(4)}.parquet"
        self._next += 1
        ids = runs.column("run_id").to_pylist()
        status = runs.column("status").to_pylist()
        entry: dict[str, Any] = {
            "name": f"{RUNS}/{stem}",
            "rows": runs.num_rows,
            "first_run_id": min(ids, default=-1),
            "last_run_id": max(ids, default=-1),
            "status": {s: status.count(s) for s in STATUSES if s in status},
        }
        if trajectories is not None:
            self._write(trajectories, f"{TRAJECTORIES}/{stem}")
            entry[TRAJECTORIES] = _file_entry(self.folder, f"{TRAJECTORIES}/{stem}")
        self._write(runs, entry["name"])
        entry.update(_file_entry(self.folder, entry["name"]))
        return entry

    def _write(self, table: Any, name: str) -> None:
        import pyarrow.parquet as pq

        final = self.folder / name
        final.parent.mkdir(exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp")
        with _naming(final):
            pq.write_table(table, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)

    def _update_card(self, **updates: Any) -> None:
        totals = {s: 0 for s in STATUSES}
        for entry in self.card["chunks"]:
            for s, count in entry.get("status", {}).items():
                totals[s] = totals.get(s, 0) + int(count)
        rows = sum(int(e["rows"]) for e in self.card["chunks"])
        total = int(self.card["doe"]["points"])
        totals.update(rows=rows, failed=rows - totals["ok"], pending=total - rows)
        self.card.update(updates, counts=totals, updated=_now(), complete=rows >= total)
        write_json_atomic(self.folder / CARD, self.card)

    def finish(self, **card_updates: Any) -> dict[str, Any]:
        """Flush and update the card's counts."""
        self.flush()
        self._update_card(**card_updates)
        return self.card


def result_row(
    result: RunResult, values: Mapping[str, Any], stop_time: float, kpi_names: Iterable[str]
) -> dict[str, Any]:
    """One dataset row: the run's inputs, outcome and KPIs (NaN when it failed)."""
    row: dict[str, Any] = dict(values)
    row.update(
        run_id=result.run_id,
        status=result.status,
        message=result.message,
        wall_time=result.wall_time,
        stop_time=stop_time,
    )
    for name in kpi_names:
        row[name] = result.kpis.get(name, float("nan"))
    return row

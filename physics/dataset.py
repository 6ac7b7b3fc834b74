"""Datasets: a folder of Parquet chunks plus ``dataset.json``.

    DIR/dataset.json             the card: spec, FMU, DOE, counts, columns
    DIR/runs-000000.parquet      one row per run, failed runs included
    DIR/traj-000000.parquet      optional: output trajectories on the sampling grid

Every chunk is written to a temporary name and renamed into place, so a reader
(or a resumed study) never sees half a chunk; a killed study loses at most the
rows it had not flushed yet. ``run_id`` is the run's index in the design:
resuming skips the ids already on disk, so no row is ever written twice.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from physics.runner import STATUSES, RunResult

CARD = "dataset.json"
FORMAT = "asset-twin-dataset/1"
_CHUNK = re.compile(r"^runs-(\d{6})\.parquet$")
META_COLUMNS = ("run_id", "status", "message", "wall_time", "stop_time")


class DatasetError(ValueError):
    """A dataset folder that cannot be used as asked."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_card(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CARD
    if not path.is_file():
        raise DatasetError(f"{folder}: not a dataset (no {CARD})")
    card: dict[str, Any] = json.loads(path.read_text())
    if card.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {card.get('format')!r}, expected {FORMAT!r}")
    return card


def chunk_files(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("runs-*.parquet") if _CHUNK.match(p.name))


def read_runs(folder: str | Path, columns: list[str] | None = None) -> Any:
    """All rows of a dataset as one pyarrow Table, in run_id order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = chunk_files(folder)
    if not files:
        return pa.table({"run_id": pa.array([], pa.int64())})
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
    if "run_id" in table.column_names:
        table = table.sort_by("run_id")
    return table


class DatasetWriter:
    """Appends run rows to a dataset folder in atomic chunks.

    ``schema`` maps column name -> "float" | "int" | "bool" | "str"; the card
    describes the columns for people and later stages.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        card: dict[str, Any],
        schema: Mapping[str, str],
        chunk_size: int = 256,
    ) -> None:
        if chunk_size < 1:
            raise DatasetError(f"chunk_size: {chunk_size} must be >= 1")
        self.folder = Path(folder)
        self.schema = dict(schema)
        self.chunk_size = chunk_size
        self._rows: list[dict[str, Any]] = []
        self._traj: list[dict[str, Any]] = []
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".*.tmp"):  # a chunk in flight when a run was killed
            stale.unlink()
        existing = chunk_files(self.folder)
        self._next = int(_CHUNK.match(existing[-1].name).group(1)) + 1 if existing else 0  # type: ignore[union-attr]
        for orphan in self.folder.glob("traj-*.parquet"):  # its runs chunk never landed
            if not (self.folder / orphan.name.replace("traj-", "runs-")).exists():
                orphan.unlink()
        self.card = card
        write_json_atomic(self.folder / CARD, card)

    def done_run_ids(self) -> set[int]:
        table = read_runs(self.folder, columns=["run_id"])
        return set(table.column("run_id").to_pylist())

    def add(self, row: dict[str, Any], trajectory: Mapping[str, Any] | None = None) -> None:
        self._rows.append(row)
        if trajectory is not None:
            self._traj.append(
                {
                    "run_id": row["run_id"],
                    **{k: np.asarray(v, dtype=float) for k, v in trajectory.items()},
                }
            )
        if len(self._rows) >= self.chunk_size:
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
        name = f"runs-{self._next:06d}.parquet"
        if self._traj:
            traj_cols = {"run_id": pa.array([t["run_id"] for t in self._traj], pa.int64())}
            for key in self._traj[0]:
                if key != "run_id":
                    traj_cols[key] = pa.array(
                        [t[key] for t in self._traj], type=pa.list_(pa.float64())
                    )
            self._write(pa.table(traj_cols), name.replace("runs-", "traj-"))
        # The runs chunk lands last: it is what marks these runs as done.
        self._write(pa.table(columns), name)
        self._next += 1
        self._rows.clear()
        self._traj.clear()

    def _write(self, table: Any, name: str) -> None:
        import pyarrow.parquet as pq

        tmp = self.folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / name)

    def finish(self, **card_updates: Any) -> dict[str, Any]:
        """Flush, count rows by status, and update the card."""
        self.flush()
        status = (
            read_runs(self.folder, columns=["status"]).column("status").to_pylist()
            if chunk_files(self.folder)
            else []
        )
        counts = {s: status.count(s) for s in STATUSES}
        total = self.card["doe"]["points"]
        counts.update(
            rows=len(status), failed=len(status) - counts["ok"], pending=total - len(status)
        )
        self.card.update(
            card_updates, counts=counts, updated=_now(), complete=counts["pending"] == 0
        )
        write_json_atomic(self.folder / CARD, self.card)
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

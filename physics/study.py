"""A study: a twin spec's DOE simulated into a dataset, resumable.

``generate`` is what ``twin data generate`` runs. Running the same command
again on the same folder resumes: the card must describe the same study (spec
hash, FMU sha256, DOE method, seed and size) and only run ids not yet on disk
are simulated.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from physics.dataset import (
    FORMAT,
    DatasetError,
    DatasetFolder,
    DatasetWriter,
    _now,
    check_chunk_size,
    dataset_path,
    result_row,
)
from physics.progress import Progress
from physics.runner import KpiDef, LocalPool, PoolOptions, RunResult, SimulationJob, Task
from physics.spec import TwinSpec
from physics.workorder import OrderError

# One run's trajectories are sent whole from its worker: at most this many values
# (160 MB); longer runs need a coarser output grid.
MAX_TRAJECTORY_VALUES = 20_000_000
# Failures a longer timeout or a fixed FMU may cure; "invalid" rows are the design's own.
RETRYABLE = ("error", "nan", "timeout", "crash")
_TYPES = {"real": "float", "integer": "int", "boolean": "bool", "categorical": "str"}


@dataclass(frozen=True)
class StudyResult:
    folder: Path
    card: dict[str, Any]
    ran: int  # runs simulated by this call (not those resumed from disk)
    skipped: int  # runs already on disk
    repairs: tuple[str, ...] = ()  # what resuming moved to the quarantine, and why
    retried: int = 0  # failed rows taken out to run again (--retry)


def _fmpy_version() -> str:
    try:
        return importlib.metadata.version("fmpy")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def columns_of(spec: TwinSpec, catalogue: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """Parquet types and card descriptions of the dataset's columns."""
    schema: dict[str, str] = {
        "run_id": "int",
        "status": "str",
        "message": "str",
        "wall_time": "float",
        "stop_time": "float",
    }
    described: dict[str, Any] = {
        "run_id": {"role": "meta", "description": "index of the run in the design"},
        "status": {
            "role": "meta",
            "choices": ["ok", "error", "nan", "timeout", "crash", "invalid"],
        },
        "message": {"role": "meta", "description": "why the run failed"},
        "wall_time": {"role": "meta", "unit": "s"},
        "stop_time": {"role": "meta", "unit": "s"},
    }
    for key, inp in spec.inputs.items():
        schema[key] = _TYPES[inp.kind]
        entry: dict[str, Any] = {
            "role": "input",
            "source": inp.source,
            "variable": inp.variable,
            "kind": inp.kind,
        }
        if inp.unit:
            entry["unit"] = inp.unit
        if inp.kind in ("real", "integer"):
            entry.update(min=inp.min, max=inp.max)
        if inp.kind == "categorical":
            entry["choices"] = inp.choice_names
        described[key] = entry
    if spec.quantity is not None:
        schema["quantity"] = "int" if spec.quantity.integer else "float"
        described["quantity"] = {
            "role": "input",
            "source": "order",
            "unit": spec.quantity.unit,
            "min": spec.quantity.min,
            "max": spec.quantity.max,
        }
    for name, kpi in spec.kpis.items():
        schema[name] = "float"
        described[name] = {
            "role": "kpi",
            "kpi_role": kpi.role,
            "unit": kpi.unit,
            "variable": kpi.variable,
            "reduction": kpi.reduction,
        }
    return schema, described


def _fmu_info(twin: Any, fmu_path: Path) -> dict[str, Any]:
    """What a dataset card says of its FMU."""
    return {
        "path": str(fmu_path),
        "sha256": twin.sha256,
        "guid": twin.guid,
        "model_name": twin.name,
        "fmi_version": twin.model_description.fmiVersion,
        "interface": twin.interface,
    }


def _same_study(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    checks = [
        ("spec.hash", old["spec"]["hash"], new["spec"]["hash"]),
        ("fmu.sha256", old["fmu"]["sha256"], new["fmu"]["sha256"]),
    ]
    for key in ("method", "seed", "n", "levels", "emphasis"):
        checks.append((f"doe.{key}", old["doe"].get(key), new["doe"].get(key)))
    checks.append(
        (
            "simulation.trajectories",
            old["simulation"].get("trajectories"),
            new["simulation"].get("trajectories"),
        )
    )
    return [f"{name}: the folder has {a!r}, this command {b!r}" for name, a, b in checks if a != b]


def job_for(
    spec: TwinSpec,
    fmu_path: Path,
    trajectories: tuple[str, ...],
    start_time: float = 0.0,
    fmu_info: dict[str, Any] | None = None,
) -> SimulationJob:
    """What every run of the spec's study shares. With the card's ``fmu_info``
    (``_fmu_info``), the FMU is unpacked once into the cache for all workers and runs
    through the interface the card records."""
    from physics.fmu._adapter import unpack_once

    sha256 = None if fmu_info is None else fmu_info["sha256"]
    interface = spec.fmu.interface if fmu_info is None else fmu_info["interface"]
    kpis = tuple(KpiDef(name, k.variable, k.reduction, k.limit) for name, k in spec.kpis.items())
    return SimulationJob(
        str(fmu_path),
        spec.fmu.step_size,
        spec.fmu.sampling_interval,
        kpis,
        trajectories,
        start_time=start_time,
        unpacked=None if sha256 is None else str(unpack_once(fmu_path, sha256)),
        interface=interface,
        tolerance=spec.fmu.tolerance,
    )


def generate(
    spec: TwinSpec,
    out: str | Path,
    *,
    n: int,
    method: str = "lhs",
    seed: int = 0,
    levels: int | None = None,
    pool: PoolOptions | None = None,
    chunk_size: int = 256,
    trajectories: bool = False,
    progress: bool = True,
    executor: Callable[[SimulationJob, PoolOptions], Any] | None = None,
    retry: tuple[str, ...] = (),
    emphasis: str = "uniform",
) -> StudyResult:
    """Simulate the spec's DOE into ``out``; resume if ``out`` holds this study already.

    ``emphasis``: see ``physics.doe.warp`` (verification designs).

    ``retry``: statuses (of RETRYABLE) whose rows are simulated again; the others stay.
    """
    bad = [s for s in retry if s not in RETRYABLE]
    if bad:
        raise DatasetError(
            f"--retry: {', '.join(map(repr, bad))} cannot be retried; expected some of "
            f"{', '.join(RETRYABLE)}"
        )
    from physics.doe import make_design
    from physics.run import fmu_path_of, open_twin, start_time_of

    pool = (pool or PoolOptions()).checked()
    out = dataset_path(out)
    check_chunk_size(chunk_size)
    design = make_design(spec, n, method=method, seed=seed, levels=levels, emphasis=emphasis)
    fmu_path = fmu_path_of(spec)
    with open_twin(spec) as twin:  # reads the FMU once here, and checks the spec against it
        catalogue = twin.catalogue
        fmu_info = _fmu_info(twin, fmu_path)
        start_time = start_time_of(spec, twin)
        traj_outputs = (
            tuple(dict.fromkeys(k.variable for k in spec.kpis.values())) if trajectories else ()
        )
    schema, described = columns_of(spec, catalogue)
    card: dict[str, Any] = {
        "format": FORMAT,
        "spec": {"name": spec.name, "version": spec.version, "hash": spec.spec_hash},
        "fmu": fmu_info,
        "fmpy_version": _fmpy_version(),
        "doe": {
            "method": method,
            "seed": seed,
            "n": n,
            "levels": levels,
            "points": len(design.points),
            "candidates": design.candidates,
            "rejected": design.rejected,
            "factors": list(design.factors),
            # only where used, so the cards of earlier studies still compare equal
            **({"emphasis": emphasis} if emphasis != "uniform" else {}),
        },
        "simulation": {
            "start_time": start_time,
            "step_size": spec.fmu.step_size,
            "output_interval": spec.fmu.sampling_interval,
            "trajectories": list(traj_outputs),
        },
        "runner": {
            "executor": "local" if executor is None else "dask",
            "workers": pool.n_workers,
            "timeout": pool.timeout,
            "max_runs_per_worker": pool.max_runs_per_worker,
        },
        "columns": described,
        "created": _now(),
    }
    # Connect to the executor before anything is written: a bad address changes nothing.
    job = job_for(spec, fmu_path, traj_outputs, start_time, fmu_info)
    runner = LocalPool(job, pool) if executor is None else executor(job, pool)
    with DatasetFolder(out) as folder:
        if folder.old_card is not None:
            mismatch = _same_study(folder.old_card, card)
            if mismatch:
                raise DatasetError(
                    f"{out} holds a different study; use another --out folder:\n  "
                    + "\n  ".join(mismatch)
                )
        writer = folder.writer(card, schema, chunk_size=chunk_size)
        retried = writer.drop_runs(retry) if retry else 0
        done = writer.done_run_ids()
        todo = [(run_id, point) for run_id, point in enumerate(design.points) if run_id not in done]
        bar = Progress(
            len(design.points), label=f"{spec.name} {method}", done=len(done), enabled=progress
        )
        try:
            ran = _simulate(
                spec,
                catalogue,
                runner,
                writer,
                todo,
                bar,
                start_time=start_time,
                traj_columns=len(traj_outputs),
            )
        finally:
            # Whatever ends the loop (done, an error, Ctrl-C), what was simulated is kept.
            card = writer.finish()
    return StudyResult(
        out, card, ran=ran, skipped=len(done), repairs=tuple(folder.repairs), retried=retried
    )


def _simulate(
    spec: TwinSpec,
    catalogue: Any,
    runner: Any,
    writer: DatasetWriter,
    todo: list[tuple[int, dict[str, Any]]],
    bar: Progress,
    extra: dict[str, Any] | None = None,
    start_time: float = 0.0,
    traj_columns: int = 0,
) -> int:
    """Run ``(run_id, point)`` pairs and write every outcome as a row; returns the count."""
    from physics.run import stop_before_start

    tasks: list[Task] = []
    stop_times: dict[int, float] = {}
    invalid: list[tuple[int, str]] = []
    points = dict(todo)
    for run_id, point in todo:
        values = {k: v for k, v in point.items() if k != "quantity"}
        try:
            case = spec.case_from_order(values, point.get("quantity"), catalogue)
            if not case.stop_time > start_time:
                raise OrderError([stop_before_start(spec, case.stop_time, start_time)])
            if traj_columns:
                samples = (case.stop_time - start_time) / spec.fmu.sampling_interval + 2
                if samples * (traj_columns + 1) > MAX_TRAJECTORY_VALUES:
                    raise OrderError([
                        f"--trajectories: {samples:,.0f} samples of {traj_columns} variables "
                        f"up to stop_time {case.stop_time:g} s are more than "
                        f"{MAX_TRAJECTORY_VALUES:,} values per run; use a longer "
                        "fmu.output_interval or no --trajectories"
                    ])  # fmt: skip
        except OrderError as exc:
            invalid.append((run_id, "; ".join(exc.problems)))
            continue
        stop_times[run_id] = case.stop_time
        tasks.append(Task(run_id, case.start_values, case.stop_time))
    kpi_names = list(spec.kpis)
    extra = extra or {}
    for run_id, message in invalid:
        row = result_row(
            RunResult(run_id, "invalid", message), points[run_id], float("nan"), kpi_names
        )
        writer.add({**row, **extra})
        bar.update(failed=1)
    with bar:
        for result in runner.run(tasks):
            row = result_row(result, points[result.run_id], stop_times[result.run_id], kpi_names)
            writer.add({**row, **extra}, result.trajectory)
            bar.update(failed=int(result.status != "ok"))
    return len(tasks) + len(invalid)


ROUND = "round"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def extend(
    spec: TwinSpec,
    out: str | Path,
    points: list[dict[str, Any]],
    *,
    label: str,
    seed: int = 0,
    pool: PoolOptions | None = None,
    chunk_size: int = 256,
    progress: bool = True,
) -> StudyResult:
    """Append the runs of ``points`` to a growing dataset (adaptive sampling), one round per call.

    The round's points are written to ``rounds/<label>.json`` before any run, so a killed
    call resumes with the same points, whatever it is passed the second time; run ids
    continue from the rounds before; every row carries its round in the ``round`` column,
    and the card's ``doe.rounds`` lists each round with its label, seed and run ids.
    """
    import json

    from physics.dataset import write_json_atomic
    from physics.run import fmu_path_of, open_twin, start_time_of

    pool = (pool or PoolOptions()).checked()
    out = dataset_path(out)
    check_chunk_size(chunk_size)
    fmu_path = fmu_path_of(spec)
    with open_twin(spec) as twin:
        catalogue = twin.catalogue
        fmu_info = _fmu_info(twin, fmu_path)
        start_time = start_time_of(spec, twin)
    schema, described = columns_of(spec, catalogue)
    schema[ROUND] = "int"
    described[ROUND] = {"role": "meta", "description": "the adaptive round that proposed the run"}
    with DatasetFolder(out) as folder:
        if folder.old_card is not None:
            card = folder.old_card
            if card["doe"]["method"] != "adaptive":
                raise DatasetError(
                    f"{out} holds a {card['doe']['method']} study, not an adaptive one; "
                    "use another folder"
                )
            mismatch = [
                f"{name}: the folder has {a!r}, this command {b!r}"
                for name, a, b in (
                    ("spec.hash", card["spec"]["hash"], spec.spec_hash),
                    ("fmu.sha256", card["fmu"]["sha256"], fmu_info["sha256"]),
                )
                if a != b
            ]
            if mismatch:
                raise DatasetError(f"{out} holds a different study:\n  " + "\n  ".join(mismatch))
        else:
            card = {
                "format": FORMAT,
                "spec": {"name": spec.name, "version": spec.version, "hash": spec.spec_hash},
                "fmu": fmu_info,
                "fmpy_version": _fmpy_version(),
                "doe": {"method": "adaptive", "seed": seed, "n": 0, "levels": None, "points": 0,
                        "candidates": 0, "rejected": 0, "factors": [], "rounds": []},
                "simulation": {
                    "start_time": start_time,
            "step_size": spec.fmu.step_size,
                    "output_interval": spec.fmu.sampling_interval,
                    "trajectories": [],
                },
                "runner": {"executor": "local", "workers": pool.n_workers, "timeout": pool.timeout,
                           "max_runs_per_worker": pool.max_runs_per_worker},
                "columns": described,
                "created": _now(),
            }  # fmt: skip
        rounds: list[dict[str, Any]] = card["doe"]["rounds"]
        file = out / "rounds" / f"{label}.json"
        known = next((r for r in rounds if r["label"] == label), None)
        if known is not None and file.is_file():
            points = json.loads(file.read_text())["points"]
            first, index = known["first_run_id"], known["round"]
        else:
            first = sum(r["runs"] for r in rounds)
            index = len(rounds)
            file.parent.mkdir(parents=True, exist_ok=True)
            plain = [{k: _plain(v) for k, v in p.items()} for p in points]
            write_json_atomic(file, {"label": label, "round": index, "first_run_id": first,
                                     "seed": seed, "points": plain})  # fmt: skip
            rounds.append(
                {"round": index, "label": label, "seed": seed, "first_run_id": first,
                 "runs": len(points)}
            )  # fmt: skip
        total = sum(r["runs"] for r in rounds)
        card["doe"].update(n=total, points=total, rounds=rounds)
        runner = LocalPool(
            job_for(spec, fmu_path, (), start_time, fmu_info),
            pool,
        )
        writer = folder.writer(card, schema, chunk_size=chunk_size)
        done = writer.done_run_ids()
        todo = [(first + i, p) for i, p in enumerate(points) if first + i not in done]
        skipped = len(points) - len(todo)
        bar = Progress(len(points), label=f"{spec.name} {label}", done=skipped, enabled=progress)
        try:
            ran = _simulate(
                spec,
                catalogue,
                runner,
                writer,
                todo,
                bar,
                extra={ROUND: index},
                start_time=start_time,
            )
        finally:
            card = writer.finish()
    return StudyResult(out, card, ran=ran, skipped=skipped, repairs=tuple(folder.repairs))

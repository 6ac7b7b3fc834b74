"""``twin data``: generate a dataset from a twin spec's DOE, and describe one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import click

from physics._cli_errors import handle_errors


@click.group()
def data() -> None:
    """Generate and inspect simulation datasets."""


@data.command("generate")
@click.option(
    "--spec", "spec_path", required=True, type=click.Path(dir_okay=False), help="Twin spec (YAML)."
)
@click.option("--n", "n", required=True, type=int, help="Number of DOE points.")
@click.option(
    "--doe",
    "method",
    default="lhs",
    show_default=True,
    type=click.Choice(["lhs", "sobol", "halton", "grid", "random"]),
    help="Design of experiments.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="DOE seed.")
@click.option("--levels", type=int, help="Levels per continuous factor (grid only).")
@click.option(
    "--emphasis",
    default="uniform",
    show_default=True,
    help="Where a sampled design puts its points: uniform, corners, interior, or a mixture "
    "EMPHASIS:SHARE (corners:0.3: three tenths corner-heavy, the rest uniform).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Dataset folder; the same command again resumes it.",
)
@click.option(
    "--workers", default=0, show_default=True, type=int, help="Worker processes (0: one per core)."
)
@click.option(
    "--timeout",
    default=120.0,
    show_default=True,
    type=float,
    help="Wall-clock limit per run, seconds.",
)
@click.option(
    "--chunk-size",
    default=256,
    show_default=True,
    type=int,
    help="Rows per Parquet chunk (a kill loses at most one chunk).",
)
@click.option("--trajectories", is_flag=True, help="Also store the KPI variables' trajectories.")
@click.option(
    "--executor",
    default="local",
    show_default=True,
    type=click.Choice(["local", "dask"]),
    help="Where the runs execute.",
)
@click.option("--address", help="Dask scheduler address (tcp://host:port) for --executor dask.")
@click.option(
    "--retry",
    default="",
    metavar="STATUSES",
    help="Simulate the rows with these statuses again (e.g. timeout,crash); the rest stay.",
)
@click.option("--no-progress", is_flag=True, help="No progress output.")
@handle_errors
def generate_cmd(
    spec_path: str,
    n: int,
    method: str,
    seed: int,
    levels: int | None,
    emphasis: str,
    out: str,
    workers: int,
    timeout: float,
    chunk_size: int,
    trajectories: bool,
    executor: str,
    address: str | None,
    retry: str,
    no_progress: bool,
) -> None:
    """Simulate the spec's DOE into a dataset folder (Parquet chunks + dataset.json)."""
    from physics.runner import PoolOptions
    from physics.spec import load_spec
    from physics.study import generate

    if executor == "dask" and not address:
        raise click.UsageError("--executor dask needs --address tcp://HOST:PORT")
    spec = load_spec(spec_path)
    pool = PoolOptions(workers=workers, timeout=timeout)
    dask_executor = None
    if executor == "dask":
        from physics.dask_executor import dask_executor_for

        dask_executor = dask_executor_for(address or "")
    result = generate(
        spec,
        out,
        n=n,
        method=method,
        seed=seed,
        levels=levels,
        emphasis=emphasis,
        pool=pool,
        chunk_size=chunk_size,
        trajectories=trajectories,
        progress=not no_progress,
        executor=dask_executor,
        retry=tuple(s.strip() for s in retry.split(",") if s.strip()),
    )
    for line in result.repairs:
        click.secho(f"warning: {line}", fg="yellow", err=True)
    if result.retried:
        click.echo(f"{result.retried} failed rows taken out to run again (--retry {retry})")
    c = result.card["counts"]
    click.echo(
        f"{result.folder}: {c['rows']} rows ({c['ok']} ok, {c['failed']} failed); "
        f"simulated {result.ran} now, {result.skipped} were already on disk"
    )


@data.command("info")
@click.argument("folder", type=click.Path(file_okay=False))
@handle_errors
def info_cmd(folder: str) -> None:
    """Describe a dataset: study, FMU, DOE, counts, columns, failures."""
    from physics.dataset import (
        QUARANTINE,
        RUNS,
        check_folder,
        lock_holder,
        read_card,
        read_entries,
    )

    card = read_card(folder)
    found = check_folder(folder, card)
    spec, fmu, doe, sim = card["spec"], card["fmu"], card["doe"], card["simulation"]
    click.echo(f"dataset    {Path(folder).resolve()}")
    click.echo(f"spec       {spec['name']} v{spec['version']}  hash {spec['hash'][:16]}")
    click.echo(
        f"fmu        {fmu['model_name']} FMI {fmu['fmi_version']}  "
        f"sha256 {fmu['sha256'][:16]}  guid {fmu['guid']}"
    )
    click.echo(f"fmpy       {card['fmpy_version']}")
    if doe.get("rounds") is not None:  # grown round by round (adaptive sampling)
        rounds = ", ".join(f"{r['label']} {r['runs']}" for r in doe["rounds"])
        click.echo(f"doe        adaptive  {doe['points']} points in rounds: {rounds}")
    else:
        click.echo(
            f"doe        {doe['method']} seed {doe['seed']}  {doe['points']} points "
            f"({doe['candidates']} drawn, {doe['rejected']} rejected by constraints)"
        )
    click.echo(
        f"simulation step {sim['step_size']} s, sampled every {sim['output_interval']} s"
        + (f", trajectories of {', '.join(sim['trajectories'])}" if sim["trajectories"] else "")
    )
    counts: Counter[str] = Counter()
    for entry in found.good:
        counts.update(entry.get("status", {}))
    writer = lock_holder(folder)
    if writer is not None:
        state = f"being written now (pid {writer})"
    elif found.rows >= doe["points"]:
        state = "complete"
    else:
        state = "INCOMPLETE (run the same command to resume)"
    click.echo(f"runs       {found.rows} of {doe['points']} on disk, {state}")
    click.echo(
        "           "
        + "  ".join(
            f"{s} {counts[s]}" for s in ("ok", "error", "nan", "timeout", "crash", "invalid")
        )
    )
    click.echo(
        f"files      {len(found.good)} Parquet chunks in {RUNS}/, updated {card.get('updated')}"
    )
    for line in found.problems():
        click.secho(f"damaged    {line}", fg="yellow")
    if found.damaged or found.unlisted:
        click.echo(
            "           the same `twin data generate` command moves these to "
            f"{QUARANTINE}/ and simulates their runs again; the rows below leave them out"
        )
    table = read_entries(Path(folder), found.good)
    click.echo(f"\n{'column':28s} {'role':12s} {'unit':8s} {'bounds':>22s}  observed")
    for name, col in card["columns"].items():
        if col["role"] == "meta":
            continue
        bounds = ""
        if "min" in col:
            bounds = f"[{col['min']:g}, {col['max']:g}]"
        elif "choices" in col:
            bounds = f"{len(col['choices'])} choices"
        click.echo(
            f"{name:28s} {col.get('kpi_role', col['role']):12s} {col.get('unit', ''):8s} "
            f"{bounds:>22s}  {_observed(table, name, col)}"
        )
    if "status" in table.column_names:
        failed = [
            (s, m)
            for s, m in zip(
                table.column("status").to_pylist(), table.column("message").to_pylist(), strict=True
            )
            if s != "ok"
        ]
        if failed:
            click.echo("\nfailures (most common first)")
            for (status, message), count in Counter(failed).most_common(5):
                click.echo(f"  {count:5d} x {status}: {message[:110]}")


def _observed(table: Any, name: str, col: dict[str, Any]) -> str:
    import numpy as np

    if name not in table.column_names or table.num_rows == 0:
        return ""
    values = table.column(name).to_pylist()
    if col.get("kind") in ("categorical", "boolean"):
        counts = Counter(values)
        return ", ".join(f"{k} {v}" for k, v in counts.most_common(5))
    arr = np.array([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return "no finite values"
    return f"{arr.min():.4g} .. {arr.max():.4g} (mean {arr.mean():.4g})"

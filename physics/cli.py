"""The ``twin`` command line.

    twin fmu build [MODEL ...] [--force]
    twin fmu info MODEL|FILE.fmu
    twin fmu validate [MODEL|FILE.fmu ...]
    twin fmu simulate --spec SPEC [--order FILE] [--set NAME=VALUE ...] [--quantity N]
                      [--csv FILE] [--plot FILE] [--json]

Other packages add their own command groups (``twin train``, ``twin serve``...)
through the ``asset_twin.commands`` entry-point group; they are imported only
when one of their commands runs or help is asked for, so ``twin fmu ...`` never
imports torch.

Exit codes: 0 success, 1 a build or simulation failed, 2 bad input (spec,
order, arguments); bad input is reported before any work is done.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from physics._cli_data import data
from physics._cli_errors import handle_errors as _handle_errors
from physics._cli_machine import machine

PLUGIN_GROUP = "asset_twin.commands"


class _PluginGroup(click.Group):
    """Our own command groups, plus those other packages declare as entry points."""

    def _plugins(self) -> dict[str, Any]:
        from importlib.metadata import entry_points

        return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = self._plugins().get(cmd_name)
        if plugin is None:
            return None
        loaded = plugin.load()
        if not isinstance(loaded, click.Command):
            raise click.ClickException(f"entry point {plugin.value} is not a click command")
        return loaded


@click.group(cls=_PluginGroup)
@click.version_option(package_name="asset-twin")
def main() -> None:
    """asset-twin: physics FMUs, their surrogates, and decisions for the MES."""


@main.group()
def fmu() -> None:
    """Build, inspect, validate and simulate FMUs."""


def _resolve(target: str) -> Path:
    """A .fmu file as given, or one of our models by name (built when needed)."""
    from physics.fmu import fmu_for_model

    path = Path(target)
    if path.suffix == ".fmu":
        if not path.is_file():
            raise FileNotFoundError(f"{target}: no such FMU file")
        return path
    return fmu_for_model(target)


@fmu.command("build")
@click.argument("models", nargs=-1)
@click.option("--force", is_flag=True, help="Rebuild even when the cache holds these sources.")
@_handle_errors
def fmu_build(models: tuple[str, ...], force: bool) -> None:
    """Compile models under physics/models into FMUs (all of them, and the native
    driver that steps FMUs in C, by default)."""
    from physics.fmu import available_models, build_model

    for name in models or available_models():
        built = build_model(name, force=force)
        state = "cached" if built.cached else "built "
        click.echo(f"{state} {built.name:12s} {built.source_hash[:12]}  {built.path}")
    if not models:
        from physics.fmu._build import build_driver

        click.echo(f"driver {'native':12s} {'':12s}  {build_driver(force=force)}")


@fmu.command("info")
@click.argument("target")
@_handle_errors
def fmu_info(target: str) -> None:
    """Describe an FMU: identity, experiment and variables with units and ranges."""
    from physics.fmu import file_sha256
    from physics.fmu._adapter import read_description
    from physics.variables import catalogue_from_model_description

    path = _resolve(target)
    md = read_description(path)
    catalogue = catalogue_from_model_description(md)
    kinds = [k for k, i in (("co-simulation", md.coSimulation),
                            ("model exchange", md.modelExchange)) if i is not None]  # fmt: skip
    click.echo(f"model      {md.modelName}  (FMI {md.fmiVersion} {' and '.join(kinds)})")
    if md.modelExchange is not None:
        how = (
            "runs through CVode with fmu.interface: model_exchange"
            if md.coSimulation is not None
            else "model exchange only: runs through CVode"
        )
        click.echo(
            f"           {how} (continuous states: {md.numberOfContinuousStates}, "
            f"event indicators: {md.numberOfEventIndicators})"
        )
    click.echo(f"file       {path}")
    click.echo(f"sha256     {file_sha256(path)}")
    click.echo(f"guid       {md.guid}")
    click.echo(f"generator  {md.generationTool}")
    if md.description:
        click.echo(f"about      {md.description}")
    exp = md.defaultExperiment
    if exp is not None:
        click.echo(
            f"experiment start {exp.startTime} s, stop {exp.stopTime} s, step {exp.stepSize} s"
        )
    groups: dict[str, list[Any]] = {}
    for v in catalogue.values():
        groups.setdefault(v.causality, []).append(v)
    causalities = ("input", "structuralParameter", "parameter", "calculatedParameter",
                   "output", "local")  # fmt: skip
    for causality in causalities:
        rows = groups.get(causality, [])
        if not rows:
            continue
        click.echo(f"\n{causality} ({len(rows)})")
        for v in rows:
            if v.items:
                rng = "{" + ", ".join(v.items) + "}"
            elif v.min is not None or v.max is not None:
                rng = f"[{_num(v.min, '..')}, {_num(v.max, '..')}]"
            else:
                rng = ""
            start = ""
            if v.start is not None:  # an enumeration's start by its item's name
                names = {value: name for name, value in v.items.items()}
                start = f"= {names.get(int(v.start), _num(v.start)) if names else _num(v.start)}"
            vtype = v.type + (f"[{'x'.join(map(str, v.shape))}]" if v.shape else "")
            note = "" if v.scalar_number or v.shape else "  (not sampled)"
            if v.shape:
                note = "  (array: not supported)"
            click.echo(
                f"  {v.name:30s} {vtype:11s} {v.unit or '':8s} {start:14s} {rng}{note}".rstrip()
            )


def _num(x: Any, missing: str = "") -> str:
    if x is None:
        return missing
    if isinstance(x, bool):
        return str(x).lower()
    return f"{x:g}" if isinstance(x, float) else str(x)


@fmu.command("validate")
@click.argument("targets", nargs=-1)
@_handle_errors
def fmu_validate(targets: tuple[str, ...]) -> None:
    """Check FMUs with fmpy's validation (all our models by default)."""
    from fmpy.validation import validate_fmu

    from physics.fmu import available_models

    failed = 0
    for target in targets or available_models():
        path = _resolve(target)
        problems = validate_fmu(str(path))
        if problems:
            failed += 1
            click.secho(f"FAIL {target}: {len(problems)} problem(s)", fg="red")
            for p in problems:
                click.echo(f"  - {p}")
        else:
            click.secho(f"ok   {target}: no problems ({path})", fg="green")
    if failed:
        sys.exit(1)


@fmu.command("simulate")
@click.option(
    "--spec", "spec_path", required=True, type=click.Path(dir_okay=False), help="Twin spec (YAML)."
)
@click.option(
    "--order",
    "order_path",
    type=click.Path(dir_okay=False),
    help="Work order file (YAML/JSON job order).",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set an input of the spec; overrides the order file. Repeatable.",
)
@click.option("--quantity", help="Planned quantity; overrides the order file.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write trajectories.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG plot.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_handle_errors
def fmu_simulate(
    spec_path: str,
    order_path: str | None,
    assignments: tuple[str, ...],
    quantity: str | None,
    csv_path: str | None,
    plot_path: str | None,
    as_json: bool,
) -> None:
    """Simulate one work order and print the KPIs of the twin spec."""
    from physics.orders import WorkOrder, load_order, parse_assignments
    from physics.run import open_twin, simulate_order
    from physics.spec import load_spec

    spec = load_spec(spec_path)
    order = load_order(order_path, spec) if order_path else WorkOrder(values={}, quantity=None)
    values = {**order.values, **parse_assignments(assignments)}
    qty = quantity if quantity is not None else order.quantity
    if qty is None and spec.quantity is not None and not _uses_quantity(spec):
        qty = spec.quantity.min  # a fixed horizon: any quantity will do
    with open_twin(spec) as twin:
        # The order is checked in full before the run: nothing is written for a bad one.
        result = simulate_order(spec, twin, values, qty)
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        result.trajectories.to_csv(csv_path)
    if plot_path:
        from physics.plot import plot_run

        title = f"{spec.name}: {order.job_order_id or 'work order'}, {_amount(spec, result.case)}"
        plot_run(result.trajectories, spec, plot_path, title=title, kpis=None)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "spec": spec.name,
                    "spec_hash": spec.spec_hash,
                    "job_order_id": order.job_order_id,
                    "quantity": result.case.quantity,
                    "stop_time": result.case.stop_time,
                    "values": result.case.values,
                    "kpis": {
                        k: {"value": v, "unit": spec.kpis[k].unit, "role": spec.kpis[k].role}
                        for k, v in result.kpis.items()
                    },
                },
                indent=2,
                default=str,
            )
        )
    else:
        _print_result(spec, order, result)
    for label, path in (("trajectories", csv_path), ("plot", plot_path)):
        if path:
            click.echo(f"{label}: {path}", err=as_json)


def _uses_quantity(spec: Any) -> bool:
    """Whether the stop time, a derived value or a constraint depends on the quantity."""
    exprs = [spec.stop_time_expr, *spec.derived_exprs.values(), *spec.constraint_exprs]
    return any("quantity" in e.names for e in exprs)


def _amount(spec: Any, case: Any) -> str:
    """The order's quantity in its unit ("30 parts"), or none for a fixed horizon."""
    if spec.quantity is None or not _uses_quantity(spec):
        return "fixed horizon"
    unit = spec.quantity.unit
    return f"{case.quantity:g} {unit}" if unit not in ("", "1") else f"quantity {case.quantity:g}"


def _print_result(spec: Any, order: Any, result: Any) -> None:
    case = result.case
    who = order.job_order_id or "work order"
    click.echo(
        f"{spec.name} | {who} | {_amount(spec, case)} | simulated {case.stop_time:.1f} s "
        f"({case.stop_time / 3600:.2f} h)"
    )
    click.echo(f"{'KPI':28s} {'value':>12s} {'unit':8s} {'role':12s} check")
    for name, value in result.kpis.items():
        kpi = spec.kpis[name]
        checks = []
        if name in spec.quality:
            q = spec.quality[name]
            checks.append(_limits_check(value, q.lsl, q.usl, q.characteristic_id))
        elif name in spec.maintenance:
            m = spec.maintenance[name]
            checks.append(
                f"{'below' if value < m.limit else 'REACHED'} limit {_num(m.limit)} ({m.action})"
            )
        if name in spec.feasibility:
            f = spec.feasibility[name]
            checks.append(_limits_check(value, f.min, f.max, "FEAS"))
        check = "; ".join(checks)
        click.echo(f"{name:28s} {value:12.5g} {kpi.unit:8s} {kpi.role:12s} {check}")


def _limits_check(value: float, low: float | None, high: float | None, label: str) -> str:
    """'OK DIM_DEV [..100]' or 'NotOK FEAS [0.5..1]': the verdict, what and the limits."""
    inside = (low is None or value >= low) and (high is None or value <= high)
    bounds = f"[{'' if low is None else _num(low)}..{'' if high is None else _num(high)}]"
    return f"{'OK' if inside else 'NotOK'} {label} {bounds}"


main.add_command(data)
main.add_command(machine)

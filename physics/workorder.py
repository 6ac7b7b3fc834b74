"""A work order becomes a simulation case: start values by FMU variable and a stop time.

Order values may come typed (JSON, YAML) or as text from a command line
("8000", "true", "steel_c45"); text is converted deliberately, and every
problem is reported at once in an ``OrderError``. ``None`` counts as not given.
Constraints and the stop time are checked once every single value is valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from physics._spec_checks import MAX_STEPS
from physics._spec_text import fmt, suggest
from physics.spec import DEFAULT_STOP, InputSpec, SpecError
from physics.variables import Catalogue, VariableInfo

if TYPE_CHECKING:
    from physics.spec import TwinSpec

__all__ = ["OrderError", "ResolvedOrder", "SimulationCase", "case_from_order", "resolve_order"]

FmuValue = float | int | bool


class OrderError(ValueError):
    """A work order the twin cannot run; ``problems`` are ``<field>: <problem>`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid work order:\n" + "\n".join(f"  {p}" for p in self.problems))


class ResolvedOrder(NamedTuple):
    """A valid work order at twin level: every input has a value, defaults filled in."""

    values: dict[str, Any]
    quantity: int | float | None
    stop_time: float


@dataclass(frozen=True, kw_only=True)
class SimulationCase:
    """One FMU run.

    ``start_values`` are keyed by FMU variable, enumeration choices as their
    integer value; ``inputs`` repeats those of FMU causality ``input`` (held
    constant over the run); ``values`` are the twin-level values by input id.
    """

    start_values: dict[str, FmuValue]
    stop_time: float
    inputs: dict[str, FmuValue]
    values: dict[str, Any]
    quantity: int | float | None


def resolve_order(spec: TwinSpec, values: Mapping[str, Any], quantity: Any) -> ResolvedOrder:
    """Check a work order against the spec alone (no FMU needed); OrderError lists problems."""
    problems: list[str] = []
    for key in values:
        if key not in spec.inputs:
            problems.append(
                f"{key}: unknown input{suggest(str(key), spec.inputs)}; "
                f"valid inputs are {', '.join(spec.inputs)}"
            )
    resolved: dict[str, Any] = {}
    for key, inp in spec.inputs.items():
        raw = values.get(key)
        if raw is None and inp.default is None:
            problems.append(f"{key}: missing (required, {inp.domain()})")
            continue
        try:
            resolved[key] = inp.coerce(inp.default if raw is None else raw)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    q = spec.quantity
    count = None
    if q is None:
        if quantity is not None:
            problems.append(f"quantity: {quantity!r} given, but this twin has no quantity")
    elif quantity is None:
        problems.append(
            f"quantity: missing (required, allowed range [{fmt(q.min)}, {fmt(q.max)}] {q.unit})"
        )
    else:
        try:
            count = q.coerce(quantity)
        except ValueError as exc:
            problems.append(f"quantity: {exc}")
    if problems:
        raise OrderError(problems)

    names = spec.namespace(resolved, count)
    for constraint, expr in zip(spec.constraints, spec.constraint_exprs, strict=True):
        if expr.evaluate(names) == 0.0:
            problems.append(f"constraint: {constraint.message} ({constraint.expr})")
    if DEFAULT_STOP in spec.stop_time_expr.names and spec.default_stop is None:
        problems.append(
            f"stop_time: {spec.stop_time!r} needs the FMU's default experiment stop time, "
            "which the FMU does not give (or was not read); write the stop time in the spec"
        )
        raise OrderError(problems)
    stop_time = float(spec.stop_time_expr.evaluate(names))
    if not (math.isfinite(stop_time) and stop_time > 0):
        problems.append(
            f"stop_time: {spec.stop_time!r} gives {fmt(stop_time)} s; "
            "it must be positive and finite"
        )
    elif (steps := stop_time / spec.fmu.step_size) > MAX_STEPS:
        problems.append(
            f"stop_time: {fmt(stop_time)} s is {steps:.3g} steps of fmu.step_size "
            f"{fmt(spec.fmu.step_size)} s, more than {MAX_STEPS:.0e}; use a larger step size"
        )
    if problems:
        raise OrderError(problems)
    return ResolvedOrder(resolved, count, stop_time)


def case_from_order(
    spec: TwinSpec, values: Mapping[str, Any], quantity: Any, catalogue: Catalogue
) -> SimulationCase:
    """The FMU run for a work order. Check the spec with ``spec.check_against`` first."""
    order = resolve_order(spec, values, quantity)
    start_values: dict[str, FmuValue] = {}
    inputs: dict[str, FmuValue] = {}
    for key, inp in spec.inputs.items():
        var = catalogue.get(inp.variable)
        if var is None:
            raise SpecError(
                [
                    f"inputs.{key}.variable: {inp.variable!r} is not a variable of "
                    "the FMU (run check_against first)"
                ],
                source=spec.name,
            )
        value = _fmu_value(key, inp, var, order.values[key], spec.name)
        start_values[var.name] = value
        if var.causality == "input":
            inputs[var.name] = value
    q = spec.quantity
    if q is not None and q.variable is not None and order.quantity is not None:
        var = catalogue.get(q.variable)
        if var is None:
            raise SpecError([f"quantity.variable: {q.variable!r} is not a variable of the FMU "
                             "(run check_against first)"], source=spec.name)  # fmt: skip
        amount: FmuValue = float(order.quantity) if var.type in ("Real", "Float64") else int(
            order.quantity)
        start_values[var.name] = amount
        if var.causality == "input":
            inputs[var.name] = amount
    return SimulationCase(
        start_values=start_values,
        stop_time=order.stop_time,
        inputs=inputs,
        values=order.values,
        quantity=order.quantity,
    )


def _fmu_value(key: str, inp: InputSpec, var: VariableInfo, value: Any, spec: str) -> FmuValue:
    if inp.kind == "categorical":
        if isinstance(inp.choices, dict):
            value = inp.choices[value]
        elif value in var.items:
            return int(var.items[value])
        else:
            raise SpecError(
                [
                    f"inputs.{key}.choices: {value!r} is not an item of "
                    f"{var.name!r} (run check_against first)"
                ],
                source=spec,
            )
    if var.type == "Boolean":
        return bool(value)
    if var.type in ("Integer", "Enumeration"):
        return int(value)
    return float(value)

"""The checks behind :mod:`physics.spec`: catalogue-free structure checks run at
load, and the checks of a spec against an FMU's variable catalogue.

Each check appends ``<field.path>: <problem>`` lines, so one pass reports everything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from physics._spec_constants import SpecConstants
from physics._spec_text import Problems, fmt, indicator, name_problem, suggest
from physics.blocks import MAX_ACROSS, BlockExpr, Crossing
from physics.expr import MODEL, Expr, ExpressionError, compile_expr

if TYPE_CHECKING:
    from pathlib import Path

    from physics.spec import BlockSpec, FactorSpec, InputSpec, KpiSpec, TwinSpec
    from physics.variables import Catalogue, VariableInfo

# The most communication steps one run may take: a step size this far below the stop
# time is a typo (and a step count past 2^63 would wrap around in the driver).
MAX_STEPS = 100_000_000
_CRITERIA = ("max_rmse", "max_mae", "max_rel_error", "min_r2", "min_coverage")
# Time integrals with a unit name of their own; any other unit u integrates to "u.s".
_INTEGRAL_UNITS = {"W": "J", "kW": "kJ", "MW": "MJ"}


# ---- structure -------------------------------------------------------------------------


def check_structure(
    spec: TwinSpec, source_dir: Path | None = None
) -> tuple[Expr, dict[str, Expr | BlockExpr], list[Expr], dict[str, float]]:
    """Every catalogue-free check; returns the compiled expressions and the model
    constants they read (parameter -> value), or raises Problems. ``source_dir``: where
    a relative ``fmu.path`` is, for expressions that read the model's constants."""
    p: list[str] = []
    if problem := name_problem(spec.name, reserved=False):
        p.append(f"name: {problem}")
    if spec.version < 1:
        p.append(f"version: {spec.version} must be at least 1")
    _check_fmu(spec, p)
    constants = SpecConstants(spec, source_dir)
    constants.resolve_input_defaults(p)
    seen: dict[str, str] = {}
    for key, inp in spec.inputs.items():
        _check_input(f"inputs.{key}", key, inp, p)
        if inp.variable in seen:
            p.append(
                f"inputs.{key}.variable: {inp.variable!r} is already set by input "
                f"{seen[inp.variable]!r}"
            )
        seen.setdefault(inp.variable, key)
    _check_quantity(spec, p)
    compiled = _check_expressions(spec, p, constants)
    if spec.doe is not None:
        _check_doe(spec, p)
    _check_kpis(spec, p)
    if p:
        raise Problems(p)
    return compiled


def _check_fmu(spec: TwinSpec, p: list[str]) -> None:
    f = spec.fmu
    if f.model is None and f.path is None:
        p.append("fmu: give either model or path")
    elif f.model is not None and f.path is not None:
        p.append("fmu: give model or path, not both")
    if f.model is not None and (problem := name_problem(f.model, reserved=False)):
        p.append(f"fmu.model: {problem}")
    if f.tolerance is not None and not 0 < f.tolerance < 1:
        p.append(f"fmu.tolerance: {fmt(f.tolerance)} must be in (0, 1), e.g. 1e-6")
    if f.step_size <= 0:
        p.append(f"fmu.step_size: {fmt(f.step_size)} must be positive")
    elif f.output_interval is not None:
        ratio = f.output_interval / f.step_size
        if f.output_interval < f.step_size:
            p.append(
                f"fmu.output_interval: {fmt(f.output_interval)} is below the step size "
                f"{fmt(f.step_size)}"
            )
        elif abs(ratio - round(ratio)) > 1e-9 * ratio:
            # Samples are taken after whole steps: any other interval would be a grid the
            # dataset card does not state.
            p.append(
                f"fmu.output_interval: {fmt(f.output_interval)} is not a whole multiple of "
                f"the step size {fmt(f.step_size)} (it is {ratio:.6g} steps); expected e.g. "
                f"{fmt(max(1, round(ratio)) * f.step_size)}"
            )


def _check_input(at: str, key: str, inp: InputSpec, p: list[str]) -> None:
    if problem := name_problem(key):
        p.append(f"{at}: {problem}")
    flags = [
        n
        for n, on in (
            ("boolean", inp.boolean),
            ("integer", inp.integer),
            ("choices", inp.choices is not None),
        )
        if on
    ]
    if len(flags) > 1:
        p.append(f"{at}: {' and '.join(flags)} exclude each other")
        return
    if inp.kind in ("boolean", "categorical"):
        for name in ("unit", "min", "max"):
            if getattr(inp, name) is not None:
                p.append(f"{at}.{name}: not used by a {inp.kind} input")
        if inp.kind == "categorical" and not _choices_ok(at, inp, p):
            return
    else:
        if inp.kind == "real" and not inp.unit:
            p.append(f"{at}.unit: missing")
        if inp.min is None or inp.max is None:
            p.extend(f"{at}.{n}: missing" for n in ("min", "max") if getattr(inp, n) is None)
            return
        if inp.min >= inp.max:
            p.append(f"{at}.min: {fmt(inp.min)} is not below max {fmt(inp.max)}")
            return
        if inp.kind == "integer":
            p.extend(
                f"{at}.{n}: {fmt(getattr(inp, n))} is not a whole number"
                for n in ("min", "max")
                if not float(getattr(inp, n)).is_integer()
            )
    if inp.default is not None and inp.default != MODEL:  # 'model': unread, said already
        try:
            inp.coerce(inp.default)
        except ValueError as exc:
            p.append(f"{at}.default: {exc}")


def _choices_ok(at: str, inp: InputSpec, p: list[str]) -> bool:
    before = len(p)
    names = inp.choice_names
    if not names:
        p.append(f"{at}.choices: empty")
    seen: dict[str, str] = {}
    for i, name in enumerate(names):
        if not name.strip() or name != name.strip() or not name.isprintable():
            p.append(
                f"{at}.choices: {name!r} is not a valid choice name (printable text, without "
                "leading or trailing spaces)"
            )
        if name in names[:i]:
            p.append(f"{at}.choices: {name!r} is listed twice")
        elif (ind := indicator("x", name)) in seen:
            p.append(
                f"{at}.choices: {seen[ind]!r} and {name!r} share the indicator name "
                f"{indicator(at.split('.')[-1], name)!r}; rename one"
            )
        seen.setdefault(ind, name)
    if isinstance(inp.choices, dict):
        by_value: dict[int, str] = {}
        for name, value in inp.choices.items():
            if value in by_value:
                p.append(
                    f"{at}.choices: {by_value[value]!r} and {name!r} have the same value {value}"
                )
            by_value.setdefault(value, name)
    return len(p) == before


def _check_quantity(spec: TwinSpec, p: list[str]) -> None:
    q = spec.quantity
    if q is None:
        return
    if not q.unit.strip():
        p.append("quantity.unit: missing")
    if q.min <= 0:
        p.append(f"quantity.min: {fmt(q.min)} must be positive")
    if q.min >= q.max:
        p.append(f"quantity.min: {fmt(q.min)} is not below max {fmt(q.max)}")
    if q.integer:
        p.extend(
            f"quantity.{n}: {fmt(getattr(q, n))} is not a whole number"
            for n in ("min", "max")
            if not float(getattr(q, n)).is_integer()
        )


def _check_expressions(
    spec: TwinSpec, p: list[str], constants: SpecConstants
) -> tuple[Expr, dict[str, Expr | BlockExpr], list[Expr], dict[str, float]]:
    available: dict[str, str] = {"quantity": "the quantity"} if spec.quantity else {}
    available["default_stop_time"] = "the FMU's default stop time"
    categorical: dict[str, InputSpec] = {}
    for key, inp in spec.inputs.items():
        if inp.kind == "categorical":
            categorical[key] = inp
            names = [indicator(key, c) for c in inp.choice_names]
        else:
            names = [key]
        for name in names:
            if name in available:
                p.append(f"inputs.{key}: the name {name!r} is already {available[name]}")
            available.setdefault(name, f"input {key!r}")
    for name in spec.derived:
        if name in available:
            p.append(f"derived.{name}: {name!r} is already {available[name]}")
        elif problem := name_problem(name):
            p.append(f"derived.{name}: {problem}")
        available.setdefault(name, f"derived value {name!r}")

    def checked(text: str, field: str, local: frozenset[str] = frozenset()) -> Expr | None:
        try:
            expr = compile_expr(text, field=field, model=constants)
        except ExpressionError as exc:
            p.append(str(exc))
            return None
        for name in sorted(expr.names - available.keys() - local):
            if name in categorical:
                first = categorical[name].choice_names[0] if categorical[name].choice_names else "x"
                p.append(
                    f"{field}: {name!r} is categorical; use its indicators, e.g. "
                    f"{indicator(name, first)}"
                )
            elif owner := next((c for c in categorical if name.startswith(f"{c}_is_")), None):
                choice = name[len(owner) + 4 :]
                p.append(
                    f"{field}: unknown name {name!r}; {choice!r} is not a choice of "
                    f"input {owner!r}{suggest(choice, categorical[owner].choice_names)}"
                )
            else:
                hint = suggest(name, available) or (
                    "; expressions can use inputs, derived values"
                    + (" and quantity" if spec.quantity else " (the spec declares no quantity)")
                )
                p.append(f"{field}: unknown name {name!r}{hint}")
        return expr

    stop = checked(spec.stop_time, "stop_time")
    if stop is not None and not stop.names and spec.fmu.step_size > 0:  # a fixed stop time
        try:
            value = float(stop.evaluate({}))
        except (ArithmeticError, ValueError):
            value = float("nan")
        if not (math.isfinite(value) and value > 0):
            p.append(
                f"stop_time: {spec.stop_time!r} gives {fmt(value)} s; expected a positive time"
            )
        elif (steps := value / spec.fmu.step_size) > MAX_STEPS:
            p.append(
                f"stop_time: {fmt(value)} s is {steps:.3g} steps of fmu.step_size "
                f"{fmt(spec.fmu.step_size)} s, more than {MAX_STEPS:.0e}; use a larger step size"
            )
    derived: dict[str, Expr | BlockExpr] = {}
    for k, entry in spec.derived.items():
        if isinstance(entry, str):
            e: Expr | BlockExpr | None = checked(entry, f"derived.{k}")
        else:
            e = _check_block(entry, f"derived.{k}", available, checked, p)
        if e is not None:
            derived[k] = e
    constraints = []
    for i, c in enumerate(spec.constraints):
        if not c.message.strip():
            p.append(f"constraints[{i}].message: missing")
        if (e := checked(c.expr, f"constraints[{i}].expr")) is not None:
            constraints.append(e)
    order = _derived_order(derived, p)
    p.extend(constants.finish())
    return (
        stop or compile_expr("0", field="stop_time"),
        {k: derived[k] for k in order},
        constraints,
        constants.values,
    )


def _check_block(
    block: BlockSpec,
    field: str,
    available: dict[str, str],
    checked: Callable[[str, str, frozenset[str]], Expr | None],
    p: list[str],
) -> BlockExpr | None:
    """A derived block compiled (physics.blocks), or None with its problems in ``p``."""
    before = len(p)
    local: set[str] = set()

    def declare(name: str, where: str) -> None:
        """A local name of the block, or its problem in ``p``."""
        problem = name_problem(name)
        if problem is None and name in available:
            problem = f"{name!r} is already {available[name]}; a block's names are its own"
        if problem is None and name in local:
            problem = f"{name!r} is already a name of this block"
        if problem:
            p.append(f"{where}: {problem}")
        else:
            local.add(name)

    def compiled(entries: dict[str, str], section: str) -> dict[str, Expr]:
        """A section's expressions in an order in which each needs only earlier ones (a
        mapping has no order of its own: YAML tools may sort it)."""
        for key in entries:
            declare(key, f"{field}.{section}.{key}")
        out: dict[str, Expr | BlockExpr] = {}
        for key, text in entries.items():
            expr = checked(text, f"{field}.{section}.{key}", frozenset(local))
            if expr is not None:
                out[key] = expr
        order = _derived_order(out, p, f"{field}.{section}")
        return {k: e for k in order if isinstance(e := out[k], Expr)}

    steps = compiled(block.steps, "steps")
    if block.value is not None:
        value = checked(block.value, f"{field}.value", frozenset(local))
        if len(p) > before or value is None:
            return None
        return BlockExpr.build(field, steps, value)
    assert block.over is not None and block.points is not None  # BlockSpec checked the form
    declare(block.over, f"{field}.over")
    across = None
    if len(block.across) > 1:
        p.append(f"{field}.across: {len(block.across)} names ({', '.join(block.across)}); a "
                 "grid runs across one listed parameter at most")  # fmt: skip
    for name, listed in block.across.items():
        declare(name, f"{field}.across")
        bad = [v for v in listed if not math.isfinite(v)]
        if not 2 <= len(listed) <= MAX_ACROSS or bad:
            p.append(f"{field}.across.{name}: {listed}; expected 2 to {MAX_ACROSS} finite "
                     "numbers")  # fmt: skip
        across = (name, tuple(float(v) for v in listed))
    at_each = compiled(block.at_each, "at_each")
    crossings = []
    for i, c in enumerate(block.min_at_crossings):
        for role, name in (("value", c.value), ("phase", c.phase)):
            if name not in block.at_each:
                p.append(f"{field}.min_at_crossings[{i}].{role}: {name!r} is not a value of "
                         f"at_each{suggest(name, block.at_each)}")  # fmt: skip
        crossings.append(Crossing(c.value, c.phase))
    if block.sum_of is not None:
        if block.sum_of not in block.at_each:
            p.append(f"{field}.sum_of: {block.sum_of!r} is not a value of "
                     f"at_each{suggest(block.sum_of, block.at_each)}")  # fmt: skip
        elif block.sum_of in at_each and not {block.over, *block.across} <= _grid_names(
                block.sum_of, at_each):  # fmt: skip
            varies = " and ".join(repr(n) for n in (block.over, *block.across))
            p.append(f"{field}.sum_of: {block.sum_of!r} does not vary with {varies}; a sum "
                     "runs over the points of the grid")  # fmt: skip
    if len(p) > before:
        return None
    return BlockExpr.build(field, steps, None, block.over, block.points, at_each,
                           tuple(crossings), across, block.sum_of)  # fmt: skip


def _grid_names(key: str, at_each: dict[str, Expr]) -> set[str]:
    """Every name a grid value reads, directly or through the grid values before it."""
    seen: set[str] = set()
    todo = [key]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in at_each:
            todo.extend(at_each[name].names)
    return seen


def _derived_order(
    derived: dict[str, Expr | BlockExpr], p: list[str], section: str = "derived"
) -> list[str]:
    """Derived names so that each comes after those it uses; reports the first cycle."""
    order: list[str] = []
    state: dict[str, bool] = {}  # False while being visited, True when done

    def visit(name: str, trail: list[str]) -> bool:
        if state.get(name) is True:
            return True
        if state.get(name) is False:
            cycle = [*trail[trail.index(name) :], name]
            p.append(f"{section}.{cycle[0]}: circular definition {' -> '.join(cycle)}")
            return False
        state[name] = False
        for dep in sorted(derived[name].names & derived.keys()):
            if not visit(dep, [*trail, name]):
                return False
        state[name] = True
        order.append(name)
        return True

    for name in derived:
        if not visit(name, []):
            break
    return order


def _check_doe(spec: TwinSpec, p: list[str]) -> None:
    assert spec.doe is not None
    factors, fixed = spec.doe.factors, spec.doe.fixed
    known = [*spec.inputs, *(["quantity"] if spec.quantity else [])]
    for key, factor in factors.items():
        if key not in known:
            p.append(f"doe.factors.{key}: not an input{suggest(key, known)}")
        else:
            _check_factor(f"doe.factors.{key}", key, factor, spec, p)
    for key, value in fixed.items():
        at = f"doe.fixed.{key}"
        if key not in known:
            p.append(f"{at}: not an input{suggest(key, known)}")
            continue
        if key in factors:
            p.append(f"{at}: also a factor; keep one of the two")
        try:
            if key == "quantity":
                assert spec.quantity is not None  # "quantity" is known only with one
                spec.quantity.coerce(value)
            else:
                spec.inputs[key].coerce(value)
        except ValueError as exc:
            p.append(f"{at}: {exc}")
    for key, inp in spec.inputs.items():
        if inp.default is None and key not in factors and key not in fixed:
            p.append(f"doe: input {key!r} has no default; make it a factor or fix it")
    if spec.quantity is not None and "quantity" not in factors and "quantity" not in fixed:
        p.append("doe: quantity sets the stop time; make it a factor or fix it")
    if spec.doe.stratify is not None:
        _check_stratify(spec, p)


def _check_stratify(spec: TwinSpec, p: list[str]) -> None:
    assert spec.doe is not None and spec.doe.stratify is not None
    key = spec.doe.stratify
    known = [k for k in spec.doe.factors if k in spec.inputs or k == "quantity"]
    allowed = [k for k in known if spec.factor_domain(k)[0] in ("boolean", "categorical")]
    listed = (
        f"(allowed: {', '.join(allowed)})"
        if allowed
        else "(the DOE varies no categorical or boolean input)"
    )
    if key not in known:
        p.append(
            f"doe.stratify: {key!r} is not a DOE factor{suggest(key, allowed) or ' ' + listed}"
        )
        return
    kind = spec.factor_domain(key)[0]
    if kind not in ("boolean", "categorical"):
        article = "an" if kind == "integer" else "a"
        p.append(
            f"doe.stratify: {key!r} is {article} {kind} factor; stratify needs a categorical "
            f"or boolean factor {listed}"
        )


def _check_factor(at: str, key: str, f: FactorSpec, spec: TwinSpec, p: list[str]) -> None:
    kind, low_bound, high_bound = spec.factor_domain(key)
    given = f.model_fields_set
    if kind in ("boolean", "categorical"):
        p.extend(
            f"{at}.{n}: not used for a {kind} input"
            for n in ("low", "high", "distribution", "mean", "std", "mode")
            if n in given
        )
        allowed: list[str | bool] = (
            [True, False] if kind == "boolean" else list(spec.inputs[key].choice_names)
        )
        chosen = allowed if f.choices is None else f.choices
        if f.choices is not None and not f.choices:
            p.append(f"{at}.choices: empty")
        for i, c in enumerate(f.choices or []):
            if not any(c == a and type(c) is type(a) for a in allowed):
                names = ", ".join(a if isinstance(a, str) else fmt(a) for a in allowed)
                p.append(f"{at}.choices: {fmt(c)} is not one of {names}")
            elif c in chosen[:i]:
                p.append(f"{at}.choices: {fmt(c)} is listed twice")
        if f.weights is not None:
            if len(f.weights) != len(chosen):
                p.append(
                    f"{at}.weights: expected one per choice ({len(chosen)}), got {len(f.weights)}"
                )
            elif min(f.weights) < 0 or sum(f.weights) <= 0:
                p.append(f"{at}.weights: must be non-negative and not all zero")
        return
    p.extend(
        f"{at}.{n}: only for categorical or boolean inputs"
        for n in ("choices", "weights")
        if n in given
    )
    if low_bound is None or high_bound is None or low_bound >= high_bound:
        return  # the input's own problem is reported already
    low = low_bound if f.low is None else f.low
    high = high_bound if f.high is None else f.high
    if low >= high:
        p.append(f"{at}.low: {fmt(low)} is not below high {fmt(high)}")
        return
    if low < low_bound:
        p.append(f"{at}.low: {fmt(low)} is below the input's min {fmt(low_bound)}")
    if high > high_bound:
        p.append(f"{at}.high: {fmt(high)} is above the input's max {fmt(high_bound)}")
    if kind == "integer":
        p.extend(
            f"{at}.{n}: {fmt(v)} is not a whole number"
            for n, v in (("low", low), ("high", high))
            if not float(v).is_integer()
        )
    needs = {"normal": ("mean", "std"), "triangular": ("mode",)}
    for name in ("mean", "std", "mode"):
        owner = "triangular" if name == "mode" else "normal"
        if getattr(f, name) is None and name in needs.get(f.distribution, ()):
            p.append(f"{at}.{name}: missing (required by the {f.distribution} distribution)")
        elif getattr(f, name) is not None and f.distribution != owner:
            p.append(f"{at}.{name}: only used by the {owner} distribution")
    if f.distribution == "loguniform" and low <= 0:
        p.append(f"{at}.low: the loguniform distribution needs low > 0, got {fmt(low)}")
    if f.distribution == "normal" and f.std is not None and f.std <= 0:
        p.append(f"{at}.std: {fmt(f.std)} must be positive")
    for name in ("mean", "mode"):
        v = getattr(f, name)
        if (
            v is not None
            and f.distribution == ("normal" if name == "mean" else "triangular")
            and not low <= v <= high
        ):
            p.append(f"{at}.{name}: {fmt(v)} is outside [{fmt(low)}, {fmt(high)}]")


def _check_margins(at: str, key: str, k: KpiSpec, spec: TwinSpec, p: list[str]) -> None:
    """An event's margins: derived values or other KPIs, none an event by margins."""
    if not k.margins:
        p.append(f"{at}.margins: empty; name the derived values or KPIs whose reaching 1 is "
                 "the event, or leave margins out")
    if k.start is not None or k.baseline is not None:
        p.append(f"{at}.margins: an event derived from margins has no start or baseline")
    names = [*spec.derived, *(n for n in spec.kpis if n != key)]
    for name in k.margins or []:
        if name == key:
            p.append(f"{at}.margins: {name!r} is this KPI itself")
        elif name in spec.kpis and spec.kpis[name].margins is not None:
            p.append(f"{at}.margins: {name!r} is itself an event derived from margins")
        elif name not in spec.derived and name not in spec.kpis:
            p.append(f"{at}.margins: {name!r} is neither a derived value nor a KPI"
                     f"{suggest(name, names)}")


def _check_kpis(spec: TwinSpec, p: list[str]) -> None:
    if not spec.kpis:
        p.append("kpis: empty; a twin needs at least one KPI")
    for key, k in spec.kpis.items():
        at = f"kpis.{key}"
        if problem := name_problem(key, reserved=False):
            p.append(f"{at}: {problem}")
        if not k.unit.strip():
            p.append(f"{at}.unit: missing")
        if k.reduction == "time_above":
            if k.limit is None:
                p.append(f"{at}.limit: missing (required by time_above)")
            if k.unit != "s":
                p.append(f"{at}.unit: time_above measures time, so the unit is 's', not {k.unit!r}")
        elif k.limit is not None:
            p.append(f"{at}.limit: only used by time_above")
        if k.start is not None:
            _check_start(at, k, spec, p)
        if k.baseline is not None and k.baseline not in spec.derived:
            p.append(
                f"{at}.baseline: {k.baseline!r} is not a derived value"
                f"{suggest(str(k.baseline), spec.derived)}"
            )
        if k.margins is not None:
            _check_margins(at, key, k, spec, p)
        if k.cap is not None and (k.start or k.baseline or k.margins is not None):
            p.append(f"{at}.cap: a capped KPI is learned as it is: no start, baseline or "
                     "margins beside it")
    _check_quality(spec, p)
    _check_operations(spec, p)
    for key, m in spec.maintenance.items():
        at = f"maintenance.{key}"
        if (kpi := _kpi_of(at, key, spec, p, role="maintenance")) is None:
            continue
        _check_unit(at, m.unit, kpi, p)
        if problem := name_problem(m.action, reserved=False):
            p.append(f"{at}.action: {problem}")
    for key, f in spec.feasibility.items():
        at = f"feasibility.{key}"
        if (kpi := _kpi_of(at, key, spec, p)) is None:
            continue
        _check_bounds(at, ("min", f.min), ("max", f.max), p)
        _check_unit(at, f.unit, kpi, p)
    _check_acceptance(spec, p)
    if spec.verification is not None:
        from physics.verification import check_verification

        check_verification(spec, p, _check_factor)


def _check_start(at: str, k: KpiSpec, spec: TwinSpec, p: list[str]) -> None:
    """``start`` names the state input the KPI's value starts the order from."""
    inp = spec.inputs.get(str(k.start))
    if inp is None:
        p.append(f"{at}.start: {k.start!r} is not an input{suggest(str(k.start), spec.inputs)}")
    elif inp.source != "state":
        p.append(f"{at}.start: input {k.start!r} has source {inp.source!r}, expected 'state'")
    elif inp.unit != k.unit:
        p.append(f"{at}.start: input {k.start!r} is in {inp.unit!r}, the KPI in {k.unit!r}")


def _check_quality(spec: TwinSpec, p: list[str]) -> None:
    characteristics: dict[str, str] = {}
    for key, q in spec.quality.items():
        at = f"quality.{key}"
        if (kpi := _kpi_of(at, key, spec, p, role="quality")) is None:
            continue
        if _check_bounds(at, ("lsl", q.lsl), ("usl", q.usl), p) and not (
            q.target is None
            or ((q.lsl is None or q.lsl <= q.target) and (q.usl is None or q.target <= q.usl))
        ):
            p.append(f"{at}.target: {fmt(q.target)} is outside the specification limits")
        _check_unit(at, q.unit, kpi, p)
        if not q.characteristic_id.strip():
            p.append(f"{at}.characteristic_id: missing")
        elif q.characteristic_id in characteristics:
            p.append(
                f"{at}.characteristic_id: {q.characteristic_id!r} is already used by "
                f"{characteristics[q.characteristic_id]!r}"
            )
        characteristics.setdefault(q.characteristic_id, key)


def _check_operations(spec: TwinSpec, p: list[str]) -> None:
    """The operations section names a categorical surface input and a default among its
    types; quality entries name surfaces of that input, and ``stock`` only where an
    operation is judged on its stock allowance and the unit is a length."""
    ops = spec.operations
    marked = [k for k, q in spec.quality.items() if q.surfaces is not None or q.stock]
    if ops is None:
        for key in marked:
            p.append(f"quality.{key}: surfaces and stock need an operations section")
        return
    if not ops.types:
        p.append("operations.types: give at least one operation type")
    elif ops.default not in ops.types:
        p.append(f"operations.default: {ops.default!r} is not one of the types "
                 f"{', '.join(ops.types)}")
    choices: list[str] | None = None
    if ops.surface_input is not None:
        inp = spec.inputs.get(ops.surface_input)
        if inp is None or inp.choices is None:
            p.append(f"operations.surface_input: {ops.surface_input!r} is not a categorical "
                     f"input{suggest(ops.surface_input, spec.inputs)}")
        else:
            choices = inp.choice_names
    stock_judged = any(t.judge == "stock_allowance" for t in ops.types.values())
    for key, q in spec.quality.items():
        at = f"quality.{key}"
        if q.surfaces is not None:
            if choices is None:
                p.append(f"{at}.surfaces: needs operations.surface_input")
            else:
                for s in q.surfaces:
                    if s not in choices:
                        p.append(f"{at}.surfaces: {s!r} is not a choice of "
                                 f"{ops.surface_input} ({', '.join(choices)})")
        if q.stock and stock_judged and not _same_dimension(q.unit, ops.stock_unit):
            p.append(f"{at}.stock: the characteristic is in {q.unit!r}, not a length "
                     f"like the stock allowance ({ops.stock_unit!r})")


def _same_dimension(a: str, b: str) -> bool:
    from physics.units import convert

    try:
        convert(1.0, a, b)
    except ValueError:
        return False
    return True


def _check_acceptance(spec: TwinSpec, p: list[str]) -> None:
    for key, a in spec.acceptance.items():
        at = f"acceptance.{key}"
        if key not in spec.kpis:
            p.append(f"{at}: not a KPI{suggest(key, spec.kpis)}")
            continue
        values = {n: getattr(a, n) for n in _CRITERIA if getattr(a, n) is not None}
        if not values:
            p.append(f"{at}: give at least one of {', '.join(_CRITERIA)}")
        for name, v in values.items():
            if name.startswith("max_") and v <= 0:
                p.append(f"{at}.{name}: {fmt(v)} must be positive")
        if a.min_r2 is not None and a.min_r2 > 1:
            p.append(f"{at}.min_r2: {fmt(a.min_r2)} is above 1")
        if a.min_coverage is not None and not 0 < a.min_coverage <= 1:
            p.append(f"{at}.min_coverage: {fmt(a.min_coverage)} is outside (0, 1]")
        if a.scope == "feasible" and not spec.feasibility:
            p.append(f"{at}.scope: 'feasible' needs a feasibility section")


def _kpi_of(
    at: str, key: str, spec: TwinSpec, p: list[str], *, role: str | None = None
) -> KpiSpec | None:
    """The KPI a quality, maintenance or feasibility entry is about (of ``role``, if given)."""
    kpi = spec.kpis.get(key)
    if kpi is None:
        p.append(f"{at}: not a KPI{suggest(key, spec.kpis)}")
        return None
    if role is not None and kpi.role != role:
        p.append(f"{at}: KPI {key!r} has role {kpi.role!r}; only {role} KPIs belong here")
        return None
    return kpi


def _check_bounds(
    at: str, low: tuple[str, float | None], high: tuple[str, float | None], p: list[str]
) -> bool:
    """At least one of two limits, the lower below the upper; False if they are crossed."""
    (low_name, low_value), (high_name, high_value) = low, high
    if low_value is None and high_value is None:
        p.append(f"{at}: give {low_name}, {high_name} or both")
    if low_value is not None and high_value is not None and low_value >= high_value:
        p.append(f"{at}.{low_name}: {fmt(low_value)} is not below {high_name} {fmt(high_value)}")
        return False
    return True


def _check_unit(at: str, unit: str, kpi: KpiSpec, p: list[str]) -> None:
    if unit != kpi.unit:
        p.append(f"{at}.unit: {unit!r} differs from the KPI's unit {kpi.unit!r}")


# ---- against an FMU's catalogue -----------------------------------------------------------


def check_catalogue(spec: TwinSpec, catalogue: Catalogue) -> list[str]:
    p: list[str] = []
    settable = [name for name, v in catalogue.items() if v.settable]
    for key, inp in spec.inputs.items():
        at = f"inputs.{key}"
        var = catalogue.get(inp.variable)
        if var is None:
            p.append(
                f"{at}.variable: {inp.variable!r} is not a variable of the FMU"
                f"{suggest(inp.variable, settable)}"
            )
            continue
        if not var.settable:
            p.append(
                f"{at}.variable: {var.name!r} has causality {var.causality}; only "
                'parameter and input variables, and those with initial="exact", can be set'
            )
            continue
        if var.shape or var.type in ("Binary", "Clock"):
            what = _array_text(var) if var.shape else f"{var.name!r} is a {var.type} variable"
            p.append(f"{at}.variable: {what}; twin inputs set one number")
            continue
        p.extend(_type_problems(at, inp, var))
        if inp.kind in ("real", "integer"):
            unit = None if inp.unit in (None, "", "1") else inp.unit
            if var.unit is not None and unit is None:
                p.append(f"{at}.unit: missing; the FMU variable's unit is {var.unit!r}")
            elif var.unit is not None and unit != var.unit:
                p.append(
                    f"{at}.unit: {inp.unit!r} differs from the FMU variable's unit {var.unit!r}"
                )
            if inp.min is not None and var.min is not None and inp.min < var.min:
                p.append(f"{at}.min: {fmt(inp.min)} is below the FMU variable's min {fmt(var.min)}")
            if inp.max is not None and var.max is not None and inp.max > var.max:
                p.append(f"{at}.max: {fmt(inp.max)} is above the FMU variable's max {fmt(var.max)}")
    p.extend(_quantity_problems(spec, catalogue))
    for name, value in spec.model_constant_values.items():
        var = catalogue.get(name)
        start = None if var is None or var.start is None else float(var.start)
        if start != value:
            now = f"starts it at {fmt(start)}" if start is not None else "has no such value"
            p.append(
                f"model.{name}: the spec's expressions read {fmt(value)} at load; the FMU it "
                f"runs {now} (load the spec again)"
            )
    for key, k in spec.kpis.items():
        at = f"kpis.{key}"
        var = catalogue.get(k.variable)
        if var is None:
            p.append(
                f"{at}.variable: {k.variable!r} is not a variable of the FMU"
                f"{suggest(k.variable, catalogue)}"
            )
        elif var.shape:
            p.append(f"{at}.variable: {_array_text(var)}; a KPI reduces one number per sample")
        elif not var.scalar_number:
            p.append(f"{at}.variable: {var.name!r} is a {var.type} variable; KPIs need numbers")
        elif k.reduction == "integral":
            expected = integral_units(var.unit)
            if k.unit not in expected:
                p.append(
                    f"{at}.unit: the time integral of {var.name!r} [{var.unit or '1'}] is "
                    f"in {' or '.join(map(repr, expected))}, not {k.unit!r}"
                )
        elif k.reduction != "time_above" and var.unit is not None and k.unit != var.unit:
            p.append(f"{at}.unit: {k.unit!r} differs from the FMU variable's unit {var.unit!r}")
    return p


def _quantity_problems(spec: TwinSpec, catalogue: Catalogue) -> list[str]:
    """``quantity.variable``: a settable number of the FMU, an integer for an integer
    quantity, in the quantity's unit where the FMU declares one, with room for its range."""
    q = spec.quantity
    if q is None or q.variable is None:
        return []
    var = catalogue.get(q.variable)
    at = "quantity.variable"
    if var is None:
        settable = [name for name, v in catalogue.items() if v.settable]
        return [f"{at}: {q.variable!r} is not a variable of the FMU{suggest(q.variable, settable)}"]
    if not var.settable:
        return [f"{at}: {var.name!r} has causality {var.causality}; the quantity sets a "
                "parameter or an input"]  # fmt: skip
    owner = next((k for k, inp in spec.inputs.items() if inp.variable == var.name), None)
    if owner is not None:
        return [f"{at}: {var.name!r} is set by inputs.{owner} already"]
    if var.type not in ("Real", "Float64", "Integer", "Int32", "Int64"):
        return [f"{at}: {var.name!r} is a {var.type} variable; the quantity is a number"]
    p = []
    if q.integer is False and var.type != "Real" and var.type != "Float64":
        p.append(f"{at}: {var.name!r} is an integer variable; the quantity is not "
                 "(quantity.integer: true)")  # fmt: skip
    if var.unit is not None and var.unit != q.unit:
        p.append(f"quantity.unit: {q.unit!r} differs from the FMU variable's unit {var.unit!r}")
    if var.min is not None and q.min < var.min:
        p.append(f"quantity.min: {fmt(q.min)} is below the FMU variable's min {fmt(var.min)}")
    if var.max is not None and q.max > var.max:
        p.append(f"quantity.max: {fmt(q.max)} is above the FMU variable's max {fmt(var.max)}")
    return p


def _array_text(var: VariableInfo) -> str:
    dims = "x".join(str(d) for d in var.shape)
    return f"{var.name!r} is an array variable ({dims} {var.type}); arrays are not supported"


def integral_units(unit: str | None) -> list[str]:
    """Accepted units of the time integral of a quantity in ``unit``."""
    if unit is None:
        return ["s"]
    named = [_INTEGRAL_UNITS[unit]] if unit in _INTEGRAL_UNITS else []
    per_second = [unit[:-2]] if unit.endswith("/s") and len(unit) > 2 else []
    return [*named, *per_second, f"{unit}.s"]


def _type_problems(at: str, inp: InputSpec, var: VariableInfo) -> list[str]:
    kind, vtype, name = inp.kind, var.type, repr(var.name)
    article = "an" if vtype[0] in "AEIOU" else "a"
    if vtype == "String":
        return [f"{at}.variable: {name} is a String variable; twin inputs cannot set text"]
    if vtype == "Boolean":
        return (
            []
            if kind == "boolean"
            else [f"{at}: {name} is a Boolean variable; declare the input with boolean: true"]
        )
    if kind == "boolean":
        return [f"{at}.boolean: {name} is {article} {vtype} variable, not Boolean"]
    if vtype == "Enumeration":
        items = list(var.items)
        if kind != "categorical":
            return [
                f"{at}: {name} is an Enumeration variable; give choices from its items: "
                f"{', '.join(items)}"
            ]
        if isinstance(inp.choices, dict):
            return [
                f"{at}.choices: {name} is an Enumeration variable; list item names, not a mapping"
            ]
        return [
            f"{at}.choices: {c!r} is not an item of {name}{suggest(c, items)}"
            for c in inp.choice_names
            if c not in var.items
        ]
    if kind == "categorical":
        if isinstance(inp.choices, list):
            return [
                f"{at}.choices: {name} is {article} {vtype} variable; map each choice to "
                f"its value, e.g. {{{inp.choice_names[0] if inp.choices else 'name'}: 1}}"
            ]
        return [
            f"{at}.choices: {c!r} = {v} is outside the FMU variable's range "
            f"[{fmt(var.min)}, {fmt(var.max)}]"
            for c, v in (inp.choices or {}).items()
            if (var.min is not None and v < var.min) or (var.max is not None and v > var.max)
        ]
    if vtype == "Integer" and kind == "real":
        return [
            f"{at}.integer: {name} is an Integer variable; declare the input with integer: true"
        ]
    return []

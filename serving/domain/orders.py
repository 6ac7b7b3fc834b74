"""From the MES's messages to twin values, checked against the twin spec.

A job order's parameters are order inputs of the spec, by id; a value sent in another
unit than the spec's (``µm``, the UNECE code ``MMT``, ``1/min`` for ``rpm``) is converted
to the spec's unit here (``physics.units``), so everything behind this module works on
plain floats in the spec's units. The consumed material of ``material_requirements``
sets the spec's material input (``from_material_requirements``), by any of the names
the spec gives each choice. The asset's state and environment come from the asset
(``PUT /v1/assets``), never from the order. Every problem is reported at once, naming
the JSON path, the value and what was expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from physics._spec_text import fmt, suggest
from physics.spec import InputSpec, TwinSpec
from physics.units import UnitError, convert, dimension
from serving._errors import BadRequest, FieldError
from serving._schemas import JobOrderParameter, OperationIn, QualitySpecIn
from serving.domain.assess import QualityLimit

__all__ = ["check_asset_values", "in_spec_unit", "operation_of", "order_values",
           "quality_limits"]

# ISA-95 material uses that put a material into the part (B2MML MaterialUse); a
# requirement without a use counts as consumed, one Produced (the part) or Consumable
# (coolant, tools) is not the work material.
_CONSUMED = {"consumed"}


def in_spec_unit(value: float, unit: str | None, spec_unit: str | None, *, where: str
                 ) -> tuple[float | None, FieldError | None]:
    """``value`` sent in ``unit`` as a float in ``spec_unit`` (None: dimensionless "1"),
    or the problem with ``where`` (the JSON path of the unit) when it does not convert."""
    target = spec_unit or "1"
    if unit is None or unit == target:
        return float(value), None
    try:
        return convert(value, unit, target), None
    except UnitError as exc:
        if exc.expected is None:  # the sent unit does not parse
            return None, FieldError(where, unit, f"a unit convertible to {target!r}, the "
                                    f"spec's unit: {exc}")
        return None, FieldError(where, unit, f"a unit of {dimension(target)} convertible "
                                f"to {target!r}, the spec's unit; {unit!r} is "
                                f"{dimension(unit)}")


def _number(raw: Any) -> float | None:
    """A sent value as a float when it is a number (or a number's text), else None (the
    input's own check then says what is wrong with it)."""
    if isinstance(raw, numbers.Real) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            return None
    return None


def _parameter(inp: InputSpec, p: JobOrderParameter, where: str) -> tuple[Any, FieldError | None]:
    """One parameter's value in the spec's unit, checked against the input."""
    if isinstance(p.value, float) and not math.isfinite(p.value):
        return None, FieldError(f"{where}.value", p.value, f"a finite number, {inp.domain()}")
    value: Any = p.value
    numeric = inp.kind in ("real", "integer")
    sent = _number(p.value) if numeric else None
    if sent is not None and p.unit is not None and p.unit != (inp.unit or "1"):
        converted, problem = in_spec_unit(sent, p.unit, inp.unit, where=f"{where}.unit")
        if problem is not None:
            return None, problem
        assert converted is not None
        if inp.kind == "integer" and abs(converted - round(converted)) <= 1e-9 * max(
                1.0, abs(converted)):
            converted = float(round(converted))
        value = converted
    try:
        return inp.coerce(value), None
    except ValueError as exc:
        text = str(exc)
        if value is not p.value:
            text += f" (sent {fmt(p.value)} {p.unit} = {fmt(value)}{_suffix(inp.unit)})"
        return None, FieldError(f"{where}.value", p.value, text)


def _suffix(unit: str | None) -> str:
    return "" if unit in (None, "", "1") else f" {unit}"


def _material(spec: TwinSpec, materials: Sequence[dict[str, Any]], errors: list[FieldError]
              ) -> tuple[str, str, Any] | None:
    """The choice the consumed materials name: (choice, JSON path, name sent), or None
    when no requirement is consumed. Conflicting or unknown materials go to ``errors``."""
    key = spec.material_input
    if key is None:
        return None
    inp = spec.inputs[key]
    found: tuple[str, str, Any] | None = None
    for n, m in enumerate(materials):
        use = m.get("material_use")
        if use is not None and str(use).strip().casefold() not in _CONSUMED:
            continue
        named = [(f, m[f]) for f in ("material_definition_id", "material_class_id")
                 if m.get(f) is not None]
        if not named:
            errors.append(FieldError(f"material_requirements[{n}]", m, "a "
                                     "material_definition_id or material_class_id naming "
                                     f"the material ({key}): one of "
                                     + ", ".join(inp.accepted_names())))
            continue
        choice = None
        for _, name in named:
            try:
                choice = str(inp.coerce(str(name)))
                break
            except ValueError:
                continue
        field, name = named[0]
        where = f"material_requirements[{n}].{field}"
        if choice is None:
            errors.append(FieldError(where, name, f"a material of {spec.name} ({key}): "
                                     "one of " + ", ".join(inp.accepted_names())))
        elif found is not None and found[0] != choice:
            errors.append(FieldError(where, name, f"one work material per order; "
                                     f"{found[1]} names {found[0]} ({fmt(found[2])})"))
        elif found is None:
            found = (choice, where, name)
    return found


def order_values(
    spec: TwinSpec, params: list[JobOrderParameter], quantity: float, *, path: str,
    materials: Sequence[dict[str, Any]] = (),
) -> tuple[dict[str, Any], int | float]:
    """The order inputs of ``params`` in the spec's units, with defaults, and the
    quantity; ``materials`` (the order's material_requirements) set the spec's material
    input. BadRequest lists every problem."""
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    where_of: dict[str, str] = {}
    order_ids = [k for k, i in spec.inputs.items() if i.source == "order"]
    for n, p in enumerate(params):
        where = f"{path}[{n}]"
        inp = spec.inputs.get(p.id)
        if inp is None:
            errors.append(FieldError(f"{where}.id", p.id, "an order input of "
                                     f"{spec.name}{suggest(p.id, order_ids)}: "
                                     + ", ".join(order_ids)))
            continue
        if inp.source != "order":
            errors.append(FieldError(f"{where}.id", p.id, f"an order input; {p.id} is "
                                     f"{inp.source}, kept by the asset (PUT /v1/assets)"))
            continue
        if p.id in values or p.id in where_of:
            errors.append(FieldError(f"{where}.id", p.id, "each parameter once"))
            continue
        where_of[p.id] = where
        value, problem = _parameter(inp, p, where)
        if problem is not None:
            errors.append(problem)
        else:
            values[p.id] = value
    before = len(errors)
    material = _material(spec, materials, errors)
    material_refused = len(errors) > before  # not also "missing"
    if material is not None:
        key, (choice, where, name) = str(spec.material_input), material
        if key in values and values[key] != choice:
            errors.append(FieldError(where, name, f"the material the parameters name: "
                                     f"{where_of[key]} sets {key} = {values[key]}, "
                                     f"{fmt(name)} is {choice}"))
        elif key not in where_of:
            values[key] = choice
    sent = {p.id for p in params}
    for key in order_ids:
        if key not in values and key not in sent:
            inp = spec.inputs[key]
            if key == spec.material_input and material_refused:
                continue
            if inp.default is None:
                hint = (" or a consumed material in material_requirements"
                        if key == spec.material_input else "")
                errors.append(FieldError(path, None, f"a parameter {key!r} ({inp.domain()})"
                                         + hint))
            else:
                values[key] = inp.coerce(inp.default)
    try:
        count = spec.require_quantity().coerce(quantity)
    except ValueError as exc:
        errors.append(FieldError("planned_quantity", quantity, str(exc)))
        count = 0
    if errors:
        raise BadRequest(f"the job order does not fit twin spec {spec.name}", errors)
    return values, count


def operation_of(spec: TwinSpec, given: OperationIn | None, values: dict[str, Any],
                 ) -> dict[str, Any] | None:
    """The order's operation as the answer reports it: its type (the spec's default when
    the order names none), how it is judged, the stock allowance in the spec's stock unit,
    and the surface it finishes; None for a spec without operations. BadRequest names an
    unknown type, a missing or stray allowance, a unit that is not a length."""
    ops = spec.operations
    if ops is None:
        if given is not None:
            raise BadRequest(f"twin spec {spec.name} has no operation types", [FieldError(
                "operation", given.type, "no operation (this asset type judges every order "
                "on its tolerances)")])
        return None
    kind = ops.default if given is None else given.type
    t = ops.types.get(kind)
    if t is None:
        raise BadRequest("the operation does not fit twin spec " + spec.name, [FieldError(
            "operation.type", kind, "one of " + ", ".join(ops.types) + suggest(kind, ops.types))])
    stock = None
    if given is not None and given.stock_allowance is not None:
        if t.judge != "stock_allowance":
            raise BadRequest("a stock allowance is for a pass that leaves stock", [FieldError(
                "operation.stock_allowance", given.stock_allowance,
                f"none: a {kind} pass is judged on the tolerances; a stock allowance goes "
                "with " + ", ".join(k for k, v in ops.types.items()
                                    if v.judge == "stock_allowance"))])
        stock, problem = in_spec_unit(given.stock_allowance, given.unit, ops.stock_unit,
                                      where="operation.unit")
        if problem is not None:
            raise BadRequest("the operation does not fit twin spec " + spec.name, [problem])
    elif t.judge == "stock_allowance":
        raise BadRequest("the operation does not fit twin spec " + spec.name, [FieldError(
            "operation.stock_allowance", None,
            f"the stock a {kind} pass leaves per side, in {ops.stock_unit} (or with unit)")])
    surface = None if ops.surface_input is None else values.get(ops.surface_input)
    return {"type": kind, "judged_on": t.judge, "stock_allowance": stock,
            "unit": ops.stock_unit, "surface": surface, "not_checked": []}


def quality_limits(spec: TwinSpec, given: list[QualitySpecIn],
                   operation: dict[str, Any] | None = None) -> list[QualityLimit]:
    """The characteristics the order is checked on, with its limits: the order's where
    it gives them, else the spec's tolerances, or, in a pass judged on its stock
    allowance, that allowance on each side the spec limits (and no roughness). What the
    operation leaves unchecked is added to ``operation["not_checked"]``."""
    by_char = {q.characteristic_id: (k, q) for k, q in spec.quality.items()}
    errors: list[FieldError] = []
    override: dict[str, QualitySpecIn] = {}
    for n, q in enumerate(given):
        if q.characteristic_id not in by_char:
            errors.append(FieldError(
                f"quality_specs[{n}].characteristic_id", q.characteristic_id,
                "a characteristic of " + spec.name + ": " + ", ".join(by_char)))
            continue
        kpi, qs = by_char[q.characteristic_id]
        if q.unit is not None:
            _, problem = in_spec_unit(0.0, q.unit, qs.unit, where=f"quality_specs[{n}].unit")
            if problem is not None:
                errors.append(problem)
                continue
        limits: dict[str, float | None] = {}
        for name in ("lsl", "target", "usl"):
            sent = getattr(q, name)
            limits[name] = None if sent is None else in_spec_unit(
                sent, q.unit, qs.unit, where=f"quality_specs[{n}].unit")[0]
        lsl, usl = limits["lsl"], limits["usl"]
        if lsl is not None and usl is not None and lsl >= usl:
            errors.append(FieldError(f"quality_specs[{n}].usl", q.usl,
                                     f"greater than lsl {fmt(q.lsl)}"))
        override[q.characteristic_id] = q.model_copy(update={**limits, "unit": qs.unit})
    if errors:
        raise BadRequest("the quality specs do not fit twin spec " + spec.name, errors)
    out = []
    op = operation or {}
    skipped = op.get("not_checked", [])
    stock_judged = op.get("judged_on") == "stock_allowance"
    for cid, (kpi, qs) in by_char.items():
        o = override.get(cid)
        if o is not None:  # the MES's limits for this order, whatever the pass
            out.append(QualityLimit(kpi, cid, qs.unit, o.lsl, o.usl, o.target, o.critical,
                                    basis="order"))
        elif op and qs.surfaces is not None and op["surface"] not in qs.surfaces:
            skipped.append({"characteristic_id": cid, "reason": "OTHER_SURFACE",
                            "detail": f"on the {', '.join(qs.surfaces)}; the order "
                                      f"finishes the {op['surface']}"})
        elif stock_judged and not qs.stock:
            skipped.append({"characteristic_id": cid, "reason": "NOT_THIS_PASS",
                            "detail": f"made by the finishing pass; a {op['type']} "
                                      "pass leaves stock for it"})
        elif stock_judged:
            stock = convert(op["stock_allowance"], op["unit"], qs.unit)
            out.append(QualityLimit(kpi, cid, qs.unit, None if qs.lsl is None else -stock,
                                    None if qs.usl is None else stock, None, qs.critical,
                                    basis="stock_allowance"))
        else:
            out.append(QualityLimit(kpi, cid, qs.unit, qs.lsl, qs.usl, qs.target,
                                    qs.critical))
    return out


def check_asset_values(
    spec: TwinSpec, values: dict[str, float], source: str, *, path: str
) -> dict[str, Any]:
    """State or environment values of an asset, checked against the spec's inputs."""
    errors: list[FieldError] = []
    out: dict[str, Any] = {}
    allowed = [k for k, i in spec.inputs.items() if i.source == source]
    for key, value in values.items():
        inp = spec.inputs.get(key)
        if inp is None or inp.source != source:
            errors.append(FieldError(f"{path}.{key}", value, f"a {source} input of "
                                     f"{spec.name}{suggest(key, allowed)}: "
                                     + ", ".join(allowed)))
            continue
        try:
            out[key] = inp.coerce(value)
        except ValueError as exc:
            errors.append(FieldError(f"{path}.{key}", value, str(exc)))
    if errors:
        raise BadRequest(f"the asset's {source} does not fit twin spec {spec.name}", errors)
    for key in allowed:
        if key not in out and spec.inputs[key].default is not None:
            out[key] = spec.inputs[key].coerce(spec.inputs[key].default)
    return out

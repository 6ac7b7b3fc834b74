"""From the MES's messages to twin values, checked against the twin spec.

A job order's parameters are order inputs of the spec, by id, in the spec's unit; the
asset's state and environment come from the asset (``PUT /v1/assets``), never from
the order. Every problem is reported at once, naming the JSON path, the value and
what was expected.
"""

from __future__ import annotations

import math
from typing import Any

from physics._spec_text import fmt, suggest
from physics.spec import TwinSpec
from serving._errors import BadRequest, FieldError
from serving._schemas import JobOrderParameter, QualitySpecIn
from serving.domain.assess import QualityLimit

__all__ = ["check_asset_values", "order_values", "quality_limits"]


def order_values(
    spec: TwinSpec, params: list[JobOrderParameter], quantity: float, *, path: str
) -> tuple[dict[str, Any], int | float]:
    """The order inputs of ``params`` with defaults, and the quantity; BadRequest if wrong."""
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
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
        if p.id in values:
            errors.append(FieldError(f"{where}.id", p.id, "each parameter once"))
            continue
        if p.unit is not None and inp.unit is not None and p.unit != inp.unit:
            errors.append(FieldError(f"{where}.unit", p.unit, f"{inp.unit!r}, the spec's unit"))
            continue
        if isinstance(p.value, float) and not math.isfinite(p.value):
            errors.append(FieldError(f"{where}.value", p.value, f"a finite number, "
                                     f"{inp.domain()}"))
            continue
        try:
            values[p.id] = inp.coerce(p.value)
        except ValueError as exc:
            errors.append(FieldError(f"{where}.value", p.value, str(exc)))
    sent = {p.id for p in params}
    for key in order_ids:
        if key not in values and key not in sent:
            inp = spec.inputs[key]
            if inp.default is None:
                errors.append(FieldError(path, None, f"a parameter {key!r} ({inp.domain()})"))
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


def quality_limits(spec: TwinSpec, given: list[QualitySpecIn]) -> list[QualityLimit]:
    """The spec's characteristics, with the order's limits where it gives them."""
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
        if q.unit is not None and q.unit != qs.unit:
            errors.append(FieldError(f"quality_specs[{n}].unit", q.unit, f"{qs.unit!r}"))
        if q.lsl is not None and q.usl is not None and q.lsl >= q.usl:
            errors.append(FieldError(f"quality_specs[{n}].usl", q.usl,
                                     f"greater than lsl {fmt(q.lsl)}"))
        override[q.characteristic_id] = q
    if errors:
        raise BadRequest("the quality specs do not fit twin spec " + spec.name, errors)
    out = []
    for cid, (kpi, qs) in by_char.items():
        o = override.get(cid)
        if o is None:
            out.append(QualityLimit(kpi, cid, qs.unit, qs.lsl, qs.usl, qs.target, qs.critical))
        else:
            out.append(QualityLimit(kpi, cid, qs.unit, o.lsl, o.usl, o.target, o.critical))
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

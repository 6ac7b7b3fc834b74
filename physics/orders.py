"""Work orders as files and command-line assignments, flattened to twin values.

A work order file follows the ISA-95 job order the MES sends (see DESIGN.md),
plus the asset's state, the environment and the machine's constants::

    job_order_id: WO-1001
    equipment_id: MILL-07
    planned_quantity: 40
    job_order_parameters:
      - {id: material, value: steel_c45}
      - {id: spindle_speed, value: 5000, unit: rpm}
    state: {tool_wear: 0.05}
    environment: {ambient_temperature: 22}
    machine: {spindle_stiffness: 45}

Values are checked against the twin spec afterwards (``TwinSpec.case_from_order``);
here only the shape of the file and the units it states are checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from physics.spec import TwinSpec
from physics.workorder import OrderError

_KEYS = {
    "job_order_id",
    "operations_request_id",
    "segment_id",
    "equipment_id",
    "planned_quantity",
    "job_order_parameters",
    "state",
    "environment",
    "machine",
    "priority",
    "start_time",
    "execution_mode",
    "material_requirements",
    "quality_specs",
}


@dataclass(frozen=True)
class WorkOrder:
    values: dict[str, Any]
    quantity: Any
    job_order_id: str | None = None
    equipment_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_order(data: Mapping[str, Any], spec: TwinSpec) -> WorkOrder:
    """Flatten a job order mapping into twin values; OrderError lists every problem."""
    problems: list[str] = []
    unknown = sorted(set(data) - _KEYS)
    for key in unknown:
        problems.append(f"{key}: unknown field (expected one of {', '.join(sorted(_KEYS))})")
    values: dict[str, Any] = {}
    params = data.get("job_order_parameters") or []
    if not isinstance(params, list):
        problems.append("job_order_parameters: expected a list of {id, value, unit}")
        params = []
    for i, item in enumerate(params):
        if not isinstance(item, Mapping) or "id" not in item or "value" not in item:
            problems.append(
                f"job_order_parameters[{i}]: expected {{id, value[, unit]}}, got {item!r}"
            )
            continue
        key = str(item["id"])
        if key in values:
            problems.append(f"job_order_parameters.{key}: given twice")
        unit = item.get("unit")
        inp = spec.inputs.get(key)
        if unit is not None and inp is not None and inp.unit is not None and unit != inp.unit:
            problems.append(
                f"job_order_parameters.{key}.unit: {unit!r} does not match the "
                f"twin spec's unit {inp.unit!r}"
            )
        values[key] = item["value"]
    for section in ("state", "environment", "machine"):
        block = data.get(section) or {}
        if not isinstance(block, Mapping):
            problems.append(f"{section}: expected a mapping of input id to value")
            continue
        for key, value in block.items():
            if key in values:
                problems.append(f"{section}.{key}: also given elsewhere in the order")
            values[str(key)] = value
    if "planned_quantity" not in data:
        problems.append("planned_quantity: missing")
    if problems:
        raise OrderError(problems)
    return WorkOrder(
        values=values,
        quantity=data["planned_quantity"],
        job_order_id=data.get("job_order_id"),
        equipment_id=data.get("equipment_id"),
        extra={
            k: v
            for k, v in data.items()
            if k not in ("job_order_parameters", "state", "environment", "machine",
                         "planned_quantity")
        },
    )


def load_order(path: str | Path, spec: TwinSpec) -> WorkOrder:
    """Read a work order from a YAML or JSON file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OrderError([f"{path}: cannot be read ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise OrderError(
            [f"{path}: byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not UTF-8"]
        ) from None
    except yaml.YAMLError as exc:
        raise OrderError([f"{path}: not valid YAML/JSON: {exc}"]) from None
    if not isinstance(data, Mapping):
        raise OrderError([f"{path}: expected a mapping (a job order), got {type(data).__name__}"])
    return parse_order(data, spec)


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``name=value`` pairs from the command line; values stay strings for the spec to coerce."""
    out: dict[str, str] = {}
    problems = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            problems.append(f"--set {item!r}: expected NAME=VALUE")
            continue
        out[name.strip()] = value.strip()
    if problems:
        raise OrderError(problems)
    return out

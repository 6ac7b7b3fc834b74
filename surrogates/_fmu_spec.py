"""A twin spec for a surrogate FMU, written beside it, so that ``twin fmu simulate`` and
``twin data generate`` run the FMU like any other.

The spec maps every input of the bundle to the FMU variable of the same name (with the
bundle's spec's source, unit, bounds, default and description), the work order's
quantity to the FMU's ``quantity`` (``quantity.variable``), and makes every output a
KPI read at the end of the one-second run (``reduction: final``): per KPI the mean, the
spread and the interval's bounds, the event probabilities, ``in_domain`` and
``domain_violations``. The FMU's outputs do not change within a run, so any stop time
gives the same KPIs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["surrogate_spec"]


def surrogate_spec(signature: dict[str, Any], spec: Any, table: dict[str, Any],
                   fmu_file: str) -> dict[str, Any]:  # fmt: skip
    """The spec (a mapping to dump as YAML) of the FMU built from ``table``."""
    variables = {v["name"]: v for v in table["variables"]}
    inputs: dict[str, Any] = {}
    quantity: dict[str, Any] | None = None
    for col in signature["inputs"]:
        name = col["name"]
        var = variables[name]
        entry: dict[str, Any] = {"variable": name, "description": var["description"]}
        if name == "quantity":
            q = spec.require_quantity()
            quantity = {"unit": q.unit, "min": q.min, "max": q.max, "integer": q.integer,
                        "variable": name, "description": var["description"]}  # fmt: skip
            continue
        inp = spec.inputs[name]
        entry["source"] = inp.source
        if col["kind"] == "categorical":
            names = list(col["choices"])
            if var["type"] == "Integer":  # --choices integer: the numbers of the items
                entry["choices"] = {c: k for k, c in enumerate(names, 1)}
            else:
                entry["choices"] = names
        elif col["kind"] == "boolean":
            entry["boolean"] = True
        else:
            entry["unit"] = inp.unit or "1"
            if col["kind"] == "integer":
                entry["integer"] = True
            for key in ("min", "max"):
                if getattr(inp, key) is not None:
                    entry[key] = getattr(inp, key)
        if inp.default is not None:
            entry["default"] = inp.default
        inputs[name] = entry
    kpis: dict[str, Any] = {}
    units = {k: v.get("unit") or "1" for k, v in signature["kpis"].items()}
    for var in table["variables"]:
        if var["causality"] != "output":
            continue
        name = var["name"]
        bases = [k for k in units if name == k or name.startswith(k + "_")]
        base = max(bases, key=len) if bases else None  # the longest: a_b_std is a_b's
        unit = units.get(base, "1") if base and not name.endswith("_probability") else "1"
        kpis[name] = {"variable": name, "reduction": "final", "unit": unit, "role": "process",
                      "description": var["description"]}  # fmt: skip
    return {
        "name": table["name"],
        "version": int(signature["spec"].get("version") or 1),
        "description": f"The surrogate FMU of {signature['name']}: {table['description']}",
        "fmu": {"path": fmu_file, "step_size": 1.0, "output_interval": 1.0},
        "inputs": inputs,
        **({"quantity": quantity} if quantity else {}),
        "kpis": kpis,
    }

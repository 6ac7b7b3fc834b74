"""What the twin knows about an FMU's variables, independent of fmpy.

The twin spec is checked against a catalogue of these, built either from a
model table under ``physics/models`` or from any FMU's modelDescription.xml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

VariableType = Literal["Real", "Integer", "Boolean", "Enumeration", "String", "Binary", "Clock"]
Causality = Literal[
    "parameter",
    "calculatedParameter",
    "input",
    "output",
    "local",
    "independent",
    "structuralParameter",
]


@dataclass(frozen=True, kw_only=True)
class VariableInfo:
    """One FMU variable: enough to validate a spec and a work order against it."""

    name: str
    type: VariableType
    causality: Causality
    variability: str = "continuous"
    unit: str | None = None
    start: float | bool | str | None = None
    min: float | None = None
    max: float | None = None
    description: str = ""
    # Enumeration items, name -> value, for type "Enumeration".
    items: Mapping[str, int] = field(default_factory=dict)
    # FMI 3 arrays: the size of each dimension (a number, or the structural parameter
    # that sets it); () for a scalar. Arrays are listed, never read as one number.
    shape: tuple[int | str, ...] = ()
    initial: str | None = None  # FMI's "exact", "approx" or "calculated"; None: not given

    @property
    def scalar_number(self) -> bool:
        """Whether a run can read this variable as one number (a KPI's variable)."""
        return not self.shape and self.type not in ("String", "Binary", "Clock")

    @property
    def settable(self) -> bool:
        """Whether a run can give this variable a value: a parameter or input, or a
        variable with initial="exact" such as a state's start value (FMI 2.0 and 3.0
        allow setting those in initialization mode, where runs set their start values)."""
        if self.causality in ("parameter", "input", "structuralParameter"):
            return True
        return self.initial == "exact" and self.variability != "constant"


Catalogue = Mapping[str, VariableInfo]


def table_parameter_name(column: str, row: str) -> str:
    """The FMU parameter that holds one cell of a model table: ``<column>_<row>``
    (``kc11_steel_c45``). A twin spec reads a column per choice of a categorical input
    as ``model.<column>[<input>]``, which takes ``<column>_<choice>`` for each choice."""
    return f"{column}_{row}"


def table_parameters(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The parameters a model table's ``tables`` generate, as rows of its ``variables``
    section: one per column and row of each table (column by column, rows in the order
    of the index enumeration), with the column's unit, bounds and description. The
    build appends them after the table's own variables, so the C model reads (and a
    run may override) each value like any other parameter."""
    enums = {
        name: [item["name"] for item in enum.get("items") or []]
        for name, enum in (table.get("enumerations") or {}).items()
    }
    out: list[dict[str, Any]] = []
    for tname, tab in (table.get("tables") or {}).items():
        rows = tab.get("rows") or {}
        for column, spec in (tab.get("columns") or {}).items():
            spec = spec or {}
            about = str(spec.get("description", "")).strip()
            for row in enums.get(tab.get("index"), []):
                cell: dict[str, Any] = {
                    "name": table_parameter_name(column, row),
                    "causality": "parameter",
                    "start": (rows.get(row) or {}).get(column),
                    "description": f"{tname}.{column}[{row}]" + (f": {about}" if about else ""),
                }
                cell.update({k: spec[k] for k in ("unit", "min", "max") if k in spec})
                out.append(cell)
    return out


def catalogue_from_model_table(path: str | Path) -> dict[str, VariableInfo]:
    """Read the variables of one of our model tables (``physics/models/*/model.yaml``),
    the parameters its ``tables`` generate included: the variables of the FMU built
    from it, with the same start values (its modelDescription.xml is generated from
    the same rows)."""
    table = yaml.safe_load(Path(path).read_text())
    enums = {
        name: {item["name"]: i + 1 for i, item in enumerate(enum["items"])}
        for name, enum in (table.get("enumerations") or {}).items()
    }
    out: dict[str, VariableInfo] = {}
    for row in [*table["variables"], *table_parameters(table)]:
        vtype = row.get("type", "Real")
        items = enums.get(row.get("declared_type", ""), {})
        out[row["name"]] = VariableInfo(
            name=row["name"],
            type=vtype,
            causality=row["causality"],
            variability=row.get("variability", _default_variability(vtype, row["causality"])),
            unit=None if row.get("unit") in (None, "1") else row["unit"],
            start=row.get("start"),
            min=row.get("min", min(items.values()) if items else None),
            max=row.get("max", max(items.values()) if items else None),
            description=row.get("description", ""),
            items=items,
        )
    return out


def catalogue_from_model_description(md: Any) -> dict[str, VariableInfo]:
    """Build a catalogue from an ``fmpy`` ModelDescription (FMI 2 or 3)."""
    out: dict[str, VariableInfo] = {}
    for v in md.modelVariables:
        vtype = _FMI3_TYPES.get(v.type, v.type)
        shape = tuple(_dimension(d) for d in (getattr(v, "dimensions", None) or []))
        declared = v.declaredType
        items = {}
        if declared is not None and getattr(declared, "items", None):
            items = {item.name: int(item.value) for item in declared.items}
        unit = v.unit or (declared.unit if declared is not None else None)
        lo = _as_float(v.min if v.min is not None else (declared.min if declared else None))
        hi = _as_float(v.max if v.max is not None else (declared.max if declared else None))
        if items:
            lo = float(min(items.values())) if lo is None else lo
            hi = float(max(items.values())) if hi is None else hi
        out[v.name] = VariableInfo(
            name=v.name,
            type=vtype,
            causality=v.causality,
            variability=v.variability or _default_variability(vtype, v.causality),
            unit=unit,
            start=_parse_start(v.start, vtype, shape),
            min=lo,
            max=hi,
            description=v.description or "",
            items=items,
            shape=shape,
            initial=getattr(v, "initial", None),
        )
    return out


def catalogue_from_fmu_file(path: str | Path) -> dict[str, VariableInfo]:
    """The scalar variables of an FMU file's ``modelDescription.xml`` (FMI 2.0 or 3.0),
    read with the standard library: names, types, causalities, units and start values,
    for a twin spec's ``model.<name>`` references where fmpy is not installed (a
    serving image). An FMU folder (unzipped) is read as well. ValueError says why a
    file cannot be read; a missing file raises FileNotFoundError."""
    import xml.etree.ElementTree as ET
    import zipfile

    path = Path(path)
    try:
        if path.is_dir():
            text = (path / "modelDescription.xml").read_bytes()
        else:
            with zipfile.ZipFile(path) as zf:
                text = zf.read("modelDescription.xml")
        root = ET.fromstring(text)
    except FileNotFoundError:
        raise
    except KeyError:
        raise ValueError(f"{path}: an FMU has a modelDescription.xml; this one has none") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path}: not an FMU (a zip file): {exc}") from None
    except ET.ParseError as exc:
        raise ValueError(f"{path}: its modelDescription.xml is not XML: {exc}") from None
    units: dict[str, str] = {}  # declared type -> unit
    for simple in root.iterfind("TypeDefinitions/*"):
        body = simple.find("Real") if simple.tag == "SimpleType" else simple  # FMI 2.0 | 3.0
        if body is not None and body.get("unit"):
            units[str(simple.get("name"))] = str(body.get("unit"))
    fmi2 = root.get("fmiVersion", "").startswith("2")
    out: dict[str, VariableInfo] = {}
    for element in root.iterfind("ModelVariables/*"):
        if fmi2:
            body = next(iter(element), None)
            if element.tag != "ScalarVariable" or body is None:
                continue
            tag = body.tag
        else:
            body, tag = element, element.tag
            if element.find("Dimension") is not None:
                continue  # an array: never one number
        vtype = _FMI3_TYPES.get(tag, tag)
        if vtype not in ("Real", "Integer", "Boolean", "Enumeration", "String"):
            continue
        name, causality = str(element.get("name")), element.get("causality", "local")
        unit = body.get("unit") or units.get(str(body.get("declaredType")))
        out[name] = VariableInfo(
            name=name,
            type=vtype,  # type: ignore[arg-type]  # one of the literal's names, checked above
            causality=causality,  # type: ignore[arg-type]  # FMI's names
            variability=element.get("variability") or _default_variability(vtype, causality),
            unit=None if unit in (None, "", "1") else unit,
            start=_parse_start(body.get("start"), vtype),
            description=element.get("description", ""),
        )
    return out


# FMI 3 type names -> the twin's (FMI 2) names.
_FMI3_TYPES = {
    "Float64": "Real",
    "Float32": "Real",
    "Int8": "Integer",
    "Int16": "Integer",
    "Int32": "Integer",
    "Int64": "Integer",
    "UInt8": "Integer",
    "UInt16": "Integer",
    "UInt32": "Integer",
    "UInt64": "Integer",
}


def _default_variability(vtype: str, causality: str) -> str:
    if causality in ("parameter", "calculatedParameter", "structuralParameter"):
        return "fixed"
    return "continuous" if vtype == "Real" else "discrete"


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _dimension(d: Any) -> int | str:
    if getattr(d, "start", None) is not None:
        return int(d.start)
    ref = getattr(d, "variable", None)
    return str(getattr(ref, "name", ref)) if ref is not None else "?"


def _parse_start(
    value: Any, vtype: str, shape: tuple[int | str, ...] = ()
) -> float | bool | str | None:
    if value is None:
        return None
    if shape or vtype in ("Binary", "Clock"):
        return str(value)  # an array's values, or hex bytes: shown, never set as a number
    if vtype == "Boolean":
        return str(value).lower() in ("true", "1")
    if vtype == "String":
        return str(value)
    return float(value)

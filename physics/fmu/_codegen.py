"""Model table (``model.yaml``) -> C header and FMI modelDescription.xml.

Both files come from the same parsed table in the same call, so the value
references in the C code and in the XML can never disagree. A table says which
FMI version it is built for (``fmi_version``, "2.0" by default, or "3.0").
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import yaml

from physics.fmu._errors import BuildError
from physics.variables import table_parameter_name, table_parameters

# SI decomposition of the units our models use: exponents of kg, m, s, K, rad,
# and factor/offset to SI. Emitted as FMI <BaseUnit> elements.
UNITS: dict[str, dict[str, float]] = {
    "s": {"s": 1},
    "min": {"s": 1, "factor": 60.0},
    "h": {"s": 1, "factor": 3600.0},
    "mm": {"m": 1, "factor": 1e-3},
    "um": {"m": 1, "factor": 1e-6},
    "mm2/s": {"m": 2, "s": -1, "factor": 1e-6},
    "m/min": {"m": 1, "s": -1, "factor": 1 / 60},
    "mm/min": {"m": 1, "s": -1, "factor": 1e-3 / 60},
    "rpm": {"rad": 1, "s": -1, "factor": 2 * math.pi / 60},
    "deg": {"rad": 1, "factor": math.pi / 180},
    "K": {"K": 1},
    "1/K": {"K": -1},
    "degC": {"K": 1, "offset": 273.15},
    "1/mm": {"m": -1, "factor": 1e3},
    "N": {"kg": 1, "m": 1, "s": -2},
    "N.m": {"kg": 1, "m": 2, "s": -2},
    "N/mm": {"kg": 1, "s": -2, "factor": 1e3},
    "N/mm2": {"kg": 1, "m": -1, "s": -2, "factor": 1e6},
    "N/mm3": {"kg": 1, "m": -2, "s": -2, "factor": 1e9},
    "J": {"kg": 1, "m": 2, "s": -2},
    "W": {"kg": 1, "m": 2, "s": -3},
    "J/K": {"kg": 1, "m": 2, "s": -2, "K": -1},
    "W/K": {"kg": 1, "m": 2, "s": -3, "K": -1},
    "W/rpm": {"kg": 1, "m": 2, "s": -2, "rad": -1, "factor": 60 / (2 * math.pi)},
    "Hz": {"s": -1},
    "1/s": {"s": -1},
    "1/min": {"s": -1, "factor": 1 / 60},
    "N/um": {"kg": 1, "s": -2, "factor": 1e6},
    "N/K": {"kg": 1, "m": 1, "s": -2, "K": -1},
    "kg/m3": {"kg": 1, "m": -3},
    "EUR": {},
    "EUR/mm": {"m": -1, "factor": 1e3},
}

_TYPES = {
    "Real": "VT_REAL",
    "Integer": "VT_INTEGER",
    "Enumeration": "VT_INTEGER",
    "Boolean": "VT_BOOLEAN",
}
FMI_VERSIONS = ("2.0", "3.0")
# FMI 3.0 requires one independent variable; it takes the value reference after
# the table's and this name, which a 3.0 table therefore cannot use.
FMI3_TIME_NAME = "time"
_FMI3_TYPES = {"Real": "Float64", "Integer": "Int32", "Enumeration": "Enumeration"}
_CAUSALITIES = {
    "parameter": "CA_PARAMETER",
    "calculatedParameter": "CA_CALCULATED_PARAMETER",
    "input": "CA_INPUT",
    "output": "CA_OUTPUT",
    "local": "CA_LOCAL",
}


@dataclass
class Variable:
    name: str
    vr: int
    type: str
    causality: str
    variability: str
    description: str = ""
    unit: str | None = None
    start: Any = None
    min: float | None = None
    max: float | None = None
    declared_type: str | None = None
    # Model exchange: the continuous state this variable is the time derivative of.
    derivative_of: str | None = None


@dataclass
class ModelTable:
    name: str
    description: str
    version: str
    author: str
    guid: str
    default_experiment: dict[str, float]
    enumerations: dict[str, list[dict[str, str]]]
    tables: dict[str, Any]
    variables: list[Variable] = field(default_factory=list)
    fmi_version: str = "2.0"
    # Whether the FMU also offers model exchange (the model then provides
    # model_derivatives, model_event_indicators and model_event_update; see model.h).
    model_exchange: bool = False
    event_indicators: int = 0

    def states(self) -> list[tuple[Variable, Variable]]:
        """(state, derivative) pairs of a model-exchange table, in table order."""
        by_name = {v.name: v for v in self.variables}
        return [(by_name[v.derivative_of], v) for v in self.variables if v.derivative_of]


def load_table(path: Path) -> ModelTable:
    """Parse and check a model table; errors name the variable and the field."""
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BuildError(f"{path}: not valid YAML: {exc}") from None
    where = str(path)
    fmi_version = raw.get("fmi_version", "2.0")
    if isinstance(fmi_version, float):
        fmi_version = str(fmi_version)  # unquoted 3.0 is a YAML number
    if fmi_version not in FMI_VERSIONS:
        raise BuildError(
            f"{where}: fmi_version: {fmi_version!r} is not one of "
            f"{', '.join(repr(v) for v in FMI_VERSIONS)}"
        )
    enums = {name: e["items"] for name, e in (raw.get("enumerations") or {}).items()}
    tables = raw.get("tables") or {}
    _check_tables(tables, enums, where)
    own = raw.get("variables") or []
    taken = {row.get("name") for row in own}
    for tname, table in tables.items():
        for column in table.get("columns") or {}:
            for item in enums[table["index"]]:
                if (cell := table_parameter_name(column, item["name"])) in taken:
                    raise BuildError(
                        f"{where}: tables.{tname}.columns.{column}: its parameter {cell} "
                        "has the name of a variable; rename the column or the variable"
                    )
    generated = table_parameters(raw)
    variables: list[Variable] = []
    seen: set[str] = set()
    # The tables' parameters come after the table's variables: their value references
    # follow, and adding a table leaves every other value reference as it was.
    for vr, row in enumerate([*own, *generated]):
        name = row.get("name")
        if not name or not str(name).isidentifier():
            raise BuildError(f"{where}: variables[{vr}].name: {name!r} is not a C identifier")
        if name in seen:
            raise BuildError(f"{where}: variables.{name}: defined twice")
        seen.add(name)
        vtype = row.get("type", "Real")
        if vtype not in _TYPES:
            raise BuildError(
                f"{where}: variables.{name}.type: {vtype!r} is not one of {', '.join(_TYPES)}"
            )
        causality = row.get("causality")
        if causality not in _CAUSALITIES:
            raise BuildError(
                f"{where}: variables.{name}.causality: {causality!r} is not one of "
                f"{', '.join(_CAUSALITIES)}"
            )
        unit = row.get("unit")
        if unit == "1":
            unit = None
        if unit is not None and unit not in UNITS:
            raise BuildError(
                f"{where}: variables.{name}.unit: {unit!r} is not a known unit "
                f"(known: {', '.join(sorted(UNITS))})"
            )
        declared = row.get("declared_type")
        if vtype == "Enumeration" and declared not in enums:
            raise BuildError(
                f"{where}: variables.{name}.declared_type: {declared!r} is not an "
                f"enumeration of this table ({', '.join(enums) or 'none'})"
            )
        has_start = causality in ("parameter", "input")
        if has_start and row.get("start") is None:
            raise BuildError(
                f"{where}: variables.{name}.start: missing (required for a {causality})"
            )
        if not has_start and row.get("start") is not None:
            raise BuildError(
                f"{where}: variables.{name}.start: a {causality} is calculated and "
                "takes no start value"
            )
        lo, hi = row.get("min"), row.get("max")
        for key in ("min", "max", "start"):
            value = row.get(key)
            if value is not None and not isinstance(value, (int, float)):
                raise BuildError(
                    f"{where}: variables.{name}.{key}: {value!r} is not a number "
                    "(YAML needs a signed exponent: 1.0e+6, not 1.0e6)"
                )
        if vtype == "Enumeration":
            lo, hi = 1, len(enums[declared])
        if lo is not None and hi is not None and lo > hi:
            raise BuildError(f"{where}: variables.{name}: min {lo} is above max {hi}")
        start = row.get("start")
        if (
            start is not None
            and vtype != "Boolean"
            and ((lo is not None and start < lo) or (hi is not None and start > hi))
        ):
            raise BuildError(f"{where}: variables.{name}.start: {start} is outside [{lo}, {hi}]")
        variability = row.get("variability") or (
            "fixed"
            if causality in ("parameter", "calculatedParameter")
            else "continuous"
            if vtype == "Real"
            else "discrete"
        )
        variables.append(
            Variable(
                name=name,
                vr=vr,
                type=vtype,
                causality=causality,
                variability=variability,
                description=str(row.get("description", "")).strip(),
                unit=unit,
                start=start,
                min=lo,
                max=hi,
                declared_type=declared,
                derivative_of=row.get("derivative_of"),
            )
        )
    model_exchange, event_indicators = _model_exchange(raw, variables, where, fmi_version)
    if fmi_version == "3.0" and FMI3_TIME_NAME in seen:
        raise BuildError(
            f"{where}: variables.{FMI3_TIME_NAME}: the name is reserved for the independent "
            "variable of an FMI 3.0 model; rename the variable"
        )
    # The GUID changes whenever the table changes, and only then.
    guid = "{" + str(uuid.UUID(hashlib.sha256(text.encode()).hexdigest()[:32])) + "}"
    return ModelTable(
        name=raw["name"],
        description=" ".join(str(raw.get("description", "")).split()),
        version=str(raw.get("version", "1.0")),
        author=str(raw.get("author", "")),
        guid=guid,
        default_experiment=raw.get("default_experiment") or {},
        enumerations=enums,
        tables=tables,
        variables=variables,
        fmi_version=fmi_version,
        model_exchange=model_exchange,
        event_indicators=event_indicators,
    )


# What a table column may say about its parameters (the values are in the rows).
_COLUMN_KEYS = ("unit", "min", "max", "description")


def _check_tables(tables: Any, enums: dict[str, list[dict[str, str]]], where: str) -> None:
    """Each table indexes an enumeration of this model table and has every cell: one
    row per item of the index, one value per column, a number."""
    if not isinstance(tables, dict):
        raise BuildError(f"{where}: tables: expected a mapping of table names, got {tables!r}")
    for tname, table in tables.items():
        index = enums.get(table.get("index"))
        if index is None:
            raise BuildError(
                f"{where}: tables.{tname}.index: {table.get('index')!r} is not an "
                "enumeration of this table"
            )
        for column, spec in (table.get("columns") or {}).items():
            at = f"{where}: tables.{tname}.columns.{column}"
            if not str(column).isidentifier():
                raise BuildError(f"{at}: {column!r} is not a C identifier")
            if extra := sorted(set(spec or {}) - set(_COLUMN_KEYS)):
                allowed = ", ".join(_COLUMN_KEYS)
                raise BuildError(f"{at}: unknown key {', '.join(extra)} (allowed: {allowed})")
        for item in index:
            row = table["rows"].get(item["name"])
            if row is None:
                raise BuildError(f"{where}: tables.{tname}.rows: no row for {item['name']}")
            missing = set(table["columns"]) - set(row)
            if missing:
                raise BuildError(
                    f"{where}: tables.{tname}.rows.{item['name']}: missing "
                    f"{', '.join(sorted(missing))}"
                )


def _model_exchange(
    raw: dict[str, Any], variables: list[Variable], where: str, fmi_version: str
) -> tuple[bool, int]:
    """The table's ``model_exchange`` section and ``derivative_of`` fields, checked:
    (whether the FMU offers model exchange, its number of event indicators)."""
    section = raw.get("model_exchange")
    derivatives = [v for v in variables if v.derivative_of is not None]
    if section is None:
        if derivatives:
            raise BuildError(
                f"{where}: variables.{derivatives[0].name}.derivative_of: only a table with "
                "a model_exchange section declares derivatives"
            )
        return False, 0
    if section is True:
        section = {}
    if not isinstance(section, dict) or set(section) - {"event_indicators"}:
        raise BuildError(
            f"{where}: model_exchange: {section!r} must be true or a mapping with event_indicators"
        )
    count = section.get("event_indicators", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1000:
        raise BuildError(
            f"{where}: model_exchange.event_indicators: {count!r} must be an integer in [0, 1000]"
        )
    if count and fmi_version != "2.0":
        # FMI 3.0 lists each event indicator as a variable (<EventIndicator>): not yet.
        raise BuildError(
            f"{where}: model_exchange.event_indicators: {count} in an FMI {fmi_version} "
            "table; FMI 3.0 model-exchange builds have no event indicators yet"
        )
    by_name = {v.name: v for v in variables}
    states: set[str] = set()
    for der in derivatives:
        at = f"{where}: variables.{der.name}"
        state = by_name.get(str(der.derivative_of))
        if state is None:
            raise BuildError(f"{at}.derivative_of: {der.derivative_of!r} is not a variable")
        for v, role in ((der, "derivative"), (state, "state")):
            if v.type != "Real" or v.causality not in ("output", "local"):
                raise BuildError(
                    f"{at}.derivative_of: the {role} {v.name} must be a Real output or "
                    f"local (it is a {v.type} {v.causality})"
                )
        if state.name in states:
            raise BuildError(f"{at}.derivative_of: {state.name} has two derivatives")
        states.add(state.name)
    return True, count


def _c_number(value: Any) -> str:
    if value is None:
        return "0.0"
    if isinstance(value, bool):
        return "1.0" if value else "0.0"
    return repr(float(value))


def render_header(model: ModelTable) -> str:
    """The C header every model file and the framework include."""
    lines = [
        f"/* Generated by asset-twin from {model.name}/model.yaml. Do not edit. */",
        "#ifndef MODEL_VARS_H",
        "#define MODEL_VARS_H",
        "#include <math.h>",
        "",
        f'#define MODEL_NAME "{model.name}"',
        f'#define MODEL_GUID "{model.guid}"',
        f"#define N_VARS {len(model.variables)}",
        "",
        "enum {",
    ]
    lines += [f"    VR_{v.name} = {v.vr}," for v in model.variables]
    lines += ["};", ""]
    for ename, items in model.enumerations.items():
        lines.append(f"enum {{ /* {ename} */")
        lines += [f"    {ename}_{it['name']} = {i + 1}," for i, it in enumerate(items)]
        lines += ["};", f"#define N_{ename.upper()} {len(items)}", ""]
    if model.tables:
        # A table's values are parameters (<column>_<row>): T(table, column, row) reads
        # the one of a row (0-based) in model code, as V(name) reads a variable.
        lines += ["#define T(table, column, row) (s->v[table##_##column##_VR[(row)]])", ""]
    for tname, table in model.tables.items():
        items = model.enumerations[table["index"]]
        for col in table["columns"]:
            vrs = ", ".join(f"VR_{table_parameter_name(col, it['name'])}" for it in items)
            lines.append(f"static const unsigned int {tname}_{col}_VR[{len(items)}] = {{{vrs}}};")
        lines.append("")
    lines.append("static const VarDef MODEL_VARS[N_VARS] = {")
    for v in model.variables:
        lo = "-HUGE_VAL" if v.min is None else _c_number(v.min)
        hi = "HUGE_VAL" if v.max is None else _c_number(v.max)
        if v.type == "Boolean":
            lo, hi = "0.0", "1.0"
        lines.append(
            f'    {{"{v.name}", {_TYPES[v.type]}, {_CAUSALITIES[v.causality]}, '
            f"{_c_number(v.start)}, {lo}, {hi}}},"
        )
    lines += ["};", ""]
    if model.model_exchange:
        pairs = model.states()
        # C has no empty arrays: a model without states gets one unused entry.
        state_vrs = ", ".join(str(s.vr) for s, _ in pairs) or "0"
        derivative_vrs = ", ".join(str(d.vr) for _, d in pairs) or "0"
        lines += [
            "#define MODEL_EXCHANGE 1",
            f"#define N_STATES {len(pairs)}",
            f"#define N_EVENT_INDICATORS {model.event_indicators}",
            f"static const unsigned int STATE_VRS[] = {{{state_vrs}}};",
            f"static const unsigned int DERIVATIVE_VRS[] = {{{derivative_vrs}}};",
            "",
        ]
    lines += ["#endif", ""]
    return "\n".join(lines)


def _xml_number(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _unit_definitions(units: set[str]) -> list[str]:
    """<UnitDefinitions> lines (the same in FMI 2.0 and 3.0); none for no units."""
    if not units:
        return []
    out = ["  <UnitDefinitions>"]
    for unit in sorted(units):
        base = UNITS[unit]
        attrs = " ".join(
            f'{k}="{_xml_number(base[k])}"'
            for k in ("kg", "m", "s", "K", "rad", "factor", "offset")
            if k in base
        )
        out.append(f"    <Unit name={quoteattr(unit)}><BaseUnit {attrs}/></Unit>")
    out.append("  </UnitDefinitions>")
    return out


def _log_categories_and_default_experiment(model: ModelTable) -> list[str]:
    """<LogCategories> and <DefaultExperiment> lines (the same in FMI 2.0 and 3.0)."""
    out = [
        "  <LogCategories>",
        '    <Category name="logStatusWarning"/>',
        '    <Category name="logStatusError"/>',
        "  </LogCategories>",
    ]
    exp = model.default_experiment
    if exp:
        attrs = " ".join(
            f'{xml}="{_xml_number(float(exp[key]))}"'
            for key, xml in (
                ("start_time", "startTime"),
                ("stop_time", "stopTime"),
                ("step_size", "stepSize"),
            )
            if key in exp
        )
        out.append(f"  <DefaultExperiment {attrs}/>")
    return out


def render_model_description(model: ModelTable, source_files: list[str], tool: str) -> str:
    """modelDescription.xml for FMI 2.0 co-simulation."""
    a = quoteattr
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<fmiModelDescription fmiVersion="2.0" modelName={a(model.name)} guid={a(model.guid)}'
        f" description={a(model.description)} author={a(model.author)}"
        f" version={a(model.version)} generationTool={a(tool)}"
        ' variableNamingConvention="flat"'
        f' numberOfEventIndicators="{model.event_indicators}">',
    ]
    sources = [
        "    <SourceFiles>",
        *[f"      <File name={a(name)}/>" for name in source_files],
        "    </SourceFiles>",
    ]
    if model.model_exchange:
        out += [
            f"  <ModelExchange modelIdentifier={a(model.name)}"
            ' completedIntegratorStepNotNeeded="true" canGetAndSetFMUstate="true"'
            ' canSerializeFMUstate="true" canNotUseMemoryManagementFunctions="true">',
            *sources,
            "  </ModelExchange>",
        ]
    out += [
        f"  <CoSimulation modelIdentifier={a(model.name)}"
        ' canHandleVariableCommunicationStepSize="true" canGetAndSetFMUstate="true"'
        ' canSerializeFMUstate="true" canNotUseMemoryManagementFunctions="true">',
        *sources,
        "  </CoSimulation>",
    ]
    out += _unit_definitions({v.unit for v in model.variables if v.unit})
    if model.enumerations:
        out.append("  <TypeDefinitions>")
        for ename, items in model.enumerations.items():
            out.append(f"    <SimpleType name={a(ename)}>")
            out.append("      <Enumeration>")
            for i, it in enumerate(items):
                out.append(
                    f'        <Item name={a(it["name"])} value="{i + 1}"'
                    f" description={a(it.get('description', ''))}/>"
                )
            out.append("      </Enumeration>")
            out.append("    </SimpleType>")
        out.append("  </TypeDefinitions>")
    out += _log_categories_and_default_experiment(model)
    # Indices in ModelStructure and derivative="" are 1-based positions in ModelVariables.
    positions = {v.name: v.vr + 1 for v in model.variables}
    out.append("  <ModelVariables>")
    for v in model.variables:
        out.append(
            f'    <ScalarVariable name={a(v.name)} valueReference="{v.vr}"'
            f' causality="{v.causality}" variability="{v.variability}"'
            f" description={a(v.description)}>"
        )
        var_attrs: list[str] = []
        if v.declared_type:
            var_attrs.append(f"declaredType={a(v.declared_type)}")
        if v.unit:
            var_attrs.append(f"unit={a(v.unit)}")
        if v.derivative_of:
            var_attrs.append(f'derivative="{positions[v.derivative_of]}"')
        # Integer and Enumeration attributes are xs:int in the schema.
        num = (lambda x: str(int(x))) if v.type in ("Integer", "Enumeration") else _xml_number
        if v.start is not None:
            var_attrs.append(
                f'start="{_xml_number(v.start) if v.type == "Boolean" else num(v.start)}"'
            )
        if v.type != "Boolean" and v.declared_type is None:
            if v.min is not None:
                var_attrs.append(f'min="{num(v.min)}"')
            if v.max is not None:
                var_attrs.append(f'max="{num(v.max)}"')
        out.append(f"      <{v.type} {' '.join(var_attrs)}/>".replace(" />", "/>"))
        out.append("    </ScalarVariable>")
    out.append("  </ModelVariables>")
    outputs = [v.vr + 1 for v in model.variables if v.causality == "output"]
    pairs = model.states()
    derivatives = sorted(d.vr + 1 for _, d in pairs)
    # Calculated during initialization: outputs, calculated parameters and, for model
    # exchange, every derivative and every state that is not an output already.
    calculated = {
        v.vr + 1 for v in model.variables if v.causality in ("output", "calculatedParameter")
    }
    calculated |= set(derivatives) | {s.vr + 1 for s, _ in pairs}
    initial = sorted(calculated)
    out.append("  <ModelStructure>")
    if outputs:
        out.append("    <Outputs>")
        out += [f'      <Unknown index="{i}"/>' for i in outputs]
        out.append("    </Outputs>")
    if derivatives:
        out.append("    <Derivatives>")
        out += [f'      <Unknown index="{i}"/>' for i in derivatives]
        out.append("    </Derivatives>")
    if initial:
        out.append("    <InitialUnknowns>")
        out += [f'      <Unknown index="{i}"/>' for i in initial]
        out.append("    </InitialUnknowns>")
    out.append("  </ModelStructure>")
    out.append("</fmiModelDescription>")
    return "\n".join(out) + "\n"


# ---- FMI 3.0 ---------------------------------------------------------------------


def render_header_fmi3(model: ModelTable) -> str:
    """``model_vars_fmi3.h``: what the FMI 3.0 framework needs beside model_vars.h.

    FMI 3.0 reads and sets Enumerations as Int64 and Integers as Int32, but
    model.h types both VT_INTEGER; this table tells them apart.
    """
    flags = ", ".join("1" if v.type == "Enumeration" else "0" for v in model.variables)
    lines = [
        f"/* Generated by asset-twin from {model.name}/model.yaml. Do not edit. */",
        "#ifndef MODEL_VARS_FMI3_H",
        "#define MODEL_VARS_FMI3_H",
        "",
        "/* 1 where the variable is an Enumeration (fmi3GetInt64/fmi3SetInt64). */",
        f"static const unsigned char MODEL_VAR_IS_ENUMERATION[N_VARS] = {{{flags}}};",
        "",
        "#endif",
        "",
    ]
    return "\n".join(lines)


def _fmi3_variable(v: Variable, vrs: dict[str, int]) -> str:
    a = quoteattr
    tag = "Boolean" if v.type == "Boolean" else _FMI3_TYPES[v.type]
    attrs = [
        f"name={a(v.name)}",
        f'valueReference="{v.vr}"',
        f'causality="{v.causality}"',
        f'variability="{v.variability}"',
        f"description={a(v.description)}",
    ]
    if v.declared_type:
        attrs.append(f"declaredType={a(v.declared_type)}")
    if v.unit:
        attrs.append(f"unit={a(v.unit)}")
    if v.derivative_of:  # FMI 3.0 names the state by its value reference
        attrs.append(f'derivative="{vrs[v.derivative_of]}"')
    # Float64 attributes are xs:double, Int32 xs:int, Enumeration xs:long.
    num = (lambda x: _xml_number(float(x))) if tag == "Float64" else (lambda x: str(int(x)))
    if v.start is not None:
        attrs.append(
            f'start="{("true" if v.start else "false") if tag == "Boolean" else num(v.start)}"'
        )
    if tag != "Boolean" and v.declared_type is None:
        if v.min is not None:
            attrs.append(f'min="{num(v.min)}"')
        if v.max is not None:
            attrs.append(f'max="{num(v.max)}"')
    return f"    <{tag} {' '.join(attrs)}/>"


def render_model_description_fmi3(model: ModelTable, source_files: list[str], tool: str) -> str:
    """modelDescription.xml for FMI 3.0 co-simulation (and model exchange, when the
    table has a model_exchange section).

    Value references are the table's, as in FMI 2.0. The independent variable
    ``time`` that FMI 3.0 requires comes last, with the next free value
    reference (``len(model.variables)``, ``N_VARS`` in C). FMI 3.0 has no
    <SourceFiles> here: ``source_files`` go to ``sources/buildDescription.xml``
    (render_build_description_fmi3); the argument keeps both versions' calls alike.
    """
    a = quoteattr
    time_vr = len(model.variables)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<fmiModelDescription fmiVersion="3.0" modelName={a(model.name)}'
        f" instantiationToken={a(model.guid)} description={a(model.description)}"
        f" author={a(model.author)} version={a(model.version)} generationTool={a(tool)}"
        ' variableNamingConvention="flat">',
        f"  <CoSimulation modelIdentifier={a(model.name)}"
        ' canHandleVariableCommunicationStepSize="true" canGetAndSetFMUState="true"'
        ' canSerializeFMUState="true" hasEventMode="true"/>',
    ]
    if model.model_exchange:
        out.insert(
            -1,
            f"  <ModelExchange modelIdentifier={a(model.name)}"
            ' needsCompletedIntegratorStep="false" canGetAndSetFMUState="true"'
            ' canSerializeFMUState="true"/>',
        )
    out += _unit_definitions({v.unit for v in model.variables if v.unit} | {"s"})
    if model.enumerations:
        out.append("  <TypeDefinitions>")
        for ename, items in model.enumerations.items():
            out.append(f"    <EnumerationType name={a(ename)}>")
            for i, it in enumerate(items):
                out.append(
                    f'      <Item name={a(it["name"])} value="{i + 1}"'
                    f" description={a(it.get('description', ''))}/>"
                )
            out.append("    </EnumerationType>")
        out.append("  </TypeDefinitions>")
    out += _log_categories_and_default_experiment(model)
    out.append("  <ModelVariables>")
    vrs = {v.name: v.vr for v in model.variables}
    out += [_fmi3_variable(v, vrs) for v in model.variables]
    out.append(
        f'    <Float64 name="{FMI3_TIME_NAME}" valueReference="{time_vr}"'
        ' causality="independent" variability="continuous"'
        ' description="Simulation time" unit="s"/>'
    )
    out.append("  </ModelVariables>")
    out.append("  <ModelStructure>")
    out += [
        f'    <Output valueReference="{v.vr}"/>' for v in model.variables if v.causality == "output"
    ]
    pairs = model.states()
    out += [f'    <ContinuousStateDerivative valueReference="{d.vr}"/>' for _, d in pairs]
    calculated = {v.vr for v in model.variables if v.causality in ("output", "calculatedParameter")}
    calculated |= {d.vr for _, d in pairs} | {s.vr for s, _ in pairs}
    out += [f'    <InitialUnknown valueReference="{vr}"/>' for vr in sorted(calculated)]
    out.append("  </ModelStructure>")
    out.append("</fmiModelDescription>")
    return "\n".join(out) + "\n"


def render_build_description_fmi3(model: ModelTable, source_files: list[str]) -> str:
    """``sources/buildDescription.xml``: how to compile the shipped C sources (FMI 3.0)."""
    a = quoteattr
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<fmiBuildDescription fmiVersion="3.0">',
        f"  <BuildConfiguration modelIdentifier={a(model.name)}>",
        '    <SourceFileSet language="C99">',
        *[f"      <SourceFile name={a(name)}/>" for name in source_files],
        "    </SourceFileSet>",
        "  </BuildConfiguration>",
        "</fmiBuildDescription>",
    ]
    return "\n".join(out) + "\n"

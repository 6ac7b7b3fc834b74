"""How spec text comes in and problems go out, for :mod:`physics.spec`.

Reading YAML, turning incoming values (typed, or text from a CLI) into numbers,
booleans and choices, the wording of every problem (``<field.path>: <problem>``),
and the canonical form the spec hash is taken of.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

import numpy as np
import yaml
from pydantic import BaseModel, ValidationError

from physics.expr import CONSTANTS, FUNCTIONS

if TYPE_CHECKING:
    from physics.spec import InputSpec, TwinSpec


class Problems(ValueError):
    """Raised inside pydantic validation; carries finished ``path: problem`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_RESERVED = {"quantity", *FUNCTIONS, *CONSTANTS}


# ---- wording -----------------------------------------------------------------------


def fmt(value: Any) -> str:
    """A value as a person writes it: 24000 not 24000.0, true not True, 'text' quoted."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):  # numpy scalars print as np.float64(...) otherwise
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return repr(value)


def suggest(name: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unit_suffix(unit: str | None) -> str:
    return "" if unit in (None, "", "1") else f" {unit}"


def name_problem(name: str, *, reserved: bool = True) -> str | None:
    if not _NAME.match(name) or keyword.iskeyword(name):
        return (
            f"{name!r} is not a valid name "
            "(lower-case letters, digits and _, starting with a letter)"
        )
    if reserved and name in _RESERVED:
        return f"{name!r} is reserved in expressions"
    return None


def unknown_key(key: str, fields: Iterable[str]) -> str:
    """``key: unknown key (...)``, a problem line relative to the section."""
    hint = suggest(key, fields)
    return (
        f"{key}: unknown key{hint}"
        if hint
        else (f"{key}: unknown key (allowed: {', '.join(fields)})")
    )


def problems_from_validation(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """pydantic's errors as ``path: problem`` lines; ``root`` is the validated model."""
    out: list[str] = []
    for err in exc.errors():
        if err["loc"][:1] == ("derived",) and err["loc"][2:3] in (("text",), ("block",)):
            # the tag pydantic puts in for a derived value's form (physics.spec.Derived)
            err["loc"] = err["loc"][:2] + err["loc"][3:]
        path = _loc_path(err["loc"])
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, Problems):
            out.extend(f"{path}.{p}" if path else p for p in inner.problems)
            continue
        if err["type"] == "extra_forbidden":
            text = unknown_key(str(err["loc"][-1]), _fields_at(root, err["loc"][:-1]))
            out.append(f"{_loc_path(err['loc'][:-1])}.{text}" if len(err["loc"]) > 1 else text)
            continue
        text = _error_text(err)
        out.append(f"{path}: {text}" if path else text)
    return out


def _fields_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the section at ``loc``, following the schema's annotations."""
    node: Any = root
    for part in loc:
        node = _section_type(node)
        if isinstance(node, type) and issubclass(node, BaseModel) and isinstance(part, str):
            node = node.model_fields[part].annotation
        elif get_origin(node) in (dict, list):
            node = get_args(node)[-1]
        else:
            return []
    node = _section_type(node)
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _section_type(node: Any) -> Any:
    """``X | None`` -> ``X``; a text-or-section union (a derived value) -> the section."""
    while get_origin(node) is Annotated:
        node = get_args(node)[0]
    if get_origin(node) in (Union, UnionType):
        options = [_section_type(a) for a in get_args(node) if a is not type(None)]
        if len(options) > 1:
            options = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        return options[0] if len(options) == 1 else node
    return node


def _loc_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing" if value is None else fmt(value)


def _error_text(err: Any) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "missing":
        return "missing"
    if kind in ("float_type", "float_parsing"):
        return f"{_describe(value)} is not a number"
    if kind == "finite_number":
        return f"{_describe(value)} is not a finite number"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{_describe(value)} is not a whole number"
    if kind in ("bool_type", "bool_parsing"):
        return f"{_describe(value)} is not true or false"
    if kind == "string_type":
        return f"expected text, got {_describe(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_describe(value)}"
    if kind == "list_type":
        return f"expected a list, got {_describe(value)}"
    if kind == "literal_error":
        return f"{_describe(value)} is not one of {ctx['expected']}"
    if kind == "value_error":
        return str(ctx["error"])
    return str(err["msg"])


# ---- values ----------------------------------------------------------------------------


def domain_text(inp: InputSpec) -> str:
    if inp.kind == "boolean":
        return "true or false"
    if inp.kind == "categorical":
        return "one of " + ", ".join(inp.choice_names)
    return f"allowed range [{fmt(inp.min)}, {fmt(inp.max)}]{unit_suffix(inp.unit)}"


def coerce_number(
    raw: Any, *, integer: bool, low: float | None, high: float | None, unit: str | None
) -> int | float:
    """A number from a number or its text; ValueError names the value and the range."""
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"{fmt(raw)} is not a number") from None
    elif isinstance(raw, numbers.Real) and not isinstance(raw, bool | np.bool_):
        value = float(raw)  # numpy scalars too: a DOE hands those over
    else:
        raise ValueError(f"{fmt(raw)} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{fmt(raw)} is not a finite number")
    if integer and not value.is_integer():
        raise ValueError(f"{fmt(raw)} is not a whole number")
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(
            f"{fmt(value)} is outside the allowed range [{fmt(low)}, {fmt(high)}]"
            f"{unit_suffix(unit)}"
        )
    return int(value) if integer else value


def coerce_input(inp: InputSpec, raw: Any) -> bool | int | float | str:
    if inp.kind == "boolean":
        if isinstance(raw, bool | np.bool_):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        raise ValueError(f"{fmt(raw)} is not a boolean (use true or false)")
    if inp.kind == "categorical":
        if isinstance(raw, str) and raw.strip() in inp.choice_names:
            return raw.strip()
        raise ValueError(f"{fmt(raw)} is not one of {', '.join(inp.choice_names)}")
    return coerce_number(
        raw, integer=inp.kind == "integer", low=inp.min, high=inp.max, unit=inp.unit
    )


def check_choices_shape(value: Any) -> Any:
    ok = (
        value is None
        or (isinstance(value, list) and all(isinstance(c, str) for c in value))
        or (
            isinstance(value, dict)
            and all(isinstance(k, str) and type(v) is int for k, v in value.items())
        )
    )
    if not ok:
        raise ValueError("expected a list of names, or a mapping of names to integer values")
    return value


def check_factor_choices_shape(value: Any) -> Any:
    if value is not None and not (
        isinstance(value, list) and all(isinstance(c, str | bool) for c in value)
    ):
        raise ValueError("expected a list of choice names, or of true/false")
    return value


# ---- hashing and YAML ------------------------------------------------------------------


def canonical(spec: TwinSpec) -> Any:
    """The spec as plain data in one normal form: numbers as floats, expressions unparsed."""
    data = spec.model_dump(mode="json")
    data["stop_time"] = _normal_expr(spec.stop_time)
    data["derived"] = {
        k: _normal_expr(v) if isinstance(v, str) else _normal_block(data["derived"][k])
        for k, v in spec.derived.items()
    }
    for c in data["constraints"]:
        c["expr"] = _normal_expr(c["expr"])
    for key, inp in spec.inputs.items():
        if inp.default is not None:
            data["inputs"][key]["default"] = inp.coerce(inp.default)
        # Added later: left out while unused (see below).
        if inp.aliases is None:
            del data["inputs"][key]["aliases"]
        if not inp.from_material_requirements:
            del data["inputs"][key]["from_material_requirements"]
    if spec.quantity is not None and spec.quantity.variable is None:
        del data["quantity"]["variable"]  # added later: left out while unused
    if spec.doe is not None:
        data["doe"]["fixed"] = {
            k: spec.require_quantity().coerce(v) if k == "quantity" else spec.inputs[k].coerce(v)
            for k, v in spec.doe.fixed.items()
        }
    # Fields added later are left out while unused, so a spec that does not use them
    # keeps the hash it had before they existed (and its datasets stay resumable).
    if not spec.feasibility:
        del data["feasibility"]
    for key, a in spec.acceptance.items():
        if a.scope == "all":
            del data["acceptance"][key]["scope"]
    # How a surrogate is verified is not what it learns: never part of the hash.
    del data["verification"]
    if spec.doe is not None and spec.doe.stratify is None:
        del data["doe"]["stratify"]
    for key in ("start_time", "interface", "tolerance"):
        if getattr(spec.fmu, key) is None:
            del data["fmu"][key]
    if spec.quantity is None:
        del data["quantity"]
    if not spec.model_constants:
        del data["model_constants"]
    if spec.operations is None:
        del data["operations"]
    for key, q in spec.quality.items():
        if q.surfaces is None:
            del data["quality"][key]["surfaces"]
        if not q.stock:
            del data["quality"][key]["stock"]
    # The model's constants the expressions read are part of what the spec says: a
    # change in the model changes the hash (a bundle trained before no longer matches).
    if values := spec.model_constant_values:
        data["model_constant_values"] = dict(sorted(values.items()))
    return _as_floats(data)


def _normal_expr(text: str) -> str:
    return ast.unparse(ast.parse(text.strip(), mode="eval"))


def _normal_block(data: dict[str, Any]) -> dict[str, Any]:
    """A derived block (physics.blocks) as plain data, its expressions unparsed and the
    keys it leaves out dropped (a block without a grid hashes as one without the keys)."""
    out: dict[str, Any] = {"steps": {k: _normal_expr(v) for k, v in data["steps"].items()}}
    if data.get("value") is not None:
        out["value"] = _normal_expr(data["value"])
    else:
        out |= {"over": data["over"], "points": data["points"],
                "at_each": {k: _normal_expr(v) for k, v in data["at_each"].items()},
                "min_at_crossings": data["min_at_crossings"]}  # fmt: skip
        if data.get("across"):  # added later: left out while unused
            out["across"] = data["across"]
        if data.get("sum_of") is not None:
            out["sum_of"] = data["sum_of"]
    return out


def _as_floats(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: SafeLoader reports it itself
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"not valid YAML: {getattr(exc, 'problem', None) or exc}{where}"


def indicator(key: str, choice: str) -> str:
    """The expression name that is 1.0 when input ``key`` has ``choice``, else 0.0:
    ``material_is_steel_c45``. Characters a name cannot hold (an enumeration item such
    as "Steel C45" may have spaces) become "_": ``material_is_Steel_C45``."""
    return f"{key}_is_{re.sub(r'[^0-9A-Za-z_]', '_', choice)}"


def read_yaml_mapping(
    path: Path, error: Callable[..., Exception], *, empty_ok: bool = False
) -> dict[str, Any]:
    """A YAML file's top-level mapping; a problem raises ``error([problem], source=path)``."""
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error([f"cannot read the file: {exc.strerror}"], source=str(path)) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        bad = f"byte 0x{exc.object[exc.start]:02x}"
        raise error(
            [f"line {line}: {bad} is not UTF-8; save the file as UTF-8"], source=str(path)
        ) from None
    try:
        data = yaml.load(content, Loader=UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise error([yaml_problem(exc)], source=str(path)) from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        problem = f"expected a mapping of sections at the top level, got {type(data).__name__}"
        raise error([problem], source=str(path))
    return data

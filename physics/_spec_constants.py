"""The model's constants in a twin spec's expressions, read from the FMU at load.

A derived value that restates the model's physics in closed form (a baseline, a
constraint) needs the model's constants: the S1 power, the carbide's modulus, the
material table. Written as numbers in the spec they would be declared twice, and a
change to the model would silently leave the spec behind. Instead an expression
reads them from the FMU:

* ``model.rated_power``: the start value of the FMU parameter ``rated_power``;
* ``model.kc11[material]``: per choice of the categorical input ``material``, the
  parameter ``kc11_<choice>`` (the cells of our model tables are such parameters, see
  ``physics.variables.table_parameters``), summed with the choice indicators.

Where the values come from: for ``fmu.model`` the model table the FMU is built from
(its modelDescription.xml is generated from the same rows, so no build is needed and
a serving image without a compiler or fmpy reads them too); for ``fmu.path`` the
modelDescription.xml inside that FMU file. The spec's ``model_constants`` section
names the unit each constant's formulas are written for, and loading refuses an FMU
parameter declared in another unit.

A reference is refused, with the field and the expression, when the parameter does
not exist, is not a parameter, is not a number, or is set per run by one of the
spec's inputs (the start value is then not what the run uses).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from physics._spec_text import fmt, indicator, suggest
from physics.expr import MODEL
from physics.variables import (
    Catalogue,
    VariableInfo,
    catalogue_from_fmu_file,
    catalogue_from_model_table,
    table_parameter_name,
)

if TYPE_CHECKING:
    from physics.spec import TwinSpec


@functools.lru_cache(maxsize=32)
def _read(kind: str, path: str, stamp: tuple[int, int]) -> Mapping[str, VariableInfo]:
    """One model description, read once per file version (``stamp``: mtime, size)."""
    del stamp  # part of the cache key only
    if kind == "table":
        return catalogue_from_model_table(path)
    return catalogue_from_fmu_file(path)


class SpecConstants:
    """Resolves one spec's ``model.`` references (``physics.expr.ModelReferences``)
    while its expressions compile, and collects what it read and what is wrong."""

    def __init__(self, spec: TwinSpec, source_dir: Path | None) -> None:
        self.spec = spec
        self.source_dir = source_dir
        # Parameter -> the start value read, for the spec hash and the check at run time.
        self.values: dict[str, float] = {}
        # Problems that belong to the spec rather than to one expression, each once.
        self.problems: list[str] = []
        self._catalogue: Catalogue | None = None
        self._where = "the FMU"
        self._loaded = False
        self._used: set[str] = set()  # model_constants keys the expressions read
        self._unit_checked: set[str] = set()  # parameters whose unit was compared
        self._undeclared: set[str] = set()  # keys reported missing from model_constants
        self._refused = False  # whether a reference was refused
        self._setters = {inp.variable: key for key, inp in spec.inputs.items()}

    # ---- physics.expr.ModelReferences -------------------------------------------------

    def constant(self, name: str) -> float:
        return self._value(name, name, f"{MODEL}.{name}")

    def lookup(self, column: str, index: str) -> list[tuple[str, float]]:
        what = f"{MODEL}.{column}[{index}]"
        self._used.add(column)
        inp = self.spec.inputs.get(index)
        if inp is None or inp.kind != "categorical":
            listed = [k for k, i in self.spec.inputs.items() if i.kind == "categorical"]
            raise self._refuse(
                f"reads {what}, but {index!r} is not a categorical input of the spec"
                f"{suggest(index, listed)}; a table column is indexed by one "
                f"(categorical inputs: {', '.join(listed) or 'none'})"
            )
        return [
            (
                indicator(index, choice),
                self._value(
                    table_parameter_name(column, choice),
                    column,
                    f"{what} (parameter {table_parameter_name(column, choice)!r} for "
                    f"choice {choice!r})",
                ),
            )
            for choice in inp.choice_names
        ]

    # ---- inputs whose default is the model's --------------------------------------

    def resolve_input_defaults(self, problems: list[str]) -> None:
        """``default: model``: the input's default is its FMU variable's start value (a
        machine constant whose value and source model.yaml holds), read here once."""
        for key, inp in self.spec.inputs.items():
            if inp.default != MODEL:
                continue
            catalogue = self._load()
            if catalogue is None:
                problems.extend(self.problems)
                self.problems.clear()
                continue
            var = catalogue.get(inp.variable)
            if var is None or var.start is None:
                problems.append(
                    f"inputs.{key}.default: 'model' takes the start value of variable "
                    f"{inp.variable!r}, which {self._where} does not have"
                )
                continue
            object.__setattr__(inp, "default", var.start)
            self.values[inp.variable] = float(var.start)

    # ---- after the expressions ------------------------------------------------------

    def finish(self) -> list[str]:
        """The spec-level problems, declared units no expression reads included."""
        # An expression refused part-way leaves its later references unread: no verdict.
        unused = (
            [] if self._refused else [k for k in self.spec.model_constants if k not in self._used]
        )
        return self.problems + [
            f"model_constants.{k}: not read by any expression (as {MODEL}.{k} or "
            f"{MODEL}.{k}[<input>]); remove it"
            for k in unused
        ]

    # ---- the work ---------------------------------------------------------------------

    def _value(self, name: str, key: str, what: str) -> float:
        """The start value of parameter ``name``, declared under model_constants ``key``."""
        self._used.add(key)
        catalogue = self._load()
        if catalogue is None:
            return math.nan  # the spec is refused already: the FMU could not be read
        var = catalogue.get(name)
        if var is None:
            known = [n for n, v in catalogue.items() if v.causality == "parameter"]
            raise self._refuse(
                f"reads {what}, but {self._where} has no parameter {name!r}{suggest(name, known)}"
            )
        if var.causality != "parameter":
            raise self._refuse(
                f"reads {what}, but {name!r} is {_a(var.causality)} variable of {self._where}; "
                f"{MODEL}.<name> reads the start value of a parameter"
            )
        if var.type not in ("Real", "Integer", "Boolean") or var.start is None:
            kind = f"{_a(var.type)} parameter"
            raise self._refuse(
                f"reads {what}, but {name!r} is {kind}"
                + (" without a start value" if var.start is None else "")
                + "; expressions read numbers"
            )
        if name in self._setters:
            key_of = self._setters[name]
            raise self._refuse(
                f"reads {what}, but the spec's input {key_of!r} sets parameter {name!r} for "
                f"each run, so its start value is not what a run uses; use {key_of} instead"
            )
        value = float(var.start)
        if not math.isfinite(value):
            raise self._refuse(f"reads {what}, whose start value {fmt(value)} is not finite")
        self.values[name] = value
        self._check_unit(key, name, var, what.split(" ")[0])
        return value

    def _refuse(self, problem: str) -> LookupError:
        self._refused = True
        return LookupError(problem)

    def _check_unit(self, key: str, name: str, var: VariableInfo, reference: str) -> None:
        """The unit ``model_constants.<key>`` declares is the FMU parameter's, once per
        parameter; a missing declaration is reported once per key."""
        if name in self._unit_checked:
            return
        self._unit_checked.add(name)
        unit = var.unit or "1"
        declared = self.spec.model_constants.get(key)
        if declared is None:
            if key not in self._undeclared:
                self._undeclared.add(key)
                self.problems.append(
                    f"model_constants.{key}: missing; declare the unit the expressions that "
                    f"read {reference} are written for (the FMU's parameter {name!r} is in "
                    f"{unit!r})"
                )
        elif (declared.strip() or "1") != unit:
            self.problems.append(
                f"model_constants.{key}: {declared!r} differs from the unit of the FMU's "
                f"parameter {name!r}, {unit!r}; the expressions were written for "
                f"{declared!r}: convert them, then declare {unit!r}"
            )

    def _load(self) -> Catalogue | None:
        if self._loaded:
            return self._catalogue
        self._loaded = True
        fmu = self.spec.fmu
        try:
            if fmu.model is not None:
                from physics.fmu._build import resolve_model_dir  # no fmpy, no compiler

                table = resolve_model_dir(fmu.model) / "model.yaml"
                self._where = f"model {fmu.model!r} ({table})"
                self._catalogue = _read("table", str(table), _stamp(table))
            elif fmu.path is not None:
                path = Path(fmu.path)
                if not path.is_absolute() and self.source_dir is not None:
                    path = self.source_dir / path
                self._where = f"the FMU {path}"
                self._catalogue = _read("fmu", str(path), _stamp(path))
        except FileNotFoundError:
            self.problems.append(
                f"fmu.path: {self._where.removeprefix('the FMU ')} does not exist; the "
                f"expressions read the model's constants ({MODEL}.<name>) from it"
            )
        except Exception as exc:  # BuildError (no such model), ValueError (not an FMU)
            field = "fmu.model" if fmu.model is not None else "fmu.path"
            self.problems.append(
                f"{field}: the model's constants ({MODEL}.<name>) cannot be read: {exc}"
            )
        return self._catalogue


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()  # FileNotFoundError: reported by the caller
    return stat.st_mtime_ns, stat.st_size


def _a(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"

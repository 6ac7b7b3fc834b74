"""A model bundle as a co-simulation FMU: the graph as generated C, built by the project's
own FMI framework (physics/cmodel), with no runtime inside.

The FMU is a model folder written here (``model.yaml`` from the bundle's signature and
spec, ``surrogate.c`` from :mod:`surrogates._cgen`) and built by
:func:`physics.fmu._build.build_model` like any of the project's models, so FMI 2.0 and
3.0, variable checks, state get/set and the shipped ``sources/`` come from the framework.

Variables, from the spec and the signature:

* every input of the bundle (``quantity`` too) as an FMI input with the spec's unit,
  bounds and description; categorical inputs are enumerations of their choices (or,
  with ``choices="integer"``, for importers without enumerations, Integers numbered
  as the enumeration's items, from 1, their labels in the description), booleans
  Booleans, integer inputs Integers;
* per KPI ``<kpi>`` (the ensemble's mean), ``<kpi>_std`` (its spread), ``<kpi>_lower``
  and ``<kpi>_upper`` (the calibrated interval at the bundle's level); per event
  ``<event>_probability``;
* ``in_domain`` and ``domain_violations``: the inputs outside the training domain
  (the bounds the serving layer checks, with the same relative slack of 1e-6).

The outputs are a function of the inputs only: the model computes them when
initialization ends and at the end of every step, from the inputs held during it.
``resources/`` carries the bundle's signature and model card. Beside ``OUT.fmu`` goes
``OUT.yaml``, a twin spec of it (:mod:`surrogates._fmu_spec`), so ``twin fmu simulate``
and ``twin data generate`` run it like any FMU.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from physics.fmu._codegen import UNITS
from surrogates._cgen import CProgram, generate
from surrogates._errors import ParityError, SurrogateError
from surrogates._export import PARITY_RTOL, parity_limits, run, session
from surrogates._fmu_spec import surrogate_spec

__all__ = ["FMI_VERSIONS", "FmuExport", "FmuExportError", "export_fmu", "surrogate_table"]

FMI_VERSIONS = {"2": "2.0", "3": "3.0", "2.0": "2.0", "3.0": "3.0"}
CHOICES = ("enumeration", "integer")
SLACK = 1e-6  # as serving/_predict.py: a value typed back from a float32 row is in
GRAPH_FUNCTION = "surrogate_graph"


def trained_bounds(col: dict[str, Any]) -> tuple[float, float]:
    """A signature column's training domain as the FMU and serving check it: numbers
    with the relative slack, choices and booleans as they are."""
    lo, hi = float(col["min"]), float(col["max"])
    if col["kind"] in ("categorical", "boolean"):
        return lo, hi
    slack = SLACK * max(abs(lo), abs(hi), 1e-12)
    return lo - slack, hi + slack


class FmuExportError(SurrogateError):
    """The bundle cannot become an FMU as asked (the message says why)."""


@dataclass(frozen=True)
class FmuExport:
    path: Path
    fmi_version: str
    model_name: str
    inputs: list[str]
    outputs: list[str]
    program: CProgram
    spec: Path  # the twin spec written beside the FMU (surrogates._fmu_spec)


def model_identifier(bundle_name: str) -> str:
    """The FMU's model identifier (a C identifier): the bundle's name + ``_surrogate``."""
    ident = re.sub(r"\W", "_", bundle_name).strip("_") or "model"
    if ident[0].isdigit():
        ident = "m_" + ident
    return ident + "_surrogate"


def _unit(unit: str | None) -> tuple[str | None, str]:
    """The unit the framework declares, or none and the unit named in the description."""
    if unit in (None, "", "1"):
        return None, ""
    if unit in UNITS:
        return unit, ""
    return None, f" [{unit}]"


def _input_rows(
    signature: dict[str, Any], spec: Any, choices_as: str
) -> tuple[list[dict], dict[str, dict]]:
    rows: list[dict[str, Any]] = []
    enums: dict[str, dict[str, Any]] = {}
    for col in signature["inputs"]:
        name, kind = col["name"], col["kind"]
        if name == "quantity":
            q = spec.require_quantity()
            lo, hi, default = q.min, q.max, None
            description = (
                f"Work order quantity [{q.unit}]"
                if getattr(q, "unit", None)
                else ("Work order quantity")
            )
        else:
            inp = spec.inputs[name]
            lo, hi, default = inp.min, inp.max, inp.default
            description = " ".join((inp.description or name).split())
        t_lo, t_hi = float(col["min"]), float(col["max"])
        trained = f" (trained {t_lo:g} to {t_hi:g})"
        row: dict[str, Any] = {"name": name, "causality": "input"}
        if kind == "categorical":
            choices = list(col["choices"])
            pick = choices.index(default) if default in choices else int(t_lo)
            if choices_as == "integer":
                row.update(type="Integer", start=pick + 1, min=1, max=len(choices))
                description += ": " + ", ".join(f"{k} {c}" for k, c in enumerate(choices, 1))
            else:
                enum = f"{name}_choice"
                enums[enum] = {
                    "description": description,
                    "items": [{"name": c, "description": c} for c in choices],
                }
                row.update(type="Enumeration", declared_type=enum, start=pick + 1)
            trained = " (trained on " + ", ".join(choices[int(t_lo) : int(t_hi) + 1]) + ")"
        elif kind == "boolean":
            row.update(type="Boolean", start=bool(default) if default is not None else t_hi >= 1)
            trained = "" if (t_lo, t_hi) == (0.0, 1.0) else f" (trained on {bool(t_lo)} only)"
        else:
            integer = kind == "integer"
            start = default if isinstance(default, int | float) else (t_lo + t_hi) / 2
            start = min(max(float(start), t_lo), t_hi)
            row.update(type="Integer" if integer else "Real",
                       start=round(start) if integer else start)  # fmt: skip
            if lo is not None:
                row["min"] = int(lo) if integer else float(lo)
            if hi is not None:
                row["max"] = int(hi) if integer else float(hi)
            unit, note = _unit(col.get("unit"))
            if unit and not integer:
                row["unit"] = unit
            description += note
        row["description"] = description + trained
        rows.append(row)
    return rows, enums


def _output_rows(signature: dict[str, Any]) -> list[dict[str, Any]]:
    level = float(signature.get("interval", {}).get("level", 0.95))
    kpis, rows = signature["kpis"], []
    for kpi in signature["outputs"]["mean"]:
        unit, note = _unit(kpis[kpi].get("unit"))
        base = {"causality": "output", **({"unit": unit} if unit else {})}
        rows += [
            {"name": kpi, **base, "description": f"{kpi}: the ensemble's mean{note}"},
            {"name": f"{kpi}_std", **base, "description": f"{kpi}: the ensemble's spread{note}"},
            {
                "name": f"{kpi}_lower",
                **base,
                "description": f"{kpi}: lower bound of the {level:.0%} interval{note}",
            },
            {
                "name": f"{kpi}_upper",
                **base,
                "description": f"{kpi}: upper bound of the {level:.0%} interval{note}",
            },
        ]
    for event in signature["outputs"]["probability"]:
        rows.append(
            {
                "name": f"{event}_probability",
                "causality": "output",
                "description": f"probability that {event} occurs in the order",
            }
        )
    rows += [
        {
            "name": "in_domain",
            "type": "Boolean",
            "causality": "output",
            "description": "every input lies inside the training domain (else the outputs "
            "are extrapolated: do not use them for a decision)",
        },
        {
            "name": "domain_violations",
            "type": "Integer",
            "causality": "output",
            "description": "how many inputs lie outside the training domain",
        },
    ]
    return rows


def _description(signature: dict[str, Any]) -> str:
    spec, ml = signature["spec"], signature.get("mlflow") or {}
    parts = [f"Surrogate of {signature['name']} (spec version {spec.get('version')}), "
             f"bundle sha256 {signature['bundle_hash']}"]  # fmt: skip
    if ml.get("registered_name"):
        parts.append(f"MLflow model {ml['registered_name']} version {ml.get('version')}")
    ver = (signature.get("metrics") or {}).get("verification") or {}
    kpis = ver.get("kpis") or {}
    r2 = sorted(v["r2"] for k, v in kpis.items() if "." not in k and v.get("r2") is not None)
    if r2:
        parts.append(f"verified on {ver.get('runs')} fresh FMU runs: R2 median "
                     f"{r2[len(r2) // 2]:.4f}, min {r2[0]:.4f}")  # fmt: skip
    gate = signature.get("gate") or {}
    if gate.get("status"):
        parts.append(f"gate {gate['status']}")
    return "; ".join(parts)


def surrogate_table(signature: dict[str, Any], spec: Any, fmi_version: str,
                    choices: str = "enumeration") -> dict[str, Any]:  # fmt: skip
    """The model table (the framework's model.yaml) of the bundle's FMU."""
    inputs, enums = _input_rows(signature, spec, choices)
    outputs = _output_rows(signature)
    seen: dict[str, str] = {}
    for row in [*inputs, *outputs]:
        if row["name"] in seen:
            raise FmuExportError(
                f"FMU variable {row['name']!r} would be both an input and "
                f"an output of the bundle: rename the KPI or the input"
            )
        seen[row["name"]] = row["causality"]
    ml = signature.get("mlflow") or {}
    version = str(ml["version"]) if ml.get("version") else signature["bundle_hash"][:12]
    return {
        "name": model_identifier(signature["name"]),
        "description": _description(signature),
        "version": version,
        "author": "asset-twin",
        "fmi_version": fmi_version,
        "default_experiment": {"start_time": 0.0, "stop_time": 1.0, "step_size": 1.0},
        "enumerations": enums,
        "variables": [*inputs, *outputs],
    }


def _glue(signature: dict[str, Any], prog: CProgram) -> str:
    """model_initialize / model_do_step around the generated graph function."""
    cols = signature["inputs"]
    lines = ["", "/* ---- the FMU: inputs to the graph's row, its outputs to variables ---- */",
             '#include "model.h"', ""]  # fmt: skip
    bounds = [trained_bounds(col) for col in cols]
    low, high = [lo.hex() for lo, _ in bounds], [hi.hex() for _, hi in bounds]
    n = len(cols)
    lines += [f"static const double TRAINED_LOW[{n}] = {{{', '.join(low)}}};",
              f"static const double TRAINED_HIGH[{n}] = {{{', '.join(high)}}};", "",
              "static void evaluate(ModelState *s)", "{",
              f"    double x[{n}];", f"    float row[{n}];", "    int outside = 0;"]  # fmt: skip
    for j, col in enumerate(cols):
        shift = " - 1" if col["kind"] == "categorical" else ""  # enumerations count from 1
        lines.append(f"    x[{j}] = V({col['name']}){shift};")
    lines += [f"    for (int j = 0; j < {n}; j++) {{",
              "        row[j] = (float)x[j];",
              "        if (!(x[j] >= TRAINED_LOW[j] && x[j] <= TRAINED_HIGH[j])) outside++;",
              "    }"]  # fmt: skip
    out_arrays = []
    for port in prog.outputs:
        lines.append(f"    float {port.name}[{port.size}];")
        out_arrays.append(port.name)
    lines.append(f"    {prog.function}(row, {', '.join(out_arrays)});")
    names = signature["outputs"]
    suffix = {"mean": "", "std": "_std", "lower": "_lower", "upper": "_upper",
              "probability": "_probability"}  # fmt: skip
    for port in prog.outputs:
        what = port.value
        if what not in names:
            raise FmuExportError(f"graph output {what!r} is not in the signature's outputs")
        if len(names[what]) != port.size:
            raise FmuExportError(f"graph output {what!r} has {port.size} columns, the "
                                 f"signature names {len(names[what])}")  # fmt: skip
        for k, kpi in enumerate(names[what]):
            lines.append(f"    V({kpi}{suffix[what]}) = {port.name}[{k}];")
    lines += ["    V(in_domain) = outside == 0;", "    V(domain_violations) = outside;", "}", "",
              "ModelStatus model_initialize(ModelState *s, char *msg, size_t msg_len)", "{",
              "    (void)msg;", "    (void)msg_len;", "    evaluate(s);", "    return MODEL_OK;",
              "}", "",
              "ModelStatus model_do_step(ModelState *s, double h, char *msg, size_t msg_len)",
              "{", "    (void)h;", "    (void)msg;", "    (void)msg_len;", "    evaluate(s);",
              "    return MODEL_OK;", "}", ""]  # fmt: skip
    return "\n".join(lines)


def read_bundle_files(bundle: Path) -> tuple[dict[str, Any], Path, Path]:
    sig_path = bundle / "signature.json"
    if not sig_path.is_file():
        raise FmuExportError(f"{bundle}: not a model bundle (no signature.json)")
    signature = json.loads(sig_path.read_text(encoding="utf-8"))
    model = bundle / signature["model"]["file"]
    spec = bundle / signature["spec"]["file"]
    for p in (model, spec):
        if not p.is_file():
            raise FmuExportError(f"{bundle}: the bundle lacks {p.name}")
    return signature, model, spec


def export_fmu(bundle: Path | str, out: Path | str, fmi: str = "2",
               choices: str = "enumeration") -> FmuExport:  # fmt: skip
    """Write ``out`` (an .fmu) from ``bundle``; FMI ``fmi`` (2 or 3); categorical inputs
    as ``choices`` (enumeration or integer)."""
    from physics.fmu._build import build_model
    from physics.spec import load_spec

    bundle, out = Path(bundle), Path(out)
    if fmi not in FMI_VERSIONS:
        raise FmuExportError(f"--fmi: {fmi!r} is not one of 2, 3")
    if choices not in CHOICES:
        raise FmuExportError(f"--choices: {choices!r} is not one of {', '.join(CHOICES)}")
    if out.suffix != ".fmu":
        raise FmuExportError(f"--fmu: {str(out)!r} must end in .fmu")
    version = FMI_VERSIONS[fmi]
    signature, model_path, spec_path = read_bundle_files(bundle)
    spec = load_spec(spec_path)
    table = surrogate_table(signature, spec, version, choices)
    name = table["name"]
    prog = generate(model_path, GRAPH_FUNCTION)
    with tempfile.TemporaryDirectory(prefix="twin-fmu-") as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        (folder / "model.yaml").write_text(yaml.safe_dump(table, sort_keys=False, width=100))
        (folder / f"{name}.c").write_text(
            f"/* Generated by asset-twin from bundle {signature['bundle_hash']}: do not edit. */\n"
            + prog.source
            + _glue(signature, prog)
        )
        resources = folder / "resources"
        resources.mkdir()
        shutil.copy2(bundle / "signature.json", resources / "signature.json")
        if (bundle / "model_card.md").is_file():
            shutil.copy2(bundle / "model_card.md", resources / "model_card.md")
        built = build_model(folder, force=True, out_dir=Path(tmp) / "build")
        if built.warnings:  # generated code must compile clean at -Wall -Wextra
            raise FmuExportError(f"the generated C compiled with warnings:\n{built.warnings}")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        shutil.copy2(built.path, partial)
        partial.replace(out)  # a reader never sees half an FMU
    spec_out = out.with_suffix(".yaml")
    text = yaml.safe_dump(surrogate_spec(signature, spec, table, out.name), sort_keys=False,
                          width=100, allow_unicode=True)  # fmt: skip
    header = (
        f"# The twin spec of {out.name}, written by twin export from bundle "
        f"{signature['bundle_hash'][:12]}: twin fmu simulate --spec {spec_out.name}\n"
    )
    partial_spec = spec_out.with_name(f".{spec_out.name}.partial")
    partial_spec.write_text(header + text, encoding="utf-8")
    partial_spec.replace(spec_out)
    return FmuExport(out, version, name, [r["name"] for r in table["variables"]
                                          if r["causality"] == "input"],
                     [r["name"] for r in table["variables"] if r["causality"] == "output"],
                     prog, spec_out)  # fmt: skip


class FmuRows:
    """The surrogate FMU simulated by fmpy, one row per co-simulation step: set the row's
    inputs, step, read every output. Instantiated once; ``run`` takes rows as the graph
    does (the signature's columns, choices as indices)."""

    def __init__(self, path: Path | str) -> None:
        import fmpy
        from fmpy import read_model_description

        self.path = Path(path)
        self._dir = tempfile.mkdtemp(prefix="twin-fmu-rows-")
        fmpy.extract(str(self.path), self._dir)
        md = read_model_description(self._dir)
        self.fmi3 = md.fmiVersion.startswith("3")
        self.variables = {v.name: v for v in md.modelVariables}
        self.inputs = [v for v in md.modelVariables if v.causality == "input"]
        self.outputs = [v for v in md.modelVariables if v.causality == "output"]
        args = {"guid": md.guid, "unzipDirectory": self._dir, "instanceName": "rows",
                "modelIdentifier": md.coSimulation.modelIdentifier}  # fmt: skip
        if self.fmi3:
            from fmpy.fmi3 import FMU3Slave

            self.slave: Any = FMU3Slave(**args)
            self.slave.instantiate()
            self.slave.enterInitializationMode(startTime=0.0)
        else:
            from fmpy.fmi2 import FMU2Slave

            self.slave = FMU2Slave(**args)
            self.slave.instantiate()
            self.slave.setupExperiment(startTime=0.0)
            self.slave.enterInitializationMode()
        self.slave.exitInitializationMode()
        self.time = 0.0
        self._set = self._setters()
        self._get = self._getters()

    def _setters(self) -> list[tuple[Any, list[int], Any, list[int]]]:
        """One setter per FMI type: (function, value references, converter, the positions
        of its inputs in a row)."""
        s, groups = self.slave, dict[str, list[Any]]()
        for v in self.inputs:
            groups.setdefault(v.type, []).append(v)
        out = []
        for vtype, vs in groups.items():
            conv: Any
            if vtype in ("Real", "Float64"):
                fn, conv = (s.setFloat64 if self.fmi3 else s.setReal), float
            elif vtype == "Boolean":
                fn, conv = s.setBoolean, bool
            elif vtype == "Enumeration" and self.fmi3:
                fn, conv = s.setInt64, int
            else:
                fn, conv = (s.setInt32 if self.fmi3 else s.setInteger), int
            out.append(
                (fn, [v.valueReference for v in vs], conv, [self.inputs.index(v) for v in vs])
            )
        return out

    def _getters(self) -> list[tuple[Any, list[int], list[int]]]:
        s, groups = self.slave, dict[str, list[Any]]()
        for v in self.outputs:
            groups.setdefault(v.type, []).append(v)
        out = []
        for vtype, vs in groups.items():
            if vtype in ("Real", "Float64"):
                fn = s.getFloat64 if self.fmi3 else s.getReal
            elif vtype == "Boolean":
                fn = s.getBoolean
            else:
                fn = s.getInt32 if self.fmi3 else s.getInteger
            out.append((fn, [v.valueReference for v in vs], [self.outputs.index(v) for v in vs]))
        return out

    def step(self, row: list[float]) -> list[float]:
        """One row: its inputs set (in the FMU's input order), one step, every output."""
        for fn, refs, conv, cols in self._set:
            fn(refs, [conv(row[c]) for c in cols])
        self.slave.doStep(currentCommunicationPoint=self.time, communicationStepSize=1.0)
        self.time += 1.0
        values: list[float] = [0.0] * len(self.outputs)
        for fn, refs, cols in self._get:
            for c, v in zip(cols, fn(refs), strict=True):
                values[c] = float(v)
        return values

    def fmu_rows(self, raw: Any, signature: dict[str, Any]) -> list[list[float]]:
        """Rows of the graph's input matrix as the FMU takes them: its inputs' order,
        choices numbered from 1 as the enumerations' items are."""
        import numpy as np

        names = [c["name"] for c in signature["inputs"]]
        kinds = {c["name"]: c["kind"] for c in signature["inputs"]}
        order = [names.index(v.name) for v in self.inputs]
        shift = [1.0 if kinds[v.name] == "categorical" else 0.0 for v in self.inputs]
        return [[float(r[j]) + d for j, d in zip(order, shift, strict=True)]
                for r in np.asarray(raw, dtype=np.float64)]  # fmt: skip

    def run(self, raw: Any, signature: dict[str, Any]) -> dict[str, Any]:
        """Rows of the graph's input matrix through the FMU: ``{output name: values}``."""
        import numpy as np

        rows = self.fmu_rows(raw, signature)
        out = np.array([self.step(r) for r in rows]).reshape(len(rows), len(self.outputs))
        return {v.name: out[:, k] for k, v in enumerate(self.outputs)}

    def close(self) -> None:
        try:
            self.slave.terminate()
            self.slave.freeInstance()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


# The FMU against onnxruntime: |FMU - onnxruntime| <= limit * max(1, s), s the KPI's largest
# magnitude over the rows (absolute below 1, relative to the KPI's scale above); absolute
# for probabilities. The limit is PARITY on the means and probabilities, ten times that on
# the spread and the interval bounds, as the bundle's own check of onnxruntime against
# PyTorch (surrogates._export.check_parity) and for its reason: both compute the same
# float32 graph but sum the first layer in another order (onnxruntime with fused
# multiply-adds) and take exp, log and sigmoid from different libraries; the members
# then differ in their last digits, and the spread, a difference of nearly equal members
# whose logarithm feeds the interval's spread model, carries that into the bounds (on the
# test fixture's bundle: 3.6e-6 on the means, 1.3e-5 on a lower bound).
PARITY = PARITY_RTOL


class FmuParityError(ParityError):
    """The FMU disagrees with onnxruntime on the bundle beyond the limit."""


def check_rows(signature: dict[str, Any], bounds: dict[str, tuple[float | None, float | None]],
               n: int = 500, seed: int = 0, outside: float = 0.1) -> Any:  # fmt: skip
    """``n`` rows of the graph's input matrix: uniform in the training domain, and a share
    ``outside`` with one or two inputs beyond it (where ``bounds``, the FMU's own, allow)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cols = signature["inputs"]
    raw = np.empty((n, len(cols)))
    for j, c in enumerate(cols):
        lo, hi = float(c["min"]), float(c["max"])
        if c["kind"] == "real":
            raw[:, j] = rng.uniform(lo, hi, n)
        else:
            raw[:, j] = rng.integers(int(lo), int(hi) + 1, n)
    gaps = []
    for j, c in enumerate(cols):
        lo, hi = float(c["min"]), float(c["max"])
        flo, fhi = bounds.get(c["name"], (None, None))
        if c["kind"] == "categorical":
            k = len(c["choices"]) - 1
            flo, fhi = 0.0, float(k)
        elif c["kind"] == "boolean":
            flo, fhi = 0.0, 1.0
        if flo is not None and flo < lo:
            gaps.append((j, flo, lo))
        if fhi is not None and fhi > hi:
            gaps.append((j, hi, fhi))
    if gaps:
        for i in rng.choice(n, round(outside * n), replace=False):
            for g in rng.choice(len(gaps), min(len(gaps), int(rng.integers(1, 3))), replace=False):
                j, a, b = gaps[g]
                kind = cols[j]["kind"]
                if kind == "real":
                    raw[i, j] = rng.uniform(a, b) if a < b else a
                else:  # the nearest integer past the trained range
                    raw[i, j] = a if a < float(cols[j]["min"]) else b
    return raw.astype(np.float32)


def domain_violations(signature: dict[str, Any], raw: Any) -> Any:
    """Per row, how many inputs lie outside the training domain (the FMU's count)."""
    import numpy as np

    x = np.asarray(raw, dtype=np.float64)
    count = np.zeros(len(x), dtype=np.int64)
    for j, c in enumerate(signature["inputs"]):
        lo, hi = trained_bounds(c)
        count += ~((x[:, j] >= lo) & (x[:, j] <= hi))
    return count


def check_fmu(bundle: Path | str, fmu: Path | str, n: int = 1000, seed: int = 0,
              limit: float = PARITY) -> dict[str, float]:  # fmt: skip
    """The FMU through fmpy against onnxruntime on ``check_rows``: per output, the largest
    difference over max(1, the KPI's scale) (the largest magnitude of its mean and interval
    bounds over the rows; 1 for probabilities), at most ``limit`` on the means and
    probabilities and ten times that on the spread and bounds (see PARITY); the domain
    flag and count must agree on every row."""
    import numpy as np

    signature, model_path, _ = read_bundle_files(Path(bundle))
    rows = FmuRows(fmu)
    try:
        bounds = {v.name: (_num(v.min), _num(v.max)) for v in rows.inputs}
        raw = check_rows(signature, bounds, n, seed)
        got = rows.run(raw, signature)
    finally:
        rows.close()
    ref = run(session(str(model_path)), raw)
    names = signature["outputs"]
    suffix = {"mean": "", "std": "_std", "lower": "_lower", "upper": "_upper",
              "probability": "_probability"}  # fmt: skip
    with np.errstate(all="ignore"):
        kpi_scale = np.nanmax(np.abs(np.concatenate([ref[k] for k in ("mean", "lower", "upper")])),
                              axis=0) if names["mean"] else np.zeros(0)  # fmt: skip
        diffs: dict[str, float] = {}
        for what, cols in names.items():
            if not cols:
                continue
            mine = np.stack([got[f"{c}{suffix[what]}"] for c in cols], axis=1)
            want = ref[what].astype(np.float64)
            scale = np.ones(len(cols)) if what == "probability" else np.maximum(kpi_scale, 1.0)
            d = np.abs(mine - want) / scale
            same_nan = np.isnan(mine) == np.isnan(want)
            if not same_nan.all():
                raise FmuParityError(
                    f"{what}: the FMU gives NaN on {int((~same_nan).sum())} "
                    "values where onnxruntime does not (or the reverse)"
                )
            diffs[what] = float(np.nanmax(np.where(np.isnan(d), 0.0, d)))
    expected = domain_violations(signature, raw)
    if not np.array_equal(
        got["domain_violations"].astype(np.int64), expected
    ) or not np.array_equal(got["in_domain"].astype(bool), expected == 0):
        bad = int(np.sum(got["domain_violations"] != expected))
        raise FmuParityError(f"domain_violations: the FMU's count differs on {bad} rows")
    limits = parity_limits(diffs, limit)
    bad_kpi = {k: v for k, v in diffs.items() if not v <= limits[k]}
    if bad_kpi:
        raise FmuParityError("the FMU and onnxruntime disagree beyond the parity limit: "
                             + ", ".join(f"{k} {v:.2e} (limit {limits[k]:g})"
                                         for k, v in bad_kpi.items()))  # fmt: skip
    return {**diffs, "rows": float(len(raw)), "outside": float(np.sum(expected > 0))}


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None

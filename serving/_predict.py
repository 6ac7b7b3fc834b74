"""From twin-level rows to the surrogate's answer, with the training-domain check.

A row is what the spec names: every input by id (categorical by choice name,
booleans as true/false) and ``quantity``. ``encode`` turns rows into the float32
input matrix of the bundle and lists, per row, the bounds of the training domain
and the spec constraints it violates; ``predict`` runs the graph once for the whole
batch. A row outside the domain still gets numbers, flagged: the decision layer
turns them into UNDECIDED, never into a confident answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from physics._spec_text import fmt
from serving._models import LoadedModel

__all__ = ["Batch", "Prediction", "encode", "predict", "predict_rows"]

# Relative slack on training bounds: a value typed back from a float32 row is in.
_SLACK = 1e-6


@dataclass
class Batch:
    rows: list[dict[str, Any]]
    raw: np.ndarray  # [N, C] float32
    violations: list[list[dict[str, Any]]]

    @property
    def in_domain(self) -> np.ndarray:
        return np.array([not v for v in self.violations], dtype=bool)


@dataclass
class Prediction:
    model: LoadedModel
    batch: Batch
    mean: np.ndarray  # [N, R]
    std: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    probability: np.ndarray  # [N, E]

    def take(self, rows: slice) -> Prediction:
        """The prediction of ``rows`` only (views, no copies)."""
        b = self.batch
        return Prediction(self.model, Batch(b.rows[rows], b.raw[rows], b.violations[rows]),
                          self.mean[rows], self.std[rows], self.lower[rows], self.upper[rows],
                          self.probability[rows])

    def column(self, name: str, what: str = "mean") -> np.ndarray:
        if name in self.model.event_names:
            return self.probability[:, self.model.event_names.index(name)]
        values: np.ndarray = getattr(self, what)
        return values[:, self.model.regression_names.index(name)]

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as JSON: every KPI with unit, mean, std, interval; every event."""
        kpis = self.model.signature["kpis"]
        # Python floats from whole rows at once (numpy scalar by scalar costs ~10x).
        columns = zip(self.model.regression_names, self.mean[i].tolist(), self.std[i].tolist(),
                      self.lower[i].tolist(), self.upper[i].tolist(), strict=True)  # fmt: skip
        out = {
            name: {"unit": kpis[name]["unit"], "mean": m, "std": s, "lower": lo, "upper": hi}
            for name, m, s, lo, hi in columns
        }
        events = {
            name: {"probability": p}
            for name, p in zip(self.model.event_names, self.probability[i].tolist(), strict=True)
        }
        return {
            "in_domain": not self.batch.violations[i],
            "violations": self.batch.violations[i],
            "kpis": out,
            "events": events,
        }


@dataclass(frozen=True)
class _Layout:
    """A model's input columns, worked out once: categorical lookups, and the numeric
    columns' training bounds (with the slack) as arrays for one vectorised check."""

    categorical: list[tuple[int, str, dict[str, int], int, int, list[str]]]
    numeric: list[tuple[int, str]]
    low: np.ndarray
    high: np.ndarray
    expected: list[str]


def _layout(model: LoadedModel) -> _Layout:
    cached: _Layout | None = model.__dict__.get("_predict_layout")
    if cached is not None:
        return cached
    categorical, numeric, low, high, expected = [], [], [], [], []
    for j, col in enumerate(model.inputs):
        name, choices = col["name"], col.get("choices")
        if choices:
            categorical.append((j, name, {c: i for i, c in enumerate(choices)},
                                int(col["min"]), int(col["max"]), list(choices)))
            continue
        flo, fhi = float(col["min"]), float(col["max"])
        slack = _SLACK * max(abs(flo), abs(fhi), 1e-12)
        unit = f" {col['unit']}" if col.get("unit") and col["unit"] != "1" else ""
        numeric.append((j, name))
        low.append(flo - slack)
        high.append(fhi + slack)
        expected.append(f"within the training domain [{fmt(flo)}, {fmt(fhi)}]{unit}")
    layout = _Layout(categorical, numeric, np.array(low), np.array(high), expected)
    model.__dict__["_predict_layout"] = layout
    return layout


def encode(model: LoadedModel, rows: list[dict[str, Any]]) -> Batch:
    """The input matrix of ``rows`` (already checked against the spec) and violations."""
    layout = _layout(model)
    n = len(rows)
    raw = np.empty((n, len(layout.categorical) + len(layout.numeric)), dtype=np.float64)
    violations: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for j, name, index, lo, hi, choices in layout.categorical:
        raw[:, j] = [index[r[name]] for r in rows]
        for i in np.flatnonzero((raw[:, j] < lo) | (raw[:, j] > hi)):
            violations[i].append({
                "field": name, "value": rows[i][name],
                "expected": "one of the trained choices " + ", ".join(choices[lo : hi + 1]),
            })
    cols = [j for j, _ in layout.numeric]
    raw[:, cols] = [[float(r[name]) for _, name in layout.numeric] for r in rows]
    values = raw[:, cols]
    outside = (values < layout.low) | (values > layout.high)
    if outside.any():
        for i, k in zip(*np.nonzero(outside), strict=True):
            name = layout.numeric[k][1]
            violations[i].append({"field": name, "value": rows[i][name],
                                  "expected": layout.expected[k]})
    _check_constraints(model, rows, violations)
    return Batch(rows, raw.astype(np.float32), violations)


# Up to this many distinct rows the constraints are checked row by row on Python floats
# (about 20 us a row: the 14 derived values the spindle's constraints need, as compiled
# bytecode); above it numpy's vectorised evaluation of the same values (about 0.4 ms
# plus 2 us a row) is the cheaper one. Measured on the demo bundle: even at 20-30 rows.
ROW_BY_ROW = 24


def _check_constraints(
    model: LoadedModel, rows: list[dict[str, Any]], violations: list[list[dict[str, Any]]]
) -> None:
    """Add each row's violated constraints. Rows that agree in every input the
    constraints read are checked once: an assessment's scenarios mostly differ in the
    quantity or the asset state, which no spindle constraint reads."""
    spec = model.spec
    if not spec.constraints:
        return
    keys = spec.constraint_inputs
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(tuple([r[k] for k in keys]), []).append(i)
    distinct = [rows[members[0]] for members in groups.values()]
    failed = _failed_constraints(spec, distinct)
    for members, bad in zip(groups.values(), failed, strict=True):
        for c in bad:
            for i in members:
                violations[i].append(
                    {"field": "constraint", "value": c.expr, "expected": c.message})


def _failed_constraints(spec: Any, rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Per row, the constraints (spec entries) it breaks, in the spec's order."""
    pairs = list(zip(spec.constraints, spec.constraint_exprs, strict=True))
    if len(rows) <= ROW_BY_ROW:
        failed = []
        for r in rows:
            names = spec.row_namespace(r, constraints_only=True)
            failed.append([c for c, expr in pairs if expr.evaluate_row(names) == 0.0])
        return failed
    values = {k: np.array([r[k] for r in rows]) for k in spec.inputs}
    quantity = np.array([float(r["quantity"]) for r in rows])
    out: list[list[Any]] = [[] for _ in rows]
    with np.errstate(all="ignore"):
        names = spec.namespace(values, quantity, constraints_only=True)
        for c, expr in pairs:
            ok = np.broadcast_to(np.asarray(expr.evaluate(names)) != 0.0, (len(rows),))
            for j in np.flatnonzero(~ok):
                out[j].append(c)
    return out


def predict(model: LoadedModel, batch: Batch) -> Prediction:
    out = model.run(batch.raw)
    n = batch.raw.shape[0]
    empty = np.empty((n, 0))
    return Prediction(
        model, batch,
        out.get("mean", empty).astype(np.float64),
        out.get("std", empty).astype(np.float64),
        out.get("lower", empty).astype(np.float64),
        out.get("upper", empty).astype(np.float64),
        out.get("probability", empty).astype(np.float64),
    )


def predict_rows(model: LoadedModel, rows: list[dict[str, Any]]) -> Prediction:
    return predict(model, encode(model, rows))

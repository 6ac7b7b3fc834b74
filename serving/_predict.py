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

    def column(self, name: str, what: str = "mean") -> np.ndarray:
        if name in self.model.event_names:
            return self.probability[:, self.model.event_names.index(name)]
        values: np.ndarray = getattr(self, what)
        return values[:, self.model.regression_names.index(name)]

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as JSON: every KPI with unit, mean, std, interval; every event."""
        kpis = self.model.signature["kpis"]
        out: dict[str, Any] = {}
        for j, name in enumerate(self.model.regression_names):
            out[name] = {
                "unit": kpis[name]["unit"],
                "mean": float(self.mean[i, j]),
                "std": float(self.std[i, j]),
                "lower": float(self.lower[i, j]),
                "upper": float(self.upper[i, j]),
            }
        events = {
            name: {"probability": float(self.probability[i, k])}
            for k, name in enumerate(self.model.event_names)
        }
        return {
            "in_domain": not self.batch.violations[i],
            "violations": self.batch.violations[i],
            "kpis": out,
            "events": events,
        }


def encode(model: LoadedModel, rows: list[dict[str, Any]]) -> Batch:
    """The input matrix of ``rows`` (already checked against the spec) and violations."""
    cols = model.inputs
    n = len(rows)
    raw = np.empty((n, len(cols)), dtype=np.float64)
    violations: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for j, col in enumerate(cols):
        name = col["name"]
        choices = col.get("choices")
        if choices:
            index = {c: i for i, c in enumerate(choices)}
            raw[:, j] = [index[r[name]] for r in rows]
            lo, hi = int(col["min"]), int(col["max"])
            for i in np.flatnonzero((raw[:, j] < lo) | (raw[:, j] > hi)):
                violations[i].append({
                    "field": name, "value": rows[i][name],
                    "expected": "one of the trained choices " + ", ".join(choices[lo : hi + 1]),
                })
            continue
        raw[:, j] = [float(r[name]) for r in rows]
        flo, fhi = float(col["min"]), float(col["max"])
        slack = _SLACK * max(abs(flo), abs(fhi), 1e-12)
        unit = f" {col['unit']}" if col.get("unit") and col["unit"] != "1" else ""
        for i in np.flatnonzero((raw[:, j] < flo - slack) | (raw[:, j] > fhi + slack)):
            violations[i].append({
                "field": name, "value": rows[i][name],
                "expected": f"within the training domain [{fmt(flo)}, {fmt(fhi)}]{unit}",
            })
    _check_constraints(model, rows, violations)
    return Batch(rows, raw.astype(np.float32), violations)


def _check_constraints(
    model: LoadedModel, rows: list[dict[str, Any]], violations: list[list[dict[str, Any]]]
) -> None:
    spec = model.spec
    if not spec.constraints:
        return
    values = {k: np.array([r[k] for r in rows]) for k in spec.inputs}
    quantity = np.array([float(r["quantity"]) for r in rows])
    with np.errstate(all="ignore"):
        names = spec.namespace(values, quantity)
        for c, expr in zip(spec.constraints, spec.constraint_exprs, strict=True):
            ok = np.broadcast_to(np.asarray(expr.evaluate(names)) != 0.0, (len(rows),))
            for i in np.flatnonzero(~ok):
                violations[i].append(
                    {"field": "constraint", "value": c.expr, "expected": c.message}
                )


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

"""Derived blocks: a derived value computed in steps, or over a grid of points.

Most derived values of a twin spec are one expression. Some closed forms need more:
named intermediate steps that are no quantity of their own (they are not features of a
surrogate and nobody reads them), or a value that is the extreme of a function over a
grid (a chatter limit: the smallest depth at which a stability lobe is crossed, over the
chatter frequencies). A block is written in the spec as a mapping::

    derived:
      tool_mode:                       # steps, then one value
        steps: {c: "...", m: "..."}
        value: "sqrt(1e3 / (c * m)) / (2 * pi)"
      chatter_limit:                   # steps, then a grid
        steps: {kt: "..."}
        over: u                        # the grid's parameter: points equal steps 0..1
        points: 48
        at_each: {w: "...", depth: "...", lobe_phase: "..."}
        min_at_crossings: [{value: depth, phase: lobe_phase}]

``steps`` are computed once per row, in order, each seeing the spec's names and the
steps before it. ``at_each`` values are computed at every grid point (the parameter
``over`` runs from 0 to 1 in ``points`` equal steps), each seeing the steps, the
parameter and the values before it. ``min_at_crossings`` reduces the grid: over every
pair of neighbouring points at which ``phase`` passes a whole number 0, 1, 2, ...
upwards (its floor grows), the value is taken where the phase equals that number
(linear between the two points) when it passes one, and the smaller of the two points'
values when it passes several; pairs where a value is not finite are skipped. The
block's value is the least over all pairs and all listed (value, phase) pairs, ``inf``
where there is none. Local names (steps, parameter, grid values) are the block's own.

A grid may instead be reduced by ``sum_of: value``, the value's sum over every point
(and listed value): a quadrature, its weights and nodes written into the value.

A grid may also run ``across`` a second, listed parameter (``across: {branch: [1,
-1]}``): every grid value is then computed for each listed value at every point, and the
crossings are taken along the points of each listed value, never from one to the next.
Two eigen-directions of one formula are one set of expressions, not two copies.

The same block compiles to ONNX (surrogates._onnx_expr.OnnxExprBuilder.add_block):
grid values become [N, points] tensors by broadcasting, [values, N, points] across a
listed parameter (a value that does not use it stays [N, points]).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from physics.expr import Expr

__all__ = ["MAX_ACROSS", "MAX_POINTS", "BlockExpr", "Crossing", "crossing_min"]

MAX_POINTS = 1000  # a grid of more points is data, not a formula
MAX_ACROSS = 16  # listed values of a grid's second parameter


@dataclass(frozen=True)
class Crossing:
    value: str  # a grid value
    phase: str  # a grid value whose whole numbers are crossed


def crossing_min(value: NDArray[np.float64], phase: NDArray[np.float64]) -> Any:
    """The least ``value`` where ``phase`` passes a whole number >= 0 upwards between
    neighbouring points of the last axis (see the module docstring); inf where none."""
    value, phase = np.broadcast_arrays(value, phase)
    lobe = np.floor(phase)
    l0, l1 = lobe[..., :-1], lobe[..., 1:]
    p0, p1 = phase[..., :-1], phase[..., 1:]
    a0, a1 = value[..., :-1], value[..., 1:]
    with np.errstate(all="ignore"):
        at = a0 + (l1 - p0) / (p1 - p0) * (a1 - a0)
        ok = (l1 > l0) & (l1 >= 0) & np.isfinite(a0) & np.isfinite(a1)
        depth = np.where(ok, np.where(l1 - l0 <= 1, at, np.fmin(a0, a1)), np.inf)
    return depth.min(axis=-1)


@dataclass(frozen=True)
class BlockExpr:
    """A compiled derived block; duck-types physics.expr.Expr (``names``, ``evaluate``,
    ``evaluate_row``). ``names`` are the spec names it reads (its locals not among them)."""

    text: str  # the block as canonical JSON (expressions with the model's numbers in)
    field: str
    names: frozenset[str]
    steps: tuple[tuple[str, Expr], ...]
    value: Expr | None = None
    over: str | None = None
    points: int = 0
    at_each: tuple[tuple[str, Expr], ...] = ()
    crossings: tuple[Crossing, ...] = ()
    across: tuple[str, tuple[float, ...]] | None = None  # (name, listed values)
    total: str | None = None  # sum_of: the grid value summed, in place of the crossings

    @classmethod
    def build(
        cls,
        field: str,
        steps: Mapping[str, Expr],
        value: Expr | None = None,
        over: str | None = None,
        points: int = 0,
        at_each: Mapping[str, Expr] | None = None,
        crossings: tuple[Crossing, ...] = (),
        across: tuple[str, tuple[float, ...]] | None = None,
        total: str | None = None,
    ) -> BlockExpr:
        at_each = dict(at_each or {})
        local = {*steps, *at_each, *([over] if over else []), *([across[0]] if across else [])}
        exprs = [*steps.values(), *at_each.values(), *([value] if value else [])]
        names = frozenset().union(*(e.names for e in exprs)) - local
        data: dict[str, Any] = {"steps": {k: e.text for k, e in steps.items()}}
        if value is not None:
            data["value"] = value.text
        else:
            data |= {"over": over, "points": points,
                     "at_each": {k: e.text for k, e in at_each.items()},
                     "min_at_crossings": [{"value": c.value, "phase": c.phase}
                                          for c in crossings]}  # fmt: skip
            if across is not None:
                data["across"] = {across[0]: list(across[1])}
            if total is not None:
                data["sum_of"] = total
        return cls(json.dumps(data, sort_keys=True), field, names, tuple(steps.items()), value,
                   over, points, tuple(at_each.items()), crossings, across, total)  # fmt: skip

    def evaluate(self, values: Mapping[str, Any]) -> float | NDArray[np.float64]:
        """The block's value for scalar names, or an array when a name is an array."""
        local: dict[str, Any] = dict(values)
        with np.errstate(all="ignore"):
            for key, expr in self.steps:
                local[key] = expr.evaluate(local)
            if self.value is not None:
                return self.value.evaluate(local)
            assert self.over is not None
            # rows along the first axes, the grid along the last; the listed values of
            # ``across`` (if any) along a leading axis of their own
            needed = frozenset().union(*(e.names for _, e in self.at_each))
            wide = {k: np.asarray(local[k], dtype=np.float64)[..., None]
                    for k in needed if k in local}  # fmt: skip
            rows = max((v.ndim - 1 for v in wide.values()), default=0)
            wide[self.over] = np.linspace(0.0, 1.0, self.points)
            if self.across is not None:
                name, listed = self.across
                wide[name] = np.asarray(listed).reshape(-1, *(1,) * (rows + 1))
            for key, expr in self.at_each:
                wide[key] = np.asarray(expr.evaluate(wide), dtype=np.float64)
            if self.total is not None:  # over the points, then over the listed values
                out = wide[self.total].sum(axis=-1)
                if self.across is not None:
                    out = out.sum(axis=0)
                return float(out) if out.ndim == 0 else out
            out = np.full(np.shape(wide[self.crossings[0].value])[-rows - 1 : -1], np.inf)
            for c in self.crossings:
                least = crossing_min(wide[c.value], wide[c.phase])
                if least.ndim > rows:  # one per listed value
                    least = least.min(axis=0)
                out = np.minimum(out, least)
        out = np.asarray(out, dtype=np.float64)
        return float(out) if out.ndim == 0 else out

    def evaluate_row(self, values: Mapping[str, float]) -> float:
        """The value for one row of float names (the same numbers as ``evaluate``)."""
        if self.value is not None:
            local = dict(values)
            for key, expr in self.steps:
                local[key] = expr.evaluate_row(local)
            return self.value.evaluate_row(local)
        return float(self.evaluate(values))

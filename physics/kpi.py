"""KPIs: reductions of sampled output trajectories to one number per run.

Samples are treated as a piecewise-linear signal, so ``integral``, ``mean`` and
``time_above`` are exact for signals that are linear between samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from physics.spec import TwinSpec

__all__ = ["REDUCTIONS", "Reduction", "compute_kpis", "reduce"]

Reduction = Literal["final", "max", "min", "max_abs", "mean", "integral", "time_above"]
REDUCTIONS: tuple[str, ...] = get_args(Reduction)


def reduce(kind: str, t: ArrayLike, y: ArrayLike, limit: float | None = None) -> float:
    """Reduce the trajectory ``y(t)`` to one number; ``limit`` is for ``time_above``."""
    if kind not in REDUCTIONS:
        raise ValueError(f"unknown reduction {kind!r}; expected one of {', '.join(REDUCTIONS)}")
    if (kind == "time_above") != (limit is not None):
        raise ValueError("time_above needs a limit" if limit is None else f"{kind} takes no limit")
    tt, yy = _checked(t, y)
    if kind == "final":
        return float(yy[-1])
    if kind == "max":
        return float(np.max(yy))
    if kind == "min":
        return float(np.min(yy))
    if kind == "max_abs":
        return float(np.max(np.abs(yy)))
    if kind == "integral":
        return _trapezoid(tt, yy)
    if kind == "mean":
        # A single sample has no duration to weight by: it is its own mean.
        return float(yy[0]) if tt.size == 1 else _trapezoid(tt, yy) / float(tt[-1] - tt[0])
    assert limit is not None
    return _time_above(tt, yy, float(limit))


def compute_kpis(spec: TwinSpec, trajectories: Mapping[str, ArrayLike]) -> dict[str, float]:
    """Every KPI of ``spec`` from one run's trajectories (``"time"`` plus variables)."""
    if "time" not in trajectories:
        raise ValueError("expected a 'time' trajectory, got only " + ", ".join(trajectories))
    t = trajectories["time"]
    out: dict[str, float] = {}
    for name, kpi in spec.kpis.items():
        if kpi.variable not in trajectories:
            raise ValueError(f"KPI {name!r} needs the trajectory of {kpi.variable!r}, not given")
        try:
            out[name] = reduce(kpi.reduction, t, trajectories[kpi.variable], kpi.limit)
        except ValueError as exc:
            raise ValueError(f"KPI {name!r} ({kpi.variable}): {exc}") from None
    return out


def _checked(t: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    tt = np.asarray(t, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if tt.ndim != 1 or yy.ndim != 1:
        raise ValueError(f"expected 1-D t and y, got shapes {tt.shape} and {yy.shape}")
    if tt.size != yy.size:
        raise ValueError(f"expected t and y of equal length, got {tt.size} and {yy.size}")
    if tt.size == 0:
        raise ValueError("expected at least one sample, got 0")
    steps = np.diff(tt)
    if not np.all(steps > 0):  # also catches nan
        i = int(np.argmin(steps > 0))
        raise ValueError(
            "expected strictly increasing t, "
            f"got t[{i}] = {float(tt[i])!r} then t[{i + 1}] = {float(tt[i + 1])!r}"
        )
    return tt, yy


def _trapezoid(t: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    return float(np.sum(np.diff(t) * (y[1:] + y[:-1])) / 2.0)


def _time_above(t: NDArray[np.float64], y: NDArray[np.float64], limit: float) -> float:
    """Time with y > limit, crossings found by linear interpolation within each step."""
    a, b, dt = y[:-1] - limit, y[1:] - limit, np.diff(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Share of each step spent above: 1 or 0 when no crossing, else the part
        # of the step on the positive side of the straight line through a and b.
        share = np.where(
            (a > 0) & (b > 0),
            1.0,
            np.where(
                (a > 0) & (b <= 0), a / (a - b), np.where((a <= 0) & (b > 0), b / (b - a), 0.0)
            ),
        )
    return float(np.sum(share * dt))

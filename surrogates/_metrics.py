"""Accuracy of a surrogate against FMU runs, and the spec's acceptance gate.

Regressions are scored on the runs where no event occurred (the surrogate's
regressions answer for that case); events on every run. NRMSE and the relative
error are taken over the range (max - min) of the true values, as the spec's
``max_rel_error`` is defined.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from physics.spec import TwinSpec


def regression_metrics(
    y: np.ndarray, pred: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> dict[str, float]:
    err = pred - y
    span = float(np.ptp(y)) if y.size else 0.0
    rmse = float(np.sqrt(np.mean(err**2))) if y.size else float("nan")
    var = float(np.var(y)) if y.size else 0.0
    out = {
        "n": float(y.size),
        "rmse": rmse,
        "mae": float(np.mean(np.abs(err))) if y.size else float("nan"),
        "nrmse": rmse / span if span > 0 else 0.0 if rmse == 0 else float("inf"),
        "r2": 1.0 - float(np.mean(err**2)) / var if var > 0 else float("nan"),
        "max_abs_error": float(np.max(np.abs(err))) if y.size else float("nan"),
        "coverage": float(np.mean((y >= lower) & (y <= upper))) if y.size else float("nan"),
        "mean_width": float(np.mean(upper - lower)) if y.size else float("nan"),
    }
    out["max_rel_error"] = (
        out["max_abs_error"] / span if span > 0 else 0.0 if out["max_abs_error"] == 0 else np.inf
    )
    return out


def auc(prob: np.ndarray, outcome: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties)."""
    from scipy.stats import rankdata

    pos = outcome > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(prob)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def event_metrics(prob: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
    hit = (prob >= 0.5) == (outcome > 0.5)
    return {
        "n": float(outcome.size),
        "events": float((outcome > 0.5).sum()),
        "accuracy": float(hit.mean()) if outcome.size else float("nan"),
        # error rate as a count over n, so 5 misses in 500 are exactly 0.01
        "mae": float((~hit).sum() / outcome.size) if outcome.size else float("nan"),
        "brier": float(np.mean((prob - outcome) ** 2)) if outcome.size else float("nan"),
        "auc": auc(prob, outcome),
    }


def increment_key(name: str) -> str:
    return f"{name}.increment"


def score(prediction: Any, frame: Any, spec: TwinSpec | None = None) -> dict[str, dict[str, float]]:
    """Per-KPI metrics of a Prediction against the KPI columns of ``frame``; for a KPI
    whose spec names a ``start``, also of its increment over the order (``<kpi>.increment``)."""
    quiet = prediction.quiet_mask(frame)
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(prediction.regression_names):
        y = frame[name].to_numpy(dtype=np.float64)[quiet]
        pred = prediction.mean[quiet, j], prediction.lower[quiet, j], prediction.upper[quiet, j]
        out[name] = regression_metrics(y, *pred)
        start = spec.kpis[name].start if spec is not None else None
        if start:
            base = frame[start].to_numpy(dtype=np.float64)[quiet]
            out[increment_key(name)] = regression_metrics(y - base, *(p - base for p in pred))
    for j, name in enumerate(prediction.event_names):
        y = frame[name].to_numpy(dtype=np.float64)
        out[name] = event_metrics(prediction.probability[:, j], y)
    return out


_CHECKS = (
    ("max_rmse", "rmse", "<="),
    ("max_mae", "mae", "<="),
    ("max_rel_error", "max_rel_error", "<="),
    ("min_r2", "r2", ">="),
    ("min_coverage", "coverage", ">="),
)


def gate(spec: TwinSpec, metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Every acceptance threshold of the spec that ``metrics`` miss, one line each."""
    failures: list[str] = []
    for name, acc in spec.acceptance.items():
        # A KPI that starts from a state input is judged on what the order adds.
        key = increment_key(name) if spec.kpis[name].start else name
        got = metrics.get(key)
        if got is None:
            failures.append(f"{name}: no verification figures")
            continue
        unit = spec.kpis[name].unit
        for field, metric, op in _CHECKS:
            limit = getattr(acc, field)
            if limit is None or metric not in got:
                continue
            value = got[metric]
            ok = value <= limit if op == "<=" else value >= limit
            if not (ok and np.isfinite(value)):
                shown = f"{value:.4g}" + (f" {unit}" if metric in ("rmse", "mae") else "")
                failures.append(f"{key}: {metric} {shown}, needs {op} {limit:g} ({field})")
    return failures


def summary_row(name: str, m: Mapping[str, float]) -> str:
    if "accuracy" in m:
        return (
            f"{name:28s} event  n={int(m['n']):5d} accuracy {m['accuracy']:.4f}  "
            f"brier {m['brier']:.4f}  auc {m['auc']:.4f}"
        )
    return (
        f"{name:28s} n={int(m['n']):5d} nrmse {100 * m['nrmse']:6.2f} %  r2 {m['r2']:8.5f}  "
        f"max err {m['max_abs_error']:10.4g}  coverage {100 * m['coverage']:5.1f} %"
    )

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


def feasible_key(name: str) -> str:
    return f"{name}.feasible"


def feasible_mask(spec: TwinSpec, frame: Any) -> np.ndarray:
    """Rows of ``frame`` whose true KPI values keep every feasibility limit of ``spec``."""
    ok = np.ones(len(frame), dtype=bool)
    for key, f in spec.feasibility.items():
        v = frame[key].to_numpy(dtype=np.float64)
        if f.min is not None:
            ok &= v >= f.min
        if f.max is not None:
            ok &= v <= f.max
    return ok


def score(prediction: Any, frame: Any, spec: TwinSpec | None = None) -> dict[str, dict[str, float]]:
    """Per-KPI metrics of a Prediction against the KPI columns of ``frame``; for a KPI
    whose spec names a ``start``, also of its increment over the order (``<kpi>.increment``);
    for one whose acceptance has ``scope: feasible``, also on the feasible runs
    (``<kpi>.feasible``)."""
    quiet = prediction.quiet_mask(frame)
    feasible = quiet & feasible_mask(spec, frame) if spec is not None else quiet
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(prediction.regression_names):
        y = frame[name].to_numpy(dtype=np.float64)[quiet]
        pred = prediction.mean[quiet, j], prediction.lower[quiet, j], prediction.upper[quiet, j]
        out[name] = regression_metrics(y, *pred)
        acc = spec.acceptance.get(name) if spec is not None else None
        if acc is not None and acc.scope == "feasible":
            out[feasible_key(name)] = regression_metrics(
                frame[name].to_numpy(dtype=np.float64)[feasible],
                prediction.mean[feasible, j], prediction.lower[feasible, j],
                prediction.upper[feasible, j],
            )  # fmt: skip
        start = spec.kpis[name].start if spec is not None else None
        if start:
            base = frame[start].to_numpy(dtype=np.float64)[quiet]
            out[increment_key(name)] = regression_metrics(y - base, *(p - base for p in pred))
    for j, name in enumerate(prediction.event_names):
        y = frame[name].to_numpy(dtype=np.float64)
        out[name] = event_metrics(prediction.probability[:, j], y)
    return out


CHECKS = (
    ("max_rmse", "rmse", "<="),
    ("max_mae", "mae", "<="),
    ("max_rel_error", "max_rel_error", "<="),
    ("min_r2", "r2", ">="),
    ("min_coverage", "coverage", ">="),
)
OPS = {field: op for field, _, op in CHECKS}
METRIC = {field: metric for field, metric, _ in CHECKS}
# A slice's or partition's coverage fails when its runs show it below min_coverage:
# a one-sided exact binomial test at this level (see ``coverage_p``).
COVERAGE_ALPHA = 0.05


def coverage_p(coverage: float, n: float, limit: float) -> float:
    """P(at most the observed covered runs | n runs, true coverage ``limit``): the
    one-sided binomial p-value of "the interval covers less than ``limit``".

    A slice of 500 runs whose true coverage is exactly 95 % shows less than 93 % one
    time in fifty; a gate of fifty such checks would refuse a sound model most of the
    time. The pooled runs keep the plain threshold; the slices and partitions, each a
    part of them, fail only where the shortfall is more than chance explains.
    """
    from scipy.stats import binom

    return float(binom.cdf(round(coverage * n), int(n), limit))


def threshold_rows(spec: TwinSpec) -> list[tuple[str, str, str, str, float]]:
    """(acceptance KPI, metrics key, field, metric, limit) for every threshold of the spec."""
    rows = []
    for name, acc in spec.acceptance.items():
        # A KPI that starts from a state input is judged on what the order adds; one
        # scoped to the feasible runs on those.
        key = increment_key(name) if spec.kpis[name].start else name
        if acc.scope == "feasible":
            key = feasible_key(name)
        for field, metric, _ in CHECKS:
            limit = getattr(acc, field)
            if limit is not None:
                rows.append((name, key, field, metric, float(limit)))
    return rows


def gate(
    spec: TwinSpec,
    metrics: Mapping[str, Mapping[str, float]],
    *,
    fields: tuple[str, ...] | None = None,
    tested: bool = False,
    min_rows: int = 0,
) -> list[str]:
    """Every acceptance threshold of the spec that ``metrics`` miss, one line each.

    ``fields``: only these criteria (default all); ``tested``: coverage by the binomial
    test (``coverage_p``) rather than the plain threshold; ``min_rows``: KPIs scored on
    fewer runs are not judged (a partition where a choice is rare).
    """
    failures: list[str] = []
    seen: set[str] = set()
    for name, key, field, metric, limit in threshold_rows(spec):
        if fields is not None and field not in fields:
            continue
        got = metrics.get(key)
        if got is None:
            if name not in seen:
                failures.append(f"{name}: no verification figures")
            seen.add(name)
            continue
        if metric not in got or got.get("n", 0) < min_rows:
            continue
        unit = spec.kpis[name].unit
        value, op = got[metric], OPS[field]
        if meets(got, field, limit, tested=tested):
            continue
        if metric == "coverage" and tested:
            p = coverage_p(value, got["n"], limit)
            failures.append(
                f"{key}: coverage {value:.4g} of {int(got['n'])} runs, below {limit:g} "
                f"beyond chance (binomial p {p:.2g} < {COVERAGE_ALPHA:g}; {field})"
            )
        else:
            shown = f"{value:.4g}" + (f" {unit}" if metric in ("rmse", "mae") else "")
            failures.append(f"{key}: {metric} {shown}, needs {op} {limit:g} ({field})")
    return failures


def meets(got: Mapping[str, float], field: str, limit: float, *, tested: bool = False) -> bool:
    """Whether one KPI's figures ``got`` meet one threshold (see ``gate``)."""
    metric, op = METRIC[field], OPS[field]
    value = got[metric]
    if not np.isfinite(value):
        return False
    if metric == "coverage" and tested:
        return coverage_p(value, got["n"], limit) >= COVERAGE_ALPHA
    return value <= limit if op == "<=" else value >= limit


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

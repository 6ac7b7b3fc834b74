"""Uncertainty: the ensemble's spread made honest on the calibration split.

Regressions: split-conformal on residuals normalised by the spread (in the
standardised, transformed space where the nets work). With mu and s the members'
mean and standard deviation and d a small floor (a tenth of the median spread,
so a net that happens to agree with itself still gets an interval), the score of
a calibration row is |y - mu| / (s + d); q is its ceil((n + 1) level) / n
empirical quantile, and [mu - q (s + d), mu + q (s + d)] covers a fresh run with
probability at least ``level`` when calibration and fresh runs are exchangeable
(Lei et al., "Distribution-free predictive inference for regression", JASA 2018).
The interval is mapped back through the KPI's (monotone) transform, so a logged
KPI gets an asymmetric interval with the same coverage.

Events: temperature scaling of the members' mean logit (Guo et al., "On
calibration of modern neural networks", ICML 2017), fitted by likelihood.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FLOOR_SHARE = 0.1


@dataclass
class Calibration:
    level: float
    q: list[float]  # per regression output
    floor: list[float]
    temperature: list[float]  # per event output
    rows: int  # calibration rows used (regressions: those without an event)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**data)


def spread(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Members' mean and (population) standard deviation over axis 0."""
    mu = z.mean(axis=0)
    return mu, np.sqrt(((z - mu) ** 2).mean(axis=0))


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    n = scores.size
    if n == 0:
        return float("inf")
    rank = math.ceil((n + 1) * level)
    if rank > n:  # too few rows for this level: no finite guarantee
        return float("inf")
    return float(np.sort(scores)[rank - 1])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_temperature(logit: np.ndarray, outcome: np.ndarray) -> float:
    """T minimising the negative log-likelihood of sigmoid(logit / T), T in [0.05, 20]."""
    from scipy.optimize import minimize_scalar

    if logit.size == 0 or np.unique(outcome).size < 2:
        return 1.0

    def nll(log_t: float) -> float:
        p = np.clip(_sigmoid(logit / math.exp(log_t)), 1e-12, 1 - 1e-12)
        return float(-(outcome * np.log(p) + (1 - outcome) * np.log(1 - p)).mean())

    res = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(res.x))


def calibrate(
    members: np.ndarray, y: np.ndarray, quiet: np.ndarray, n_regression: int, level: float
) -> Calibration:
    """Fit the calibration on network outputs [M, N, K] and targets [N, K]."""
    q: list[float] = []
    floors: list[float] = []
    zr = members[:, quiet, :n_regression]
    mu, s = spread(zr)
    for k in range(n_regression):
        floor = FLOOR_SHARE * float(np.median(s[:, k])) if s.shape[0] else 0.0
        floor = max(floor, 1e-6)
        scores = np.abs(y[quiet, k] - mu[:, k]) / (s[:, k] + floor)
        q.append(conformal_quantile(scores, level))
        floors.append(floor)
    temps = [
        fit_temperature(members[:, :, k].mean(axis=0), y[:, k])
        for k in range(n_regression, members.shape[2])
    ]
    return Calibration(level, q, floors, temps, int(quiet.sum()))


def event_probability(members: np.ndarray, temperature: np.ndarray) -> np.ndarray:
    """Calibrated probability from member logits [M, N, E]."""
    return _sigmoid(members.mean(axis=0) / temperature)

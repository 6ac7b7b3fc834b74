"""Probabilities from a calibrated interval, vectorised over numpy arrays.

The surrogate gives a mean and a conformal interval at level ``L`` whose two sides
may differ (a log-transformed KPI). The predictive distribution is taken as a
two-piece normal with its median at the mean and each side's scale set so that the
interval ends are its (1 -+ L)/2 quantiles: the interval stays exactly what was
calibrated, and a probability beyond a limit follows from it.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["cdf", "normal_cdf", "p_above", "p_below", "z_of_level"]

_TINY = 1e-12


def z_of_level(level: float) -> float:
    """The standard normal quantile of a two-sided level (0.95 -> 1.95996)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, 0.5 (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26
    (|error| < 1.5e-7), so no scipy is needed at serving time."""
    x = np.asarray(x, dtype=np.float64)
    t_in = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * t_in)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                         + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-t_in * t_in)
    return 0.5 * (1.0 + np.sign(x) * erf)


def cdf(x: float | np.ndarray, mean: np.ndarray, lower: np.ndarray, upper: np.ndarray,
        level: float) -> np.ndarray:
    """P(X <= x) under the two-piece normal of (mean, [lower, upper] at ``level``)."""
    z = z_of_level(level)
    mean = np.asarray(mean, dtype=np.float64)
    s_lo = np.maximum((mean - lower) / z, _TINY * np.maximum(1.0, np.abs(mean)))
    s_hi = np.maximum((upper - mean) / z, _TINY * np.maximum(1.0, np.abs(mean)))
    d = np.asarray(x, dtype=np.float64) - mean
    scale = np.where(d < 0, s_lo, s_hi)
    return normal_cdf(d / scale)


def p_above(limit: float | np.ndarray, mean: np.ndarray, lower: np.ndarray, upper: np.ndarray,
            level: float) -> np.ndarray:
    return 1.0 - cdf(limit, mean, lower, upper, level)


def p_below(limit: float | np.ndarray, mean: np.ndarray, lower: np.ndarray, upper: np.ndarray,
            level: float) -> np.ndarray:
    return cdf(limit, mean, lower, upper, level)

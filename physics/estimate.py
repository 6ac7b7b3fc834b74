"""The hidden state of a machine from what it streams: a Bayesian point-mass filter over
FMU runs.

An order starts from a state the MES only believes (the tool's wear). ``OrderFilter``
puts a grid of candidate start values over the prior around that belief, runs the FMU
from each (the same order, the same inputs), and weighs the candidates by every
observation the machine streams: a signal of the machine file (physics/machine.py) is
an expression of the FMU's variables with a Gaussian noise of known standard deviation,
so each candidate predicts it at the observation's machine time and the observation's
likelihood is that of its residual. The posterior is the prior times the likelihood on
the grid: the point-mass filter (Bucy & Senne, 1971), exact to the grid's resolution for
a state of low dimension, which a particle filter is not once its weights collapse
(with thousands of observations an order, they do: its particles then stop on one
value and its interval says nothing). When the posterior has narrowed to a few grid
points (its effective number under a sixth of them), the grid is laid again over the
posterior's mean +- 4 standard deviations (the standard deviation at least the old
spacing; a normal posterior then rests on about 13 of 41 points), the FMU run from each
new point, and every observation so far weighed again: the interval keeps its meaning
at any precision.

The estimate of any FMU variable at any time of the order (the tool's wear now) is the
posterior mean and standard deviation over the candidates' trajectories; a poorly
observed machine keeps a wide one. One hidden state input per filter (the tool's wear
on the spindle): a grid in more dimensions grows as its power.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from physics.machine import MachineConfig, MachineError, run_order

__all__ = ["Estimate", "OrderFilter", "Prior"]


@dataclass(frozen=True)
class Prior:
    """What the MES believes of a state input: a normal law, truncated to [lo, hi]."""

    mean: float
    std: float
    lo: float = -math.inf
    hi: float = math.inf


@dataclass(frozen=True)
class Estimate:
    mean: float
    std: float
    points: float  # the effective number of grid points behind it
    observations: int  # how many observations have been weighed in so far


class OrderFilter:
    """The start state of one order, and every FMU variable along it, from observations."""

    def __init__(self, spec: Any, fmu: Any, config: MachineConfig, values: Mapping[str, Any],
                 quantity: Any, name: str, prior: Prior, *, points: int = 41,
                 ) -> None:  # fmt: skip
        if points < 9:
            raise MachineError(f"points: {points}; expected at least 9")
        inp = spec.inputs.get(name)
        if inp is None or inp.source != "state":
            states = ", ".join(k for k, i in spec.inputs.items() if i.source == "state")
            raise MachineError(f"{name}: not a state input of {spec.name} (state inputs: "
                               f"{states})")  # fmt: skip
        if not (prior.std > 0 and prior.lo < prior.hi):
            raise MachineError(f"prior of {name}: std {prior.std} and [{prior.lo}, {prior.hi}]; "
                               "expected std > 0 and lo < hi")  # fmt: skip
        self.spec, self.fmu, self.config = spec, fmu, config
        self.values, self.quantity = dict(values), quantity
        self.name, self.prior, self.n = name, prior, points
        self.signals = {s.name: s for s in config.signals}
        self.observed: dict[str, tuple[list[float], list[float]]] = {}
        self.observations = 0
        self.refinements = 0
        lo = max(prior.lo, prior.mean - 6 * prior.std)
        hi = min(prior.hi, prior.mean + 6 * prior.std)
        self._lay(np.linspace(lo, hi, points))

    # -- the grid --------------------------------------------------------------------
    def _lay(self, grid: np.ndarray) -> None:
        self.grid = grid
        self.runs = [self._simulate(float(x)) for x in grid]
        # one time grid for every run (the longest; one that stopped early holds its end)
        self.time = max((time for time, _ in self.runs), key=len)
        self._series: dict[str, np.ndarray] = {}
        z = (grid - self.prior.mean) / self.prior.std
        self.logprior = -0.5 * z**2
        self.logl = np.zeros(len(grid))
        for signal, (times, values) in self.observed.items():
            self.logl += self._loglik(signal, np.array(times), np.array(values))

    def _simulate(self, start: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        values = {**self.values, self.name: start}
        time, cols, _ = run_order(self.spec, self.fmu, self.config, values, self.quantity)
        return time, cols

    def _series_of(self, signal: str) -> np.ndarray:
        """The signal's clean value along every grid point's run: [points, samples]."""
        series = self._series.get(signal)
        if series is None:
            expr = self.signals[signal].expr
            with np.errstate(all="ignore"):
                rows = [np.interp(self.time, time, np.broadcast_to(
                    np.asarray(expr.evaluate(cols), dtype=float), time.shape))
                    for time, cols in self.runs]  # fmt: skip
            series = self._series[signal] = np.array(rows)
        return series

    def _loglik(self, signal: str, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Each grid point's log-likelihood of these observations of ``signal``: every run
        interpolated at once, on one time grid."""
        series = self._series_of(signal)
        k = np.clip(np.searchsorted(self.time, times) - 1, 0, len(self.time) - 2)
        t0, t1 = self.time[k], self.time[k + 1]
        f = np.clip((times - t0) / np.where(t1 > t0, t1 - t0, 1.0), 0.0, 1.0)
        predicted = series[:, k] * (1 - f) + series[:, k + 1] * f  # [points, observations]
        r = (values - predicted) / self.signals[signal].noise
        out = -0.5 * np.sum(r * r, axis=1)
        return np.where(np.isfinite(out), out, -np.inf)

    # -- observations ----------------------------------------------------------------
    def observe(self, signal: str, t: float, value: float, good: bool = True) -> None:
        """Weigh in one observation of ``signal`` at the order's machine time ``t``."""
        if signal not in self.signals:
            raise MachineError(f"observation of {signal!r}: not a signal of {self.config.name}")
        if not good or not self.signals[signal].noise > 0 or not math.isfinite(value):
            return  # a bad-quality value, or a signal without a stated noise, says nothing
        times, values = self.observed.setdefault(signal, ([], []))
        times.append(float(t))
        values.append(float(value))
        self.logl += self._loglik(signal, np.array([t]), np.array([value]))
        self.observations += 1

    def update(self) -> bool:
        """After a window of observations (a second of signals, a part): lay the grid again
        where the posterior has gone if it now rests on a few points; whether it did."""
        if self.points >= len(self.grid) / 6:
            return False
        m, s = self._moments(self.grid)
        s = max(s, float(self.grid[1] - self.grid[0]))
        lo, hi = max(self.prior.lo, m - 4 * s), min(self.prior.hi, m + 4 * s)
        self._lay(np.linspace(lo, hi, self.n))
        self.refinements += 1
        return True

    # -- estimates -------------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        logp = self.logprior + self.logl
        if not np.isfinite(logp).any():
            return np.full(len(logp), 1.0 / len(logp))
        w = np.exp(logp - np.max(logp[np.isfinite(logp)]))
        w = np.where(np.isfinite(w), w, 0.0)
        return w / w.sum()

    @property
    def points(self) -> float:
        """The effective number of grid points the posterior rests on."""
        w = self.weights
        return float(1.0 / np.sum(w * w))

    def _moments(self, values: np.ndarray) -> tuple[float, float]:
        w = self.weights
        mean = float(np.sum(w * values))
        return mean, float(math.sqrt(max(0.0, float(np.sum(w * (values - mean) ** 2)))))

    def start(self) -> Estimate:
        """The order's start value of the state input."""
        m, s = self._moments(self.grid)
        return Estimate(m, s, self.points, self.observations)

    def at(self, variable: str, t: float) -> Estimate:
        """An FMU variable (``tool_wear``) at the order's machine time ``t``."""
        values = np.array([np.interp(t, time, cols[variable]) for time, cols in self.runs])
        m, s = self._moments(values)
        return Estimate(m, s, self.points, self.observations)

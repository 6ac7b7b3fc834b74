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

Coverage on average over the calibration design is not coverage where the MES asks:
an interval as wide everywhere as the ensemble's spread says over-covers easy regions
and under-covers hard ones (a warm spindle with a half-worn tool, say). Two refinements,
both still split-conformal, so the marginal guarantee stays:

* ``difficulty`` (locally weighted conformal, Lei et al. 2018, section 5.2): the score
  is |y - mu| / sigma(x) with sigma(x) = exp(b + w0 log(s + d) + w . x), a ridge
  regression of log |y - mu| on the log spread and the standardised features, fitted on
  the validation split (not the calibration split, which the quantile needs unseen);
  the linear predictor is clipped to 10 % beyond its range on those rows.
* A capped KPI (``kpis.<k>.cap``) is calibrated on the rows below its cap or predicted
  below it: a run at the cap that every member puts there is covered by any interval.
* ``groups`` (Mondrian conformal, Vovk et al., *Algorithmic Learning in a Random
  World* 2005, ch. 4): one quantile per choice of a categorical input (the material),
  so the guarantee holds for each choice on its own, not only on their mix.
* ``edge_share``: Mondrian bands of the domain's edge, crossed with the groups: a run
  with at least this share of its numeric inputs within a tenth of their range of a
  bound has its own quantile. The corner-heavy verification slice (arcsine factors:
  39 % of them in those tenths, against 19 % for a uniform draw) covered 89.7 % with
  preload_ratio_max where the calibration mix (a 30 % corner share) covered 95 %: a
  quantile of the mix is set by its easier part, and neither the spread model (whose
  validation rows showed no trend with the distance from the centre) nor a
  regressor on it moved that coverage.

Events: temperature scaling of the members' mean logit (Guo et al., "On
calibration of modern neural networks", ICML 2017), fitted by likelihood.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FLOOR_SHARE = 0.1
# Ridge penalties tried for the spread model (on standardised regressors), chosen by
# two-fold cross-validation on the fitting rows.
RIDGE_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
CLIP_SHARE = 0.1
# A standardised value this close below its cap is at the cap (float32 members).
CAP_TOLERANCE = 1e-5


@dataclass
class Calibration:
    level: float
    q: list[float]  # per regression output
    floor: list[float]
    temperature: list[float]  # per event output
    rows: int  # calibration rows used (regressions: those without an event)
    method: str = "normalized"
    groups: str | None = None  # the input whose choices have their own quantile
    group_q: list[list[float]] | None = None  # [choice][regression]
    # difficulty: {"weights": [1 + F][K], "bias": [K], "low": [K], "high": [K]}
    difficulty: dict[str, Any] | None = None
    # the share of numeric inputs near a bound from which a run is in the edge band
    # (group_q then has two rows per choice: [2 choice + band]); None: no bands
    edge_share: float | None = None

    def scale(self, s: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The score's denominator per row and regression: [N, K] from the spread [N, K]
        and the standardised features [N, F]."""
        base = s + np.asarray(self.floor)
        if self.difficulty is None:
            return base
        d = self.difficulty
        w = np.asarray(d["weights"])
        eta = np.log(base) * w[0] + x @ w[1:] + np.asarray(d["bias"])
        return np.exp(np.clip(eta, d["low"], d["high"]))

    def quantiles(self, group: np.ndarray | None) -> np.ndarray:
        """[N, K] quantiles for the rows' group indices (or [1, K] without groups)."""
        if self.group_q is None or group is None:
            return np.asarray(self.q)[None, :]
        return np.asarray(self.group_q)[group.astype(np.int64)]

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


@dataclass
class Outputs:
    """What calibration reads of one split: member outputs [M, N, K], targets [N, K],
    the rows without an event [N], the standardised features [N, F] and the group
    index of each row [N] (or None)."""

    members: np.ndarray
    y: np.ndarray
    quiet: np.ndarray
    x: np.ndarray
    group: np.ndarray | None = None

    ceiling: np.ndarray | None = None  # [K regressions], the caps (inf: none)

    def rows(self, k: int) -> np.ndarray:
        """Rows regression ``k`` is calibrated on (``quiet``: [N], or [N, K] per KPI).

        A capped KPI leaves out the rows at its cap that every member puts at the cap:
        any interval covers them (its upper end is the cap), so their zero residuals
        would only shrink the quantile and the spread model for the rows below the cap.
        """
        rows = self.quiet if self.quiet.ndim == 1 else self.quiet[:, k]
        if self.ceiling is None or not np.isfinite(self.ceiling[k]):
            return rows
        top = self.ceiling[k] - CAP_TOLERANCE
        settled = (self.y[:, k] >= top) & (self.members[:, :, k] >= top).all(axis=0)
        return rows & ~settled


def _ridge(a: np.ndarray, t: np.ndarray, lam: float) -> np.ndarray:
    """Ridge solution of a @ w ~ t (last column of ``a``: the unpenalised intercept)."""
    pen = np.full(a.shape[1], lam)
    pen[-1] = 0.0
    return np.linalg.solve(a.T @ a + np.diag(pen), a.T @ t)


def fit_difficulty(fit: Outputs, n_regression: int, floors: list[float]) -> dict[str, Any]:
    """The spread model: per regression, log |residual| on [log(s + d), x, 1]."""
    weights, bias, low, high = [], [], [], []
    for k in range(n_regression):
        rows = fit.rows(k)
        mu, s = spread(fit.members[:, rows, k : k + 1])
        x = fit.x[rows]
        half = np.arange(x.shape[0]) % 2 == 0
        r = np.abs(fit.y[rows, k] - mu[:, 0])
        t = np.log(r + 0.01 * float(np.median(r)) + 1e-12)
        ls = np.log(s[:, 0] + floors[k])
        a = np.column_stack([ls, x, np.ones(len(t))])
        errs = []
        for lam in RIDGE_GRID:  # two folds: fit on one half, score on the other
            e = 0.0
            for train in (half, ~half):
                w = _ridge(a[train], t[train], lam)
                e += float(np.mean((a[~train] @ w - t[~train]) ** 2))
            errs.append(e)
        w = _ridge(a, t, RIDGE_GRID[int(np.argmin(errs))])
        eta = a @ w
        span = float(np.ptp(eta))
        weights.append(w[:-1])
        bias.append(float(w[-1]))
        low.append(float(eta.min()) - CLIP_SHARE * span)
        high.append(float(eta.max()) + CLIP_SHARE * span)
    return {
        "weights": np.column_stack(weights).tolist(),
        "bias": bias, "low": low, "high": high,
    }  # fmt: skip


def calibrate(
    cal: Outputs,
    n_regression: int,
    level: float,
    *,
    method: str = "normalized",
    fit: Outputs | None = None,
    groups: str | None = None,
    n_choices: int = 0,
    edge_share: float | None = None,
) -> Calibration:
    """Fit the calibration on the calibration split ``cal`` (``fit``: the split the
    spread model of ``difficulty`` is fitted on; ``groups`` with ``n_choices``: a
    quantile per choice of that input, from ``cal.group``; ``edge_share``: the groups
    are choice and edge band, see surrogates._features.calibration_group, and
    ``n_choices`` counts them)."""
    mu, s = spread(cal.members[:, :, :n_regression])
    floors = [
        max(FLOOR_SHARE * float(np.median(s[cal.rows(k), k])) if cal.rows(k).any() else 0.0, 1e-6)
        for k in range(n_regression)
    ]
    used = int(min((cal.rows(k).sum() for k in range(n_regression)), default=cal.quiet.shape[0]))
    out = Calibration(level, [], floors, [], used, method, groups, edge_share=edge_share)
    if method == "difficulty":
        if fit is None:
            raise ValueError("calibrate: the difficulty method needs the rows to fit it on")
        out.difficulty = fit_difficulty(fit, n_regression, floors)
    scores = np.abs(cal.y[:, :n_regression] - mu) / out.scale(s, cal.x)  # [N, K]
    out.q = [conformal_quantile(scores[cal.rows(k), k], level) for k in range(n_regression)]
    if n_choices:
        assert cal.group is not None
        g = cal.group.astype(np.int64)
        out.group_q = []
        for c in range(n_choices):
            # A choice too rare for a finite quantile at this level takes the pooled one.
            qc = [conformal_quantile(scores[cal.rows(k) & (g == c), k], level)
                  for k in range(n_regression)]  # fmt: skip
            pooled = zip(qc, out.q, strict=True)
            out.group_q.append([a if math.isfinite(a) else b for a, b in pooled])
    out.temperature = [
        fit_temperature(cal.members[:, :, k].mean(axis=0), cal.y[:, k])
        for k in range(n_regression, cal.members.shape[2])
    ]
    return out


def event_probability(members: np.ndarray, temperature: np.ndarray) -> np.ndarray:
    """Calibrated probability from member logits [M, N, E]."""
    return _sigmoid(members.mean(axis=0) / temperature)

"""Diagnostic figures for surrogate training and verification.

Every function returns a :class:`matplotlib.figure.Figure` drawn on an Agg canvas
without going through pyplot: nothing global is touched, figures are freed when
dropped, and it works in threads and on machines without a display. matplotlib is
imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_PANEL = (4.0, 3.4)  # inches per panel
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")


def _figure(nrows: int, ncols: int, *, panel: tuple[float, float] = _PANEL) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _grid(n: int, max_cols: int = 3) -> tuple[Figure, list[Axes]]:
    """A figure with exactly ``n`` panels (unused grid cells removed)."""
    n = max(n, 1)
    ncols = min(max_cols, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(nrows, ncols)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for extra in axes[n:]:
        fig.delaxes(extra)
    return fig, axes[:n]


def _style(ax: Axes) -> None:
    ax.grid(True, color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _unit(units: Mapping[str, str], key: str) -> str:
    unit = units.get(key) or "-"
    return f"[{unit}]"


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    ok = np.isfinite(t) & np.isfinite(p)
    return t, p, ok


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination over the finite pairs (NaN if undefined)."""
    t, p, ok = _pair(y_true, y_pred)
    t, p = t[ok], p[ok]
    if t.size < 2:
        return float("nan")
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


def _kpis(y_true: Mapping[str, Any], y_pred: Mapping[str, Any]) -> list[str]:
    return [k for k in y_true if k in y_pred]


def _empty(ax: Axes, text: str = "no finite values") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def parity_plots(
    y_true: Mapping[str, np.ndarray],
    y_pred: Mapping[str, np.ndarray],
    units: Mapping[str, str],
    *,
    lower: Mapping[str, np.ndarray] | None = None,
    upper: Mapping[str, np.ndarray] | None = None,
) -> Figure:
    """Predicted vs simulated, one panel per KPI, with the y = x line and R².

    ``lower``/``upper`` (per KPI) draw the prediction intervals as error bars.
    """
    kpis = _kpis(y_true, y_pred)
    fig, axes = _grid(len(kpis))
    for i, (ax, kpi) in enumerate(zip(axes, kpis, strict=False)):
        _style(ax)
        t, p, ok = _pair(y_true[kpi], y_pred[kpi])
        color = _COLORS[i % len(_COLORS)]
        unit = _unit(units, kpi)
        ax.set_xlabel(f"simulated {kpi} {unit}")
        ax.set_ylabel(f"predicted {kpi} {unit}")
        if not ok.any():
            ax.set_title(kpi)
            _empty(ax)
            continue
        small = ok.sum() <= 400
        if lower is not None and upper is not None and kpi in lower and kpi in upper:
            lo = np.asarray(lower[kpi], dtype=float).ravel()
            hi = np.asarray(upper[kpi], dtype=float).ravel()
            yerr = np.vstack([np.clip(p - lo, 0, None), np.clip(hi - p, 0, None)])[:, ok]
            ax.errorbar(
                t[ok],
                p[ok],
                yerr=np.nan_to_num(yerr),
                fmt="none",
                ecolor=color,
                alpha=0.25 if small else 0.08,
                linewidth=0.8,
                zorder=1,
            )
        ax.scatter(
            t[ok],
            p[ok],
            s=14 if small else 5,
            color=color,
            alpha=0.8 if small else 0.4,
            linewidths=0,
            rasterized=not small,
            zorder=2,
        )
        lo_ax = float(min(t[ok].min(), p[ok].min()))
        hi_ax = float(max(t[ok].max(), p[ok].max()))
        pad = 0.04 * (hi_ax - lo_ax or abs(hi_ax) or 1.0)
        line = [lo_ax - pad, hi_ax + pad]
        ax.plot(line, line, color="0.3", linestyle="--", linewidth=1, zorder=3, label="y = x")
        ax.set_xlim(line[0], line[1])
        ax.set_ylim(line[0], line[1])
        ax.set_aspect("equal", adjustable="box")
        r2 = r2_score(t, p)
        ax.set_title(f"{kpi}   R² = {r2:.3f}" if np.isfinite(r2) else f"{kpi}   R² = n/a")
        ax.legend(loc="upper left", frameon=False, fontsize="small")
    fig.suptitle("Parity: surrogate vs FMU")
    return fig


def residual_histograms(
    y_true: Mapping[str, np.ndarray],
    y_pred: Mapping[str, np.ndarray],
    units: Mapping[str, str],
) -> Figure:
    """Histogram of residuals (predicted - simulated), one panel per KPI."""
    kpis = _kpis(y_true, y_pred)
    fig, axes = _grid(len(kpis))
    for i, (ax, kpi) in enumerate(zip(axes, kpis, strict=False)):
        _style(ax)
        t, p, ok = _pair(y_true[kpi], y_pred[kpi])
        ax.set_xlabel(f"residual, predicted − simulated {_unit(units, kpi)}")
        ax.set_ylabel("runs")
        ax.set_title(kpi)
        if not ok.any():
            _empty(ax)
            continue
        r = p[ok] - t[ok]
        bins = int(np.clip(np.sqrt(r.size), 10, 60))
        ax.hist(r, bins=bins, color=_COLORS[i % len(_COLORS)], alpha=0.8, edgecolor="white")
        ax.axvline(0.0, color="0.2", linewidth=1)
        mean, std = float(r.mean()), float(r.std())
        ax.axvline(mean, color="0.2", linestyle="--", linewidth=1)
        ax.text(
            0.98,
            0.95,
            f"bias {mean:.3g}\nstd {std:.3g}\nn {r.size}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize="small",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.85"},
        )
    fig.suptitle("Residuals")
    return fig


def learning_curves(history: Sequence[Mapping[str, float]]) -> Figure:
    """Loss curves per epoch on a log axis; the learning rate on a second axis if logged.

    Keys containing ``loss`` are drawn (any other key but ``epoch``/``lr`` only when
    no loss is there); ``val*`` curves mark their best epoch. Losses that go
    to zero or below (Gaussian NLL does) switch the axis to symlog.
    """
    fig = _figure(1, 1, panel=(7.0, 4.2))
    ax = fig.add_subplot()
    _style(ax)
    epochs = np.array([row.get("epoch", i) for i, row in enumerate(history)], dtype=float)
    keys = list(dict.fromkeys(k for row in history for k in row if k not in ("epoch", "lr")))
    losses = [k for k in keys if "loss" in k]
    keys = losses or keys  # other numbers (timings, grad norms) only when no loss is logged
    values_all: list[np.ndarray] = []
    for i, key in enumerate(keys):
        y = np.array([row.get(key, np.nan) for row in history], dtype=float)
        if not np.isfinite(y).any():
            continue
        values_all.append(y[np.isfinite(y)])
        color = _COLORS[i % len(_COLORS)]
        ax.plot(epochs, y, color=color, linewidth=1.6, label=key)
        if key.startswith("val"):
            best = int(np.nanargmin(y))
            ax.plot(epochs[best], y[best], "o", color=color, markersize=6)
            ax.annotate(
                f"best {y[best]:.3g} @ {epochs[best]:g}",
                (epochs[best], y[best]),
                textcoords="offset points",
                xytext=(6, 8),
                fontsize="small",
                color=color,
            )
    finite = np.concatenate(values_all) if values_all else np.array([])
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)")
    elif finite.size:
        scale = float(np.abs(finite[finite != 0]).min()) if (finite != 0).any() else 1.0
        ax.set_yscale("symlog", linthresh=scale)
        ax.set_ylabel("loss (symlog scale)")
    else:
        _empty(ax, "no losses logged")
        ax.set_ylabel("loss")
    ax.set_xlabel("epoch")
    handles, labels = ax.get_legend_handles_labels()
    lr = np.array([row.get("lr", np.nan) for row in history], dtype=float)
    if np.isfinite(lr).any():
        ax2 = ax.twinx()
        ax2.plot(epochs, lr, color="0.5", linestyle=":", linewidth=1.4, label="lr")
        if (lr[np.isfinite(lr)] > 0).all():
            ax2.set_yscale("log")
        ax2.set_ylabel("learning rate")
        ax2.spines["top"].set_visible(False)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="upper right", frameon=False)
    ax.set_title("Learning curves")
    return fig


def reliability_plot(
    prob: Mapping[str, np.ndarray],
    outcome: Mapping[str, np.ndarray],
    *,
    coverage: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    bins: int = 10,
) -> Figure:
    """Calibration of event probabilities (left) and of intervals (right, if given).

    Left: per event, mean predicted probability vs observed frequency in ``bins``
    equal-width bins, each point labelled with its count. Right: for each KPI,
    empirical coverage against the nominal level of its intervals.
    """
    fig = _figure(1, 2 if coverage else 1, panel=(4.8, 4.4))
    axes = list(fig.subplots(1, 2 if coverage else 1, squeeze=False).ravel())
    ax = axes[0]
    _style(ax)
    ax.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1, label="perfect")
    edges = np.linspace(0.0, 1.0, bins + 1)
    for i, event in enumerate(k for k in prob if k in outcome):
        pr = np.asarray(prob[event], dtype=float).ravel()
        ob = np.asarray(outcome[event], dtype=float).ravel()
        ok = np.isfinite(pr) & np.isfinite(ob)
        pr, ob = np.clip(pr[ok], 0.0, 1.0), ob[ok]
        which = np.clip(np.digitize(pr, edges[1:-1]), 0, bins - 1)
        counts = np.bincount(which, minlength=bins)
        used = counts > 0
        mean_p = np.bincount(which, weights=pr, minlength=bins)[used] / counts[used]
        freq = np.bincount(which, weights=ob, minlength=bins)[used] / counts[used]
        color = _COLORS[i % len(_COLORS)]
        ax.plot(mean_p, freq, "o-", color=color, markersize=5, linewidth=1.4, label=event)
        for x, y, n in zip(mean_p, freq, counts[used], strict=True):
            ax.annotate(
                str(n),
                (x, y),
                textcoords="offset points",
                xytext=(4, -10) if i % 2 == 0 else (-12, 6),  # two events: labels apart
                fontsize="x-small",
                color=color,
            )
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("mean predicted probability [-]")
    ax.set_ylabel("observed frequency [-]")
    ax.set_title("Event probabilities (labels: runs per bin)")
    ax.legend(loc="upper left", frameon=False, fontsize="small")
    if coverage:
        ax = axes[1]
        _style(ax)
        ax.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1, label="nominal")
        for i, (kpi, (nominal, empirical)) in enumerate(coverage.items()):
            nom = np.asarray(nominal, dtype=float).ravel()
            emp = np.asarray(empirical, dtype=float).ravel()
            order = np.argsort(nom)
            ax.plot(
                nom[order],
                emp[order],
                "s-",
                color=_COLORS[i % len(_COLORS)],
                markersize=4,
                linewidth=1.4,
                label=kpi,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal", adjustable="box")
        ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
        ax.set_xlabel("nominal interval coverage [%]")
        ax.set_ylabel("empirical coverage [%]")
        ax.set_title("Prediction intervals")
        ax.legend(loc="upper left", frameon=False, fontsize="small")
    return fig

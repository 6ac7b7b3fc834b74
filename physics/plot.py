"""Plots of a run's trajectories: one panel per unit, with the spec's limits."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from physics.fmu import Trajectories
from physics.spec import TwinSpec


def limits_by_variable(spec: TwinSpec) -> dict[str, list[tuple[str, float]]]:
    """Quality spec limits and maintenance limits, keyed by the KPI's FMU variable."""
    out: dict[str, list[tuple[str, float]]] = {}
    for name, q in spec.quality.items():
        var = spec.kpis[name].variable
        for label in ("lsl", "usl"):
            value = getattr(q, label, None)
            if value is not None:
                out.setdefault(var, []).append((f"{label.upper()} {q.characteristic_id}", value))
    for name, m in spec.maintenance.items():
        out.setdefault(spec.kpis[name].variable, []).append((f"limit {name}", m.limit))
    return out


def plot_run(
    traj: Trajectories,
    spec: TwinSpec,
    path: str | Path,
    *,
    title: str = "",
    kpis: Mapping[str, float] | None = None,
) -> Path:
    """Write a PNG of the spec's KPI variables, grouped into one panel per unit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Quality and maintenance variables get a panel each (with their limits);
    # the rest share a panel per unit.
    panels: dict[str, list[str]] = {}
    for kpi in spec.kpis.values():
        var = kpi.variable
        if any(var in names for names in panels.values()):
            continue
        unit = traj.units.get(var) or "-"
        key = f"{var}|{unit}" if kpi.role in ("quality", "maintenance") else unit
        panels.setdefault(key, []).append(var)
    limits = limits_by_variable(spec)
    hours = traj.time[-1] > 3 * 3600
    t = traj.time / 3600 if hours else traj.time / 60
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, 2.2 * len(panels) + 0.8), sharex=True, squeeze=False
    )
    cutting = traj.values.get("cutting")
    for ax, (key, names) in zip(axes[:, 0], panels.items(), strict=True):
        unit = key.rpartition("|")[2]
        for name in names:
            y = np.asarray(traj[name], dtype=float)
            ax.plot(t, y, label=name, lw=1.2)
            lo, hi = float(y.min()), float(y.max())
            span = max(hi - lo, 1e-12 + 0.05 * abs(hi))
            for label, value in limits.get(name, []):
                if lo - 2 * span <= value <= hi + 2 * span:
                    ax.axhline(value, ls="--", lw=1, color="tab:red")
                    ax.annotate(label, (t[0], value), color="tab:red", fontsize=7, va="bottom")
                else:  # far off the data: say so instead of flattening the curve
                    ax.annotate(
                        f"{label} = {value:g} (off scale)",
                        (0.99, 0.05),
                        xycoords="axes fraction",
                        ha="right",
                        color="tab:red",
                        fontsize=7,
                    )
        if cutting is not None and len(t) > 1:
            ax.fill_between(
                t,
                0,
                1,
                where=np.asarray(cutting, bool),
                step="post",
                transform=ax.get_xaxis_transform(),
                color="0.9",
                lw=0,
            )
        ax.set_ylabel(unit)
        ax.legend(loc="upper left", fontsize=7, frameon=False)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time [h]" if hours else "time [min]")
    heading = title or spec.name
    if kpis:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in list(kpis.items())[:4])
        heading += f"\n{shown}"
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

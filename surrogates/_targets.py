"""The spec's KPIs as learning targets: events, regressions and constants.

Each KPI gets a kind, chosen from the training rows unless the config declares it:

* ``event``: a KPI whose values are only 0 and 1 (a tool broke). It is learned as
  a classifier, and its probability is calibrated.
* ``regression``: every other KPI, learned on the rows where no event occurred,
  because an event changes every KPI at once (the machine halts). The surrogate
  thus answers "what happens if no event occurs" beside "how likely is the event".
  A non-negative KPI with a long right tail (p99/p1 above ``heavy_tail_ratio``,
  skewness above 1, and more symmetric after the log) is learned as log(y + shift):
  shift 0 where it never reaches 0, else the 5th percentile of its positive values
  (zero-inflated KPIs).
* A KPI whose spec names a ``start`` (the state input its value starts the order
  from: tool wear at the end from tool wear at the start) is learned as its increment
  over the order, and the start value is added back: the net never has to pass the
  state through, and the gate judges what the order adds.
* A KPI whose spec names a ``baseline`` (a derived value that states the physics in
  closed form: tool life from the Taylor law) is learned as its difference from it;
  the baseline comes before ``start``, which it already includes.
* ``margin``: an event whose spec names the margins it follows (it occurs when any
  reaches 1: breakage when the worn tool's stress ratio or its wear over the fracture
  wear does). Not learned: its probability is derived from the margins, exact for a
  derived value and from the calibrated interval of a learned KPI (a normal law whose
  central ``level`` interval is the conformal one). A regression learns the smooth
  margin from every quiet run, where a classifier of the flag learns its boundary only
  from the few runs beside it. Fitting checks that the margins explain the flag on
  every training row.
* A KPI whose spec names a ``cap`` (the most the FMU's output can be: the chatter
  limit is searched up to 3 ap) is censored there: a run at the cap only says the
  value is at least the cap. The nets learn it with the censored squared loss (a
  prediction at or above the cap costs nothing on such a row, the squared error on
  every other row) and the members' outputs are clipped to the cap before the mean,
  the spread and the interval, in the nets' space, so the surrogate never reports a
  value the FMU cannot give and a cut far from chatter is reported at the cap exactly.
* ``constant``: a KPI that does not vary over the no-event training rows (for
  example the breakage cause when nothing broke), or equals its baseline to rounding
  (a difference within EXACT_RTOL of the KPI's values). It is reported as that value
  (plus the baseline), with an interval of its largest deviation over the training
  rows and EXACT_RTOL of the value (float32 inputs to the graph).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from physics.spec import TwinSpec
from surrogates._errors import DataError

Kind = Literal["regression", "event", "margin", "constant"]

# Outside the training range by this share of it, predictions are clipped: a
# log-space extrapolation would otherwise explode on the way back.
CLIP_MARGIN = 0.1
# A KPI that differs from its baseline by less than this share of its own values
# equals it (the FMU's rounding): a constant over the baseline. Also the relative
# half-width of a constant's interval: the graph takes float32 inputs (6e-8 relative),
# and a baseline's power laws amplify that (tool life ~ vc^-4 hex^-2.4: up to 2e-6).
EXACT_RTOL = 1e-5
# A margin at 1 - MARGIN_RTOL or more counts as reached when fitting checks that the
# margins explain an event flag: a breakage stops the wear clock exactly at its margin.
MARGIN_RTOL = 1e-6


@dataclass(frozen=True)
class Target:
    name: str
    unit: str
    role: str
    kind: Kind
    transform: Literal["identity", "log"] = "identity"
    shift: float = 0.0  # log(y + shift)
    mean: float = 0.0  # of the transformed values over the training rows
    std: float = 1.0
    low: float = 0.0  # transformed training range, for clipping
    high: float = 0.0
    value: float = 0.0  # a constant's value
    start: str | None = None  # learned as the increment over this state input
    baseline: str | None = None  # learned as the difference from this derived value
    tolerance: float = 0.0  # a constant's largest deviation over the training rows
    margins: list[str] | None = None  # a margin event: the derived values / KPIs it follows
    cap: float | None = None  # the most the KPI can be (censored there)

    def forward(self, y: np.ndarray) -> np.ndarray:
        """Original units -> standardised."""
        t = np.log(y + self.shift) if self.transform == "log" else y
        return (t - self.mean) / self.std

    def clip_bounds(self) -> tuple[float, float]:
        """The transformed values predictions are clipped to: CLIP_MARGIN of the training
        range beyond it, and no higher than the cap where the KPI has one."""
        margin = CLIP_MARGIN * (self.high - self.low)
        high = self.high + margin
        if self.cap is not None:
            high = min(high, float(np.log(self.cap + self.shift)) if self.transform == "log"
                       else self.cap)  # fmt: skip
        return self.low - margin, high

    def ceiling(self) -> float:
        """The nets' (standardised) value of the cap; inf without one."""
        if self.cap is None:
            return math.inf
        return float(self.forward(np.asarray(self.cap, dtype=np.float64)))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Standardised -> original units, clipped near the training range."""
        t = np.clip(z * self.std + self.mean, *self.clip_bounds())
        return np.exp(t) - self.shift if self.transform == "log" else t

    def half_width(self, value: np.ndarray) -> np.ndarray:
        """A constant's interval half-width around ``value`` (the KPI, baseline added)."""
        return self.tolerance + EXACT_RTOL * np.abs(value)


def _learned_values(frame: Any, name: str, bases: Mapping[str, Any]) -> np.ndarray:
    """A KPI's values, less its baseline or start value where it has one."""
    y = frame[name].to_numpy(dtype=np.float64)
    return y - bases[name] if name in bases else y


def _skew(values: np.ndarray) -> float:
    sd = float(values.std())
    return float(np.mean((values - values.mean()) ** 3)) / sd**3 if sd > 0 else 0.0


def margin_limit(t: Target, value: np.ndarray) -> np.ndarray:
    """The nets' (standardised) value at which regression ``t`` reaches ``value`` in its
    learned units (-inf where its transform puts every value above: log(y + shift)
    with value + shift <= 0)."""
    if t.transform == "log":
        positive = value + t.shift > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (np.log(np.where(positive, value + t.shift, 1.0)) - t.mean) / t.std
        return np.where(positive, z, -np.inf)
    return (value - t.mean) / t.std


def margin_values(
    names: list[str], kpis: Mapping[str, Any], derived: Mapping[str, Any]
) -> np.ndarray:
    """[N, len(names)]: each margin's values, a KPI's from ``kpis`` (a frame or a
    mapping of columns), a derived value's from ``derived``."""
    return np.column_stack([
        np.asarray(derived[n] if n in derived else kpis[n], dtype=np.float64) for n in names
    ])  # fmt: skip


def _check_margins(
    name: str, margins: list[str], frame: Any, derived: Mapping[str, Any]
) -> None:
    """Refuse margins that do not explain the event flag on the training rows."""
    missing = [m for m in margins if m not in derived and m not in frame]
    if missing:
        raise DataError(f"kpis.{name}.margins: no values for {', '.join(missing)}")
    reached = (margin_values(margins, frame, derived) >= 1.0 - MARGIN_RTOL).any(axis=1)
    flag = frame[name].to_numpy(dtype=np.float64) > 0.5
    wrong = np.flatnonzero(reached != flag)
    if wrong.size:
        i = int(wrong[0])
        row = margin_values(margins, frame, derived)[i]
        values = ", ".join(f"{m} {v:.6g}" for m, v in zip(margins, row, strict=True))
        raise DataError(
            f"kpis.{name}.margins: on {wrong.size} of {len(flag)} training rows the flag is "
            f"not 'a margin reached 1' (row {i}: {name} {int(flag[i])}, {values}); the "
            "margins do not explain the event: learn it as a classifier "
            f"(kpi_kinds: {{{name}: event}}) or name the margins it follows"
        )


def _check_cap(name: str, cap: float, values: np.ndarray) -> None:
    """Refuse a cap the training values exceed (beyond the FMU's rounding)."""
    over = np.flatnonzero(values > cap + EXACT_RTOL * max(1.0, abs(cap)))
    if over.size:
        i = int(over[0])
        raise DataError(
            f"kpis.{name}.cap: {over.size} of {len(values)} training rows exceed "
            f"the cap {cap:g} (row {i}: {values[i]:.6g}); the cap is the most the FMU's "
            "output can be: raise it or leave it out"
        )


def _is_event(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0.0, 1.0)).all() and np.unique(values).size == 2)


def _regression(
    name: str, unit: str, role: str, values: np.ndarray, heavy: float, declared: str | None
) -> Target:
    transform: Literal["identity", "log"] = "identity"
    shift = 0.0
    positive = values[values > 0]
    if declared == "log" or (declared is None and values.min() >= 0 and positive.size > 10):
        if values.min() <= 0 and positive.size == 0:
            raise DataError(f"kpi_kinds.{name}: log needs positive values, all are <= 0")
        candidate = 0.0 if values.min() > 0 else float(np.quantile(positive, 0.05))
        lo, hi = np.quantile(positive, [0.01, 0.99])
        logged = np.log(values + candidate)
        # Log where it tames a long right tail: wide, right-skewed, and more
        # symmetric after the log (a bounded KPI that merely starts near 0 is not).
        if declared == "log" or (
            hi / lo > heavy and _skew(values) > 1.0 and abs(_skew(logged)) < _skew(values)
        ):
            transform, shift = "log", candidate
    t = np.log(values + shift) if transform == "log" else values
    std = float(t.std())
    return Target(
        name, unit, role, "regression", transform, shift,
        float(t.mean()), std if std > 0 else 1.0, float(t.min()), float(t.max()),
    )  # fmt: skip


@dataclass
class TargetMap:
    targets: list[Target]

    @classmethod
    def fit(
        cls,
        spec: TwinSpec,
        frame: Any,
        *,
        heavy_tail_ratio: float = 20.0,
        declared: Mapping[str, str] | None = None,
        bases: Mapping[str, Any] | None = None,
        derived: Mapping[str, Any] | None = None,
    ) -> TargetMap:
        """Targets from the training rows; ``bases``: ``kpi_bases`` of those rows;
        ``derived``: the derived values of those rows that margins name."""
        bases = dict(bases or {})
        missing = [k for k, v in spec.kpis.items() if (v.baseline or v.start) and k not in bases]
        if missing:
            raise DataError(
                f"bases: no values for {', '.join(missing)}, which the spec learns over a "
                "baseline or start (give surrogates._features.kpi_bases of the rows)"
            )
        declared = dict(declared or {})
        unknown = sorted(set(declared) - set(spec.kpis))
        if unknown:
            raise DataError(f"kpi_kinds: {', '.join(unknown)} not a KPI of spec {spec.name}")
        events = [
            name
            for name in spec.kpis
            if declared.get(name) == "event"
            or (name not in declared and _is_event(frame[name].to_numpy(dtype=np.float64)))
        ]
        by_margins = {
            name for name, kpi in spec.kpis.items()
            if kpi.margins is not None and declared.get(name) != "event"
        }  # fmt: skip
        events += [name for name in by_margins if name not in events]
        for name in events:
            values = frame[name].to_numpy(dtype=np.float64)
            if not np.isin(values, (0.0, 1.0)).all():
                raise DataError(f"kpi_kinds.{name}: an event must be 0 or 1, values hold others")
        for name in sorted(by_margins):
            _check_margins(name, spec.kpis[name].margins or [], frame, derived or {})
        quiet = ~np.any([frame[e].to_numpy(dtype=np.float64) > 0.5 for e in events], axis=0)
        if np.ndim(quiet) == 0:
            quiet = np.ones(len(frame), dtype=bool)
        if quiet.sum() < 10:
            raise DataError(
                f"only {int(quiet.sum())} training rows without an event ({', '.join(events)}): "
                "too few to learn the other KPIs"
            )
        targets: list[Target] = []
        for name, kpi in spec.kpis.items():
            if name in by_margins:
                targets.append(Target(name, kpi.unit, kpi.role, "margin", margins=kpi.margins))
                continue
            if name in events:
                targets.append(Target(name, kpi.unit, kpi.role, "event"))
                continue
            values = _learned_values(frame, name, bases)[quiet]
            own = np.abs(frame[name].to_numpy(dtype=np.float64)[quiet]).max()
            exact = (
                EXACT_RTOL * own if kpi.baseline else 1e-12 * max(1.0, float(np.abs(values).max()))
            )
            if np.ptp(values) <= exact:
                value = float(np.median(values))
                targets.append(
                    Target(
                        name, kpi.unit, kpi.role, "constant", value=value,
                        start=kpi.start, baseline=kpi.baseline,
                        tolerance=float(np.abs(values - value).max()),
                    )
                )  # fmt: skip
                continue
            if kpi.cap is not None:
                _check_cap(name, kpi.cap, frame[name].to_numpy(dtype=np.float64))
            target = _regression(
                name, kpi.unit, kpi.role, values, heavy_tail_ratio, declared.get(name)
            )
            targets.append(replace(target, start=kpi.start, baseline=kpi.baseline, cap=kpi.cap))
        return cls(targets)

    def of_kind(self, kind: Kind) -> list[Target]:
        return [t for t in self.targets if t.kind == kind]

    @property
    def outcomes(self) -> list[Target]:
        """The events reported as probabilities, in order: learned, then by margins."""
        return self.of_kind("event") + self.of_kind("margin")

    @property
    def reported(self) -> list[Target]:
        """The KPIs reported with a mean and an interval, in spec order."""
        return [t for t in self.targets if t.kind in ("regression", "constant")]

    @property
    def learned(self) -> list[Target]:
        """The network's outputs, in order: regressions, then events."""
        return self.of_kind("regression") + self.of_kind("event")

    def ceilings(self) -> np.ndarray:
        """[kr]: each regression's cap in the nets' space, inf where it has none."""
        return np.array([t.ceiling() for t in self.of_kind("regression")], dtype=np.float64)

    def no_event(self, frame: Any) -> np.ndarray:
        """Rows where no event occurred."""
        quiet = np.ones(len(frame), dtype=bool)
        for t in self.outcomes:
            quiet &= frame[t.name].to_numpy(dtype=np.float64) < 0.5
        return quiet

    def encode(self, frame: Any, bases: Mapping[str, Any] | None = None) -> np.ndarray:
        """[N, len(learned)]: standardised regressions, 0/1 events (NaN-free)."""
        cols = []
        for t in self.learned:
            if (t.baseline or t.start) and t.name not in (bases or {}):
                raise DataError(f"bases: no values for {t.name}, learned over its base")
            y = _learned_values(frame, t.name, bases or {})
            if t.kind == "regression":
                with np.errstate(all="ignore"):
                    z = t.forward(y)
                cols.append(np.where(np.isfinite(z), z, 0.0))
            else:
                cols.append(y)
        return np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))

    def to_dict(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self.targets]

    @classmethod
    def from_dict(cls, data: list[dict[str, Any]]) -> TargetMap:
        return cls([Target(**t) for t in data])

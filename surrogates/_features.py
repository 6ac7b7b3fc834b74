"""From a dataset's input columns to the network's features, all derived from the spec.

The surrogate takes the spec's raw inputs (every input and ``quantity``, in spec
order) as one float32 row: numbers as they are, booleans as 0/1, a categorical
input as the index of its choice. Its features are built from those inside the
model (and inside the ONNX graph, so clients send raw inputs):

* numeric inputs, logged where the DOE draws them log-uniformly, else raw and, where
  positive and spanning more than 2x, logged as well;
* one indicator per choice of a categorical input (``material_is_steel_c45``);
* the spec's ``derived`` expressions (cutting speed, feed rate, cycle time...),
  logged by the same rule (those that depend on categorical choices alone, a
  constant per choice, add nothing to the indicators and are left out);

each standardised with the training split's mean and std. A derived feature that is
(nearly) a linear function of another feature (``|r| >= REDUNDANT_CORRELATION`` over
the training split: the last Newton steps of an inverse, a value equal to an input) is
left out: it adds parameters to every net's first layer and nodes to the graph, and
nothing a net could use. Later derived values are kept before earlier ones (a chain's
result before its intermediate steps). Inputs and derived
values that are constant over the training split carry no information and are
left out of the features (but stay in the input row, with their bounds). A logged
feature of a value at or below zero (a new tool's wear of exactly 0) is taken at its
training minimum instead, so it stays finite and within what training saw.

``kpi_bases`` gives what a KPI is learned over: the derived value its spec names as
``baseline``, else the state input it ``start``s from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from physics._spec_text import indicator
from physics.spec import TwinSpec


@dataclass(frozen=True)
class InputColumn:
    """One column of the surrogate's input row."""

    name: str
    kind: str  # real | integer | boolean | categorical
    unit: str | None
    low: float  # training-domain bounds (for a categorical input: indices)
    high: float
    choices: tuple[str, ...] = ()
    source: str = "order"  # order | environment | state | quantity


@dataclass(frozen=True)
class Feature:
    """One network feature: a raw input, a choice indicator or a derived value."""

    name: str
    origin: str  # input | indicator | derived
    log: bool


# A derived feature this correlated with another (over the training split) is redundant.
REDUNDANT_CORRELATION = 0.9999
# A seen extreme within this many mean sample spacings of the DOE's declared bound
# stands for the bound (see ``design_bounds``).
REACH_SPACINGS = 10.0


def design_bounds(spec: TwinSpec, key: str, low: float, high: float, n: int) -> tuple[float, float]:
    """The training domain of a numeric column: the seen range ``[low, high]`` of ``n``
    rows, widened to the DOE's declared bound at each end the rows reach.

    A space-filling or random design of n rows leaves a gap of about span / n between
    its extreme samples and the bounds it draws from (the chance that a uniform sample
    leaves a gap over k spacings is about exp(-k)); a state such as a warm spindle
    (warm-up 1, the bound) lies in the design, not outside it. An end the rows stop
    short of by more than ``REACH_SPACINGS`` spacings (a dataset drawn over a narrower
    range than the spec declares) keeps its seen value. Spacings are measured in log
    space for a log-uniform factor.
    """
    factor = spec.doe.factors.get(key) if spec.doe is not None else None
    if factor is None or factor.distribution not in ("uniform", "loguniform") or n < 2:
        return low, high
    _, dlow, dhigh = spec.factor_domain(key)
    dlow = dlow if factor.low is None else factor.low
    dhigh = dhigh if factor.high is None else factor.high
    if dlow is None or dhigh is None or not dlow <= low <= high <= dhigh:
        return low, high
    log = factor.distribution == "loguniform" and dlow > 0

    def at(v: float) -> float:
        return float(np.log(v)) if log else v

    reach = REACH_SPACINGS * (at(dhigh) - at(dlow)) / n
    new_low = float(dlow) if at(low) - at(dlow) <= reach else low
    new_high = float(dhigh) if at(dhigh) - at(high) <= reach else high
    return new_low, new_high


def input_columns(spec: TwinSpec, frame: Any) -> list[InputColumn]:
    """The input row of ``spec`` with the training domain of ``frame`` (the training
    rows): the choices seen, and numeric ranges by ``design_bounds``."""
    columns: list[InputColumn] = []
    n = len(frame)
    for key, inp in spec.inputs.items():
        if inp.kind == "categorical":
            choices = tuple(inp.choice_names)
            seen = [choices.index(v) for v in frame[key].unique()]
            columns.append(
                InputColumn(key, "categorical", None, min(seen), max(seen), choices, inp.source)
            )
            continue
        values = frame[key].to_numpy(dtype=np.float64)
        low, high = design_bounds(spec, key, float(values.min()), float(values.max()), n)
        columns.append(InputColumn(key, inp.kind, inp.unit, low, high, (), inp.source))
    q = frame["quantity"].to_numpy(dtype=np.float64)
    low, high = design_bounds(spec, "quantity", float(q.min()), float(q.max()), n)
    columns.append(
        InputColumn(
            "quantity",
            "integer" if spec.require_quantity().integer else "real",
            spec.require_quantity().unit,
            low,
            high,
            (),
            "quantity",
        )
    )
    return columns


# A numeric input is near the domain's edge within this share of its range of a bound
# (the verification's interior slice keeps every factor a tenth away from them).
EDGE_TENTH = 0.1


@dataclass
class EdgeColumns:
    """Where each numeric input's bounds lie, for the share of a row's inputs near them:
    the raw columns (index), their training range, logged where drawn log-uniformly
    (a uniform draw puts a fifth of its inputs within EDGE_TENTH of a bound, the
    corner-heavy one of physics.doe about two fifths)."""

    index: np.ndarray  # [E] int
    low: np.ndarray  # [E] (log of the bound where logged)
    high: np.ndarray
    logged: np.ndarray  # [E] bool

    @classmethod
    def of(cls, spec: TwinSpec, columns: list[InputColumn]) -> EdgeColumns:
        logu = {k for k, f in (spec.doe.factors.items() if spec.doe else [])
                if f.distribution == "loguniform"}  # fmt: skip
        # a boolean is always at a bound: only the numeric inputs count
        rows = [(j, c.name in logu and c.low > 0, c.low, c.high) for j, c in enumerate(columns)
                if not c.choices and c.kind != "boolean" and c.high > c.low]  # fmt: skip
        logged = np.array([r[1] for r in rows], dtype=bool)
        low = np.array([r[2] for r in rows], dtype=np.float64)
        high = np.array([r[3] for r in rows], dtype=np.float64)
        return cls(np.array([r[0] for r in rows], dtype=np.int64),
                   np.where(logged, np.log(np.where(logged, low, 1.0)), low),
                   np.where(logged, np.log(np.where(logged, high, 1.0)), high), logged)  # fmt: skip

    def share(self, raw: np.ndarray) -> np.ndarray:
        """[N] the share of each row's numeric inputs within EDGE_TENTH of a bound."""
        if not len(self.index):
            return np.zeros(raw.shape[0])
        v = raw[:, self.index]
        with np.errstate(all="ignore"):
            v = np.where(self.logged, np.log(np.where(self.logged, v, 1.0)), v)
        u = (v - self.low) / (self.high - self.low)
        return ((u < EDGE_TENTH) | (u > 1.0 - EDGE_TENTH)).mean(axis=1)


def calibration_group(
    spec: TwinSpec,
    columns: list[InputColumn],
    groups: str | None,
    edge_share: float | None,
    raw: np.ndarray,
) -> np.ndarray | None:
    """Each raw row's calibration group: the choice index of input ``groups``, times two
    plus its edge band (1 where at least ``edge_share`` of its numeric inputs are near a
    bound) where there are bands; None without either."""
    choice = None if groups is None else raw[:, [c.name for c in columns].index(groups)]
    if edge_share is None:
        return choice
    band = (EdgeColumns.of(spec, columns).share(raw) >= edge_share).astype(np.float64)
    return band if choice is None else 2.0 * choice + band


def raw_matrix(columns: list[InputColumn], frame: Any) -> np.ndarray:
    """The input rows of ``frame`` as float64 [N, len(columns)]; choices as indices."""
    out = np.empty((len(frame), len(columns)))
    for j, col in enumerate(columns):
        values = frame[col.name]
        if col.choices:
            lookup = {c: i for i, c in enumerate(col.choices)}
            out[:, j] = [lookup[v] for v in values]
        else:
            out[:, j] = values.to_numpy(dtype=np.float64)
    return out


def namespace(spec: TwinSpec, columns: list[InputColumn], raw: np.ndarray) -> dict[str, Any]:
    """Every name the spec's expressions see, from raw input rows (float64 arrays)."""
    names: dict[str, Any] = {}
    for j, col in enumerate(columns):
        if col.choices:
            for i, choice in enumerate(col.choices):
                names[indicator(col.name, choice)] = (raw[:, j] == i).astype(np.float64)
        else:
            names[col.name] = raw[:, j]
    with np.errstate(all="ignore"):
        for key, expr in spec.derived_exprs.items():
            names[key] = np.broadcast_to(
                np.asarray(expr.evaluate(names), dtype=np.float64), (raw.shape[0],)
            )
    return names


def _choice_only(spec: TwinSpec, key: str) -> bool:
    """Whether derived ``key`` depends on categorical choices alone (a constant per choice)."""
    exprs = spec.derived_exprs
    categorical = {k for k, inp in spec.inputs.items() if inp.kind == "categorical"}

    def base(name: str) -> bool:
        if name in exprs:
            return all(base(n) for n in exprs[name].names)
        return any(name.startswith(f"{c}_is_") for c in categorical)

    return base(key)


def _numeric(name: str, origin: str, values: np.ndarray, loguniform: bool) -> list[Feature]:
    """A value drawn log-uniformly enters logged; any other positive value that spans
    more than 2x enters both raw and logged (power laws become linear)."""
    if loguniform and values.min() > 0:
        return [Feature(name, origin, True)]
    if values.min() > 0 and values.max() / values.min() > 2.0:
        return [Feature(name, origin, False), Feature(name, origin, True)]
    return [Feature(name, origin, False)]


def _independent(features: list[Feature], values: np.ndarray) -> np.ndarray:
    """Which features to keep: every input and indicator; a derived one unless its
    correlation with a kept feature reaches REDUNDANT_CORRELATION (derived values
    taken latest first)."""
    keep = np.array([f.origin != "derived" for f in features])
    if values.shape[0] < 3:
        return np.ones(len(features), dtype=bool)
    centred = values - values.mean(axis=0)
    norm = np.linalg.norm(centred, axis=0)
    unit = np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)
    for j in reversed([j for j, f in enumerate(features) if f.origin == "derived"]):
        kept = np.flatnonzero(keep)
        if kept.size == 0 or np.max(np.abs(unit[:, kept].T @ unit[:, j])) < REDUNDANT_CORRELATION:
            keep[j] = True
    return keep


def kpi_bases(spec: TwinSpec, columns: list[InputColumn], raw: np.ndarray) -> dict[str, Any]:
    """KPI -> the values [N] it is learned over (its ``baseline``, else its ``start``)."""
    out: dict[str, Any] = {}
    names: dict[str, Any] | None = None
    for key, kpi in spec.kpis.items():
        if kpi.baseline:
            names = names if names is not None else namespace(spec, columns, raw)
            out[key] = np.asarray(names[kpi.baseline], dtype=np.float64)
        elif kpi.start:
            out[key] = raw[:, [c.name for c in columns].index(kpi.start)]
    return out


def margin_namespace(spec: TwinSpec, columns: list[InputColumn], raw: np.ndarray) -> dict[str, Any]:
    """The derived values [N] that the spec's margin events name."""
    names = {
        m for kpi in spec.kpis.values() for m in (kpi.margins or []) if m in spec.derived
    }
    if not names:
        return {}
    space = namespace(spec, columns, raw)
    return {n: np.asarray(space[n], dtype=np.float64) for n in names}


@dataclass
class FeatureMap:
    """Raw input rows -> standardised features; fitted on the training split only."""

    columns: list[InputColumn]
    features: list[Feature]
    mean: np.ndarray
    std: np.ndarray
    # Per logged feature, the smallest value seen in training (0 when not logged): a
    # value at or below zero is logged as this one.
    low: np.ndarray | None = None

    @classmethod
    def fit(cls, spec: TwinSpec, frame: Any, *, derived: bool = True) -> FeatureMap:
        columns = input_columns(spec, frame)
        raw = raw_matrix(columns, frame)
        names = namespace(spec, columns, raw)
        loguniform = {
            key
            for key, factor in (spec.doe.factors.items() if spec.doe else [])
            if factor.distribution == "loguniform"
        }
        features: list[Feature] = []
        for j, col in enumerate(columns):
            if col.choices:
                for choice in col.choices:
                    name = indicator(col.name, choice)
                    if np.ptp(names[name]) > 0:
                        features.append(Feature(name, "indicator", False))
            elif np.ptp(raw[:, j]) > 0:
                features += _numeric(col.name, "input", raw[:, j], col.name in loguniform)
        if derived:
            for key in spec.derived_exprs:
                if _choice_only(spec, key):  # a function of the indicators: nothing new
                    continue
                values = names[key]
                if np.all(np.isfinite(values)) and np.ptp(values) > 1e-12 * np.abs(values).max():
                    features += _numeric(key, "derived", values, False)
        fmap = cls(columns, features, np.zeros(len(features)), np.ones(len(features)))
        plain = fmap._values(spec, raw, names)
        fmap.low = np.array([plain[:, j].min() if f.log else 0.0 for j, f in enumerate(features)])
        unscaled = fmap._unscaled(spec, raw, plain)
        keep = _independent(features, unscaled)
        fmap.features = [f for f, k in zip(features, keep, strict=True) if k]
        fmap.low, unscaled = fmap.low[keep], unscaled[:, keep]
        fmap.mean = unscaled.mean(axis=0)
        std = unscaled.std(axis=0)
        fmap.std = np.where(std > 0, std, 1.0)
        return fmap

    def _values(
        self, spec: TwinSpec, raw: np.ndarray, names: dict[str, Any] | None = None
    ) -> np.ndarray:
        """[N, F] the features' values before logs and scaling (``names``: the namespace
        of ``raw`` when already computed)."""
        names = namespace(spec, self.columns, raw) if names is None else names
        out = np.empty((raw.shape[0], len(self.features)))
        for j, f in enumerate(self.features):
            out[:, j] = names[f.name]
        return out

    def _unscaled(
        self, spec: TwinSpec, raw: np.ndarray, values: np.ndarray | None = None
    ) -> np.ndarray:
        """Features before scaling (logged where they are); ``values``: ``_values`` of
        ``raw`` when already computed."""
        out = self._values(spec, raw) if values is None else values.copy()
        logged = np.array([f.log for f in self.features], dtype=bool)
        if logged.any():
            low = self.low if self.low is not None else np.zeros(len(self.features))
            values = out[:, logged]
            with np.errstate(all="ignore"):
                out[:, logged] = np.log(np.where(values > 0, values, low[logged]))
        return out

    def transform(self, spec: TwinSpec, raw: np.ndarray) -> np.ndarray:
        """Standardised features [N, F] (float64) of raw input rows."""
        return (self._unscaled(spec, raw) - self.mean) / self.std

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [asdict(c) for c in self.columns],
            "features": [asdict(f) for f in self.features],
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "low": None if self.low is None else self.low.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureMap:
        return cls(
            [InputColumn(**{**c, "choices": tuple(c["choices"])}) for c in data["columns"]],
            [Feature(**f) for f in data["features"]],
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["std"], dtype=np.float64),
            None if data.get("low") is None else np.asarray(data["low"], dtype=np.float64),
        )

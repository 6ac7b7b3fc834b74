"""Designs of experiments over a twin spec: seeded, reproducible, constraint-aware.

``make_design`` draws candidates in the unit cube (``scipy.stats.qmc``, or numpy for
plain random), maps each coordinate to its factor by the inverse CDF of the factor's
distribution, so a space-filling design stays space-filling in the factor's own
scale, fills every other input from ``doe.fixed`` or its default, and keeps the
candidates that meet every constraint of the spec, in draw order, drawing more
until ``n`` are valid. ``grid`` is a full factorial filtered by the constraints.

Stratified designs: with ``doe.stratify: <factor>`` (a categorical or boolean factor)
a sampled design is drawn once per choice of that factor with positive weight: the
factor fixed to the choice, the other factors sampled by the method, the constraints
filtering each stratum on its own, from a seed derived from ``seed`` and the choice's
position. Each of the k strata gets n // k points (the first n % k choices one more),
whatever the factor's weights; the strata are interleaved round-robin, so every
prefix of the design is as balanced as its length allows. ``grid`` ignores
``stratify``: every choice is a level of the grid already.

Cost: scipy's ``random-cd`` optimisation of an LHS grows about quadratically with
the number of candidates (2 s at 1,000 points of 19 factors, 11 s at 4,000), so
designs of more than ``LHS_OPTIMISE_MAX`` candidates are plain LHS: still one
point per stratum of every factor, without the centred-discrepancy polish.

Exceptions::

    ValueError
    └── DoeError   an argument is out of range, or too few candidates meet the constraints
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from physics._spec_text import fmt

if TYPE_CHECKING:
    from collections.abc import Callable

    from physics.spec import FactorSpec, TwinSpec

__all__ = [
    "EMPHASES",
    "MAX_CANDIDATES_PER_POINT",
    "MAX_GRID_POINTS",
    "MAX_POINTS",
    "METHODS",
    "Design",
    "DoeError",
    "make_design",
    "warp",
]

METHODS = ("lhs", "sobol", "halton", "grid", "random")
# Where a sampled design puts its numeric factors' mass (verification designs, see
# ``warp``): the factor's own distribution, near its bounds, or away from them.
EMPHASES = ("uniform", "corners", "interior")
# The seed stream of a mixture's emphasised points (beside the strata's 0, 1, ...).
MIXTURE_STREAM = 1_000_003
# interior: the middle 80 % of each factor's unit coordinate
INTERIOR_MARGIN = 0.1
MAX_GRID_POINTS = 1_000_000
# A design is held in memory with its candidates (up to 50 per point): 1e6 points of 20
# factors already need several GB, so larger studies are split into several datasets.
MAX_POINTS = 1_000_000
MAX_CANDIDATES_PER_POINT = 50  # a box this empty needs tighter factor ranges, not more draws
# Near the corners most of a constrained box is invalid (the spindle: a thin chip at the
# lowest feed and narrowest cut; 1-2 % of corner candidates are valid in steel).
EMPHASIS_CANDIDATES_PER_POINT = 250
# A small design (or a small stratum) may always draw this many: with a few points the
# acceptance rate is estimated from a handful of draws and 50 per point is a coin toss.
MIN_CANDIDATES = 10_000
# Above this many candidates the LHS is not optimised (see the module docstring).
LHS_OPTIMISE_MAX = 1024
DEFAULT_LEVELS = 3

Columns = dict[str, Any]  # input id or "quantity" -> array (factors) or scalar (fixed)


class DoeError(ValueError):
    """A design that cannot be made; ``field`` names the argument or section at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Design:
    """The runs of a study: every input of the spec and ``quantity``, one dict per run."""

    method: str
    seed: int
    factors: tuple[str, ...]
    points: list[dict[str, Any]]
    candidates: int  # drawn and checked against the constraints, over all rounds
    rejected: int  # of those, the ones that broke a constraint

    def columns(self) -> dict[str, np.ndarray]:
        """The same values column-wise; categorical columns hold the choice names (object)."""
        if not self.points:
            return {}
        out: dict[str, np.ndarray] = {}
        for key in self.points[0]:
            values = [p[key] for p in self.points]
            out[key] = np.array(values, dtype=object if isinstance(values[0], str) else None)
        return out


def make_design(
    spec: TwinSpec,
    n: int,
    *,
    method: str = "lhs",
    seed: int = 0,
    levels: int | None = None,
    emphasis: str = "uniform",
) -> Design:
    """``n`` valid points of ``spec``'s DOE by ``method``; the same arguments give the same design.

    ``grid`` ignores ``n`` and uses ``levels`` values per continuous factor (default 3).
    ``emphasis`` (sampled designs only) moves the numeric factors' unit coordinates
    towards the bounds (``corners``) or away from them (``interior``), see ``warp``.
    """
    if method not in METHODS:
        raise DoeError(f"method: {fmt(method)} is not one of {', '.join(METHODS)}", field="method")
    mix = mixture(emphasis)
    if mix is not None and method == "grid":
        raise DoeError(
            f"emphasis: {emphasis!r} needs a sampled design; a grid has its levels",
            field="emphasis",
        )
    if mix is not None:
        return _mixed(spec, n, method, seed, *mix)
    if emphasis not in EMPHASES:
        raise DoeError(
            f"emphasis: {fmt(emphasis)} is not one of {', '.join(EMPHASES)}, or a mixture "
            "EMPHASIS:SHARE such as corners:0.3",
            field="emphasis",
        )
    if method == "grid" and emphasis != "uniform":
        raise DoeError(
            f"emphasis: {emphasis!r} needs a sampled design; a grid has its levels",
            field="emphasis",
        )
    n = _whole(n, "n", 1)
    if n > MAX_POINTS:
        raise DoeError(
            f"n: {n:,} points is more than {MAX_POINTS:,}; split the study into several "
            "datasets (different seeds)",
            field="n",
        )
    seed = _whole(seed, "seed", 0)
    if levels is not None:
        if not _is_whole(levels):
            raise DoeError(f"levels: {fmt(levels)} must be a whole number", field="levels")
        if levels < 2:
            raise DoeError(f"levels: {fmt(levels)} must be >= 2", field="levels")
        levels = int(levels)
    factors = _factors(spec)
    fixed = _fixed_values(spec)
    if method == "grid":  # a grid holds every choice already: doe.stratify is not used
        return _grid(spec, factors, fixed, seed, levels or DEFAULT_LEVELS)
    assert spec.doe is not None  # _factors refused a spec without one
    if spec.doe.stratify is not None:
        return _stratified(spec, factors, fixed, n, method, seed, spec.doe.stratify, emphasis)
    return _sampled(spec, factors, fixed, n, method, seed, emphasis)


def mixture(emphasis: str) -> tuple[str, float] | None:
    """``EMPHASIS:SHARE`` (``corners:0.3``): that share of the points drawn with that
    emphasis, the rest uniform; None for a plain emphasis. A training design that holds
    some corner-heavy points gives the model, and its calibration, neighbours where a
    space-filling design has few."""
    if not isinstance(emphasis, str) or ":" not in emphasis:
        return None
    name, _, share_text = emphasis.partition(":")
    try:
        share = float(share_text)
    except ValueError:
        share = math.nan
    if name not in EMPHASES or name == "uniform" or not 0.0 < share < 1.0:
        raise DoeError(
            f"emphasis: {fmt(emphasis)} is not a mixture EMPHASIS:SHARE with EMPHASIS one "
            f"of {', '.join(e for e in EMPHASES if e != 'uniform')} and 0 < SHARE < 1",
            field="emphasis",
        )
    return name, share


def _mixed(spec: TwinSpec, n: int, method: str, seed: int, name: str, share: float) -> Design:
    """A uniform design of n - k points and one of k = round(share n) points drawn with
    emphasis ``name`` (from a seed of its own), interleaved so that every prefix holds
    the mixture."""
    k = min(max(round(share * _whole(n, "n", 1)), 1), n - 1) if n > 1 else 0
    plain = make_design(spec, n - k, method=method, seed=seed)
    if k == 0:
        return plain
    edged = make_design(
        spec, k, method=method, seed=_stratum_seed(seed, MIXTURE_STREAM), emphasis=name
    )
    # The emphasised points at evenly spaced positions among the uniform ones.
    at = np.floor((np.arange(k) + 0.5) * n / k).astype(int)
    points: list[dict[str, Any]] = []
    rest, special = iter(plain.points), iter(edged.points)
    marks = set(at.tolist())
    for i in range(n):
        points.append(next(special) if i in marks else next(rest))
    return Design(
        method, seed, plain.factors, points, candidates=plain.candidates + edged.candidates,
        rejected=plain.rejected + edged.rejected,
    )  # fmt: skip


def warp(emphasis: str, u: np.ndarray) -> np.ndarray:
    """Unit coordinates re-drawn for ``emphasis``, still in [0, 1).

    ``corners``: u -> sin^2(pi u / 2), the arcsine distribution, whose density rises
    without bound at both ends (a tenth of the mass lies within 2.5 % of the unit range
    of each bound, against 2.5 % undistorted), so a verification design meets the edges of
    the box where a model learnt from a space-filling design has the fewest neighbours.
    ``interior``: u -> 0.1 + 0.8 u, nothing within a tenth of the range of a bound.
    """
    if emphasis == "corners":
        return np.minimum(np.sin(0.5 * np.pi * u) ** 2, np.nextafter(1.0, 0.0))
    if emphasis == "interior":
        return INTERIOR_MARGIN + (1.0 - 2.0 * INTERIOR_MARGIN) * u
    return u


# ---- factors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Factor:
    """One varied input with its resolved range (or choices) and kind."""

    key: str
    kind: str  # real | integer | boolean | categorical
    spec: FactorSpec
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str | bool, ...] = ()

    def weighted(self) -> list[tuple[int, str | bool, float]]:
        """Position, choice and weight of every choice with a positive weight."""
        weights = self.spec.weights or [1.0] * len(self.choices)
        return [
            (i, c, w) for i, (c, w) in enumerate(zip(self.choices, weights, strict=True)) if w > 0
        ]

    def sample(self, u: np.ndarray) -> np.ndarray:
        """Values for unit coordinates ``u`` in [0, 1), by inverse CDF."""
        if self.kind in ("boolean", "categorical"):
            # Zero-weight choices are dropped so no rounding error can ever pick one.
            kept = [(c, w) for _, c, w in self.weighted()]
            edges = np.cumsum([w for _, w in kept]) / sum(w for _, w in kept)
            index = np.minimum(np.searchsorted(edges, u, side="right"), len(kept) - 1)
            return self._typed([c for c, _ in kept])[index]
        if self.kind == "integer":
            # Every integer owns a unit-wide cell of [low - 0.5, high + 0.5), so each is
            # equally likely under a uniform factor.
            x = self._continuous(u, self.low - 0.5, self.high + 0.5)
            return np.clip(np.floor(x + 0.5), self.low, self.high).astype(np.int64)
        return np.clip(self._continuous(u, self.low, self.high), self.low, self.high)

    def _continuous(self, u: np.ndarray, a: float, b: float) -> np.ndarray:
        f = self.spec
        if f.distribution == "loguniform":
            return np.exp(math.log(a) + u * (math.log(b) - math.log(a)))
        if f.distribution == "normal":
            from scipy.stats import truncnorm

            assert f.mean is not None and f.std is not None  # the spec checks require them
            lo, hi = (a - f.mean) / f.std, (b - f.mean) / f.std
            return np.asarray(truncnorm.ppf(u, lo, hi, loc=f.mean, scale=f.std))
        if f.distribution == "triangular":
            assert f.mode is not None
            c = (f.mode - a) / (b - a)
            left = a + np.sqrt(u * (b - a) * (f.mode - a))
            right = b - np.sqrt((1.0 - u) * (b - a) * (b - f.mode))
            return np.where(u < c, left, right)
        return a + u * (b - a)

    def level_count(self, count: int) -> int:
        """How many values ``levels(count)`` gives at most, without making them."""
        if self.kind in ("boolean", "categorical"):
            return len(self.choices)
        if self.kind == "integer":
            return min(count, int(self.high - self.low) + 1)
        return count

    def levels(self, count: int) -> np.ndarray:
        """Grid values: ``count`` equally spaced in the factor's scale, or every choice."""
        if self.kind in ("boolean", "categorical"):
            return self._typed(list(self.choices))
        space = np.geomspace if self.spec.distribution == "loguniform" else np.linspace
        if self.kind == "integer":
            if self.high - self.low + 1 <= count:
                return np.arange(int(self.low), int(self.high) + 1, dtype=np.int64)
            rounded = np.floor(space(self.low, self.high, count) + 0.5).astype(np.int64)
            return np.array(list(dict.fromkeys(rounded.tolist())), dtype=np.int64)
        return np.clip(space(self.low, self.high, count), self.low, self.high)

    def _typed(self, values: list[str | bool]) -> np.ndarray:
        return np.array(values, dtype=bool if self.kind == "boolean" else object)


def _factors(spec: TwinSpec) -> list[_Factor]:
    declared = spec.doe.factors if spec.doe is not None else {}
    if not declared:
        raise DoeError(
            f"doe.factors: spec {spec.name!r} varies nothing; declare at least one factor",
            field="doe.factors",
        )
    factors = []
    for key in _keys(spec):  # spec order, so the column order never shifts
        if key not in declared:
            continue
        f = declared[key]
        kind, low, high = spec.factor_domain(key)
        if kind == "boolean":
            factors.append(_Factor(key, kind, f, choices=tuple(f.choices or (True, False))))
        elif kind == "categorical":
            names = spec.inputs[key].choice_names
            factors.append(_Factor(key, kind, f, choices=tuple(f.choices or names)))
        else:
            assert low is not None and high is not None  # numeric inputs have both
            low = low if f.low is None else f.low
            high = high if f.high is None else f.high
            factors.append(_Factor(key, kind, f, float(low), float(high)))
    return factors


def _fixed_values(spec: TwinSpec) -> dict[str, Any]:
    """Plain values of every input (and quantity) that is not a factor."""
    doe = spec.doe
    assert doe is not None  # _factors refused a spec without one
    out: dict[str, Any] = {}
    for key, inp in spec.inputs.items():
        if key in doe.fixed:
            out[key] = inp.coerce(doe.fixed[key])
        elif key not in doe.factors:
            out[key] = inp.coerce(inp.default)  # the spec checks make sure there is one
    if "quantity" in doe.fixed and spec.quantity is not None:
        out["quantity"] = spec.quantity.coerce(doe.fixed["quantity"])
    return out


# ---- sampled designs ---------------------------------------------------------------------


def _sampled(
    spec: TwinSpec,
    factors: list[_Factor],
    fixed: dict[str, Any],
    n: int,
    method: str,
    seed: int,
    emphasis: str = "uniform",
) -> Design:
    columns, drawn, valid = _draw_valid(spec, factors, fixed, n, method, seed, emphasis=emphasis)
    points = _points(spec, fixed, columns, n)
    keys = tuple(f.key for f in factors)
    return Design(method, seed, keys, points, candidates=drawn, rejected=drawn - valid)


def _draw_valid(
    spec: TwinSpec,
    factors: list[_Factor],
    fixed: dict[str, Any],
    n: int,
    method: str,
    seed: int,
    where: str = "",
    emphasis: str = "uniform",
) -> tuple[Columns, int, int]:
    """The first ``n`` valid candidates column-wise, and how many were drawn and valid.

    ``where`` starts the error text (a stratum's name).
    """
    per_point = MAX_CANDIDATES_PER_POINT if emphasis == "uniform" else EMPHASIS_CANDIDATES_PER_POINT
    cap = max(per_point * n, MIN_CANDIDATES)
    draw = _unit_source(method, len(factors), seed)
    kept: list[Columns] = []
    drawn = valid = 0
    broken: Counter[str] = Counter()
    size, round_ = n, 0
    if method == "lhs":
        # Only the last LHS round is kept, and optimising one costs seconds: size the
        # first round from the valid share of a quick random probe of the box, so a
        # box that the constraints mostly reject does not optimise a round for nothing.
        size = min(max(n, _lhs_first_round(spec, factors, fixed, n, seed)), cap)
    while True:
        this_round = size
        unit = draw(size, round_)
        columns = {
            f.key: f.sample(unit[:, j] if f.kind in ("boolean", "categorical")
                            else warp(emphasis, unit[:, j]))
            for j, f in enumerate(factors)
        }
        mask = _mask(spec, {**fixed, **columns}, size)
        if method == "lhs":  # what the last (kept) round rejected
            broken = Counter()
        if not mask.all():
            broken.update(_violations(spec, {**fixed, **columns}, size))
        # A fresh LHS replaces the previous round; sequences continue where they were.
        if method == "lhs":
            kept = []
        kept.append({k: v[mask] for k, v in columns.items()})
        drawn, valid = drawn + size, valid + int(mask.sum())
        have = int(mask.sum()) if method == "lhs" else valid
        if have >= n:
            break
        need = n if method == "lhs" else n - have
        rate = max(valid, 1) / drawn
        # Aim three binomial sigmas above what is needed, so one more round nearly always
        # suffices; a fresh LHS at least doubles so the rounds stay few.
        aim = math.ceil((need + 3.0 * math.sqrt(need)) / rate)
        size = max(aim, 2 * size if method == "lhs" else need)
        if method == "sobol":  # keep the drawn total a power of two: Sobol's balance
            size = 2 ** math.ceil(math.log2(drawn + size)) - drawn
        if method == "lhs":
            # A fresh LHS replaces the last one: the cap bounds one round (what is held),
            # and a round at the cap that still fell short is the end.
            short = this_round >= cap
            size = min(size, cap)
        else:
            size = min(size, cap - drawn)
            short = size < need
        if short:
            # An LHS names its last round (a fresh design, the earlier ones were dropped).
            ok, of = (have, this_round) if method == "lhs" else (valid, drawn)
            head = f"{where}only {ok} of {of} candidates meet every constraint, {n} needed"
            raise DoeError(_rejected(head, broken, "candidates"), field="constraints")
        round_ += 1
    return {k: np.concatenate([c[k] for c in kept])[:n] for k in kept[0]}, drawn, valid


def _stratified(
    spec: TwinSpec,
    factors: list[_Factor],
    fixed: dict[str, Any],
    n: int,
    method: str,
    seed: int,
    key: str,
    emphasis: str = "uniform",
) -> Design:
    """One sampled design per choice of factor ``key``, interleaved round-robin."""
    by = next(f for f in factors if f.key == key)  # the spec checks make sure it is one
    others = [f for f in factors if f.key != key]
    strata = by.weighted()
    parts: list[Columns] = []
    drawn = valid = 0
    for rank, (position, choice, _) in enumerate(strata):
        count = n // len(strata) + (rank < n % len(strata))
        if count == 0:
            break  # n < k: the later choices get nothing
        name = choice if isinstance(choice, str) else fmt(choice)
        columns, d, v = _draw_valid(
            spec,
            others,
            {**fixed, key: choice},
            count,
            method,
            _stratum_seed(seed, position),
            where=f"{key}={name}: ",
            emphasis=emphasis,
        )
        parts.append({**columns, key: by._typed([choice] * count)})
        drawn, valid = drawn + d, valid + v
    points = _points(spec, fixed, _interleave(parts), n)
    keys = tuple(f.key for f in factors)
    return Design(method, seed, keys, points, candidates=drawn, rejected=drawn - valid)


def _stratum_seed(seed: int, position: int) -> int:
    """A seed per stratum, fixed by the design's seed and the choice's position."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def _interleave(parts: list[Columns]) -> Columns:
    """Row j of every part before row j + 1 of any, parts in their order.

    The parts' lengths never grow along the list, so every prefix is balanced.
    """
    row = np.concatenate([np.arange(len(next(iter(c.values())))) for c in parts])
    part = np.concatenate([np.full(len(next(iter(c.values()))), i) for i, c in enumerate(parts)])
    order = np.lexsort((part, row))  # by row, then by part
    return {k: np.concatenate([c[k] for c in parts])[order] for k in parts[0]}


PROBE_SIZE = 1000


def _lhs_first_round(
    spec: TwinSpec, factors: list[_Factor], fixed: dict[str, Any], n: int, seed: int
) -> int:
    """Candidates to draw so that ``n`` are likely valid, from a random probe's share."""
    unit = np.random.default_rng([seed, 0x5EED]).random((PROBE_SIZE, len(factors)))
    columns = {f.key: f.sample(unit[:, j]) for j, f in enumerate(factors)}
    valid = int(_mask(spec, {**fixed, **columns}, PROBE_SIZE).sum())
    if valid == PROBE_SIZE:  # likely all valid: try an exact Latin hypercube of n first
        return n
    return math.ceil((n + 3.0 * math.sqrt(n)) / (max(valid, 1) / PROBE_SIZE))


def _unit_source(method: str, d: int, seed: int) -> Callable[[int, int], np.ndarray]:
    """``draw(size, round) -> (size, d)`` unit samples; later calls continue the sequence."""
    if d == 0:  # nothing left to vary (a stratified design over its only factor)
        return lambda size, _round: np.empty((size, 0))
    if method == "random":
        rng = np.random.default_rng(seed)
        return lambda size, _round: rng.random((size, d))
    from scipy.stats import qmc

    if method == "lhs":
        # Each round is a new, larger LHS: stratification only holds per design.
        return lambda size, round_: _engine(
            qmc.LatinHypercube,
            d,
            seed + round_,
            optimization="random-cd" if size <= LHS_OPTIMISE_MAX else None,
        ).random(size)
    engine = _engine(qmc.Sobol if method == "sobol" else qmc.Halton, d, seed, scramble=True)

    def draw(size: int, _round: int) -> np.ndarray:
        if method == "sobol" and engine.num_generated == 0 and size & (size - 1) == 0:
            return np.asarray(engine.random_base2(size.bit_length() - 1))
        with warnings.catch_warnings():
            # n was asked for as it is; the first n Sobol points are still well spread.
            warnings.filterwarnings("ignore", message=".*balance properties.*")
            return np.asarray(engine.random(size))

    return draw


def _engine(cls: Any, d: int, seed: int, **options: Any) -> Any:
    try:
        return cls(d, rng=seed, **options)
    except TypeError:  # scipy < 1.15 names the argument seed
        return cls(d, seed=seed, **options)


# ---- grid --------------------------------------------------------------------------------


def _grid(
    spec: TwinSpec, factors: list[_Factor], fixed: dict[str, Any], seed: int, levels: int
) -> Design:
    # Sized before any value is made: a huge --levels is refused, not allocated.
    count = math.prod(f.level_count(levels) for f in factors)  # Python ints: no overflow
    if count > MAX_GRID_POINTS:
        raise DoeError(
            f"levels: {levels} levels over {len(factors)} factors make "
            f"{f'{count:,}' if count < 10**12 else f'about {float(count):.3g}'} grid points, "
            f"more than {MAX_GRID_POINTS:,}; use fewer levels or another method",
            field="levels",
        )
    values = [f.levels(levels) for f in factors]
    shape = tuple(len(v) for v in values)
    count = math.prod(shape)
    index = np.unravel_index(np.arange(count), shape)  # last factor varies fastest
    columns = {f.key: v[i] for f, v, i in zip(factors, values, index, strict=True)}
    mask = _mask(spec, {**fixed, **columns}, count)
    if not mask.any():
        broken = Counter(_violations(spec, {**fixed, **columns}, count))
        head = f"none of the {count:,} grid points meets every constraint"
        raise DoeError(_rejected(head, broken, "grid points"), field="constraints")
    kept = int(mask.sum())
    points = _points(spec, fixed, {k: v[mask] for k, v in columns.items()}, kept)
    keys = tuple(f.key for f in factors)
    return Design("grid", seed, keys, points, candidates=count, rejected=count - kept)


# ---- shared ------------------------------------------------------------------------------


def _split(values: Columns) -> tuple[Columns, Any]:
    inputs = {k: v for k, v in values.items() if k != "quantity"}
    return inputs, values.get("quantity")


def _mask(spec: TwinSpec, values: Columns, size: int) -> np.ndarray:
    inputs, quantity = _split(values)
    # Constraints over fixed values only come back as one bool: spread it over the rows.
    return np.broadcast_to(np.asarray(spec.constraints_mask(inputs, quantity), bool), (size,))


def _violations(spec: TwinSpec, values: Columns, size: int) -> dict[str, int]:
    """How many rows break each constraint, by its message (only for the error text)."""
    names = spec.namespace(*_split(values))
    counts = {}
    for constraint, expr in zip(spec.constraints, spec.constraint_exprs, strict=True):
        ok = np.broadcast_to(np.asarray(expr.evaluate(names)) != 0.0, (size,))
        counts[constraint.message] = int(size - ok.sum())
    return counts


def _rejected(head: str, broken: Counter[str], what: str) -> str:
    text = f"constraints: {head}"
    if broken:
        message, count = broken.most_common(1)[0]
        text += f"; most rejected by {message!r} ({count} {what})"
    return text + "; widen the factor ranges or relax the constraints"


def _points(
    spec: TwinSpec, fixed: dict[str, Any], columns: Columns, size: int
) -> list[dict[str, Any]]:
    """One dict per row in spec order; ``tolist`` turns numpy scalars into plain ones."""
    lists = {k: v.tolist() for k, v in columns.items()}
    order = _keys(spec)
    return [{k: lists[k][i] if k in lists else fixed[k] for k in order} for i in range(size)]


def _keys(spec: TwinSpec) -> list[str]:
    """What a design sets, in spec order: every input, and the quantity if there is one."""
    return [*spec.inputs, *(["quantity"] if spec.quantity is not None else [])]


def _is_whole(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(value)
        and float(value).is_integer()
    )


def _whole(value: Any, name: str, least: int) -> int:
    if not _is_whole(value) or value < least:
        raise DoeError(f"{name}: {fmt(value)} must be a whole number >= {least}", field=name)
    return int(value)

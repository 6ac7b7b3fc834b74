"""The twin spec: one declarative file per asset type that every stage derives from.

A spec names the FMU, the inputs a run can set (work-order parameters, environment,
asset state) with their units and ranges, how a work order becomes a stop time,
the DOE, the KPIs (reductions of output trajectories), which KPIs are quality
characteristics or maintenance quantities, the process limits (``feasibility``) a
run must keep, and the acceptance thresholds of a surrogate. ``load_spec`` checks
the structure; ``TwinSpec.check_against`` checks it against an FMU's variable
catalogue.

Expressions (``stop_time``, ``derived``, ``constraints``) see these names:

* every numeric input by its id; boolean inputs as 1.0 / 0.0;
* for a categorical input ``material`` with choice ``steel_c45``, the indicator
  ``material_is_steel_c45`` (1.0 when chosen, else 0.0). The bare id of a
  categorical input is not a number and is refused, so a window per material is
  written ``150 * material_is_aluminium_6061 + 100 * material_is_steel_c45 + ...``;
* ``quantity``, the planned quantity of the work order;
* every ``derived`` name (derived values may use each other, without cycles);
* the model's constants, read from the FMU when the spec loads (see
  ``physics._spec_constants``): ``model.rated_power`` is the start value of the FMU
  parameter ``rated_power``, ``model.kc11[material]`` the parameter ``kc11_<choice>``
  of the order's material. Each one read names its unit under ``model_constants``.

Exceptions::

    ValueError
    ├── SpecError         the spec itself is wrong (every problem, one per line)
    └── ExpressionError   (physics.expr) an expression is not allowed
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from physics import _spec_checks as checks
from physics import _spec_text as text
from physics.blocks import MAX_POINTS, BlockExpr
from physics.expr import Expr
from physics.kpi import Reduction
from physics.units import parse_unit
from physics.variables import Catalogue

if TYPE_CHECKING:
    from physics.workorder import ResolvedOrder, SimulationCase

__all__ = [
    "DEFAULT_STOP",
    "AcceptanceSpec",
    "ConstraintSpec",
    "DoeSpec",
    "FactorSpec",
    "FeasibilitySpec",
    "FmuSpec",
    "InputSpec",
    "KpiSpec",
    "MaintenanceSpec",
    "QualitySpec",
    "QuantitySpec",
    "SpecError",
    "TwinSpec",
    "load_spec",
]

# The expression name of the FMU's default experiment stop time (the default stop_time).
DEFAULT_STOP = "default_stop_time"

Role = Literal["quality", "maintenance", "process"]
Source = Literal["order", "environment", "state", "machine"]
Distribution = Literal["uniform", "loguniform", "normal", "triangular"]
InputKind = Literal["real", "integer", "boolean", "categorical"]
Emphasis = Literal["uniform", "corners", "interior"]  # physics.doe.EMPHASES


class SpecError(ValueError):
    """A twin spec that cannot be used; ``problems`` are ``<field.path>: <problem>`` lines."""

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"invalid twin spec {source}" if source else "invalid twin spec"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class _Section(BaseModel):
    """Base of every spec section: immutable; unknown keys are refused (typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _parses(unit: Any) -> Any:
    """A unit field: text the program's unit registry (physics.units) reads. Empty text
    is left to the structure checks, which call it missing."""
    if isinstance(unit, str) and unit.strip():
        parse_unit(unit)  # UnitError is a ValueError: "<path>.unit: 'x' is not a unit; ..."
    return unit


def alias_key(name: str) -> str:
    """How a choice name or alias is matched: case-insensitive, without spaces, hyphens
    or underscores ("AISI-1045", "aisi 1045" and "AISI1045" are one name; dots stay, so
    1.0503 is not 10503)."""
    return re.sub(r"[\s\-_]+", "", name).casefold()


class FmuSpec(_Section):
    """Which FMU: one of ours (``physics/models/<model>``) or a file next to the spec."""

    model: str | None = None
    path: str | None = None
    step_size: float
    output_interval: float | None = None
    # Where runs start [s]; None: the FMU's default experiment's start time (else 0).
    # ``stop_time`` is absolute, as in FMI: a run covers [start_time, stop_time].
    start_time: float | None = None
    # Which FMI interface runs: None takes co-simulation when the FMU has it (its
    # exporter's solver), else model exchange (integrated here by CVode).
    interface: Literal["co_simulation", "model_exchange"] | None = None
    # Model exchange: CVode's relative tolerance (physics.fmu DEFAULT_TOLERANCE if None).
    tolerance: float | None = None

    @property
    def sampling_interval(self) -> float:
        """Interval of the recorded trajectories [s]."""
        return self.output_interval if self.output_interval is not None else self.step_size


class InputSpec(_Section):
    """Something a run can set; ``variable`` is the FMU variable it sets."""

    variable: str
    source: Source
    description: str = ""
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    default: Any = None
    integer: StrictBool = False
    boolean: StrictBool = False
    # A list of names (Enumeration variables) or a mapping name -> value (Integer ones).
    choices: list[str] | dict[str, int] | None = None
    # Other names of each choice, as an MES sends them (material master numbers, DIN/EN,
    # AISI, UNS designations); matched like the choice names, by ``alias_key``.
    aliases: dict[str, list[str]] | None = None
    # The consumed material of a job order's material_requirements sets this input (at
    # most one input per spec; categorical, from the order).
    from_material_requirements: StrictBool = False

    _names: dict[str, str] = PrivateAttr(default_factory=dict)  # alias_key -> choice

    check_unit = field_validator("unit")(_parses)

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_shape(cls, value: Any) -> Any:
        # Checked here so a wrong shape gets one message, not one per union member.
        return text.check_choices_shape(value)

    @model_validator(mode="after")
    def _index_names(self) -> InputSpec:
        problems: list[str] = []
        if self.aliases is not None and self.choices is None:
            problems.append("aliases: only for categorical inputs (give choices)")
        names: dict[str, str] = {}
        for choice in self.choice_names:
            names.setdefault(alias_key(choice), choice)
        for choice, others in (self.aliases or {}).items():
            if choice not in self.choice_names:
                hint = text.suggest(choice, self.choice_names)
                problems.append(f"aliases.{choice}: not a choice{hint}; choices: "
                                + ", ".join(self.choice_names))
                continue
            for alias in others:
                key = alias_key(alias)
                owner = names.setdefault(key, choice)
                if not key:
                    problems.append(f"aliases.{choice}: {alias!r} is empty once spaces and "
                                    "hyphens are dropped")
                elif owner != choice:
                    problems.append(f"aliases.{choice}: {alias!r} already names {owner!r}")
        if problems:
            raise text.Problems(problems)
        self._names = names
        return self

    @property
    def kind(self) -> InputKind:
        if self.boolean:
            return "boolean"
        if self.choices is not None:
            return "categorical"
        return "integer" if self.integer else "real"

    @property
    def choice_names(self) -> list[str]:
        return list(self.choices or [])

    def domain(self) -> str:
        """What values are allowed, for messages: 'allowed range [1000, 24000] rpm'."""
        return text.domain_text(self)

    def accepted_names(self) -> list[str]:
        """Every name of every choice, for messages: 'steel_c45 (C45, 1.0503, ...)'."""
        return [
            f"{c} ({', '.join(self.aliases[c])})" if self.aliases and self.aliases.get(c) else c
            for c in self.choice_names
        ]

    def coerce(self, raw: Any) -> bool | int | float | str:
        """Check one value (text from a CLI allowed); ValueError names value and range.
        A categorical input takes any of its aliases and answers the canonical choice."""
        if self.kind == "categorical" and isinstance(raw, str):
            if raw in self._names.values():
                return raw
            choice = self._names.get(alias_key(raw))
            if choice is None:
                names = ", ".join(self.accepted_names())
                raise ValueError(f"{text.fmt(raw)} is not one of {names}")
            return choice
        return text.coerce_input(self, raw)


class QuantitySpec(_Section):
    """The planned quantity of a work order."""

    unit: str
    min: float
    max: float
    integer: StrictBool = False
    description: str = ""
    # The FMU variable the quantity sets, for a model that takes it (a surrogate FMU, a
    # batch process); None: the quantity only reaches the run through the expressions
    # (the spindle's stop time).
    variable: str | None = None

    check_unit = field_validator("unit")(_parses)

    def coerce(self, raw: Any) -> int | float:
        return text.coerce_number(
            raw, integer=self.integer, low=self.min, high=self.max, unit=self.unit
        )


class ConstraintSpec(_Section):
    """A condition every work order and DOE point must meet."""

    expr: str
    message: str


class CrossingSpec(_Section):
    """A grid block's reduction: ``value`` where ``phase`` passes a whole number."""

    value: str
    phase: str


class BlockSpec(_Section):
    """A derived value in steps, or over a grid (physics.blocks): ``steps`` then either
    ``value``, or ``over``, ``points``, ``at_each`` and a reduction, ``min_at_crossings``
    or ``sum_of``."""

    steps: dict[str, str] = {}
    value: str | None = None
    over: str | None = None
    points: int | None = Field(default=None, ge=3, le=MAX_POINTS)
    at_each: dict[str, str] = {}
    min_at_crossings: list[CrossingSpec] = []
    sum_of: str | None = None  # a grid value summed over every point (a quadrature)
    # A second, listed parameter of a grid: {name: [values]}; the grid runs over every
    # value and every point, and crossings are taken along the points of each value.
    across: dict[str, list[float]] = {}

    @model_validator(mode="after")
    def _one_form(self) -> BlockSpec:
        reduced = bool(self.min_at_crossings) or self.sum_of is not None
        grid = [self.over is not None, self.points is not None, bool(self.at_each), reduced]
        if self.value is not None and any(grid):
            raise ValueError("a block has either a value or a grid (over, points, at_each, "
                             "min_at_crossings or sum_of), not both")  # fmt: skip
        if self.value is not None and self.across:
            raise ValueError("across is a second parameter of a grid; a block with a value "
                             "has none")  # fmt: skip
        if self.min_at_crossings and self.sum_of is not None:
            raise ValueError("a grid is reduced by min_at_crossings or by sum_of, not both")
        if self.value is None and not all(grid):
            missing = [k for k, has in zip(("over", "points", "at_each",
                                            "min_at_crossings or sum_of"),
                                           grid, strict=True) if not has]  # fmt: skip
            raise ValueError("a block needs a value, or a grid: missing " + ", ".join(missing))
        return self


def _derived_kind(value: Any) -> str:
    return "block" if isinstance(value, Mapping | BlockSpec) else "text"


# A derived value: an expression, or a block (a mapping); each refused in its own terms.
Derived = Annotated[
    Annotated[str, Tag("text")] | Annotated[BlockSpec, Tag("block")],
    Discriminator(_derived_kind),
]


class FactorSpec(_Section):
    """How the DOE varies one input; it may narrow the input's range, never widen it."""

    low: float | None = None
    high: float | None = None
    distribution: Distribution = "uniform"
    mean: float | None = None  # normal: clipped to [low, high]
    std: float | None = None
    mode: float | None = None  # triangular
    choices: list[str | bool] | None = None  # categorical or boolean: a subset
    weights: list[float] | None = None

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_shape(cls, value: Any) -> Any:
        return text.check_factor_choices_shape(value)


class DoeSpec(_Section):
    """What the DOE varies and fixes; ``stratify`` names a categorical or boolean factor
    whose choices each get an equal share of a sampled design (see ``physics.doe``)."""

    factors: dict[str, FactorSpec] = {}
    fixed: dict[str, Any] = {}
    stratify: str | None = None


class KpiSpec(_Section):
    """A scalar of one run: a reduction of one output trajectory."""

    variable: str
    reduction: Reduction
    unit: str
    role: Role
    limit: float | None = None  # time_above only
    # The state input this KPI's value starts the order from (tool wear at the end
    # starts from the wear at the start): surrogates learn and are gated on the
    # increment, not on the start value passed through.
    start: str | None = None
    # A derived value that states what the physics makes of this KPI in closed form
    # (tool life from the Taylor law): surrogates learn only the difference, in the
    # KPI's unit, and add the value back.
    baseline: str | None = None
    # An event (a 0/1 KPI) that occurs when any of these margins reaches 1: derived
    # values (exact) or other KPIs (learned, with their intervals). Surrogates derive
    # its probability from them instead of learning a classifier of the flag, which
    # is only as sharp as the runs near its boundary (surrogates._targets).
    margins: list[str] | None = None
    # The most this KPI's output can be: the FMU stops searching there (the chatter
    # limit is searched up to 3 ap). A run at the cap only says the value is at least
    # the cap, so surrogates learn it as censored there and never predict above it.
    cap: float | None = None
    description: str = ""

    check_unit = field_validator("unit")(_parses)


class QualitySpec(_Section):
    """A quality characteristic: matches an MES quality_specs entry."""

    characteristic_id: str
    unit: str
    lsl: float | None = None
    target: float | None = None
    usl: float | None = None
    critical: StrictBool = False
    # Which finished surfaces the characteristic is on (choices of the operations
    # section's surface input); None: every surface.
    surfaces: list[str] | None = None
    # A dimensional deviation: under an operation judged on its stock allowance (a
    # roughing pass) its limits are the allowance, not the finished part's tolerance.
    stock: StrictBool = False

    check_unit = field_validator("unit")(_parses)


class OperationTypeSpec(_Section):
    """How an operation type's quality is judged: against the spec's tolerances (a
    finishing pass makes the finished surface), or against the stock allowance it leaves
    for the next pass (roughing, semi-finishing)."""

    judge: Literal["tolerance", "stock_allowance"]
    description: str = ""


class OperationsSpec(_Section):
    """The operation an order is (its ``operation`` in the MES contract) and the surface
    it finishes decide which quality characteristics are checked, and against what."""

    surface_input: str | None = None
    default: str
    stock_unit: str = "mm"
    types: dict[str, OperationTypeSpec]

    check_unit = field_validator("stock_unit")(_parses)


class MaintenanceSpec(_Section):
    """A maintenance quantity with the limit that triggers ``action``."""

    limit: float
    unit: str
    action: str
    description: str = ""

    check_unit = field_validator("unit")(_parses)


class FeasibilitySpec(_Section):
    """A process limit on a KPI of any role: a run outside [min, max] is not feasible."""

    unit: str
    min: float | None = None
    max: float | None = None
    description: str = ""

    check_unit = field_validator("unit")(_parses)


class AcceptanceSpec(_Section):
    """What a surrogate must reach on fresh FMU runs, per KPI.

    ``max_rel_error`` is the largest absolute error divided by the range
    (max - min) of the true values; ``min_coverage`` the share of true values
    inside the predicted intervals. ``scope: feasible`` judges the KPI only on the runs
    whose true values keep every feasibility limit of the spec: an order outside them
    is refused on its margin whatever this KPI says (the margin's own accuracy has its
    thresholds), so a quality KPI is judged where its prediction decides a release.
    """

    max_rmse: float | None = None
    max_mae: float | None = None
    max_rel_error: float | None = None
    min_r2: float | None = None
    min_coverage: float | None = None
    scope: Literal["all", "feasible"] = "all"


class SliceSpec(_Section):
    """One verification design: the DOE's factors, some narrowed to a band (``factors``,
    merged over the DOE's own), drawn with an ``emphasis`` (``physics.doe.warp``)."""

    description: str = ""
    design: Emphasis = "uniform"
    factors: dict[str, FactorSpec] = {}


def _uniform_slice() -> dict[str, SliceSpec]:
    return {"uniform": SliceSpec(description="the DOE's own distribution")}


class VerificationSpec(_Section):
    """How ``twin verify`` judges a surrogate: each slice is a fresh design scored on
    every acceptance threshold; each partition (a categorical or boolean DOE factor)
    splits the pooled runs by choice, each part judged on its interval coverage."""

    slices: dict[str, SliceSpec] = Field(default_factory=_uniform_slice)
    partitions: list[str] = []


class TwinSpec(_Section):
    """A validated twin spec. Build it with ``load_spec`` or ``TwinSpec.from_dict``."""

    name: str
    version: int
    description: str = ""
    fmu: FmuSpec
    inputs: dict[str, InputSpec]
    # None: the twin has no work-order quantity (a study of a fixed horizon, say); then
    # expressions cannot use ``quantity`` and datasets have no quantity column.
    quantity: QuantitySpec | None = None
    # Absolute [s]; left out: the FMU's default experiment's (DEFAULT_STOP, bound when the
    # FMU is opened), which any expression may also use.
    stop_time: str = "default_stop_time"
    derived: dict[str, Derived] = {}
    # The unit each model constant the expressions read (model.<name>, and a table
    # column model.<column>[<input>]) is written for; the FMU's parameter must have it.
    model_constants: dict[str, str] = {}
    constraints: list[ConstraintSpec] = []
    doe: DoeSpec | None = None
    kpis: dict[str, KpiSpec]
    quality: dict[str, QualitySpec] = {}
    operations: OperationsSpec | None = None
    maintenance: dict[str, MaintenanceSpec] = {}
    feasibility: dict[str, FeasibilitySpec] = {}
    acceptance: dict[str, AcceptanceSpec] = {}
    # Not part of the spec hash: how a surrogate is verified changes nothing it learns.
    verification: VerificationSpec | None = None

    _source_dir: Path | None = PrivateAttr(default=None)
    _stop_time: Expr = PrivateAttr()
    _default_stop: float | None = PrivateAttr(default=None)
    _derived: dict[str, Expr | BlockExpr] = PrivateAttr(default_factory=dict)  # in evaluation order
    _constraints: list[Expr] = PrivateAttr(default_factory=list)
    _constraint_derived: list[str] = PrivateAttr(default_factory=list)
    _constraint_inputs: tuple[str, ...] = PrivateAttr(default=())
    _model_values: dict[str, float] = PrivateAttr(default_factory=dict)
    _row_plan: Any = PrivateAttr(default=None)  # row_namespace's work, worked out once

    @field_validator("stop_time", mode="before")
    @classmethod
    def _number_as_expression(cls, value: Any) -> Any:
        # "stop_time: 3600" is a fine expression too.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return repr(value)
        return value

    @model_validator(mode="after")
    def _check_structure(self, info: ValidationInfo) -> TwinSpec:
        materials = _material_problems(self)
        # from_dict passes the spec's folder: a relative fmu.path the model's constants
        # are read from lies there.
        source_dir = (info.context or {}).get("source_dir")
        try:
            compiled = checks.check_structure(self, source_dir)
        except text.Problems as exc:
            raise text.Problems(exc.problems + materials) from None
        if materials:
            raise text.Problems(materials)
        self._stop_time, self._derived, self._constraints, self._model_values = compiled
        # The derived values the constraints need, directly or through other ones.
        need: set[str] = set().union(*(e.names for e in self._constraints))
        for key in reversed(list(self._derived)):  # a derived value needs earlier ones
            if key in need:
                need |= self._derived[key].names
        self._constraint_derived = [k for k in self._derived if k in need]
        self._constraint_inputs = tuple(
            k for k, inp in self.inputs.items()
            if (k in need if inp.kind != "categorical"
                else any(text.indicator(k, c) in need for c in inp.choice_names))
        ) + (("quantity",) if "quantity" in need else ())
        return self

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        source_dir: str | Path | None = None,
        source: str | None = None,
    ) -> TwinSpec:
        """Validate ``data``; every problem is reported in one SpecError."""
        folder = None if source_dir is None else Path(source_dir)
        try:
            spec = cls.model_validate(data, context={"source_dir": folder})
        except ValidationError as exc:
            raise SpecError(text.problems_from_validation(exc, cls), source=source) from None
        spec._source_dir = folder
        return spec

    def bind_default_experiment(self, model_description: Any) -> None:
        """Take the FMU's default experiment stop time as ``default_stop_time``."""
        exp = model_description.defaultExperiment
        stop = None if exp is None else exp.stopTime
        self._default_stop = None if stop is None else float(stop)

    @property
    def default_stop(self) -> float | None:
        """The FMU's default stop time, once ``bind_default_experiment`` read it."""
        return self._default_stop

    @property
    def material_input(self) -> str | None:
        """The input a job order's consumed material sets (``from_material_requirements``),
        or None when the spec names none."""
        return next((k for k, i in self.inputs.items() if i.from_material_requirements), None)

    def require_quantity(self) -> QuantitySpec:
        """The work-order quantity, for the stages that need one (surrogates and serving
        learn and answer per work order); SpecError when the spec declares none."""
        if self.quantity is None:
            raise SpecError(
                ["quantity: missing; surrogates and the MES service need a work-order quantity"],
                source=self.name,
            )
        return self.quantity

    @property
    def source_dir(self) -> Path | None:
        """Folder of the spec file; a relative ``fmu.path`` is resolved against it."""
        return self._source_dir

    def fmu_file(self) -> Path | None:
        """The user-brought FMU file (``fmu.path``), or None for one of our models."""
        if self.fmu.path is None:
            return None
        path = Path(self.fmu.path)
        return path if path.is_absolute() or self._source_dir is None else self._source_dir / path

    @property
    def spec_hash(self) -> str:
        """sha256 of the canonical content: independent of key order and YAML layout."""
        dumped = json.dumps(
            text.canonical(self), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
        return hashlib.sha256(dumped.encode()).hexdigest()

    @property
    def model_constant_values(self) -> dict[str, float]:
        """The FMU parameters the expressions read (``model.<name>``, the cells of a
        ``model.<column>[<input>]``) and the start values read at load: part of the
        spec hash, and checked again against the FMU a run opens."""
        return dict(self._model_values)

    @property
    def stop_time_expr(self) -> Expr:
        return self._stop_time

    @property
    def derived_exprs(self) -> dict[str, Expr | BlockExpr]:
        """Derived expressions, in an order in which each only needs earlier ones."""
        return dict(self._derived)

    @property
    def constraint_exprs(self) -> list[Expr]:
        return list(self._constraints)

    @property
    def constraint_inputs(self) -> tuple[str, ...]:
        """The inputs (and ``quantity``) the constraints read, directly or through derived
        values: rows equal in these meet the same constraints."""
        return self._constraint_inputs

    def namespace(
        self, values: Mapping[str, Any], quantity: Any = None, *, constraints_only: bool = False
    ) -> dict[str, Any]:
        """Names for expressions from twin-level values (scalars or equal-length arrays).

        Derived values are added where everything they need is present;
        ``constraints_only``: only the ones the constraints need.
        """
        names: dict[str, Any] = {}
        for key, spec in self.inputs.items():
            if key not in values:
                continue
            value = np.asarray(values[key])
            if spec.kind == "categorical":
                for choice in spec.choice_names:
                    names[text.indicator(key, choice)] = (value == choice).astype(np.float64)
            else:
                names[key] = value.astype(np.float64)
        if quantity is not None:
            names["quantity"] = np.asarray(quantity, dtype=np.float64)
        if self._default_stop is not None:
            names[DEFAULT_STOP] = np.asarray(self._default_stop)
        derived = self._derived
        for key in self._constraint_derived if constraints_only else derived:
            expr = derived[key]
            if expr.names <= names.keys():
                names[key] = expr.evaluate(names)
        return names

    def row_namespace(
        self,
        row: Mapping[str, Any],
        *,
        constraints_only: bool = False,
    ) -> dict[str, float]:
        """``namespace`` of one twin-level row (every input and ``quantity`` given), as
        Python floats computed by ``Expr.evaluate_row``: the same values, without numpy's
        per-call cost, for a service checking one request at a time.
        ``constraints_only``: only the derived values the constraints need."""
        plan = self._row_plan
        if plan is None:
            plan = self._row_plan = self._plan_rows()
        numeric, categorical, quantity, every, for_constraints = plan
        names: dict[str, float] = {key: float(row[key]) for key in numeric}
        for key, indicators in categorical:
            value = row[key]
            for name, choice in indicators:
                names[name] = 1.0 if value == choice else 0.0
        if quantity:
            names["quantity"] = float(row["quantity"])
        for key, expr in for_constraints if constraints_only else every:
            names[key] = expr.evaluate_row(names)
        return names

    def _plan_rows(self) -> tuple[Any, ...]:
        """What ``row_namespace`` does for every row, looked up once (pydantic's private
        attributes and properties cost microseconds each on a per-request path)."""
        numeric = [k for k, inp in self.inputs.items() if inp.kind != "categorical"]
        categorical = [
            (k, [(text.indicator(k, c), c) for c in inp.choice_names])
            for k, inp in self.inputs.items()
            if inp.kind == "categorical"
        ]
        derived = self._derived
        every = list(derived.items())
        for_constraints = [(k, derived[k]) for k in self._constraint_derived]
        return numeric, categorical, self.quantity is not None, every, for_constraints

    def constraints_mask(self, values: Mapping[str, Any], quantity: Any = None) -> Any:
        """Where every constraint holds: a bool for scalars, a bool array for arrays."""
        names = self.namespace(values, quantity)
        ok: Any = np.asarray(True)
        for expr in self._constraints:
            ok = np.logical_and(ok, np.asarray(expr.evaluate(names)) != 0.0)
        return bool(ok) if ok.ndim == 0 else ok

    def factor_domain(self, key: str) -> tuple[str, float | None, float | None]:
        """Kind and bounds of something a DOE can vary: an input id or ``quantity``."""
        if key == "quantity":
            q = self.quantity
            assert q is not None  # the spec checks refuse a quantity factor without one
            return ("integer" if q.integer else "real"), q.min, q.max
        inp = self.inputs[key]
        return inp.kind, inp.min, inp.max

    def check_against(self, catalogue: Catalogue) -> None:
        """Raise SpecError if inputs or KPIs disagree with the FMU's variables."""
        problems = checks.check_catalogue(self, catalogue)
        if problems:
            raise SpecError(problems, source=self.name)

    def resolve_order(self, values: Mapping[str, Any], quantity: Any) -> ResolvedOrder:
        """A work order checked against the spec alone: values with defaults, stop time."""
        from physics.workorder import resolve_order

        return resolve_order(self, values, quantity)

    def case_from_order(
        self, values: Mapping[str, Any], quantity: Any, catalogue: Catalogue
    ) -> SimulationCase:
        """The simulation run for a work order; OrderError lists every problem."""
        from physics.workorder import case_from_order

        return case_from_order(self, values, quantity, catalogue)


def _material_problems(spec: TwinSpec) -> list[str]:
    marked = [k for k, i in spec.inputs.items() if i.from_material_requirements]
    p = [f"inputs.{k}.from_material_requirements: also set on {marked[0]!r}; one input "
         "takes the order's material" for k in marked[1:]]
    for key in marked[:1]:
        inp = spec.inputs[key]
        if inp.kind != "categorical" or inp.source != "order":
            p.append(f"inputs.{key}.from_material_requirements: needs a categorical input "
                     f"from the order, not a {inp.kind} one from {inp.source!r}")
    return p


def load_spec(path: str | Path) -> TwinSpec:
    """Read and validate a twin spec YAML file; problems raise SpecError naming the file."""
    path = Path(path)
    data = text.read_yaml_mapping(path, SpecError)
    return TwinSpec.from_dict(data, source_dir=path.resolve().parent, source=str(path))

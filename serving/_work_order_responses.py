"""The answers of the work-order routes: the assessment (quality, maintenance,
feasibility, the reroute scope, the decision with the numbers behind its reason codes),
the batch assessment, the completion (a job response and what it did to the asset) and
the stored history of an order. The conventions are those of ``serving._responses``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serving._predict_schemas import DomainViolation, EventPrediction, KpiPrediction, ModelRef
from serving._responses import DecisionType, Number, Problem, Timestamp, absent
from serving._schemas import NE107, CompletionIn, ExecutionMode, JobOrderIn, JobResult, _Out

__all__ = [
    "AdjustedParameter",
    "Adjustment",
    "AdjustmentEffect",
    "AdvisoryOut",
    "AdvisoryRef",
    "Alternate",
    "AlternateObjective",
    "AssessmentOut",
    "Attempt",
    "BatchAssessmentOut",
    "BatchResult",
    "CompletionOut",
    "DecisionOut",
    "DomainOut",
    "DriftOut",
    "ExcludedAlternate",
    "FeasibilityOut",
    "Interval",
    "LimitOut",
    "MaintenanceFirst",
    "MaintenanceOut",
    "ObjectiveChange",
    "PolicyRef",
    "QualityInterval",
    "QualityOut",
    "Quantities",
    "ReasonDetail",
    "RemainingUsefulLife",
    "RerouteScope",
    "ResidualOut",
    "ScopeRequirement",
    "StateChange",
    "StoredAssessment",
    "StoredCompletion",
    "TriedParameter",
    "WorkOrderOut",
]


class PolicyRef(_Out):
    id: str
    version: str


class Interval(_Out):
    lower: float
    upper: float
    level: float


class QualityInterval(Interval):
    method: str


class QualityOut(_Out):
    """The prediction of one quality characteristic against its limits."""

    characteristic_id: str
    kpi: str = Field(description="The spec's KPI behind the characteristic")
    unit: str
    lsl: float | None
    target: float | None
    usl: float | None
    critical: bool
    basis: Literal["tolerance", "order", "stock_allowance"] = Field(description=(
        "What the limits are: the spec's tolerance, the order's quality_specs, or the "
        "stock allowance a roughing or semi-finishing pass leaves (+- on each side the "
        "tolerance limits)"))
    mean: float
    std: float
    interval: QualityInterval
    p_out_of_spec: float
    evaluation: Literal["OK", "NotOK", "NotDecidable"] = Field(
        description="OK: the interval lies within the limits; NotOK: outside them")
    is_simulated: bool


class FeasibilityOut(_Out):
    """One process limit of the spec (spindle load, bearing speed, ...)."""

    kpi: str
    unit: str
    min: float | None
    max: float | None
    mean: float
    interval: Interval
    p_violation: float
    feasible: bool
    description: str


class LimitOut(_Out):
    """One maintenance limit, and the probability of reaching it during the order."""

    kpi: str
    limit: float
    unit: str
    action: str
    p_reached: float
    description: str


class RemainingUsefulLife(_Out):
    """Parts until a maintenance limit is reached, as quantiles (null: beyond the horizon);
    the ``_hours`` keys are there when the spec predicts the cycle time."""

    unit: str = Field(description="'parts'")
    horizon: int = Field(description="The largest quantity scanned")
    method: str
    p10: int | None
    p10_hours: float | None = absent()
    p50: int | None
    p50_hours: float | None = absent()
    p90: int | None
    p90_hours: float | None = absent()
    beyond_horizon: bool = Field(description="True: not even p10 is reached by the horizon")
    note: str = absent("Said when the remaining useful life lies beyond the horizon")


class AdvisoryOut(_Out):
    action: str
    kpi: str
    p_reached: float
    due_in_parts: int | None
    due_by: Timestamp | None
    reason: str


class MaintenanceOut(_Out):
    health_index: float
    health_driver: str | None = Field(description="The state input nearest its limit")
    device_health: NE107
    remaining_useful_life: RemainingUsefulLife
    limits: list[LimitOut]
    advisories: list[AdvisoryOut]


class DomainOut(_Out):
    in_domain: bool
    violations: list[DomainViolation]


class MaintenanceFirst(_Out):
    action: str
    state_after: dict[str, Number] = Field(description="The state the remedy leaves")
    quality: list[QualityOut]
    limits: list[LimitOut]


class AdjustedParameter(_Out):
    id: str
    from_: Number = Field(alias="from")
    to: Number
    unit: str | None


class ObjectiveChange(_Out):
    kpi: str
    unit: str
    before: float
    after: float


class AdjustmentEffect(_Out):
    fixed: list[str] = Field(description="The reason codes the adjustment clears")
    objective: ObjectiveChange
    quality: list[QualityOut]
    feasibility: list[FeasibilityOut]


class Adjustment(_Out):
    parameters: list[AdjustedParameter]
    effect: AdjustmentEffect


class AlternateObjective(_Out):
    kpi: str
    value: float


class Alternate(_Out):
    equipment_id: str
    objective: AlternateObjective
    max_p_out_of_spec: float
    rank: int


class ReasonDetail(_Out):
    """The numbers behind one reason code."""

    code: str
    kpi: str
    unit: str
    predicted: float = absent("The KPI's predicted mean (regression KPIs)")
    interval: Interval = absent()
    limits: dict[str, float] = Field(description="lsl / usl, or min / max of the check")
    probability: float = Field(description="P(out of spec), P(violation) or P(event)")
    p_max: float = Field(description="The policy's largest allowed probability")


class TriedParameter(_Out):
    id: str
    to: Number
    unit: str | None


class Attempt(_Out):
    """One alternative a HOLD_FOR_REVIEW tried: a remedy, the adjusted setting closest to
    passing, or another machine; what still fails there, and the worst of it."""

    kind: Literal["remedy", "adjustment", "reroute"]
    action: str = absent("remedy: the maintenance action")
    candidates: int = absent("adjustment: how many settings were tried")
    parameters: list[TriedParameter] = absent("adjustment: the closest setting")
    equipment_id: str = absent("reroute: the machine")
    still_failing: list[str]
    worst: ReasonDetail | None = Field(description="null: outside the training domain")


class DecisionOut(_Out):
    """What the service advises; the MES decides."""

    type: DecisionType
    reason_codes: list[str] = Field(description=(
        "Machine-readable: ALL_CHECKS_PASSED, ADVISORY:<action>, QUALITY_AT_RISK:"
        "<characteristic_id>, INFEASIBLE:<kpi>, TOOL_BREAKAGE_RISK, REMEDY:<action>, "
        "ADJUSTMENT_FOUND, ALTERNATE_FOUND, NO_REMEDY, OUT_OF_DOMAIN, STATE_STALE, "
        "MODEL_MISSING"))
    explanation: str
    advisory: Literal[True] = Field(description="Always true: advice, not a command")
    reasons: list[ReasonDetail] = absent(
        "The numbers behind each failing check's code (every decision but RELEASE and "
        "UNDECIDED)")
    tried: list[Attempt] = absent(
        "HOLD_FOR_REVIEW: every alternative tried and by how much it missed")
    maintenance_first: MaintenanceFirst = absent("MAINTAIN_FIRST: the remedy and its effect")
    adjustment: Adjustment = absent(
        "RELEASE_WITH_ADJUSTMENT: the adjusted parameters and their predicted effect")
    alternates: list[Alternate] = absent("REROUTE: the other machines, ranked")


class ScopeRequirement(_Out):
    equipment_id: str = absent()
    site: str | None = absent()
    area: str | None = absent()
    work_center: str | None = absent()


class ExcludedAlternate(_Out):
    equipment_id: str
    reason: Literal["UNHEALTHY", "STATE_STALE"]
    detail: str


class RerouteScope(_Out):
    """Which machines a reroute may rank: those of the order's scope that are in service,
    healthy and fresh; the others of the scope are listed with why they were left out."""

    requirements: list[ScopeRequirement] = Field(
        description="The order's equipment requirements, or the asset's own work center")
    considered: list[str] = Field(description="Equipment ids predicted as alternates")
    excluded: list[ExcludedAlternate]


class NotChecked(_Out):
    characteristic_id: str
    reason: Literal["OTHER_SURFACE", "NOT_THIS_PASS"] = Field(description=(
        "OTHER_SURFACE: on a surface the order does not finish; NOT_THIS_PASS: made by "
        "the finishing pass, not by one that leaves stock"))
    detail: str


class OperationOut(_Out):
    """The order's pass, as judged: which characteristics it is checked on, and how."""

    type: str
    judged_on: Literal["tolerance", "stock_allowance"]
    stock_allowance: float | None = Field(description="Per side, in unit (null: finishing)")
    unit: str
    surface: str | None = Field(description="The surface the order finishes")
    not_checked: list[NotChecked]


class AssessmentOut(_Out):
    """The assessment of a job order. Without a model for the asset type only the head
    and an UNDECIDED decision (MODEL_MISSING) are sent."""

    job_order_id: str
    equipment_id: str
    execution_mode: ExecutionMode
    assessed_at: Timestamp
    policy: PolicyRef
    model: ModelRef | None = Field(description="null: no model serves the asset type")
    operation: OperationOut = absent("The order's pass (an asset type with operations)")
    quality: list[QualityOut] = absent("Per quality characteristic the order is checked on")
    maintenance: MaintenanceOut = absent()
    feasibility: list[FeasibilityOut] = absent("Per process limit of the spec")
    domain: DomainOut = absent()
    predicted: dict[str, KpiPrediction | EventPrediction] = absent(
        "Every KPI of the order as sent: regression KPIs and event probabilities")
    reroute: RerouteScope = absent("The machines a reroute may rank, and those left out")
    decision: DecisionOut


class BatchResult(_Out):
    """One order of a batch: its assessment (status 200) or its problem."""

    job_order_id: str
    status: int = Field(description="200, or the status a single assessment would answer")
    assessment: AssessmentOut = absent("status 200: the assessment")
    problem: Problem = absent("otherwise: the problem a single assessment would answer")


class BatchAssessmentOut(_Out):
    results: list[BatchResult] = Field(description="One per order sent, in order")
    counts: dict[str, int] = Field(description="Orders per decision type; PROBLEM: refused")


class ResidualOut(_Out):
    characteristic_id: str
    kpi: str
    measured: float
    predicted: float
    residual: float = Field(description="measured - predicted")
    interval: Interval
    inside: bool


class DriftOut(_Out):
    """A KPI whose recent residuals fall outside their intervals more often than the
    interval level allows (one-sided binomial test)."""

    kpi: str
    characteristic_id: str
    n: int
    outside: int
    expected_share: float
    p_value: float
    drift: bool


class AdvisoryRef(_Out):
    kpi: str
    action: str


class StateChange(_Out):
    """One change of a state input by a completion, with its cause."""

    input: str
    from_: Number = Field(alias="from")
    to: Number
    cause: Literal["predicted", "run", "maintenance", "measured", "clipped"] = Field(
        description="predicted: the surrogate at the parts made (a drop means the model's run "
                    "resets the input, e.g. a change the machine makes by itself); run: what "
                    "the policy says a run leaves; maintenance: an action reported done; "
                    "measured: a value the completion sent; clipped: to the spec's range")
    detail: str


class Quantities(_Out):
    total: int
    good: int
    scrap: int
    rework: int


class CompletionOut(_Out):
    """The job response as recorded, and what it did to the asset."""

    job_order_id: str
    equipment_id: str
    job_response_id: str
    result: JobResult
    actual_start_time: Timestamp | None
    actual_end_time: Timestamp
    quantities: Quantities
    state_before: dict[str, Number]
    state_after: dict[str, Number]
    state_changes: list[StateChange]
    device_health: NE107
    health_index: float
    residuals: list[ResidualOut]
    drift: list[DriftOut] = Field(description="Drift newly detected by this completion")
    advisories_cleared: list[AdvisoryRef]
    model: ModelRef


class StoredAssessment(_Out):
    id: int
    created_at: Timestamp
    request: JobOrderIn
    response: AssessmentOut


class StoredCompletion(_Out):
    request: CompletionIn
    response: CompletionOut


class WorkOrderOut(_Out):
    """Every assessment of a job order, oldest first, and its completion."""

    job_order_id: str
    assessments: list[StoredAssessment]
    completion: StoredCompletion | None

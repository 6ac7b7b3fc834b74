"""Response schemas: what every route answers, for the OpenAPI document an MES integrator
reads, and the RFC 9457 problem every error is.

The routes build their answers as plain dicts (``serving.domain.assess``, ``serving.api.routes``)
and declare these models as ``response_model`` with ``response_model_exclude_unset``:
FastAPI checks each answer against its model and writes exactly the keys the route
built, so the wire format is the route's, and an answer that drifts from its schema
fails loudly in the tests instead of surprising an integrator. The assessment and the
completion send their answers already encoded (orjson), past FastAPI's check: for them
the model documents, and ``tests/serving/test_schemathesis.py`` holds every answer to
it. Every model forbids undeclared keys (``additionalProperties: false``).

A key that is left out when it does not apply (an adjustment on a RELEASE, the quality
of an order no model serves) is declared with ``absent``: not required, never null.
Maps keyed by the spec's names (KPIs, state inputs) are ``dict[str, ...]``; a value that
keeps the spec's integer or real type is a ``Number``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema
from typing_extensions import TypeAliasType

from serving._schemas import (
    NE107,
    CompletionIn,
    DomainViolation,
    EventPrediction,
    ExecutionMode,
    JobOrderIn,
    JobResult,
    KpiPrediction,
    ModelRef,
    _Out,
)

__all__ = [
    "AssessmentOut",
    "AssetList",
    "AssetOut",
    "AuditList",
    "AuditRecordOut",
    "AuditReport",
    "BatchAssessmentOut",
    "CompletionOut",
    "DeadLetterList",
    "DeadLetterOut",
    "DeadLetterReplay",
    "DecisionOut",
    "EventList",
    "HealthOut",
    "ModelList",
    "ModelOut",
    "Problem",
    "ReadyOut",
    "ReloadOut",
    "WebhookCreated",
    "WebhookList",
    "WebhookOut",
    "WebhookSecret",
    "WorkOrderOut",
    "answers",
    "problem_media",
    "problems",
]

# An integer or a real, as the spec's input or the stored state has it (an int stays an
# int on the wire); "number" in the OpenAPI document.
Number = Annotated[float | int, WithJsonSchema({"type": "number"})]
DecisionType = TypeAliasType("DecisionType", Literal[
    "RELEASE", "RELEASE_WITH_ADJUSTMENT", "HOLD_FOR_REVIEW", "MAINTAIN_FIRST", "REROUTE",
    "UNDECIDED",
])
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent(description: str = "") -> Any:
    """A key left out of the answer when it does not apply (never sent as null)."""
    return Field(None, description=description or None, json_schema_extra=_no_default)


# ---- problems ------------------------------------------------------------------------------


class ProblemField(_Out):
    field: str = Field(description="JSON path of the offending field (or header)")
    value: Any = Field(description="The value sent")
    expected: str = Field(description="What the field must be")


class Problem(_Out):
    """An RFC 9457 problem (``application/problem+json``): every error of the service."""

    type: str = Field(description="https://asset-twin.dev/problems/<code>")
    title: str
    status: int
    detail: str
    instance: str = absent("The request path")
    errors: list[ProblemField] = absent("The offending fields; left out when none is named")


_PROBLEM_TEXT = {
    400: "The body cannot be parsed (not JSON in UTF-8)",
    401: "No or unknown credentials",
    403: "The credentials lack the route's scope",
    404: "Not found",
    409: "Conflict",
    412: "If-Match names another version than the current one (the problem names it)",
    428: "The write needs If-Match (the problem says where to get the ETag)",
    413: "The body is larger than the configured limit",
    415: "The body's media type is not one the route takes",
    422: "The request is not valid",
}
PROBLEM_MEDIA = "application/problem+json"


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that may answer ``codes`` with a problem."""
    return {code: {"model": Problem, "description": _PROBLEM_TEXT[code]} for code in codes}


def answers(model: type[BaseModel], *codes: int) -> dict[str, Any]:
    """Route decorator arguments: the answer's model (the route's dict is checked against
    it and sent with exactly its keys) and the problems the route may answer."""
    return {"response_model": model, "response_model_exclude_unset": True,
            "responses": problems(*codes)}


def problem_media(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """``FastAPI.openapi`` with the problems under ``application/problem+json``, the media
    type they are sent with (FastAPI files a ``responses`` model under
    ``application/json``)."""

    def openapi() -> dict[str, Any]:
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for response in operation.get("responses", {}).values():
                    content = response.get("content", {})
                    ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
                    if ref.endswith("/Problem"):
                        content[PROBLEM_MEDIA] = content.pop("application/json")
        return schema

    return openapi


# ---- health ----------------------------------------------------------------------------------


class HealthOut(_Out):
    status: Literal["ok"]


class ReadyOut(_Out):
    """200 when the database answers and the configured models are loaded, else 503."""

    ready: bool
    models: list[str] = Field(description="Names of the models served")
    database: str = Field(description="'ok', or 'unreachable: <error type>'")


# ---- models ----------------------------------------------------------------------------------


class SpecRef(_Out):
    name: str
    version: int
    hash: str = Field(description="sha256 of the spec, as trained")
    file: str


class TrainingDomain(_Out):
    min: Number = absent("Lowest value trained on (numeric inputs)")
    max: Number = absent("Highest value trained on (numeric inputs)")
    choices: list[str] = absent("Choices trained on (categorical inputs)")


class ModelInput(_Out):
    name: str
    kind: Literal["real", "integer", "boolean", "categorical"]
    unit: str | None
    source: str | None = Field(description="order, state, environment or quantity")
    description: str
    min: Number | None = Field(description="Lowest value the spec allows")
    max: Number | None = Field(description="Highest value the spec allows")
    default: Any = absent("The spec's default (null: the value must be sent)")
    choices: list[str] = absent("Every choice of a categorical input")
    training_domain: TrainingDomain


class DomainGap(_Out):
    """An input whose training domain is narrower than the spec allows: an order in the
    gap is valid, but answered UNDECIDED (out of the training domain)."""

    input: str
    unit: str | None = absent("The input's unit (numeric inputs)")
    spec: list[Number] = absent("[min, max] the spec allows (numeric inputs)")
    trained: list[Number] = absent("[min, max] trained on (numeric inputs)")
    covered: float = absent("Share of the spec's range trained on (numeric inputs)")
    spec_choices: list[str | bool] = absent("Every choice (categorical and boolean inputs)")
    trained_choices: list[str | bool] = absent("Choices trained on")


class ModelOutput(_Out):
    unit: str
    role: str = Field(description="quality, maintenance or process")
    kind: str = Field(description="regression, event or constant")
    description: str


class Constraint(_Out):
    expr: str
    message: str


class Gate(_Out):
    status: str = Field(description="unverified, passed or failed")
    failures: list[str]


class ModelMetrics(_Out):
    verification: dict[str, Any] | None = Field(
        description="Figures of the FMU verification runs (null: not verified)")
    gate: Gate | None


class IntervalInfo(_Out):
    level: float
    method: str


class ModelOut(_Out):
    """A served model: its bundle, the inputs it takes (with the spec's bounds and the
    training domain), the KPIs it predicts and its verification gate."""

    name: str
    version: str = Field(description="Registry version, or 'folder' for a bundle folder")
    source: str = Field(description="Bundle folder or models:/<name>@<alias>")
    bundle_hash: str
    spec: SpecRef
    loaded_at: Timestamp
    inputs: list[ModelInput]
    domain_gaps: list[DomainGap] = Field(
        description="Inputs trained on less than the spec's range: orders there are "
                    "UNDECIDED")
    outputs: dict[str, ModelOutput] = Field(description="Per KPI of the spec")
    interval: IntervalInfo
    constraints: list[Constraint]
    metrics: ModelMetrics
    dataset: dict[str, Any] | None = Field(description="The training data's provenance")


class ModelList(_Out):
    models: list[ModelOut]


class PreviousModel(_Out):
    version: str
    bundle_hash: str
    source: str


class ReloadOut(ModelOut):
    """The model now served, with the one it replaced."""

    previous: PreviousModel
    changed: bool = Field(description="False: the same bundle again (recorded all the same)")
    activation_id: int


# ---- assets ----------------------------------------------------------------------------------


class AssetAdvisory(_Out):
    """A maintenance advisory the asset keeps while its latest assessment predicts it."""

    kpi: str = Field(description="The maintenance limit (one advisory per limit)")
    action: str
    due_by: Timestamp | None
    due_in_parts: int | None
    p_reached: float
    reason: str
    job_order_id: str = Field(description="The assessment that raised it")
    raised_at: Timestamp


class AssetOut(_Out):
    equipment_id: str
    asset_type: str = Field(description="Twin spec name")
    description: str
    site: str | None = Field(description="ISA-95 site")
    area: str | None = Field(description="ISA-95 area")
    work_center: str | None = Field(description="ISA-95 work center (cell or line)")
    external_ids: dict[str, str]
    state: dict[str, Number] = Field(description="Per state input of the spec")
    state_measured_at: Timestamp
    environment: dict[str, Number] = Field(description="Per environment input of the spec")
    device_health: NE107 = Field(description="NAMUR NE 107 status")
    health_index: float = Field(description="1 - the largest share of a state limit used")
    parts_made: int
    advisories: list[AssetAdvisory]
    revision: int = Field(description="Bumped on every change")
    etag: str = Field(description="The ETag header of this version: send it as If-Match")
    retired_at: Timestamp | None = Field(
        description="When the asset was retired (DELETE); null while in service")


class AssetList(_Out):
    assets: list[AssetOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: "
                                                "the last page")


# ---- work orders -----------------------------------------------------------------------------


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


class AssessmentOut(_Out):
    """The assessment of a job order. Without a model for the asset type only the head
    and an UNDECIDED decision (MODEL_MISSING) are sent."""

    job_order_id: str
    equipment_id: str
    execution_mode: ExecutionMode
    assessed_at: Timestamp
    policy: PolicyRef
    model: ModelRef | None = Field(description="null: no model serves the asset type")
    quality: list[QualityOut] = absent("Per quality characteristic of the spec")
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


# ---- events ----------------------------------------------------------------------------------


class EventOut(_Out):
    """A CloudEvents 1.0 envelope (structured mode)."""

    specversion: Literal["1.0"]
    id: str
    source: str
    type: str = Field(description=(
        "io.assettwin.decision.issued, .advisory.raised, .advisory.cleared, "
        ".asset.threshold_crossed, .asset.updated, .drift.detected, .model.activated, "
        ".webhook.dead_lettered, .webhook.disabled"))
    subject: str = Field(description="work-order/<id>, asset/<id> or model/<name>")
    time: Timestamp
    datacontenttype: Literal["application/json"]
    sequence: str = Field(description="Number within the subject, zero-padded to 19 digits")
    data: dict[str, Any]
    twinseq: int = Field(description="Position among all events: the after_seq cursor")


class EventList(_Out):
    events: list[EventOut]
    last_seq: int = Field(description="Pass as after_seq to read on")


class WebhookOut(_Out):
    """A subscription: where the events go, which ones, and how its queue stands."""

    id: str
    url: str
    event_types: list[str] = Field(description="Empty: every type")
    description: str
    active: bool
    disabled_reason: str | None = Field(
        description="Why it is inactive: disabled by a caller, or by the dispatcher after "
        "dead letters in a row")
    max_backlog: int = Field(description="Pending deliveries kept at most")
    pending: int = Field(description="Deliveries waiting to be sent")
    dead_letters: int = Field(description="Deliveries given up on (replayable)")
    previous_secret_expires_at: Timestamp | None = Field(
        description="Until when the secret before the last rotation still signs; null: none")
    created_at: Timestamp
    updated_at: Timestamp


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Shown once: verify the signatures with it")


class WebhookList(_Out):
    webhooks: list[WebhookOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: last")


class WebhookSecret(_Out):
    """The new secret after a rotation, shown once."""

    id: str
    secret: str = Field(description="Signs every delivery from now on")
    previous_secret_expires_at: Timestamp | None = Field(
        description="The old secret signs beside the new one until then; null: it stopped")


class DeadLetterOut(_Out):
    event_seq: int = Field(description="The event's twinseq")
    event_id: str
    type: str
    subject: str
    time: Timestamp = Field(description="When the event happened")
    attempts: int
    reason: Literal["max_attempts", "max_backlog", "permanent"]
    last_error: str | None


class DeadLetterList(_Out):
    dead_letters: list[DeadLetterOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: last")


class DeadLetterReplay(_Out):
    replayed: list[int] = Field(description="Event seqs queued again, oldest first")
    pending: int
    dead_letters: int = Field(description="Dead letters left")


# ---- audit -----------------------------------------------------------------------------------


class AuditRecordOut(_Out):
    """One record of the hash-chained audit trail, as stored: ``hash`` is the sha256 of
    ``prev_hash`` followed by the canonical JSON (sorted keys, no spaces, ASCII) of the
    fields ``seq`` to ``outputs``, with ``at`` in UTC to the microsecond as answered here."""

    seq: int = Field(description="Position in the chain, from 1 without gaps")
    at: Timestamp
    kind: str = Field(description="assessment, completion, asset, webhook, model, ...")
    subject: str = Field(description="work-order/<id>, asset/<id>, webhook/<id>, model/<name>")
    caller: str = Field(description="The API key's name or the bearer token's subject")
    idempotency_key: str | None
    model_version: str | None
    bundle_hash: str | None
    policy_version: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    prev_hash: str = Field(description="hash of record seq - 1 ('' for record 1)")
    hash: str


class AuditList(_Out):
    records: list[AuditRecordOut] = Field(description="Oldest first (by seq)")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null: "
                                                "the last page")


class AuditReport(_Out):
    """What recomputing the hash chain found."""

    ok: bool
    records: int = Field(description="Records checked and found intact (before any break)")
    first_broken: int = absent("seq of the first record that was changed, removed or "
                               "reordered")
    reason: str = absent("Why that record breaks the chain")

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
keeps the spec's integer or real type is a ``Number``. The work-order answers, the
largest, are in ``serving._work_order_responses``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema
from typing_extensions import TypeAliasType

from serving._schemas import (
    NE107,
    _Out,
)

__all__ = [
    "AssetList",
    "AssetOut",
    "AuditList",
    "AuditRecordOut",
    "AuditReport",
    "DeadLetterList",
    "DeadLetterOut",
    "DeadLetterReplay",
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
    source: str | None = Field(description="order, state, environment, machine or quantity")
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
    machine: dict[str, Number] = Field(
        description="Per machine input of the spec: the constants this machine has")
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

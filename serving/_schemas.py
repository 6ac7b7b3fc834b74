"""Request schemas: the MES data model (ISA-95 job orders and their batches, assets and
their merge patches, job responses, webhooks), the identifier and time types every
route shares, and the base classes of every request (``_In``) and answer (``_Out``).
The raw prediction row of a served model, derived from its twin spec, is in
``serving._predict_schemas``; the answers in ``serving._responses``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import TypeAliasType

from physics._spec_text import fmt
from physics.spec import InputSpec, TwinSpec

__all__ = [
    "ID_MAX",
    "AssetIn",
    "AssetPatch",
    "BatchAssessmentIn",
    "BatchOrder",
    "CompletionIn",
    "DeadLetterReplayIn",
    "EquipmentRequirement",
    "Identifier",
    "JobOrderIn",
    "JobOrderParameter",
    "MeasuredQuality",
    "MeasuredSample",
    "QualitySpecIn",
    "ReloadIn",
    "SecretRotationIn",
    "ToolChange",
    "ToolReport",
    "WebhookIn",
    "WebhookPatch",
]

# Enums used by several schemas are named type aliases: each is one component of the
# OpenAPI document (a $ref), so a generated client has one DeviceHealth, not one per field.
DeviceHealth = TypeAliasType("DeviceHealth", Literal[
    "NORMAL", "MAINTENANCE_REQUIRED", "OFF_SPEC", "CHECK_FUNCTION", "FAILURE"])
NE107: TypeAlias = DeviceHealth
ExecutionMode = TypeAliasType("ExecutionMode", Literal["Production", "Test", "Simulation"])
JobResult = TypeAliasType("JobResult", Literal["Successful", "Unsuccessful"])
Scalar = float | bool | str

# Identifiers are whatever the MES uses (SAP's 4711/0010, dots, Unicode letters): 1 to
# ID_MAX characters, no control characters. In a path, a slash may be sent as is or
# percent-encoded (%2F); every answer echoes the id as sent.
ID_MAX = 128
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
ID_TEXT = (f"1 to {ID_MAX} characters, any but control characters (slashes, dots and "
           "Unicode letters included)")
Identifier = Annotated[str, Field(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN,
                                  description=ID_TEXT)]
# A time with its offset (RFC 3339): a naive time is refused, never taken as UTC.
Timestamp = Annotated[AwareDatetime, Field(
    description="RFC 3339 date-time with an offset (Z or +01:00); a naive time is refused")]
HierarchyName = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Out(BaseModel):
    """An answer's part: every key it may carry is declared (``additionalProperties:
    false`` in the OpenAPI document), so the document is the whole contract."""

    model_config = ConfigDict(extra="forbid")


def _describe(key: str, inp: InputSpec) -> str:
    parts = [inp.description or key]
    if inp.unit and inp.unit != "1":
        parts.append(f"unit {inp.unit}")
    if inp.choices is not None:
        parts.append("one of " + ", ".join(inp.choice_names))
    elif inp.min is not None or inp.max is not None:
        parts.append(f"range [{fmt(inp.min)}, {fmt(inp.max)}]")
    if inp.default is not None:
        parts.append(f"default {inp.default}")
    return "; ".join(parts)


def parameter_catalogue(specs: list[TwinSpec]) -> str:
    """Markdown list of every order parameter of the served specs, for the OpenAPI text."""
    lines = []
    for spec in specs:
        lines.append(f"**{spec.name}** (spec version {spec.version}):")
        for key, inp in spec.inputs.items():
            lines.append(f"- `{key}` ({inp.source}): {_describe(key, inp)}")
        q = spec.require_quantity()
        lines.append(f"- `planned_quantity`: {q.unit}, range [{fmt(q.min)}, {fmt(q.max)}]")
    return "\n".join(lines)


class JobOrderParameter(_In):
    id: str = Field(description="Input id of the twin spec (see the list above)")
    value: Scalar
    unit: str | None = Field(None, description=(
        "The value's unit (default: the spec's): UCUM, UNECE Rec 20 or pint spellings "
        "(um, µm, 4H, mm, MMT, 1/min, rpm, Cel, degC, ...), converted to the spec's unit; "
        "one of another dimension is a 422"))


class QualitySpecIn(_In):
    characteristic_id: str
    lsl: float | None = None
    target: float | None = None
    usl: float | None = None
    unit: str | None = None
    critical: bool = False


class EquipmentRequirement(_In):
    """Equipment an order may run on (ISA-95 equipment requirement): every key given must
    match; an order may run on equipment that matches any of its requirements."""

    equipment_id: Identifier | None = None
    site: HierarchyName | None = None
    area: HierarchyName | None = None
    work_center: HierarchyName | None = None


class OperationIn(_In):
    """What the order's pass is: its type decides which quality characteristics are
    checked and against what (the spec's ``operations``)."""

    type: str = Field(min_length=1, max_length=64, description=(
        "An operation type of the spec (spindle: roughing, semi_finishing, finishing). A "
        "finishing pass is judged on the tolerances; a roughing or semi-finishing pass on "
        "the stock allowance it leaves, its roughness not at all"))
    stock_allowance: float | None = Field(None, ge=0, description=(
        "Stock left per side for the next pass (required where the type is judged on it)"))
    unit: str | None = Field(None, max_length=32, description=(
        "Unit of stock_allowance (default: the spec's stock unit, mm)"))


class JobOrderIn(_In):
    """An ISA-95 job order, as the MES sends it for assessment."""

    operations_request_id: str | None = None
    segment_id: str | None = None
    equipment_id: Identifier
    material_requirements: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    job_order_parameters: list[JobOrderParameter] = Field(max_length=200)
    planned_quantity: float = Field(gt=0)
    start_time: Timestamp | None = None
    priority: int | None = None
    quality_specs: list[QualitySpecIn] = Field(
        default_factory=list, max_length=100,
        description="Limits per characteristic; they override the spec's defaults",
    )
    operation: OperationIn | None = Field(None, description=(
        "The pass this order is; default: the spec's (finishing)"))
    execution_mode: ExecutionMode = "Production"
    equipment_requirements: list[EquipmentRequirement] = Field(
        default_factory=list, max_length=50,
        description="Where the order may run, for a reroute (default: the work center of "
                    "equipment_id, or the machines without a hierarchy when it has none)")


ExternalIdScheme = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
ExternalIdValue = Annotated[str, Field(min_length=1, max_length=256, pattern=ID_PATTERN)]


class BatchOrder(JobOrderIn):
    """A job order of a batch assessment: the order with its id."""

    job_order_id: Identifier


class BatchAssessmentIn(_In):
    orders: list[BatchOrder] = Field(min_length=1, max_length=200)


class AssetIn(_In):
    """A machine: which twin spec it runs, where it sits in the ISA-95 equipment
    hierarchy, its external ids and its current state. ``PUT`` replaces all of it (a
    key left out takes its default); ``PATCH`` changes only what it names."""

    asset_type: str = Field(min_length=1, max_length=128, description="Twin spec name")
    description: str = Field("", max_length=1000)
    site: HierarchyName | None = Field(None, description="ISA-95 site")
    area: HierarchyName | None = Field(None, description="ISA-95 area, within the site")
    work_center: HierarchyName | None = Field(
        None, description="ISA-95 work center (a cell or line), within the area")
    external_ids: dict[ExternalIdScheme, ExternalIdValue] = Field(
        default_factory=dict, max_length=20,
        description="Ids of the asset in other systems, e.g. cmms_tag, aas_id; each "
                    "identifies one asset (GET /v1/assets?cmms_tag=...)")
    state: dict[str, float] = Field(
        default_factory=dict, description="State inputs of the spec (tool_wear, ...)"
    )
    state_measured_at: Timestamp | None = Field(
        None, description="When the state was measured (default: now)"
    )
    environment: dict[str, float] = Field(
        default_factory=dict, description="Environment inputs (ambient_temperature, ...)"
    )
    machine: dict[str, float] = Field(
        default_factory=dict,
        description="The machine's own constants, inputs of source machine (for a spindle: "
                    "rated_power, spindle_stiffness, spindle_natural_frequency); each left out "
                    "takes the spec's default")
    device_health: NE107 | None = Field(
        None, description="Set CHECK_FUNCTION or FAILURE by hand; NORMAL clears them"
    )


class AssetPatch(_In):
    """A JSON Merge Patch (RFC 7396) of an asset: what it names changes, the rest stays.
    ``null`` removes an external id, clears a hierarchy level, or returns a state,
    environment or machine input to the spec's default. A patch of ``state`` without
    ``state_measured_at`` is dated now."""

    asset_type: str | None = Field(None, description="Must equal the asset's type")
    description: str | None = Field(None, max_length=1000)
    site: HierarchyName | None = None
    area: HierarchyName | None = None
    work_center: HierarchyName | None = None
    external_ids: dict[ExternalIdScheme, ExternalIdValue | None] | None = Field(
        None, max_length=20)
    state: dict[str, float | None] | None = None
    state_measured_at: Timestamp | None = None
    environment: dict[str, float | None] | None = None
    machine: dict[str, float | None] | None = None
    device_health: NE107 | None = None


class MeasuredQuality(_In):
    characteristic_id: str
    value: float
    unit: str | None = None


class MeasuredSample(_In):
    """One measured value of one characteristic on one part (for SPC): the residual of a
    characteristic reduces its samples as its KPI reduces the trajectory (the largest for a
    maximum, the latest for a final value, the mean for a mean)."""

    characteristic_id: str
    value: float
    unit: str | None = None
    measured_at: Timestamp | None = None
    part_id: str | None = Field(None, max_length=128, description="Serial number of the part")


class ToolChange(_In):
    removed: str | None = Field(None, max_length=128, description="Tool id taken out")
    mounted: str | None = Field(None, max_length=128, description="Tool id put in")
    at: Timestamp | None = None
    reason: Literal["worn", "broken", "planned", "automatic"] = Field(
        description="automatic: the control's own tool-life management changed it")


class ToolReport(_In):
    mounted: list[str] = Field(default_factory=list, max_length=100,
                               description="Tool ids mounted when the order started")
    changes: list[ToolChange] = Field(default_factory=list, max_length=100)


class CompletionIn(_In):
    """What happened on the shop floor when the order ended: an ISA-95 job response.

    Quantities: ``good_quantity`` + ``scrap_quantity`` + ``rework_quantity`` are the parts
    made; ``parts_made`` alone is still taken (all counted good). ``result`` follows the job
    end states of OPC 40001-3 (Machinery Job Management): Successful or Unsuccessful.
    """

    equipment_id: Identifier
    job_response_id: Identifier | None = Field(
        None, description="The MES's id of this response (default: one is made up)")
    result: JobResult = "Successful"
    actual_start_time: Timestamp | None = None
    actual_end_time: Timestamp | None = Field(
        None, description="When the order ended (default: now); finished_at is the same")
    parts_made: int | None = Field(None, ge=0, description="Good + scrap + rework")
    good_quantity: int | None = Field(None, ge=0)
    scrap_quantity: int = Field(0, ge=0)
    rework_quantity: int = Field(0, ge=0)
    measured_quality: list[MeasuredQuality] = Field(
        default_factory=list, max_length=100,
        description="One value per characteristic (the samples are the richer form)")
    samples: list[MeasuredSample] = Field(default_factory=list, max_length=10_000)
    tools: ToolReport | None = None
    tool_changed: bool = Field(False, description="A new tool was mounted after the order")
    tool_broken: bool = Field(False, description="The tool broke during the order")
    maintenance_done: list[str] = Field(
        default_factory=list, description="Actions done after the order (replace_tool, ...)"
    )
    measured_state: dict[str, float] = Field(
        default_factory=dict, description="Measured state inputs (tool_wear from a probe)"
    )
    finished_at: Timestamp | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CompletionIn:
        split = [self.good_quantity, self.scrap_quantity, self.rework_quantity]
        if self.good_quantity is not None:
            total = sum(q or 0 for q in split)
            if self.parts_made is not None and self.parts_made != total:
                raise ValueError(f"parts_made {self.parts_made} is not good + scrap + "
                                 f"rework = {total}")
            self.parts_made = total
        elif self.parts_made is None:
            if self.scrap_quantity or self.rework_quantity:
                raise ValueError("good_quantity is needed beside scrap and rework quantities")
            raise ValueError("parts_made or good_quantity is needed")
        if (self.finished_at is not None and self.actual_end_time is not None
                and self.finished_at != self.actual_end_time):
            raise ValueError("finished_at and actual_end_time differ; send one")
        self.actual_end_time = self.actual_end_time or self.finished_at
        if (self.actual_start_time is not None and self.actual_end_time is not None
                and self.actual_start_time > self.actual_end_time):
            raise ValueError("actual_start_time is after actual_end_time")
        return self

    @property
    def made(self) -> int:
        return int(self.parts_made or 0)

    @property
    def tool_was_changed(self) -> bool:
        return self.tool_changed or bool(self.tools and self.tools.changes)


def _webhook_url(value: str) -> str:
    from serving._urls import check_webhook_url

    return check_webhook_url(value)


WebhookUrl = Annotated[str, Field(
    min_length=1, max_length=2048, json_schema_extra={"format": "uri"},
    description="http:// or https:// with a host name or IP address; no user:password@, "
    "no #fragment"), AfterValidator(_webhook_url)]
WebhookEventTypes = Annotated[list[str], Field(
    max_length=64, description="The event types to deliver (io.assettwin.*); empty: every "
    "type")]
MaxBacklog = Annotated[int, Field(
    ge=1, le=100_000, description="Pending deliveries kept at most; past it the oldest are "
    "dead-lettered (listed and replayable)")]
WebhookDescription = Annotated[str, Field(max_length=1000)]


class WebhookIn(_In):
    url: WebhookUrl
    event_types: WebhookEventTypes = Field(default_factory=list)
    description: WebhookDescription = ""
    max_backlog: MaxBacklog = 1000


class WebhookPatch(_In):
    """A JSON Merge Patch (RFC 7396) of a webhook: a key left out stays as it is; null
    resets ``description`` (to "") and ``event_types`` (to every type); ``url``,
    ``active`` and ``max_backlog`` cannot be removed."""

    url: WebhookUrl | None = None
    event_types: WebhookEventTypes | None = None
    description: WebhookDescription | None = None
    max_backlog: MaxBacklog | None = None
    active: bool | None = Field(None, description="false: no deliveries are queued or sent "
                                "until it is true again")

    @field_validator("url", "active", "max_backlog", mode="before")
    @classmethod
    def _kept(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            raise ValueError(f"{info.field_name} cannot be removed: send a value or leave "
                             "the key out")
        return value


class SecretRotationIn(_In):
    grace_s: int = Field(
        86_400, ge=0, le=604_800, description="How long the old secret keeps signing beside "
        "the new one, in seconds (default one day, at most seven; 0: not at all)")


class DeadLetterReplayIn(_In):
    event_seqs: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, min_length=1, max_length=1000, description="The dead letters to send again, "
        "by event seq; left out: all of them, oldest first, as many as max_backlog has room "
        "for")


class ReloadIn(_In):
    """Which bundle to serve a model from; without ``source``, its current source again
    (a registry alias is resolved anew, so a newly promoted version is picked up)."""

    source: str | None = Field(
        None, min_length=1, max_length=2048,
        description="Bundle folder or models:/<name>@<alias> (default: the current source)",
    )

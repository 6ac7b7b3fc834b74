"""The ``data`` of each event type, as the OpenAPI document's ``webhooks`` section and
``GET /v1/events`` declare it (``EVENT_DATA``): what the store's emitters write for a
type is validated against these in the tests, so the document is the payload's
contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from serving._predict_schemas import ModelRef
from serving._responses import AssetAdvisory, AssetOut, Number, PreviousModel, Timestamp
from serving._schemas import NE107, _Out
from serving._work_order_responses import DecisionOut, DriftOut, PolicyRef

__all__ = ["EVENT_DATA"]


class DecisionIssuedData(_Out):
    """``io.assettwin.decision.issued``: an assessment answered (subject work-order/<id>)."""

    job_order_id: str
    equipment_id: str
    decision: DecisionOut
    model: ModelRef | None = Field(description="null: no model serves the asset type")
    policy: PolicyRef


class AdvisoryRaisedData(AssetAdvisory):
    """``io.assettwin.advisory.raised``: an assessment predicts a maintenance limit is
    reached (subject asset/<id>)."""

    equipment_id: str


class AdvisoryClearedData(_Out):
    """``io.assettwin.advisory.cleared``: the maintenance was reported done, or an
    assessment no longer predicts the limit (subject asset/<id>)."""

    equipment_id: str
    job_order_id: str = Field(description="The order whose assessment or completion cleared it")
    action: str
    kpi: str
    raised_by: str | None = Field(description="The order whose assessment raised it")
    raised_at: Timestamp | None
    cleared_because: Literal["maintenance_done", "not_predicted"]


class ThresholdCrossedData(_Out):
    """``io.assettwin.asset.threshold_crossed``: a completion moved the asset's NE 107
    status (subject asset/<id>)."""

    equipment_id: str
    from_: NE107 = Field(alias="from")
    to: NE107
    health_index: float
    state: dict[str, Number]


class DriftDetectedData(DriftOut):
    """``io.assettwin.drift.detected``: a completion's residuals show drift (subject
    model/<name>)."""

    model: str


class ModelActivatedData(_Out):
    """``io.assettwin.model.activated``: a model is served from a new bundle (subject
    model/<name>)."""

    activation_id: int
    name: str
    source: str
    version: str
    bundle_hash: str
    previous: PreviousModel | None
    changed: bool


class AssetUpdatedData(AssetOut):
    """``io.assettwin.asset.updated``: the asset as written by a PUT or a PATCH (subject
    asset/<id>)."""

    changed_by: Literal["PUT", "PATCH"]


class AssetRetiredData(_Out):
    """``io.assettwin.asset.retired``: the asset was retired by a DELETE (subject
    asset/<id>)."""

    equipment_id: str
    retired_at: Timestamp


class WebhookDeadLetteredData(_Out):
    """``io.assettwin.webhook.dead_lettered``: deliveries to a webhook were given up
    (subject webhook/<id>); they stay replayable (POST
    /v1/webhooks/{webhook_id}/dead-letters:replay)."""

    webhook_id: str
    reason: Literal["max_backlog", "max_attempts", "permanent"] = Field(
        description="max_backlog: the queue was full, the oldest deliveries were dropped "
                    "untried; max_attempts: retried until the attempts ran out; permanent: "
                    "the receiver's answer said a retry cannot succeed")
    count: int = Field(ge=1, description="Deliveries dead-lettered")
    first_event_seq: int = Field(description="seq of the first event among them")
    last_event_seq: int = Field(description="seq of the last event among them")
    max_backlog: int | None = Field(description="The bound that was reached "
                                                "(max_backlog only)")
    last_error: str | None = Field(description="The last attempt's error (null for "
                                               "max_backlog)")


class WebhookDisabledData(_Out):
    """``io.assettwin.webhook.disabled``: the dispatcher deactivated a webhook whose
    deliveries kept dying (subject webhook/<id>); PATCH it active again once fixed."""

    webhook_id: str
    disabled_reason: str


# The data of the event types whose payload is declared; another type's data is an object.
EVENT_DATA: dict[str, type[BaseModel]] = {
    "io.assettwin.decision.issued": DecisionIssuedData,
    "io.assettwin.advisory.raised": AdvisoryRaisedData,
    "io.assettwin.advisory.cleared": AdvisoryClearedData,
    "io.assettwin.asset.threshold_crossed": ThresholdCrossedData,
    "io.assettwin.drift.detected": DriftDetectedData,
    "io.assettwin.model.activated": ModelActivatedData,
    "io.assettwin.asset.updated": AssetUpdatedData,
    "io.assettwin.asset.retired": AssetRetiredData,
    "io.assettwin.webhook.dead_lettered": WebhookDeadLetteredData,
    "io.assettwin.webhook.disabled": WebhookDisabledData,
}

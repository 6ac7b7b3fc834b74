"""Assets: the machines the MES runs orders on, their state and their health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from serving._errors import FieldError, NotFound
from serving._responses import AssetList, AssetOut, answers
from serving._schemas import AssetIn
from serving.api.deps import OrdersCaller, aware, ctx_of, no_asset, now
from serving.domain.assess import AssetView, health_index, health_status
from serving.domain.orders import check_asset_values
from serving.store._audit import append_audit
from serving.store._outbox import ASSET_UPDATED, emit
from serving.store._tables import Asset

router = APIRouter(tags=["assets"])


def asset_view(row: Asset) -> AssetView:
    return AssetView(row.equipment_id, row.asset_type, dict(row.state),
                     dict(row.capabilities.get("environment", {})),
                     aware(row.state_measured_at), row.device_health)


def asset_out(row: Asset) -> dict[str, Any]:
    return {
        "equipment_id": row.equipment_id,
        "asset_type": row.asset_type,
        "description": row.description,
        "external_ids": row.external_ids,
        "state": row.state,
        "state_measured_at": aware(row.state_measured_at).isoformat(),
        "environment": row.capabilities.get("environment", {}),
        "device_health": row.device_health,
        "health_index": row.health_index,
        "parts_made": row.parts_made,
        "advisories": row.capabilities.get("advisories", []),
        "revision": row.revision,
    }


@router.put("/v1/assets/{equipment_id}", operation_id="putAsset",
            **answers(AssetOut, 400, 401, 403, 404, 413, 422))
def put_asset(equipment_id: str, body: AssetIn, request: Request,
              caller: OrdersCaller) -> dict[str, Any]:
    ctx = ctx_of(request)
    model = ctx.models.find(body.asset_type)
    if model is None:
        raise NotFound(
            f"no model serves asset type {body.asset_type!r}",
            [FieldError("asset_type", body.asset_type,
                        "one of " + (", ".join(ctx.models.names()) or "(none loaded)"))])
    spec = model.spec
    state = check_asset_values(spec, body.state, "state", path="state")
    env = check_asset_values(spec, body.environment, "environment", path="environment")
    t = now()
    with ctx.store.session() as s:
        row = s.get(Asset, equipment_id, with_for_update=True)
        created = row is None
        if row is None:
            row = Asset(equipment_id=equipment_id, asset_type=body.asset_type,
                        state_measured_at=t, capabilities={}, revision=0)
            s.add(row)
        row.asset_type = body.asset_type
        row.description = body.description
        row.external_ids = body.external_ids
        row.state = state
        row.state_measured_at = body.state_measured_at or t
        row.capabilities = {**row.capabilities, "environment": env}
        current = body.device_health or (row.device_health if not created else "NORMAL")
        if body.device_health == "NORMAL":
            current = "NORMAL"
        row.device_health = health_status(state, ctx.policy, current)
        row.health_index = health_index(state, ctx.policy)[0]
        row.revision = (row.revision or 0) + 1
        row.updated_at = t
        s.flush()
        out = asset_out(row)
        append_audit(s, kind="asset", subject=f"asset/{equipment_id}",
                     caller=caller.name, inputs=body.model_dump(mode="json"),
                     outputs=out)
        emit(s, type=ASSET_UPDATED, subject=f"asset/{equipment_id}", data=out,
             source=ctx.settings.event_source)
    return out


@router.get("/v1/assets/{equipment_id}", operation_id="getAsset",
            **answers(AssetOut, 401, 403, 404, 422))
def get_asset(equipment_id: str, request: Request, caller: OrdersCaller) -> dict[str, Any]:
    with ctx_of(request).store.session(readonly=True) as s:
        row = s.get(Asset, equipment_id)
        if row is None:
            raise no_asset(equipment_id)
        return asset_out(row)


@router.get("/v1/assets", operation_id="listAssets", **answers(AssetList, 401, 403, 422))
def list_assets(request: Request, caller: OrdersCaller) -> dict[str, Any]:
    with ctx_of(request).store.session(readonly=True) as s:
        rows = s.scalars(select(Asset).order_by(Asset.equipment_id)).all()
        return {"assets": [asset_out(a) for a in rows]}

"""Assets: the machines the MES runs orders on, where they sit in the ISA-95 equipment
hierarchy, their state and their health.

Writes never erase what they do not name. Every answer carries the asset's ``ETag``
(its revision); ``PATCH`` (JSON Merge Patch, RFC 7396) changes only the keys it names and
honours ``If-Match``; ``PUT`` replaces the whole asset and so needs ``If-Match`` once the
asset exists (428 without it, 412 when it names an older version), because a replacement
built from a stale read would undo what changed since. ``DELETE`` retires an asset: it
stays readable for the audit trail and is neither assessed nor offered as an alternate.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from serving._errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from serving._responses import AssetList, AssetOut, answers
from serving._schemas import ID_MAX, ID_PATTERN, ID_TEXT, NE107, AssetIn, AssetPatch
from serving.api.deps import (
    CursorParam,
    Limit,
    OrdersCaller,
    aware,
    ctx_of,
    decode_cursor,
    merge_patch,
    merge_patch_body,
    no_asset,
    now,
    page,
)
from serving.domain.assess import AssetView, health_index, health_status
from serving.domain.orders import check_asset_values
from serving.store._assets import (
    asset_out,
    claim_external_ids,
    etag_of,
    find_assets,
    lock_asset,
)
from serving.store._audit import append_audit
from serving.store._outbox import ASSET_RETIRED, ASSET_UPDATED, emit
from serving.store._tables import Asset

__all__ = ["EquipmentId", "asset_out", "asset_view", "etag_of", "in_service", "router"]

router = APIRouter(tags=["assets"])

EquipmentId = Annotated[str, Path(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN,
                                  description=ID_TEXT + "; a slash may be sent as %2F")]
IfMatch = Annotated[str | None, Header(
    alias="If-Match", max_length=1024,
    description="The ETag of the version this write is based on (RFC 9110 13.1.1)")]
IfNoneMatch = Annotated[str | None, Header(
    alias="If-None-Match", max_length=16,
    description="'*': create only, 412 if the asset exists")]
_HIERARCHY = ("site", "area", "work_center")


def asset_view(row: Asset) -> AssetView:
    return AssetView(row.equipment_id, row.asset_type, dict(row.state),
                     dict(row.capabilities.get("environment", {})),
                     aware(row.state_measured_at), row.device_health,
                     dict(row.capabilities.get("machine", {})))


def _matches(if_match: str, row: Asset) -> bool:
    """Strong comparison (RFC 9110 13.1.1): ``*`` or one of the listed tags; a weak tag
    never matches."""
    tags = [t.strip() for t in if_match.split(",")]
    return "*" in tags or etag_of(row) in tags


def _check_precondition(row: Asset, if_match: str | None) -> None:
    if if_match is not None and not _matches(if_match, row):
        raise PreconditionFailed(
            f"asset {row.equipment_id!r} is at {etag_of(row)}; If-Match names {if_match}",
            [FieldError("If-Match", if_match, f"the current ETag {etag_of(row)}")])


def in_service(row: Asset) -> None:
    if row.retired_at is not None:
        raise Conflict(f"asset {row.equipment_id!r} was retired at "
                       f"{aware(row.retired_at).isoformat()}",
                       [FieldError("equipment_id", row.equipment_id, "an asset in service")])


def _answer(response: Response, row: Asset) -> dict[str, Any]:
    out = asset_out(row)
    response.headers["ETag"] = out["etag"]
    return out


def _spec_of(request: Request, asset_type: str) -> Any:
    ctx = ctx_of(request)
    model = ctx.models.find(asset_type)
    if model is None:
        raise NotFound(
            f"no model serves asset type {asset_type!r}",
            [FieldError("asset_type", asset_type,
                        "one of " + (", ".join(ctx.models.names()) or "(none loaded)"))])
    return model.spec


def _health(row: Asset, state: dict[str, Any], asked: str | None, policy: Any) -> None:
    """The NE 107 status after a write: CHECK_FUNCTION or FAILURE are set by hand and
    stay until NORMAL is sent; the others follow the state."""
    current = asked or row.device_health or "NORMAL"
    row.device_health = health_status(state, policy, current)
    row.health_index = health_index(state, policy)[0]


def _write(request: Request, s: Any, row: Asset, caller: Any, *, kind: str,
           sent: dict[str, Any], external_ids: dict[str, str] | None) -> None:
    """The common end of PUT and PATCH: external ids claimed, revision bumped, audit record
    and ``asset.updated`` event in the transaction of the change."""
    ctx = ctx_of(request)
    if external_ids is not None:
        taken = claim_external_ids(s, row.equipment_id, external_ids)
        if taken:
            raise Conflict(
                "external id(s) already identify another asset",
                [FieldError(f"external_ids.{scheme}", value, f"an id no other asset has "
                            f"({value!r} is {holder!r}'s)") for scheme, value, holder in taken])
        row.external_ids = external_ids
    t = now()
    row.revision = (row.revision or 0) + 1
    row.updated_at = t
    s.flush()
    out = asset_out(row)
    append_audit(s, kind="asset", subject=f"asset/{row.equipment_id}", caller=caller.name,
                 inputs={"method": kind, "body": sent}, outputs=out)
    emit(s, type=ASSET_UPDATED, subject=f"asset/{row.equipment_id}",
         data={**out, "changed_by": kind}, source=ctx.settings.event_source)


@router.put("/v1/assets/{equipment_id:path}", operation_id="replaceAsset",
            **answers(AssetOut, 400, 401, 403, 404, 409, 412, 413, 422, 428))
def put_asset(equipment_id: EquipmentId, body: AssetIn, request: Request, response: Response,
              caller: OrdersCaller, if_match: IfMatch = None,
              if_none_match: IfNoneMatch = None) -> dict[str, Any]:
    """Register an asset, or replace one: every key left out takes its default (state
    inputs the spec's default, no external ids). Replacing an existing asset needs
    ``If-Match`` with its current ETag; to change a few keys use PATCH."""
    ctx = ctx_of(request)
    spec = _spec_of(request, body.asset_type)
    state = check_asset_values(spec, body.state, "state", path="state")
    env = check_asset_values(spec, body.environment, "environment", path="environment")
    machine = check_asset_values(spec, body.machine, "machine", path="machine")
    t = now()
    with ctx.store.session() as s:
        row = lock_asset(s, equipment_id)
        if row is None:
            if if_match is not None and if_match.strip() != "":
                raise PreconditionFailed(
                    f"no asset {equipment_id!r} exists to match If-Match {if_match}",
                    [FieldError("If-Match", if_match, "no If-Match when creating")])
            row = Asset(equipment_id=equipment_id, asset_type=body.asset_type,
                        state_measured_at=t, capabilities={}, revision=0,
                        device_health="NORMAL", external_ids={})
            s.add(row)
        else:
            if if_none_match is not None and if_none_match.strip() == "*":
                raise PreconditionFailed(
                    f"asset {equipment_id!r} exists (If-None-Match: *)",
                    [FieldError("If-None-Match", if_none_match, "an id not registered yet")])
            in_service(row)
            if if_match is None:
                raise PreconditionRequired(
                    f"PUT replaces every key of asset {equipment_id!r}; send If-Match "
                    f"{etag_of(row)} (its current ETag, from GET) or use PATCH to change "
                    "only what the body names",
                    [FieldError("If-Match", None, f"the asset's current ETag {etag_of(row)}")])
            _check_precondition(row, if_match)
            if row.asset_type != body.asset_type:
                raise Conflict(
                    f"asset {equipment_id!r} is a {row.asset_type}; its type cannot change "
                    "(retire it with DELETE and register the new machine under a new id)",
                    [FieldError("asset_type", body.asset_type, repr(row.asset_type))])
        row.description = body.description
        row.site, row.area, row.work_center = body.site, body.area, body.work_center
        row.state = state
        row.state_measured_at = body.state_measured_at or t
        row.capabilities = {**(row.capabilities or {}), "environment": env, "machine": machine}
        _health(row, state, body.device_health, ctx.policy)
        _write(request, s, row, caller, kind="PUT", sent=body.model_dump(mode="json"),
               external_ids=dict(body.external_ids))
        return _answer(response, row)


def _merge_values(current: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """RFC 7396 on a flat map: a null member removes the key, a null map removes all."""
    if patch is None:
        return {}
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out




@router.patch("/v1/assets/{equipment_id:path}", operation_id="patchAsset",
              openapi_extra=merge_patch_body(AssetPatch),
              **answers(AssetOut, 400, 401, 403, 404, 409, 412, 413, 415, 422))
def patch_asset(
    equipment_id: EquipmentId, request: Request, response: Response, caller: OrdersCaller,
    body: Annotated[AssetPatch, Depends(merge_patch(AssetPatch))], if_match: IfMatch = None,
) -> dict[str, Any]:
    """Change only what the body names (JSON Merge Patch, RFC 7396, sent as
    ``application/merge-patch+json`` or ``application/json``). ``If-Match`` is honoured
    when sent (412 if the asset changed since); without it the named keys are written
    whatever changed elsewhere, which is what a gateway reporting one reading wants."""
    ctx = ctx_of(request)
    sent = body.model_dump(mode="json", exclude_unset=True)
    with ctx.store.session() as s:
        row = lock_asset(s, equipment_id)
        if row is None:
            raise no_asset(equipment_id)
        in_service(row)
        _check_precondition(row, if_match)
        if "asset_type" in sent and sent["asset_type"] != row.asset_type:
            raise Conflict(
                f"asset {equipment_id!r} is a {row.asset_type}; its type cannot change",
                [FieldError("asset_type", sent["asset_type"], repr(row.asset_type))])
        spec = _spec_of(request, row.asset_type)
        state, env = dict(row.state), dict(row.capabilities.get("environment", {}))
        if "state" in sent:
            merged = _merge_values(state, sent["state"])
            state = check_asset_values(spec, merged, "state", path="state")
            row.state = state
            row.state_measured_at = body.state_measured_at or now()
        elif "state_measured_at" in sent and body.state_measured_at is not None:
            row.state_measured_at = body.state_measured_at
        if "environment" in sent:
            merged = _merge_values(env, sent["environment"])
            env = check_asset_values(spec, merged, "environment", path="environment")
            row.capabilities = {**row.capabilities, "environment": env}
        if "machine" in sent:
            merged = _merge_values(dict(row.capabilities.get("machine", {})), sent["machine"])
            machine = check_asset_values(spec, merged, "machine", path="machine")
            row.capabilities = {**row.capabilities, "machine": machine}
        if "description" in sent:
            row.description = sent["description"] or ""
        for level in _HIERARCHY:
            if level in sent:
                setattr(row, level, sent[level])
        external = None
        if "external_ids" in sent:
            external = _merge_values(dict(row.external_ids or {}), sent["external_ids"])
        _health(row, state, sent.get("device_health"), ctx.policy)
        _write(request, s, row, caller, kind="PATCH", sent=sent, external_ids=external)
        return _answer(response, row)


@router.delete("/v1/assets/{equipment_id:path}", operation_id="retireAsset",
               **answers(AssetOut, 401, 403, 404, 412, 422))
def retire_asset(equipment_id: EquipmentId, request: Request, response: Response,
                 caller: OrdersCaller, if_match: IfMatch = None) -> dict[str, Any]:
    """Retire the asset: kept, with its audit trail and history, but no longer assessed,
    offered as an alternate or listed (unless ``include_retired``). Retiring a retired
    asset answers it as it is."""
    ctx = ctx_of(request)
    with ctx.store.session() as s:
        row = lock_asset(s, equipment_id)
        if row is None:
            raise no_asset(equipment_id)
        if row.retired_at is not None:
            return _answer(response, row)
        _check_precondition(row, if_match)
        t = now()
        row.retired_at = t
        row.revision = (row.revision or 0) + 1
        row.updated_at = t
        s.flush()
        out = asset_out(row)
        append_audit(s, kind="asset", subject=f"asset/{equipment_id}", caller=caller.name,
                     inputs={"method": "DELETE"}, outputs=out)
        emit(s, type=ASSET_RETIRED, subject=f"asset/{equipment_id}",
             data={"equipment_id": equipment_id, "retired_at": out["retired_at"]},
             source=ctx.settings.event_source)
        return _answer(response, row)


@router.get("/v1/assets/{equipment_id:path}", operation_id="getAsset",
            **answers(AssetOut, 401, 403, 404, 422))
def get_asset(equipment_id: EquipmentId, request: Request, response: Response,
              caller: OrdersCaller) -> dict[str, Any]:
    with ctx_of(request).store.session(readonly=True) as s:
        row = s.get(Asset, equipment_id)
        if row is None:
            raise no_asset(equipment_id)
        return _answer(response, row)


Filter = Annotated[str | None, Query(min_length=1, max_length=256)]


@router.get("/v1/assets", operation_id="listAssets", **answers(AssetList, 401, 403, 422))
def list_assets(
    request: Request, caller: OrdersCaller, limit: Limit = 100, cursor: CursorParam = None,
    asset_type: Filter = None, site: Filter = None, area: Filter = None,
    work_center: Filter = None,
    cell: Annotated[str | None, Query(min_length=1, max_length=256,
                                      description="Same as work_center")] = None,
    cmms_tag: Filter = None, aas_id: Filter = None,
    external_id: Annotated[str | None, Query(
        min_length=3, max_length=330, pattern=r"^[a-z0-9_]+:.+$",
        description="Any external id, as scheme:value (erp_id:4711)")] = None,
    device_health: Annotated[NE107 | None, Query()] = None,
    include_retired: bool = False,
) -> dict[str, Any]:
    """Assets matching every filter given, by equipment id, one page at a time."""
    if cell is not None and work_center is not None and cell != work_center:
        raise BadRequest("cell and work_center name the same level", [FieldError(
            "query.cell", cell, f"the same as work_center {work_center!r}, or left out")])
    external = {k: v for k, v in (("cmms_tag", cmms_tag), ("aas_id", aas_id)) if v}
    if external_id is not None:
        scheme, _, value = external_id.partition(":")
        external[scheme] = value
    after = decode_cursor(cursor, str, "/v1/assets")
    with ctx_of(request).store.session(readonly=True) as s:
        rows = find_assets(s, after=after, limit=limit + 1, asset_type=asset_type, site=site,
                           area=area, work_center=work_center or cell, external=external,
                           device_health=device_health, include_retired=include_retired)
        kept, next_cursor = page(rows, limit, lambda a: a.equipment_id)
        return {"assets": [asset_out(a) for a in kept], "next_cursor": next_cursor}

"""The HTTP routes: health, models and raw predictions, assets, work orders, events.

Routes are thin: they check credentials and the body, call the assessment and the
store, and write the audit record and the events in the same transaction as the
change they report.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import select

from physics.spec import TwinSpec
from serving._assess import AssetView, OrderView, assess, health_index, health_status
from serving._auth import DEV_CALLER, Caller, presented_token
from serving._completion import end_state, residuals
from serving._errors import Conflict, FieldError, NotFound
from serving._fastpath import predict_answer
from serving._orders import check_asset_values, order_values, quality_limits
from serving._responses import (
    AssessmentOut,
    AssetList,
    AssetOut,
    CompletionOut,
    EventList,
    HealthOut,
    ModelList,
    ModelOut,
    ReadyOut,
    ReloadOut,
    WebhookCreated,
    WebhookList,
    WorkOrderOut,
    answers,
)
from serving._schemas import (
    AssetIn,
    CompletionIn,
    JobOrderIn,
    PredictOut,
    ReloadIn,
    WebhookIn,
    predict_request_model,
)
from serving._settings import Settings
from serving.store._assets import lock_asset
from serving.store._audit import append_audit
from serving.store._outbox import (
    ADVISORY_CLEARED,
    ADVISORY_RAISED,
    ASSET_UPDATED,
    DECISION_ISSUED,
    DRIFT_DETECTED,
    THRESHOLD_CROSSED,
    emit,
    events_after,
)
from serving.store._tables import Assessment, Asset, Completion, IdempotencyRecord, Webhook

__all__ = ["include"]


def _ctx(request: Request) -> Any:
    return request.app.state.ctx


def _caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Caller:
    ctx = _ctx(request)
    if ctx.settings.dev_mode:
        return DEV_CALLER
    caller: Caller = ctx.keys.check(presented_token(authorization, x_api_key))
    return caller


def scope(name: str) -> Any:
    def check(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
        caller.require(name)
        return caller

    return Depends(check)


PredictCaller = Annotated[Caller, scope("predict")]
OrdersCaller = Annotated[Caller, scope("work-orders")]
AdminCaller = Annotated[Caller, scope("admin")]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)]
MAX_SEQ = 2**63 - 1  # event numbers are BIGINTs: a larger cursor is no cursor


def _json(body: Any) -> Response:
    """A JSON answer encoded by orjson (FastAPI's own encoder walks a big assessment
    several times slower); the same JSON for the dicts these routes build."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY
                                 | orjson.OPT_NON_STR_KEYS), media_type="application/json")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _body_hash(body: Any) -> str:
    data = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _replay(session: Any, caller: Caller, key: str | None, request: Request,
            body: Any) -> JSONResponse | None:
    """The stored answer of an earlier request with this key, or None to go on."""
    if key is None:
        return None
    row = session.get(IdempotencyRecord, (caller.name, key))
    if row is None:
        return None
    if row.request_hash != _body_hash(body) or row.path != request.url.path:
        raise Conflict(
            f"Idempotency-Key {key!r} was used for another request "
            f"({row.method} {row.path}) with another body",
            [FieldError("Idempotency-Key", key, "a new key for a new request")],
        )
    return JSONResponse(row.response, status_code=row.status_code,
                        headers={"Idempotency-Replayed": "true"})


def _remember(session: Any, caller: Caller, key: str | None, request: Request, body: Any,
              status: int, response: dict[str, Any]) -> None:
    if key is not None:
        session.add(IdempotencyRecord(
            caller=caller.name, key=key, method=request.method, path=request.url.path,
            request_hash=_body_hash(body), status_code=status, response=response))


def _no_asset(equipment_id: str) -> NotFound:
    return NotFound(f"no asset {equipment_id!r} is registered",
                    [FieldError("equipment_id", equipment_id,
                                "a registered asset (PUT /v1/assets/{equipment_id})")])


def _asset_view(row: Asset) -> AssetView:
    return AssetView(row.equipment_id, row.asset_type, dict(row.state),
                     dict(row.capabilities.get("environment", {})),
                     _aware(row.state_measured_at), row.device_health)


def _asset_out(row: Asset) -> dict[str, Any]:
    return {
        "equipment_id": row.equipment_id,
        "asset_type": row.asset_type,
        "description": row.description,
        "external_ids": row.external_ids,
        "state": row.state,
        "state_measured_at": _aware(row.state_measured_at).isoformat(),
        "environment": row.capabilities.get("environment", {}),
        "device_health": row.device_health,
        "health_index": row.health_index,
        "parts_made": row.parts_made,
        "advisories": row.capabilities.get("advisories", []),
        "revision": row.revision,
    }


# The prediction of an advisory, refreshed while it stays raised.
_ESTIMATE = ("due_by", "due_in_parts", "p_reached", "reason")


def _update_advisories(
    row: Asset, *, predicted: list[dict[str, Any]] | None, done: set[str],
    job_order_id: str, now: datetime,
) -> dict[str, list[dict[str, Any]]]:
    """Bring the asset's advisories (one per maintenance limit, ``kpi``) up to date, on
    the locked asset row; returns the ones raised and cleared, for ``_emit_advisories``.

    ``predicted``: the advisories of an assessment of ``job_order_id``; they replace the
    asset's (new ones are raised, missing ones cleared, kept ones get the new estimate),
    None leaves them as they are. ``done``: maintenance actions a completion reports;
    advisories asking for one of them are cleared.
    """
    current = {a["kpi"]: a for a in row.capabilities.get("advisories", [])}
    wanted = None if predicted is None else {a["kpi"]: a for a in predicted}
    raised: list[dict[str, Any]] = []
    cleared: list[dict[str, Any]] = []
    kept: dict[str, dict[str, Any]] = {}
    for kpi, a in current.items():
        if a["action"] in done:
            cleared.append({**a, "cleared_because": "maintenance_done"})
        elif wanted is not None and kpi not in wanted:
            cleared.append({**a, "cleared_because": "not_predicted"})
        else:
            fresh = (wanted or {}).get(kpi)
            kept[kpi] = a if fresh is None else {**a, **{k: fresh.get(k) for k in _ESTIMATE}}
    for kpi, a in (wanted or {}).items():
        if kpi not in current and a["action"] not in done:
            new = {"kpi": kpi, "action": a["action"], **{k: a.get(k) for k in _ESTIMATE},
                   "job_order_id": job_order_id, "raised_at": now.isoformat()}
            raised.append(new)
            kept[kpi] = new
    if list(kept.values()) != list(current.values()):
        row.capabilities = {**row.capabilities, "advisories": list(kept.values())}
    return {"raised": raised, "cleared": cleared}


def _emit_advisories(s: Any, row: Asset, changes: dict[str, list[dict[str, Any]]],
                     job_order_id: str, source: str) -> None:
    """``advisory.cleared`` and ``advisory.raised`` for ``changes``, subject asset/<id>;
    after the transaction's audit record (the lock order of ``serving.store._outbox``)."""
    subject = f"asset/{row.equipment_id}"
    for a in changes["cleared"]:
        emit(s, type=ADVISORY_CLEARED, subject=subject, source=source, data={
            "equipment_id": row.equipment_id, "job_order_id": job_order_id,
            "action": a["action"], "kpi": a["kpi"], "raised_by": a.get("job_order_id"),
            "raised_at": a.get("raised_at"), "cleared_because": a["cleared_because"]})
    for a in changes["raised"]:
        emit(s, type=ADVISORY_RAISED, subject=subject, source=source,
             data={"equipment_id": row.equipment_id, **a})


def _advisory_summary(changes: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {k: [{"kpi": a["kpi"], "action": a["action"]} for a in v]
            for k, v in changes.items()}


def include(app: FastAPI, specs: list[TwinSpec], settings: Settings,
            ) -> dict[str, tuple[str, Any]]:
    """Add every route to ``app``; returns the predict routes (path: model name and
    request model) for ``serving._fastpath.FastPredict``."""
    r = APIRouter()

    @r.get("/healthz", tags=["health"], response_model=HealthOut)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @r.get("/readyz", tags=["health"], response_model=ReadyOut,
           responses={503: {"model": ReadyOut, "description": "Not ready"}})
    def readyz(request: Request) -> JSONResponse:
        ctx = _ctx(request)
        checks: dict[str, Any] = {"models": ctx.models.names()}
        try:
            ctx.store.ping()
            checks["database"] = "ok"
        except Exception as exc:  # any driver error means not ready
            checks["database"] = f"unreachable: {type(exc).__name__}"
        ready = checks["database"] == "ok" and bool(checks["models"] or not settings.models)
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    @r.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics(request: Request) -> Response:
        ctx = _ctx(request)
        from serving._webhooks import backlog

        try:
            with ctx.store.session(readonly=True) as s:
                ctx.metrics.backlog.set(backlog(s))
        except Exception:  # the metrics page must render while the database is down
            pass
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    @r.get("/v1/models", tags=["models"], **answers(ModelList, 401, 403, 422))
    def models(request: Request, caller: PredictCaller) -> dict[str, Any]:
        return {"models": [m.describe() for m in _ctx(request).models.all()]}

    @r.get("/v1/models/{name}", tags=["models"], **answers(ModelOut, 401, 403, 404, 422))
    def model(name: str, request: Request, caller: PredictCaller) -> dict[str, Any]:
        described: dict[str, Any] = _ctx(request).models.get(name).describe()
        return described

    @r.post("/v1/models/{name}/reload", tags=["models"],
            **answers(ReloadOut, 400, 401, 403, 404, 409, 413, 422))
    def reload(name: str, request: Request, caller: AdminCaller,
               body: ReloadIn | None = None) -> dict[str, Any]:
        """Serve a new bundle (or the current source again) without dropping requests in
        flight; recorded as an activation, an audit record and a model.activated event,
        and followed by every worker. The same bundle again is allowed and recorded
        (``changed: false``)."""
        source = body.source if body is not None else None
        out: dict[str, Any] = _ctx(request).activations.reload(name, source, caller.name)
        return out

    fast: dict[str, tuple[str, Any]] = {}
    for spec in specs:
        path, body_model = _predict_route(r, spec, settings)
        fast[path] = (spec.name, body_model)

    @r.put("/v1/assets/{equipment_id}", tags=["assets"],
           **answers(AssetOut, 400, 401, 403, 404, 413, 422))
    def put_asset(equipment_id: str, body: AssetIn, request: Request,
                  caller: OrdersCaller) -> dict[str, Any]:
        ctx = _ctx(request)
        model = ctx.models.find(body.asset_type)
        if model is None:
            raise NotFound(
                f"no model serves asset type {body.asset_type!r}",
                [FieldError("asset_type", body.asset_type,
                            "one of " + (", ".join(ctx.models.names()) or "(none loaded)"))])
        spec = model.spec
        state = check_asset_values(spec, body.state, "state", path="state")
        env = check_asset_values(spec, body.environment, "environment", path="environment")
        now = _now()
        with ctx.store.session() as s:
            row = s.get(Asset, equipment_id, with_for_update=True)
            created = row is None
            if row is None:
                row = Asset(equipment_id=equipment_id, asset_type=body.asset_type,
                            state_measured_at=now, capabilities={}, revision=0)
                s.add(row)
            row.asset_type = body.asset_type
            row.description = body.description
            row.external_ids = body.external_ids
            row.state = state
            row.state_measured_at = body.state_measured_at or now
            row.capabilities = {**row.capabilities, "environment": env}
            current = body.device_health or (row.device_health if not created else "NORMAL")
            if body.device_health == "NORMAL":
                current = "NORMAL"
            row.device_health = health_status(state, ctx.policy, current)
            row.health_index = health_index(state, ctx.policy)[0]
            row.revision = (row.revision or 0) + 1
            row.updated_at = now
            s.flush()
            out = _asset_out(row)
            append_audit(s, kind="asset", subject=f"asset/{equipment_id}",
                         caller=caller.name, inputs=body.model_dump(mode="json"),
                         outputs=out)
            emit(s, type=ASSET_UPDATED, subject=f"asset/{equipment_id}", data=out,
                 source=settings.event_source)
        return out

    @r.get("/v1/assets/{equipment_id}", tags=["assets"],
           **answers(AssetOut, 401, 403, 404, 422))
    def get_asset(equipment_id: str, request: Request, caller: OrdersCaller) -> dict[str, Any]:
        with _ctx(request).store.session(readonly=True) as s:
            row = s.get(Asset, equipment_id)
            if row is None:
                raise _no_asset(equipment_id)
            return _asset_out(row)

    @r.get("/v1/assets", tags=["assets"], **answers(AssetList, 401, 403, 422))
    def list_assets(request: Request, caller: OrdersCaller) -> dict[str, Any]:
        with _ctx(request).store.session(readonly=True) as s:
            rows = s.scalars(select(Asset).order_by(Asset.equipment_id)).all()
            return {"assets": [_asset_out(a) for a in rows]}

    @r.post("/v1/work-orders/{job_order_id}/assessment", tags=["work orders"],
            **answers(AssessmentOut, 400, 401, 403, 404, 409, 413, 422))
    def assessment(job_order_id: str, body: JobOrderIn, request: Request,
                   caller: OrdersCaller, idempotency_key: IdemKey = None) -> Any:
        ctx = _ctx(request)
        # Reads only (the answer is stored by the second transaction, which looks for a
        # replay again): no write lock while the surrogate runs.
        with ctx.store.session(readonly=True) as s:
            replay = _replay(s, caller, idempotency_key, request, body)
            if replay is not None:
                return replay
            row = s.get(Asset, body.equipment_id)
            if row is None:
                raise _no_asset(body.equipment_id)
            asset = _asset_view(row)
            others = [
                _asset_view(a) for a in s.scalars(
                    select(Asset).where(Asset.asset_type == asset.asset_type,
                                        Asset.equipment_id != asset.equipment_id)
                    .order_by(Asset.equipment_id)).all()
                if a.device_health not in ("FAILURE", "CHECK_FUNCTION")
            ]
        model = ctx.models.find(asset.asset_type)
        now = _now()
        head: dict[str, Any] = {
            "job_order_id": job_order_id,
            "equipment_id": body.equipment_id,
            "execution_mode": body.execution_mode,
            "assessed_at": now.isoformat(),
            "policy": ctx.policy.ref(),
        }
        if model is None:
            result: dict[str, Any] = {"decision": {
                "type": "UNDECIDED", "reason_codes": ["MODEL_MISSING"], "advisory": True,
                "explanation": f"no model serves asset type {asset.asset_type!r}"}}
            head["model"] = None
        else:
            values, quantity = order_values(model.spec, body.job_order_parameters,
                                            body.planned_quantity, path="job_order_parameters")
            limits = quality_limits(model.spec, body.quality_specs)
            order = OrderView(job_order_id, values, quantity, limits,
                              _aware(body.start_time) if body.start_time else None)
            result = assess(model, ctx.policy, asset, order, others=others, now=now)
            head["model"] = {"name": model.name, "version": model.version,
                             "bundle_hash": model.bundle_hash}
        response = {**head, **result}
        kind = response["decision"]["type"]
        ctx.metrics.decisions.labels(kind).inc()
        with ctx.store.session() as s:
            replay = _replay(s, caller, idempotency_key, request, body)
            if replay is not None:  # a twin request won the race
                return replay
            # The asset keeps the advisories of its latest assessment (a what-if in
            # Simulation mode leaves them alone, and so does an UNDECIDED one: numbers
            # out of the training domain or from a stale state are no grounds to raise
            # or clear an advisory).
            changes: dict[str, list[dict[str, Any]]] = {"raised": [], "cleared": []}
            locked = None
            if ("maintenance" in response and body.execution_mode != "Simulation"
                    and kind != "UNDECIDED"):
                locked = lock_asset(s, body.equipment_id)
            if locked is not None:
                changes = _update_advisories(
                    locked, predicted=response["maintenance"]["advisories"], done=set(),
                    job_order_id=job_order_id, now=now)
                if changes["raised"] or changes["cleared"]:
                    locked.revision = (locked.revision or 0) + 1
                    locked.updated_at = now
            outputs: dict[str, Any] = {"decision": response["decision"]}
            if changes["raised"] or changes["cleared"]:
                outputs["advisories"] = _advisory_summary(changes)
            sent = body.model_dump(mode="json")
            s.add(Assessment(
                job_order_id=job_order_id, equipment_id=body.equipment_id, decision=kind,
                request=sent, response=response,
                model_version=head["model"] and head["model"]["version"],
                bundle_hash=head["model"] and head["model"]["bundle_hash"],
                policy_version=ctx.policy.version))
            append_audit(
                s, kind="assessment", subject=f"work-order/{job_order_id}",
                caller=caller.name, inputs=sent,
                outputs=outputs, idempotency_key=idempotency_key,
                model_version=head["model"] and head["model"]["version"],
                bundle_hash=head["model"] and head["model"]["bundle_hash"],
                policy_version=ctx.policy.version)
            emit(s, type=DECISION_ISSUED, subject=f"work-order/{job_order_id}",
                 data={"job_order_id": job_order_id, "equipment_id": body.equipment_id,
                       "decision": response["decision"], "model": head["model"],
                       "policy": head["policy"]},
                 source=settings.event_source)
            if locked is not None:
                _emit_advisories(s, locked, changes, job_order_id, settings.event_source)
            _remember(s, caller, idempotency_key, request, body, 200, response)
        return _json(response)

    @r.post("/v1/work-orders/{job_order_id}/completion", tags=["work orders"],
            **answers(CompletionOut, 400, 401, 403, 404, 409, 413, 422))
    def completion(job_order_id: str, body: CompletionIn, request: Request,
                   caller: OrdersCaller, idempotency_key: IdemKey = None) -> Any:
        ctx = _ctx(request)
        with ctx.store.session() as s:
            replay = _replay(s, caller, idempotency_key, request, body)
            if replay is not None:
                return replay
            # The asset row stays locked until the transaction ends: two completions for
            # one machine advance its state one after the other.
            row = lock_asset(s, body.equipment_id)
            if row is None:
                raise _no_asset(body.equipment_id)
            if s.get(Completion, job_order_id) is not None:
                raise Conflict(f"work order {job_order_id!r} is already completed",
                               [FieldError("job_order_id", job_order_id,
                                           "an order not completed yet")])
            last = s.scalars(select(Assessment).where(
                Assessment.job_order_id == job_order_id).order_by(Assessment.id.desc())
                .limit(1)).first()
            if last is None:
                raise Conflict(f"work order {job_order_id!r} was never assessed",
                               [FieldError("job_order_id", job_order_id,
                                           "an assessed order (POST .../assessment first)")])
            model = ctx.models.get(row.asset_type)
            order = JobOrderIn.model_validate(last.request)
            values, _ = order_values(model.spec, order.job_order_parameters,
                                     order.planned_quantity, path="job_order_parameters")
            asset = _asset_view(row)
            full = {**values, **asset.environment, **asset.state}
            before = dict(row.state)
            after, predicted = end_state(model, ctx.policy, full, body)
            found, drift = residuals(s, model, ctx.policy, body, predicted, job_order_id)
            old_health = row.device_health
            current = "FAILURE" if body.tool_broken and not (
                body.tool_changed or "replace_tool" in body.maintenance_done) else (
                "NORMAL" if old_health == "FAILURE" else old_health)
            done = set(body.maintenance_done) | ({"replace_tool"} if body.tool_changed else set())
            changes = _update_advisories(row, predicted=None, done=done,
                                         job_order_id=job_order_id, now=_now())
            row.state = after
            row.state_measured_at = body.finished_at or _now()
            row.parts_made = (row.parts_made or 0) + body.parts_made
            row.device_health = health_status(after, ctx.policy, current)
            row.health_index = health_index(after, ctx.policy)[0]
            row.revision = (row.revision or 0) + 1
            row.updated_at = _now()
            response = {
                "job_order_id": job_order_id, "equipment_id": body.equipment_id,
                "state_before": before, "state_after": after,
                "device_health": row.device_health, "health_index": row.health_index,
                "residuals": found, "drift": drift,
                "advisories_cleared": _advisory_summary(changes)["cleared"],
                "model": {"name": model.name, "version": model.version,
                          "bundle_hash": model.bundle_hash},
            }
            s.add(Completion(job_order_id=job_order_id, equipment_id=body.equipment_id,
                             request=body.model_dump(mode="json"), response=response,
                             state_before=before, state_after=after))
            append_audit(s, kind="completion", subject=f"work-order/{job_order_id}",
                         caller=caller.name, inputs=body.model_dump(mode="json"),
                         outputs=response, idempotency_key=idempotency_key,
                         model_version=model.version, bundle_hash=model.bundle_hash,
                         policy_version=ctx.policy.version)
            subject = f"asset/{body.equipment_id}"
            if row.device_health != old_health:
                emit(s, type=THRESHOLD_CROSSED, subject=subject, source=settings.event_source,
                     data={"equipment_id": body.equipment_id, "from": old_health,
                           "to": row.device_health, "health_index": row.health_index,
                           "state": after})
            for d in drift:
                emit(s, type=DRIFT_DETECTED, subject=f"model/{model.name}",
                     source=settings.event_source, data={"model": model.name, **d})
            _emit_advisories(s, row, changes, job_order_id, settings.event_source)
            _remember(s, caller, idempotency_key, request, body, 200, response)
        return _json(response)

    @r.get("/v1/work-orders/{job_order_id}", tags=["work orders"],
           **answers(WorkOrderOut, 401, 403, 404, 422))
    def work_order(job_order_id: str, request: Request, caller: OrdersCaller) -> Any:
        with _ctx(request).store.session(readonly=True) as s:
            rows = s.scalars(select(Assessment).where(Assessment.job_order_id == job_order_id)
                             .order_by(Assessment.id)).all()
            done = s.get(Completion, job_order_id)
            if not rows and done is None:
                raise NotFound(f"no work order {job_order_id!r} was assessed",
                               [FieldError("job_order_id", job_order_id, "an assessed order")])
            return {
                "job_order_id": job_order_id,
                "assessments": [{"id": a.id, "created_at": _aware(a.created_at).isoformat(),
                                 "request": a.request, "response": a.response} for a in rows],
                "completion": None if done is None else {"request": done.request,
                                                         "response": done.response},
            }

    @r.get("/v1/events", tags=["events"], **answers(EventList, 401, 403, 422))
    def events(request: Request, caller: OrdersCaller,
               after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        with _ctx(request).store.session(readonly=True) as s:
            rows = events_after(s, after_seq, limit=limit)
            return {"events": [e.envelope for e in rows],
                    "last_seq": rows[-1].seq if rows else after_seq}

    @r.post("/v1/webhooks", tags=["events"], status_code=201,
            **answers(WebhookCreated, 400, 401, 403, 413, 422))
    def add_webhook(body: WebhookIn, request: Request, caller: AdminCaller) -> dict[str, Any]:
        from serving._webhooks import new_secret

        hook = Webhook(id=uuid.uuid4().hex[:16], url=body.url, secret=new_secret(),
                       event_types=body.event_types, active=True)
        with _ctx(request).store.session() as s:
            s.add(hook)
            append_audit(s, kind="webhook", subject=f"webhook/{hook.id}", caller=caller.name,
                         inputs=body.model_dump(mode="json"), outputs={"id": hook.id})
        # The secret is shown once: the receiver verifies signatures with it.
        return {"id": hook.id, "url": hook.url, "event_types": hook.event_types,
                "secret": hook.secret}

    @r.get("/v1/webhooks", tags=["events"], **answers(WebhookList, 401, 403, 422))
    def list_webhooks(request: Request, caller: AdminCaller) -> dict[str, Any]:
        with _ctx(request).store.session(readonly=True) as s:
            hooks = s.scalars(select(Webhook).order_by(Webhook.created_at)).all()
            return {"webhooks": [{"id": h.id, "url": h.url, "event_types": h.event_types,
                                  "active": h.active} for h in hooks]}

    app.include_router(r)
    return fast


def _predict_route(r: APIRouter, spec: TwinSpec, settings: Settings) -> tuple[str, Any]:
    """Add the predict route of ``spec``; its path and request model (for ``FastPredict``,
    which answers the plain requests of this route before FastAPI sees them)."""
    body_model = predict_request_model(spec, settings.max_batch)
    name = spec.name

    def predict(body: body_model, request: Request,  # type: ignore[valid-type]
                caller: PredictCaller) -> Any:
        rows = [row.model_dump() for row in body.rows]  # type: ignore[attr-defined]
        return _json(predict_answer(_ctx(request), name, rows))

    predict.__annotations__["body"] = body_model  # a class built at run time
    # The handler sends its own JSON (as the fast path does): the model documents it.
    r.add_api_route(f"/v1/models/{name}/predict", predict, methods=["POST"],
                    tags=["models"], summary=f"Raw predictions of {name}",
                    description=spec.description,
                    **answers(PredictOut, 400, 401, 403, 404, 413, 422))
    return f"/v1/models/{name}/predict", body_model

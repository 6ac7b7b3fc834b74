"""Work orders: the assessment before an order runs, the completion after, and the
stored history of both. Each write keeps its audit record and its events in the same
transaction as the change they report."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from sqlalchemy import select

from physics._spec_text import fmt
from serving._errors import Conflict, FieldError, NotFound
from serving._responses import AssessmentOut, CompletionOut, WorkOrderOut, answers
from serving._schemas import ID_MAX, ID_PATTERN, ID_TEXT, CompletionIn, JobOrderIn
from serving.api.deps import (
    IdemKey,
    OrdersCaller,
    aware,
    ctx_of,
    json_response,
    no_asset,
    now,
    remember,
    replay,
)
from serving.api.routes.assets import asset_view, in_service
from serving.domain.advisories import AdvisoryChanges, update_advisories
from serving.domain.assess import AssetView, OrderView, assess, health_index, health_status
from serving.domain.completion import end_state, residuals
from serving.domain.orders import order_values, quality_limits
from serving.store._assets import in_scope, lock_asset
from serving.store._audit import append_audit
from serving.store._outbox import (
    ADVISORY_CLEARED,
    ADVISORY_RAISED,
    DECISION_ISSUED,
    DRIFT_DETECTED,
    THRESHOLD_CROSSED,
    emit,
)
from serving.store._residuals import record_residuals
from serving.store._tables import Assessment, Asset, Completion

router = APIRouter(tags=["work orders"])

JobOrderId = Annotated[str, Path(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN,
                                 description=ID_TEXT + "; a slash may be sent as %2F")]


def _store_advisories(row: Asset, changes: AdvisoryChanges) -> None:
    if changes.changed:
        row.capabilities = {**row.capabilities, "advisories": changes.kept}


def _emit_advisories(s: Any, row: Asset, changes: AdvisoryChanges, job_order_id: str,
                     source: str) -> None:
    """``advisory.cleared`` and ``advisory.raised`` for ``changes``, subject asset/<id>;
    after the transaction's audit record (the lock order of ``serving.store._outbox``)."""
    subject = f"asset/{row.equipment_id}"
    for a in changes.cleared:
        emit(s, type=ADVISORY_CLEARED, subject=subject, source=source, data={
            "equipment_id": row.equipment_id, "job_order_id": job_order_id,
            "action": a["action"], "kpi": a["kpi"], "raised_by": a.get("job_order_id"),
            "raised_at": a.get("raised_at"), "cleared_because": a["cleared_because"]})
    for a in changes.raised:
        emit(s, type=ADVISORY_RAISED, subject=subject, source=source,
             data={"equipment_id": row.equipment_id, **a})


# NAMUR NE 107 states in which a machine is no alternate: failed, under check, or making
# parts out of specification.
_UNFIT = ("FAILURE", "CHECK_FUNCTION", "OFF_SPEC")


def _alternates_in_scope(s: Any, row: Asset, body: JobOrderIn, policy: Any, t: datetime,
                         ) -> tuple[list[AssetView], dict[str, Any]]:
    """The machines a reroute may rank: in the order's scope (its equipment requirements,
    or the asset's work center), of the same type, in service, healthy, and with a fresh
    state; and the scope with the machines left out and why."""
    requirements = [r.model_dump(exclude_none=True) for r in body.equipment_requirements]
    stale_before = t - timedelta(hours=policy.stale_after_hours)
    others: list[AssetView] = []
    excluded: list[dict[str, Any]] = []
    for a in in_scope(s, row, requirements):
        measured = aware(a.state_measured_at)
        if a.device_health in _UNFIT:
            excluded.append({"equipment_id": a.equipment_id, "reason": "UNHEALTHY",
                             "detail": f"device health {a.device_health} (NE 107)"})
        elif measured < stale_before:
            excluded.append({"equipment_id": a.equipment_id, "reason": "STATE_STALE",
                             "detail": f"state measured {measured.isoformat()}, more than "
                                       f"{fmt(policy.stale_after_hours)} h ago"})
        else:
            others.append(asset_view(a))
    scope = {"requirements": requirements or [
                {k: getattr(row, k) for k in ("site", "area", "work_center")}],
             "considered": [o.equipment_id for o in others], "excluded": excluded}
    return others, scope


@router.post("/v1/work-orders/{job_order_id:path}/assessment", operation_id="assessWorkOrder",
             **answers(AssessmentOut, 400, 401, 403, 404, 409, 413, 422))
def assessment(job_order_id: JobOrderId, body: JobOrderIn, request: Request,
               caller: OrdersCaller, idempotency_key: IdemKey = None) -> Any:
    ctx = ctx_of(request)
    # Reads only (the answer is stored by the second transaction, which looks for a
    # replay again): no write lock while the surrogate runs.
    with ctx.store.session(readonly=True) as s:
        replayed = replay(s, caller, idempotency_key, request, body)
        if replayed is not None:
            return replayed
        row = s.get(Asset, body.equipment_id)
        if row is None:
            raise no_asset(body.equipment_id)
        in_service(row)
        asset = asset_view(row)
        t = now()
        others, scope = _alternates_in_scope(s, row, body, ctx.policy, t)
    model = ctx.models.find(asset.asset_type)
    head: dict[str, Any] = {
        "job_order_id": job_order_id,
        "equipment_id": body.equipment_id,
        "execution_mode": body.execution_mode,
        "assessed_at": t.isoformat(),
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
                          aware(body.start_time) if body.start_time else None)
        result = assess(model, ctx.policy, asset, order, others=others, now=t)
        head["model"] = {"name": model.name, "version": model.version,
                         "bundle_hash": model.bundle_hash}
        result["reroute"] = scope
    response = {**head, **result}
    kind = response["decision"]["type"]
    ctx.metrics.decisions.labels(kind).inc()
    with ctx.store.session() as s:
        replayed = replay(s, caller, idempotency_key, request, body)
        if replayed is not None:  # a twin request won the race
            return replayed
        # The asset keeps the advisories of its latest assessment (a what-if in
        # Simulation mode leaves them alone, and so does an UNDECIDED one: numbers
        # out of the training domain or from a stale state are no grounds to raise
        # or clear an advisory).
        changes = AdvisoryChanges(kept=[])
        locked = None
        if ("maintenance" in response and body.execution_mode != "Simulation"
                and kind != "UNDECIDED"):
            locked = lock_asset(s, body.equipment_id)
        if locked is not None:
            changes = update_advisories(
                locked.capabilities.get("advisories", []),
                predicted=response["maintenance"]["advisories"], done=set(),
                job_order_id=job_order_id, now=t)
            _store_advisories(locked, changes)
            if changes.raised or changes.cleared:
                locked.revision = (locked.revision or 0) + 1
                locked.updated_at = t
        outputs: dict[str, Any] = {"decision": response["decision"]}
        if changes.raised or changes.cleared:
            outputs["advisories"] = changes.summary()
        sent = body.model_dump(mode="json")
        model_ref = head["model"]
        s.add(Assessment(
            job_order_id=job_order_id, equipment_id=body.equipment_id, decision=kind,
            request=sent, response=response,
            model_version=model_ref and model_ref["version"],
            bundle_hash=model_ref and model_ref["bundle_hash"],
            policy_version=ctx.policy.version))
        append_audit(
            s, kind="assessment", subject=f"work-order/{job_order_id}",
            caller=caller.name, inputs=sent,
            outputs=outputs, idempotency_key=idempotency_key,
            model_version=model_ref and model_ref["version"],
            bundle_hash=model_ref and model_ref["bundle_hash"],
            policy_version=ctx.policy.version)
        emit(s, type=DECISION_ISSUED, subject=f"work-order/{job_order_id}",
             data={"job_order_id": job_order_id, "equipment_id": body.equipment_id,
                   "decision": response["decision"], "model": model_ref,
                   "policy": head["policy"]},
             source=ctx.settings.event_source)
        if locked is not None:
            _emit_advisories(s, locked, changes, job_order_id, ctx.settings.event_source)
        remember(s, caller, idempotency_key, request, body, 200, response)
    return json_response(response)


@router.post("/v1/work-orders/{job_order_id:path}/completion", operation_id="completeWorkOrder",
             **answers(CompletionOut, 400, 401, 403, 404, 409, 413, 422))
def completion(job_order_id: JobOrderId, body: CompletionIn, request: Request,
               caller: OrdersCaller, idempotency_key: IdemKey = None) -> Any:
    ctx = ctx_of(request)
    source = ctx.settings.event_source
    with ctx.store.session() as s:
        replayed = replay(s, caller, idempotency_key, request, body)
        if replayed is not None:
            return replayed
        # The asset row stays locked until the transaction ends: two completions for
        # one machine advance its state one after the other.
        row = lock_asset(s, body.equipment_id)
        if row is None:
            raise no_asset(body.equipment_id)
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
        asset = asset_view(row)
        full = {**values, **asset.environment, **asset.state}
        before = dict(row.state)
        after, predicted = end_state(model, ctx.policy, full, body)
        found = residuals(model, body, predicted)
        drift = record_residuals(s, found, job_order_id=job_order_id,
                                 equipment_id=body.equipment_id, asset_type=model.spec.name,
                                 policy=ctx.policy)
        old_health = row.device_health
        current = "FAILURE" if body.tool_broken and not (
            body.tool_changed or "replace_tool" in body.maintenance_done) else (
            "NORMAL" if old_health == "FAILURE" else old_health)
        done = set(body.maintenance_done) | ({"replace_tool"} if body.tool_changed else set())
        changes = update_advisories(row.capabilities.get("advisories", []), predicted=None,
                                    done=done, job_order_id=job_order_id, now=now())
        _store_advisories(row, changes)
        row.state = after
        row.state_measured_at = body.finished_at or now()
        row.parts_made = (row.parts_made or 0) + body.parts_made
        row.device_health = health_status(after, ctx.policy, current)
        row.health_index = health_index(after, ctx.policy)[0]
        row.revision = (row.revision or 0) + 1
        row.updated_at = now()
        response = {
            "job_order_id": job_order_id, "equipment_id": body.equipment_id,
            "state_before": before, "state_after": after,
            "device_health": row.device_health, "health_index": row.health_index,
            "residuals": found, "drift": drift,
            "advisories_cleared": changes.summary()["cleared"],
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
            emit(s, type=THRESHOLD_CROSSED, subject=subject, source=source,
                 data={"equipment_id": body.equipment_id, "from": old_health,
                       "to": row.device_health, "health_index": row.health_index,
                       "state": after})
        for d in drift:
            emit(s, type=DRIFT_DETECTED, subject=f"model/{model.name}", source=source,
                 data={"model": model.name, **d})
        _emit_advisories(s, row, changes, job_order_id, source)
        remember(s, caller, idempotency_key, request, body, 200, response)
    return json_response(response)


@router.get("/v1/work-orders/{job_order_id:path}", operation_id="getWorkOrder",
            **answers(WorkOrderOut, 401, 403, 404, 422))
def work_order(job_order_id: JobOrderId, request: Request, caller: OrdersCaller) -> Any:
    with ctx_of(request).store.session(readonly=True) as s:
        rows = s.scalars(select(Assessment).where(Assessment.job_order_id == job_order_id)
                         .order_by(Assessment.id)).all()
        done = s.get(Completion, job_order_id)
        if not rows and done is None:
            raise NotFound(f"no work order {job_order_id!r} was assessed",
                           [FieldError("job_order_id", job_order_id, "an assessed order")])
        return {
            "job_order_id": job_order_id,
            "assessments": [{"id": a.id, "created_at": aware(a.created_at).isoformat(),
                             "request": a.request, "response": a.response} for a in rows],
            "completion": None if done is None else {"request": done.request,
                                                     "response": done.response},
        }

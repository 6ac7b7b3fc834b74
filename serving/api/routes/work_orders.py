"""Work orders: the assessment before an order runs, the completion after, and the
stored history of both. Each write keeps its audit record and its events in the same
transaction as the change they report."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from sqlalchemy import select

from serving._errors import BadRequest, Conflict, FieldError, NotFound, ServingError, problem
from serving._responses import answers
from serving._schemas import (
    ID_MAX,
    ID_PATTERN,
    ID_TEXT,
    BatchAssessmentIn,
    CompletionIn,
    JobOrderIn,
)
from serving._work_order_responses import (
    AssessmentOut,
    BatchAssessmentOut,
    CompletionOut,
    WorkOrderOut,
)
from serving.api.assessing import (
    Prepared,
    assess_prepared,
    emit_advisories,
    prepare,
    record,
    store_advisories,
)
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
from serving.api.routes.assets import asset_view
from serving.domain.advisories import update_advisories
from serving.domain.assess import health_index, health_status, with_defaults
from serving.domain.completion import end_state, residuals, with_samples
from serving.domain.orders import order_values
from serving.store._assets import lock_asset
from serving.store._audit import append_audit
from serving.store._outbox import (
    DRIFT_DETECTED,
    THRESHOLD_CROSSED,
    emit,
)
from serving.store._residuals import record_residuals
from serving.store._tables import Assessment, Completion

router = APIRouter(tags=["work orders"])

JobOrderId = Annotated[str, Path(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN,
                                 description=ID_TEXT + "; a slash may be sent as %2F")]


# serving._fastassess answers a plain request to this route in front of the framework,
# with the same functions (prepare, assess_prepared, record, remember); this route
# answers the rest and says why it refuses one.
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
        prepared = prepare(s, ctx, job_order_id, body, now())
    (response,) = assess_prepared(ctx, [prepared])
    with ctx.store.session() as s:
        replayed = replay(s, caller, idempotency_key, request, body)
        if replayed is not None:  # a twin request won the race
            return replayed
        record(s, ctx, caller, prepared, response, idempotency_key)
        remember(s, caller, idempotency_key, request, body, 200, response)
    return json_response(response)


@router.post("/v1/work-orders:batch-assessment", operation_id="assessWorkOrders",
             **answers(BatchAssessmentOut, 400, 401, 403, 409, 413, 422))
def batch_assessment(body: BatchAssessmentIn, request: Request, caller: OrdersCaller,
                     idempotency_key: IdemKey = None) -> Any:
    """Assess up to 200 orders in one request: the orders of one model share its two
    surrogate calls. An order that cannot be assessed (unknown asset, a bad parameter) gets
    its own problem in ``results`` and the others go on; each assessed order is recorded,
    audited and announced as a single assessment is."""
    ctx = ctx_of(request)
    t = now()
    prepared: list[Prepared | None] = []
    problems: dict[int, dict[str, Any]] = {}
    with ctx.store.session(readonly=True) as s:
        replayed = replay(s, caller, idempotency_key, request, body)
        if replayed is not None:
            return replayed
        seen: set[str] = set()
        for n, item in enumerate(body.orders):
            try:
                if item.job_order_id in seen:
                    raise BadRequest("a job order appears twice in the batch", [FieldError(
                        f"orders[{n}].job_order_id", item.job_order_id, "each order once")])
                seen.add(item.job_order_id)
                order = JobOrderIn.model_validate(item.model_dump(exclude={"job_order_id"}))
                prepared.append(prepare(s, ctx, item.job_order_id, order, t))
            except ServingError as exc:
                prepared.append(None)
                problems[n] = problem(exc.status, exc.code, exc.title, exc.detail,
                                      instance=f"{request.url.path}#orders[{n}]",
                                      errors=exc.errors)
    ready = [p for p in prepared if p is not None]
    answers_ = iter(assess_prepared(ctx, ready))
    results: list[dict[str, Any]] = []
    with ctx.store.session() as s:
        replayed = replay(s, caller, idempotency_key, request, body)
        if replayed is not None:
            return replayed
        for n, p in enumerate(prepared):
            job_order_id = body.orders[n].job_order_id
            if p is None:
                results.append({"job_order_id": job_order_id,
                                "status": problems[n]["status"], "problem": problems[n]})
                continue
            response = next(answers_)
            record(s, ctx, caller, p, response, idempotency_key)
            results.append({"job_order_id": job_order_id, "status": 200,
                            "assessment": response})
        counts: dict[str, int] = {}
        for r in results:
            kind = r["assessment"]["decision"]["type"] if r["status"] == 200 else "PROBLEM"
            counts[kind] = counts.get(kind, 0) + 1
        out = {"results": results, "counts": counts}
        remember(s, caller, idempotency_key, request, body, 200, out)
    return json_response(out)


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
                                 order.planned_quantity, path="job_order_parameters",
                                 materials=order.material_requirements)
        asset = with_defaults(model.spec, asset_view(row))
        full = {**values, **asset.environment, **asset.machine, **asset.state}
        before = dict(row.state)
        after, predicted, state_changes = end_state(model, ctx.policy, full, body)
        found = residuals(model, with_samples(model, body), predicted)
        drift = record_residuals(s, found, job_order_id=job_order_id,
                                 equipment_id=body.equipment_id, asset_type=model.spec.name,
                                 policy=ctx.policy)
        old_health = row.device_health
        broken = body.tool_broken or any(
            c.reason == "broken" for c in (body.tools.changes if body.tools else []))
        changed = body.tool_was_changed
        current = "FAILURE" if broken and not (
            changed or "replace_tool" in body.maintenance_done) else (
            "NORMAL" if old_health == "FAILURE" else old_health)
        done = set(body.maintenance_done) | ({"replace_tool"} if changed else set())
        changes = update_advisories(row.capabilities.get("advisories", []), predicted=None,
                                    done=done, job_order_id=job_order_id, now=now())
        store_advisories(row, changes)
        row.state = after
        ended = body.actual_end_time or now()
        row.state_measured_at = ended
        row.parts_made = (row.parts_made or 0) + body.made
        row.device_health = health_status(after, ctx.policy, current)
        row.health_index = health_index(after, ctx.policy)[0]
        row.revision = (row.revision or 0) + 1
        row.updated_at = now()
        response = {
            "job_order_id": job_order_id, "equipment_id": body.equipment_id,
            "job_response_id": body.job_response_id or f"JR-{uuid.uuid4().hex[:16]}",
            "result": body.result,
            "actual_start_time": body.actual_start_time and body.actual_start_time.isoformat(),
            "actual_end_time": aware(ended).isoformat(),
            "quantities": {"total": body.made,
                           "good": body.made - body.scrap_quantity - body.rework_quantity,
                           "scrap": body.scrap_quantity, "rework": body.rework_quantity},
            "state_before": before, "state_after": after, "state_changes": state_changes,
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
        emit_advisories(s, row, changes, job_order_id, source)
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

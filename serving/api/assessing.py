"""An assessment from request to record, shared by the single and the batch route:
``prepare`` reads the asset and the machines of the order's scope (one read-only
transaction), ``assess_prepared`` runs any number of prepared orders through the
surrogate together (two calls per model, whatever the number of orders), ``record``
stores one answer with its audit record, its events and the asset's advisories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from physics._spec_text import fmt
from serving._models import LoadedModel
from serving._schemas import JobOrderIn
from serving.api.deps import aware, no_asset
from serving.api.routes.assets import asset_view, in_service
from serving.domain.advisories import AdvisoryChanges, update_advisories
from serving.domain.assess import AssetView, OrderView, assessment_steps, run_together
from serving.domain.orders import operation_of, order_values, quality_limits
from serving.store._assets import in_scope, lock_asset
from serving.store._audit import append_audit
from serving.store._outbox import ADVISORY_CLEARED, ADVISORY_RAISED, DECISION_ISSUED, emit
from serving.store._tables import Assessment, Asset

__all__ = ["Prepared", "assess_prepared", "emit_advisories", "prepare", "record",
           "store_advisories"]


def store_advisories(row: Asset, changes: AdvisoryChanges) -> None:
    if changes.changed:
        row.capabilities = {**row.capabilities, "advisories": changes.kept}


def emit_advisories(s: Any, row: Asset, changes: AdvisoryChanges, job_order_id: str,
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
    others: list[AssetView] = []
    excluded: list[dict[str, Any]] = []
    for a in in_scope(s, row, requirements):
        measured = aware(a.state_measured_at)
        if a.device_health in _UNFIT:
            excluded.append({"equipment_id": a.equipment_id, "reason": "UNHEALTHY",
                             "detail": f"device health {a.device_health} (NE 107)"})
        elif policy.is_stale(measured, t):
            excluded.append({"equipment_id": a.equipment_id, "reason": "STATE_STALE",
                             "detail": f"state measured {measured.isoformat()}, more than "
                                       f"{fmt(policy.stale_after_hours)} h ago"})
        else:
            others.append(asset_view(a))
    scope = {"requirements": requirements or [
                {k: getattr(row, k) for k in ("site", "area", "work_center")}],
             "considered": [o.equipment_id for o in others], "excluded": excluded}
    return others, scope


@dataclass
class Prepared:
    """An order read and checked, ready for the surrogate."""

    job_order_id: str
    body: JobOrderIn
    at: datetime
    asset: AssetView
    others: list[AssetView]
    scope: dict[str, Any]
    model: LoadedModel | None
    order: OrderView | None
    operation: dict[str, Any] | None = None

    def head(self, ctx: Any) -> dict[str, Any]:
        m = self.model
        head = {
            "job_order_id": self.job_order_id,
            "equipment_id": self.body.equipment_id,
            "execution_mode": self.body.execution_mode,
            "assessed_at": self.at.isoformat(),
            "policy": ctx.policy.ref(),
            "model": None if m is None else {"name": m.name, "version": m.version,
                                             "bundle_hash": m.bundle_hash},
        }
        if self.operation is not None:
            head["operation"] = self.operation
        return head


def prepare(s: Any, ctx: Any, job_order_id: str, body: JobOrderIn, t: datetime) -> Prepared:
    """The order on its asset, checked against the spec (BadRequest, NotFound, Conflict
    before any surrogate call), with the machines a reroute may rank."""
    row = s.get(Asset, body.equipment_id)
    if row is None:
        raise no_asset(body.equipment_id)
    in_service(row)
    asset = asset_view(row)
    others, scope = _alternates_in_scope(s, row, body, ctx.policy, t)
    model = ctx.models.find(asset.asset_type)
    order = operation = None
    if model is not None:
        values, quantity = order_values(model.spec, body.job_order_parameters,
                                        body.planned_quantity, path="job_order_parameters",
                                        materials=body.material_requirements)
        operation = operation_of(model.spec, body.operation, values)
        limits = quality_limits(model.spec, body.quality_specs, operation)
        order = OrderView(job_order_id, values, quantity, limits,
                          aware(body.start_time) if body.start_time else None)
    return Prepared(job_order_id, body, t, asset, others, scope, model, order, operation)


def assess_prepared(ctx: Any, prepared: list[Prepared]) -> list[dict[str, Any]]:
    """The answers of ``prepared``, in order; the orders of one model share its calls."""
    answers: list[dict[str, Any] | None] = [None] * len(prepared)
    by_model: dict[int, tuple[LoadedModel, list[int], list[Any]]] = {}
    for i, p in enumerate(prepared):
        if p.model is None or p.order is None:
            answers[i] = {**p.head(ctx), "decision": {
                "type": "UNDECIDED", "reason_codes": ["MODEL_MISSING"], "advisory": True,
                "explanation": f"no model serves asset type {p.asset.asset_type!r}"}}
            continue
        _, indices, steps = by_model.setdefault(id(p.model), (p.model, [], []))
        indices.append(i)
        steps.append(assessment_steps(p.model, ctx.policy, p.asset, p.order,
                                      others=p.others, now=p.at))
    for model, indices, steps in by_model.values():
        for i, result in zip(indices, run_together(model, steps), strict=True):
            answers[i] = {**prepared[i].head(ctx), **result, "reroute": prepared[i].scope}
    out = [a for a in answers if a is not None]
    for a in out:
        ctx.metrics.decisions.labels(a["decision"]["type"]).inc()
    return out


def record(s: Any, ctx: Any, caller: Any, p: Prepared, response: dict[str, Any],
           idempotency_key: str | None) -> None:
    """Store one answer: the assessment row, its audit record, ``decision.issued``, and
    the asset's advisories (a what-if in Simulation mode leaves them alone, and so does an
    UNDECIDED answer: numbers out of the training domain or from a stale state are no
    grounds to raise or clear an advisory)."""
    body, t = p.body, p.at
    kind = response["decision"]["type"]
    changes = AdvisoryChanges(kept=[])
    locked = None
    if ("maintenance" in response and body.execution_mode != "Simulation"
            and kind != "UNDECIDED"):
        locked = lock_asset(s, body.equipment_id)
    if locked is not None:
        changes = update_advisories(
            locked.capabilities.get("advisories", []),
            predicted=response["maintenance"]["advisories"], done=set(),
            job_order_id=p.job_order_id, now=t)
        store_advisories(locked, changes)
        if changes.raised or changes.cleared:
            locked.revision = (locked.revision or 0) + 1
            locked.updated_at = t
    outputs: dict[str, Any] = {"decision": response["decision"]}
    if changes.raised or changes.cleared:
        outputs["advisories"] = changes.summary()
    sent = body.model_dump(mode="json")
    model_ref = response["model"]
    version = model_ref and model_ref["version"]
    bundle = model_ref and model_ref["bundle_hash"]
    s.add(Assessment(job_order_id=p.job_order_id, equipment_id=body.equipment_id,
                     decision=kind, request=sent, response=response, model_version=version,
                     bundle_hash=bundle, policy_version=ctx.policy.version))
    append_audit(s, kind="assessment", subject=f"work-order/{p.job_order_id}",
                 caller=caller.name, inputs=sent, outputs=outputs,
                 idempotency_key=idempotency_key, model_version=version, bundle_hash=bundle,
                 policy_version=ctx.policy.version)
    emit(s, type=DECISION_ISSUED, subject=f"work-order/{p.job_order_id}",
         data={"job_order_id": p.job_order_id, "equipment_id": body.equipment_id,
               "decision": response["decision"], "model": model_ref,
               "policy": response["policy"]},
         source=ctx.settings.event_source)
    if locked is not None:
        emit_advisories(s, locked, changes, p.job_order_id, ctx.settings.event_source)

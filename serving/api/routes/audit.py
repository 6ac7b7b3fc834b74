"""The audit trail over HTTP (admin scope): its records by subject and kind, a page at a
time, and the check of its hash chain that ``twin audit verify`` runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from serving._responses import AuditList, AuditReport, answers
from serving.api.deps import (
    MAX_SEQ,
    AdminCaller,
    CursorParam,
    Limit,
    aware,
    ctx_of,
    decode_cursor,
    page,
)
from serving.store._audit import verify_chain
from serving.store._tables import AuditRecord

router = APIRouter(tags=["audit"])


def record_out(row: AuditRecord) -> dict[str, Any]:
    return {
        "seq": row.seq,
        # to the microsecond, in UTC: the text the record's hash was computed over
        "at": aware(row.at).isoformat(timespec="microseconds"),
        "kind": row.kind,
        "subject": row.subject,
        "caller": row.caller,
        "idempotency_key": row.idempotency_key,
        "model_version": row.model_version,
        "bundle_hash": row.bundle_hash,
        "policy_version": row.policy_version,
        "inputs": row.inputs,
        "outputs": row.outputs,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def _cursor_seq(cursor: str | None) -> int:
    key = decode_cursor(cursor, int, "/v1/audit")
    return 0 if key is None else int(key)


@router.get("/v1/audit", operation_id="listAudit", **answers(AuditList, 401, 403, 422))
def list_audit(
    request: Request,
    caller: AdminCaller,
    subject: Annotated[str | None, Query(
        max_length=256, description="Only this subject (exact): work-order/<id>, "
        "asset/<id>, webhook/<id>, model/<name>")] = None,
    kind: Annotated[str | None, Query(
        max_length=64, description="Only this kind (exact): assessment, completion, asset, "
        "webhook, model")] = None,
    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ, description=(
        "Only records after this seq"))] = 0,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> dict[str, Any]:
    """Audit records oldest first; a page ends with ``next_cursor`` for the next one."""
    start = max(after_seq, _cursor_seq(cursor))
    query = select(AuditRecord).where(AuditRecord.seq > start)
    if subject is not None:
        query = query.where(AuditRecord.subject == subject)
    if kind is not None:
        query = query.where(AuditRecord.kind == kind)
    with ctx_of(request).store.session(readonly=True) as s:
        rows = s.scalars(query.order_by(AuditRecord.seq).limit(limit + 1)).all()
        kept, next_cursor = page(list(rows), limit, lambda r: r.seq)
        return {"records": [record_out(r) for r in kept], "next_cursor": next_cursor}


@router.get("/v1/audit/verify", operation_id="verifyAudit",
            **answers(AuditReport, 401, 403, 422))
def verify_audit(request: Request, caller: AdminCaller) -> dict[str, Any]:
    """Recompute the hash chain up to its head; name the first record that breaks it."""
    with ctx_of(request).store.session(readonly=True) as s:
        report = verify_chain(s)
    out: dict[str, Any] = {"ok": report.ok, "records": report.records}
    if not report.ok:
        out["first_broken"] = report.first_broken
        out["reason"] = report.reason
    return out

"""The append-only, hash-chained audit trail.

Each record's ``hash`` is sha256 of the previous record's hash and the canonical JSON
of its own fields; the chain head (last seq and hash) lives in the ``counters`` row
``audit``, locked while a record is appended, so records never share a seq.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.store._tables import AuditRecord, SubjectCounter

__all__ = ["ChainReport", "append_audit", "record_hash", "verify_chain"]

HEAD = "audit"


def _utc(t: datetime) -> str:
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.isoformat(timespec="microseconds")


def record_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def _fields(r: AuditRecord) -> dict[str, Any]:
    return {
        "seq": r.seq, "at": _utc(r.at), "kind": r.kind, "subject": r.subject,
        "caller": r.caller, "idempotency_key": r.idempotency_key,
        "model_version": r.model_version, "bundle_hash": r.bundle_hash,
        "policy_version": r.policy_version, "inputs": r.inputs, "outputs": r.outputs,
    }


def _counter(session: Session, subject: str) -> SubjectCounter:
    row = session.get(SubjectCounter, subject, with_for_update=True)
    if row is None:
        row = SubjectCounter(subject=subject, last_seq=0, last_hash="")
        session.add(row)
        session.flush()
    return row


def append_audit(
    session: Session, *, kind: str, subject: str, caller: str, inputs: dict[str, Any],
    outputs: dict[str, Any], idempotency_key: str | None = None,
    model_version: str | None = None, bundle_hash: str | None = None,
    policy_version: str | None = None, at: datetime | None = None,
) -> AuditRecord:
    head = _counter(session, HEAD)
    # JSON round trip first: what is hashed is exactly what the database gives back.
    inputs = json.loads(json.dumps(inputs))
    outputs = json.loads(json.dumps(outputs))
    rec = AuditRecord(
        seq=head.last_seq + 1, at=at or datetime.now(UTC), kind=kind, subject=subject,
        caller=caller, idempotency_key=idempotency_key, model_version=model_version,
        bundle_hash=bundle_hash, policy_version=policy_version, inputs=inputs,
        outputs=outputs, prev_hash=head.last_hash,
    )
    rec.hash = record_hash(head.last_hash, _fields(rec))
    head.last_seq, head.last_hash = rec.seq, rec.hash
    session.add(rec)
    session.flush()
    return rec


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    records: int
    first_broken: int | None = None
    reason: str | None = None


def verify_chain(session: Session, *, batch: int = 1000) -> ChainReport:
    prev_hash, prev_seq, count, last = "", 0, 0, 0
    while True:
        rows = session.scalars(
            select(AuditRecord).where(AuditRecord.seq > last).order_by(AuditRecord.seq)
            .limit(batch)).all()
        if not rows:
            break
        for r in rows:
            if r.seq != prev_seq + 1:
                return ChainReport(False, count, prev_seq + 1,
                                   f"seq {prev_seq + 1} missing (records jump from "
                                   f"{prev_seq} to {r.seq})")
            if r.prev_hash != prev_hash:
                return ChainReport(False, count, r.seq, f"record {r.seq}: prev_hash does not "
                                   f"match record {prev_seq}")
            if record_hash(r.prev_hash, _fields(r)) != r.hash:
                return ChainReport(False, count, r.seq,
                                   f"record {r.seq}: hash does not match its contents")
            prev_hash, prev_seq = r.hash, r.seq
            count += 1
        last = rows[-1].seq
    head = session.get(SubjectCounter, HEAD)
    if head is not None and head.last_seq != prev_seq:
        return ChainReport(False, count, prev_seq + 1, f"chain head in counters says "
                           f"{head.last_seq}, last record is {prev_seq}")
    return ChainReport(True, count)

"""The audit trail: one append-only, hash-chained record per decision or change.

Each record's ``hash`` is the sha256 of the previous record's hash followed by the
canonical JSON of its own fields, so changing a record, removing one or reordering two
breaks the chain at that record, and ``verify_chain`` names it. The chain head (last
seq and hash) lives in the ``counters`` row ``audit``, taken under a row lock, so
records from concurrent workers get consecutive numbers and each one links to the one
before it. There are no update or delete functions here, on purpose.

The hash must come out the same after the record has been stored and read back from
SQLite or PostgreSQL. So inputs and outputs are normalised to plain JSON before they
are hashed and stored (tuples become lists; floats must be finite; keys must be
strings), ``at`` is stored in UTC and formatted with microseconds, and a naive
datetime read back from SQLite is taken as the UTC it was written as. Python writes a
float as the shortest text that reads back as the same float, and both databases keep
JSON as text (PostgreSQL ``JSON``, not ``JSONB``), so the canonical text is stable.

On PostgreSQL the ``audit`` counter row is one lock for every writer: append the audit
record last in a transaction, just before commit, so the lock is held briefly.
Truncating the chain from the end *and* rewinding the counter cannot be seen from
inside the database; anchor ``ChainReport`` heads elsewhere when that matters.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from serving.store._db import AUDIT_SUBJECT, StoreError, lock_counter, set_counter, text_limit
from serving.store._tables import AuditRecord, SubjectCounter, table_of, utcnow

__all__ = [
    "GENESIS_HASH",
    "ChainReport",
    "append_audit",
    "audit_fields",
    "canonical_json",
    "json_object",
    "record_hash",
    "verify_chain",
]

GENESIS_HASH = ""  # prev_hash of record 1 (and last_hash of a fresh counter)
_TABLE = table_of(AuditRecord)
_COLUMNS = tuple(c.name for c in _TABLE.columns)
_INSERT = insert(_TABLE)


@dataclass(frozen=True)
class ChainReport:
    """What ``verify_chain`` found: ``records`` verified, and the first break if any."""

    ok: bool
    records: int
    first_broken: int | None = None
    reason: str | None = None


def canonical_json(value: Any) -> str:
    """The one text a JSON value hashes as: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def record_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """sha256 (hex) of ``prev_hash`` followed by the canonical JSON of ``fields``."""
    text = prev_hash + canonical_json(dict(fields))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def audit_fields(record: Any) -> dict[str, Any]:
    """The hashed fields of a record (an ``AuditRecord`` or a row of the audit table)."""
    return {
        "seq": int(record.seq),
        "at": _utc_text(record.at),
        "kind": record.kind,
        "subject": record.subject,
        "caller": record.caller,
        "idempotency_key": record.idempotency_key,
        "model_version": record.model_version,
        "bundle_hash": record.bundle_hash,
        "policy_version": record.policy_version,
        "inputs": record.inputs,
        "outputs": record.outputs,
    }


def append_audit(
    session: Session,
    *,
    kind: str,
    subject: str,
    caller: str,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    idempotency_key: str | None = None,
    model_version: str | None = None,
    bundle_hash: str | None = None,
    policy_version: str | None = None,
    at: datetime | None = None,
) -> AuditRecord:
    """Append the next record to the chain, in the caller's transaction; returns it as
    written (an ``AuditRecord`` not attached to the session).

    It commits with what it records or not at all; a rollback gives its seq back.
    """
    texts = {
        "kind": (kind, False),
        "subject": (subject, False),
        "caller": (caller, False),
        "idempotency_key": (idempotency_key, True),
        "model_version": (model_version, True),
        "bundle_hash": (bundle_hash, True),
        "policy_version": (policy_version, True),
    }
    for name, (value, optional) in texts.items():
        _check_text(name, value, optional)
    if at is None:
        at = utcnow()
    elif not isinstance(at, datetime) or at.tzinfo is None:
        raise StoreError("at", at, "a timezone-aware datetime")
    # SQLite keeps the wall-clock time and drops the zone: store UTC so it reads back right.
    at = at.astimezone(UTC)
    clean_inputs = json_object("inputs", inputs)
    clean_outputs = json_object("outputs", outputs)

    last_seq, prev_hash = lock_counter(session, AUDIT_SUBJECT)
    record = AuditRecord(
        seq=last_seq + 1,
        at=at,
        kind=kind,
        subject=subject,
        caller=caller,
        idempotency_key=idempotency_key,
        model_version=model_version,
        bundle_hash=bundle_hash,
        policy_version=policy_version,
        inputs=clean_inputs,
        outputs=clean_outputs,
        prev_hash=prev_hash,
    )
    record.hash = record_hash(prev_hash, audit_fields(record))
    # A Core insert on the session's connection: the record is written at once, in the
    # caller's transaction, without a trip through the ORM's unit of work.
    session.connection().execute(_INSERT, {c: getattr(record, c) for c in _COLUMNS})
    set_counter(session, AUDIT_SUBJECT, record.seq, record.hash)
    return record


def verify_chain(session: Session, *, batch: int = 1000) -> ChainReport:
    """Check every record up to the chain head, ``batch`` records at a time.

    Reads the head first and only the records it covers, so appends committed while it
    runs do not count as breaks. Stops at the first break.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise StoreError("batch", batch, "an integer >= 1")
    head = session.execute(
        select(SubjectCounter.last_seq, SubjectCounter.last_hash).where(
            SubjectCounter.subject == AUDIT_SUBJECT
        )
    ).first()
    if head is None:
        last = session.execute(select(func.max(AuditRecord.seq))).scalar()
        if last is None:
            return ChainReport(ok=True, records=0)
        return _broken(0, 1, f"chain head missing from counters, last record is {last}")
    head_seq, head_hash = int(head[0]), str(head[1])

    expected, prev_hash, checked = 1, GENESIS_HASH, 0
    while True:
        rows = session.execute(
            select(_TABLE)
            .where(AuditRecord.seq >= expected, AuditRecord.seq <= head_seq)
            .order_by(AuditRecord.seq)
            .limit(batch)
        ).all()
        for row in rows:
            seq = int(row.seq)
            if seq != expected:
                return _broken(checked, expected, _gap(expected, seq))
            if row.prev_hash != prev_hash:
                what = f"record {seq - 1}" if seq > 1 else "the genesis value ''"
                return _broken(checked, seq, f"record {seq}: prev_hash does not match {what}")
            if record_hash(row.prev_hash, audit_fields(row)) != row.hash:
                return _broken(checked, seq, f"record {seq}: hash does not match its contents")
            expected, prev_hash, checked = seq + 1, row.hash, checked + 1
        if len(rows) < batch:
            break
    last_seq = expected - 1
    if last_seq != head_seq:
        return _broken(
            checked,
            last_seq + 1,
            f"chain head in counters says {head_seq}, last record is {last_seq}",
        )
    if prev_hash != head_hash:
        return _broken(
            checked, head_seq, f"chain head hash in counters does not match record {head_seq}"
        )
    return ChainReport(ok=True, records=checked)


def _broken(checked: int, seq: int, reason: str) -> ChainReport:
    return ChainReport(ok=False, records=checked, first_broken=seq, reason=reason)


def _gap(expected: int, found: int) -> str:
    missing = f"seq {expected}" if found == expected + 1 else f"seqs {expected}-{found - 1}"
    return f"{missing} missing (records jump from {expected - 1} to {found})"


def _utc_text(at: Any) -> str:
    if not isinstance(at, datetime):
        raise StoreError("at", at, "a datetime")
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")


def _check_text(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or (not optional and not value):
        raise StoreError(name, value, "a non-empty string" + (" or None" if optional else ""))
    length = text_limit(_TABLE.c[name])
    if len(value) > length:
        raise StoreError(name, value, f"at most {length} characters (it has {len(value)})")


def json_object(name: str, value: Any) -> dict[str, Any]:
    """``value`` as a plain JSON object that reads back from either database as it was
    written; a ``StoreError`` names the first part that would not (NaN, a set, an int key).
    """
    if not isinstance(value, Mapping):
        raise StoreError(name, value, "a JSON object (a dict)")
    clean = _json_value(name, value)
    assert isinstance(clean, dict)
    return clean


def _json_value(path: str, value: Any) -> Any:
    """``value`` as plain JSON types, so it hashes the same once stored and read back."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or numpy-like int subclass becomes a plain int
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreError(path, value, "a finite number (JSON has no NaN or Infinity)")
        return float(value)
    if isinstance(value, datetime):
        return _utc_text(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise StoreError(f"{path}.{key}", key, "a string key (JSON object keys are)")
            out[key] = _json_value(f"{path}.{key}", item)
        return out
    if isinstance(value, list | tuple):
        return [_json_value(f"{path}[{i}]", item) for i, item in enumerate(value)]
    raise StoreError(path, value, "a JSON value (null, bool, number, string, list, object)")

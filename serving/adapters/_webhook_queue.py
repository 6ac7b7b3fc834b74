"""One queue per webhook: its pending deliveries in event order, its bound, and its dead
letters.

A webhook keeps at most ``max_backlog`` pending deliveries. Past it, the oldest are
dead-lettered, down to nine tenths of the bound (at least one below it): the slack keeps
two dead receivers from trading ``webhook.dead_lettered`` events for ever, each event
filling the other's queue by one. A dead letter is a delivery with status ``dead``
(``failed`` rows, written before dead letters existed, count as dead too); it stays until
it is replayed, and ``last_error`` says why it died (see :func:`dead_reason`).

Locks are taken in one order everywhere: the webhook row, then its deliveries, then the
audit chain, then the event counters; two transactions can then never wait on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.orm import Session

from serving.store._audit import append_audit
from serving.store._outbox import WEBHOOK_DEAD_LETTERED, WEBHOOK_DISABLED, emit
from serving.store._tables import Delivery, Event, Webhook, utcnow

__all__ = [
    "DEAD",
    "DISPATCHER_CALLER",
    "backlog",
    "dead_letter_rows",
    "dead_lettered",
    "dead_reason",
    "due_webhooks",
    "emit_about",
    "overfull_webhooks",
    "queue_counts",
    "replay_dead_letters",
    "trim_backlog",
]

DEAD = ("dead", "failed")
BACKLOG_PREFIX = "max_backlog "
PERMANENT_PREFIX = "permanent: "
#: The caller named in the audit record of a webhook the dispatcher disabled.
DISPATCHER_CALLER = "webhook-dispatcher"


def dead_reason(last_error: str | None) -> str:
    """Why a dead letter died: ``max_backlog`` (its queue was over the bound),
    ``permanent`` (an error no retry can cure) or ``max_attempts``."""
    text = last_error or ""
    if text.startswith(BACKLOG_PREFIX):
        return "max_backlog"
    if text.startswith(PERMANENT_PREFIX):
        return "permanent"
    return "max_attempts"


def backlog(session: Session) -> int:
    """Deliveries still pending, over every webhook (for the metrics endpoint)."""
    count = session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.status == "pending")
    )
    return int(count or 0)


def queue_counts(
    session: Session, webhook_ids: Sequence[str] | None = None
) -> dict[str, tuple[int, int]]:
    """``{webhook id: (pending, dead letters)}``, for the webhooks given (default: every
    webhook with either); a webhook with neither is left out."""
    query = (
        select(Delivery.webhook_id, Delivery.status, func.count())
        .where(Delivery.status.in_(("pending", *DEAD)))
        .group_by(Delivery.webhook_id, Delivery.status)
    )
    if webhook_ids is not None:
        query = query.where(Delivery.webhook_id.in_(list(webhook_ids)))
    counts: dict[str, list[int]] = {}
    for hook_id, status, n in session.execute(query):
        slot = counts.setdefault(hook_id, [0, 0])
        slot[0 if status == "pending" else 1] += int(n)
    return {k: (v[0], v[1]) for k, v in counts.items()}


def due_webhooks(session: Session, at: datetime) -> list[str]:
    """Active webhooks whose oldest pending delivery is due at ``at``: the queues a
    dispatcher has work in (a queue whose head waits for its backoff has none)."""
    heads = (
        select(Delivery.webhook_id, func.min(Delivery.event_seq).label("seq"))
        .where(Delivery.status == "pending")
        .group_by(Delivery.webhook_id)
        .subquery()
    )
    query = (
        select(Delivery.webhook_id)
        .join(heads, (heads.c.webhook_id == Delivery.webhook_id)
              & (heads.c.seq == Delivery.event_seq))
        .join(Webhook, Webhook.id == Delivery.webhook_id)
        .where(Delivery.next_attempt_at <= at, Webhook.active.is_(True))
        .order_by(Delivery.webhook_id)
    )
    return list(session.scalars(query))


def overfull_webhooks(session: Session) -> list[str]:
    """Webhooks with more pending deliveries than their ``max_backlog``."""
    pending = (
        select(Delivery.webhook_id, func.count().label("n"))
        .where(Delivery.status == "pending")
        .group_by(Delivery.webhook_id)
        .subquery()
    )
    query = (
        select(Webhook.id)
        .join(pending, pending.c.webhook_id == Webhook.id)
        .where(pending.c.n > Webhook.max_backlog)
        .order_by(Webhook.id)
    )
    return list(session.scalars(query))


def emit_about(session: Session, hook_id: str, *, type: str, data: dict[str, Any],
               source: str) -> None:
    """An event about a webhook, delivered to every subscriber but that webhook (a
    receiver that is failing would only get more to fail on)."""
    event = emit(session, type=type, subject=f"webhook/{hook_id}", data=data, source=source)
    session.execute(
        delete(Delivery)
        .where(Delivery.webhook_id == hook_id, Delivery.event_seq == event.seq)
        .execution_options(synchronize_session=False)
    )


def trim_backlog(session: Session, hook_id: str, *, source: str) -> int:
    """Dead-letter the oldest pending deliveries of a webhook over its bound; emits one
    ``webhook.dead_lettered`` event when any were; returns how many."""
    row = session.execute(
        select(Webhook.max_backlog).where(Webhook.id == hook_id).with_for_update()
    ).first()
    if row is None:
        return 0
    bound = int(row[0])
    pending = int(session.scalar(
        select(func.count()).select_from(Delivery)
        .where(Delivery.webhook_id == hook_id, Delivery.status == "pending")) or 0)
    if pending <= bound:
        return 0
    keep = bound - max(1, bound // 10)
    oldest = list(session.scalars(
        select(Delivery.id)
        .where(Delivery.webhook_id == hook_id, Delivery.status == "pending")
        .order_by(Delivery.event_seq)
        .limit(pending - keep)
    ))
    note = f"{BACKLOG_PREFIX}{bound} exceeded ({pending} pending); last error: "
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(oldest), Delivery.status == "pending")
        .values(status="dead", last_error=literal(note)
                + func.coalesce(Delivery.last_error, "none (never tried)"))
        .execution_options(synchronize_session=False)
    )
    seqs = list(session.scalars(
        select(Delivery.event_seq).where(Delivery.id.in_(oldest)).order_by(Delivery.event_seq)))
    emit_about(session, hook_id, type=WEBHOOK_DEAD_LETTERED, source=source, data={
        "webhook_id": hook_id, "reason": "max_backlog", "count": len(seqs),
        "first_event_seq": seqs[0], "last_event_seq": seqs[-1], "max_backlog": bound,
        "last_error": None})
    return len(seqs)


def dead_lettered(session: Session, hook_id: str, *, event_seq: int, attempts: int,
                  error: str, disable_after: int, source: str) -> bool:
    """After a delivery died by its attempts (or a permanent error): say so in an event,
    and turn the webhook off when its last ``disable_after`` tried deliveries all died
    (0: never). Returns whether it was turned off."""
    reason = "permanent" if error.startswith(PERMANENT_PREFIX) else "max_attempts"
    disabled = bool(disable_after) and _dead_in_a_row(session, hook_id, disable_after)
    why = (f"{disable_after} deliveries in a row dead-lettered; the last after {attempts} "
           f"attempt(s): {error}")
    if disabled:
        # The audit record before any event: the lock order of every transaction.
        append_audit(session, kind="webhook", subject=f"webhook/{hook_id}",
                     caller=DISPATCHER_CALLER, inputs={"method": "AUTO-DISABLE"},
                     outputs={"active": False, "disabled_reason": why})
        session.execute(
            update(Webhook).where(Webhook.id == hook_id)
            .values(active=False, disabled_reason=why, updated_at=utcnow())
            .execution_options(synchronize_session=False))
    emit_about(session, hook_id, type=WEBHOOK_DEAD_LETTERED, source=source, data={
        "webhook_id": hook_id, "reason": reason, "count": 1, "first_event_seq": event_seq,
        "last_event_seq": event_seq, "max_backlog": None, "last_error": error})
    if disabled:
        emit_about(session, hook_id, type=WEBHOOK_DISABLED, source=source,
                   data={"webhook_id": hook_id, "disabled_reason": why})
    return disabled


def _dead_in_a_row(session: Session, hook_id: str, n: int) -> bool:
    """Whether the webhook's last ``n`` tried deliveries all died (a dead letter of a full
    queue that was never tried does not count)."""
    last = session.scalars(
        select(Delivery.status)
        .where(Delivery.webhook_id == hook_id, Delivery.status.in_(("delivered", *DEAD)),
               Delivery.attempts > 0)
        .order_by(Delivery.event_seq.desc())
        .limit(n)
    ).all()
    return len(last) == n and all(s in DEAD for s in last)


def dead_letter_rows(session: Session, hook_id: str, *, after_seq: int,
                     limit: int) -> list[Any]:
    """Dead letters of a webhook with event seq above ``after_seq``, oldest first."""
    query = (
        select(Delivery.event_seq, Event.id, Event.type, Event.subject, Event.time,
               Delivery.attempts, Delivery.last_error)
        .join(Event, Event.seq == Delivery.event_seq)
        .where(Delivery.webhook_id == hook_id, Delivery.status.in_(DEAD),
               Delivery.event_seq > after_seq)
        .order_by(Delivery.event_seq)
        .limit(limit)
    )
    return list(session.execute(query))


def replay_dead_letters(session: Session, hook_id: str, *, at: datetime,
                        event_seqs: Sequence[int] | None, room: int) -> list[int]:
    """Queue dead letters of a webhook again (all, or those of ``event_seqs``), oldest
    first, at most ``room``; they are due at ``at`` and counted from attempt one. Returns
    the event seqs queued."""
    query = (
        select(Delivery.id, Delivery.event_seq)
        .where(Delivery.webhook_id == hook_id, Delivery.status.in_(DEAD))
        .order_by(Delivery.event_seq)
        .limit(room)
    )
    if event_seqs is not None:
        query = query.where(Delivery.event_seq.in_(list(event_seqs)))
    rows = list(session.execute(query))
    if rows:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_([r[0] for r in rows]), Delivery.status.in_(DEAD))
            .values(status="pending", attempts=0, next_attempt_at=at, last_error=None)
            .execution_options(synchronize_session=False)
        )
    return [int(r[1]) for r in rows]

"""The transactional outbox: events are rows written in the transaction of the change
they report, so the MES never hears of a change that was rolled back, and never misses
one that was committed. Webhook and MQTT senders read the rows afterwards.

Each event is a CloudEvents 1.0 envelope in structured mode. Two extension attributes
order it (extension names are lowercase letters and digits, as the spec requires):

- ``sequence`` (the CloudEvents sequence extension): the event's number within its
  subject, 1, 2, 3... without gaps, as a zero-padded decimal string, because the
  extension compares sequence values as strings;
- ``twinseq``: the event's position among all events (the table's ``seq``), the cursor
  of ``events_after`` and of the replay endpoint.

The per-subject number comes from a ``counters`` row (``event:<subject>``) locked until
the transaction ends. In a transaction that also appends an audit record, append the
audit record first: then every transaction takes the audit lock before any event lock,
and two of them can never wait on each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from serving.store._audit import json_object
from serving.store._db import StoreError, next_seq, text_limit
from serving.store._tables import Delivery, Event, Webhook, table_of, utcnow

__all__ = [
    "ADVISORY_CLEARED",
    "ADVISORY_RAISED",
    "ASSET_RETIRED",
    "ASSET_UPDATED",
    "DECISION_ISSUED",
    "DRIFT_DETECTED",
    "EVENT_TYPES",
    "MODEL_ACTIVATED",
    "THRESHOLD_CROSSED",
    "WEBHOOK_DEAD_LETTERED",
    "WEBHOOK_DISABLED",
    "emit",
    "events_after",
]

DECISION_ISSUED = "io.assettwin.decision.issued"
ADVISORY_RAISED = "io.assettwin.advisory.raised"
ADVISORY_CLEARED = "io.assettwin.advisory.cleared"
THRESHOLD_CROSSED = "io.assettwin.asset.threshold_crossed"
DRIFT_DETECTED = "io.assettwin.drift.detected"
MODEL_ACTIVATED = "io.assettwin.model.activated"
ASSET_UPDATED = "io.assettwin.asset.updated"
ASSET_RETIRED = "io.assettwin.asset.retired"
# Deliveries a webhook will not get unless they are replayed, and a webhook the dispatcher
# turned off; neither is delivered to the webhook it is about.
WEBHOOK_DEAD_LETTERED = "io.assettwin.webhook.dead_lettered"
WEBHOOK_DISABLED = "io.assettwin.webhook.disabled"
EVENT_TYPES = (
    ASSET_RETIRED,
    DECISION_ISSUED,
    ADVISORY_RAISED,
    ADVISORY_CLEARED,
    THRESHOLD_CROSSED,
    DRIFT_DETECTED,
    MODEL_ACTIVATED,
    ASSET_UPDATED,
    WEBHOOK_DEAD_LETTERED,
    WEBHOOK_DISABLED,
)

_EVENTS = table_of(Event)
_HOOKS = table_of(Webhook)
_COUNTER_PREFIX = "event:"  # keeps event subjects apart from the audit chain's counter
# The counter row's key is the prefix and the subject, in a column as wide as the subject.
_SUBJECT_MAX = text_limit(_EVENTS.c.subject) - len(_COUNTER_PREFIX)
_TYPE_MAX = text_limit(_EVENTS.c.type)
_SEQUENCE_DIGITS = 19  # a BIGINT has at most 19 digits: every value sorts as text too
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.seq)
_SET_ENVELOPE = (
    update(_EVENTS).where(_EVENTS.c.seq == bindparam("at")).values(envelope=bindparam("full"))
)
_ACTIVE_HOOKS = (
    select(_HOOKS.c.id, _HOOKS.c.event_types)
    .where(_HOOKS.c.active.is_(True))
    .order_by(_HOOKS.c.id)
)
_INSERT_DELIVERY = insert(table_of(Delivery))


def emit(
    session: Session,
    *,
    type: str,
    subject: str,
    data: Mapping[str, Any],
    source: str = "/asset-twin",
    time: datetime | None = None,
) -> Event:
    """Write one event, and one pending delivery per active webhook that wants its type,
    in the caller's transaction; returns it as written (an ``Event`` not attached to the
    session)."""
    # Other types are allowed (the constants are ours, not a closed list of the spec).
    if not isinstance(type, str) or not type or len(type) > _TYPE_MAX:
        raise StoreError("type", type, f"a non-empty string of at most {_TYPE_MAX}")
    if not isinstance(subject, str) or not subject or len(subject) > _SUBJECT_MAX:
        raise StoreError("subject", subject, f"a non-empty string of at most {_SUBJECT_MAX}")
    if not isinstance(source, str) or not source:
        raise StoreError("source", source, "a non-empty URI reference such as /asset-twin")
    clean_data = json_object("data", data)  # PostgreSQL refuses NaN; say so here, clearly
    if time is None:
        time = utcnow()
    elif not isinstance(time, datetime) or time.tzinfo is None:
        raise StoreError("time", time, "a timezone-aware datetime")
    time = time.astimezone(UTC)

    number = next_seq(session, _COUNTER_PREFIX + subject)
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": source,
        "type": type,
        "subject": subject,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "datacontenttype": "application/json",
        "sequence": f"{number:0{_SEQUENCE_DIGITS}d}",
        "data": clean_data,
    }
    # Core statements on the session's connection (the ORM's unit of work costs more
    # than the writes): the row, its global seq (the table's autoincrement) read back,
    # and the envelope completed with it.
    conn = session.connection()
    seq = conn.execute(_INSERT_EVENT, {
        "id": envelope["id"], "type": type, "subject": subject, "subject_seq": number,
        "time": time, "envelope": envelope, "mqtt_published": False}).scalar_one()
    envelope = {**envelope, "twinseq": seq}
    conn.execute(_SET_ENVELOPE, {"at": seq, "full": envelope})
    deliveries = [
        {"webhook_id": hook_id, "event_seq": seq, "status": "pending"}
        for hook_id, types in conn.execute(_ACTIVE_HOOKS)
        if not types or type in types
    ]
    if deliveries:
        conn.execute(_INSERT_DELIVERY, deliveries)
    return Event(seq=seq, id=envelope["id"], type=type, subject=subject, subject_seq=number,
                 time=time, envelope=envelope, mqtt_published=False)


def events_after(
    session: Session,
    after_seq: int,
    *,
    limit: int = 100,
    types: Iterable[str] | None = None,
    subject: str | None = None,
) -> list[Event]:
    """Events with ``seq`` above ``after_seq``, oldest first, at most ``limit``; pass the
    last one's ``seq`` to get the next page."""
    if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
        raise StoreError("after_seq", after_seq, "an integer >= 0")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise StoreError("limit", limit, "an integer >= 1")
    query = select(Event).where(Event.seq > after_seq)
    if types is not None:
        wanted = [types] if isinstance(types, str) else list(types)
        query = query.where(Event.type.in_(wanted))
    if subject is not None:
        query = query.where(Event.subject == subject)
    return list(session.scalars(query.order_by(Event.seq).limit(limit)))

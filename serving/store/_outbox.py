"""The transactional outbox: events written with the change they report, as CloudEvents
1.0 envelopes with per-subject sequence numbers; deliveries queued for the webhooks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.store._tables import Delivery, Event, SubjectCounter, Webhook

__all__ = [
    "ADVISORY_CLEARED", "ADVISORY_RAISED", "ASSET_UPDATED", "DECISION_ISSUED",
    "DRIFT_DETECTED", "MODEL_ACTIVATED", "THRESHOLD_CROSSED", "emit", "events_after",
]

DECISION_ISSUED = "io.assettwin.decision.issued"
ADVISORY_RAISED = "io.assettwin.advisory.raised"
ADVISORY_CLEARED = "io.assettwin.advisory.cleared"
THRESHOLD_CROSSED = "io.assettwin.asset.threshold_crossed"
DRIFT_DETECTED = "io.assettwin.drift.detected"
MODEL_ACTIVATED = "io.assettwin.model.activated"
ASSET_UPDATED = "io.assettwin.asset.updated"


def emit(session: Session, *, type: str, subject: str, data: dict[str, Any],
         source: str = "/asset-twin", time: datetime | None = None) -> Event:
    counter = session.get(SubjectCounter, f"event:{subject}", with_for_update=True)
    if counter is None:
        counter = SubjectCounter(subject=f"event:{subject}", last_seq=0, last_hash="")
        session.add(counter)
        session.flush()
    counter.last_seq += 1
    at = time or datetime.now(UTC)
    envelope = {
        "specversion": "1.0", "id": uuid.uuid4().hex, "source": source, "type": type,
        "subject": subject, "time": at.isoformat(), "datacontenttype": "application/json",
        "sequence": str(counter.last_seq), "data": data,
    }
    event = Event(id=envelope["id"], type=type, subject=subject,
                  subject_seq=counter.last_seq, time=at, envelope=envelope)
    session.add(event)
    session.flush()
    event.envelope = {**envelope, "twinseq": event.seq}
    for hook in session.scalars(select(Webhook).where(Webhook.active.is_(True))).all():
        if not hook.event_types or type in hook.event_types:
            session.add(Delivery(webhook_id=hook.id, event_seq=event.seq))
    return event


def events_after(session: Session, after_seq: int, *, limit: int = 100,
                 types: list[str] | None = None, subject: str | None = None) -> list[Event]:
    q = select(Event).where(Event.seq > after_seq)
    if types:
        q = q.where(Event.type.in_(types))
    if subject:
        q = q.where(Event.subject == subject)
    return list(session.scalars(q.order_by(Event.seq).limit(limit)).all())

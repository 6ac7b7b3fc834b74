"""A store for the event-delivery tests, and events written through its outbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from serving.adapters.webhooks import SessionFactory
from serving.store._outbox import emit as outbox_emit
from serving.store._tables import Event


@dataclass
class Db:
    session: SessionFactory
    dialect: str


def emit(db: Db, type_: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """Emit through the outbox (``serving.store._outbox.emit``); return the envelope."""
    with db.session() as s:
        outbox_emit(s, type=type_, subject=subject, data=data)
        s.flush()
        envelope = s.scalar(select(Event.envelope).order_by(Event.seq.desc()).limit(1))
    assert isinstance(envelope, dict)
    return envelope

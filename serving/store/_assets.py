"""Locking an asset for a read-modify-write of its state.

A completion reads the asset's accumulated wear, adds the order's, and writes it back.
Two completions for one machine arriving at once must not both read the old value, or
one order's wear is lost. ``lock_asset`` makes the second wait for the first to commit:
``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the write transaction already holds
the database's write lock from its ``BEGIN IMMEDIATE`` (SQLAlchemy leaves FOR UPDATE out
there), so a plain read is already the latest committed value.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from serving.store._db import StoreError, text_limit
from serving.store._tables import Asset

__all__ = ["lock_asset"]

_ID_MAX = text_limit(Asset.__table__.c.equipment_id)


def lock_asset(session: Session, equipment_id: str) -> Asset | None:
    """The asset, locked until the transaction ends; None if there is no such asset.

    Always read fresh from the database, also when this session loaded it before.
    """
    if not isinstance(equipment_id, str) or not equipment_id or len(equipment_id) > _ID_MAX:
        raise StoreError("equipment_id", equipment_id, f"a non-empty string of at most {_ID_MAX}")
    return session.get(Asset, equipment_id, with_for_update=True, populate_existing=True)

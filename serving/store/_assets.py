"""Row locks on assets: two completions for one machine never lose an update."""

from __future__ import annotations

from sqlalchemy.orm import Session

from serving.store._tables import Asset

__all__ = ["lock_asset"]


def lock_asset(session: Session, equipment_id: str) -> Asset | None:
    """The asset, locked until the transaction ends (SELECT ... FOR UPDATE on PostgreSQL;
    SQLite's BEGIN IMMEDIATE already serializes writers)."""
    return session.get(Asset, equipment_id, with_for_update=True, populate_existing=True)

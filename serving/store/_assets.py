"""Assets in the store: an asset as the contract's JSON (the routes' answer and the MQTT
adapter's retained state), locking one for a read-modify-write of its state, its
external ids, and finding assets by filter.

Locking an asset for a read-modify-write of its state.

A completion reads the asset's accumulated wear, adds the order's, and writes it back.
Two completions for one machine arriving at once must not both read the old value, or
one order's wear is lost. ``lock_asset`` makes the second wait for the first to commit:
``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the write transaction already holds
the database's write lock from its ``BEGIN IMMEDIATE`` (SQLAlchemy leaves FOR UPDATE out
there), so a plain read is already the latest committed value.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, or_, select, true
from sqlalchemy.orm import Session

from serving.store._db import StoreError, aware, text_limit
from serving.store._tables import Asset, AssetExternalId

__all__ = ["asset_out", "claim_external_ids", "etag_of", "find_assets", "in_scope",
           "lock_asset"]

_ID_MAX = text_limit(Asset.__table__.c.equipment_id)


def etag_of(row: Asset) -> str:
    """The asset's entity tag: its revision, which every write of it advances."""
    return f'"r{row.revision}"'


def asset_out(row: Asset) -> dict[str, Any]:
    """The asset as the contract answers it (``AssetOut``)."""
    return {
        "equipment_id": row.equipment_id,
        "asset_type": row.asset_type,
        "description": row.description,
        "site": row.site,
        "area": row.area,
        "work_center": row.work_center,
        "external_ids": row.external_ids,
        "state": row.state,
        "state_measured_at": aware(row.state_measured_at).isoformat(),
        "environment": row.capabilities.get("environment", {}),
        "machine": row.capabilities.get("machine", {}),
        "device_health": row.device_health,
        "health_index": row.health_index,
        "parts_made": row.parts_made,
        "advisories": row.capabilities.get("advisories", []),
        "revision": row.revision,
        "etag": etag_of(row),
        "retired_at": None if row.retired_at is None else aware(row.retired_at).isoformat(),
    }


def lock_asset(session: Session, equipment_id: str) -> Asset | None:
    """The asset, locked until the transaction ends; None if there is no such asset.

    Always read fresh from the database, also when this session loaded it before.
    """
    if not isinstance(equipment_id, str) or not equipment_id or len(equipment_id) > _ID_MAX:
        raise StoreError("equipment_id", equipment_id, f"a non-empty string of at most {_ID_MAX}")
    return session.get(Asset, equipment_id, with_for_update=True, populate_existing=True)


def claim_external_ids(session: Session, equipment_id: str,
                       ids: dict[str, str]) -> list[tuple[str, str, str]]:
    """Make ``ids`` the asset's external ids in the lookup table; returns the
    (scheme, value, holder) that another asset already holds (nothing is changed then)."""
    taken = [
        (row.scheme, row.value, row.equipment_id)
        for scheme, value in ids.items()
        for row in [session.get(AssetExternalId, (scheme, value))]
        if row is not None and row.equipment_id != equipment_id
    ]
    if taken:
        return taken
    session.execute(delete(AssetExternalId).where(
        AssetExternalId.equipment_id == equipment_id))
    session.flush()
    session.add_all(AssetExternalId(scheme=k, value=v, equipment_id=equipment_id)
                    for k, v in ids.items())
    return []


def find_assets(
    session: Session, *, after: str | None, limit: int, asset_type: str | None = None,
    site: str | None = None, area: str | None = None, work_center: str | None = None,
    external: dict[str, str] | None = None, device_health: str | None = None,
    include_retired: bool = False,
) -> list[Asset]:
    """Assets matching every filter given, by equipment id, after ``after``, at most
    ``limit``."""
    q = select(Asset)
    for column, value in ((Asset.asset_type, asset_type), (Asset.site, site),
                          (Asset.area, area), (Asset.work_center, work_center),
                          (Asset.device_health, device_health)):
        if value is not None:
            q = q.where(column == value)
    for scheme, value in (external or {}).items():
        q = q.where(Asset.equipment_id.in_(select(AssetExternalId.equipment_id).where(
            AssetExternalId.scheme == scheme, AssetExternalId.value == value)))
    if not include_retired:
        q = q.where(Asset.retired_at.is_(None))
    if after is not None:
        q = q.where(Asset.equipment_id > after)
    return list(session.scalars(q.order_by(Asset.equipment_id).limit(limit)).all())


def in_scope(session: Session, asset: Asset,
             requirements: list[dict[str, str | None]]) -> list[Asset]:
    """The other assets of ``asset``'s type, in service, that match any of the
    ``requirements`` (each a dict of equipment_id / site / area / work_center; every key
    given must match); without requirements, those in ``asset``'s own work center (or,
    for an asset outside any hierarchy, those outside one too)."""
    if not requirements:
        requirements = [{"site": asset.site, "area": asset.area,
                         "work_center": asset.work_center}]
        exact = True
    else:
        exact = False
    columns = {"equipment_id": Asset.equipment_id, "site": Asset.site, "area": Asset.area,
               "work_center": Asset.work_center}
    alternatives = []
    for req in requirements:
        terms = [columns[k] == v if v is not None else columns[k].is_(None)
                 for k, v in req.items() if v is not None or exact]
        alternatives.append(and_(*terms) if terms else true())
    q = (select(Asset).where(Asset.asset_type == asset.asset_type,
                             Asset.equipment_id != asset.equipment_id,
                             Asset.retired_at.is_(None), or_(*alternatives))
         .order_by(Asset.equipment_id))
    return list(session.scalars(q).all())

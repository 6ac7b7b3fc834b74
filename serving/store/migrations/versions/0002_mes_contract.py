"""MES contract II: the ISA-95 equipment hierarchy and retirement of assets, their
external ids as a lookup table, and managed webhooks (secret rotation, a bounded
backlog, a reason when inactive, one queue per subscription).

Revision ID: 0002
Revises: 0001
Created: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("site", sa.String(128), nullable=True))
        batch.add_column(sa.Column("area", sa.String(128), nullable=True))
        batch.add_column(sa.Column("work_center", sa.String(128), nullable=True))
        batch.add_column(sa.Column("retired_at", Time, nullable=True))
    op.create_index("ix_assets_scope", "assets", ["site", "area", "work_center"])
    op.create_table(
        "asset_external_ids",
        sa.Column("scheme", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("equipment_id", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(["equipment_id"], ["assets.equipment_id"],
                                name="fk_asset_external_ids_equipment_id_assets",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scheme", "value", name="pk_asset_external_ids"),
    )
    op.create_index("ix_asset_external_ids_equipment_id", "asset_external_ids",
                    ["equipment_id"])
    # The ids the assets already carry: the first asset to claim a value keeps it.
    assets = sa.table("assets", sa.column("equipment_id", sa.String),
                      sa.column("external_ids", sa.JSON))
    ids = sa.table("asset_external_ids", sa.column("scheme", sa.String),
                   sa.column("value", sa.String), sa.column("equipment_id", sa.String))
    conn = op.get_bind()
    seen: set[tuple[str, str]] = set()
    rows = []
    for equipment_id, external in conn.execute(
            sa.select(assets.c.equipment_id, assets.c.external_ids)
            .order_by(assets.c.equipment_id)):
        for scheme, value in (external or {}).items():
            key = (str(scheme)[:64], str(value)[:256])
            if key not in seen:
                seen.add(key)
                rows.append({"scheme": key[0], "value": key[1], "equipment_id": equipment_id})
    if rows:
        op.bulk_insert(ids, rows)

    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("previous_secret", sa.String(256), nullable=True))
        batch.add_column(sa.Column("previous_secret_expires_at", Time, nullable=True))
        batch.add_column(sa.Column("max_backlog", sa.Integer(), nullable=False,
                                   server_default="1000"))
        batch.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("updated_at", Time, nullable=False,
                                   server_default=sa.func.current_timestamp()))
    with op.batch_alter_table("webhooks") as batch:
        batch.alter_column("description", server_default=None)
        batch.alter_column("max_backlog", server_default=None)
        batch.alter_column("updated_at", server_default=None)
    op.create_index("ix_deliveries_queue", "deliveries", ["webhook_id", "status", "event_seq"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_queue", table_name="deliveries")
    with op.batch_alter_table("webhooks") as batch:
        for name in ("updated_at", "disabled_reason", "max_backlog",
                     "previous_secret_expires_at", "previous_secret", "description"):
            batch.drop_column(name)
    op.drop_index("ix_asset_external_ids_equipment_id", table_name="asset_external_ids")
    op.drop_table("asset_external_ids")
    op.drop_index("ix_assets_scope", table_name="assets")
    with op.batch_alter_table("assets") as batch:
        for name in ("retired_at", "work_center", "area", "site"):
            batch.drop_column(name)

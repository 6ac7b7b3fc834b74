"""The service's tables: asset state, work orders, audit chain, idempotency, event outbox.

One schema for SQLite (the embedded default) and PostgreSQL. JSON columns hold what
the MES sent and what the twin answered, as sent and answered. Times are UTC.
Alembic migrations (``serving/store/migrations``) create and change these tables;
nothing calls ``metadata.create_all`` outside tests of the migrations themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiKey",
    "Assessment",
    "Asset",
    "AssetExternalId",
    "AuditRecord",
    "Base",
    "Completion",
    "Delivery",
    "Event",
    "IdempotencyRecord",
    "ModelActivation",
    "Residual",
    "SubjectCounter",
    "Webhook",
    "table_of",
    "utcnow",
]

# SQLite has no BIGINT autoincrement; an Integer primary key is its rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


# Named constraints, so migrations can refer to them by name on every database (SQLite's
# batch mode, which rebuilds a table to change it, needs the names).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


def table_of(model: type[Base]) -> Table:
    """The Core table behind a mapped class, for statements built once at import."""
    return cast(Table, model.__table__)


class Asset(Base):
    """A machine the MES runs orders on; ``state`` holds the spec's state inputs."""

    __tablename__ = "assets"

    equipment_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    asset_type: Mapped[str] = mapped_column(String(128))  # twin spec name
    description: Mapped[str] = mapped_column(Text, default="")
    external_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)  # cmms_tag, aas_id...
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)  # fixed inputs, limits
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)  # state input id -> value
    state_measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    device_health: Mapped[str] = mapped_column(String(32), default="NORMAL")  # NAMUR NE 107
    health_index: Mapped[float] = mapped_column(Float, default=1.0)
    parts_made: Mapped[int] = mapped_column(BigInteger, default=0)
    revision: Mapped[int] = mapped_column(Integer, default=1)  # bumped on every change
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # ISA-95 equipment hierarchy: enterprise > site > area > work center > work unit (the
    # asset). Reroutes stay within the scope an order names.
    site: Mapped[str | None] = mapped_column(String(128), nullable=True)
    area: Mapped[str | None] = mapped_column(String(128), nullable=True)
    work_center: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # A retired asset is kept for the audit trail and refused as a target or alternate.
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_assets_scope", "site", "area", "work_center"),)


class AssetExternalId(Base):
    """One external id of an asset (``cmms_tag`` -> ``CMMS-4711``): each identifies at
    most one asset, and finds it (``GET /v1/assets?cmms_tag=...``)."""

    __tablename__ = "asset_external_ids"

    scheme: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), primary_key=True)
    equipment_id: Mapped[str] = mapped_column(
        ForeignKey("assets.equipment_id", ondelete="CASCADE"), index=True)


class Assessment(Base):
    """One answer to ``POST /v1/work-orders/{id}/assessment``, as sent and answered."""

    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_order_id: Mapped[str] = mapped_column(String(128), index=True)
    equipment_id: Mapped[str] = mapped_column(String(128), index=True)
    decision: Mapped[str] = mapped_column(String(32))
    request: Mapped[dict[str, Any]] = mapped_column()
    response: Mapped[dict[str, Any]] = mapped_column()
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bundle_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Completion(Base):
    """What the MES reported when an order ended; one per order."""

    __tablename__ = "completions"

    job_order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    equipment_id: Mapped[str] = mapped_column(String(128), index=True)
    request: Mapped[dict[str, Any]] = mapped_column()
    response: Mapped[dict[str, Any]] = mapped_column()
    state_before: Mapped[dict[str, Any]] = mapped_column()
    state_after: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Residual(Base):
    """Measured minus predicted quality of one characteristic of one completed order."""

    __tablename__ = "residuals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_order_id: Mapped[str] = mapped_column(String(128), index=True)
    equipment_id: Mapped[str] = mapped_column(String(128))
    asset_type: Mapped[str] = mapped_column(String(128))
    characteristic_id: Mapped[str] = mapped_column(String(64))
    kpi: Mapped[str] = mapped_column(String(128))
    predicted: Mapped[float] = mapped_column(Float)
    lower: Mapped[float] = mapped_column(Float)
    upper: Mapped[float] = mapped_column(Float)
    level: Mapped[float] = mapped_column(Float)
    measured: Mapped[float] = mapped_column(Float)
    inside: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_residuals_type_kpi", "asset_type", "kpi", "id"),)


class AuditRecord(Base):
    """Append-only, hash-chained: ``hash`` = sha256(prev_hash + canonical JSON of the
    record's fields), so changing, removing or reordering a record breaks the chain."""

    __tablename__ = "audit"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(64))  # assessment, completion, asset, model...
    subject: Mapped[str] = mapped_column(String(256), index=True)
    caller: Mapped[str] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(256), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bundle_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    inputs: Mapped[dict[str, Any]] = mapped_column()
    outputs: Mapped[dict[str, Any]] = mapped_column()
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class IdempotencyRecord(Base):
    """The stored answer of a POST sent with an ``Idempotency-Key``."""

    __tablename__ = "idempotency"

    caller: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SubjectCounter(Base):
    """Last sequence number per event subject (``asset/M-01``), and the audit chain head
    (subject ``audit``): rows locked while the next number is taken."""

    __tablename__ = "counters"

    subject: Mapped[str] = mapped_column(String(256), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default="")


class Event(Base):
    """A CloudEvents 1.0 envelope, written in the same transaction as what it reports
    (the transactional outbox); ``seq`` orders all events, ``subject_seq`` one subject's."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(256))
    subject_seq: Mapped[int] = mapped_column(BigInteger)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    envelope: Mapped[dict[str, Any]] = mapped_column()
    mqtt_published: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        UniqueConstraint("subject", "subject_seq", name="uq_events_subject_seq"),
        # ``seq`` is the replay cursor (``after_seq``): SQLite must never hand out a
        # number again, even after the newest events are pruned.
        {"sqlite_autoincrement": True},
    )


class Webhook(Base):
    """An MES endpoint that receives events, signed with its own secret."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))  # whsec_<base64>
    event_types: Mapped[list[Any]] = mapped_column(default=list)  # empty: every type
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    description: Mapped[str] = mapped_column(Text, default="")
    # After a rotation the old secret still signs, beside the new one, until it expires.
    previous_secret: Mapped[str | None] = mapped_column(String(256), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True)
    # Pending deliveries kept at most; past it the oldest are dead-lettered.
    max_backlog: Mapped[int] = mapped_column(Integer, default=1000)
    # Why the webhook is inactive: disabled by a caller, or too many failures in a row.
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Delivery(Base):
    """One event owed to one webhook: pending until the receiver answers 2xx."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_seq: Mapped[int] = mapped_column(ForeignKey("events.seq"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # delivered, failed, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        UniqueConstraint("webhook_id", "event_seq", name="uq_deliveries_hook_event"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        # One queue per webhook: its oldest pending delivery, and its backlog.
        Index("ix_deliveries_queue", "webhook_id", "status", "event_seq"),
    )


class ApiKey(Base):
    """A credential: only the sha256 of the secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the key's public prefix
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(default=list)  # predict, work-orders, admin
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelActivation(Base):
    """Which bundle serves a model name: the latest row wins, in every worker."""

    __tablename__ = "model_activations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(2048))  # folder or models:/name@alias
    version: Mapped[str] = mapped_column(String(64))
    bundle_hash: Mapped[str] = mapped_column(String(64))
    caller: Mapped[str] = mapped_column(String(128))
    activated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

"""The service's database: asset state, audit chain, idempotency and the event outbox.

SQLite by default, PostgreSQL at scale, one schema managed by Alembic migrations.
Open it once per process with ``open_store(url)``; each request works in
``store.session()``, one transaction, in which ``append_audit``, ``emit`` and
``lock_asset`` take the locks that keep concurrent workers from racing.
"""

from serving.store._activations import last_activation_id, latest_activation, record_activation
from serving.store._assets import lock_asset
from serving.store._audit import (
    ChainReport,
    append_audit,
    audit_fields,
    canonical_json,
    record_hash,
    verify_chain,
)
from serving.store._db import DEFAULT_URL, Store, StoreError, open_store, upgrade
from serving.store._outbox import (
    ADVISORY_CLEARED,
    ADVISORY_RAISED,
    ASSET_UPDATED,
    DECISION_ISSUED,
    DRIFT_DETECTED,
    EVENT_TYPES,
    MODEL_ACTIVATED,
    THRESHOLD_CROSSED,
    emit,
    events_after,
)
from serving.store._tables import (
    ApiKey,
    Assessment,
    Asset,
    AuditRecord,
    Base,
    Completion,
    Delivery,
    Event,
    IdempotencyRecord,
    ModelActivation,
    Residual,
    SubjectCounter,
    Webhook,
)

__all__ = [
    "ADVISORY_CLEARED",
    "ADVISORY_RAISED",
    "ASSET_UPDATED",
    "DECISION_ISSUED",
    "DEFAULT_URL",
    "DRIFT_DETECTED",
    "EVENT_TYPES",
    "MODEL_ACTIVATED",
    "THRESHOLD_CROSSED",
    "ApiKey",
    "Assessment",
    "Asset",
    "AuditRecord",
    "Base",
    "ChainReport",
    "Completion",
    "Delivery",
    "Event",
    "IdempotencyRecord",
    "ModelActivation",
    "Residual",
    "Store",
    "StoreError",
    "SubjectCounter",
    "Webhook",
    "append_audit",
    "audit_fields",
    "canonical_json",
    "emit",
    "events_after",
    "last_activation_id",
    "latest_activation",
    "lock_asset",
    "open_store",
    "record_activation",
    "record_hash",
    "upgrade",
    "verify_chain",
]

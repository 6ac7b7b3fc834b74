"""Model activations: which bundle serves a model name, recorded so every worker follows.

A reload writes, in one transaction, the ``model_activations`` row, an audit record
(kind ``model``, subject ``model/<name>``) and a ``MODEL_ACTIVATED`` event: the switch
is committed with its record or not at all. Activations of one name take the counter
row ``model:<name>`` first, so their ids follow the order in which they commit, and the
row with the highest id is the one every worker serves (``latest_activation``).

Lock order in that transaction: the ``model:`` counter, then the audit chain head, then
the event subject's counter; no other transaction takes a ``model:`` counter, so this
cannot deadlock with the assessments and completions (audit, then events).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving.store._audit import append_audit
from serving.store._db import StoreError, lock_counter, set_counter, text_limit
from serving.store._outbox import MODEL_ACTIVATED, emit
from serving.store._tables import ModelActivation

__all__ = ["last_activation_id", "latest_activation", "record_activation"]

_COUNTER_PREFIX = "model:"
_TABLE = ModelActivation.__table__


def _check(name: str, value: Any) -> None:
    length = text_limit(_TABLE.c[name])
    if not isinstance(value, str) or not value or len(value) > length:
        raise StoreError(name, value, f"a non-empty string of at most {length} characters")


def record_activation(
    session: Session,
    *,
    name: str,
    source: str,
    version: str,
    bundle_hash: str,
    caller: str,
    previous: Mapping[str, Any] | None,
    event_source: str = "/asset-twin",
) -> ModelActivation:
    """Record that ``name`` is served from ``source`` (``version``, ``bundle_hash``) from
    now on, with its audit record and ``MODEL_ACTIVATED`` event, in the caller's
    transaction. ``previous``: the version and bundle hash it replaces."""
    for field, value in (("name", name), ("source", source), ("version", version),
                         ("bundle_hash", bundle_hash), ("caller", caller)):
        _check(field, value)
    counter = _COUNTER_PREFIX + name
    count, _ = lock_counter(session, counter)
    set_counter(session, counter, count + 1)
    row = ModelActivation(name=name, source=source, version=version,
                          bundle_hash=bundle_hash, caller=caller)
    session.add(row)
    session.flush()  # the id is the activation's place in the order
    prev = dict(previous) if previous is not None else None
    changed = prev is None or prev.get("bundle_hash") != bundle_hash
    outputs = {
        "activation_id": row.id,
        "name": name,
        "source": source,
        "version": version,
        "bundle_hash": bundle_hash,
        "previous": prev,
        "changed": changed,
    }
    append_audit(session, kind="model", subject=f"model/{name}", caller=caller,
                 inputs={"name": name, "source": source}, outputs=outputs,
                 model_version=version, bundle_hash=bundle_hash)
    emit(session, type=MODEL_ACTIVATED, subject=f"model/{name}", data=outputs,
         source=event_source)
    return row


def latest_activation(session: Session, name: str) -> ModelActivation | None:
    """The activation of ``name`` that wins (the highest id), or None."""
    return session.scalars(
        select(ModelActivation).where(ModelActivation.name == name)
        .order_by(ModelActivation.id.desc()).limit(1)
    ).first()


def last_activation_id(session: Session) -> int:
    """The highest activation id of any name (0: none yet): a cheap "anything new?"."""
    return int(session.scalar(select(func.max(ModelActivation.id))) or 0)

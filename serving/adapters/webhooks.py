"""Webhook delivery: the events in the outbox, POSTed to the MES, signed, in order.

Why it is built this way:

- The outbox (``Event`` + one pending ``Delivery`` per subscribed webhook) is written
  in the same transaction as what the event reports, so an event is never lost and
  never sent for work that rolled back. This module only drains it.
- Delivery is at-least-once. A delivery is *claimed* in a short transaction that sets a
  lease (``next_attempt_at`` pushed past the HTTP timeout) and commits; the HTTP call
  runs with no transaction open; the result is recorded in a second transaction. A
  worker that dies mid-send leaves the lease to expire and the delivery is sent again.
  Receivers dedupe on ``webhook-id`` (the CloudEvents ``id``).
- Several workers (replicas) may run ``deliver_due`` at once: on PostgreSQL the claim
  uses ``FOR UPDATE SKIP LOCKED``, and on every database the claim is a compare-and-set
  on ``attempts``, so one attempt is sent by one worker only.
- A webhook sees its events in ``seq`` order: only its lowest pending delivery is
  eligible, so event N+1 waits until N is delivered or has failed for good.
- Signatures follow Standard Webhooks (standardwebhooks.com): the MES verifies with
  any of its libraries, or with :func:`verify` below.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased

from serving.store._tables import Delivery, Event, Webhook

__all__ = [
    "DEFAULT_BACKOFF",
    "DeliveryStats",
    "Dispatcher",
    "SessionFactory",
    "SignatureError",
    "backlog",
    "new_secret",
    "run_dispatcher",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

#: Opens one transaction: commits when the block ends, rolls back on an exception.
SessionFactory = Callable[[], AbstractContextManager[Session]]

#: Seconds to wait after the 1st, 2nd, ... failed attempt; the last value repeats.
DEFAULT_BACKOFF: tuple[float, ...] = (1, 2, 5, 15, 60, 300, 900, 1800, 3600)

CONTENT_TYPE = "application/cloudevents+json"
USER_AGENT = "asset-twin-webhooks/1"
_SECRET_PREFIX = "whsec_"
_MAX_ERROR_CHARS = 500


# --- signing -------------------------------------------------------------------------


class SignatureError(Exception):
    """A webhook request that does not verify; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_secret(nbytes: int = 32) -> str:
    """A fresh signing secret, ``whsec_`` + base64 of ``nbytes`` random bytes."""
    if not 24 <= nbytes <= 64:
        raise ValueError(f"nbytes must be between 24 and 64, got {nbytes}")
    return _SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    raw = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret must be 'whsec_' followed by base64; got invalid base64") from None
    if not key:
        raise ValueError("secret is empty; create one with new_secret()")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.ts.body``."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> None:
    """Check a received webhook; raise :class:`SignatureError` unless it is authentic.

    ``headers`` may use any letter case. ``now`` is unix seconds (default: the clock).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    values = {}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        value = lower.get(name, "").strip()
        if not value:
            raise SignatureError(f"missing header {name}")
        values[name] = value
    try:
        timestamp = int(values["webhook-timestamp"])
    except ValueError:
        raise SignatureError(
            f"invalid webhook-timestamp {values['webhook-timestamp']!r}: expected unix seconds"
        ) from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise SignatureError(
            f"timestamp too old: {current - timestamp:.0f} s before now, "
            f"tolerance {tolerance_s:g} s"
        )
    if timestamp > current + tolerance_s:
        raise SignatureError(
            f"timestamp too new: {timestamp - current:.0f} s after now, tolerance {tolerance_s:g} s"
        )
    expected = sign(secret, values["webhook-id"], timestamp, body).encode("ascii")
    # Several signatures (key rotation, other schemes) may be sent; compare each in
    # constant time and do not stop early, so timing says nothing about which matched.
    matched = False
    for candidate in values["webhook-signature"].split():
        if candidate.startswith("v1,"):
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    if not matched:
        raise SignatureError("no matching signature")


# --- delivery --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryStats:
    """What one ``deliver_due`` call did."""

    delivered: int = 0  # answered 2xx
    retrying: int = 0  # failed, scheduled again
    failed: int = 0  # failed for good after max_attempts

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.failed


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    attempts: int  # after this attempt
    event_id: str
    envelope: dict[str, Any]
    url: str
    secret: str


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        raise ValueError(f"now must be timezone-aware (UTC), got naive {value.isoformat()}")
    # SQLite stores the wall-clock fields as given: always hand it UTC.
    return value.astimezone(UTC)


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout: {text}"
    if isinstance(exc, httpx.ConnectError):
        kind = "connection refused" if "refused" in text.lower() else "connect error"
        return f"{kind}: {text}"
    return f"{type(exc).__name__}: {text}"


class Dispatcher:
    """Sends due webhook deliveries; safe to run in several workers at once.

    ``session_factory()`` opens one transaction (``Store.session``). ``client`` is
    an ``httpx.Client`` to reuse (not closed here); by default one is made and
    closed by :meth:`close`. A claimed delivery is leased for ``lease_s`` (default
    ``2 * timeout_s + 5``): if the worker dies, it is sent again after that.
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        client: httpx.Client | None = None,
        timeout_s: float = 5.0,
        max_attempts: int = 12,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        jitter: float = 0.1,
        lease_s: float | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if not backoff or any(b < 0 for b in backoff):
            raise ValueError(f"backoff must be non-empty seconds >= 0, got {tuple(backoff)}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
        self._sessions = session_factory
        self._owns_client = client is None
        self._client = client or httpx.Client(follow_redirects=False)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff = tuple(float(b) for b in backoff)
        self.jitter = jitter
        self.lease_s = 2 * timeout_s + 5 if lease_s is None else lease_s
        if self.lease_s <= timeout_s:
            raise ValueError(f"lease_s must be > timeout_s ({timeout_s}), got {self.lease_s}")

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones (with jitter)."""
        base = self.backoff[min(attempts, len(self.backoff)) - 1]
        return base * (1 + random.uniform(0, self.jitter))

    def deliver_due(self, now: datetime | None = None, limit: int = 50) -> DeliveryStats:
        """Send up to ``limit`` due deliveries, one at a time, oldest event first.

        ``now`` (aware) decides what is due and when retries are scheduled; the
        signature timestamp is always the real clock, since the receiver checks it.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        at = _utc(now)
        delivered = retrying = failed = 0
        for _ in range(limit):
            claim = self._claim(at)
            if claim is None:
                break
            error = self._send(claim)
            outcome = self._record(claim, error, at)
            delivered += outcome == "delivered"
            retrying += outcome == "pending"
            failed += outcome == "failed"
        return DeliveryStats(delivered=delivered, retrying=retrying, failed=failed)

    def _claim(self, at: datetime) -> _Claim | None:
        earlier = aliased(Delivery)
        blocked = exists().where(
            earlier.webhook_id == Delivery.webhook_id,
            earlier.status == "pending",
            earlier.event_seq < Delivery.event_seq,
        )
        due = (
            select(
                Delivery.id,
                Delivery.attempts,
                Event.id,
                Event.envelope,
                Webhook.url,
                Webhook.secret,
            )
            .join(Webhook, Webhook.id == Delivery.webhook_id)
            .join(Event, Event.seq == Delivery.event_seq)
            .where(
                Delivery.status == "pending",
                Delivery.next_attempt_at <= at,
                Webhook.active.is_(True),
                ~blocked,
            )
            .order_by(Delivery.event_seq, Delivery.id)
            .limit(1)
            # PostgreSQL: a row another worker is claiming is skipped, not waited for.
            # SQLite ignores this; its write transactions are serialized anyway.
            .with_for_update(skip_locked=True, of=Delivery)
        )
        with self._sessions() as session:
            row = session.execute(due).first()
            if row is None:
                return None
            delivery_id, attempts, event_id, envelope, url, secret = row
            # Compare-and-set on attempts: if another worker took it first, we lose.
            taken = session.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery_id,
                    Delivery.status == "pending",
                    Delivery.attempts == attempts,
                )
                .values(attempts=attempts + 1, next_attempt_at=at + timedelta(seconds=self.lease_s))
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
        return _Claim(delivery_id, attempts + 1, event_id, envelope, url, secret)

    def _send(self, claim: _Claim) -> str | None:
        body = json.dumps(claim.envelope, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": CONTENT_TYPE,
            "user-agent": USER_AGENT,
            "webhook-id": claim.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(claim.secret, claim.event_id, timestamp, body),
        }
        try:
            response = self._client.post(
                claim.url, content=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            return _describe(exc)[:_MAX_ERROR_CHARS]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    def _record(self, claim: _Claim, error: str | None, at: datetime) -> str:
        values: dict[str, Any]
        if error is None:
            values = {"status": "delivered", "delivered_at": datetime.now(UTC)}
        elif claim.attempts >= self.max_attempts:
            values = {"status": "failed", "last_error": error}
        else:
            delay = timedelta(seconds=self.retry_delay(claim.attempts))
            values = {"status": "pending", "last_error": error, "next_attempt_at": at + delay}
        with self._sessions() as session:
            # Only if the lease is still ours: a worker that re-claimed it after the
            # lease ran out has bumped attempts, and its result is the one that counts.
            session.execute(
                update(Delivery)
                .where(
                    Delivery.id == claim.delivery_id,
                    Delivery.status == "pending",
                    Delivery.attempts == claim.attempts,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        if error is not None:
            log.info(
                "webhook delivery %s to %s failed (attempt %d): %s",
                claim.delivery_id,
                claim.url,
                claim.attempts,
                error,
            )
        return str(values["status"])


def backlog(session: Session) -> int:
    """Deliveries still pending (for the metrics endpoint)."""
    count = session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.status == "pending")
    )
    return int(count or 0)


async def run_dispatcher(
    dispatcher: Dispatcher, stop: asyncio.Event, interval_s: float = 0.5
) -> None:
    """Drain deliveries until ``stop`` is set; for a task in the FastAPI lifespan.

    The blocking work runs in a thread. Errors (a database that went away) are logged
    and retried on the next round instead of ending the task.
    """
    limit = 50
    while not stop.is_set():
        busy = False
        try:
            stats = await asyncio.to_thread(dispatcher.deliver_due, None, limit)
            busy = stats.attempted >= limit
        except Exception:
            log.exception("webhook dispatcher round failed")
        if busy:
            continue  # more may be due: do not wait
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)

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
- Each webhook is a queue of its own (``serving.adapters._webhook_queue``): it sees its
  events in ``seq`` order (only its lowest pending delivery is eligible), and
  :func:`run_dispatcher` drains every queue in a task of its own, so a slow or dead
  receiver delays nobody else.
- Nothing waits for ever: a delivery is tried ``max_attempts`` times (by default 6 over
  about 30 minutes; a receiver's ``Retry-After`` on 429/503 is honoured, capped) and
  then dead-lettered; a queue holds at most ``max_backlog`` pending deliveries. Dead
  letters stay listed until they are replayed, and each is announced by a
  ``webhook.dead_lettered`` event.
- Signatures follow Standard Webhooks (standardwebhooks.com): the MES verifies with
  any of its libraries, or with :func:`verify` below. After a secret rotation the old
  secret signs beside the new one until its grace period ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, aliased

from serving.adapters._webhook_queue import (
    DISPATCHER_CALLER,
    PERMANENT_PREFIX,
    backlog,
    dead_lettered,
    due_webhooks,
    overfull_webhooks,
    queue_counts,
    trim_backlog,
)
from serving.adapters._webhook_signing import SignatureError, new_secret, sign, verify
from serving.store._tables import Delivery, Event, Webhook

if TYPE_CHECKING:
    from serving._settings import Settings

__all__ = [
    "DEFAULT_BACKOFF",
    "DISPATCHER_CALLER",
    "DeliveryStats",
    "Dispatcher",
    "SessionFactory",
    "SignatureError",
    "backlog",
    "new_secret",
    "queue_counts",
    "retry_after_s",
    "run_dispatcher",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

#: Opens one transaction: commits when the block ends, rolls back on an exception.
SessionFactory = Callable[[], AbstractContextManager[Session]]

#: Seconds to wait after the 1st, 2nd, ... failed attempt; the last value repeats. With
#: 6 attempts a delivery is dead-lettered about 30 minutes after its first try.
DEFAULT_BACKOFF: tuple[float, ...] = (5, 30, 120, 450, 1200)

CONTENT_TYPE = "application/cloudevents+json"
USER_AGENT = "asset-twin-webhooks/1"
_MAX_ERROR_CHARS = 500


# --- delivery --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryStats:
    """What one ``deliver_due`` call did."""

    delivered: int = 0  # answered 2xx
    retrying: int = 0  # failed, scheduled again
    dead: int = 0  # dead-lettered: max_attempts reached, or an error no retry cures

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.dead


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    webhook_id: str
    attempts: int  # after this attempt
    event_seq: int
    event_id: str
    envelope: dict[str, Any]
    url: str
    secrets: tuple[str, ...]  # the current secret first, then one still in its grace


@dataclass(frozen=True)
class _Outcome:
    error: str | None = None  # None: delivered
    retry_after_s: float | None = None  # the receiver's Retry-After, capped
    permanent: bool = False  # no retry can cure it (an invalid URL)


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        raise ValueError(f"now must be timezone-aware (UTC), got naive {value.isoformat()}")
    # SQLite stores the wall-clock fields as given: always hand it UTC.
    return value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout: {text}"
    if isinstance(exc, httpx.ConnectError):
        kind = "connection refused" if "refused" in text.lower() else "connect error"
        return f"{kind}: {text}"
    return f"{type(exc).__name__}: {text}"


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait (RFC 9110 10.2.3: delay-seconds or
    an HTTP date), or None when there is none or it cannot be read."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class Dispatcher:
    """Sends due webhook deliveries; safe to run in several workers at once.

    ``session_factory()`` opens one transaction (``Store.session``). ``client`` is
    an ``httpx.Client`` to reuse (not closed here); by default one is made and
    closed by :meth:`close`. A claimed delivery is leased for ``lease_s`` (default
    ``2 * timeout_s + 5``): if the worker dies, it is sent again after that. A delivery
    that failed ``max_attempts`` times is dead-lettered; ``disable_after`` dead letters
    in a row turn the webhook off (0: never).
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        client: httpx.Client | None = None,
        timeout_s: float = 5.0,
        max_attempts: int = 6,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        jitter: float = 0.1,
        lease_s: float | None = None,
        retry_after_max_s: float = 300.0,
        disable_after: int = 10,
        event_source: str = "/asset-twin",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if not backoff or any(b < 0 for b in backoff):
            raise ValueError(f"backoff must be non-empty seconds >= 0, got {tuple(backoff)}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
        if retry_after_max_s < 0:
            raise ValueError(f"retry_after_max_s must be >= 0, got {retry_after_max_s}")
        if disable_after < 0:
            raise ValueError(f"disable_after must be >= 0 (0: never), got {disable_after}")
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
        self.retry_after_max_s = retry_after_max_s
        self.disable_after = disable_after
        self.event_source = event_source

    @classmethod
    def from_settings(cls, session_factory: SessionFactory, settings: Settings) -> Dispatcher:
        """The dispatcher a service with ``settings`` runs."""
        return cls(session_factory, timeout_s=settings.webhook_timeout_s,
                   max_attempts=settings.webhook_max_attempts,
                   backoff=settings.webhook_backoff_s,
                   retry_after_max_s=settings.webhook_retry_after_max_s,
                   disable_after=settings.webhook_disable_after,
                   event_source=settings.event_source)

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

    def tick(self, now: datetime | None = None) -> list[str]:
        """Bound every queue (dead-letter the oldest past ``max_backlog``, one transaction
        per webhook) and return the webhooks with a delivery due: one dispatcher round."""
        at = _utc(now)
        with self._sessions() as session:
            overfull = overfull_webhooks(session)
        for hook_id in overfull:
            with self._sessions() as session:
                dead = trim_backlog(session, hook_id, source=self.event_source)
            if dead:
                log.warning("webhook %s: %d deliveries dead-lettered (backlog over its bound)",
                            hook_id, dead)
        with self._sessions() as session:
            return due_webhooks(session, at)

    def deliver_due(self, now: datetime | None = None, limit: int = 50,
                    webhook_id: str | None = None) -> DeliveryStats:
        """Send up to ``limit`` due deliveries, one at a time, oldest event first; only
        ``webhook_id``'s when given (one queue), else any webhook's.

        ``now`` (aware) decides what is due, which secrets sign and when retries are
        scheduled; the signature timestamp is always the real clock, since the receiver
        checks it.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        at = _utc(now)
        counts = {"delivered": 0, "pending": 0, "dead": 0}
        for _ in range(limit):
            claim = self._claim(at, webhook_id)
            if claim is None:
                break
            outcome = self._send(claim)
            counts[self._record(claim, outcome, at)] += 1
        return DeliveryStats(delivered=counts["delivered"], retrying=counts["pending"],
                             dead=counts["dead"])

    def _claim(self, at: datetime, webhook_id: str | None) -> _Claim | None:
        earlier = aliased(Delivery)
        blocked = exists().where(
            earlier.webhook_id == Delivery.webhook_id,
            earlier.status == "pending",
            earlier.event_seq < Delivery.event_seq,
        )
        due = (
            select(
                Delivery.id,
                Delivery.webhook_id,
                Delivery.attempts,
                Delivery.event_seq,
                Event.id,
                Event.envelope,
                Webhook.url,
                Webhook.secret,
                Webhook.previous_secret,
                Webhook.previous_secret_expires_at,
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
        if webhook_id is not None:
            due = due.where(Delivery.webhook_id == webhook_id)
        with self._sessions() as session:
            row = session.execute(due).first()
            if row is None:
                return None
            (delivery_id, hook_id, attempts, seq, event_id, envelope, url, secret,
             previous, previous_until) = row
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
        secrets_now: tuple[str, ...] = (secret,)
        if previous and previous_until is not None and _aware(previous_until) > at:
            secrets_now = (secret, previous)
        return _Claim(delivery_id, hook_id, attempts + 1, seq, event_id, envelope, url,
                      secrets_now)

    def _send(self, claim: _Claim) -> _Outcome:
        body = json.dumps(claim.envelope, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(time.time())
        # Standard Webhooks: several space-separated signatures; the receiver accepts the
        # request when one of them verifies with its secret (old or new, during a rotation).
        signature = " ".join(sign(s, claim.event_id, timestamp, body) for s in claim.secrets)
        headers = {
            "content-type": CONTENT_TYPE,
            "user-agent": USER_AGENT,
            "webhook-id": claim.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        try:
            response = self._client.post(
                claim.url, content=body, headers=headers, timeout=self.timeout_s
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            # Registered before URLs were checked: no retry can cure it.
            return _Outcome(f"{PERMANENT_PREFIX}invalid URL {claim.url!r}: {exc}"[
                :_MAX_ERROR_CHARS], permanent=True)
        except httpx.HTTPError as exc:
            return _Outcome(_describe(exc)[:_MAX_ERROR_CHARS])
        if 200 <= response.status_code < 300:
            return _Outcome()
        wait = None
        if response.status_code in (429, 503):
            asked = retry_after_s(response.headers.get("retry-after"))
            wait = None if asked is None else min(asked, self.retry_after_max_s)
        return _Outcome(f"HTTP {response.status_code}", retry_after_s=wait)

    def _record(self, claim: _Claim, outcome: _Outcome, at: datetime) -> str:
        values: dict[str, Any]
        error = outcome.error
        if error is None:
            values = {"status": "delivered", "delivered_at": datetime.now(UTC)}
        elif outcome.permanent or claim.attempts >= self.max_attempts:
            values = {"status": "dead", "last_error": error}
        else:
            wait = outcome.retry_after_s
            delay = self.retry_delay(claim.attempts) if wait is None else wait
            values = {"status": "pending", "last_error": error,
                      "next_attempt_at": at + timedelta(seconds=delay)}
        with self._sessions() as session:
            if error is not None and session.scalar(
                    select(Webhook.url).where(Webhook.id == claim.webhook_id)) != claim.url:
                # The URL changed while this attempt was in flight (the integrator fixed
                # it): what the old URL did says nothing of the new one, so the delivery
                # goes again at once, with no backoff and no dead letter.
                values = {"status": "pending", "last_error": error, "next_attempt_at": at}
            if values["status"] == "dead":  # the webhook row first: see _webhook_queue
                session.execute(select(Webhook.id).where(Webhook.id == claim.webhook_id)
                                .with_for_update())
            # Only if the lease is still ours: a worker that re-claimed it after the
            # lease ran out has bumped attempts, and its result is the one that counts.
            ours = session.execute(
                update(Delivery)
                .where(
                    Delivery.id == claim.delivery_id,
                    Delivery.status == "pending",
                    Delivery.attempts == claim.attempts,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            recorded = ours.rowcount == 1  # type: ignore[attr-defined]
            disabled = values["status"] == "dead" and recorded and dead_lettered(
                session, claim.webhook_id, event_seq=claim.event_seq,
                attempts=claim.attempts, error=str(error), disable_after=self.disable_after,
                source=self.event_source)
        if disabled:
            log.warning("webhook %s disabled after %d dead letters in a row",
                        claim.webhook_id, self.disable_after)
        if error is not None:
            log.info(
                "webhook delivery %s to %s failed (attempt %d): %s",
                claim.delivery_id,
                claim.url,
                claim.attempts,
                error,
            )
        return str(values["status"])


async def run_dispatcher(
    dispatcher: Dispatcher, stop: asyncio.Event, interval_s: float = 0.5, *,
    concurrency: int = 16,
) -> None:
    """Drain every webhook's queue until ``stop`` is set; for a task in the FastAPI
    lifespan.

    Each webhook with a delivery due gets a task of its own that sends its queue one
    delivery at a time, in seq order, so a slow receiver delays only its own events. At
    most ``concurrency`` deliveries are in flight, each in a thread of a pool of this
    dispatcher's (the event loop's default pool is left to the rest of the service). A
    round that fails (a database that went away) is logged and tried again.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    loop = asyncio.get_running_loop()
    # One thread beyond the senders, so a round always finds one free.
    pool = ThreadPoolExecutor(max_workers=concurrency + 1, thread_name_prefix="webhooks")
    slots = asyncio.Semaphore(concurrency)
    queues: dict[str, asyncio.Task[None]] = {}

    async def drain(hook_id: str) -> None:
        try:
            while not stop.is_set():
                async with slots:
                    stats = await loop.run_in_executor(
                        pool, dispatcher.deliver_due, None, 1, hook_id)
                if stats.attempted == 0:
                    return
        except Exception as exc:
            log.warning("webhook %s: sending stopped for this round: %s", hook_id, exc)
        finally:
            queues.pop(hook_id, None)

    try:
        while not stop.is_set():
            try:
                for hook_id in await loop.run_in_executor(pool, dispatcher.tick, None):
                    if hook_id not in queues:
                        queues[hook_id] = asyncio.create_task(drain(hook_id))
            except Exception:
                log.exception("webhook dispatcher round failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
    finally:
        if queues:  # a send in flight ends within its timeout; its lease covers the rest
            await asyncio.wait(list(queues.values()), timeout=dispatcher.timeout_s + 1)
        pool.shutdown(wait=False, cancel_futures=True)

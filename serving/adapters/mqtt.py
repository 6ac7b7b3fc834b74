"""MQTT publishing of the outbox: every event, in ``seq`` order, to the plant's broker.

Why: shop-floor systems that do not take webhooks (SCADA, historians, dashboards)
subscribe to topics. The same outbox that feeds the webhooks feeds MQTT, so both
see the same events; ``Event.mqtt_published`` marks what the broker has acknowledged.

- QoS 1 and a wait for the PUBACK before an event is marked: at-least-once, like the
  webhooks (consumers dedupe on the CloudEvents ``id``; ``subjectseq`` orders a
  subject's events).
- Topic ``{prefix}/{type}/{subject}``: a subject ``asset/M-01`` becomes two topic
  levels, so ``asset-twin/events/+/asset/M-01`` follows one machine.
- Payload: the CloudEvents envelope as JSON (the structured mode of the CloudEvents
  MQTT binding, the only one MQTT 3.1.1 allows).
- Seq order across replicas: on PostgreSQL one publisher at a time holds a
  transaction-level advisory lock while it publishes (no row locks, so writers are not
  blocked). On SQLite no transaction is held during the network round trip, since a
  SQLite write lock would stop every other writer of the service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from contextlib import suppress
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from serving.adapters.webhooks import SessionFactory
from serving.store._tables import Event

__all__ = ["MqttError", "MqttPublisher", "run_mqtt", "topic_for"]

log = logging.getLogger(__name__)

# Any fixed 64-bit number, the same in every replica: "the MQTT publisher" lock.
_ADVISORY_LOCK_KEY = 0x617373_6D717474  # "ass" "mqtt"
_FORBIDDEN_IN_TOPIC = str.maketrans("", "", "+#\x00")


class MqttError(Exception):
    """The broker could not be reached or did not acknowledge; names ``host:port``."""

    def __init__(self, message: str, *, host: str, port: int) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


def topic_for(prefix: str, event_type: str, subject: str) -> str:
    """``{prefix}/{type}/{subject}`` without the characters MQTT forbids in topic names."""
    return f"{prefix}/{event_type}/{subject}".translate(_FORBIDDEN_IN_TOPIC)


class MqttPublisher:
    """One connection to the broker, opened here (fails fast, naming ``host:port``).

    paho's network thread keeps the connection and reconnects after a drop.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        topic_prefix: str = "asset-twin/events",
        client_id: str | None = None,
        qos: int = 1,
        connect_timeout_s: float = 5.0,
        ack_timeout_s: float = 10.0,
        keepalive_s: int = 30,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if not topic_prefix or topic_prefix.translate(_FORBIDDEN_IN_TOPIC) != topic_prefix:
            raise ValueError(f"topic_prefix must be non-empty without '+', '#': {topic_prefix!r}")
        if connect_timeout_s <= 0 or ack_timeout_s <= 0:
            raise ValueError(
                f"timeouts must be > 0, got connect {connect_timeout_s}, ack {ack_timeout_s}"
            )
        self.host, self.port = host, port
        self.topic_prefix = topic_prefix.rstrip("/")
        self.qos = qos
        self.ack_timeout_s = ack_timeout_s
        self._connected = threading.Event()
        self._refused: str | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"asset-twin-{uuid.uuid4().hex[:12]}",
        )
        self._client.connect_timeout = connect_timeout_s
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        where = f"{host}:{port}"
        try:
            self._client.connect(host, port, keepalive=keepalive_s)
        except OSError as exc:
            raise MqttError(
                f"cannot reach MQTT broker at {where}: {exc}", host=host, port=port
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(connect_timeout_s) or self._refused:
            self._client.loop_stop()
            self._client.disconnect()
            reason = self._refused or f"no CONNACK within {connect_timeout_s:g} s"
            raise MqttError(
                f"MQTT broker at {where} did not accept the connection: {reason}",
                host=host,
                port=port,
            )

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
        else:
            self._refused = None
            log.info("connected to MQTT broker %s:%d", self.host, self.port)
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning(
                "MQTT broker %s:%d dropped the connection: %s", self.host, self.port, reason_code
            )

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish_pending(self, session_factory: SessionFactory, limit: int = 100) -> int:
        """Publish up to ``limit`` unpublished events in seq order; return how many the
        broker acknowledged. Raises :class:`MqttError` after marking those acknowledged
        before the first that was not."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        error: MqttError | None = None
        with session_factory() as session:
            postgres = session.get_bind().dialect.name == "postgresql"
            if postgres and not session.scalar(
                select(func.pg_try_advisory_xact_lock(_ADVISORY_LOCK_KEY))
            ):
                return 0  # another replica is publishing
            rows = _unpublished(session, limit)
            if postgres:
                acked, error = self._publish(rows)
                _mark_published(session, acked)
        if not postgres:
            acked, error = self._publish(rows)
            if acked:
                with session_factory() as session:
                    _mark_published(session, acked)
        if error is not None:
            raise error
        return len(acked)

    def _publish(
        self, rows: list[tuple[int, str, str, dict[str, Any]]]
    ) -> tuple[list[int], MqttError | None]:
        """Send all, then wait for the acks: the broker keeps one connection's QoS 1
        messages in order, and pipelining avoids a round trip per event."""
        infos = []
        for seq, event_type, subject, envelope in rows:
            payload = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
            topic = topic_for(self.topic_prefix, event_type, subject)
            infos.append((seq, self._client.publish(topic, payload.encode(), qos=self.qos)))
        deadline = time.monotonic() + self.ack_timeout_s
        acked: list[int] = []
        for seq, info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                return acked, self._error(f"publish of event {seq} failed: {exc}")
            if not info.is_published():
                return acked, self._error(
                    f"no PUBACK for event {seq} within {self.ack_timeout_s:g} s"
                )
            acked.append(seq)
        return acked, None

    def _error(self, what: str) -> MqttError:
        return MqttError(
            f"MQTT broker at {self.host}:{self.port}: {what}", host=self.host, port=self.port
        )


def _unpublished(session: Session, limit: int) -> list[tuple[int, str, str, dict[str, Any]]]:
    query = (
        select(Event.seq, Event.type, Event.subject, Event.envelope)
        .where(Event.mqtt_published.is_(False))
        .order_by(Event.seq)
        .limit(limit)
    )
    return [(r[0], r[1], r[2], r[3]) for r in session.execute(query)]


def _mark_published(session: Session, seqs: list[int]) -> None:
    if seqs:
        session.execute(
            update(Event)
            .where(Event.seq.in_(seqs))
            .values(mqtt_published=True)
            .execution_options(synchronize_session=False)
        )


async def run_mqtt(
    publisher: MqttPublisher,
    session_factory: SessionFactory,
    stop: asyncio.Event,
    interval_s: float = 0.5,
) -> None:
    """Publish until ``stop`` is set; for a task in the FastAPI lifespan. Errors are
    logged and retried on the next round (paho reconnects in the background)."""
    limit = 100
    while not stop.is_set():
        busy = False
        try:
            sent = await asyncio.to_thread(publisher.publish_pending, session_factory, limit)
            busy = sent >= limit
        except Exception:
            log.exception("MQTT publishing round failed")
        if busy:
            continue
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)

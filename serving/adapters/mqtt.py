"""MQTT publishing of the outbox in the Unified Namespace: every event, in ``seq`` order,
under its asset's place in the ISA-95 equipment hierarchy, and a retained current state
per asset.

Why: shop-floor systems that do not take webhooks (SCADA, historians, dashboards, a UNS
broker) subscribe to topics laid out as the plant is. The same outbox that feeds the
webhooks feeds MQTT, so both see the same events; ``Event.mqtt_published`` marks what the
broker has acknowledged.

The topic tree (``<root>`` is ``TWIN_MQTT_TOPIC_ROOT``, default ``asset-twin``, one or
more levels: the enterprise)::

    <root>/<site>/<area>/<work_center>/<equipment_id>/twin/<event>   events of an asset
    <root>/<site>/<area>/<work_center>/<equipment_id>/twin/state     retained state
    <root>/_models/<model>/twin/<event>                              model events
    <root>/_<kind>s/<id>/twin/<event>              other subjects (``webhook/<id>``...)

    asset-twin/plant-1/milling/cell-3/M-01/twin/decision-issued
    asset-twin/plant-1/milling/cell-3/M-01/twin/state
    asset-twin/_/_/_/4711%2F0010/twin/asset-updated     (no hierarchy; SAP id 4711/0010)
    asset-twin/_models/milling_spindle/twin/model-activated

- An event belongs to the asset its ``data.equipment_id`` names (a decision about a work
  order too), else to the asset of an ``asset/<id>`` subject; site, area and work center
  are the asset's row as it is when the event is published. A level the asset does not
  have (or an asset not in the store) is ``_``.
- ``<event>``: the CloudEvents type without ``io.assettwin.``, ``.`` and ``_`` written
  ``-``: ``io.assettwin.decision.issued`` is ``decision-issued``,
  ``io.assettwin.asset.threshold_crossed`` is ``asset-threshold-crossed``.
- A level is the id percent-encoded where MQTT would misread it: ``%`` as ``%25``, ``/``
  as ``%2F``, ``+`` as ``%2B``, ``#`` as ``%23``, NUL as ``%00``, and a value that is
  exactly ``_`` as ``%5F`` (so it is not the placeholder). ``urllib.parse.unquote``
  gives the id back; the payload carries it unchanged.
- A subject with no asset and no ``/`` goes to ``<root>/_other/<subject>/twin/<event>``.
  The names are built in :mod:`serving.adapters._mqtt_topics`.
- Subscriptions: ``asset-twin/plant-1/#`` one site, ``asset-twin/+/+/cell-3/+/twin/#`` one
  work center, ``asset-twin/+/+/+/+/twin/state`` every asset's state.

Messages:

- An event: the CloudEvents envelope as stored (and as ``/v1/events`` and the webhooks
  send it), JSON in the structured mode of the CloudEvents MQTT binding; MQTT 5 content
  type ``application/cloudevents+json`` and user properties ``ce-id``, ``ce-type``,
  ``ce-subject`` for routing without parsing. QoS 1, not retained.
- The state: after the events of a round, one retained message (QoS 1) per asset they
  concern, with the asset as ``GET /v1/assets/{id}`` answers it, read when it is
  published, plus ``time`` (when it was read, with its offset); content type
  ``application/json``. A subscriber that connects late gets each asset's state at once.
  The first round after start publishes every asset's state, so assets without news and
  a broker that lost its retained messages are covered. A retired asset's state stays,
  with ``retired_at`` set: a late subscriber learns the machine is gone instead of never
  hearing of it. An asset moved in the hierarchy has its old state topic cleared (an
  empty retained message) when the ``asset.updated`` of the move is published.
- At least once, like the webhooks: a wait for every PUBACK before events are marked
  (consumers dedupe on the CloudEvents ``id``; ``sequence`` orders a subject's events).
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
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from serving.adapters._mqtt_topics import (
    PLACEHOLDER,
    Place,
    check_root,
    equipment_of,
    event_name,
    level,
    state_topic,
    topic_for,
)
from serving.adapters.webhooks import SessionFactory
from serving.store._outbox import ASSET_UPDATED
from serving.store._tables import Asset, Event

__all__ = [
    "PLACEHOLDER",
    "MqttError",
    "MqttPublisher",
    "Place",
    "asset_state",
    "equipment_of",
    "event_name",
    "level",
    "run_mqtt",
    "state_topic",
    "topic_for",
]

log = logging.getLogger(__name__)

# Any fixed 64-bit number, the same in every replica: "the MQTT publisher" lock.
_ADVISORY_LOCK_KEY = 0x617373_6D717474  # "ass" "mqtt"
_CLOUDEVENTS_JSON = "application/cloudevents+json"


class MqttError(Exception):
    """The broker could not be reached or did not acknowledge; names ``host:port``."""

    def __init__(self, message: str, *, host: str, port: int) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


# ---- messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    retain: bool
    properties: Properties | None
    seq: int | None = None  # the event it carries; None for a state message


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def asset_state(asset: Asset, at: datetime) -> dict[str, Any]:
    """The retained state: the asset as ``GET /v1/assets/{id}`` answers it, and ``time``."""
    # The HTTP representation itself, so the two never drift apart.
    from serving.store._assets import asset_out

    return {**asset_out(asset), "time": at.astimezone(UTC).isoformat()}


class MqttPublisher:
    """One connection to the broker, opened here (fails fast, naming ``host:port``).

    paho's network thread keeps the connection and reconnects after a drop. ``mqtt5``
    False speaks MQTT 3.1.1 (no content type or user properties) to an older broker.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        topic_root: str = "asset-twin",
        client_id: str | None = None,
        qos: int = 1,
        mqtt5: bool = True,
        connect_timeout_s: float = 5.0,
        ack_timeout_s: float = 10.0,
        keepalive_s: int = 30,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if connect_timeout_s <= 0 or ack_timeout_s <= 0:
            raise ValueError(
                f"timeouts must be > 0, got connect {connect_timeout_s}, ack {ack_timeout_s}"
            )
        self.topic_root = check_root(topic_root)
        self.host, self.port = host, port
        self.qos = qos
        self.mqtt5 = mqtt5
        self.ack_timeout_s = ack_timeout_s
        self._synced = False  # every asset's state published once since start
        self._connected = threading.Event()
        self._refused: str | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"asset-twin-{uuid.uuid4().hex[:12]}",
            protocol=MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311,
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
        """Publish up to ``limit`` unpublished events in seq order, then the state of each
        asset they concern; return how many events the broker acknowledged. Raises
        :class:`MqttError` after marking those acknowledged before the first that was
        not."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        error: MqttError | None = None
        with session_factory() as session:
            postgres = session.get_bind().dialect.name == "postgresql"
            if postgres and not session.scalar(
                select(func.pg_try_advisory_xact_lock(_ADVISORY_LOCK_KEY))
            ):
                return 0  # another replica is publishing
            sync = not self._synced
            messages = self._messages(session, _unpublished(session, limit), sync)
            if postgres:
                acked, error = self._send(messages)
                _mark_published(session, acked)
        if not postgres:
            acked, error = self._send(messages)
            if acked:
                with session_factory() as session:
                    _mark_published(session, acked)
        if error is not None:
            raise error
        self._synced = True
        return len(acked)

    def _messages(self, session: Session, rows: list[tuple[int, dict[str, Any]]],
                  sync: bool) -> list[_Message]:
        """The round's events in order; then an empty retained message on the old state
        topic of each asset that moved; then the states (every asset's when ``sync``)."""
        ids = {e for e in (equipment_of(env) for _, env in rows) if e is not None}
        assets: dict[str, Asset] = {}
        if sync or ids:
            query = select(Asset).order_by(Asset.equipment_id)
            if not sync:
                query = query.where(Asset.equipment_id.in_(sorted(ids)))
            assets = {a.equipment_id: a for a in session.scalars(query)}
        out = [self._event(seq, env, assets) for seq, env in rows]
        current = {k: state_topic(self.topic_root, k, Place.of(a)) for k, a in assets.items()}
        moved = _old_state_topics(session, self.topic_root, rows, assets)
        plain = self._properties("application/json")
        out += [_Message(t, b"", True, plain) for t in sorted(moved - set(current.values()))]
        at = datetime.now(UTC)
        out += [_Message(current[k], _json(asset_state(a, at)), True, plain)
                for k, a in assets.items() if sync or k in ids]
        return out

    def _event(self, seq: int, envelope: dict[str, Any], assets: Mapping[str, Asset],
               ) -> _Message:
        equipment_id = equipment_of(envelope)
        asset = assets.get(equipment_id) if equipment_id is not None else None
        place = Place.of(asset) if asset is not None else None
        user = [("ce-id", str(envelope["id"])), ("ce-type", str(envelope["type"])),
                ("ce-subject", str(envelope["subject"]))]
        return _Message(topic_for(self.topic_root, envelope, place), _json(envelope), False,
                        self._properties(_CLOUDEVENTS_JSON, user), seq)

    def _properties(self, content_type: str,
                    user: list[tuple[str, str]] | None = None) -> Properties | None:
        if not self.mqtt5:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.PayloadFormatIndicator = 1  # UTF-8
        props.ContentType = content_type
        if user:
            props.UserProperty = user
        return props

    def _send(self, messages: list[_Message]) -> tuple[list[int], MqttError | None]:
        """Send all, then wait for the acks: the broker keeps one connection's QoS 1
        messages in order, and pipelining avoids a round trip per message. Returns the
        events acknowledged before the first message that was not."""
        infos = [(m, self._client.publish(m.topic, m.payload, qos=self.qos, retain=m.retain,
                                          properties=m.properties)) for m in messages]
        deadline = time.monotonic() + self.ack_timeout_s
        acked: list[int] = []
        for m, info in infos:
            what = f"event {m.seq}" if m.seq is not None else f"the state on {m.topic}"
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                return acked, self._error(f"publish of {what} failed: {exc}")
            if not info.is_published():
                return acked, self._error(f"no PUBACK for {what} within "
                                          f"{self.ack_timeout_s:g} s")
            if m.seq is not None:
                acked.append(m.seq)
        return acked, None

    def _error(self, what: str) -> MqttError:
        return MqttError(
            f"MQTT broker at {self.host}:{self.port}: {what}", host=self.host, port=self.port
        )


def _unpublished(session: Session, limit: int) -> list[tuple[int, dict[str, Any]]]:
    query = (
        select(Event.seq, Event.envelope)
        .where(Event.mqtt_published.is_(False))
        .order_by(Event.seq)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in session.execute(query)]


def _old_state_topics(session: Session, root: str, rows: Iterable[tuple[int, dict[str, Any]]],
                      assets: Mapping[str, Asset]) -> set[str]:
    """Where the state of each asset an ``asset.updated`` of this round is about was
    published before: the place its previous ``asset.updated`` names."""
    found = set()
    for seq, envelope in rows:
        equipment_id = equipment_of(envelope)
        if (envelope["type"] != ASSET_UPDATED or equipment_id is None
                or equipment_id not in assets):
            continue
        before = session.scalar(
            select(Event.envelope)
            .where(Event.subject == envelope["subject"], Event.type == ASSET_UPDATED,
                   Event.seq < seq)
            .order_by(Event.seq.desc())
            .limit(1))
        if isinstance(before, dict) and isinstance(before.get("data"), dict):
            found.add(state_topic(root, equipment_id, Place.of(before["data"])))
    return found


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

"""MQTT publishing against the real Mosquitto on 127.0.0.1:1883: every envelope on its
topic, in seq order, QoS 1, marked once acknowledged; and a clear error without a broker.
Each test uses its own random topic prefix so parallel runs do not see each other."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import queue
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from serving import _mqtt
from serving._mqtt import MqttError, MqttPublisher, run_mqtt, topic_for
from serving._webhooks import SessionFactory
from serving.store._tables import Base, Delivery, Event, Webhook

BROKER = ("127.0.0.1", 1883)
WAIT_S = 5.0


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _require(host: str, port: int, what: str) -> None:
    if not _reachable(host, port):
        if os.environ.get("CI"):
            pytest.fail(f"{what} on {host}:{port} is required when CI is set")
        pytest.skip(f"no {what} on {host}:{port}")


@dataclass
class Db:
    session: SessionFactory
    dialect: str


@pytest.fixture
def db(request: pytest.FixtureRequest, store_url: str) -> Iterator[Db]:
    """The service's tables on ``store_url`` (a SQLite file, a PostgreSQL schema).

    Uses the project's ``store`` fixture (migrated by ``open_store``) once
    ``serving.store`` provides it; until then the tables are created directly.
    """
    if not hasattr(importlib.import_module("serving.store"), "open_store"):
        engine = create_engine(store_url)
        Base.metadata.create_all(engine)

        @contextmanager
        def session() -> Iterator[Session]:
            with Session(engine, expire_on_commit=False) as s, s.begin():
                yield s

        yield Db(session=session, dialect=engine.dialect.name)
        engine.dispose()
        return
    store = request.getfixturevalue("store")
    yield Db(session=store.session, dialect=store.engine.dialect.name)


def _emit_rows(session: Session, *, type: str, subject: str, data: dict[str, Any]) -> None:
    """The outbox's rows written by hand, for as long as ``serving.store._outbox`` is
    missing, and for subjects the outbox may refuse."""
    n = session.scalar(select(func.count()).select_from(Event).where(Event.subject == subject))
    at = datetime.now(UTC)
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/asset-twin/test",
        "type": type,
        "subject": subject,
        "subjectseq": (n or 0) + 1,
        "time": at.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
    event = Event(
        id=envelope["id"],
        type=type,
        subject=subject,
        subject_seq=envelope["subjectseq"],
        time=at,
        envelope=envelope,
    )
    session.add(event)
    session.flush()
    for hook in session.scalars(select(Webhook).where(Webhook.active.is_(True))):
        if not hook.event_types or type in hook.event_types:
            session.add(Delivery(webhook_id=hook.id, event_seq=event.seq))


def emit(
    db: Db, type_: str, subject: str, data: dict[str, Any], *, by_hand: bool = False
) -> dict[str, Any]:
    """Emit through the outbox (``serving.store._outbox.emit``); return the envelope."""
    try:
        from serving.store._outbox import emit as outbox_emit
    except ImportError:
        outbox_emit = _emit_rows
    with db.session() as s:
        (_emit_rows if by_hand else outbox_emit)(s, type=type_, subject=subject, data=data)
        s.flush()
        envelope = s.scalar(select(Event.envelope).order_by(Event.seq.desc()).limit(1))
    assert isinstance(envelope, dict)
    return envelope


@dataclass
class Subscriber:
    prefix: str
    messages: queue.Queue[mqtt.MQTTMessage]
    client: mqtt.Client

    def take(self, n: int) -> list[mqtt.MQTTMessage]:
        return [self.messages.get(timeout=WAIT_S) for _ in range(n)]


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    """A paho client subscribed (QoS 1) to ``asset-twin-test-<random>/#``."""
    _require(*BROKER, "MQTT broker")
    prefix = f"asset-twin-test-{uuid.uuid4().hex[:10]}"
    messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{prefix}")
    client.on_message = lambda c, u, msg: messages.put(msg)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/#", qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    client.connect(*BROKER, keepalive=30)
    client.loop_start()
    try:
        assert subscribed.wait(WAIT_S), "no SUBACK from the broker"
        yield Subscriber(prefix, messages, client)
    finally:
        client.disconnect()
        client.loop_stop()


def test_topic_keeps_subject_levels_and_drops_wildcards() -> None:
    assert topic_for("p/events", "decision.issued", "asset/M-01") == (
        "p/events/decision.issued/asset/M-01"
    )
    assert topic_for("p", "t", "line+1/#cell") == "p/t/line1/cell"


def test_publishes_every_event_in_order_then_nothing(db: Db, subscriber: Subscriber) -> None:
    sent = [
        emit(db, "decision.issued", "asset/M-01", {"n": 1}),
        emit(db, "advisory.raised", "asset/M-01", {"n": 2}),
        emit(db, "model.activated", "model/press-fit", {"n": 3}),
        emit(db, "decision.issued", "line+1/#cell", {"n": 4}, by_hand=True),
        emit(db, "decision.issued", "asset/M-01", {"n": 5, "text": "Prüfung"}),
    ]
    with MqttPublisher(*BROKER, topic_prefix=subscriber.prefix) as publisher:
        assert publisher.publish_pending(db.session, limit=3) == 3
        assert publisher.publish_pending(db.session) == 2
        assert publisher.publish_pending(db.session) == 0
        got = subscriber.take(len(sent))

    expected_topics = [
        f"{subscriber.prefix}/decision.issued/asset/M-01",
        f"{subscriber.prefix}/advisory.raised/asset/M-01",
        f"{subscriber.prefix}/model.activated/model/press-fit",
        f"{subscriber.prefix}/decision.issued/line1/cell",
        f"{subscriber.prefix}/decision.issued/asset/M-01",
    ]
    assert [m.topic for m in got] == expected_topics
    assert [json.loads(m.payload) for m in got] == sent
    assert {m.qos for m in got} == {1}
    assert subscriber.messages.empty()
    with db.session() as s:
        assert set(s.scalars(select(Event.mqtt_published))) == {True}


def test_another_replica_holding_the_lock_publishes_nothing(db: Db, subscriber: Subscriber) -> None:
    if db.dialect != "postgresql":
        pytest.skip("the publisher lock is PostgreSQL's advisory lock")
    emit(db, "decision.issued", "asset/M-01", {})
    with MqttPublisher(*BROKER, topic_prefix=subscriber.prefix) as publisher:
        with db.session() as other:
            other.execute(select(func.pg_advisory_xact_lock(_mqtt._ADVISORY_LOCK_KEY)))
            assert publisher.publish_pending(db.session) == 0
        assert publisher.publish_pending(db.session) == 1
    assert len(subscriber.take(1)) == 1


def test_run_mqtt_publishes_until_stopped(db: Db, subscriber: Subscriber) -> None:
    envelope = emit(db, "decision.issued", "asset/M-01", {})

    async def scenario(publisher: MqttPublisher) -> mqtt.MQTTMessage:
        stop = asyncio.Event()
        task = asyncio.create_task(run_mqtt(publisher, db.session, stop, interval_s=0.05))
        message = await asyncio.to_thread(subscriber.messages.get, timeout=WAIT_S)
        stop.set()
        await asyncio.wait_for(task, timeout=WAIT_S)
        return message

    with MqttPublisher(*BROKER, topic_prefix=subscriber.prefix) as publisher:
        message = asyncio.run(scenario(publisher))
    assert json.loads(message.payload) == envelope


def test_an_unreachable_broker_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(MqttError, match=rf"^cannot reach MQTT broker at 127\.0\.0\.1:{port}: "):
        MqttPublisher("127.0.0.1", port, connect_timeout_s=2)


def test_publisher_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="qos must be 0, 1 or 2, got 3"):
        MqttPublisher(*BROKER, qos=3)
    with pytest.raises(ValueError, match="topic_prefix must be non-empty without"):
        MqttPublisher(*BROKER, topic_prefix="a/#")

"""MQTT publishing against the real Mosquitto on 127.0.0.1:1883: every envelope on its
topic, in seq order, QoS 1, marked once acknowledged; and a clear error without a broker.
Each test uses its own random topic prefix so parallel runs do not see each other."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from serving.adapters import mqtt as _mqtt
from serving.adapters.mqtt import MqttError, MqttPublisher, run_mqtt, topic_for
from serving.store._tables import Event
from tests.serving._db import Db, emit

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
        emit(db, "decision.issued", "line+1/#cell", {"n": 4}),
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

"""MQTT publishing against the real Mosquitto on 127.0.0.1:1883: every envelope on its
topic in the ISA-95 tree, in seq order, QoS 1, marked once acknowledged; one retained
state per asset that a late subscriber gets at once; and a clear error without a broker.

Each test publishes under a topic root of its own (a uuid), so parallel runs do not see
each other's messages, and clears the retained messages it left there."""

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
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import func, select

from serving.adapters import mqtt as _mqtt
from serving.adapters.mqtt import (
    MqttError,
    MqttPublisher,
    Place,
    event_name,
    level,
    run_mqtt,
    state_topic,
    topic_for,
)
from serving.store._outbox import emit as outbox_emit
from serving.store._tables import Asset, Event
from tests.serving._db import Db, emit

BROKER = ("127.0.0.1", 1883)
WAIT_S = 5.0
QUIET_S = 0.3  # no further message for this long: the broker has sent all it had
MEASURED = datetime(2030, 1, 7, 6, 0, tzinfo=UTC)
DECISION = "io.assettwin.decision.issued"
UPDATED = "io.assettwin.asset.updated"
RETIRED = "io.assettwin.asset.retired"


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
    root: str
    messages: queue.Queue[mqtt.MQTTMessage]
    client: mqtt.Client

    def take(self, n: int) -> list[mqtt.MQTTMessage]:
        return [self.messages.get(timeout=WAIT_S) for _ in range(n)]

    def drain(self, first_s: float = WAIT_S) -> list[mqtt.MQTTMessage]:
        """Every message until none came for QUIET_S (for the first: ``first_s``)."""
        got = []
        timeout = first_s
        while True:
            try:
                got.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                return got
            timeout = QUIET_S

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def subscribe(topic: str, root: str) -> Subscriber:
    """An MQTT 5 paho client subscribed (QoS 1) to ``topic``, once the broker says so."""
    messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = lambda c, u, msg: messages.put(msg)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    client.connect(*BROKER, keepalive=30)
    client.loop_start()
    if not subscribed.wait(WAIT_S):
        client.loop_stop()
        raise AssertionError("no SUBACK from the broker")
    return Subscriber(root, messages, client)


def clear_retained(root: str) -> list[str]:
    """Publish an empty retained message on every topic under ``root`` that holds one;
    returns those topics."""
    sub = subscribe(f"{root}/#", root)
    try:
        # Retained messages follow the SUBACK at once.
        topics = sorted({m.topic for m in sub.drain(QUIET_S) if m.retain and m.payload})
        for t in topics:
            sub.client.publish(t, b"", qos=1, retain=True).wait_for_publish(WAIT_S)
    finally:
        sub.close()
    return topics


@pytest.fixture
def root() -> Iterator[str]:
    """A topic root of this test's own; its retained messages are cleared afterwards."""
    _require(*BROKER, "MQTT broker")
    name = f"asset-twin-test-{uuid.uuid4().hex[:10]}"
    yield name
    clear_retained(name)


@pytest.fixture
def subscriber(root: str) -> Iterator[Subscriber]:
    """Subscribed to ``<root>/#`` before anything is published."""
    sub = subscribe(f"{root}/#", root)
    yield sub
    sub.close()


def _add_asset(db: Db, equipment_id: str, place: Place, **kw: Any) -> None:
    with db.session() as s:
        s.add(Asset(equipment_id=equipment_id, asset_type="milling_spindle",
                    state_measured_at=MEASURED, site=place.site, area=place.area,
                    work_center=place.work_center, **kw))


def _change(db: Db, equipment_id: str, type_: str = UPDATED, **values: Any) -> dict[str, Any]:
    """Change an asset's row and emit ``type_`` for it in the same transaction, as the
    routes do."""
    with db.session() as s:
        row = s.get(Asset, equipment_id)
        assert row is not None
        for k, v in values.items():
            setattr(row, k, v)
        row.revision += 1
        s.flush()
        data = {"equipment_id": equipment_id, "site": row.site, "area": row.area,
                "work_center": row.work_center, "revision": row.revision}
        return outbox_emit(s, type=type_, subject=f"asset/{equipment_id}", data=data).envelope


# ---- the topic tree, without a broker ---------------------------------------------------


def test_a_level_percent_encodes_what_mqtt_would_misread_and_unquotes_back() -> None:
    cases = {
        "4711/0010": "4711%2F0010",  # an SAP order operation
        "M+1": "M%2B1",
        "cell#2": "cell%232",
        "a\x00b": "a%00b",
        "100%": "100%25",
        "_": "%5F",  # not the placeholder
        "_M_01": "_M_01",
        "Fräse 3.1": "Fräse 3.1",
    }
    assert {k: level(k) for k in cases} == cases
    assert {unquote(v) for v in cases.values()} == set(cases)
    assert level(None) == level("") == "_"


def test_event_names_drop_our_prefix_and_write_dots_and_underscores_as_dashes() -> None:
    assert event_name(DECISION) == "decision-issued"
    assert event_name("io.assettwin.asset.threshold_crossed") == "asset-threshold-crossed"
    assert event_name("io.assettwin.model.activated") == "model-activated"
    assert event_name("com.acme.tool+changed") == "com-acme-tool%2Bchanged"


def test_topics_follow_the_equipment_hierarchy_or_the_subjects_branch() -> None:
    cell = Place("plant-1", "milling", "cell-3")

    def env(type_: str, subject: str, **data: Any) -> dict[str, Any]:
        return {"type": type_, "subject": subject, "data": data}

    assert topic_for("r", env(UPDATED, "asset/M-01", equipment_id="M-01"), cell) == (
        "r/plant-1/milling/cell-3/M-01/twin/asset-updated")
    # A decision's subject is its work order; its data names the machine.
    decision = env(DECISION, "work-order/4711/0010", equipment_id="M/01")
    assert topic_for("acme/twin", decision, Place("plant-1", None, "cell-3")) == (
        "acme/twin/plant-1/_/cell-3/M%2F01/twin/decision-issued")
    # An asset the store does not know (or an event without a row): every level "_".
    assert topic_for("r", env(RETIRED, "asset/M+1")) == "r/_/_/_/M%2B1/twin/asset-retired"
    assert topic_for("r", env("io.assettwin.model.activated", "model/milling_spindle")) == (
        "r/_models/milling_spindle/twin/model-activated")
    assert topic_for("r", env("io.assettwin.webhook.disabled", "webhook/wh_1")) == (
        "r/_webhooks/wh_1/twin/webhook-disabled")
    assert topic_for("r", env(DECISION, "work-order/WO/1")) == (
        "r/_work-orders/WO%2F1/twin/decision-issued")
    assert topic_for("r", env("x.y", "plain")) == "r/_other/plain/twin/x-y"
    assert state_topic("r", "4711/0010", cell) == "r/plant-1/milling/cell-3/4711%2F0010/twin/state"


def test_the_publisher_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"^qos must be 0, 1 or 2, got 3$"):
        MqttPublisher(*BROKER, qos=3)
    for bad in ("a/#", "a/+/b", "", "a//b", "a/", "/a", "$SYS/x", "a\x00"):
        with pytest.raises(ValueError, match=(
                r"^topic_root must be one or more non-empty topic levels without '\+', '#', "
                r"NUL or a leading '\$' \(e\.g\. acme/asset-twin\), got ")):
            MqttPublisher(*BROKER, topic_root=bad)


# ---- publishing -------------------------------------------------------------------------


def test_publishes_every_event_under_its_asset_in_order_then_each_assets_state(
    db: Db, subscriber: Subscriber,
) -> None:
    root = subscriber.root
    cell_a, cell_b = Place("plant-1", "milling", "cell-A"), Place("plant-1", "turning", None)
    _add_asset(db, "4711/0010", cell_a)
    _add_asset(db, "M+1", cell_b, device_health="MAINTENANCE_REQUIRED")
    sent = [
        emit(db, DECISION, "work-order/WO-1", {"equipment_id": "4711/0010", "n": 1}),
        emit(db, "io.assettwin.advisory.raised", "asset/M+1", {"equipment_id": "M+1"}),
        emit(db, "io.assettwin.model.activated", "model/press-fit", {"n": 3}),
        emit(db, DECISION, "work-order/WO-4", {"equipment_id": "M-GONE", "n": 4}),
        emit(db, DECISION, "work-order/WO-5", {"equipment_id": "4711/0010",
                                               "text": "Prüfung"}),
    ]
    with MqttPublisher(*BROKER, topic_root=root) as publisher:
        assert publisher.publish_pending(db.session, limit=3) == 3
        assert publisher.publish_pending(db.session) == 2
        assert publisher.publish_pending(db.session) == 0
        got = subscriber.drain()

    a, b = f"{root}/plant-1/milling/cell-A/4711%2F0010/twin", f"{root}/plant-1/turning/_/M%2B1/twin"
    # Round 1: three events, then the states of both assets (the first round: every asset's).
    # Round 2: two events, then the state of the one known asset they name.
    assert [m.topic for m in got] == [
        f"{a}/decision-issued", f"{b}/advisory-raised", f"{root}/_models/press-fit/twin/"
        "model-activated", f"{a}/state", f"{b}/state",
        f"{root}/_/_/_/M-GONE/twin/decision-issued", f"{a}/decision-issued", f"{a}/state",
    ]
    events = [m for m in got if not m.topic.endswith("/state")]
    assert [json.loads(m.payload) for m in events] == sent
    for m, envelope in zip(events, sent, strict=True):
        assert m.properties.ContentType == "application/cloudevents+json"
        assert m.properties.UserProperty == [
            ("ce-id", envelope["id"]), ("ce-type", envelope["type"]),
            ("ce-subject", envelope["subject"])]
    assert {m.qos for m in got} == {1}
    states = [json.loads(m.payload) for m in got if m.topic.endswith("/state")]
    assert [(s["equipment_id"], s["site"], s["area"], s["work_center"], s["device_health"],
             s["revision"], s["retired_at"]) for s in states] == [
        ("4711/0010", "plant-1", "milling", "cell-A", "NORMAL", 1, None),
        ("M+1", "plant-1", "turning", None, "MAINTENANCE_REQUIRED", 1, None),
        ("4711/0010", "plant-1", "milling", "cell-A", "NORMAL", 1, None)]
    assert {s["state_measured_at"] for s in states} == {"2030-01-07T06:00:00+00:00"}
    assert all(datetime.fromisoformat(s["time"]).utcoffset() is not None for s in states)
    with db.session() as s:
        assert set(s.scalars(select(Event.mqtt_published))) == {True}


def test_a_late_subscriber_gets_one_retained_state_per_asset_then_each_change(
    db: Db, root: str,
) -> None:
    cell = Place("plant-1", "milling", "cell-3")
    for eq in ("M-01", "M-02", "M-QUIET"):  # M-QUIET has no event: the first round's sync
        _add_asset(db, eq, cell)
    for _ in range(3):  # three changes of M-01, one of M-02: still one state each
        _change(db, "M-01", health_index=0.5)
    _change(db, "M-02")
    base = f"{root}/plant-1/milling/cell-3"
    with MqttPublisher(*BROKER, topic_root=root) as publisher:
        assert publisher.publish_pending(db.session) == 4
        late = subscribe(f"{root}/+/+/+/+/twin/state", root)
        try:
            first = late.drain()
            assert sorted((m.topic, m.retain) for m in first) == [
                (f"{base}/{eq}/twin/state", True) for eq in ("M-01", "M-02", "M-QUIET")]
            revisions = {json.loads(m.payload)["equipment_id"]: json.loads(m.payload)["revision"]
                         for m in first}
            assert revisions == {"M-01": 4, "M-02": 2, "M-QUIET": 1}

            # A change after the subscriber came: its new state, live (not retained).
            _change(db, "M-02", device_health="OFF_SPEC")
            assert publisher.publish_pending(db.session) == 1
            (now,) = late.drain()
            state = json.loads(now.payload)
            assert (now.topic, now.retain) == (f"{base}/M-02/twin/state", False)
            assert (state["device_health"], state["revision"]) == ("OFF_SPEC", 3)

            # Retired: the state stays, saying so.
            _change(db, "M-01", RETIRED, retired_at=datetime(2030, 2, 1, 12, tzinfo=UTC))
            assert publisher.publish_pending(db.session) == 1
            (gone,) = late.drain()
            assert json.loads(gone.payload)["retired_at"] == "2030-02-01T12:00:00+00:00"
        finally:
            late.close()
    later = subscribe(f"{root}/+/+/+/+/twin/state", root)
    try:
        states = {json.loads(m.payload)["equipment_id"]: json.loads(m.payload)
                  for m in later.drain()}
    finally:
        later.close()
    assert {k: (v["revision"], v["device_health"], v["retired_at"]) for k, v in states.items()
            } == {"M-01": (5, "NORMAL", "2030-02-01T12:00:00+00:00"),
                  "M-02": (3, "OFF_SPEC", None), "M-QUIET": (1, "NORMAL", None)}
    # What the fixture does after each test: empty retained messages remove the states.
    assert clear_retained(root) == [f"{base}/{eq}/twin/state" for eq in ("M-01", "M-02",
                                                                         "M-QUIET")]
    assert clear_retained(root) == []


def test_an_asset_moved_to_another_work_center_leaves_no_state_behind(
    db: Db, root: str,
) -> None:
    _add_asset(db, "M-01", Place("plant-1", "milling", "cell-3"))
    _change(db, "M-01")
    with MqttPublisher(*BROKER, topic_root=root) as publisher:
        assert publisher.publish_pending(db.session) == 1
        _change(db, "M-01", work_center="cell-4")
        assert publisher.publish_pending(db.session) == 1
    late = subscribe(f"{root}/#", root)
    try:
        got = late.drain()
    finally:
        late.close()
    assert [(m.topic, json.loads(m.payload)["work_center"]) for m in got] == [
        (f"{root}/plant-1/milling/cell-4/M-01/twin/state", "cell-4")]


def test_mqtt_3_1_1_gets_the_same_payloads_without_properties(
    db: Db, subscriber: Subscriber,
) -> None:
    envelope = emit(db, DECISION, "work-order/WO-1", {"equipment_id": "M-01"})
    with MqttPublisher(*BROKER, topic_root=subscriber.root, mqtt5=False) as publisher:
        assert publisher.publish_pending(db.session) == 1
    (m,) = subscriber.drain()
    assert m.topic == f"{subscriber.root}/_/_/_/M-01/twin/decision-issued"
    assert json.loads(m.payload) == envelope
    assert not hasattr(m.properties, "ContentType")


def test_another_replica_holding_the_lock_publishes_nothing(db: Db, subscriber: Subscriber) -> None:
    if db.dialect != "postgresql":
        pytest.skip("the publisher lock is PostgreSQL's advisory lock")
    emit(db, DECISION, "asset/M-01", {})
    with MqttPublisher(*BROKER, topic_root=subscriber.root) as publisher:
        with db.session() as other:
            other.execute(select(func.pg_advisory_xact_lock(_mqtt._ADVISORY_LOCK_KEY)))
            assert publisher.publish_pending(db.session) == 0
        assert publisher.publish_pending(db.session) == 1
    assert [m.topic for m in subscriber.drain()] == [
        f"{subscriber.root}/_/_/_/M-01/twin/decision-issued"]


def test_run_mqtt_publishes_until_stopped(db: Db, subscriber: Subscriber) -> None:
    envelope = emit(db, DECISION, "asset/M-01", {})

    async def scenario(publisher: MqttPublisher) -> mqtt.MQTTMessage:
        stop = asyncio.Event()
        task = asyncio.create_task(run_mqtt(publisher, db.session, stop, interval_s=0.05))
        message = await asyncio.to_thread(subscriber.messages.get, timeout=WAIT_S)
        stop.set()
        await asyncio.wait_for(task, timeout=WAIT_S)
        return message

    with MqttPublisher(*BROKER, topic_root=subscriber.root) as publisher:
        message = asyncio.run(scenario(publisher))
    assert json.loads(message.payload) == envelope


def test_an_unreachable_broker_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(MqttError, match=rf"^cannot reach MQTT broker at 127\.0\.0\.1:{port}: "):
        MqttPublisher("127.0.0.1", port, connect_timeout_s=2)

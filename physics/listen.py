"""The twin listens: a machine's signals from OPC UA and MQTT, as a connection file maps
them, turned into observations in the machine file's units.

A connection file names, per asset, where each signal comes from: an OPC UA endpoint with
a namespace URI and node ids, or MQTT topics, each with the unit the source sends it in
(converted by :mod:`physics.units`, so a controller that sends kW or degF is understood)::

    asset: MILL-07
    machine: ../machines/spindle.yaml        # the signals, their units and noise
    opcua:
      endpoint: opc.tcp://127.0.0.1:4840
      namespace: urn:asset-twin:machine:MILL-07
      nodes:
        spindle_power: {node: MILL-07.Monitoring.Spindle.Power, unit: W}
    mqtt:
      url: mqtt://127.0.0.1:1883
      topics:
        bearing_temperature: {topic: asset-twin/machines/MILL-07/bearing_temperature,
                              unit: degC}

``Listener`` subscribes to all of them (an asyncua subscription; a paho client on MQTT,
which resubscribes on reconnect) and puts an ``Observation`` per value on one asyncio
queue: the signal, the value in the machine file's unit, the source timestamp and
whether its quality is good. An OPC UA connection that fails or drops is tried again
with a backoff doubling from 0.5 s to 8 s; each attempt and its outcome are counted in
``status`` (what a readiness probe shows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from physics._machine_outlets import host_port
from physics.machine import MachineConfig, MachineError, load_machine, read_mapping

__all__ = ["Connection", "Listener", "Observation", "load_connection"]

BACKOFF = (0.5, 8.0)  # s: the first wait after a failed connection, and the longest


@dataclass(frozen=True)
class Source:
    signal: str
    address: str  # an OPC UA node id (string identifier) or an MQTT topic
    unit: str
    # the sent unit to the signal's, worked out once (a change of unit is affine: kW to W,
    # degC to K): value * scale + offset
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class Connection:
    asset: str
    machine: MachineConfig
    opcua_endpoint: str | None = None
    opcua_namespace: str | None = None
    nodes: list[Source] = field(default_factory=list)
    mqtt_url: str | None = None
    topics: list[Source] = field(default_factory=list)


@dataclass(frozen=True)
class Observation:
    signal: str
    value: float  # in the machine file's unit of the signal
    time: datetime  # the source's timestamp
    good: bool
    source: str  # "opcua" or "mqtt"


def load_connection(path: str | Path) -> Connection:
    """Read and check a connection file; MachineError names the field and value."""
    from physics.units import UnitError, convert

    path = Path(path)
    raw = read_mapping(path, "asset, machine, opcua, mqtt")
    problems: list[str] = []
    extra = sorted(set(raw) - {"asset", "machine", "opcua", "mqtt"})
    problems += [f"{k}: unknown key (allowed: asset, machine, opcua, mqtt)" for k in extra]
    machine = load_machine(path.parent / str(raw.get("machine", "")))
    units = {s.name: s.unit for s in machine.signals}

    def sources(section: str, key: str, field_name: str) -> list[Source]:
        out = []
        for signal, entry in ((raw.get(section) or {}).get(key) or {}).items():
            at = f"{section}.{key}.{signal}"
            if signal not in units:
                problems.append(f"{at}: not a signal of {machine.name} ({', '.join(units)})")
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get(field_name), str):
                problems.append(f"{at}.{field_name}: missing; expected text")
                continue
            unit = str(entry.get("unit", units[signal]))
            try:
                offset = convert(0.0, unit, units[signal])
                scale = convert(1.0, unit, units[signal]) - offset
            except UnitError as exc:
                problems.append(f"{at}.unit: {unit!r} does not convert to the signal's "
                                f"{units[signal]!r} ({exc})")  # fmt: skip
                continue
            out.append(Source(str(signal), entry[field_name], unit, scale, offset))
        return out

    opcua, mqtt = raw.get("opcua") or {}, raw.get("mqtt") or {}
    nodes = sources("opcua", "nodes", "node")
    topics = sources("mqtt", "topics", "topic")
    if opcua and not (isinstance(opcua.get("endpoint"), str)
                      and isinstance(opcua.get("namespace"), str)):  # fmt: skip
        problems.append("opcua: give endpoint (opc.tcp://HOST:PORT) and namespace (a URI)")
    if mqtt and not isinstance(mqtt.get("url"), str):
        problems.append("mqtt.url: missing; expected mqtt://HOST[:PORT]")
    if not nodes and not topics:
        problems.append("no signal to listen to: give opcua.nodes or mqtt.topics")
    if problems:
        raise MachineError(f"invalid connection file {path}:\n  " + "\n  ".join(problems))
    return Connection(str(raw.get("asset") or machine.name), machine,
                      opcua.get("endpoint"), opcua.get("namespace"), nodes, mqtt.get("url"),
                      topics)  # fmt: skip


class Listener:
    """Every source of a connection, onto one queue of observations."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.queue: asyncio.Queue[Observation] = asyncio.Queue()
        self.status: dict[str, Any] = {"opcua": {"connected": False, "attempts": 0,
                                                  "sessions": 0, "failures": 0,
                                                  "last_error": None},
                                       "mqtt": {"connected": False, "messages": 0}}  # fmt: skip
        self._tasks: list[asyncio.Task[None]] = []
        self._mqtt: Any = None
        self._stop = asyncio.Event()

    def _put(self, source: Source, value: Any, time: datetime, good: bool, kind: str,
             loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        try:
            v = float(value) * source.scale + source.offset
        except (TypeError, ValueError):
            v, good = math.nan, False
        obs = Observation(source.signal, v, time, good, kind)
        loop.call_soon_threadsafe(self.queue.put_nowait, obs)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        c = self.connection
        if c.nodes and c.opcua_endpoint:
            self._tasks.append(asyncio.create_task(self._opcua(loop)))
        if c.topics and c.mqtt_url:
            self._start_mqtt(loop)

    async def _opcua(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connect, subscribe, stay; on a failure wait (doubling) and do it again."""
        from asyncua import Client, ua

        c, st = self.connection, self.status["opcua"]
        wait = BACKOFF[0]
        by_id = {s.address: s for s in c.nodes}
        listener = self

        class Handler:
            def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
                dv = data.monitored_item.Value
                source = by_id.get(str(node.nodeid.Identifier))
                if source is None or dv.SourceTimestamp is None:
                    return
                good = bool(dv.StatusCode is None or dv.StatusCode.is_good())
                listener._put(source, dv.Value.Value, dv.SourceTimestamp, good, "opcua", loop)

        while not self._stop.is_set():
            st["attempts"] += 1
            try:
                async with Client(str(c.opcua_endpoint), timeout=4) as client:
                    ns: Any = await client.get_namespace_index(str(c.opcua_namespace))
                    ids: list[Any] = [s.address for s in c.nodes]
                    nodes = [client.get_node(ua.NodeId(i, ns)) for i in ids]
                    sub = await client.create_subscription(20, Handler())
                    await sub.subscribe_data_change(nodes, queuesize=1000)
                    st.update(connected=True, last_error=None)
                    st["sessions"] += 1
                    wait = BACKOFF[0]
                    while not self._stop.is_set():
                        await asyncio.sleep(0.5)
                        await client.check_connection()
            except (TimeoutError, OSError, ConnectionError, ua.UaError) as exc:
                st.update(connected=False, last_error=f"{type(exc).__name__}: {exc}")
                st["failures"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
                wait = min(2 * wait, BACKOFF[1])
        st["connected"] = False

    def _start_mqtt(self, loop: asyncio.AbstractEventLoop) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        c, st = self.connection, self.status["mqtt"]
        by_topic = {s.address: s for s in c.topics}
        host, port = host_port(str(c.mqtt_url), "mqtt", 1883)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"twin-{c.asset}-{uuid.uuid4().hex[:8]}"
        )

        def on_connect(cl: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            st["connected"] = True  # (re)connected: subscribe again
            for topic in by_topic:
                cl.subscribe(topic, qos=1)

        def on_disconnect(cl: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            st["connected"] = False

        def on_message(cl: Any, userdata: Any, msg: Any) -> None:
            source = by_topic.get(msg.topic)
            if source is None:
                return
            st["messages"] += 1
            try:
                payload = json.loads(msg.payload)
                value, stamp = payload["value"], datetime.fromisoformat(payload["timestamp"])
                good = payload.get("quality", "good") == "good"
            except (ValueError, KeyError, TypeError):
                return  # not the expected payload: nothing to observe
            self._put(source, value, stamp, good, "mqtt", loop)

        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        client.on_message = on_message
        client.reconnect_delay_set(min_delay=1, max_delay=int(BACKOFF[1]))
        client.connect_async(host, port)
        client.loop_start()
        self._mqtt = client

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            await task
        if self._mqtt is not None:
            self._mqtt.loop_stop()
            self._mqtt.disconnect()

"""Where a streaming machine's samples go (physics/machine.py): the OPC UA server and its
address space, and the MQTT broker. The layout and its sources are described there."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from physics.machine import MachineConfig, Sample

MACHINERY_NS = "http://opcfoundation.org/UA/Machinery/"
DI_NS = "http://opcfoundation.org/UA/DI/"
MACHINE_TOOL_NS = "http://opcfoundation.org/UA/MachineTool/"


class Outlets:
    """Where samples go: the OPC UA server's nodes and the MQTT broker."""

    def __init__(self, config: MachineConfig, origin: datetime) -> None:
        self.config, self.origin = config, origin
        self.server: Any = None
        self.nodes: dict[str, Any] = {}
        self.mqtt: Any = None
        self.topic_prefix = "asset-twin/machines"
        self.published = 0
        self.acked = 0
        self.tool_parts = 0  # parts the tool in the spindle has machined (across orders)
        self.units = {s.name: s.unit for s in config.signals}

    def stamp(self, t: float) -> datetime:
        return self.origin + timedelta(seconds=t)

    async def open_opcua(self, url: str) -> None:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint(url)
        server.set_server_name(f"asset-twin machine {self.config.name}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        own: Any = await server.register_namespace(f"urn:asset-twin:machine:{self.config.name}")
        machinery = await server.register_namespace(MACHINERY_NS)
        di = await server.register_namespace(DI_NS)
        mt = await server.register_namespace(MACHINE_TOOL_NS)
        name = self.config.name

        def nid(path: str) -> Any:
            ident: Any = f"{name}.{path}"
            return ua.NodeId(ident, own)

        objects = server.nodes.objects
        folder_id: Any = "Machines"
        machines = await objects.add_folder(ua.NodeId(folder_id, own), f"{machinery}:Machines")
        machine = await machines.add_object(nid("Machine"), f"{own}:{name}")
        ident = await machine.add_object(nid("Identification"), f"{machinery}:Identification")
        for browse, ns, value in (("Manufacturer", di, self.config.manufacturer),
                                  ("Model", di, self.config.model),
                                  ("SerialNumber", di, self.config.serial_number)):  # fmt: skip
            await ident.add_property(nid(f"Identification.{browse}"), f"{ns}:{browse}",
                                     ua.LocalizedText(value) if browse != "SerialNumber"
                                     else value)  # fmt: skip
        monitoring = await machine.add_object(nid("Monitoring"), f"{mt}:Monitoring")
        spindle = await monitoring.add_object(nid("Monitoring.Spindle"), f"{mt}:Spindle")
        self.nodes["IsRotating"] = await spindle.add_variable(
            nid("Monitoring.Spindle.IsRotating"), f"{mt}:IsRotating", False
        )
        await spindle.add_variable(nid("Monitoring.Spindle.Override"), f"{mt}:Override", 100.0)
        equipment = await machine.add_object(nid("Equipment"), f"{mt}:Equipment")
        tools = await equipment.add_object(nid("Equipment.Tools"), f"{mt}:Tools")
        tool = await tools.add_object(nid("Equipment.Tools.T1"), f"{own}:T1")
        await tool.add_variable(
            nid("Equipment.Tools.T1.ControlIdentifier1"),
            f"{mt}:ControlIdentifier1",
            ua.Variant(1, ua.VariantType.UInt32),
        )
        life = await tool.add_object(nid("Equipment.Tools.T1.ToolLife"), f"{mt}:ToolLife")
        parts = await life.add_variable(
            nid("Equipment.Tools.T1.ToolLife.PartsMachined"),
            f"{own}:PartsMachined",
            ua.Variant(0, ua.VariantType.Double),
        )
        await parts.add_property(
            nid("Equipment.Tools.T1.ToolLife.PartsMachined.IsCountingUp"),
            f"{mt}:IsCountingUp",
            True,
        )
        await parts.add_property(
            nid("Equipment.Tools.T1.ToolLife.PartsMachined.StartValue"), f"{mt}:StartValue", 0.0
        )
        self.nodes["PartsMachined"] = parts
        for s in self.config.signals:
            parent, path = (
                (tool, "Equipment.Tools.T1") if s.on == "part" else (spindle, "Monitoring.Spindle")
            )
            node = await parent.add_variable(nid(f"{path}.{s.node}"), f"{own}:{s.node}", 0.0)
            await node.add_property(
                nid(f"{path}.{s.node}.Unit"),
                f"{own}:Unit",
                s.unit,
            )
            self.nodes[s.name] = node
            # no reading yet: a client must not take the placeholder for a measurement
            waiting: Any = ua.StatusCodes.BadWaitingForInitialData
            await node.write_value(ua.DataValue(ua.Variant(0.0), StatusCode=ua.StatusCode(waiting)))
        production = await machine.add_object(nid("Production"), f"{mt}:Production")
        self.plan = await production.add_object(
            nid("Production.ProductionPlan"), f"{mt}:ProductionPlan"
        )
        self.ns = {"own": own, "mt": mt}
        self.nid = nid
        await server.start()
        self.server = server

    async def add_job(self, order: str, planned: int) -> None:
        """The order as a production job: identifier, runs planned and completed, state."""
        if self.server is None:
            return
        from asyncua import ua

        own, mt = self.ns["own"], self.ns["mt"]
        job = await self.plan.add_object(self.nid(f"Production.ProductionPlan.{order}"),
                                         f"{own}:{order}")  # fmt: skip
        base = f"Production.ProductionPlan.{order}"
        await job.add_variable(self.nid(f"{base}.Identifier"), f"{mt}:Identifier", order)
        await job.add_variable(self.nid(f"{base}.RunsPlanned"), f"{mt}:RunsPlanned",
                               ua.Variant(planned, ua.VariantType.UInt32))  # fmt: skip
        self.nodes[f"{order}.RunsCompleted"] = await job.add_variable(
            self.nid(f"{base}.RunsCompleted"),
            f"{mt}:RunsCompleted",
            ua.Variant(0, ua.VariantType.UInt32),
        )
        state = await job.add_object(self.nid(f"{base}.State"), f"{mt}:State")
        self.nodes[f"{order}.State"] = await state.add_variable(
            self.nid(f"{base}.State.CurrentState"), "0:CurrentState", ua.LocalizedText("Running")
        )

    async def write(self, node: str, value: Any, t: float, good: bool = True,
                    vtype: Any = None) -> None:  # fmt: skip
        if self.server is None or node not in self.nodes:
            return
        from asyncua import ua

        code: Any = ua.StatusCodes.Good if good else ua.StatusCodes.BadSensorFailure
        variant = ua.Variant(value, vtype) if vtype is not None else ua.Variant(value)
        source: Any = self.stamp(t)
        server: Any = datetime.now(UTC)
        dv = ua.DataValue(variant, StatusCode=ua.StatusCode(code), SourceTimestamp=source,
                          ServerTimestamp=server)  # fmt: skip
        await self.server.write_attribute_value(self.nodes[node].nodeid, dv)

    def open_mqtt(self, url: str, prefix: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        host, port = host_port(url, "mqtt", 1883)
        # a client id of its own: a broker drops the older of two connections with one id
        ident = f"machine-{self.config.name}-{uuid.uuid4().hex[:8]}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=ident)
        client.on_publish = self._acked
        client.max_queued_messages_set(0)  # unbounded: the machine's own samples, in order
        client.connect(host, port)
        client.loop_start()
        self.mqtt, self.topic_prefix = client, prefix

    def _acked(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acked += 1  # paho's network thread: the broker has a QoS 1 message

    def publish(self, sample: Sample) -> None:
        if self.mqtt is None:
            return
        payload = {"value": sample.value, "unit": self.units[sample.signal],
                   "timestamp": self.stamp(sample.t).isoformat(),
                   "quality": "good" if sample.good else "bad", "order": sample.order}  # fmt: skip
        self.mqtt.publish(f"{self.topic_prefix}/{self.config.name}/{sample.signal}",
                          json.dumps(payload), qos=1)  # fmt: skip
        self.published += 1

    async def close(self, drain: float = 10.0) -> None:
        """Stop, once the broker has every sample published (``drain`` seconds at most):
        paho's queue would otherwise go down with its network thread."""
        if self.mqtt is not None:
            deadline = time.monotonic() + drain
            while self.acked < self.published and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
        if self.server is not None:
            await self.server.stop()


def host_port(url: str, scheme: str, default: int) -> tuple[str, int]:
    """HOST and PORT of ``scheme://HOST[:PORT]``; MachineError names the option otherwise."""
    from urllib.parse import urlsplit

    from physics.machine import MachineError

    parts = urlsplit(url)
    if parts.scheme != scheme or not parts.hostname:
        raise MachineError(f"--{scheme}: {url!r}; expected {scheme}://HOST[:PORT]")
    return parts.hostname, parts.port or default


def text(value: str) -> Any:
    from asyncua import ua

    return ua.LocalizedText(value)

"""`twin machine run`: the spindle FMU streamed over a real OPC UA server and a real MQTT
broker (Mosquitto on 127.0.0.1:1883), read back by an OPC UA client and an MQTT
subscriber, against the hidden truth it writes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from physics.machine import MachineError, load_machine, orders_of, play, read_truth
from tests._net import free_port

ROOT = Path(__file__).resolve().parents[2]
MACHINE = ROOT / "experiments" / "machines" / "spindle.yaml"
ORDER = ROOT / "experiments" / "orders" / "demo.yaml"


def _machine(tmp_path: Path, **signal_changes: dict[str, Any]) -> Path:
    raw = yaml.safe_load(MACHINE.read_text())
    raw["spec"] = str(ROOT / "experiments" / "specs" / "spindle.yaml")
    for name, change in signal_changes.items():
        raw["signals"][name].update(change)
    path = tmp_path / "machine.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class _Subscriber:
    """A paho subscriber to PREFIX/#, collecting every message."""

    def __init__(self, prefix: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex}")
        self.client.on_message = self._message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/#", qos=1)
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self.subscribed.wait(5), "the MQTT subscription was not acknowledged"

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class _Changes:
    """asyncua subscription handler: every DataValue by node id."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {}

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        key = node.nodeid.Identifier
        self.values.setdefault(key, []).append(data.monitored_item.Value)


def _order(quantity: int) -> Any:
    from physics.spec import load_spec

    spec = load_spec(load_machine(MACHINE).spec_path)
    return dataclasses.replace(orders_of([ORDER], spec)[0], quantity=quantity)


def test_a_machine_streams_over_opcua_and_mqtt(tmp_path: Path) -> None:
    from asyncua import Client, ua

    # a sensor that drops out often, so the test sees it go silent and come back
    config = load_machine(_machine(tmp_path, bearing_temperature={
        "dropout": {"per_second": 0.02, "seconds": 15}}))  # fmt: skip
    port, prefix = free_port(), f"test-{uuid.uuid4().hex[:8]}"
    url = f"opc.tcp://127.0.0.1:{port}"
    sub = _Subscriber(prefix)
    changes = _Changes()
    truth = tmp_path / "truth.jsonl"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:  # the summary, what was read
        ready = asyncio.Event()
        task = asyncio.create_task(play(
            config, [_order(3)], speed=100, opcua=url, mqtt="mqtt://127.0.0.1:1883",
            truth=truth, true_state={"tool_wear": 0.09}, seed=7, topic_prefix=prefix,
            lead=1.0, hold=2.0, ready=ready))  # fmt: skip
        await asyncio.wait_for(ready.wait(), 30)
        read: dict[str, Any] = {}
        async with Client(url) as client:
            own = await client.get_namespace_index("urn:asset-twin:machine:MILL-07")
            mt = await client.get_namespace_index("http://opcfoundation.org/UA/MachineTool/")
            machinery = await client.get_namespace_index("http://opcfoundation.org/UA/Machinery/")
            di = await client.get_namespace_index("http://opcfoundation.org/UA/DI/")
            machine = await client.nodes.objects.get_child(
                [f"{machinery}:Machines", f"{own}:MILL-07"]
            )
            speed_node = await machine.get_child(
                [f"{mt}:Monitoring", f"{mt}:Spindle", f"{own}:RotationalSpeed"]
            )
            read["maker"] = (
                await (
                    await machine.get_child([f"{machinery}:Identification", f"{di}:Manufacturer"])
                ).read_value()
            ).Text
            ids = [
                "Monitoring.Spindle.Power",
                "Monitoring.Spindle.BearingTemperature",
                "Monitoring.Spindle.IsRotating",
                "Equipment.Tools.T1.ToolWearProbe",
            ]
            nodes = [client.get_node(ua.NodeId(f"MILL-07.{i}", own)) for i in ids]
            subscription = await client.create_subscription(20, changes)
            await subscription.subscribe_data_change([speed_node, *nodes], queuesize=1000)
            job = "MILL-07.Production.ProductionPlan.WO-2026-1001"
            state = client.get_node(ua.NodeId(f"{job}.State.CurrentState", own))
            for _ in range(400):  # the job appears, then ends; the controller stays up
                try:
                    if (await state.read_value()).Text == "Ended":
                        break
                except ua.UaStatusCodeError:  # not created yet: the order has not started
                    pass
                await asyncio.sleep(0.05)
            read["runs"] = await client.get_node(
                ua.NodeId(f"{job}.RunsCompleted", own)
            ).read_value()
            read["state"] = (await state.read_value()).Text
            await subscription.delete()
        return await task, read

    try:
        summary, read = asyncio.run(scenario())
        # QoS 1 on loopback: every published sample arrives, in order per topic (at 100x,
        # some 1,100 messages a second: Mosquitto's default queue of 1,000 per subscriber
        # holds them while the subscriber parses, on two busy cores)
        for _ in range(100):
            if len(sub.messages) >= summary["published"]:
                break
            threading.Event().wait(0.1)
    finally:
        sub.close()
    assert read == {"maker": "asset-twin", "runs": 3, "state": "Ended"}
    assert summary["acked"] == summary["published"] == sum(summary["samples"].values())
    assert len(sub.messages) == summary["published"]
    by_signal: dict[str, list[dict[str, Any]]] = {}
    for topic, payload in sub.messages:
        assert topic.startswith(f"{prefix}/MILL-07/")
        by_signal.setdefault(topic.rsplit("/", 1)[1], []).append(payload)
    assert {k: len(v) for k, v in by_signal.items()} == summary["samples"]
    # the spindle's speed: the order's 5300 rpm while cutting (between the ramps up and
    # down, linear between communication points), the encoder's noise of 2 rpm
    speeds = np.array([m["value"] for m in by_signal["spindle_speed"]])
    cutting = speeds[np.abs(speeds - 5300) < 20]
    assert len(cutting) > 0.5 * len(speeds)
    assert abs(cutting.mean() - 5300) < 0.5 and 1.6 < cutting.std() < 2.4
    # the dropouts: a bad-quality message, then silence, then good values again
    quality = [m["quality"] for m in by_signal["bearing_temperature"]]
    assert "bad" in quality and quality[-1] == "good"
    assert quality.index("bad") < len(quality) - 1
    stamps = [m["timestamp"] for m in by_signal["spindle_power"]]
    assert stamps == sorted(stamps)
    # OPC UA: the subscription saw the values with their source time and status
    power = changes.values["MILL-07.Monitoring.Spindle.Power"]
    assert len(power) > 50
    times = [dv.SourceTimestamp for dv in power[1:]]  # after the value it had when subscribed
    assert times == sorted(times)
    temps = changes.values["MILL-07.Monitoring.Spindle.BearingTemperature"]
    assert any(dv.StatusCode.name == "BadSensorFailure" for dv in temps)
    assert {dv.Value.Value for dv in changes.values["MILL-07.Monitoring.Spindle.IsRotating"]} == {
        True,
        False,
    }
    # the hidden truth: the machine's tool started worn 0.09 mm, the MES believed 0.04
    records = read_truth(truth)
    assert records[0]["believed"] == {"tool_wear": 0.04}
    assert records[0]["true"] == {"tool_wear": 0.09}
    states = [r for r in records if r["kind"] == "state"]
    assert states[0]["tool_wear"] == pytest.approx(0.09)
    end = summary["orders"][0]["end"]
    assert states[-1]["tool_wear"] == pytest.approx(end["tool_wear"]) and end["tool_wear"] > 0.09
    # the tool setter reads the true wear after each part, within its 3 um of noise
    from datetime import datetime

    origin = datetime.fromisoformat(by_signal["spindle_power"][0]["timestamp"])  # machine t 0
    probes = by_signal["tool_wear_probe"]
    assert len(probes) == 3 and all(m["quality"] == "good" for m in probes)
    t_truth = np.array([r["t"] for r in states])
    w_truth = np.array([r["tool_wear"] for r in states])
    for m in probes:
        t = (datetime.fromisoformat(m["timestamp"]) - origin).total_seconds()
        assert abs(m["value"] - np.interp(t, t_truth, w_truth)) < 4 * 0.003
    assert np.all(np.diff(t_truth) > 0) and np.all(np.diff(w_truth) >= 0)


def test_orders_play_one_after_another_from_the_state_left(tmp_path: Path) -> None:
    config = load_machine(_machine(tmp_path))
    truth = tmp_path / "truth.jsonl"
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    summary = asyncio.run(play(config, [_order(2), _order(2)], speed=5000,
                               mqtt="mqtt://127.0.0.1:1883", truth=truth, seed=1,
                               topic_prefix=prefix))  # fmt: skip
    first, second = summary["orders"]
    records = [r for r in read_truth(truth) if r["kind"] == "order"]
    assert records[1]["true"]["tool_wear"] == pytest.approx(first["end"]["tool_wear"])
    assert records[1]["true"]["bearing_damage"] == pytest.approx(first["end"]["bearing_damage"])
    assert records[1]["t"] == pytest.approx(summary["machine_seconds"] / 2, rel=1e-6)
    assert second["end"]["tool_wear"] > first["end"]["tool_wear"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"noise": -1}, "signals.spindle_power.noise: -1; expected a standard deviation >= 0"),
        ({"rate": 0}, "signals.spindle_power.rate: 0; expected Hz in (0, 1000]"),
        ({"each": "part"}, "signals.spindle_power: give rate (Hz of machine time) or each: "
                           "part, one of them"),
        ({"expr": "spindle_power +"}, "signals.spindle_power.expr:"),
        ({"dropout": {"per_second": 1.5}},
         "signals.spindle_power.dropout.per_second: 1.5; expected a probability in [0, 1)"),
        ({"on": "part"}, "signals.spindle_power.on: unknown key (allowed: expr, unit, noise, "
                         "rate, each, dropout)"),
    ],
)  # fmt: skip
def test_machine_file_mistakes_are_named(tmp_path: Path, change: dict, expected: str) -> None:
    path = _machine(tmp_path, spindle_power=change)
    with pytest.raises(MachineError) as err:
        load_machine(path)
    assert expected in str(err.value)


def test_cli_refuses_a_run_with_nowhere_to_stream_and_a_wrong_state() -> None:
    from click.testing import CliRunner

    from physics.cli import main

    args = ["machine", "run", "--machine", str(MACHINE), "--order", str(ORDER)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    assert "give --opcua URL, --mqtt URL or both: where the machine streams" in r.output
    r = CliRunner().invoke(main, [*args, "--mqtt", "mqtt://127.0.0.1:1883", "--true-state",
                                  "spindle_speed=3"])  # fmt: skip
    assert r.exit_code == 2
    assert (
        "--true-state spindle_speed: not a state input of milling_spindle (state inputs: "
        "tool_wear, bearing_damage, radius_compensation, warmup)"
    ) in r.output
    r = CliRunner().invoke(main, [*args, "--opcua", "http://127.0.0.1:4840"])
    assert r.exit_code == 2 and "--opc.tcp: 'http://127.0.0.1:4840'" in r.output

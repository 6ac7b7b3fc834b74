"""The twin listens: `twin machine run`'s stream read back through a connection file (OPC
UA node ids, MQTT topics, units converted) and fed to the point-mass filter, which finds
the machine's true tool wear; a dead endpoint is retried with a backoff."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from physics.estimate import OrderFilter, Prior
from physics.listen import Listener, load_connection
from physics.machine import MachineError, load_machine, orders_of, play, read_truth
from tests._net import free_port

ROOT = Path(__file__).resolve().parents[2]
MACHINE = ROOT / "experiments" / "machines" / "spindle.yaml"
ORDER = ROOT / "experiments" / "orders" / "demo.yaml"
SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"


def _connection(tmp_path: Path, port: int, prefix: str, **changes: Any) -> Path:
    raw: dict[str, Any] = {
        "asset": "MILL-07",
        "machine": str(MACHINE),
        "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{port}",
                  "namespace": "urn:asset-twin:machine:MILL-07",
                  "nodes": {"spindle_speed": {"node": "MILL-07.Monitoring.Spindle.RotationalSpeed",
                                              "unit": "1/min"},
                            "tool_wear_probe": {"node": "MILL-07.Equipment.Tools.T1.ToolWearProbe",
                                                "unit": "mm"}}},
        # the controller's gateway sends the power in kW: converted to the machine file's W
        "mqtt": {"url": "mqtt://127.0.0.1:1883",
                 "topics": {"spindle_power": {"topic": f"{prefix}/MILL-07/spindle_power",
                                              "unit": "kW"}}},
    }  # fmt: skip
    raw.update(changes)
    path = tmp_path / "connection.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _sender(tmp_path: Path) -> Any:
    """The machine as it streams: its power in kW (the gateway's unit)."""
    raw = yaml.safe_load(MACHINE.read_text())
    raw["spec"] = str(SPEC)
    raw["signals"]["spindle_power"].update(expr="spindle_power / 1000", unit="kW", noise=0.06)
    path = tmp_path / "sender.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_machine(path)


def test_the_twin_listens_and_finds_the_true_wear(tmp_path: Path) -> None:
    from physics.run import open_twin
    from physics.spec import load_spec

    port, prefix = free_port(), f"test-{uuid.uuid4().hex[:8]}"
    connection = load_connection(_connection(tmp_path, port, prefix))
    sender = _sender(tmp_path)
    spec = load_spec(SPEC)
    order = dataclasses.replace(orders_of([ORDER], spec)[0], quantity=3)
    origin = datetime.now(UTC)
    truth = tmp_path / "truth.jsonl"
    sent: dict[tuple[str, float], float] = {}

    async def scenario() -> list[Any]:
        listener = Listener(connection)
        ready = asyncio.Event()
        machine = asyncio.create_task(play(
            sender, [order], speed=400, opcua=f"opc.tcp://127.0.0.1:{port}",
            mqtt="mqtt://127.0.0.1:1883", truth=truth, true_state={"tool_wear": 0.11}, seed=5,
            topic_prefix=prefix, lead=1.5, hold=1.0, ready=ready, origin=origin,
            on_sample=lambda s: sent.__setitem__((s.signal, round(s.t, 6)), s.value)))  # fmt: skip
        await ready.wait()
        await listener.start()
        await machine
        await asyncio.sleep(0.3)
        await listener.stop()
        got = []
        while not listener.queue.empty():
            got.append(listener.queue.get_nowait())
        # one session for the whole order (it fails only once the machine switched off)
        assert listener.status["opcua"]["sessions"] == 1
        assert listener.status["mqtt"]["messages"] > 0
        return got

    observations = asyncio.run(scenario())
    by_signal: dict[str, list[Any]] = {}
    for o in observations:
        by_signal.setdefault(o.signal, []).append(o)
    assert {o.source for o in by_signal["spindle_power"]} == {"mqtt"}
    assert {o.source for o in by_signal["spindle_speed"]} == {"opcua"}
    # nothing published was lost on MQTT (QoS 1); the power arrives in W, from kW
    power_sent = {t: v for (sig, t), v in sent.items() if sig == "spindle_power"}
    assert len(by_signal["spindle_power"]) == len(power_sent)
    for o in by_signal["spindle_power"]:
        t = round((o.time - origin).total_seconds(), 6)
        assert o.value == pytest.approx(1000 * power_sent[t], rel=1e-9)
    # OPC UA: every speed sample written after the subscription, with its source time
    speeds = [o for o in by_signal["spindle_speed"] if o.time >= origin]
    n_speed = sum(1 for sig, _ in sent if sig == "spindle_speed")
    assert len(speeds) >= 0.95 * n_speed
    assert len(by_signal["tool_wear_probe"]) >= 3
    # the filter, fed what the twin heard, finds the wear the machine really had
    config = load_machine(MACHINE)
    with open_twin(spec) as fmu:
        f = OrderFilter(spec, fmu, config, order.values, 3, "tool_wear",
                        Prior(0.04, 0.05, 0.0, 0.3))  # fmt: skip
        last = 0.0
        for o in sorted(observations, key=lambda o: o.time):
            t = (o.time - origin).total_seconds()
            if t < 0:
                continue  # the value a node had before the order
            if t - last >= 10:
                f.update()
                last = t
            f.observe(o.signal, t, o.value, o.good)
        f.update()
    states = [r for r in read_truth(truth) if r["kind"] == "state"]
    end = states[-1]
    est = f.at("tool_wear", end["t"])
    assert abs(est.mean - end["tool_wear"]) < 3 * est.std
    assert est.std < 0.005 and abs(est.mean - end["tool_wear"]) < 0.1 * abs(0.04 - 0.11)


def test_a_dead_endpoint_is_tried_again_with_a_backoff(tmp_path: Path) -> None:
    path = _connection(tmp_path, free_port(), "none", mqtt={})
    connection = load_connection(path)

    async def scenario() -> dict[str, Any]:
        listener = Listener(connection)
        await listener.start()
        await asyncio.sleep(2.0)  # 0.5 s, then 1 s between the attempts
        await listener.stop()
        return listener.status["opcua"]

    status = asyncio.run(scenario())
    assert status["connected"] is False and 2 <= status["attempts"] <= 4
    assert status["failures"] == status["attempts"] and status["last_error"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"mqtt": {"url": "mqtt://127.0.0.1:1883", "topics": {"vibration": {"topic": "x"}}}},
         "mqtt.topics.vibration: not a signal of MILL-07"),
        ({"mqtt": {"url": "mqtt://127.0.0.1:1883",
                   "topics": {"spindle_power": {"topic": "x", "unit": "mm"}}}},
         "mqtt.topics.spindle_power.unit: 'mm' does not convert to the signal's 'W'"),
        ({"mqtt": {"topics": {"spindle_power": {"topic": "x"}}}},
         "mqtt.url: missing; expected mqtt://HOST[:PORT]"),
        ({"plc": {}}, "plc: unknown key (allowed: asset, machine, opcua, mqtt)"),
    ],
)  # fmt: skip
def test_connection_mistakes_are_named(tmp_path: Path, changes: dict, expected: str) -> None:
    with pytest.raises(MachineError) as err:
        load_connection(_connection(tmp_path, 4840, "p", **changes))
    assert expected in str(err.value)
    assert np.isfinite(1.0)


def test_twin_machine_listen_estimates_the_wear_live(tmp_path: Path) -> None:
    """`twin machine listen` beside a streaming machine (MQTT only): the live estimate
    it prints at the end holds the true wear within its interval."""
    import json
    import threading

    from click.testing import CliRunner

    from physics.cli import main

    prefix = f"test-{uuid.uuid4().hex[:8]}"
    topics = {name: {"topic": f"{prefix}/MILL-07/{name}"}
              for name in ("spindle_power", "spindle_torque", "tool_wear_probe")}  # fmt: skip
    path = _connection(tmp_path, 4840, prefix, opcua={},
                       mqtt={"url": "mqtt://127.0.0.1:1883", "topics": topics})  # fmt: skip
    spec_config = load_machine(MACHINE)
    from physics.spec import load_spec

    order = dataclasses.replace(orders_of([ORDER], load_spec(spec_config.spec_path))[0],
                                quantity=3)  # fmt: skip
    order_file = tmp_path / "order.yaml"
    raw = yaml.safe_load(ORDER.read_text())
    raw["planned_quantity"] = 3
    order_file.write_text(yaml.safe_dump(raw))
    truth = tmp_path / "truth.jsonl"
    sender = load_machine(MACHINE)

    def machine() -> None:  # starts streaming 3 s from now, for about a second
        asyncio.run(play(sender, [order], speed=400, mqtt="mqtt://127.0.0.1:1883",
                         truth=truth, true_state={"tool_wear": 0.1}, seed=2,
                         topic_prefix=prefix, lead=3.0))  # fmt: skip

    thread = threading.Thread(target=machine)
    thread.start()
    try:
        r = CliRunner().invoke(main, ["machine", "listen", "--connection", str(path), "--order",
                                      str(order_file), "--every", "100", "--idle", "2",
                                      "--for", "30"], catch_exceptions=False)  # fmt: skip
    finally:
        thread.join()
    assert r.exit_code == 0, r.output
    assert "listening to MILL-07: belief tool_wear = 0.04 +- 0.05" in r.output
    summary = json.loads(r.output[r.output.index("{") :])
    end = [x for x in read_truth(truth) if x["kind"] == "state"][-1]
    now = summary["now"]["tool_wear"]
    assert abs(now["mean"] - end["tool_wear"]) < 3 * now["std"]
    assert now["std"] < 0.005 and summary["observations"] > 1000

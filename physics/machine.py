"""A machine that streams: an FMU played as a CNC controller and its sensors expose it.

``twin machine run`` takes a machine file (experiments/machines/spindle.yaml: the spec,
the signals, what stays hidden) and a sequence of job orders. Each order is simulated
by the FMU when it starts, from the machine's true state (which may differ from the
state the order file says the MES believes), and then played out in (accelerated)
machine time: every signal is sampled at its own rate from the run's trajectories
(linear between the FMU's communication points), with Gaussian noise and dropouts, and
written to an OPC UA server and published on MQTT as it falls due; the true state
carries from one order to the next. The hidden truth (the true start state, the
believed one, and the hidden variables at every second) goes to a JSON-lines file the
tests and the estimator's benchmark read.

The OPC UA address space follows the companion specifications where they have a node
for the signal (browse names and namespaces of OPC 40001-1 Machinery, OPC 10000-100 DI
and OPC 40501-1 Machine Tools, instantiated as plain objects and variables, without
their type definitions: the nodesets are not loaded)::

    Objects/Machines/<name>/
      Identification/ Manufacturer, Model, SerialNumber              (DI, Machinery)
      Monitoring/Spindle/ IsRotating, Override                         (Machine Tools)
                          RotationalSpeed, Power, Torque, Load, ...    (ours: no node)
      Equipment/Tools/T1/ ControlIdentifier1, ToolLife/PartsMachined   (Machine Tools)
                          ToolWearProbe                                (ours)
      Production/ProductionPlan/<job>/ Identifier, RunsPlanned,
                          RunsCompleted, State/CurrentState            (Machine Tools)

Signal values are written with the machine's clock as source timestamp (the session
start plus the machine time: accelerated, it runs ``speed`` times faster than the wall)
and a status: Good, or BadSensorFailure when a sensor drops out (written once, then
nothing until it is back); before its first reading a signal's node says
BadWaitingForInitialData. Node ids are strings in our namespace,
``<name>.<path>`` (``MILL-07.Monitoring.Spindle.RotationalSpeed``), so a connection
file can name them. MQTT topics are ``<prefix>/<name>/<signal>`` with a JSON payload
``{"value", "unit", "timestamp", "quality", "order"}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from physics._machine_outlets import Outlets, host_port, text
from physics.expr import Expr, ExpressionError, compile_expr

__all__ = ["MachineConfig", "MachineError", "Signal", "load_machine", "play", "schedule"]

# OPC UA browse names of our own signals (no companion-spec node), under Spindle.
SPINDLE_NODES = {
    "spindle_speed": "RotationalSpeed",
    "spindle_power": "Power",
    "spindle_torque": "Torque",
    "spindle_load": "Load",
    "bearing_temperature": "BearingTemperature",
    "housing_temperature": "HousingTemperature",
    "motor_temperature": "MotorTemperature",
}
MAX_RATE = 1000.0  # Hz of machine time per signal


class MachineError(ValueError):
    """A machine file or a run request that cannot be played (the message says why)."""


@dataclass(frozen=True)
class Signal:
    name: str
    expr: Expr
    unit: str
    noise: float = 0.0
    rate: float | None = None  # Hz of machine time; None: on an event
    on: str | None = None  # each: "part", once per finished part
    dropout_per_second: float = 0.0
    dropout_seconds: float = 0.0

    @property
    def node(self) -> str:
        """The signal's browse name in the address space."""
        if self.name in SPINDLE_NODES:
            return SPINDLE_NODES[self.name]
        return "".join(w.capitalize() for w in self.name.split("_"))


@dataclass(frozen=True)
class MachineConfig:
    name: str
    spec_path: Path
    signals: list[Signal]
    hidden: list[str]
    carry: dict[str, str] = field(default_factory=dict)  # spec state input -> FMU output
    description: str = ""
    manufacturer: str = ""
    model: str = ""
    serial_number: str = ""
    source: str = ""

    def variables(self) -> list[str]:
        """The FMU variables the signals, the hidden state and the playing read."""
        names = {n for s in self.signals for n in s.expr.names}
        return sorted(names | set(self.hidden) | set(self.carry.values())
                      | {"parts_completed", "cutting", "tool_changes"})  # fmt: skip


def read_mapping(path: Path, keys: str) -> dict[str, Any]:
    """A YAML file that holds a mapping; MachineError says why one does not."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MachineError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise MachineError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise MachineError(f"{path}: expected a mapping of {keys}")
    return raw


def load_machine(path: str | Path) -> MachineConfig:
    """Read and check a machine file; MachineError names the field, value and expectation."""
    path = Path(path)
    raw = read_mapping(path, "name, spec, signals, hidden")
    problems: list[str] = []
    keys = (
        "name",
        "description",
        "manufacturer",
        "model",
        "serial_number",
        "spec",
        "signals",
        "hidden",
        "carry",
    )
    problems += [f"{k}: unknown key (allowed: {', '.join(keys)})"
                 for k in sorted(set(raw) - set(keys))]  # fmt: skip
    name = raw.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "./#+ "):
        problems.append(f"name: {name!r}; expected a machine name without . / # + or spaces")
    spec = raw.get("spec")
    if not isinstance(spec, str):
        problems.append(f"spec: {spec!r}; expected the path of the machine's twin spec")
    signals: list[Signal] = []
    items = raw.get("signals")
    if not isinstance(items, dict) or not items:
        problems.append(f"signals: {items!r}; expected a mapping of signal names")
        items = {}
    for key, s in items.items():
        at = f"signals.{key}"
        if not isinstance(s, dict):
            problems.append(f"{at}: {s!r}; expected a mapping with expr, unit, noise, rate")
            continue
        extra = sorted(map(str, set(s) - {"expr", "unit", "noise", "rate", "each", "dropout"}))
        problems += [f"{at}.{k}: unknown key (allowed: expr, unit, noise, rate, each, dropout)"
                     for k in extra]  # fmt: skip
        try:
            expr = compile_expr(str(s.get("expr", "")), field=f"{at}.expr")
        except ExpressionError as exc:
            problems.append(str(exc))
            continue
        noise = s.get("noise", 0.0)
        if not isinstance(noise, int | float) or not noise >= 0 or not math.isfinite(noise):
            problems.append(f"{at}.noise: {noise!r}; expected a standard deviation >= 0")
            noise = 0.0
        rate, on = s.get("rate"), s.get("each")
        if (rate is None) == (on is None):
            problems.append(f"{at}: give rate (Hz of machine time) or each: part, one of them")
        elif rate is not None and not (isinstance(rate, int | float) and 0 < rate <= MAX_RATE):
            problems.append(f"{at}.rate: {rate!r}; expected Hz in (0, {MAX_RATE:g}]")
            rate = None
        elif on is not None and on != "part":
            problems.append(f"{at}.each: {on!r}; expected part")
        drop = s.get("dropout") or {}
        per, secs = drop.get("per_second", 0.0), drop.get("seconds", 0.0)
        if not (isinstance(per, int | float) and 0 <= per < 1):
            problems.append(f"{at}.dropout.per_second: {per!r}; expected a probability in [0, 1)")
            per = 0.0
        if not (isinstance(secs, int | float) and secs >= 0):
            problems.append(f"{at}.dropout.seconds: {secs!r}; expected a duration >= 0 s")
            secs = 0.0
        signals.append(Signal(str(key), expr, str(s.get("unit", "1")), float(noise),
                              None if rate is None else float(rate), on, float(per),
                              float(secs)))  # fmt: skip
    hidden = raw.get("hidden") or []
    if not isinstance(hidden, list) or not all(isinstance(h, str) for h in hidden):
        problems.append(f"hidden: {hidden!r}; expected a list of FMU variable names")
        hidden = []
    carry = raw.get("carry") or {}
    if not isinstance(carry, dict) or not all(isinstance(v, str) for v in carry.values()):
        problems.append(f"carry: {carry!r}; expected a mapping of state input: FMU output")
        carry = {}
    if problems:
        raise MachineError(f"invalid machine file {path}:\n  " + "\n  ".join(problems))
    return MachineConfig(
        name=str(name), spec_path=(path.parent / str(spec)).resolve(), signals=signals,
        hidden=list(hidden), carry={str(k): v for k, v in carry.items()},
        description=str(raw.get("description", "")),
        manufacturer=str(raw.get("manufacturer", "")), model=str(raw.get("model", "")),
        serial_number=str(raw.get("serial_number", "")), source=str(path),
    )  # fmt: skip


@dataclass(frozen=True)
class Sample:
    t: float  # machine time, s since the session started
    signal: str
    value: float
    good: bool
    order: str


@dataclass
class OrderPlay:
    """One order's run: its trajectories and the samples every signal gives of it."""

    order: str
    start: float  # machine time of its first communication point
    time: np.ndarray  # the run's own time, from 0
    columns: dict[str, np.ndarray]
    samples: list[Sample] = field(default_factory=list)
    quantity: int = 0

    def end_values(self, names: Iterable[str]) -> dict[str, float]:
        return {h: float(self.columns[h][-1]) for h in names if h in self.columns}


def _dropouts(times: np.ndarray, per_second: float, seconds: float,
              rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Which samples fall in a dropout: a sensor fails at rate ``per_second`` and stays
    silent for an exponential time of mean ``seconds``."""
    silent = np.zeros(len(times), dtype=bool)
    if per_second <= 0 or seconds <= 0 or len(times) == 0:
        return silent
    t, end = float(times[0]), float(times[-1])
    while True:
        t += rng.exponential(1.0 / per_second)
        if t > end:
            return silent
        length = rng.exponential(seconds)
        silent |= (times >= t) & (times < t + length)
        t += length


def schedule(
    config: MachineConfig,
    order: str,
    start: float,
    run_time: np.ndarray,
    columns: Mapping[str, np.ndarray],
    rng: np.random.Generator,
) -> list[Sample]:
    """Every sample of every signal over one order's run, sorted by machine time."""
    out: list[Sample] = []
    with np.errstate(all="ignore"):
        for s in config.signals:
            clean = np.broadcast_to(np.asarray(s.expr.evaluate(columns), dtype=float),
                                    run_time.shape)  # fmt: skip
            if s.rate is not None:
                times = np.arange(0.0, run_time[-1] + 1e-9, 1.0 / s.rate)
                values = np.interp(times, run_time, clean)
            else:  # once per finished part: the first point where the count moved on
                parts = np.asarray(columns["parts_completed"])
                idx = np.flatnonzero(np.diff(parts) > 0) + 1
                times, values = run_time[idx], clean[idx]
            values = values + rng.normal(0.0, s.noise, len(values)) if s.noise else values
            silent = _dropouts(times, s.dropout_per_second, s.dropout_seconds, rng)
            was_silent = False
            for t, v, quiet in zip(times.tolist(), values.tolist(), silent.tolist(), strict=True):
                if quiet and was_silent:
                    continue  # a dropped-out sensor says nothing more
                out.append(Sample(start + t, s.name, v, not quiet, order))
                was_silent = quiet
    out.sort(key=lambda x: x.t)
    return out


def run_order(spec: Any, fmu: Any, config: MachineConfig, values: Mapping[str, Any],
              quantity: Any) -> tuple[np.ndarray, dict[str, np.ndarray], int]:  # fmt: skip
    """One order's FMU run on its communication grid: the time from the order's start,
    the variables the machine file reads, and the quantity."""
    from physics.run import start_time_of

    case = spec.case_from_order(values, quantity, fmu.catalogue)
    t0 = start_time_of(spec, fmu)
    step = spec.fmu.step_size
    traj = fmu.simulate(case.start_values, case.stop_time, step_size=step,
                        output_interval=step, outputs=config.variables(),
                        start_time=t0)  # fmt: skip
    cols = {k: np.asarray(v, dtype=float) for k, v in traj.as_dict().items() if k != "time"}
    return np.asarray(traj.time, dtype=float) - t0, cols, int(case.quantity or 0)


def simulate_play(spec: Any, fmu: Any, config: MachineConfig, values: Mapping[str, Any],
                  quantity: Any, order: str, start: float,
                  rng: np.random.Generator) -> OrderPlay:  # fmt: skip
    """One order from the given (true) inputs, and every sample its signals give."""
    run_time, cols, planned = run_order(spec, fmu, config, values, quantity)
    play = OrderPlay(order, start, run_time, cols, quantity=planned)
    play.samples = schedule(config, order, start, run_time, cols, rng)
    return play


async def play(config: MachineConfig, orders: Sequence[Any], *, speed: float = 60.0,
               opcua: str | None = None, mqtt: str | None = None, truth: Path | None = None,
               true_state: Mapping[str, Any] | None = None, seed: int = 0,
               topic_prefix: str = "asset-twin/machines", lead: float = 0.0,
               hold: float = 0.0, ready: asyncio.Event | None = None,
               origin: datetime | None = None,
               on_sample: Any = None) -> dict[str, Any]:  # fmt: skip
    """Play ``orders`` (physics.orders.WorkOrder) one after another; returns a summary.

    ``true_state`` overrides the first order's state inputs (what the machine really is,
    against what the order says the MES believes); later orders start from the state the
    previous one left (the hidden variables' end values, the tool wear and bearing damage
    among them). ``speed``: machine seconds per wall second; ``lead``: wall seconds
    between the servers being up (``ready`` set) and the first sample, for clients to
    connect and subscribe; ``hold``: wall seconds the servers stay up after the last
    order (the controller stays on)."""
    from physics.run import open_twin
    from physics.spec import load_spec

    if not (speed > 0 and math.isfinite(speed)):
        raise MachineError(f"--speed: {speed!r}; expected machine seconds per wall second > 0")
    if opcua is not None:
        host_port(opcua, "opc.tcp", 4840)
    spec = load_spec(config.spec_path)
    rng = np.random.default_rng(seed)
    origin = origin or datetime.now(UTC)  # the machine clock at machine time 0
    outlets = Outlets(config, origin)
    truth_file = truth.open("w", encoding="utf-8") if truth is not None else None
    counts: dict[str, int] = {s.name: 0 for s in config.signals}
    state = dict(true_state or {})
    start, finished = 0.0, []
    try:
        if opcua is not None:
            await outlets.open_opcua(opcua)
        if mqtt is not None:
            outlets.open_mqtt(mqtt, topic_prefix)
        if ready is not None:
            ready.set()
        await asyncio.sleep(max(0.0, lead))
        wall0 = time.monotonic()
        with open_twin(spec) as fmu:
            for k, order in enumerate(orders):
                oid = order.job_order_id or f"order-{k + 1}"
                believed = {key: order.values.get(key) for key in state}
                values = {**order.values, **state}
                run = simulate_play(spec, fmu, config, values, order.quantity, oid, start, rng)
                _truth(truth_file, {"kind": "order", "order": oid, "t": start,
                                    "believed": believed, "true": state,
                                    "quantity": run.quantity})  # fmt: skip
                await outlets.add_job(oid, run.quantity)
                await _stream(outlets, run, config, speed, wall0, truth_file, counts, on_sample)
                start += float(run.time[-1])
                end = run.end_values(config.hidden)
                ends = run.end_values(config.carry.values())
                state = {**state, **{k: ends[v] for k, v in config.carry.items() if v in ends}}
                await outlets.write(f"{oid}.State", text("Ended"), start)
                finished.append({"order": oid, "end": end, "parts": run.quantity})
        wall = time.monotonic() - wall0
        await asyncio.sleep(max(0.0, hold))
    finally:
        await outlets.close()
        if truth_file is not None:
            truth_file.close()
    return {"machine": config.name, "orders": finished, "machine_seconds": start,
            "wall_seconds": wall, "samples": counts,
            "published": outlets.published, "acked": outlets.acked}  # fmt: skip


def _truth(f: Any, record: dict[str, Any]) -> None:
    if f is not None:
        f.write(json.dumps(record, default=float) + "\n")
        f.flush()


async def _stream(outlets: Outlets, run: OrderPlay, config: MachineConfig, speed: float,
                  wall0: float, truth_file: Any, counts: dict[str, int],
                  on_sample: Any) -> None:  # fmt: skip
    """Write each sample when its machine time comes; the hidden state every second."""
    from asyncua import ua

    cutting = run.columns.get("cutting", np.zeros_like(run.time))
    parts = run.columns.get("parts_completed", np.zeros_like(run.time))
    changes = run.columns.get("tool_changes", np.zeros_like(run.time))
    last_change = 0.0
    events: list[tuple[float, int, Any]] = [(s.t, 1, s) for s in run.samples]
    step = max(1, round(1.0 / max(float(np.median(np.diff(run.time))), 1e-9)))
    for i in range(0, len(run.time), step):  # once a second of machine time
        events.append((run.start + float(run.time[i]), 0, i))
    events.sort(key=lambda e: (e[0], e[1]))
    last_rot, last_parts = None, 0
    for t, kind, item in events:
        delay = wall0 + t / speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if kind == 0:
            i = item
            rot, done = bool(cutting[i] > 0.5), int(parts[i])
            if rot != last_rot:
                await outlets.write("IsRotating", rot, t)
                last_rot = rot
            if changes[i] != last_change:  # a sister tool: its life counter starts at 0
                outlets.tool_parts, last_change = 0, float(changes[i])
                await outlets.write("PartsMachined", 0.0, t)
            if done != last_parts:
                outlets.tool_parts += done - last_parts
                await outlets.write(f"{run.order}.RunsCompleted", done, t,
                                    vtype=ua.VariantType.UInt32)  # fmt: skip
                await outlets.write("PartsMachined", float(outlets.tool_parts), t)
                last_parts = done
            _truth(truth_file, {"kind": "state", "t": t, "order": run.order,
                                **{h: float(run.columns[h][i]) for h in config.hidden
                                   if h in run.columns}})  # fmt: skip
            continue
        sample = item
        counts[sample.signal] += 1
        await outlets.write(sample.signal, sample.value, t, sample.good)
        outlets.publish(sample)
        if on_sample is not None:
            on_sample(sample)


def read_truth(path: str | Path) -> list[dict[str, Any]]:
    """The records of a truth file, in order."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]  # fmt: skip


def orders_of(paths: Iterable[str | Path], spec: Any) -> list[Any]:
    from physics.orders import load_order

    return [load_order(p, spec) for p in paths]

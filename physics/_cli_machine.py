"""``twin machine run``: play a machine from its FMU as a CNC controller streams it."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path
from typing import Any

import click

from physics._cli_errors import fail, handle_errors


@click.group()
def machine() -> None:
    """A machine that streams its signals over OPC UA and MQTT (standing in for one)."""


@machine.command("run")
@click.option(
    "--machine",
    "machine_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Machine file (YAML): spec, signals, hidden state.",
)
@click.option(
    "--order",
    "orders",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Job order file; repeat for a sequence, played one after another.",
)
@click.option(
    "--speed", default=60.0, show_default=True, type=float, help="Machine seconds per wall second."
)
@click.option("--opcua", help="Serve OPC UA here, e.g. opc.tcp://127.0.0.1:4840.")
@click.option("--mqtt", help="Publish on this broker, e.g. mqtt://127.0.0.1:1883.")
@click.option(
    "--topic-prefix",
    default="asset-twin/machines",
    show_default=True,
    help="MQTT topics: PREFIX/<machine>/<signal>.",
)
@click.option(
    "--truth", type=click.Path(dir_okay=False), help="Write the hidden truth (JSON lines) here."
)
@click.option(
    "--true-state",
    "true_state",
    multiple=True,
    metavar="NAME=VALUE",
    help="The machine's true start state where it differs from the order's.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Noise and dropouts.")
@click.option(
    "--lead",
    default=0.0,
    show_default=True,
    type=float,
    help="Wall seconds between the servers being up and the first sample.",
)
@click.option(
    "--hold",
    default=0.0,
    show_default=True,
    type=float,
    help="Wall seconds the servers stay up after the last order.",
)
@handle_errors
def machine_run(
    machine_path: str,
    orders: tuple[str, ...],
    speed: float,
    opcua: str | None,
    mqtt: str | None,
    topic_prefix: str,
    truth: str | None,
    true_state: tuple[str, ...],
    seed: int,
    lead: float,
    hold: float,
) -> None:
    """Simulate each order with the FMU and stream it in machine time: every signal at
    its rate, with noise and dropouts, to OPC UA nodes and MQTT topics."""
    from physics.machine import MachineError, load_machine, orders_of, play
    from physics.orders import parse_assignments
    from physics.spec import load_spec

    try:
        config = load_machine(machine_path)
    except MachineError as exc:
        fail(str(exc), 2)
    if opcua is None and mqtt is None:
        fail("give --opcua URL, --mqtt URL or both: where the machine streams", 2)
    spec = load_spec(config.spec_path)
    work = orders_of(orders, spec)
    state: dict[str, Any] = {}
    for name, value in parse_assignments(true_state).items():
        inp = spec.inputs.get(name)
        if inp is None or inp.source != "state":
            states = ", ".join(k for k, i in spec.inputs.items() if i.source == "state")
            fail(f"--true-state {name}: not a state input of {spec.name} (state inputs: "
                 f"{states})", 2)  # fmt: skip
        state[name] = inp.coerce(value)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    click.echo(
        f"machine {config.name}: {len(work)} order(s) at {speed:g}x"
        + (f", OPC UA {opcua}" if opcua else "")
        + (f", MQTT {mqtt}" if mqtt else "")
    )
    try:
        summary = asyncio.run(play(config, work, speed=speed, opcua=opcua, mqtt=mqtt,
                                   truth=Path(truth) if truth else None, true_state=state,
                                   seed=seed, topic_prefix=topic_prefix,
                                   lead=lead, hold=hold))  # fmt: skip
    except MachineError as exc:
        fail(str(exc), 2)
    except OSError as exc:
        fail(f"cannot stream: {exc}", 1)
    click.echo(json.dumps(summary, indent=2, default=float))


@machine.command("listen")
@click.option("--connection", "connection_path", required=True,
              type=click.Path(dir_okay=False), help="Connection file (YAML).")  # fmt: skip
@click.option("--order", "order_path", required=True, type=click.Path(dir_okay=False),
              help="The job order the machine runs (its state: the MES's belief).")  # fmt: skip
@click.option("--state", "state_name", default="tool_wear", show_default=True,
              help="The hidden state input to estimate.")  # fmt: skip
@click.option("--prior-sd", default=0.05, show_default=True, type=float,
              help="Standard deviation of the belief, in the input's unit.")  # fmt: skip
@click.option("--every", default=30.0, show_default=True, type=float,
              help="Machine seconds between printed estimates.")  # fmt: skip
@click.option("--for", "duration", default=600.0, show_default=True, type=float,
              help="Wall seconds to listen at most.")  # fmt: skip
@click.option("--idle", default=5.0, show_default=True, type=float,
              help="Wall seconds without an observation, once one came, to stop.")  # fmt: skip
@handle_errors
def machine_listen(connection_path: str, order_path: str, state_name: str, prior_sd: float,
                   every: float, duration: float, idle: float) -> None:  # fmt: skip
    """Listen to a machine as a connection file says, and estimate its hidden state live
    (the point-mass filter of physics/estimate.py), from the order's start."""
    from physics.estimate import Prior
    from physics.listen import load_connection
    from physics.machine import MachineError
    from physics.orders import load_order
    from physics.spec import load_spec

    try:
        connection = load_connection(connection_path)
    except MachineError as exc:
        fail(str(exc), 2)
    spec = load_spec(connection.machine.spec_path)
    order = load_order(order_path, spec)
    inp = spec.inputs.get(state_name)
    if inp is None or inp.source != "state":
        states = ", ".join(k for k, i in spec.inputs.items() if i.source == "state")
        fail(f"--state {state_name}: not a state input of {spec.name} (state inputs: {states})", 2)
    believed = float(order.values.get(state_name, inp.default or 0.0))
    lo = inp.min if inp.min is not None else -math.inf
    hi = inp.max if inp.max is not None else math.inf
    prior = Prior(believed, prior_sd, lo, hi)
    variable = connection.machine.carry.get(state_name, state_name)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    summary = asyncio.run(_listen(connection, spec, order, state_name, variable, prior, every,
                                  duration, idle))  # fmt: skip
    click.echo(json.dumps(summary, indent=2, default=float))


async def _listen(
    connection: Any,
    spec: Any,
    order: Any,
    state: str,
    variable: str,
    prior: Any,
    every: float,
    duration: float,
    idle: float,
) -> dict[str, Any]:
    import time

    from physics.estimate import OrderFilter
    from physics.listen import Listener
    from physics.run import open_twin

    listener = Listener(connection)
    await listener.start()
    click.echo(f"listening to {connection.asset}: belief {state} = {prior.mean:g} "
               f"+- {prior.std:g}")  # fmt: skip
    end_wall = time.monotonic() + duration
    origin, last_print, last_update, t = None, 0.0, 0.0, 0.0
    with open_twin(spec) as fmu:
        f = OrderFilter(spec, fmu, connection.machine, order.values, order.quantity, state, prior)
        while time.monotonic() < end_wall:
            # before the first reading, wait as long as allowed; after it, `idle` at most
            wait = idle if origin is not None else max(0.0, end_wall - time.monotonic())
            try:
                o = await asyncio.wait_for(listener.queue.get(), wait)
            except TimeoutError:
                break  # the machine went quiet (or never spoke)
            if not o.good:
                continue
            origin = origin or o.time  # the order starts with the first reading heard
            t = (o.time - origin).total_seconds()
            if t < 0:
                continue
            f.observe(o.signal, t, o.value, o.good)
            if t - last_update >= 1.0:  # once a second of machine time
                f.update()
                last_update = t
            if t - last_print >= every:
                e = f.at(variable, t)
                click.echo(f"t {t:8.1f} s  {variable} {e.mean:.5g} +- {e.std:.2g}  "
                           f"({e.observations} observations)")  # fmt: skip
                last_print = t
        await listener.stop()
        f.update()
        now, start = f.at(variable, t), f.start()
    return {"asset": connection.asset, "machine_seconds": t, "observations": now.observations,
            "start": {state: {"mean": start.mean, "std": start.std}},
            "now": {variable: {"mean": now.mean, "std": now.std}},
            "status": listener.status}  # fmt: skip

"""``twin machine run``: play a machine from its FMU as a CNC controller streams it."""

from __future__ import annotations

import asyncio
import json
import logging
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

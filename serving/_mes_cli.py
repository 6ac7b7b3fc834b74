"""`twin mes simulate`: the command that plays a shift (``serving._mes_sim``) against a
running service, or against one it starts (``--serve``), with the FMU of the twin spec
as the shop floor, and prints the decisions, the story of each order and the machines
at the end."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from serving._mes_sim import (
    DEFAULT_SHIFT,
    DEFAULT_SPEC,
    Api,
    Runner,
    SimError,
    Units,
    _path,
    load_shift,
    play,
    report,
)

__all__ = ["mes"]


def _fmu_runner(spec_path: Path) -> tuple[Runner, Callable[[], None], Any]:
    try:
        from physics.run import open_twin, simulate_order
        from physics.spec import load_spec
    except ImportError as exc:
        raise SimError(f"the shop floor is the FMU: install the sim extra ({exc})") from None
    spec = load_spec(spec_path)
    fmu = open_twin(spec)

    def run(values: dict[str, Any], quantity: float) -> dict[str, float]:
        known = {k: v for k, v in values.items() if k in spec.inputs}
        result = simulate_order(spec, fmu, known, quantity, outputs=[])
        return {k: float(v) for k, v in result.kpis.items()}

    return run, fmu.close, spec


def _count_events(api: Api, since: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    after = since
    while True:
        page = api.call("GET", f"/v1/events?after_seq={after}&limit=1000")
        for e in page["events"]:
            kind = e["type"].removeprefix("io.assettwin.")
            counts[kind] = counts.get(kind, 0) + 1
        if not page["events"]:
            return counts
        after = page["last_seq"]


@click.group()
def mes() -> None:
    """Play an MES against a running service."""


@mes.command("simulate")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True,
              help="Base URL of the running service.")
@click.option("--api-key", envvar="TWIN_API_KEY",
              help="Key with the work-orders and predict scopes (default TWIN_API_KEY; "
                   "none for a --dev service).")
@click.option("--shift", "shift_path", type=click.Path(path_type=Path), default=DEFAULT_SHIFT,
              show_default=True, help="Machines and job orders of the shift.")
@click.option("--spec", "spec_path", type=click.Path(path_type=Path), default=DEFAULT_SPEC,
              show_default=True, help="Twin spec whose FMU stands in for the shop floor.")
@click.option("--prefix", default=None,
              help="Prefix of the job order ids (default: the time, so reruns never clash).")
@click.option("--json", "json_out", type=click.Path(path_type=Path),
              help="Also write every assessment step and completion to this file.")
@click.option("--wait", default=0.0, show_default=True,
              help="Seconds to wait for GET /readyz before starting.")
@click.option("--serve", "serve_model",
              help="Start `twin serve --dev` with this model (bundle folder or "
                   "models:/<name>@<alias>) on a free port, play against it, stop it.")
@click.option("--db", "database_url", help="Store of the server --serve starts.")
def simulate(url: str, api_key: str | None, shift_path: Path, spec_path: Path,
             prefix: str | None, json_out: Path | None, wait: float,
             serve_model: str | None, database_url: str | None) -> None:
    """Play a shift of job orders against the service at --url and print the decisions."""
    server = None
    try:
        shift = load_shift(shift_path)
        if serve_model is not None:
            server, url = _start_server(serve_model, database_url)
            wait = max(wait, 120.0)
        api = Api(url, api_key)
        try:
            _ready(api, wait)
            served = api.call("GET", f"/v1/models/{shift.asset_type}")
            run, close, spec = _fmu_runner(spec_path)
            try:
                if spec.spec_hash != served["spec"]["hash"]:
                    raise SimError(
                        f"--spec: {spec_path} has hash {spec.spec_hash[:12]}, the service "
                        f"serves {shift.asset_type} from spec hash "
                        f"{served['spec']['hash'][:12]}: give the spec the model was "
                        "trained on")
                start_seq = _last_seq(api)
                click.echo(f"MES shift against {url}: {len(shift.machines)} machines, "
                           f"{len(shift.orders)} orders, model {served['name']} "
                           f"version {served['version']} ({served['bundle_hash'][:12]})")
                tag = prefix if prefix is not None else datetime.now(UTC).strftime(
                    "S%Y%m%dT%H%M%S-")
                chars = [(k, q.characteristic_id, q.unit) for k, q in spec.quality.items()]
                sent_units: Units = {}
                for key, unit in shift.units.items():
                    if key not in spec.inputs or spec.inputs[key].unit is None:
                        raise SimError(f"--shift: units.{key}: not a parameter of "
                                       f"{spec.name} with a unit")
                    sent_units[key] = (unit, str(spec.inputs[key].unit))
                outcomes = play(api, shift, run, chars, prefix=tag, echo=click.echo,
                                units=sent_units)
            finally:
                close()
            assets = [api.call("GET", _path(m.equipment_id)) for m in shift.machines]
            units = {k: q.unit or "" for k, q in spec.quality.items()}
            report(outcomes, assets, _count_events(api, start_seq), units, echo=click.echo)
        finally:
            api.close()
    except SimError as exc:
        click.echo(f"error: {exc}", err=True)
        if server is not None:
            click.echo(server.log_tail(), err=True)
        sys.exit(2)
    finally:
        if server is not None:
            server.stop()
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_out.with_suffix(json_out.suffix + ".tmp")
        tmp.write_text(json.dumps([{
            "job_order_id": o.order.job_order_id, "steps": o.steps, "actions": o.actions,
            "ran_on": o.ran_on, "kpis": o.kpis, "completion": o.completion,
        } for o in outcomes], indent=1), encoding="utf-8")
        os.replace(tmp, json_out)


def _last_seq(api: Api) -> int:
    after = 0
    while True:
        page = api.call("GET", f"/v1/events?after_seq={after}&limit=1000")
        if not page["events"]:
            return after
        after = page["last_seq"]


def _ready(api: Api, wait: float) -> None:
    import httpx

    deadline = time.monotonic() + wait
    while True:
        try:
            r = api._http.get("/readyz")
            if r.status_code == 200:
                return
            why = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            why = str(exc)
        if time.monotonic() >= deadline:
            raise SimError(f"the service at {api.url} is not ready: {why}")
        time.sleep(0.25)


class _Server:
    """A `twin serve` child process in its own process group, stopped on exit."""

    def __init__(self, proc: Any, log: Path) -> None:
        self.proc, self.log = proc, log

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except Exception:  # subprocess.TimeoutExpired: it would not stop
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log_tail(self) -> str:
        try:
            return "server log (last lines):\n" + "\n".join(
                self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
        except OSError:
            return ""


def _start_server(model: str, database_url: str | None) -> tuple[_Server, str]:
    import socket
    import subprocess
    import tempfile

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    twin = Path(sys.executable).with_name("twin")
    cmd = [str(twin) if twin.exists() else "twin", "serve", "--dev", "--model", model,
           "--port", str(port)]
    if database_url:
        cmd += ["--db", database_url]
    log = Path(tempfile.mkstemp(prefix="twin-serve-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    click.echo(f"started {' '.join(cmd)} (pid {proc.pid}, log {log})")
    return _Server(proc, log), f"http://127.0.0.1:{port}"

"""Serving benchmark: the MES decision service against ``mlflow models serve``, same load.

    .venv/bin/python experiments/bench_serving.py [BUNDLE] [--requests 20000]
        [--concurrency 16] [--json out/bench/serving.json] [--no-mlflow]

BUNDLE defaults to ``out/demo/bundle`` (``make demo`` writes it). Everything runs on
127.0.0.1 in this one run, with wrk (Debian's package) as the load generator:

- ``twin serve`` (uvicorn, one worker, API-key authentication on, a SQLite store in a
  temporary folder) with three machines registered;
- ``predict``: ``POST /v1/models/<name>/predict`` with one row (the first assessed
  order on its machine), i.e. one surrogate answer with its domain check;
- ``assessment``: ``POST /v1/work-orders/<id>/assessment``, a new job order id per
  request, of ``--order`` (WO-104 of the demo shift: it fails as sent, no remedy or
  adjustment clears it, and it passes on another machine), on a machine with two others
  registered, so that every answer runs both surrogate calls (the order and its RUL scan;
  the remedies, the 64 adjustment candidates and the other machines) and writes its
  assessment, audit record and decision event to the store; at ``--concurrency``
  connections (throughput) and on one connection (the latency an MES sees when it asks
  per work order);
- ``release``: ``--release-order`` (WO-102), which passes as sent, so its answer needs
  the first call only; on one connection;
- ``mlflow models serve`` (``--env-manager local``, one worker) on the same
  ``model.onnx`` saved as an MLflow ONNX model, answering the same row's input tensor.

Each target gets about ``--requests`` requests at ``--concurrency`` connections from
one wrk thread (wrk runs for a time: a 2 s warm-up measures the rate, the timed run lasts
as long as the requests take at that rate, and its Lua script caps the count at twice
the target). The server is pinned to CPU 0 and wrk to
CPU 1 where the machine has two, so the load generator does not starve the server.
Nothing is asserted: the script prints p50, p99, throughput and errors, the ratio of
``predict`` to ``mlflow models serve``, and PASS / MISS against the issue's targets
(predict >= 5x mlflow's throughput with p99 < 5 ms; assessment p99 < 20 ms; no errors),
and what queueing on one CPU makes of the assessment's service time at ``--concurrency``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Caps the requests a wrk thread sends and prints the figures as JSON.
# A request() function gives each assessment its own job order id (``{n}`` in the path).
LUA = r"""
local limit, sent, got = 0, 0, 0
local path_tpl, body, key
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  limit = tonumber(args[1])
  local f = assert(io.open(args[2], "rb"))
  body = f:read("*a")
  f:close()
  path_tpl = args[3]
  key = args[4]
end

function request()
  sent = sent + 1
  local path = string.gsub(path_tpl, "{n}", id .. "-" .. sent)
  local headers = {["Content-Type"] = "application/json"}
  if key ~= "" then headers["X-API-Key"] = key end
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, resp)
  got = got + 1
  if got >= limit then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write,
    e.status, e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpus() -> tuple[list[str], list[str]]:
    """taskset prefixes for the server and for wrk (empty on a one-CPU machine)."""
    if shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2:
        return [], []
    first, second = sorted(os.sched_getaffinity(0))[:2]
    return ["taskset", "-c", str(first)], ["taskset", "-c", str(second)]


class Server:
    """A server process on a free port, its output in a log file, stopped on exit."""

    def __init__(self, argv: list[str], port: int, log: Path, ready: str,
                 env: dict[str, str] | None = None) -> None:
        self.port, self.log, self.ready = port, log, ready
        self._out = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n"
                                   + self.tail())
            try:
                if httpx.get(self.url + self.ready, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready after {timeout:.0f} s:\n" + self.tail())

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wrk(url: str, path: str, body: bytes, key: str, *, seconds: int, concurrency: int,
        tmp: Path, pin: list[str], cap: int = 0) -> dict[str, Any]:
    """wrk's figures for POSTs of ``body`` to ``path`` ({n}: a counter) for ``seconds``;
    each connection's thread stops issuing at ``cap`` requests (0: no cap)."""
    script = tmp / "bench.lua"
    script.write_text(LUA, encoding="utf-8")
    body_file = tmp / "body.json"
    body_file.write_bytes(body)
    argv = [*pin, "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(script), url, "--", str(cap or 10**9), str(body_file), path, key]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    r["errors"] = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
    r["throughput"] = r["requests"] / (r["duration_us"] / 1e6)
    r["capped"] = bool(cap) and r["requests"] >= cap
    return r


def bounded(url: str, path: str, body: bytes, key: str, *, requests: int,
            concurrency: int, tmp: Path, pin: list[str]) -> dict[str, Any]:
    """About ``requests`` requests: a 2 s warm-up measures the rate, and the timed run
    lasts as long as ``requests`` take at that rate (wrk counts time, not requests; its
    Lua script caps the count at twice the target, so the load stays bounded)."""
    warm = wrk(url, path, body, key, seconds=2, concurrency=concurrency, tmp=tmp, pin=pin)
    seconds = int(min(120, max(2, round(requests / max(warm["throughput"], 1.0)))))
    return wrk(url, path, body, key, seconds=seconds, concurrency=concurrency, tmp=tmp,
               pin=pin, cap=2 * requests)


def setup_service(url: str, key: str, spec: Any, shift_path: Path,
                  orders: dict[str, str]) -> dict[str, bytes]:
    """Register the shift's first three machines; the bodies for predict (the first
    order's row on its machine) and for the assessment of each of ``orders`` (target
    name: the shift's job order id), each checked once and its decision printed."""
    from serving._mes_sim import Api, _order_body, load_shift, register

    shift = load_shift(shift_path)
    if shift.asset_type != spec.name:
        raise SystemExit(f"{shift_path}: asset_type {shift.asset_type!r}, but the bundle is "
                         f"{spec.name!r}")
    machines = {m.equipment_id: m for m in shift.machines[:3]}
    now = datetime.now(UTC)
    api = Api(url, key)
    bodies: dict[str, bytes] = {}
    try:
        register(api, shift.model_copy(update={"machines": list(machines.values())}), now)
        for target, order_id in orders.items():
            order = next((o for o in shift.orders if o.job_order_id == order_id), None)
            if order is None or order.equipment_id not in machines:
                raise SystemExit(f"order {order_id!r}: expected an order of {shift_path} "
                                 f"on one of {', '.join(machines)}")
            machine = machines[order.equipment_id]
            body = _order_body(order, machine.equipment_id, order.parameters, now, {})
            decision = api.call("POST", f"/v1/work-orders/BENCH-CHECK-{order_id}/assessment",
                                body)["decision"]
            bodies[target] = json.dumps(body).encode()
            print(f"{target}: {order_id} on {machine.equipment_id} (others: "
                  f"{', '.join(m for m in machines if m != machine.equipment_id)}): "
                  f"{decision['type']} ({', '.join(decision.get('reason_codes', []))})")
            if "predict" not in bodies:
                row = {k: inp.default for k, inp in spec.inputs.items()
                       if inp.default is not None}
                row.update({**order.parameters, **machine.state, **machine.environment,
                            "quantity": order.planned_quantity})
                # The raw predict route takes a choice by its spec name, not an alias.
                row = {k: spec.inputs[k].coerce(v) if k in spec.inputs else v
                       for k, v in row.items()}
                api.call("POST", f"/v1/models/{spec.name}/predict", {"rows": [row]})
                bodies["predict"] = json.dumps({"rows": [row]}).encode()
    finally:
        api.close()
    return bodies


def mlflow_model(bundle: Path, row: dict[str, Any], tmp: Path) -> tuple[Path, bytes]:
    """``model.onnx`` saved as an MLflow ONNX model; the body of the same row."""
    import mlflow.onnx
    import numpy as np
    import onnx
    import onnxruntime as ort
    from mlflow.models import infer_signature

    from serving._models import load_model
    from serving._predict import encode

    loaded = load_model(str(bundle))
    model_file = loaded.folder / loaded.signature["model"]["file"]
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = encode(loaded, [row]).raw
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {name: x}), strict=True))
    target = tmp / "mlflow-model"
    mlflow.onnx.save_model(onnx.load(str(model_file)), str(target),
                           signature=infer_signature({name: x}, outputs))
    body = json.dumps({"inputs": {name: np.asarray(x).tolist()}}).encode()
    return target, body


def ort_share(bundle: Path, body: bytes, shift_path: Path, repeats: int = 200,
              ) -> dict[str, float]:
    """The assessment of ``body`` in this process, ``repeats`` times: its time per
    assessment (domain code, no HTTP, no store) and the onnxruntime time of its rows
    (``LoadedModel.run``, the same calls), both in ms."""
    from serving._mes_sim import load_shift
    from serving._models import LoadedModel, load_model
    from serving._schemas import JobOrderIn
    from serving._settings import DEFAULT_POLICY
    from serving.domain.assess import AssetView, OrderView, assess
    from serving.domain.orders import operation_of, order_values, quality_limits
    from serving.domain.policy import load_policy

    model = load_model(str(bundle), threads=1)
    policy = load_policy(DEFAULT_POLICY)
    order_in = JobOrderIn.model_validate_json(body)
    shift = load_shift(shift_path)
    now = datetime.now(UTC)
    views = {m.equipment_id: AssetView(m.equipment_id, shift.asset_type, dict(m.state),
                                       dict(m.environment), now) for m in shift.machines[:3]}
    asset = views[order_in.equipment_id]
    others = [v for k, v in views.items() if k != order_in.equipment_id]
    values, quantity = order_values(model.spec, order_in.job_order_parameters,
                                    order_in.planned_quantity, path="job_order_parameters")
    operation = operation_of(model.spec, order_in.operation, values)
    order = OrderView("BENCH", values, quantity, quality_limits(
        model.spec, order_in.quality_specs, operation))
    spent = [0.0]
    run = LoadedModel.run

    def timed(self: LoadedModel, raw: Any) -> Any:
        start = time.perf_counter()
        try:
            return run(self, raw)
        finally:
            spent[0] += time.perf_counter() - start

    for _ in range(20):  # warm-up
        assess(model, policy, asset, order, others=others, now=now)
    LoadedModel.run = timed  # type: ignore[method-assign]
    try:
        # Wall time for both (one thread, the same clock), so that a preemption by another
        # process cannot make onnxruntime look longer than the whole.
        wall = time.perf_counter()
        for _ in range(repeats):
            assess(model, policy, asset, order, others=others, now=now)
        wall = time.perf_counter() - wall
    finally:
        LoadedModel.run = run  # type: ignore[method-assign]
    return {"assessment_ms": 1000 * wall / repeats, "ort_ms": 1000 * spent[0] / repeats}


def _variants(body: bytes, n: int) -> list[dict[str, Any]]:
    """``n`` orders like ``body``, each its own: the quantity from 50 % to 150 % and the
    spindle speed from -10 % to +10 % of the order's, so no two share a surrogate row."""
    order = json.loads(body)
    out = []
    for i in range(n):
        o = json.loads(json.dumps(order))
        o["planned_quantity"] = max(1, round(order["planned_quantity"] * (0.5 + i / n)))
        for p in o["job_order_parameters"]:
            if p["id"] == "spindle_speed":
                p["value"] = p["value"] * (0.9 + 0.2 * ((i * 37) % n) / n)
        out.append(o)
    return out


def batch_vs_single(url: str, key: str, body: bytes, n: int = 100) -> dict[str, float]:
    """``n`` different orders (``_variants``) assessed one request at a time, then the
    same ``n`` in one batch request (each its own job order id): wall time per order, on
    one connection."""
    import httpx

    variants = _variants(body, n)
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=300) as c:
        for i in range(5):  # warm-up
            c.post(f"/v1/work-orders/BENCH-W-{i}/assessment",
                   json=variants[i]).raise_for_status()
        start = time.perf_counter()
        for i in range(n):
            c.post(f"/v1/work-orders/BENCH-S-{i}/assessment",
                   json=variants[i]).raise_for_status()
        single = time.perf_counter() - start
        orders = [{"job_order_id": f"BENCH-B-{i}", **o} for i, o in enumerate(variants)]
        start = time.perf_counter()
        r = c.post("/v1/work-orders:batch-assessment", json={"orders": orders})
        batch = time.perf_counter() - start
        r.raise_for_status()
        bad = [x for x in r.json()["results"] if x["status"] != 200]
        if bad:
            raise SystemExit(f"batch assessment: {len(bad)} orders refused: {bad[0]}")
    return {"orders": n, "single_ms_per_order": 1000 * single / n,
            "batch_ms_per_order": 1000 * batch / n, "ratio": single / batch}


@contextmanager
def pg_schema(url: str) -> Iterator[str | None]:
    """A fresh schema on the PostgreSQL server at ``url`` (dropped afterwards), as a URL
    whose search path puts it first; None when the server does not answer."""
    import uuid
    from urllib.parse import quote

    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT",
                           connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception:  # any failure to connect: no PostgreSQL here
        engine.dispose()
        yield None
        return
    try:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def fmt_row(name: str, r: dict[str, Any]) -> str:
    return (f"{name:<28} {r['requests']:>8} {r['errors']:>6} {r['throughput']:>9.0f} "
            f"{r['p50_us'] / 1000:>8.2f} {r['p99_us'] / 1000:>8.2f} {r['max_us'] / 1000:>8.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", type=Path, default=ROOT / "out" / "demo" / "bundle")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--shift", type=Path, default=ROOT / "experiments" / "mes" / "shift.yaml",
                    help="machines and orders: the first three machines are registered")
    ap.add_argument("--order", default="WO-104",
                    help="the shift's order to assess: one whose decision needs every "
                         "alternative (remedies, adjustment search, other machines)")
    ap.add_argument("--release-order", default="WO-102",
                    help="an order that passes as sent (one surrogate call), on one "
                         "connection")
    ap.add_argument("--json", type=Path, default=ROOT / "out" / "bench" / "serving.json")
    ap.add_argument("--pg-url", default=os.environ.get(
        "TWIN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
                    help="PostgreSQL server for the --workers 2 run (a schema of its own)")
    ap.add_argument("--no-mlflow", action="store_true",
                    help="skip mlflow models serve (no ratio is printed)")
    a = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    if not (a.bundle / "signature.json").is_file():
        print(f"{a.bundle}: not a model bundle (run `make demo`, or name a bundle folder)",
              file=sys.stderr)
        return 2
    if not 1 <= a.requests <= 1_000_000 or not 1 <= a.concurrency <= 256:
        print("--requests must be in [1, 1000000] and --concurrency in [1, 256]",
              file=sys.stderr)
        return 2

    sys.path.insert(0, str(ROOT))
    from serving._models import peek_spec

    spec = peek_spec(str(a.bundle))
    server_pin, wrk_pin = cpus()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as t:
        tmp = Path(t)
        db = f"sqlite:///{tmp / 'twin.db'}"
        key = subprocess.run(
            [str(BIN / "twin"), "keys", "create", "--name", "bench", "--db", db,
             "--scope", "predict", "--scope", "work-orders", "--scope", "admin"],
            capture_output=True, text=True, check=True).stdout.strip()
        port = free_port()
        env = {"OMP_NUM_THREADS": "1"}
        with Server([*server_pin, str(BIN / "twin"), "serve", "--model", str(a.bundle),
                     "--db", db, "--port", str(port)], port, tmp / "twin.log",
                    "/readyz", env) as twin:
            twin.wait()
            bodies = setup_service(twin.url, key, spec, a.shift,
                                   {"assessment": a.order, "release": a.release_order})
            load = {"requests": a.requests, "concurrency": a.concurrency, "tmp": tmp,
                    "pin": wrk_pin}
            # Each run its own job order ids ({n}: wrk's connection and request count).
            assess = "/v1/work-orders/BENCH-{tag}-{{n}}/assessment".format
            for name, path, body, conc in (
                    ("predict", f"/v1/models/{spec.name}/predict", bodies["predict"],
                     a.concurrency),
                    ("assessment", assess(tag="c"), bodies["assessment"], a.concurrency),
                    ("assessment, 1 connection", assess(tag="1"), bodies["assessment"], 1),
                    ("release, 1 connection", assess(tag="r"), bodies["release"], 1)):
                results[name] = bounded(twin.url, path, body, key,
                                        **{**load, "concurrency": conc})
                print(fmt_row(name, results[name]), flush=True)
            results["batch"] = batch_vs_single(twin.url, key, bodies["assessment"])
            print(f"batch of {results['batch']['orders']}: "
                  f"{results['batch']['batch_ms_per_order']:.2f} ms per order; one at a "
                  f"time {results['batch']['single_ms_per_order']:.2f} ms", flush=True)
        # --workers 2 on PostgreSQL, the store of a deployment with several workers (two
        # processes on one SQLite file meet at its file lock, whose busy handler sleeps up
        # to 100 ms): both CPUs for the service, wrk sharing them.
        name = f"assessment, --workers 2, {a.concurrency} conn"
        with pg_schema(a.pg_url) as pg:
            if pg is None:
                print(f"{name}: skipped, no PostgreSQL at {a.pg_url}", flush=True)
            else:
                pg_key = subprocess.run(
                    [str(BIN / "twin"), "keys", "create", "--name", "bench", "--db", pg,
                     "--scope", "predict", "--scope", "work-orders"],
                    capture_output=True, text=True, check=True).stdout.strip()
                port = free_port()
                with Server([str(BIN / "twin"), "serve", "--model", str(a.bundle), "--db",
                             pg, "--port", str(port), "--workers", "2"], port,
                            tmp / "twin2.log", "/readyz", env) as twin:
                    twin.wait()
                    setup_service(twin.url, pg_key, spec, a.shift, {"assessment": a.order})
                    results[name] = bounded(twin.url, assess(tag="w2"), bodies["assessment"],
                                            pg_key, **{**load, "pin": []})
                    print(fmt_row(name, results[name]), flush=True)
        results["in_process"] = ort_share(a.bundle, bodies["assessment"], a.shift)
        print(f"in process: {results['in_process']['assessment_ms']:.2f} ms per "
              f"assessment, {results['in_process']['ort_ms']:.2f} ms of it onnxruntime",
              flush=True)
        if not a.no_mlflow:
            model_dir, body = mlflow_model(a.bundle, json.loads(bodies["predict"])
                                           ["rows"][0], tmp)
            port = free_port()
            with Server([*server_pin, str(BIN / "mlflow"), "models", "serve", "-m",
                         str(model_dir), "--env-manager", "local", "-h", "127.0.0.1",
                         "-p", str(port), "-w", "1"], port, tmp / "mlflow.log", "/ping",
                        {**env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
                        ) as ml:
                ml.wait()
                results["mlflow models serve"] = bounded(ml.url, "/invocations", body, "",
                                                         **load)

    print()
    print(f"bundle {a.bundle} ({spec.name}); {a.requests} requests at concurrency "
          f"{a.concurrency}, wrk -t1{' pinned to its own CPU' if wrk_pin else ''}")
    print(f"{'target':<28} {'requests':>8} {'errors':>6} {'req/s':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'max ms':>8}")
    for name, r in results.items():
        if "p99_us" in r:
            print(fmt_row(name, r))
    checks: list[tuple[str, bool]] = []
    p, s, one = (results[k] for k in ("predict", "assessment", "assessment, 1 connection"))
    if "mlflow models serve" in results:
        ratio = p["throughput"] / results["mlflow models serve"]["throughput"]
        results["ratio_predict_to_mlflow"] = ratio
        checks.append((f"predict throughput {ratio:.1f}x mlflow models serve (>= 5x)",
                       ratio >= 5))
    checks.append((f"predict p99 {p['p99_us'] / 1000:.2f} ms (< 5 ms)", p["p99_us"] < 5000))
    checks.append((f"assessment p99 {s['p99_us'] / 1000:.2f} ms at concurrency "
                   f"{a.concurrency} (< 20 ms)", s["p99_us"] < 20000))
    checks.append((f"assessment p99 {one['p99_us'] / 1000:.2f} ms on one connection (< 20 ms)",
                   one["p99_us"] < 20000))
    checks.append((f"release p99 {results['release, 1 connection']['p99_us'] / 1000:.2f} ms "
                   "on one connection (< 20 ms)",
                   results["release, 1 connection"]["p99_us"] < 20000))
    w2 = results.get(f"assessment, --workers 2, {a.concurrency} conn")
    if w2 is not None:
        checks.append((f"assessment p99 {w2['p99_us'] / 1000:.2f} ms at concurrency "
                       f"{a.concurrency} on --workers 2, PostgreSQL (< 50 ms)",
                       w2["p99_us"] < 50000))
    ip = results["in_process"]
    service_ms = 1000 / one["throughput"]
    share = service_ms / ip["ort_ms"]
    checks.append((f"assessment service time {service_ms:.2f} ms (1 / its 1-connection rate) "
                   f"= {share:.1f}x the onnxruntime time of its rows, {ip['ort_ms']:.2f} ms "
                   f"(<= 3x; in process, without HTTP and the store, "
                   f"{ip['assessment_ms'] / ip['ort_ms']:.1f}x)", share <= 3))
    b = results["batch"]
    checks.append((f"batch of {b['orders']} orders {b['ratio']:.1f}x cheaper per order than "
                   f"{b['orders']} single calls (>= 5x)", b["ratio"] >= 5))
    errors = sum(r.get("errors", 0) for k, r in results.items() if isinstance(r, dict))
    checks.append((f"errors: {errors} (none)", errors == 0))
    for text, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    # Little's law on one CPU: c requests in flight, each needing S of the CPU, wait
    # about c * S; S is what one connection measures (it has the CPU to itself).
    print(f"queueing: {a.concurrency} assessments in flight x {service_ms:.1f} ms of CPU "
          f"each (1 / the 1-connection rate) = {a.concurrency * service_ms:.0f} ms for the "
          f"last in line on {'one CPU' if server_pin else 'the CPUs wrk leaves'}; a p99 "
          f"under 20 ms at concurrency {a.concurrency} needs {20 / a.concurrency:.2f} ms "
          f"per assessment, or more CPUs (twin serve --workers N)")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"bundle": str(a.bundle), "requests": a.requests,
                                  "concurrency": a.concurrency, "results": results,
                                  "checks": [{"check": t, "pass": ok} for t, ok in checks]},
                                 indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The decision service over a real uvicorn server on 127.0.0.1, with the small trained
spindle surrogate: auth on every route, raw predictions against the PyTorch reference,
problems with their fields, assessments, idempotency, completions (concurrent ones on
SQLite and PostgreSQL), events and the audit chain."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from physics._spec_text import fmt

ORDER = {
    "material": "steel_c45", "finished_surface": "wall", "spindle_speed": 5300.0,
    "feed_per_tooth": 0.08, "axial_depth": 2.0, "radial_width": 3.0, "tool_diameter": 12.0,
    "n_teeth": 4, "corner_radius": 0.5, "helix_angle": 30.0, "tool_overhang": 36.0,
    "path_length": 2400.0, "load_time": 45.0, "coolant_on": True,
}
UNITS = {"spindle_speed": "rpm", "feed_per_tooth": "mm", "axial_depth": "mm"}
STATE = {"tool_wear": 0.04, "bearing_damage": 0.12, "warmup": 0.5, "radius_compensation": 0.0}
# The machine's constants at the FMU's defaults (inputs of source machine).
MACHINE = {"rated_power": 20000.0, "spindle_stiffness": 50.0, "spindle_natural_frequency": 900.0}
# The predict route with one character percent-encoded: the same route once decoded, but
# not the raw path the fast path (serving._fastpath) answers, so FastAPI's route does.
ROUTE_PATH = "/v1/models/milling%5Fspindle/predict"


def job_order(equipment: str, quantity: int = 30, **override: Any) -> dict[str, Any]:
    values = {**ORDER, **override}
    return {
        "equipment_id": equipment,
        "planned_quantity": quantity,
        "job_order_parameters": [
            {"id": k, "value": v, **({"unit": UNITS[k]} if k in UNITS else {})}
            for k, v in values.items()
        ],
    }


@contextmanager
def running(bundle: Path, db_url: str, *, dev: bool = False,
            policy: Path | None = None) -> Iterator[str]:
    """The service for one bundle and store on 127.0.0.1 (``tests.serving._server``)."""
    from serving._settings import Settings
    from tests.serving._server import serving

    extra = {} if policy is None else {"policy": policy}
    settings = Settings(database_url=db_url, models=[str(bundle)], dev_mode=dev, **extra)
    with serving(settings) as url:
        yield url


def make_key(db_url: str, *scopes: str) -> str:
    from serving._auth import create_key
    from serving.store._db import open_store

    store = open_store(db_url)
    try:
        with store.session() as s:
            return create_key(s, f"test-{'-'.join(scopes)}", list(scopes))
    finally:
        store.close()


@pytest.fixture(scope="module")
def service(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('service') / 'twin.db'}"
    with running(trained.bundle, db) as url:
        keys = {
            "orders": make_key(db, "work-orders"),
            "predict": make_key(db, "predict"),
            "admin": make_key(db, "admin"),
        }
        clients = {k: httpx.Client(base_url=url, headers={"X-API-Key": v}, timeout=30)
                   for k, v in keys.items()}
        clients["anon"] = httpx.Client(base_url=url, timeout=30)
        for equipment, wear in (("M-01", 0.04), ("M-02", 0.01), ("M-03", 0.15)):
            r = clients["orders"].put(f"/v1/assets/{equipment}", json={
                "asset_type": "milling_spindle", "state": {**STATE, "tool_wear": wear},
                "environment": {"ambient_temperature": 22.0},
                "external_ids": {"cmms_tag": f"CMMS-{equipment}"}})
            assert r.status_code == 200, r.text
        yield {"url": url, "db": db, **clients, "trained": trained}
        for c in clients.values():
            c.close()


def test_every_route_but_health_needs_credentials_and_its_scope(service: dict[str, Any]) -> None:
    anon, predict = service["anon"], service["predict"]
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz").json()
    assert ready == {"ready": True, "models": ["milling_spindle"], "database": "ok"}
    openapi = anon.get("/openapi.json").json()
    routes = [(p, m) for p, ops in openapi["paths"].items() for m in ops
              if p not in ("/healthz", "/readyz", "/metrics")]
    assert len(routes) >= 9
    for path, method in routes:
        url = path.replace("{name}", "milling_spindle").replace("{equipment_id}", "M-01")
        url = url.replace("{job_order_id}", "WO-X")
        r = anon.request(method.upper(), url, json={})
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"].startswith("no credentials")
    r = predict.get("/v1/assets")
    assert r.status_code == 403
    assert r.json()["detail"] == ("this route needs scope 'work-orders'; the key "
                                  "'test-predict' has predict")
    bad = anon.get("/v1/models", headers={"Authorization": "Bearer twk_nope_secret"})
    assert bad.status_code == 401 and bad.json()["detail"] == "unknown or revoked API key"


def test_predict_matches_the_pytorch_surrogate_and_flags_the_domain(
    service: dict[str, Any],
) -> None:
    s = service["trained"].result.surrogate
    rows = [{**ORDER, **STATE, **MACHINE, "bearing_damage": 0.1, "ambient_temperature": 22.0,
             "coolant_temperature": 20.0, "replace_worn_tool": True,
             "tool_measure_interval": 0, "quantity": q} for q in (10, 30, 80)]
    rows.append({**rows[0], "tool_wear": 0.9})  # the DOE drew wear up to 0.3 mm
    r = service["predict"].post("/v1/models/milling_spindle/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    signature = json.loads((service["trained"].bundle / "signature.json").read_text())
    assert body["model"]["bundle_hash"] == signature["bundle_hash"]
    import pandas as pd

    ref = s.predict(s.raw(pd.DataFrame(rows)))
    got = np.array([[row["kpis"][n]["mean"] for n in ref.regression_names]
                    for row in body["rows"]])
    np.testing.assert_allclose(got, ref.mean, rtol=2e-4, atol=1e-6)
    p = np.array([[row["events"][n]["probability"] for n in ref.event_names]
                  for row in body["rows"]])
    np.testing.assert_allclose(p, ref.probability, rtol=2e-4, atol=1e-6)
    assert [row["in_domain"] for row in body["rows"]][:3] == [True, True, True]
    assert body["rows"][3]["in_domain"] is False
    (v,) = [v for v in body["rows"][3]["violations"] if v["field"] == "tool_wear"]
    col = next(c for c in s.features.columns if c.name == "tool_wear")
    assert v["value"] == 0.9 and col.high <= 0.3
    assert v["expected"] == f"within the training domain [{fmt(col.low)}, {fmt(col.high)}] mm"


def test_the_predict_fast_path_answers_as_the_fastapi_route_does(
    service: dict[str, Any],
) -> None:
    """A plain request is answered in front of the framework (serving._fastpath); one
    with a query string goes through the FastAPI route. Same rows, same answer, with
    1 row (row-by-row constraint check) and 40 rows (vectorised, in a worker thread)."""
    base = {**ORDER, **STATE, **MACHINE, "ambient_temperature": 22.0,
            "coolant_temperature": 20.0, "replace_worn_tool": True, "tool_measure_interval": 0}
    rows = [{**base, "quantity": 5 + i, "spindle_speed": 4000.0 + 50 * i,
             "radial_width": 3.0 if i % 7 else 20.0}  # some rows break a constraint
            for i in range(40)]
    expected = [i % 7 != 0 for i in range(40)]
    for part in (slice(7, 8), slice(0, 40)):
        batch = rows[part]
        path = "/v1/models/milling_spindle/predict"
        fast = service["predict"].post(path, json={"rows": batch})
        slow = service["predict"].post(ROUTE_PATH, json={"rows": batch})
        assert fast.status_code == slow.status_code == 200
        assert fast.headers["content-type"] == slow.headers["content-type"]
        assert fast.json() == slow.json()
        flags = [r["in_domain"] for r in fast.json()["rows"]]
        assert flags == expected[part]
    broken = fast.json()["rows"][7]["violations"]
    assert {"field": "constraint", "value": "radial_width <= tool_diameter",
            "expected": "radial width of cut cannot exceed the tool diameter"} in broken


def test_bad_input_is_a_problem_naming_field_value_and_expectation(
    service: dict[str, Any],
) -> None:
    orders = service["orders"]
    body = job_order("M-01")
    body["job_order_parameters"][2] = {"id": "spindle_speed", "value": 5300, "unit": "m/s"}
    r = orders.post("/v1/work-orders/WO-BAD/assessment", json=body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [{"field": "job_order_parameters[2].unit", "value": "m/s",
                                   "expected": "a unit of 1 / [time] convertible to 'rpm', "
                                               "the spec's unit; 'm/s' is [length] / [time]"}]
    body = job_order("M-01", spindle_speed=90000.0)
    err = orders.post("/v1/work-orders/WO-BAD/assessment", json=body).json()["errors"]
    assert err == [{"field": "job_order_parameters[2].value", "value": 90000.0,
                    "expected": "90000 is outside the allowed range [500, 24000] rpm"}]
    body = job_order("M-01")
    del body["job_order_parameters"][0]
    err = orders.post("/v1/work-orders/WO-BAD/assessment", json=body).json()["errors"]
    assert err[0]["expected"].startswith("a parameter 'material' (one of aluminium_6061")
    text = '{"rows": [{"spindle_speed": NaN}]}'
    r = service["predict"].post("/v1/models/milling_spindle/predict", content=text,
                                headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = orders.post("/v1/work-orders/WO-BAD/assessment", json=job_order("M-99"))
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "equipment_id"
    r = service["predict"].post("/v1/models/milling_spindle/predict",
                                content=b"x" * 2_000_000)
    assert r.status_code == 413


def test_assessment_decides_and_replays_by_idempotency_key(service: dict[str, Any]) -> None:
    orders = service["orders"]
    r = orders.post("/v1/work-orders/WO-1/assessment", json=job_order("M-01"),
                    headers={"Idempotency-Key": "wo-1-a"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["decision"]["type"] in ("RELEASE", "RELEASE_WITH_ADJUSTMENT", "MAINTAIN_FIRST",
                                     "REROUTE", "HOLD_FOR_REVIEW")
    assert a["decision"]["advisory"] is True and a["policy"] == {"id": "default",
                                                                 "version": "1.2.0"}
    # A wall order (finishing, the default pass): the wall's characteristics, not the
    # floor's (tests/serving/test_operations.py).
    assert {q["characteristic_id"] for q in a["quality"]} == {"WALL", "RA"}
    assert [n["characteristic_id"] for n in a["operation"]["not_checked"]] == [
        "FLOOR_Z_HIGH", "FLOOR_Z_LOW"]
    for q in a["quality"]:
        lo, up = q["interval"]["lower"], q["interval"]["upper"]
        assert lo <= q["mean"] <= up and 0 <= q["p_out_of_spec"] <= 1
        inside = (q["lsl"] is None or lo >= q["lsl"]) and (q["usl"] is None or up <= q["usl"])
        assert (q["evaluation"] == "OK") == inside
    rul = a["maintenance"]["remaining_useful_life"]
    assert rul["unit"] == "parts"
    got = [rul[k] for k in ("p10", "p50", "p90") if rul[k] is not None]
    assert got == sorted(got)
    assert a["maintenance"]["health_index"] == pytest.approx(1 - 0.04 / 0.3)
    again = orders.post("/v1/work-orders/WO-1/assessment", json=job_order("M-01"),
                        headers={"Idempotency-Key": "wo-1-a"})
    assert again.json() == a and again.headers["Idempotency-Replayed"] == "true"
    other = orders.post("/v1/work-orders/WO-1/assessment", json=job_order("M-01", 31),
                        headers={"Idempotency-Key": "wo-1-a"})
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"

    tight = job_order("M-01")
    tight["quality_specs"] = [{"characteristic_id": "WALL", "lsl": -1.0, "usl": 1.0}]
    t = orders.post("/v1/work-orders/WO-2/assessment", json=tight).json()
    wall = next(q for q in t["quality"] if q["characteristic_id"] == "WALL")
    assert (wall["lsl"], wall["usl"]) == (-1.0, 1.0) and wall["evaluation"] != "OK"
    assert t["decision"]["type"] != "RELEASE"
    assert "QUALITY_AT_RISK:WALL" in t["decision"]["reason_codes"]

    worn = orders.post("/v1/work-orders/WO-3/assessment", json=job_order("M-01", 30,
                                                                         tool_overhang=124.0))
    assert worn.json()["decision"]["type"] == "UNDECIDED"
    assert worn.json()["decision"]["reason_codes"] == ["OUT_OF_DOMAIN"]
    violations = worn.json()["domain"]["violations"]
    assert any(v["field"] == "tool_overhang" for v in violations)


def test_stale_state_is_undecided(service: dict[str, Any]) -> None:
    orders = service["orders"]
    old = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    r = orders.put("/v1/assets/M-OLD", json={"asset_type": "milling_spindle", "state": STATE,
                                              "state_measured_at": old})
    assert r.status_code == 200
    d = orders.post("/v1/work-orders/WO-OLD/assessment", json=job_order("M-OLD")).json()
    assert d["decision"]["type"] == "UNDECIDED"
    assert d["decision"]["reason_codes"] == ["STATE_STALE"]


def test_completion_advances_state_by_the_prediction_at_the_parts_made(
    service: dict[str, Any],
) -> None:
    orders, predict = service["orders"], service["predict"]
    assert orders.post("/v1/work-orders/WO-C/assessment",
                       json=job_order("M-02", 40)).status_code == 200
    before = orders.get("/v1/assets/M-02").json()
    r = orders.post("/v1/work-orders/WO-C/completion", json={
        "equipment_id": "M-02", "parts_made": 25,
        "measured_quality": [{"characteristic_id": "WALL", "value": 40.0, "unit": "um"}]})
    assert r.status_code == 200, r.text
    done = r.json()
    row = {**ORDER, **before["state"], **before["environment"], "quantity": 25}
    ref = predict.post("/v1/models/milling_spindle/predict", json={"rows": [row]}).json()
    kpis = ref["rows"][0]["kpis"]
    assert done["state_after"]["tool_wear"] == pytest.approx(kpis["tool_wear_end"]["mean"])
    assert done["state_after"]["bearing_damage"] == pytest.approx(
        before["state"]["bearing_damage"] + kpis["bearing_damage_order"]["mean"])
    assert done["state_after"]["warmup"] == 1.0
    (res,) = done["residuals"]
    assert res["residual"] == pytest.approx(40.0 - kpis["wall_error_max"]["mean"])
    after = orders.get("/v1/assets/M-02").json()
    assert after["parts_made"] == before["parts_made"] + 25
    assert after["state"] == done["state_after"]
    again = orders.post("/v1/work-orders/WO-C/completion",
                        json={"equipment_id": "M-02", "parts_made": 25})
    assert again.status_code == 409
    assert again.json()["detail"] == "work order 'WO-C' is already completed"
    stored = orders.get("/v1/work-orders/WO-C").json()
    assert stored["completion"]["response"] == done and len(stored["assessments"]) == 1


def test_events_replay_in_order_and_the_audit_chain_detects_tampering(
    service: dict[str, Any],
) -> None:
    from click.testing import CliRunner
    from sqlalchemy import create_engine, text

    from serving.cli import audit

    orders = service["orders"]
    assert orders.post("/v1/work-orders/WO-EV/assessment",
                       json=job_order("M-01")).status_code == 200
    first = orders.get("/v1/events", params={"after_seq": 0, "limit": 1000}).json()["events"]
    seqs = [e["twinseq"] for e in first]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    decisions = [e for e in first if e["type"] == "io.assettwin.decision.issued"]
    assert decisions and all(e["specversion"] == "1.0" for e in decisions)
    per = {}
    for e in first:
        per.setdefault(e["subject"], []).append(int(e["sequence"]))
    assert all(v == list(range(1, len(v) + 1)) for v in per.values())
    later = orders.get("/v1/events", params={"after_seq": seqs[1]}).json()["events"]
    assert [e["twinseq"] for e in later][:3] == seqs[2:5]

    runner = CliRunner()
    ok = runner.invoke(audit, ["verify", "--db", service["db"]])
    assert ok.exit_code == 0 and ok.output.startswith("audit chain OK: ")
    engine = create_engine(service["db"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit SET caller = 'mallory' WHERE seq = 3"))
    bad = runner.invoke(audit, ["verify", "--db", service["db"]])
    engine.dispose()
    assert bad.exit_code == 1
    assert bad.output.strip() == ("audit chain BROKEN at record 3: record 3: hash does not "
                                  "match its contents")


def test_concurrent_completions_on_one_machine_lose_no_update(
    trained: Any, store_url: str
) -> None:
    with running(trained.bundle, store_url, dev=True) as url, httpx.Client(
        base_url=url, timeout=60) as c:
        assert c.put("/v1/assets/M-CC", json={"asset_type": "milling_spindle",
                                                "state": STATE}).status_code == 200
        n = 6
        for i in range(n):
            assert c.post(f"/v1/work-orders/CC-{i}/assessment",
                          json=job_order("M-CC", 10)).status_code == 200

        def complete(i: int) -> dict[str, Any]:
            r = c.post(f"/v1/work-orders/CC-{i}/completion",
                       json={"equipment_id": "M-CC", "parts_made": 10})
            assert r.status_code == 200, r.text
            return dict(r.json())

        with ThreadPoolExecutor(n) as pool:
            done = list(pool.map(complete, range(n)))
        asset = c.get("/v1/assets/M-CC").json()
        assert asset["parts_made"] == 10 * n
        # Serialized: each completion started from the state another one left.
        chain = {round(d["state_before"]["bearing_damage"], 12): d for d in done}
        state = STATE["bearing_damage"]
        for _ in range(n):
            d = chain[round(state, 12)]
            state = d["state_after"]["bearing_damage"]
        assert asset["state"]["bearing_damage"] == pytest.approx(state)
        assert asset["revision"] == 1 + n


def test_a_registered_webhook_receives_the_signed_decision(service: dict[str, Any]) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from serving.adapters.webhooks import verify

    got: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        admin = service["admin"]
        assert service["orders"].post("/v1/webhooks", json={"url": "http://x"}).status_code == 403
        hook = admin.post("/v1/webhooks", json={
            "url": f"http://127.0.0.1:{receiver.server_port}/events",
            "event_types": ["io.assettwin.decision.issued"]}).json()
        assert hook["secret"].startswith("whsec_")
        r = service["orders"].post("/v1/work-orders/WO-HOOK/assessment", json=job_order("M-01"))
        decision = r.json()["decision"]
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
        (headers, body), *_ = got
        verify(hook["secret"], headers, body)  # raises if the signature is wrong
        event = json.loads(body)
        assert headers["content-type"] == "application/cloudevents+json"
        assert event["type"] == "io.assettwin.decision.issued"
        assert event["subject"] == "work-order/WO-HOOK"
        assert event["data"]["decision"] == decision
        listed = admin.get("/v1/webhooks").json()["webhooks"]
        assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    finally:
        receiver.shutdown()


def _rows_for_batching(n: int) -> list[dict[str, Any]]:
    base = {**ORDER, **STATE, **MACHINE, "ambient_temperature": 22.0,
            "coolant_temperature": 20.0, "replace_worn_tool": True, "tool_measure_interval": 0}
    return [{**base, "quantity": 3 + 2 * i, "spindle_speed": 4200.0 + 75 * i,
             "radial_width": 3.0 if i % 5 else 20.0}  # some rows break a constraint
            for i in range(n)]


def test_concurrent_predicts_share_model_calls_and_get_their_own_answers(
    trained: Any, tmp_path: Path,
) -> None:
    """serving._fastpath batches the rows of requests that arrive together into one model
    call. Driven here on the real application's context (its lifespan loads the bundle),
    eight requests at once make one call of eight rows, and each answer is the one its
    row gets alone; and the metric counts the calls."""
    import asyncio

    import orjson

    from serving._fastpath import _Batch, predict_answer
    from serving._settings import Settings
    from serving.app import create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'twin.db'}",
                              models=[str(trained.bundle)], dev_mode=True))
    rows = _rows_for_batching(8)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], bytes]:
        async with app.router.lifespan_context(app):
            ctx = app.state.ctx
            batch = _Batch(ctx, "milling_spindle")
            together = await asyncio.gather(*(batch.answer([r]) for r in rows))
            alone = [predict_answer(ctx, "milling_spindle", [r]) for r in rows]
            return together, alone, ctx.metrics.render()

    together, alone, metrics = asyncio.run(scenario())
    # Bit for bit (as JSON: NaN, which out-of-domain rows may get, is null there).
    assert orjson.dumps(together) == orjson.dumps(alone)
    assert [a["rows"][0]["in_domain"] for a in together] == [i % 5 != 0 for i in range(8)]
    text = metrics.decode()
    assert 'twin_model_batch_rows_count{model="milling_spindle"} 1.0' in text
    assert 'twin_model_batch_rows_sum{model="milling_spindle"} 8.0' in text
    assert 'twin_predictions_total{model="milling_spindle"} 16.0' in text


def test_concurrent_predicts_on_the_server_each_get_the_answer_of_their_rows(
    service: dict[str, Any],
) -> None:
    """32 clients at once (one or two rows each) against the real server: every answer
    is the one the FastAPI route gives the same body alone."""
    rows = _rows_for_batching(48)
    bodies = [{"rows": rows[i:i + 1 + i % 2]} for i in range(32)]
    path = "/v1/models/milling_spindle/predict"
    client = service["predict"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda b: client.post(path, json=b), bodies))
    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200, answer.text
        alone = client.post(ROUTE_PATH, json=body)
        assert answer.json() == alone.json()

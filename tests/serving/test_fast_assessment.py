"""The single-assessment fast path (serving._fastassess) against the FastAPI route: the
same answer and the same records for a plain request, the route's own problem for every
request the lane hands over, and concurrent requests run as one batch whose answers are
each the one its order gets alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.test_api import ORDER, STATE, job_order, make_key, running

VOLATILE = ("job_order_id", "assessed_at")


def sent_parameters(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameters of ``body`` as the store keeps them (the unit null where none)."""
    return [{"unit": None, **p} for p in body["job_order_parameters"]]


def same(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without what differs between two calls of one order (its id and time)."""
    return {k: v for k, v in answer.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def service(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('fast') / 'twin.db'}"
    with running(trained.bundle, db) as url:
        key = make_key(db, "work-orders")
        client = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60)
        for equipment, wear in (("M-01", 0.04), ("M-02", 0.01), ("M-03", 0.15)):
            r = client.put(f"/v1/assets/{equipment}", headers={"If-None-Match": "*"}, json={
                "asset_type": "milling_spindle", "state": {**STATE, "tool_wear": wear},
                "environment": {"ambient_temperature": 22.0}, "work_center": "CELL-1"})
            assert r.status_code == 200, r.text
        yield {"url": url, "db": db, "client": client, "key": key}
        client.close()


def _batches(client: httpx.Client) -> tuple[float, float]:
    """(batches, orders) the lane has run, from /metrics."""
    text = client.get("/metrics").text
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("twin_assessment_batch_orders_count"):
            count = float(line.split()[-1])
        elif line.startswith("twin_assessment_batch_orders_sum"):
            total = float(line.split()[-1])
    return count, total


def test_a_plain_request_gets_the_route_answer_and_the_same_records(
    service: dict[str, Any],
) -> None:
    """WO-F-1 goes through the lane; WO%2DR-1 (the id WO-R-1, one character encoded) is
    not a raw path the lane answers, so the FastAPI route does. Same order, same
    machine: the same answer, both stored, audited and announced."""
    client = service["client"]
    body = job_order("M-01", 40, spindle_speed=9000.0)
    before = _batches(client)
    fast = client.post("/v1/work-orders/WO-F-1/assessment", json=body)
    after = _batches(client)
    slow = client.post("/v1/work-orders/WO%2DR-1/assessment", json=body)
    assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.json()["job_order_id"] == "WO-F-1" and slow.json()["job_order_id"] == "WO-R-1"
    assert same(fast.json()) == same(slow.json())
    assert after == (before[0] + 1, before[1] + 1)  # the lane ran it, as a batch of one
    assert _batches(client) == after  # and the route's call did not go through it
    for job, sent in (("WO-F-1", fast), ("WO-R-1", slow)):
        (stored,) = client.get(f"/v1/work-orders/{job}").json()["assessments"]
        assert stored["response"] == sent.json()  # stored as answered
        assert stored["request"]["job_order_parameters"] == sent_parameters(body)
    events = client.get("/v1/events", params={"limit": 1000}).json()["events"]
    issued = {e["subject"] for e in events if e["type"] == "io.assettwin.decision.issued"}
    assert issued >= {"work-order/WO-F-1", "work-order/WO-R-1"}
    audit = client.get("/v1/audit", params={"subject": "work-order/WO-F-1"})
    assert audit.status_code == 403  # admin scope; the chain itself is checked below
    admin = make_key(service["db"], "admin")
    records = client.get("/v1/audit", params={"subject": "work-order/WO-F-1"},
                         headers={"X-API-Key": admin}).json()["records"]
    assert [(r["kind"], r["caller"]) for r in records] == [("assessment", "test-work-orders")]
    verify = client.get("/v1/audit/verify", headers={"X-API-Key": admin}).json()
    assert verify["ok"] is True


def test_requests_the_lane_does_not_answer_get_the_route_problem(
    service: dict[str, Any],
) -> None:
    """Unknown asset, a bad unit, no credentials, a wrong scope, a replayed key: each
    the route's exact problem (the lane hands the request over with its body)."""
    client = service["client"]
    url = "/v1/work-orders/WO-P-{}/assessment"
    r = client.post(url.format(1), json=job_order("NOPE"))
    assert r.status_code == 404
    assert r.json()["detail"] == "no asset 'NOPE' is registered"
    bad = job_order("M-01")
    bad["job_order_parameters"][2] = {"id": "spindle_speed", "value": 5300, "unit": "m/s"}
    r = client.post(url.format(2), json=bad)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{
        "field": "job_order_parameters[2].unit", "value": "m/s",
        "expected": "a unit of 1 / [time] convertible to 'rpm', the spec's unit; 'm/s' is "
                    "[length] / [time]"}]
    r = httpx.post(service["url"] + url.format(3), json=job_order("M-01"))
    assert r.status_code == 401 and r.json()["detail"].startswith("no credentials")
    predict = make_key(service["db"], "predict")
    r = client.post(url.format(4), json=job_order("M-01"), headers={"X-API-Key": predict})
    assert r.status_code == 403
    r = client.post(url.format(5), content=b'{"equipment_id": "M-01"',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    first = client.post(url.format(6), json=job_order("M-02"),
                        headers={"Idempotency-Key": "k-6"})
    again = client.post(url.format(6), json=job_order("M-02"),
                        headers={"Idempotency-Key": "k-6"})
    assert first.status_code == again.status_code == 200
    assert "idempotency-replayed" not in first.headers
    assert again.headers["idempotency-replayed"] == "true"
    assert again.content == first.content  # the stored bytes
    other = client.post(url.format(7), json=job_order("M-02"),
                        headers={"Idempotency-Key": "k-6"})
    assert other.status_code == 409


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(
    service: dict[str, Any],
) -> None:
    """24 requests at once from 12 clients, on three machines with different states, two
    of them refused: every 200 is the answer the route gives its body alone, every
    refusal the route's; and the lane ran them in fewer batches than requests."""
    client = service["client"]
    bodies = []
    for i in range(24):
        equipment = ("M-01", "M-02", "M-03")[i % 3]
        # A start time: an advisory's due_by counts from it (else from the call's time).
        bodies.append({**job_order(equipment, 10 + 7 * i, spindle_speed=4000.0 + 150 * i),
                       "start_time": "2030-01-07T06:00:00+00:00"})
    bodies[5] = job_order("GONE")
    bodies[17]["job_order_parameters"][0] = {"id": "material", "value": "unobtainium"}
    before = _batches(client)
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(
            lambda ib: client.post(f"/v1/work-orders/WO-C-{ib[0]}/assessment", json=ib[1]),
            enumerate(bodies)))
    count, total = (a - b for a, b in zip(_batches(client), before, strict=True))
    assert total == 24  # every request reached the lane (the refused ones too)
    assert count < 24  # ... and some ran together
    for i, (body, answer) in enumerate(zip(bodies, answers, strict=True)):
        alone = client.post(f"/v1/work-orders/WO%2DA-{i}/assessment", json=body)
        assert answer.status_code == alone.status_code, (i, answer.text, alone.text)
        if answer.status_code == 200:
            assert same(answer.json()) == same(alone.json()), i
        else:
            assert answer.json()["detail"] == alone.json()["detail"]
    assert answers[5].status_code == 404 and answers[17].status_code == 422


def test_a_key_another_worker_used_meanwhile_breaks_only_its_own_order(
    trained: Any, tmp_path: Path,
) -> None:
    """Two workers read the same Idempotency-Key before either writes (twin requests
    from a retrying MES). The first batch writes; the second's joint write then fails on
    the key, so each of its orders is written alone: the other order is answered and
    stored, the twin is left to the route (None), which replays the stored answer."""
    from serving._auth import DEV_CALLER
    from serving._fastassess import _Order, read_orders, write_answers
    from serving._schemas import JobOrderIn
    from serving._settings import Settings
    from serving.api.assessing import assess_prepared
    from serving.app import create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'twin.db'}",
                              models=[str(trained.bundle)], dev_mode=True))

    def order(job: str, key: str | None) -> _Order:
        body = JobOrderIn.model_validate(job_order("M-01"))
        return _Order(job, f"/v1/work-orders/{job}/assessment", body, DEV_CALLER, key)

    async def scenario() -> tuple[list[bytes | None], list[bytes | None], int]:
        async with app.router.lifespan_context(app):
            ctx = app.state.ctx
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://t") as c:
                r = await c.put("/v1/assets/M-01", json={
                    "asset_type": "milling_spindle", "state": STATE})
                assert r.status_code == 200, r.text

            def race() -> tuple[list[bytes | None], list[bytes | None], int]:
                a = [order("WO-K", "k-1")]
                b = [order("WO-K", "k-1"), order("WO-L", None)]
                ready_a, ready_b = read_orders(ctx, a), read_orders(ctx, b)
                assert sorted(ready_a) == [0] and sorted(ready_b) == [0, 1]
                answers = [dict(enumerate(assess_prepared(ctx, list(r.values()))))
                           for r in (ready_a, ready_b)]
                first = write_answers(ctx, a, ready_a, answers[0])
                second = write_answers(ctx, b, ready_b, answers[1])
                with ctx.store.session(readonly=True) as s:
                    from sqlalchemy import func, select

                    from serving.store._tables import Assessment
                    stored = s.scalar(select(func.count()).select_from(Assessment))
                return first, second, int(stored or 0)

            return await asyncio.to_thread(race)

    first, second, stored = asyncio.run(scenario())
    assert first[0] is not None and b'"job_order_id":"WO-K"' in first[0]
    assert second[0] is None  # the route's: a replay of first[0]
    assert second[1] is not None and b'"job_order_id":"WO-L"' in second[1]
    assert stored == 2  # WO-K once, WO-L once; the failed joint write left nothing
    assert ORDER["material"] == "steel_c45"

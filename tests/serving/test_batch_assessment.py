"""The batch assessment over a real server: every order gets the answer a single
assessment gives it, an order that cannot be assessed gets its own problem while the
others go on, the orders share the surrogate's calls, and a replay is the stored answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serving.test_api import STATE, job_order, make_key, running

TYPE = "milling_spindle"


@pytest.fixture(scope="module")
def api(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    db = f"sqlite:///{tmp_path_factory.mktemp('batch') / 'twin.db'}"
    with running(trained.bundle, db) as url:
        key = make_key(db, "work-orders")
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
            for m, wear in (("B-1", 0.02), ("B-2", 0.1), ("B-3", 0.2)):
                r = client.put(f"/v1/assets/{m}", json={
                    "asset_type": TYPE, "state": {**STATE, "tool_wear": wear},
                    "work_center": "Cell-B"})
                assert r.status_code == 200, r.text
            yield client


@pytest.fixture
def surrogate_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The row count of every surrogate call the server makes (it runs in this process)."""
    from serving._models import LoadedModel

    seen: list[int] = []
    run = LoadedModel.run

    def counted(self: Any, raw: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(raw.shape[0])
        return run(self, raw)

    monkeypatch.setattr(LoadedModel, "run", counted)
    return seen


def _same_numbers(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["decision"]["type"] == b["decision"]["type"]
    assert a["decision"]["reason_codes"] == b["decision"]["reason_codes"]
    for qa, qb in zip(a["quality"], b["quality"], strict=True):
        assert qa["mean"] == pytest.approx(qb["mean"], rel=1e-5, abs=1e-9)
        assert qa["p_out_of_spec"] == pytest.approx(qb["p_out_of_spec"], rel=1e-4, abs=1e-7)
    assert (a["maintenance"]["remaining_useful_life"]
            == b["maintenance"]["remaining_useful_life"])


def test_each_order_of_a_batch_gets_the_single_answer_or_its_own_problem(
    api: httpx.Client,
) -> None:
    orders = [
        {"job_order_id": "WO-B1", **job_order("B-1", 20)},
        {"job_order_id": "WO-B2", **job_order("B-2", 60, feed_per_tooth=0.12)},
        {"job_order_id": "WO-B3", **job_order("NO-SUCH", 10)},
        {"job_order_id": "WO-B4", **job_order("B-3", 20, spindle_speed=90000.0)},
        {"job_order_id": "WO-B5", **job_order("B-3", 40)},
        {"job_order_id": "WO-B1", **job_order("B-1", 20)},
    ]
    r = api.post("/v1/work-orders:batch-assessment", json={"orders": orders},
                 headers={"Idempotency-Key": "batch-1"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["job_order_id"] for x in results] == [o["job_order_id"] for o in orders]
    assert [x["status"] for x in results] == [200, 200, 404, 422, 200, 422]
    assert results[2]["problem"]["errors"][0] == {
        "field": "equipment_id", "value": "NO-SUCH",
        "expected": "a registered asset (PUT /v1/assets/{equipment_id})"}
    assert results[3]["problem"]["errors"][0]["field"] == "job_order_parameters[2].value"
    assert results[5]["problem"]["errors"] == [{
        "field": "orders[5].job_order_id", "value": "WO-B1", "expected": "each order once"}]
    counts = r.json()["counts"]
    assert sum(counts.values()) == 6 and counts["PROBLEM"] == 3
    for n in (0, 1, 4):
        single_body = {k: v for k, v in orders[n].items() if k != "job_order_id"}
        single = api.post(f"/v1/work-orders/{orders[n]['job_order_id']}-single/assessment",
                          json=single_body)
        _same_numbers(results[n]["assessment"], single.json())
    # Each assessed order is recorded like a single one.
    history = api.get("/v1/work-orders/WO-B2").json()
    assert len(history["assessments"]) == 1
    assert history["assessments"][0]["response"] == results[1]["assessment"]
    again = api.post("/v1/work-orders:batch-assessment", json={"orders": orders},
                     headers={"Idempotency-Key": "batch-1"})
    assert again.content == r.content and again.headers["Idempotency-Replayed"] == "true"


def test_a_batch_of_orders_shares_two_surrogate_calls(
    api: httpx.Client, surrogate_calls: list[int],
) -> None:
    orders = [{"job_order_id": f"WO-C{i}", **job_order(f"B-{1 + i % 3}", 5 + i)}
              for i in range(30)]
    r = api.post("/v1/work-orders:batch-assessment", json={"orders": orders})
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == [200] * 30
    decided = [x["assessment"]["decision"]["type"] for x in r.json()["results"]]
    assert len(surrogate_calls) == (1 if set(decided) <= {"RELEASE", "UNDECIDED"} else 2)
    del surrogate_calls[:]
    single = api.post("/v1/work-orders/WO-C0-alone/assessment",
                      json={k: v for k, v in orders[0].items() if k != "job_order_id"})
    assert single.status_code == 200
    # One order alone: its first call has the order and its scan; the batch's first call
    # had every order's.
    assert len(surrogate_calls) in (1, 2)
    r = api.post("/v1/work-orders:batch-assessment", json={"orders": []})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "orders"

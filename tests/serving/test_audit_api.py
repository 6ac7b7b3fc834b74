"""The audit API over a real server on SQLite and PostgreSQL: pages that walk every
record once in order, exact filters, unknown parameters refused, and the chain check
naming the record a direct SQL update changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from tests.serving._server import serving
from tests.serving.test_api import make_key

RECORDS = [  # written through the store, as the asset and work-order routes write them
    ("asset", "asset/M-01", {"state": {"tool_wear": 0.04}}, {"revision": 1}),
    ("assessment", "work-order/4711/0010", {"planned_quantity": 30},
     {"decision": "RELEASE", "p_out_of_spec": 0.0125}),
    ("asset", "asset/M-01", {"state": {"tool_wear": 0.05}}, {"revision": 2}),
    ("assessment", "work-order/4711/0020", {"planned_quantity": 12},
     {"decision": "HOLD_FOR_REVIEW", "p_out_of_spec": 0.5}),
]


@pytest.fixture
def audited(store_url: str) -> Iterator[dict[str, Any]]:
    """A service with three webhooks made over HTTP and four records written through the
    store, in this order: webhook, asset, assessment, webhook, asset, assessment, webhook."""
    from serving._settings import Settings
    from serving.store._audit import append_audit
    from serving.store._db import open_store

    store = open_store(store_url)
    admin = make_key(store_url, "admin")
    orders = make_key(store_url, "work-orders")
    settings = Settings(database_url=store_url, webhooks=False)
    with serving(settings) as url, httpx.Client(
            base_url=url, headers={"X-API-Key": admin}, timeout=30) as client:
        hooks = []
        for step in ("hook", 0, 1, "hook", 2, 3, "hook"):
            if step == "hook":
                r = client.post("/v1/webhooks",
                                json={"url": f"http://127.0.0.1:9/h{len(hooks)}"})
                assert r.status_code == 201, r.text
                hooks.append(r.json()["id"])
                continue
            kind, subject, inputs, outputs = RECORDS[int(step)]
            with store.session() as s:
                append_audit(s, kind=kind, subject=subject, caller="test-mes",
                             inputs=inputs, outputs=outputs, model_version="3",
                             bundle_hash="ab" * 32, policy_version="default@2")
        yield {"client": client, "store": store, "hooks": hooks, "orders": orders}
    store.close()


def walk(client: httpx.Client, **params: Any) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """Every page of /v1/audit for ``params``: the seqs of each page and every record."""
    pages: list[list[int]] = []
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = client.get("/v1/audit", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([x["seq"] for x in body["records"]])
        records.extend(body["records"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages, records
        assert len(pages) < 20, "the cursor does not advance"


def test_the_pages_walk_every_record_once_in_order_as_stored(audited: dict[str, Any]) -> None:
    from serving.store._audit import audit_fields, record_hash
    from serving.store._tables import AuditRecord

    client, store, hooks = audited["client"], audited["store"], audited["hooks"]
    pages, records = walk(client, limit=2)
    assert pages == [[1, 2], [3, 4], [5, 6], [7]]
    with store.session(readonly=True) as s:
        rows = s.scalars(select(AuditRecord).order_by(AuditRecord.seq)).all()
        stored = [{**audit_fields(row), "prev_hash": row.prev_hash, "hash": row.hash}
                  for row in rows]
    assert records == stored
    assert [(x["kind"], x["subject"]) for x in records] == [
        ("webhook", f"webhook/{hooks[0]}"), ("asset", "asset/M-01"),
        ("assessment", "work-order/4711/0010"), ("webhook", f"webhook/{hooks[1]}"),
        ("asset", "asset/M-01"), ("assessment", "work-order/4711/0020"),
        ("webhook", f"webhook/{hooks[2]}")]
    assert records[2]["outputs"] == {"decision": "RELEASE", "p_out_of_spec": 0.0125}
    assert records[0]["caller"] == "test-admin" and records[1]["caller"] == "test-mes"
    assert records[0]["at"].endswith("+00:00")
    # an integrator can check each record from the answer alone
    for prev, record in zip(["", *[x["hash"] for x in records]], records, strict=False):
        fields = {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}
        assert record["prev_hash"] == prev
        assert record_hash(prev, fields) == record["hash"]
    assert walk(client, after_seq=5)[0] == [[6, 7]]
    assert walk(client, after_seq=7)[0] == [[]]


def test_filters_are_exact_and_page_too(audited: dict[str, Any]) -> None:
    client, hooks = audited["client"], audited["hooks"]
    assert walk(client, subject="asset/M-01")[0] == [[2, 5]]
    assert walk(client, kind="webhook", limit=2)[0] == [[1, 4], [7]]
    assert walk(client, kind="assessment", subject="work-order/4711/0020")[0] == [[6]]
    assert walk(client, subject=f"webhook/{hooks[1]}")[0] == [[4]]
    assert walk(client, subject="asset/M-0")[0] == [[]]  # no prefix match
    assert walk(client, kind="asset", subject="work-order/4711/0010")[0] == [[]]
    assert walk(client, kind="assessment", after_seq=3)[0] == [[6]]


def test_unknown_parameters_bad_cursors_and_other_scopes_are_refused(
    audited: dict[str, Any],
) -> None:
    client = audited["client"]
    r = client.get("/v1/audit", params={"subjects": "asset/M-01"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{
        "field": "query.subjects", "value": "asset/M-01",
        "expected": "one of after_seq, cursor, kind, limit, subject"}]
    r = client.get("/v1/audit/verify", params={"repair": "1"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "query.repair", "value": "1",
                                   "expected": "one of (no query parameters)"}]
    r = client.get("/v1/audit", params={"cursor": "not-ours"})
    assert r.status_code == 422
    assert r.json()["detail"] == "the cursor is not one this service wrote"
    from serving.api.deps import encode_cursor

    r = client.get("/v1/audit", params={"cursor": encode_cursor("asset/M-01")})
    assert r.status_code == 422
    assert r.json()["detail"] == "the cursor is not one this route wrote"
    for path in ("/v1/audit", "/v1/audit/verify"):
        r = client.get(path, headers={"X-API-Key": audited["orders"]})
        assert r.status_code == 403
        assert r.json()["detail"] == ("this route needs scope 'admin'; the key "
                                      "'test-work-orders' has work-orders")


def test_verify_reports_ok_then_names_the_record_changed_in_the_database(
    audited: dict[str, Any],
) -> None:
    client, store = audited["client"], audited["store"]
    r = client.get("/v1/audit/verify")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "records": 7}
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit SET caller = 'mallory' WHERE seq = 3"))
    r = client.get("/v1/audit/verify")
    assert r.status_code == 200
    assert r.json() == {"ok": False, "records": 2, "first_broken": 3,
                        "reason": "record 3: hash does not match its contents"}
    # the list still answers the record as it now stands
    assert walk(client, after_seq=2, limit=1)[1][0]["caller"] == "mallory"

"""The asset contract an MES integrator relies on, over a real server on SQLite and
PostgreSQL: a merge patch of one reading keeps everything else, ETag / If-Match on every
write (412, 428, races with one winner), retirement, lookup by external id and hierarchy
with cursor paging, ids with slashes and over the limit, naive times refused, and reroutes
that stay in the order's scope and skip unhealthy or stale machines."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.serving.test_api import STATE, job_order, make_key, running

TYPE = "milling_spindle"
MERGE = {"content-type": "application/merge-patch+json"}


@pytest.fixture
def api(trained: Any, store_url: str) -> Iterator[httpx.Client]:
    with running(trained.bundle, store_url) as url:
        key = make_key(store_url, "work-orders")
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
            yield client


def _asset(client: httpx.Client, equipment_id: str, **body: Any) -> dict[str, Any]:
    r = client.put(f"/v1/assets/{quote(equipment_id, safe='')}",
                   json={"asset_type": TYPE, "state": STATE, **body})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == r.json()["etag"]
    return dict(r.json())


def test_a_patch_of_one_reading_keeps_every_other_value(api: httpx.Client) -> None:
    created = _asset(api, "M-01", description="5-axis mill", site="Plant-1", area="Hall-2",
                     work_center="Cell-A", external_ids={"cmms_tag": "CMMS-1", "aas_id": "urn:x"},
                     environment={"ambient_temperature": 24.0})
    assert created["etag"] == '"r1"'
    r = api.patch("/v1/assets/M-01", json={"state": {"tool_wear": 0.06}}, headers=MERGE)
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["state"] == {**STATE, "tool_wear": 0.06}
    for key in ("description", "site", "area", "work_center", "external_ids", "environment",
                "parts_made", "device_health"):
        assert patched[key] == created[key], key
    assert patched["etag"] == '"r2"' == r.headers["ETag"]
    assert patched["state_measured_at"] > created["state_measured_at"]
    # null removes an external id and clears a level; plain application/json works too.
    r = api.patch("/v1/assets/M-01", json={"external_ids": {"aas_id": None}, "area": None,
                                           "state": {"bearing_damage": None}})
    assert r.status_code == 200, r.text
    assert r.json()["external_ids"] == {"cmms_tag": "CMMS-1"} and r.json()["area"] is None
    assert r.json()["state"]["bearing_damage"] == 0.0  # the spec's default
    assert r.json()["state"]["tool_wear"] == 0.06
    r = api.patch("/v1/assets/M-01", content=b'{"description": "x"}',
                  headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["errors"] == [{
        "field": "Content-Type", "value": "text/plain",
        "expected": "application/merge-patch+json or application/json"}]
    r = api.patch("/v1/assets/M-01", json={"state": {"tool_wear": 9.0}}, headers=MERGE)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "state.tool_wear"
    r = api.patch("/v1/assets/M-01", json={"asset_type": "pump"}, headers=MERGE)
    assert r.status_code == 409 and r.json()["errors"] == [{
        "field": "asset_type", "value": "pump", "expected": "'milling_spindle'"}]
    assert api.get("/v1/assets/M-01").json()["etag"] == '"r3"'  # the refused ones wrote nothing


def test_put_replaces_only_with_if_match_and_one_of_two_racing_writers_wins(
    api: httpx.Client,
) -> None:
    _asset(api, "M-02", external_ids={"cmms_tag": "CMMS-2"})
    r = api.put("/v1/assets/M-02", json={"asset_type": TYPE, "state": {"tool_wear": 0.1}})
    assert r.status_code == 428
    assert r.json()["detail"] == (
        "PUT replaces every key of asset 'M-02'; send If-Match \"r1\" (its current ETag, "
        "from GET) or use PATCH to change only what the body names")
    r = api.put("/v1/assets/M-02", json={"asset_type": TYPE}, headers={"If-Match": '"r7"'})
    assert r.status_code == 412 and r.json()["errors"] == [{
        "field": "If-Match", "value": '"r7"', "expected": 'the current ETag "r1"'}]
    r = api.put("/v1/assets/M-02", json={"asset_type": TYPE, "state": {"tool_wear": 0.1}},
                headers={"If-Match": '"r1"'})
    assert r.status_code == 200 and r.json()["etag"] == '"r2"'
    # A replacement: what the body leaves out takes its default.
    assert r.json()["external_ids"] == {} and r.json()["state"]["bearing_damage"] == 0.0
    assert api.put("/v1/assets/M-02", json={"asset_type": TYPE},
                   headers={"If-None-Match": "*"}).status_code == 412

    barrier = threading.Barrier(2)
    results: list[int] = []

    def write(wear: float) -> None:
        barrier.wait()
        r = api.patch("/v1/assets/M-02", json={"state": {"tool_wear": wear}},
                      headers={**MERGE, "If-Match": '"r2"'})
        results.append(r.status_code)

    threads = [threading.Thread(target=write, args=(w,)) for w in (0.11, 0.12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 412]
    final = api.get("/v1/assets/M-02").json()
    assert final["etag"] == '"r3"' and final["state"]["tool_wear"] in (0.11, 0.12)

    # Twenty PUTs without If-Match: none silently wins.
    def put() -> int:
        return api.put("/v1/assets/M-02", json={"asset_type": TYPE}).status_code

    statuses = [put() for _ in range(20)]
    assert statuses == [428] * 20 and api.get("/v1/assets/M-02").json()["etag"] == '"r3"'


def test_retired_assets_stay_readable_and_leave_lists_orders_and_reroutes(
    api: httpx.Client,
) -> None:
    for m in ("R-1", "R-2"):
        _asset(api, m, work_center="Cell-R")
    r = api.delete("/v1/assets/R-2")
    assert r.status_code == 200 and r.json()["retired_at"] is not None
    retired_at = r.json()["retired_at"]
    assert api.delete("/v1/assets/R-2").json() == r.json()  # retiring again changes nothing
    assert api.get("/v1/assets/R-2").json()["retired_at"] == r.json()["retired_at"]
    listed = [a["equipment_id"] for a in api.get("/v1/assets").json()["assets"]]
    assert "R-2" not in listed and "R-1" in listed
    everything = api.get("/v1/assets", params={"include_retired": "true"}).json()
    assert "R-2" in [a["equipment_id"] for a in everything["assets"]]
    r = api.post("/v1/work-orders/WO-R/assessment", json=job_order("R-2"))
    assert r.status_code == 409
    assert r.json()["detail"] == f"asset 'R-2' was retired at {retired_at}"
    assert api.patch("/v1/assets/R-2", json={"description": "x"}).status_code == 409
    a = api.post("/v1/work-orders/WO-R1/assessment", json=job_order("R-1")).json()
    assert a["reroute"]["considered"] == [] and a["reroute"]["excluded"] == []


def test_assets_are_found_by_external_id_and_hierarchy_one_page_at_a_time(
    api: httpx.Client,
) -> None:
    for n in range(7):
        _asset(api, f"L-{n}", site="P1", work_center="Cell-A" if n < 5 else "Cell-B",
               external_ids={"cmms_tag": f"C-{n}", "aas_id": f"urn:aas:{n}"})
    (hit,) = api.get("/v1/assets", params={"cmms_tag": "C-3"}).json()["assets"]
    assert hit["equipment_id"] == "L-3"
    (hit,) = api.get("/v1/assets", params={"aas_id": "urn:aas:6"}).json()["assets"]
    assert hit["equipment_id"] == "L-6"
    (hit,) = api.get("/v1/assets", params={"external_id": "cmms_tag:C-1"}).json()["assets"]
    assert hit["equipment_id"] == "L-1"
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"cell": "Cell-A", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = api.get("/v1/assets", params=params).json()
        seen += [a["equipment_id"] for a in body["assets"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"L-{n}" for n in range(5)] and pages == 3
    r = api.get("/v1/assets", params={"cmms": "C-1"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.cmms"
    r = api.get("/v1/assets", params={"cursor": "not-ours"})
    assert r.status_code == 422 and r.json()["errors"] == [{
        "field": "query.cursor", "value": "not-ours",
        "expected": "the next_cursor of a previous page"}]
    r = api.patch("/v1/assets/L-0", json={"external_ids": {"cmms_tag": "C-4"}})
    assert r.status_code == 409 and r.json()["errors"] == [{
        "field": "external_ids.cmms_tag", "value": "C-4",
        "expected": "an id no other asset has ('C-4' is 'L-4''s)"}]


def test_ids_as_an_mes_sends_them_round_trip_and_long_ones_are_refused_everywhere(
    api: httpx.Client,
) -> None:
    sap = "4711/0010"
    unicode = "Fräse.Nord-α"
    for equipment in (sap, unicode):
        assert _asset(api, equipment)["equipment_id"] == equipment
        assert api.get(f"/v1/assets/{quote(equipment, safe='')}").json()[
            "equipment_id"] == equipment
    # A slash sent as is reaches the same asset.
    assert api.get(f"/v1/assets/{sap}").json()["equipment_id"] == sap
    order = "WO/2026/0815"
    r = api.post(f"/v1/work-orders/{quote(order, safe='')}/assessment", json=job_order(sap))
    assert r.status_code == 200, r.text
    assert r.json()["job_order_id"] == order and r.json()["equipment_id"] == sap
    r = api.post(f"/v1/work-orders/{quote(order, safe='')}/completion",
                 json={"equipment_id": sap, "parts_made": 3})
    assert r.status_code == 200, r.text
    assert api.get(f"/v1/work-orders/{quote(order, safe='')}").json()["job_order_id"] == order
    subjects = {e["subject"] for e in api.get("/v1/events", params={"limit": 1000}).json()[
        "events"]}
    assert {f"work-order/{order}", f"asset/{sap}"} <= subjects

    long_id = "M" * 129
    tries = [
        ("PUT", f"/v1/assets/{long_id}", {"asset_type": TYPE}),
        ("PATCH", f"/v1/assets/{long_id}", {"description": "x"}),
        ("GET", f"/v1/assets/{long_id}", None),
        ("DELETE", f"/v1/assets/{long_id}", None),
        ("POST", f"/v1/work-orders/{long_id}/assessment", job_order(sap)),
        ("POST", f"/v1/work-orders/{long_id}/completion", {"equipment_id": sap,
                                                           "parts_made": 1}),
        ("GET", f"/v1/work-orders/{long_id}", None),
        ("POST", "/v1/work-orders/WO-L/assessment", job_order(long_id)),
    ]
    for method, path, body in tries:
        r = api.request(method, path, json=body)
        assert r.status_code == 422, (method, path, r.text)
        (err,) = r.json()["errors"]
        assert err["field"] in ("path.equipment_id", "path.job_order_id", "equipment_id"), err
        assert err["expected"] == "String should have at most 128 characters"
        # The connection stays usable.
        assert api.get("/healthz").status_code == 200


def test_naive_times_are_refused_and_every_time_answered_has_an_offset(
    api: httpx.Client,
) -> None:
    r = api.put("/v1/assets/T-1", json={"asset_type": TYPE,
                                         "state_measured_at": "2026-12-06T08:00:00"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "state_measured_at", "value": "2026-12-06T08:00:00",
                                   "expected": "Input should have timezone info"}]
    a = _asset(api, "T-1", state_measured_at="2026-12-06T08:00:00+01:00")
    assert a["state_measured_at"] == "2026-12-06T07:00:00+00:00"
    body = {**job_order("T-1"), "start_time": "2026-12-06T09:00:00"}
    r = api.post("/v1/work-orders/WO-T/assessment", json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "start_time"
    body["start_time"] = "2026-12-06T09:00:00Z"
    r = api.post("/v1/work-orders/WO-T/assessment", json=body)
    assert r.status_code == 200
    assert datetime.fromisoformat(r.json()["assessed_at"]).utcoffset() == timedelta(0)


def test_reroutes_stay_in_scope_and_say_which_machines_they_left_out(
    api: httpx.Client,
) -> None:
    old = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    _asset(api, "A-1", site="P1", area="H1", work_center="Cell-A")
    _asset(api, "A-2", site="P1", area="H1", work_center="Cell-A")
    _asset(api, "A-3", site="P1", area="H1", work_center="Cell-A", state_measured_at=old)
    _asset(api, "A-4", site="P1", area="H1", work_center="Cell-A", device_health="FAILURE")
    _asset(api, "B-1", site="P1", area="H1", work_center="Cell-B")
    _asset(api, "X-1")  # outside any hierarchy
    a = api.post("/v1/work-orders/WO-S1/assessment", json=job_order("A-1")).json()
    assert a["reroute"]["requirements"] == [{"site": "P1", "area": "H1",
                                              "work_center": "Cell-A"}]
    assert a["reroute"]["considered"] == ["A-2"]
    excluded = {e["equipment_id"]: (e["reason"], e["detail"]) for e in a["reroute"]["excluded"]}
    assert excluded["A-4"] == ("UNHEALTHY", "device health FAILURE (NE 107)")
    assert excluded["A-3"][0] == "STATE_STALE" and excluded["A-3"][1].endswith("more than 24 h ago")
    assert set(excluded) == {"A-3", "A-4"}
    for alt in a["decision"].get("alternates", []):
        assert alt["equipment_id"] in a["reroute"]["considered"]
    body = {**job_order("A-1"), "equipment_requirements": [{"work_center": "Cell-B"},
                                                           {"equipment_id": "X-1"}]}
    a = api.post("/v1/work-orders/WO-S2/assessment", json=body).json()
    assert a["reroute"]["considered"] == ["B-1", "X-1"] and a["reroute"]["excluded"] == []
    a = api.post("/v1/work-orders/WO-S3/assessment", json=job_order("X-1")).json()
    assert a["reroute"]["considered"] == []  # other machines outside a hierarchy: none


def test_a_method_a_path_does_not_serve_is_a_405_naming_those_it_does(
    api: httpx.Client,
) -> None:
    r = api.post("/v1/assets/M-01", json={})
    assert r.status_code == 405 and r.headers["Allow"] == "DELETE, GET, PATCH, PUT"
    assert r.headers["content-type"] == "application/problem+json"
    r = api.delete("/v1/assets")
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
    r = api.get("/v1/work-orders/WO-1/assessment")
    # GET of a work order id that ends in /assessment: the history route answers (404).
    assert r.status_code == 404


def test_each_machine_keeps_its_own_constants_and_an_assessment_uses_them(
        api: httpx.Client) -> None:
    # Left out, a machine constant takes the FMU's default (the spec's default: model).
    plain = _asset(api, "M-STD")
    assert plain["machine"] == {"rated_power": 20000.0, "spindle_stiffness": 50.0,
                                "spindle_natural_frequency": 900.0}
    soft = _asset(api, "M-SOFT", machine={"spindle_stiffness": 35.0,
                                           "spindle_natural_frequency": 700.0})
    assert soft["machine"] == {"rated_power": 20000.0, "spindle_stiffness": 35.0,
                               "spindle_natural_frequency": 700.0}
    # A merge patch changes the constant it names and keeps the others and the state.
    r = api.patch("/v1/assets/M-SOFT", json={"machine": {"rated_power": 18000.0}}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["machine"] == {**soft["machine"], "rated_power": 18000.0}
    assert r.json()["state"] == soft["state"]
    r = api.patch("/v1/assets/M-SOFT", json={"machine": {"spindle_stiffness": None}},
                  headers=MERGE)
    assert r.json()["machine"]["spindle_stiffness"] == 50.0  # null: back to the default
    # An unknown constant or one out of range is refused by name, and changes nothing.
    for bad, expected in (({"spindle_stifness": 40.0}, "a machine input of milling_spindle"),
                          ({"spindle_stiffness": 500.0}, "")):
        r = api.patch("/v1/assets/M-SOFT", json={"machine": bad}, headers=MERGE)
        assert r.status_code == 422, r.text
        err = r.json()["errors"][0]
        assert err["field"] == f"machine.{next(iter(bad))}"
        assert expected in err["expected"]
    assert api.get("/v1/assets/M-SOFT").json()["machine"]["rated_power"] == 18000.0
    # The assessment runs the order with each machine's constants: the chatter limit and
    # the power rating differ between the two at the same cutting data.
    answers = {}
    for eq in ("M-STD", "M-SOFT"):
        r = api.post(f"/v1/work-orders/WO-MC-{eq}/assessment", json=job_order(eq))
        assert r.status_code == 200, r.text
        answers[eq] = r.json()["predicted"]
    std, soft_p = answers["M-STD"], answers["M-SOFT"]
    assert std["stability_margin"]["mean"] != soft_p["stability_margin"]["mean"]
    # 18 kW instead of 20: the same cut takes a larger share of the S1 rating.
    assert std["spindle_rating_load_max"]["mean"] < soft_p["spindle_rating_load_max"]["mean"]

"""A completion is an ISA-95 job response, over a real server: its id, actual times,
good / scrap / rework counts, per-part samples reduced as each characteristic's KPI
reduces its trajectory, tool changes, and every change of the asset's state with its
cause, checked against the surrogate's own prediction at the parts made."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serving.test_api import ORDER, STATE, job_order, make_key, running

TYPE = "milling_spindle"


@pytest.fixture(scope="module")
def api(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    db = f"sqlite:///{tmp_path_factory.mktemp('job-response') / 'twin.db'}"
    with running(trained.bundle, db) as url:
        key = make_key(db, "work-orders", "predict")
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
            yield client


def _predict(api: httpx.Client, asset: dict[str, Any], quantity: int,
             **order: Any) -> dict[str, Any]:
    row = {**ORDER, **order, **asset["state"], **asset["environment"], "quantity": quantity}
    r = api.post("/v1/models/milling_spindle/predict", json={"rows": [row]})
    assert r.status_code == 200, r.text
    return dict(r.json()["rows"][0]["kpis"])


def test_a_job_response_records_counts_samples_tools_and_each_state_change(
    api: httpx.Client,
) -> None:
    assert api.put("/v1/assets/J-1", json={"asset_type": TYPE, "state": STATE}).status_code == 200
    asset = api.get("/v1/assets/J-1").json()
    assert api.post("/v1/work-orders/WO-J1/assessment",
                    json=job_order("J-1", 30)).status_code == 200
    walls = [31.0, 44.5, 38.0]
    ra = [(0.9, "2026-12-06T10:00:00+00:00"), (1.4, "2026-12-06T10:20:00+00:00"),
          (1.1, "2026-12-06T10:10:00+00:00")]
    r = api.post("/v1/work-orders/WO-J1/completion", json={
        "equipment_id": "J-1", "job_response_id": "4711/0010/JR", "result": "Successful",
        "actual_start_time": "2026-12-06T09:00:00+01:00",
        "actual_end_time": "2026-12-06T10:30:00Z",
        "good_quantity": 26, "scrap_quantity": 3, "rework_quantity": 1,
        "samples": [{"characteristic_id": "WALL", "value": v, "unit": "um",
                     "part_id": f"SN-{i}"} for i, v in enumerate(walls)]
        + [{"characteristic_id": "RA", "value": v, "unit": "um", "measured_at": at}
           for v, at in ra],
        "tools": {"mounted": ["T-12-0001"], "changes": []}})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["job_response_id"] == "4711/0010/JR" and done["result"] == "Successful"
    assert done["actual_start_time"] == "2026-12-06T09:00:00+01:00"
    assert done["actual_end_time"] == "2026-12-06T10:30:00+00:00"
    assert done["quantities"] == {"total": 30, "good": 26, "scrap": 3, "rework": 1}
    kpis = _predict(api, asset, 30)
    by_char = {res["characteristic_id"]: res for res in done["residuals"]}
    # wall_error_max and surface_roughness_max are maxima: the largest sample counts.
    assert by_char["WALL"]["measured"] == max(walls)
    assert by_char["WALL"]["residual"] == pytest.approx(max(walls)
                                                        - kpis["wall_error_max"]["mean"])
    assert by_char["RA"]["measured"] == 1.4
    changes = {c["input"]: c for c in done["state_changes"]}
    assert changes["tool_wear"]["cause"] == "predicted"
    assert changes["tool_wear"]["to"] == pytest.approx(kpis["tool_wear_end"]["mean"])
    assert changes["bearing_damage"]["to"] == pytest.approx(
        STATE["bearing_damage"] + kpis["bearing_damage_order"]["mean"])
    assert changes["warmup"] == {"input": "warmup", "from": 0.5, "to": 1.0, "cause": "run",
                                 "detail": "the policy's value after a run"}
    after = api.get("/v1/assets/J-1").json()
    assert after["parts_made"] == 30 and after["state"] == done["state_after"]
    assert after["state_measured_at"] == "2026-12-06T10:30:00+00:00"


def test_a_tool_change_reported_in_tools_resets_the_state_as_maintenance(
    api: httpx.Client,
) -> None:
    api.put("/v1/assets/J-2", json={"asset_type": TYPE, "state": STATE})
    api.post("/v1/work-orders/WO-J2/assessment", json=job_order("J-2", 20))
    r = api.post("/v1/work-orders/WO-J2/completion", json={
        "equipment_id": "J-2", "good_quantity": 20,
        "tools": {"mounted": ["T-1"], "changes": [
            {"removed": "T-1", "mounted": "T-2", "reason": "worn",
             "at": "2026-12-06T10:00:00Z"}]}})
    assert r.status_code == 200, r.text
    tool = [c for c in r.json()["state_changes"] if c["input"] == "tool_wear"]
    assert [c["cause"] for c in tool] == ["predicted", "maintenance"]
    assert tool[-1]["to"] == 0.0 and tool[-1]["detail"] == "replace_tool reported done"
    assert r.json()["state_after"]["tool_wear"] == 0.0


def test_a_reset_only_the_model_made_is_reported_as_such(api: httpx.Client) -> None:
    """A worn tool on a long order: the control's tool-life management changes it during
    the order in the model's run, so the predicted end wear is below the start; the
    completion says the drop is the model's, not something reported."""
    worn = {**STATE, "tool_wear": 0.22}
    api.put("/v1/assets/J-3", json={"asset_type": TYPE, "state": worn})
    asset = api.get("/v1/assets/J-3").json()
    kpis = _predict(api, asset, 250)
    assert kpis["tool_wear_end"]["mean"] < 0.22  # the premise: the model changes the tool
    api.post("/v1/work-orders/WO-J3/assessment", json=job_order("J-3", 250))
    r = api.post("/v1/work-orders/WO-J3/completion",
                 json={"equipment_id": "J-3", "good_quantity": 250})
    (tool,) = [c for c in r.json()["state_changes"] if c["input"] == "tool_wear"]
    assert tool["cause"] == "predicted" and tool["from"] == 0.22
    assert tool["detail"] == (
        "tool_wear_end predicted at 250 parts: below the start value, so the model's run "
        "resets it during the order (a change the machine makes by itself); report it in "
        "the completion if it did not happen")


def test_inconsistent_job_responses_are_refused_with_the_reason(api: httpx.Client) -> None:
    api.put("/v1/assets/J-4", json={"asset_type": TYPE, "state": STATE})
    api.post("/v1/work-orders/WO-J4/assessment", json=job_order("J-4", 10))
    cases = [
        ({"parts_made": 10, "good_quantity": 8}, "Value error, parts_made 10 is not good + "
                                                 "scrap + rework = 8"),
        ({"scrap_quantity": 2}, "Value error, good_quantity is needed beside scrap and "
                                "rework quantities"),
        ({"good_quantity": 5, "actual_start_time": "2026-12-06T11:00:00Z",
          "actual_end_time": "2026-12-06T10:00:00Z"},
         "Value error, actual_start_time is after actual_end_time"),
    ]
    for extra, message in cases:
        r = api.post("/v1/work-orders/WO-J4/completion", json={"equipment_id": "J-4", **extra})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["expected"] == message
    r = api.post("/v1/work-orders/WO-J4/completion", json={
        "equipment_id": "J-4", "good_quantity": 10,
        "measured_quality": [{"characteristic_id": "WALL", "value": 30.0}],
        "samples": [{"characteristic_id": "WALL", "value": 31.0}]})
    assert r.status_code == 422 and r.json()["errors"] == [{
        "field": "samples", "value": "WALL",
        "expected": "samples or a measured_quality value, not both"}]
    # Nothing was recorded: the order can still be completed.
    r = api.post("/v1/work-orders/WO-J4/completion",
                 json={"equipment_id": "J-4", "good_quantity": 10})
    assert r.status_code == 200

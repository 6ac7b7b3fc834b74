"""The events of the MES contract over a real uvicorn server and a real store: an
advisory raised once, kept through what-ifs and cleared by the maintenance it asked for;
threshold crossings of the NAMUR NE 107 device health; drift of the residuals; the
Prometheus counters; and the decision events on the MQTT broker.

Each test starts its own server on a store of its own (the advisory lifecycle also on
PostgreSQL), so counters, per-subject sequence numbers and the residual window start
from nothing and every number asserted here is exact."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from math import comb
from typing import Any
from urllib.parse import quote

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.serving._server import serving
from tests.serving.test_api import ORDER, ROUTE_PATH, STATE, job_order, make_key
from tests.serving.test_mqtt import (
    BROKER,
    QUIET_S,
    WAIT_S,
    _require,
    clear_retained,
    subscribe,
)

MODEL = "milling_spindle"
RAISED = "io.assettwin.advisory.raised"
CLEARED = "io.assettwin.advisory.cleared"
DECISION = "io.assettwin.decision.issued"
UPDATED = "io.assettwin.asset.updated"
CROSSED = "io.assettwin.asset.threshold_crossed"
DRIFT = "io.assettwin.drift.detected"
ACTIVATED = "io.assettwin.model.activated"
# A tool at 0.245 mm VB: inside the DOE's [0, 0.25] mm, and 82 % of the policy's 0.3 mm
# limit (maintenance_required_at 0.8), so the asset is MAINTENANCE_REQUIRED.
WORN = {**STATE, "tool_wear": 0.245}
WEAR_REASON = ("tool_wear_end reaches 0.3 mm during the order with probability {p:.2f}: "
               "ISO 8688-2 tool-life criterion VB = 0.3 mm")


def _settings(trained: Any, db_url: str, **kw: Any) -> Any:
    from serving._settings import Settings

    return Settings(**{"database_url": db_url, "models": [str(trained.bundle)],
                       "dev_mode": True, "webhooks": False, **kw})


@contextmanager
def _client(trained: Any, db_url: str, **kw: Any) -> Iterator[httpx.Client]:
    with serving(_settings(trained, db_url, **kw)) as url, httpx.Client(
            base_url=url, timeout=60) as c:
        yield c


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _register(c: httpx.Client, eq: str, state: dict[str, float]) -> dict[str, Any]:
    return _ok(c.put(f"/v1/assets/{eq}", json={
        "asset_type": MODEL, "state": state, "environment": {"ambient_temperature": 22.0}}))


def _assess(c: httpx.Client, wo: str, body: dict[str, Any]) -> dict[str, Any]:
    return _ok(c.post(f"/v1/work-orders/{wo}/assessment", json=body))


def _complete(c: httpx.Client, wo: str, eq: str, parts: int = 10, **kw: Any) -> dict[str, Any]:
    return _ok(c.post(f"/v1/work-orders/{wo}/completion",
                      json={"equipment_id": eq, "parts_made": parts, **kw}))


def _events(c: httpx.Client, subject: str | None = None,
            types: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = _ok(c.get("/v1/events", params={"limit": 1000}))["events"]
    return [e for e in events if (subject is None or e["subject"] == subject)
            and (types is None or e["type"] in types)]


def _worn_order(eq: str, start: datetime | None = None, **override: Any) -> dict[str, Any]:
    """6 parts with the control's tool-life management off: the worn tool cuts on and
    passes 0.3 mm VB during the order (tool_wear_end reached with probability 1), short
    of its fracture wear (spec v8: 0.4-0.6 mm by diameter), which 10 parts would near."""
    body = job_order(eq, 6, **{"replace_worn_tool": False, **override})
    if start is not None:
        body["start_time"] = start.isoformat()
    return body


def _seqs(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["sequence"]) for e in events]


# ---- 1. the advisory lifecycle ---------------------------------------------------------


def test_an_advisory_is_raised_once_survives_what_ifs_and_clears_with_the_tool_change(
    trained: Any, store_url: str,
) -> None:
    eq, subject = "M-ADV", "asset/M-ADV"
    start = datetime(2030, 1, 7, 6, 0, tzinfo=UTC)
    with _client(trained, store_url) as c:
        registered = _register(c, eq, WORN)
        assert registered["device_health"] == "MAINTENANCE_REQUIRED"
        assert registered["advisories"] == [] and registered["revision"] == 1

        first = _assess(c, "WO-A1", _worn_order(eq, start))
        assert first["decision"]["type"] != "UNDECIDED"
        (adv,) = first["maintenance"]["advisories"]
        assert (adv["kpi"], adv["action"]) == ("tool_wear_end", "replace_tool")
        assert adv["p_reached"] >= 0.2  # the policy's p_advisory
        assert adv["reason"] == WEAR_REASON.format(p=adv["p_reached"])
        # Due at the p10 of the remaining useful life, from the order's start time.
        rul = first["maintenance"]["remaining_useful_life"]
        assert adv["due_in_parts"] == rul["p10"] and 1 <= rul["p10"] <= 10
        cycle_s = first["predicted"]["part_cycle_time"]["mean"]
        assert adv["due_by"] == (start + timedelta(seconds=rul["p10"] * cycle_s)).isoformat()

        raised = _events(c, subject)
        assert [e["type"] for e in raised] == [UPDATED, RAISED] and _seqs(raised) == [1, 2]
        stored = {**adv, "job_order_id": "WO-A1", "raised_at": first["assessed_at"]}
        assert raised[1]["data"] == {"equipment_id": eq, **stored}
        # The decision comes first in the outbox, on the order's own subject.
        (decision,) = _events(c, "work-order/WO-A1")
        assert decision["type"] == DECISION and decision["sequence"] == f"{1:019d}"
        assert decision["twinseq"] < raised[1]["twinseq"]
        asset = _ok(c.get(f"/v1/assets/{eq}"))
        assert asset["advisories"] == [stored] and asset["revision"] == 2

        # The same outcome an hour later: nothing new raised; the advisory keeps who
        # raised it and when, and takes the new estimate.
        later = start + timedelta(hours=1)
        second = _assess(c, "WO-A2", _worn_order(eq, later))
        (adv2,) = second["maintenance"]["advisories"]
        assert (adv2["kpi"], adv2["action"]) == ("tool_wear_end", "replace_tool")
        assert adv2["due_by"] == (later + timedelta(
            seconds=adv2["due_in_parts"] * second["predicted"]["part_cycle_time"]["mean"])
        ).isoformat()
        assert _events(c, subject) == raised
        asset = _ok(c.get(f"/v1/assets/{eq}"))
        assert asset["advisories"] == [{
            **{k: adv2[k] for k in ("kpi", "action", "due_by", "due_in_parts",
                                    "p_reached", "reason")},
            "job_order_id": "WO-A1", "raised_at": first["assessed_at"]}]

        # With the control changing worn tools, the order asks for sister tools instead
        # and no longer for a fresh tool. As a what-if (Simulation) it changes nothing;
        # nor does it out of the training domain (UNDECIDED): untrusted numbers neither
        # clear nor raise an advisory.
        what_if = _worn_order(eq, replace_worn_tool=True)
        sim = _assess(c, "WO-A3", {**what_if, "execution_mode": "Simulation"})
        assert [(a["kpi"], a["action"]) for a in sim["maintenance"]["advisories"]] == [
            ("tool_changes", "stage_sister_tools")]
        ood = _assess(c, "WO-A4", _worn_order(eq, replace_worn_tool=True,
                                              tool_overhang=124.0))
        assert ood["decision"]["reason_codes"] == ["OUT_OF_DOMAIN"]
        assert ood["maintenance"]["advisories"] != second["maintenance"]["advisories"]
        assert _ok(c.get(f"/v1/assets/{eq}")) == asset
        assert _events(c, subject) == raised

        # The MES changes the tool after the order: the advisory is cleared, and the
        # fresh tool takes the asset back to NORMAL.
        done = _complete(c, "WO-A2", eq, tool_changed=True)
        assert done["advisories_cleared"] == [{"kpi": "tool_wear_end",
                                               "action": "replace_tool"}]
        assert done["state_after"]["tool_wear"] == 0.0
        assert done["device_health"] == "NORMAL"
        after = _events(c, subject)
        assert after[:2] == raised
        assert [e["type"] for e in after[2:]] == [CROSSED, CLEARED]
        assert _seqs(after) == [1, 2, 3, 4]
        assert after[2]["data"]["from"] == "MAINTENANCE_REQUIRED"
        assert after[2]["data"]["to"] == "NORMAL"
        assert after[3]["data"] == {
            "equipment_id": eq, "job_order_id": "WO-A2", "action": "replace_tool",
            "kpi": "tool_wear_end", "raised_by": "WO-A1", "raised_at": first["assessed_at"],
            "cleared_because": "maintenance_done"}
        asset = _ok(c.get(f"/v1/assets/{eq}"))
        assert asset["advisories"] == [] and asset["device_health"] == "NORMAL"


# ---- 2. device health thresholds, and actions without a remedy -------------------------


@pytest.fixture(scope="module")
def shop(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One server on SQLite for the tests below that use assets of their own."""
    db = f"sqlite:///{tmp_path_factory.mktemp('lifecycle') / 'twin.db'}"
    with _client(trained, db) as c:
        yield c


def test_threshold_crossed_follows_each_change_of_device_health(shop: httpx.Client) -> None:
    c, eq, subject = shop, "M-TH", "asset/M-TH"
    assert _register(c, eq, STATE)["device_health"] == "NORMAL"
    steps: list[tuple[str, dict[str, Any]]] = [
        ("NORMAL", {}),  # an order without news: no event
        ("FAILURE", {"tool_broken": True}),  # broke and was not changed
        ("NORMAL", {"tool_changed": True}),
        ("MAINTENANCE_REQUIRED", {"measured_state": {"tool_wear": 0.27}}),  # 90 % of VB 0.3
        ("OFF_SPEC", {"measured_state": {"tool_wear": 0.3}}),  # the limit itself
    ]
    expected: list[dict[str, Any]] = []
    health = "NORMAL"
    for i, (to, extra) in enumerate(steps):
        wo = f"WO-TH{i}"
        _assess(c, wo, job_order(eq, 10))
        done = _complete(c, wo, eq, 5, **extra)
        assert done["device_health"] == to, (wo, done)
        if to != health:
            expected.append({"equipment_id": eq, "from": health, "to": to,
                             "health_index": done["health_index"],
                             "state": done["state_after"]})
        health = to
    assert done["health_index"] == 0.0 and done["state_after"]["tool_wear"] == 0.3
    crossed = _events(c, subject, (CROSSED,))
    assert [e["data"] for e in crossed] == expected
    assert [(d["from"], d["to"]) for d in expected] == [
        ("NORMAL", "FAILURE"), ("FAILURE", "NORMAL"), ("NORMAL", "MAINTENANCE_REQUIRED"),
        ("MAINTENANCE_REQUIRED", "OFF_SPEC")]
    # Nothing else was said about this asset but one advisory: the last order starts at
    # VB 0.27 mm, inside the training domain since the DOE draws wear up to the 0.3 mm
    # criterion, so it is assessed (not UNDECIDED) and advised its tool. Its events are
    # numbered 1, 2, 3... in order.
    every = _events(c, subject)
    assert [e["type"] for e in every] == [UPDATED, *[CROSSED] * 3, RAISED, CROSSED]
    assert _seqs(every) == [1, 2, 3, 4, 5, 6]
    assert crossed[2]["data"]["health_index"] == pytest.approx(1 - 0.27 / 0.3)
    assert _ok(c.get(f"/v1/assets/{eq}"))["device_health"] == "OFF_SPEC"


def test_an_advised_action_without_a_remedy_is_accepted_and_clears_its_advisory(
    shop: httpx.Client,
) -> None:
    c, eq, subject = shop, "M-SIS", "asset/M-SIS"
    _register(c, eq, WORN)
    a = _assess(c, "WO-S1", _worn_order(eq, replace_worn_tool=True))
    (adv,) = a["maintenance"]["advisories"]
    assert (adv["kpi"], adv["action"]) == ("tool_changes", "stage_sister_tools")
    # An action nobody advises is refused, naming the ones a completion may report.
    bad = c.post("/v1/work-orders/WO-S1/completion", json={
        "equipment_id": eq, "parts_made": 10, "maintenance_done": ["polish_spindle"]})
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{
        "field": "maintenance_done", "value": "polish_spindle",
        "expected": "one of replace_tool, stage_sister_tools, inspect_spindle_bearings, "
                    "replace_spindle_bearings"}]
    done = _complete(c, "WO-S1", eq, maintenance_done=["stage_sister_tools"])
    assert done["advisories_cleared"] == [{"kpi": "tool_changes",
                                           "action": "stage_sister_tools"}]
    # Staging sister tools is no remedy of the policy: the wear is the predicted one.
    predicted = _ok(c.post(f"/v1/models/{MODEL}/predict", json={"rows": [{
        **ORDER, **WORN, "ambient_temperature": 22.0, "replace_worn_tool": True,
        "quantity": 10}]}))["rows"][0]["kpis"]["tool_wear_end"]["mean"]
    assert done["state_after"]["tool_wear"] == predicted > 0
    # The control's tool changes leave a fresher tool than the one the order began with.
    assert predicted < 0.8 * 0.3 and done["device_health"] == "NORMAL"
    events = _events(c, subject)
    assert [e["type"] for e in events] == [UPDATED, RAISED, CROSSED, CLEARED]
    assert _seqs(events) == [1, 2, 3, 4]
    assert (events[2]["data"]["from"], events[2]["data"]["to"]) == (
        "MAINTENANCE_REQUIRED", "NORMAL")
    assert events[3]["data"]["cleared_because"] == "maintenance_done"
    assert events[3]["data"]["raised_by"] == "WO-S1"
    assert _ok(c.get(f"/v1/assets/{eq}"))["advisories"] == []


# ---- 3. drift --------------------------------------------------------------------------


def _tail(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p), written out here rather than taken from the code."""
    return sum(comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_drift_is_detected_once_when_measurements_leave_the_intervals(
    trained: Any, tmp_path: Any,
) -> None:
    from serving._settings import DEFAULT_POLICY
    from serving.domain.policy import load_policy

    rule = load_policy(DEFAULT_POLICY).completion
    assert (rule.drift_window, rule.drift_min_count, rule.drift_p_value) == (50, 20, 0.01)
    level = json.loads((trained.bundle / "signature.json").read_text())["interval"]["level"]
    assert level == 0.95
    eq = "M-DR"
    with _client(trained, f"sqlite:///{tmp_path / 'twin.db'}") as c:
        _register(c, eq, STATE)
        n = 0

        def complete(wo: str, values: Any) -> dict[str, Any]:
            """Assess and complete ``wo`` with WALL measured at ``values(prediction)``."""
            _assess(c, wo, job_order(eq, 10))
            asset = _ok(c.get(f"/v1/assets/{eq}"))
            row = {**ORDER, **asset["state"], **asset["environment"], "quantity": 10}
            p = _ok(c.post(f"/v1/models/{MODEL}/predict", json={"rows": [row]}))
            wall = p["rows"][0]["kpis"]["wall_error_max"]
            measured = values(wall)
            done = _complete(c, wo, eq, measured_quality=[
                {"characteristic_id": "WALL", "value": v, "unit": "um"} for v in measured])
            assert [r["predicted"] for r in done["residuals"]] == [wall["mean"]] * len(measured)
            assert [r["measured"] for r in done["residuals"]] == measured
            return done

        # 20 residuals at the predicted mean, five parts per order: the test runs from
        # the 20th on, and finds nothing.
        for i in range(4):
            done = complete(f"WO-IN{i}", lambda w: [w["mean"]] * 5)
            n += 5
            assert [r["inside"] for r in done["residuals"]] == [True] * 5
            assert [r["residual"] for r in done["residuals"]] == [0.0] * 5
            assert done["drift"] == []
        assert n == rule.drift_min_count
        assert _events(c, types=(DRIFT,)) == []

        # Then one part per order, far above its interval: drift on the first order at
        # which the share outside is too high for 5 % misses (p-value below 0.01).
        def far(w: dict[str, Any]) -> list[float]:
            return [w["upper"] + 10 * (w["upper"] - w["lower"]) + 100.0]

        expected_at = next(m for m in range(1, 30)
                           if _tail(m, n + m, 1 - level) < rule.drift_p_value)
        assert expected_at == 5  # 5 of 25 outside: P = 0.0072; 4 of 24: P = 0.030
        found = []
        for m in range(1, expected_at + 2):
            done = complete(f"WO-OUT{m}", far)
            assert [r["inside"] for r in done["residuals"]] == [False]
            found.append(done["drift"])
        drift = {"kpi": "wall_error_max", "characteristic_id": "WALL", "n": n + expected_at,
                 "outside": expected_at, "expected_share": 1 - level,
                 "p_value": pytest.approx(_tail(expected_at, n + expected_at, 1 - level),
                                          rel=1e-12),
                 "drift": True}
        # Once, when it starts: the order after it is still drifting, and says nothing.
        assert found == [[]] * (expected_at - 1) + [[drift], []]
        (event,) = _events(c, types=(DRIFT,))
        assert event["subject"] == f"model/{MODEL}" and event["sequence"] == f"{1:019d}"
        assert event["data"] == {"model": MODEL, **drift}
        assert event["data"]["p_value"] < rule.drift_p_value


# ---- 4. Prometheus metrics -------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _by(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
        ) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_metrics_count_predictions_decisions_domain_requests_and_the_backlog(
    trained: Any, tmp_path: Any,
) -> None:
    db = f"sqlite:///{tmp_path / 'twin.db'}"
    predict_path = f"/v1/models/{MODEL}/predict"
    assess_path = "/v1/work-orders/{job_order_id}/assessment"
    with serving(_settings(trained, db, dev_mode=False)) as url:
        keys = {k: make_key(db, k) for k in ("predict", "work-orders", "admin")}

        def client(scope: str | None) -> httpx.Client:
            headers = {"X-API-Key": keys[scope]} if scope else {}
            return httpx.Client(base_url=url, headers=headers, timeout=60)

        with client(None) as anon, client("predict") as predict, client(
                "work-orders") as orders, client("admin") as admin:
            row = {**ORDER, **STATE, "ambient_temperature": 22.0, "quantity": 10}
            rows = [row, {**row, "quantity": 30}, {**row, "tool_wear": 0.9}]  # 0.9: out
            assert anon.post(predict_path, json={"rows": rows}).status_code == 401
            first = _ok(predict.post(predict_path, json={"rows": rows}))
            assert [r["in_domain"] for r in first["rows"]] == [True, True, False]
            # Through the FastAPI route instead of the fast path.
            assert predict.post(ROUTE_PATH, json={"rows": rows[:2]}).status_code == 200

            assert orders.put("/v1/assets/M-MET", json={
                "asset_type": MODEL, "state": STATE}).status_code == 200
            old = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
            assert orders.put("/v1/assets/M-OLD", json={
                "asset_type": MODEL, "state": STATE,
                "state_measured_at": old}).status_code == 200
            # Every decision from here on waits for this hook: no dispatcher runs.
            assert admin.post("/v1/webhooks", json={
                "url": "http://127.0.0.1:9/hook",
                "event_types": [DECISION]}).status_code == 201
            kinds = [_ok(orders.post(f"/v1/work-orders/WO-M{i}/assessment", json=body))
                     ["decision"]["type"] for i, body in enumerate([
                         job_order("M-MET", 10), job_order("M-MET", 40),
                         _worn_order("M-MET"), job_order("M-OLD", 10)])]
            assert kinds[3] == "UNDECIDED"  # stale state
            bad = job_order("M-MET")
            bad["job_order_parameters"][2]["unit"] = "m/s"  # not a rotational speed
            assert orders.post("/v1/work-orders/WO-BAD/assessment", json=bad).status_code == 422
            assert orders.post("/v1/work-orders/WO-404/assessment",
                               json=job_order("M-NONE")).status_code == 404
            assert anon.get("/v1/nowhere").status_code == 404

            samples = _samples(anon.get("/metrics").text)
            scraped_again = _samples(anon.get("/metrics").text)

    model = (("model", MODEL),)
    assert _by(samples, "twin_predictions_total") == {model: 5.0}
    assert _by(samples, "twin_out_of_domain_total") == {model: 1.0}
    assert _by(samples, "twin_decisions_total") == {
        (("type", k),): float(kinds.count(k)) for k in set(kinds)}

    def req(method: str, route: str, status: int) -> tuple[tuple[str, str], ...]:
        return (("method", method), ("route", route), ("status", str(status)))

    assert _by(samples, "twin_http_requests_total") == {
        req("POST", predict_path, 401): 1.0,
        req("POST", predict_path, 200): 2.0,
        req("PUT", "/v1/assets/{equipment_id}", 200): 2.0,
        req("POST", "/v1/webhooks", 201): 1.0,
        req("POST", assess_path, 200): 4.0,
        req("POST", assess_path, 422): 1.0,
        req("POST", assess_path, 404): 1.0,
        req("GET", "unmatched", 404): 1.0,
    }
    latency = _by(samples, "twin_http_request_seconds_count")
    assert latency[(("route", assess_path),)] == 6.0
    assert latency[(("route", predict_path),)] == 3.0
    # Four decisions, each a pending delivery to the hook.
    assert _by(samples, "twin_webhook_backlog") == {(): 4.0}
    # A scrape is counted once it is answered: the second one sees the first.
    assert _by(scraped_again, "twin_http_requests_total")[req("GET", "/metrics", 200)] == 1.0
    assert ("twin_http_requests_total", req("GET", "/metrics", 200)) not in samples


# ---- 5. MQTT ---------------------------------------------------------------------------


def test_the_service_publishes_its_events_to_the_mqtt_broker(
    trained: Any, tmp_path: Any,
) -> None:
    """Events under each asset's place in the ISA-95 tree, the envelopes /v1/events
    serves; a late subscriber gets each asset's state as GET /v1/assets/{id} answers it."""
    _require(*BROKER, "MQTT broker")
    root = f"asset-twin-test-{uuid.uuid4().hex[:10]}"  # retained messages of this test only
    cells = {"4711/0010": ("plant-1", "milling", "cell-A"), "M+1": ("plant-1", "milling",
                                                                    "cell-B")}
    a = f"{root}/plant-1/milling/cell-A/4711%2F0010/twin"
    b = f"{root}/plant-1/milling/cell-B/M%2B1/twin"
    live = subscribe(f"{root}/#", root)
    try:
        with _client(trained, f"sqlite:///{tmp_path / 'twin.db'}",
                     mqtt_url=f"mqtt://{BROKER[0]}:{BROKER[1]}", mqtt_topic_root=root) as c:
            for (eq, (site, area, work_center)), state in zip(cells.items(), (WORN, STATE),
                                                              strict=True):
                _ok(c.put(f"/v1/assets/{quote(eq, safe='')}", json={
                    "asset_type": MODEL, "state": state, "site": site, "area": area,
                    "work_center": work_center,
                    "environment": {"ambient_temperature": 22.0}}))
            _assess(c, "WO-1", _worn_order("4711/0010"))
            _assess(c, "WO-2", job_order("M+1", 10))
            _ok(c.post(f"/v1/models/{MODEL}/reload"))
            events = _events(c)
            assert [(e["type"], e["subject"]) for e in events] == [
                (UPDATED, "asset/4711/0010"), (UPDATED, "asset/M+1"),
                (DECISION, "work-order/WO-1"), (RAISED, "asset/4711/0010"),
                (DECISION, "work-order/WO-2"), (ACTIVATED, f"model/{MODEL}")]
            got: list[mqtt.MQTTMessage] = []
            while sum(not m.topic.endswith("/state") for m in got) < len(events):
                got.append(live.messages.get(timeout=WAIT_S))
            got += live.drain(QUIET_S)  # the last round's states

            published = [m for m in got if not m.topic.endswith("/state")]
            assert [m.topic for m in published] == [
                f"{a}/asset-updated", f"{b}/asset-updated", f"{a}/decision-issued",
                f"{a}/advisory-raised", f"{b}/decision-issued",
                f"{root}/_models/{MODEL}/twin/model-activated"]
            assert [json.loads(m.payload) for m in published] == events
            # Each event's state after it, the last one the asset as it is now.
            assert {m.topic for m in got if m.topic.endswith("/state")} == {
                f"{a}/state", f"{b}/state"}

            def asset(eq: str) -> dict[str, Any]:
                return _ok(c.get(f"/v1/assets/{quote(eq, safe='')}"))

            late = subscribe(f"{root}/+/+/+/+/twin/state", root)
            try:
                retained = late.drain()
                assert sorted((m.topic, m.retain) for m in retained) == [
                    (f"{a}/state", True), (f"{b}/state", True)]
                for m in retained:
                    state = json.loads(m.payload)
                    assert datetime.fromisoformat(state.pop("time")).utcoffset() is not None
                    assert state == asset(state["equipment_id"])
                # A reading later: the subscriber gets the asset's new state.
                before = asset("M+1")
                r = c.patch(f"/v1/assets/{quote('M+1', safe='')}",
                            json={"state": {"tool_wear": 0.1}},
                            headers={"Content-Type": "application/merge-patch+json",
                                     "If-Match": before["etag"]})
                after = _ok(r)
                (changed,) = late.drain()
                state = json.loads(changed.payload)
                del state["time"]
                assert changed.topic == f"{b}/state"
                assert state == after == asset("M+1")
                assert (state["revision"], state["state"]["tool_wear"]) == (
                    before["revision"] + 1, 0.1)
            finally:
                late.close()
    finally:
        live.close()
        assert clear_retained(root) == [f"{a}/state", f"{b}/state"]

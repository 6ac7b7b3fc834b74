"""The served OpenAPI document (``serving.api.openapi``), as the app serving the trained
test bundle builds it: Redocly-lint clean under the committed ``redocly.yaml``, security
on every operation with the scope its route checks, shared enums named once, the 5xx
problems and the headers answers carry, servers, and a webhook per event type.

The lint runs the Redocly CLI that ``make setup`` installs into ``.tools/redocly`` (no
global install): without it the test skips here and fails on CI (``CI`` set)."""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDOCLY = ROOT / ".tools" / "redocly" / "node_modules" / ".bin" / "redocly"
UNAUTHENTICATED = {"/healthz", "/readyz", "/metrics"}
NE107 = ["NORMAL", "MAINTENANCE_REQUIRED", "OFF_SPEC", "CHECK_FUNCTION", "FAILURE"]
SIGNATURE_HEADERS = ["webhook-id", "webhook-timestamp", "webhook-signature"]


def build(trained: Any, tmp_path: Path, **settings: Any) -> Any:
    from serving._settings import Settings
    from serving.app import create_app

    return create_app(Settings(database_url=f"sqlite:///{tmp_path / 'twin.db'}",
                               models=[str(trained.bundle)], **settings))


@pytest.fixture
def doc(trained: Any, tmp_path: Path) -> dict[str, Any]:
    document: dict[str, Any] = build(trained, tmp_path).openapi()
    return document


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_redocly_lint_is_clean(doc: dict[str, Any], tmp_path: Path) -> None:
    if not REDOCLY.exists():
        reason = f"the Redocly CLI is not installed at {REDOCLY} (make setup installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    target = tmp_path / "openapi.json"
    target.write_text(json.dumps(doc), encoding="utf-8")
    run = subprocess.run(
        [str(REDOCLY), "lint", str(target), "--config", str(ROOT / "redocly.yaml"),
         "--format", "json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    report = json.loads(run.stdout)
    found = [(p["ruleId"], p["severity"], p["location"][0]["pointer"], p["message"])
             for p in report["problems"]]
    assert found == []
    assert run.returncode == 0, run.stderr


def test_every_operation_names_the_scope_its_route_checks(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "An API key (twk_<id>_<secret>, from `twin keys create`). Scopes: "
                       "predict, work-orders, admin (admin implies the others)."}
    assert doc["components"]["securitySchemes"]["bearer"]["type"] == "http"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    scopes = {}
    for path, method, op in operations(doc):
        if path in UNAUTHENTICATED:
            assert op["security"] == [], path
            continue
        (key,), (bearer,) = (r.items() for r in op["security"])
        assert key[0] == "apiKey" and bearer[0] == "bearer"
        assert key[1] == bearer[1] and len(key[1]) == 1, (method, path)
        scopes[(method, path)] = key[1][0]
        # the credentials are the security schemes, not a parameter of every call
        names = {p["name"].lower() for p in op.get("parameters", [])}
        assert not names & {"authorization", "x-api-key"}, (method, path)
    assert scopes[("get", "/v1/models")] == "predict"
    assert scopes[("post", "/v1/models/milling_spindle/predict")] == "predict"
    assert scopes[("post", "/v1/models/{name}/reload")] == "admin"
    assert scopes[("patch", "/v1/assets/{equipment_id}")] == "work-orders"
    assert scopes[("post", "/v1/work-orders/{job_order_id}/assessment")] == "work-orders"
    assert scopes[("get", "/v1/events")] == "work-orders"
    assert scopes[("get", "/v1/audit")] == "admin"
    assert set(scopes.values()) == {"predict", "work-orders", "admin"}


def test_operation_ids_are_the_routes_own(doc: dict[str, Any]) -> None:
    import re

    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))
    for i in ids:  # FastAPI's automatic ids end with the method: assessment_v1_..._post
        assert re.fullmatch(r"[a-z][A-Za-z]+|predict_[a-z0-9_]+", i), i
    assert {"replaceAsset", "patchAsset", "assessWorkOrder", "completeWorkOrder",
            "listEvents", "predict_milling_spindle"} <= set(ids)


def _enums(node: Any, where: str) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list) and len(node["enum"]) > 1:
            yield tuple(map(str, node["enum"])), where
        for key, value in node.items():
            yield from _enums(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _enums(value, f"{where}/{i}")


def test_each_enum_is_declared_once_and_shared_by_ref(doc: dict[str, Any]) -> None:
    found = defaultdict(list)
    for values, where in _enums(doc, "#"):
        found[values].append(where)
    assert {v: w for v, w in found.items() if len(w) > 1} == {}
    schemas = doc["components"]["schemas"]
    assert schemas["DeviceHealth"] == {"type": "string", "enum": NE107}
    assert schemas["ExecutionMode"]["enum"] == ["Production", "Test", "Simulation"]
    assert schemas["JobResult"]["enum"] == ["Successful", "Unsuccessful"]
    assert schemas["DecisionType"]["enum"][0] == "RELEASE"
    ref = {"$ref": "#/components/schemas/DeviceHealth"}
    for model in ("AssetOut", "MaintenanceOut", "CompletionOut", "ThresholdCrossedData"):
        assert schemas[model]["properties"]["device_health" if "Out" in model else "to"][
            "$ref"] == ref["$ref"], model
    for model in ("AssetIn", "AssetPatch"):
        assert ref in schemas[model]["properties"]["device_health"]["anyOf"], model
    listed = doc["paths"]["/v1/assets"]["get"]["parameters"]
    assert ref in next(p for p in listed if p["name"] == "device_health")["schema"]["anyOf"]
    # one request body per served model, named for the model after a shared prefix
    predict = doc["paths"]["/v1/models/milling_spindle/predict"]["post"]["requestBody"]
    assert predict["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequestMillingSpindle"}
    assert "PredictRowMillingSpindle" in schemas


def test_answers_declare_their_problems_and_headers(doc: dict[str, Any]) -> None:
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, method, op in operations(doc):
        responses = op["responses"]
        assert responses["500"]["content"] == problem, (method, path)
        if path in UNAUTHENTICATED:
            assert "401" not in responses
            continue
        assert responses["503"]["content"] == problem, (method, path)
        assert set(responses["503"]["headers"]) == {"Retry-After"}
        for status in ("401", "403"):
            assert set(responses[status]["headers"]) == {"WWW-Authenticate"}, (method, path)
    # /readyz answers its own 503 (not ready), without a problem or Retry-After
    assert "headers" not in doc["paths"]["/readyz"]["get"]["responses"]["503"]
    # unknown query parameters are refused on every route, health included
    assert doc["paths"]["/healthz"]["get"]["responses"]["422"]["content"] == problem

    def headers(path: str, method: str) -> set[str]:
        return set(doc["paths"][path][method]["responses"]["200"].get("headers", {}))

    asset = "/v1/assets/{equipment_id}"
    for method in ("get", "put", "patch", "delete"):
        assert headers(asset, method) == {"ETag"}
    assert headers("/v1/assets", "get") == set()  # a list carries an etag per asset
    for action in ("assessment", "completion"):
        assert headers(f"/v1/work-orders/{{job_order_id}}/{action}", "post") == {
            "Idempotency-Replayed"}
    idempotent = {(p, m) for p, m, op in operations(doc)
                  if any(q["name"] == "Idempotency-Key" for q in op.get("parameters", []))}
    replayed = {(p, m) for p, m, op in operations(doc) for status, r in op["responses"].items()
                if status.startswith("2") and "Idempotency-Replayed" in r.get("headers", {})}
    assert replayed == idempotent
    assert doc["components"]["schemas"]["AssetPatch"]["properties"]["state"]


def test_servers_default_to_relative_and_follow_the_settings(
    doc: dict[str, Any], trained: Any, tmp_path: Path,
) -> None:
    assert doc["servers"] == [{"url": "/"}]
    app = build(trained, tmp_path, openapi_servers=["https://twin.plant-7.example/api"])
    assert app.openapi()["servers"] == [{"url": "https://twin.plant-7.example/api"}]
    assert doc["info"]["license"] == {"name": "Apache-2.0", "identifier": "Apache-2.0"}


def test_a_webhook_per_event_type_with_its_payload_and_signature(doc: dict[str, Any]) -> None:
    from serving._event_schemas import EVENT_DATA
    from serving.store._outbox import EVENT_TYPES

    assert list(doc["webhooks"]) == list(EVENT_TYPES)
    schemas = doc["components"]["schemas"]
    for event_type, item in doc["webhooks"].items():
        post = item["post"]
        assert [(p["name"], p["in"], p["required"]) for p in post["parameters"]] == [
            (h, "header", True) for h in SIGNATURE_HEADERS]
        body = post["requestBody"]["content"]["application/cloudevents+json"]["schema"]
        envelope = schemas[body["$ref"].rsplit("/", 1)[1]]
        assert envelope["properties"]["type"] == {"type": "string", "const": event_type}
        assert envelope["required"] == schemas["EventOut"]["required"]
        data = envelope["properties"]["data"]
        if event_type in EVENT_DATA:
            assert data == {"$ref": f"#/components/schemas/{EVENT_DATA[event_type].__name__}"}
        else:
            assert data["type"] == "object"
        assert set(post["responses"]["429"]["headers"]) == {"Retry-After"}
    decision = doc["webhooks"]["io.assettwin.decision.issued"]["post"]
    assert decision["operationId"] == "onDecisionIssued"
    data = schemas["DecisionIssuedData"]
    assert data["properties"]["decision"] == {"$ref": "#/components/schemas/DecisionOut"}
    assert data["required"] == ["job_order_id", "equipment_id", "decision", "model", "policy"]

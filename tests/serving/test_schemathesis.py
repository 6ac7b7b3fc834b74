"""The OpenAPI document is the contract: schemathesis sends every route generated requests
(valid ones and broken ones) on a real uvicorn server with the trained spindle bundle,
and every answer must be no server error and must match the schema the document
declares for its status and media type (problems included).

Assets and assessed work orders exist beforehand, and part of the generated requests
are steered onto them (a registered machine, a valid order, an assessed job order), so
the work-order routes reach the assessment, the completion and the history, not only
their 404s. Bounded and reproducible: few examples per route, derandomized, no shrinking
(a failure is reported with the request that caused it, as a curl command). On SQLite
and on PostgreSQL (``store_url``): a cursor or a string one store takes and the other
refuses is a 5xx on one of them only."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.serving._server import serving
from tests.serving.test_api import STATE, job_order

EXAMPLES = {"positive": 15, "negative": 8}
MACHINES = {"M-01": 0.04, "M-02": 0.01, "M-03": 0.2}
ASSESSED = [f"WO-ST-{i}" for i in range(6)]


@pytest.fixture
def api(trained: Any, store_url: str, tmp_path: Path) -> Iterator[str]:
    """The service in dev mode (no keys: the generated credential headers are ignored and
    every request reaches its route), with three machines and assessed orders."""
    from serving._settings import Settings

    settings = Settings(database_url=store_url, models=[str(trained.bundle)], dev_mode=True,
                        webhooks=False, model_cache=tmp_path / "models",
                        mlflow_tracking_uri=(tmp_path / "mlruns").as_uri())
    with serving(settings) as url, httpx.Client(base_url=url, timeout=60) as c:
        for equipment, wear in MACHINES.items():
            r = c.put(f"/v1/assets/{equipment}", json={
                "asset_type": "milling_spindle", "state": {**STATE, "tool_wear": wear},
                "environment": {"ambient_temperature": 22.0}})
            assert r.status_code == 200, r.text
        for i, job in enumerate(ASSESSED):
            r = c.post(f"/v1/work-orders/{job}/assessment",
                       json=job_order("M-01", 10 + 10 * i))
            assert r.status_code == 200, r.text
        yield url


def _steer(path: str, method: str) -> Callable[[Any, int], None]:
    """How the n-th generated case of an operation is pointed at existing things: one case
    in three as generated, the others onto a registered machine or an assessed order."""

    def steer(case: Any, n: int) -> None:
        if n % 3 == 0:
            return
        params = case.path_parameters or {}
        if "equipment_id" in params and method == "GET":
            params["equipment_id"] = "M-01"
        if "name" in params:
            params["name"] = "milling_spindle"
        if "job_order_id" in params:
            params["job_order_id"] = ASSESSED[n % len(ASSESSED)]
        body = case.body
        if isinstance(body, dict) and "equipment_id" in body:
            body["equipment_id"] = list(MACHINES)[n % len(MACHINES)]
            if path.endswith("/assessment") and n % 3 == 2:
                valid = job_order(body["equipment_id"], 1 + n % 100)
                body["job_order_parameters"] = valid["job_order_parameters"]
                body["planned_quantity"] = valid["planned_quantity"]
                body["quality_specs"] = []
            if path.endswith("/completion") and n % 3 == 2:
                # a job response the route takes: the schema cannot say that parts_made or
                # good_quantity is needed, so a generated body almost never has either
                equipment = body["equipment_id"]
                body.clear()
                body.update(equipment_id=equipment, parts_made=1 + n % 50)
        if isinstance(body, dict) and path.startswith("/v1/assets/") and n % 3 == 2:
            body.update(asset_type="milling_spindle", state={**STATE, "tool_wear": 0.1},
                        environment={})

    return steer


def _run(operation: Any, url: str, mode: Any, examples: int,
         failures: list[str]) -> list[int]:
    """Send ``examples`` generated cases of ``operation``; failed checks go to ``failures``;
    returns the status codes answered."""
    steer = _steer(operation.path, operation.method.upper())
    counter = itertools.count()
    statuses: list[int] = []

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        if mode.value == "positive":
            steer(case, next(counter))
        response = case.call(base_url=url, timeout=60)
        statuses.append(response.status_code)
        try:
            case.validate_response(response, checks=[not_a_server_error,
                                                     response_schema_conformance])
        except (AssertionError, BaseExceptionGroup) as exc:  # the failed checks
            failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}, "
                            f"HTTP {response.status_code}): {exc}\n  {case.as_curl_command()}"
                            f"\n  answer: {response.text[:600]}")

    try:
        check()
    except Unsatisfiable:  # nothing to break: a route without parameters or body
        assert mode.value == "negative", operation.path
    return statuses


def test_every_route_answers_as_its_schema_says(api: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    failures: list[str] = []
    answered: dict[str, list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (schemathesis.GenerationMode.POSITIVE,
                     schemathesis.GenerationMode.NEGATIVE):
            examples = EXAMPLES[mode.value]
            answered.setdefault(label, []).extend(
                _run(operation, api, mode, examples, failures))
    assert len(answered) >= 16, sorted(answered)
    assert not failures, f"{len(failures)} failed case(s):\n\n" + "\n\n".join(failures)
    # The steered cases reached the logic behind the 404s and 422s.
    for label in ("PUT /v1/assets/{equipment_id}",
                  "POST /v1/work-orders/{job_order_id}/assessment",
                  "POST /v1/work-orders/{job_order_id}/completion",
                  "GET /v1/work-orders/{job_order_id}"):
        assert any(200 <= code < 300 for code in answered[label]), (label, answered[label])
    with httpx.Client(base_url=api, timeout=30) as c:
        # Found by this test: a cursor beyond BIGINT was a 500 (the driver's overflow).
        r = c.get("/v1/events", params={"after_seq": 2**63})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.after_seq"
        assert c.get("/readyz").json()["ready"] is True


def test_the_document_declares_answers_and_problems(trained: Any) -> None:
    """Every route names its answer schema, and every problem is declared as
    application/problem+json."""
    from serving._settings import Settings
    from serving.app import create_app

    app = create_app(Settings(database_url="sqlite://", models=[str(trained.bundle)]))
    doc = app.openapi()
    untyped = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                content = response.get("content", {})
                json_schema = content.get("application/json", {}).get("schema", {})
                if status.startswith("2") and "application/json" in content and (
                        "$ref" not in json_schema):
                    untyped.append(f"{method.upper()} {path} {status}")
                if status.startswith("4"):
                    assert list(content) == ["application/problem+json"], (path, status)
    assert not untyped, untyped
    predict = doc["paths"]["/v1/models/milling_spindle/predict"]["post"]["responses"]
    assert predict["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PredictOut")
    decision = doc["components"]["schemas"]["DecisionOut"]["properties"]["type"]
    assert decision == {"$ref": "#/components/schemas/DecisionType"}  # one shared enum
    assert doc["components"]["schemas"]["DecisionType"]["enum"] == [
        "RELEASE", "RELEASE_WITH_ADJUSTMENT", "HOLD_FOR_REVIEW", "MAINTAIN_FIRST", "REROUTE",
        "UNDECIDED"]

"""The operation decides what is checked (the spindle spec's ``operations`` and its
quality ``surfaces`` and ``stock``): a pass is judged on the surface it finishes, a
roughing or semi-finishing pass on the stock allowance it leaves and not on roughness;
the order's own quality_specs win; bad operations are problems naming the field. First
on the domain functions, then over HTTP with the small trained surrogate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serving._errors import BadRequest
from serving._schemas import OperationIn, QualitySpecIn
from tests.serving.test_api import STATE, job_order, make_key, running

ROOT_SPEC = "experiments/specs/spindle.yaml"


@pytest.fixture(scope="module")
def spec() -> Any:
    from pathlib import Path

    from physics.spec import load_spec

    return load_spec(Path(__file__).resolve().parents[2] / ROOT_SPEC)


def judged(spec: Any, surface: str, operation: OperationIn | None,
           given: list[QualitySpecIn] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    from serving.domain.orders import operation_of, quality_limits

    op = operation_of(spec, operation, {"finished_surface": surface})
    limits = quality_limits(spec, given or [], op)
    return {q.characteristic_id: (q.lsl, q.usl, q.basis) for q in limits}, op


def test_a_finishing_pass_is_judged_on_the_surface_it_finishes(spec: Any) -> None:
    wall, op = judged(spec, "wall", None)  # no operation: the spec's default, finishing
    assert wall == {"WALL": (-100.0, 100.0, "tolerance"), "RA": (None, 3.2, "tolerance")}
    assert op == {"type": "finishing", "judged_on": "tolerance", "stock_allowance": None,
                  "unit": "mm", "surface": "wall", "not_checked": [
                      {"characteristic_id": "FLOOR_Z_HIGH", "reason": "OTHER_SURFACE",
                       "detail": "on the floor; the order finishes the wall"},
                      {"characteristic_id": "FLOOR_Z_LOW", "reason": "OTHER_SURFACE",
                       "detail": "on the floor; the order finishes the wall"}]}
    floor, op = judged(spec, "floor", OperationIn(type="finishing"))
    assert floor == {"FLOOR_Z_HIGH": (None, 30.0, "tolerance"),
                     "FLOOR_Z_LOW": (-30.0, None, "tolerance"),
                     "RA": (None, 3.2, "tolerance")}
    assert [n["characteristic_id"] for n in op["not_checked"]] == ["WALL"]


def test_a_roughing_pass_is_judged_on_its_stock_allowance_and_not_on_roughness(
    spec: Any,
) -> None:
    """0.5 mm of stock per side: the wall may be off by up to 500 um either way (left
    thicker: the finishing pass takes it; cut thinner: no more than the stock, or the
    finished wall is gouged); the floor's Z likewise on the side the spec limits."""
    wall, op = judged(spec, "wall", OperationIn(type="roughing", stock_allowance=0.5))
    assert wall == {"WALL": (-500.0, 500.0, "stock_allowance")}
    assert op["judged_on"] == "stock_allowance" and op["stock_allowance"] == 0.5
    assert {n["characteristic_id"]: n["reason"] for n in op["not_checked"]} == {
        "FLOOR_Z_HIGH": "OTHER_SURFACE", "FLOOR_Z_LOW": "OTHER_SURFACE",
        "RA": "NOT_THIS_PASS"}
    floor, _ = judged(spec, "floor", OperationIn(type="semi_finishing", stock_allowance=150,
                                                  unit="µm"))
    assert floor == {"FLOOR_Z_HIGH": (None, 150.0, "stock_allowance"),
                     "FLOOR_Z_LOW": (-150.0, None, "stock_allowance")}
    # The MES's own limits for the order win, whatever the pass.
    own, _ = judged(spec, "wall", OperationIn(type="roughing", stock_allowance=0.5),
                    [QualitySpecIn(characteristic_id="RA", usl=6.3, unit="um")])
    assert own == {"WALL": (-500.0, 500.0, "stock_allowance"), "RA": (None, 6.3, "order")}


@pytest.mark.parametrize(("operation", "field", "value", "expected"), [
    (OperationIn(type="grinding"), "operation.type", "grinding",
     "one of roughing, semi_finishing, finishing"),
    (OperationIn(type="rouhging", stock_allowance=0.5), "operation.type", "rouhging",
     "one of roughing, semi_finishing, finishing (did you mean 'roughing'?)"),
    (OperationIn(type="roughing"), "operation.stock_allowance", None,
     "the stock a roughing pass leaves per side, in mm (or with unit)"),
    (OperationIn(type="finishing", stock_allowance=0.2), "operation.stock_allowance", 0.2,
     "none: a finishing pass is judged on the tolerances; a stock allowance goes with "
     "roughing, semi_finishing"),
    (OperationIn(type="roughing", stock_allowance=0.5, unit="degC"), "operation.unit",
     "degC", "a unit of [length] convertible to 'mm', the spec's unit; 'degC' is "
     "[temperature]"),
])
def test_a_bad_operation_is_a_problem_naming_field_value_and_expectation(
    spec: Any, operation: OperationIn, field: str, value: Any, expected: str,
) -> None:
    with pytest.raises(BadRequest) as caught:
        judged(spec, "wall", operation)
    (error,) = caught.value.errors
    assert (error.field, error.value, error.expected) == (field, value, expected)


def test_the_spec_refuses_a_surface_that_is_not_a_choice(spec: Any) -> None:
    from physics.spec import SpecError, TwinSpec

    raw = spec.model_dump(mode="json", exclude_none=True)
    raw["quality"]["wall_error_max"]["surfaces"] = ["side"]
    raw["operations"]["default"] = "lapping"
    with pytest.raises(SpecError) as caught:
        TwinSpec.from_dict(raw)
    text = str(caught.value)
    assert ("quality.wall_error_max.surfaces: 'side' is not a choice of finished_surface "
            "(wall, floor)") in text
    assert ("operations.default: 'lapping' is not one of the types roughing, "
            "semi_finishing, finishing") in text


@pytest.fixture(scope="module")
def service(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    db = f"sqlite:///{tmp_path_factory.mktemp('operations') / 'twin.db'}"
    with running(trained.bundle, db) as url:
        client = httpx.Client(base_url=url, headers={"X-API-Key": make_key(db, "work-orders")},
                              timeout=60)
        r = client.put("/v1/assets/M-01", json={
            "asset_type": "milling_spindle", "state": STATE,
            "environment": {"ambient_temperature": 22.0}})
        assert r.status_code == 200, r.text
        yield client
        client.close()


def test_over_http_a_roughing_order_is_judged_on_its_stock(service: httpx.Client) -> None:
    """The same wall order as finishing and as roughing with 0.5 mm of stock: the same
    prediction, judged against +-100 um, then against +-500 um with RA unchecked; the
    answer says how (operation, basis) and the stored request keeps the operation."""
    body = job_order("M-01", 20)
    finishing = service.post("/v1/work-orders/WO-OP-F/assessment", json=body).json()
    rough = service.post("/v1/work-orders/WO-OP-R/assessment", json={
        **body, "operation": {"type": "roughing", "stock_allowance": 500, "unit": "um"}})
    assert rough.status_code == 200, rough.text
    roughing = rough.json()
    assert finishing["operation"]["type"] == "finishing"
    assert [q["characteristic_id"] for q in finishing["quality"]] == ["WALL", "RA"]
    assert roughing["operation"] == {
        "type": "roughing", "judged_on": "stock_allowance", "stock_allowance": 0.5,
        "unit": "mm", "surface": "wall", "not_checked": [
            {"characteristic_id": "FLOOR_Z_HIGH", "reason": "OTHER_SURFACE",
             "detail": "on the floor; the order finishes the wall"},
            {"characteristic_id": "FLOOR_Z_LOW", "reason": "OTHER_SURFACE",
             "detail": "on the floor; the order finishes the wall"},
            {"characteristic_id": "RA", "reason": "NOT_THIS_PASS",
             "detail": "made by the finishing pass; a roughing pass leaves stock for it"}]}
    (wall,) = roughing["quality"]
    (wall_f, _) = finishing["quality"]
    assert (wall["lsl"], wall["usl"], wall["basis"]) == (-500.0, 500.0, "stock_allowance")
    assert (wall_f["lsl"], wall_f["usl"], wall_f["basis"]) == (-100.0, 100.0, "tolerance")
    assert wall["mean"] == wall_f["mean"]  # the same prediction, judged otherwise
    assert roughing["predicted"] == finishing["predicted"]
    (stored,) = service.get("/v1/work-orders/WO-OP-R").json()["assessments"]
    assert stored["request"]["operation"] == {"type": "roughing", "stock_allowance": 500.0,
                                              "unit": "um"}
    r = service.post("/v1/work-orders/WO-OP-X/assessment",
                     json={**body, "operation": {"type": "roughing"}})
    assert r.status_code == 422
    assert r.json()["errors"] == [{
        "field": "operation.stock_allowance", "value": None,
        "expected": "the stock a roughing pass leaves per side, in mm (or with unit)"}]

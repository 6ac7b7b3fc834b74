"""Units, materials and the training domain as an MES sends and reads them, against a
real server with the small trained spindle surrogate: an order in other spellings of the
spec's units (µm, MMT, MTR, 1/min, RPM, Cel, K) is assessed to the same numbers as the
order in the spec's units; a unit of another dimension or an unknown material is a 422
naming the field; a material's DIN/AISI name is the material; the model says where it
was trained on less than the spec allows."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.physics.test_workorder import MATERIALS
from tests.serving.test_api import ORDER, STATE, job_order, make_key, running

# What the assessment computes from the order: equal answers mean equal inputs.
COMPARED = ("quality", "maintenance", "predicted", "domain")


@pytest.fixture(scope="module")
def mes(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('vocabulary') / 'twin.db'}"
    with running(trained.bundle, db) as url:
        key = make_key(db, "work-orders", "predict")
        client = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30)
        r = client.put("/v1/assets/M-01", json={
            "asset_type": "milling_spindle", "state": STATE,
            "environment": {"ambient_temperature": 22.0}})
        assert r.status_code == 200, r.text
        yield {"client": client, "trained": trained}
        client.close()


def sent(**units: tuple[Any, str]) -> dict[str, Any]:
    """The spindle order with some parameters as (value, unit) pairs."""
    body = job_order("M-01")
    for p in body["job_order_parameters"]:
        if p["id"] in units:
            p["value"], p["unit"] = units[p["id"]]
    known = {p["id"] for p in body["job_order_parameters"]}
    body["job_order_parameters"] += [{"id": k, "value": v, "unit": u}
                                     for k, (v, u) in units.items() if k not in known]
    return body


def assess(mes: dict[str, Any], body: dict[str, Any], order_id: str) -> dict[str, Any]:
    r = mes["client"].post(f"/v1/work-orders/{order_id}/assessment", json=body)
    assert r.status_code == 200, r.text
    return {k: r.json().get(k) for k in COMPARED}


def problem(mes: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    r = mes["client"].post("/v1/work-orders/WO-BAD/assessment", json=body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    errors: list[dict[str, Any]] = r.json()["errors"]
    return errors


def test_units_an_mes_sends_give_the_numbers_of_the_spec_units(mes: dict[str, Any]) -> None:
    wall = {"characteristic_id": "WALL", "lsl": -50.0, "usl": 50.0, "unit": "um"}
    reference = assess(mes, {**sent(), "quality_specs": [wall]}, "WO-U0")
    assert ORDER["feed_per_tooth"] == 0.08 and ORDER["tool_diameter"] == 12.0
    spellings = [
        {"spindle_speed": (5300.0, "1/min"), "feed_per_tooth": (80.0, "µm"),
         "axial_depth": (2.0, "MMT"), "tool_diameter": (0.012, "MTR")},
        {"spindle_speed": (5300.0, "RPM"), "feed_per_tooth": (80.0, "um"),
         "axial_depth": (2000.0, "4H"), "radial_width": (3.0, "mm")},
        {"spindle_speed": (5300.0, "{rpm}"), "feed_per_tooth": (0.08, "mm")},
    ]
    for n, units in enumerate(spellings, start=1):
        limits = {**wall, "lsl": -0.05, "usl": 0.05, "unit": "MMT"}
        got = assess(mes, {**sent(**units), "quality_specs": [limits]}, f"WO-U{n}")
        assert got == reference, units
        w = next(q for q in got["quality"] if q["characteristic_id"] == "WALL")
        assert (w["lsl"], w["usl"]) == (-50.0, 50.0)  # in the spec's um, converted
    # The unit is applied: the same numbers without it are another order (80 mm per tooth).
    errors = problem(mes, sent(feed_per_tooth=(80.0, "mm")))
    assert errors == [{"field": "job_order_parameters[3].value", "value": 80.0,
                       "expected": "80 is outside the allowed range [0.01, 0.3] mm"}]


def test_celsius_in_every_spelling_and_kelvin_with_its_offset(mes: dict[str, Any]) -> None:
    reference = assess(mes, sent(coolant_temperature=(20.0, "degC")), "WO-T0")
    for n, value in enumerate([(20.0, "Cel"), (20.0, "CEL"), (20.0, "°C"), (293.15, "K")]):
        assert assess(mes, sent(coolant_temperature=value), f"WO-T{n + 1}") == reference
    # The value is read: the DOE held the coolant at 20 degC, so 25 is out of its domain.
    warmer = assess(mes, sent(coolant_temperature=(25.0, "Cel")), "WO-T9")
    assert reference["domain"]["in_domain"] and not warmer["domain"]["in_domain"]
    assert "coolant_temperature" in str(warmer["domain"])
    errors = problem(mes, sent(coolant_temperature=(20.0, "KEL")))
    assert errors == [{"field": "job_order_parameters[14].value", "value": 20.0,
                       "expected": "-253.15 is outside the allowed range [15, 30] degC "
                                   "(sent 20 KEL = -253.15 degC)"}]


def test_a_unit_of_another_dimension_is_a_422_naming_field_value_and_unit(
        mes: dict[str, Any]) -> None:
    assert problem(mes, sent(spindle_speed=(5300.0, "mm"))) == [{
        "field": "job_order_parameters[2].unit", "value": "mm",
        "expected": "a unit of 1 / [time] convertible to 'rpm', the spec's unit; 'mm' is "
                    "[length]"}]
    assert problem(mes, sent(axial_depth=(2.0, "mmm"))) == [{
        "field": "job_order_parameters[4].unit", "value": "mmm",
        "expected": "a unit convertible to 'mm', the spec's unit: 'mmm' is not a unit; write "
                    "a UCUM code, a UNECE Rec 20 code or a pint name, e.g. um, µm, 4H, mm, "
                    "MMT, 1/min, rpm, RPM, Cel, degC, s, %"}]
    body = sent()
    body["quality_specs"] = [{"characteristic_id": "RA", "usl": 0.8, "unit": "degC"}]
    assert problem(mes, body) == [{
        "field": "quality_specs[0].unit", "value": "degC",
        "expected": "a unit of [length] convertible to 'um', the spec's unit; 'degC' is "
                    "[temperature]"}]


def test_a_material_by_its_din_or_aisi_name_is_the_material(mes: dict[str, Any]) -> None:
    reference = assess(mes, sent(), "WO-M0")
    assert ORDER["material"] == "steel_c45"
    for n, name in enumerate(["1.0503", "AISI 1045", "c45", "UNS G10450"], start=1):
        body = job_order("M-01", material=name)
        assert assess(mes, body, f"WO-M{n}") == reference, name
    other = assess(mes, job_order("M-01", material="1.4404"), "WO-M9")
    assert other["predicted"] != reference["predicted"]  # 1.4404 is 316L, not C45


def test_an_unknown_material_lists_every_accepted_name(mes: dict[str, Any]) -> None:
    assert problem(mes, job_order("M-01", material="CuZn39Pb3")) == [{
        "field": "job_order_parameters[0].value", "value": "CuZn39Pb3",
        "expected": "'CuZn39Pb3' is not one of " + MATERIALS}]


def test_raw_predict_takes_a_material_by_its_names_too(mes: dict[str, Any]) -> None:
    """A predict row names a choice as a job order does: C45, 1.0503 and AISI 1045 are
    steel_c45, on the fast path and on the FastAPI route (a percent-encoded path), and
    the document lists the names; an unknown one is a 422 listing every accepted name."""
    from tests.serving.test_api import ROUTE_PATH

    client = mes["client"]
    row = {**ORDER, **STATE, "ambient_temperature": 22.0, "quantity": 20}
    fast = "/v1/models/milling_spindle/predict"
    reference = client.post(fast, json={"rows": [row]}).json()["rows"]
    for name in ("C45", "1.0503", "aisi-1045"):
        for path in (fast, ROUTE_PATH):
            r = client.post(path, json={"rows": [{**row, "material": name}]})
            assert r.status_code == 200, (name, path, r.text)
            assert r.json()["rows"] == reference, (name, path)
    r = client.post(fast, json={"rows": [{**row, "material": "CuZn39Pb3"}]})
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["field"] == "rows.0.material" and error["value"] == "CuZn39Pb3"
    assert error["expected"].endswith("'CuZn39Pb3' is not one of " + MATERIALS), error
    doc = client.get("/openapi.json").json()
    field = doc["components"]["schemas"]["PredictRowMillingSpindle"]["properties"]["material"]
    assert field["enum"] == ["aluminium_6061", "steel_c45", "stainless_316l", "ti6al4v",
                             "cast_iron_gjl250"]
    assert "1.0503" in field["x-aliases"]["steel_c45"]


def test_material_requirements_set_the_material_input(mes: dict[str, Any]) -> None:
    """The order's consumed material sets the input the spec declares for it; checked on
    the domain function the assessment route calls."""
    from physics.spec import load_spec
    from serving._errors import BadRequest
    from serving._schemas import JobOrderIn
    from serving.domain.orders import order_values
    from tests._trained import SPEC

    spec = load_spec(SPEC)

    def values(body: dict[str, Any]) -> dict[str, Any]:
        order = JobOrderIn.model_validate(body)
        return order_values(spec, order.job_order_parameters, order.planned_quantity,
                            path="job_order_parameters",
                            materials=order.material_requirements)[0]

    without = job_order("M-01")
    without["job_order_parameters"] = [p for p in without["job_order_parameters"]
                                       if p["id"] != "material"]
    bar = {"material_definition_id": "1.0503", "material_use": "Consumed", "quantity": 60}
    part = {"material_definition_id": "4711-BRACKET", "material_use": "Produced"}
    got = values({**without, "material_requirements": [part, bar]})
    assert got == values(job_order("M-01"))  # steel_c45, as the parameters would say
    assert got["material"] == "steel_c45"
    # By class when the definition is a plant's own number; agreeing parameters are fine.
    by_class = {"material_definition_id": "MAT-100234", "material_class_id": "AISI 316L"}
    assert values({**without, "material_requirements": [by_class]})["material"] == (
        "stainless_316l")
    assert values({**job_order("M-01"), "material_requirements": [bar]})["material"] == (
        "steel_c45")
    with pytest.raises(BadRequest) as err:
        values({**job_order("M-01", material="ti6al4v"), "material_requirements": [bar]})
    assert [e.as_dict() for e in err.value.errors] == [{
        "field": "material_requirements[0].material_definition_id", "value": "1.0503",
        "expected": "the material the parameters name: job_order_parameters[0] sets "
                    "material = ti6al4v, '1.0503' is steel_c45"}]
    with pytest.raises(BadRequest) as err:
        values({**without, "material_requirements": [{"material_definition_id": "brass"}]})
    assert [e.as_dict() for e in err.value.errors] == [{
        "field": "material_requirements[0].material_definition_id", "value": "brass",
        "expected": "a material of milling_spindle (material): one of " + MATERIALS}]


def test_the_model_says_where_it_was_trained_on_less_than_the_spec(
        mes: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    from physics.spec import load_spec
    from serving._models import load_model
    from tests._trained import SPEC

    spec = load_spec(SPEC)
    doe = spec.doe
    assert doe is not None
    r = mes["client"].get("/v1/models/milling_spindle")
    assert r.status_code == 200, r.text
    gaps = {g["input"]: g for g in r.json()["domain_gaps"]}
    signature = json.loads((mes["trained"].bundle / "signature.json").read_text())
    trained = {c["name"]: (c["min"], c["max"]) for c in signature["inputs"]}
    # The spindle speed: the spec admits 500-24000 rpm and the DOE drew from 800 (up to
    # the top: 6061, whose life has no speed window, runs at the top speed).
    lo, hi = trained["spindle_speed"]
    assert lo == 800 and hi <= 24000
    assert gaps["spindle_speed"] == {
        "input": "spindle_speed", "unit": "rpm", "spec": [500, 24000], "trained": [lo, hi],
        "covered": round((hi - lo) / 23500, 4)}
    # The DOE covers the spec's quantities: normal batches up to 500 parts are no gap.
    q = doe.factors["quantity"]
    assert (q.low, q.high) == (spec.require_quantity().min, spec.require_quantity().max)
    assert trained["quantity"] == (1, 500) and "quantity" not in gaps
    # Inputs trained over the spec's whole range are no gap; one the DOE fixed is.
    assert trained["warmup"] == (0, 1) and "warmup" not in gaps and "material" not in gaps
    assert gaps["coolant_temperature"]["trained"] == [20, 20]
    assert set(gaps) == {
        k for k, (lo, hi) in trained.items()
        if k != "quantity" and spec.inputs[k].min is not None
        and (lo > spec.inputs[k].min or hi < spec.inputs[k].max)}
    with caplog.at_level(logging.WARNING, logger="asset_twin.serving"):
        load_model(str(mes["trained"].bundle))
    text = caplog.records[-1].getMessage()
    assert text.startswith(f"model milling_spindle ({mes['trained'].bundle}): the training "
                           f"domain is narrower than spec milling_spindle for {len(gaps)} "
                           "inputs; orders there are answered UNDECIDED: ")
    assert f"UNDECIDED: spindle_speed trained 800-{hi:.6g} of 500-24000 rpm; " in text
    assert "; coolant_temperature trained 20-20 of 15-30 degC; " in text

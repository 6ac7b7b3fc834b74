"""The assessment's surrogate calls, in process on the small trained spindle surrogate:
an order that passes costs one batched call (the order and its scan over the
quantity); one that fails costs a second with every alternative; and each number of a
decision is the one the surrogate gives that row on its own, its probabilities the
two-piece normal of the row's intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from tests.serving.test_api import MACHINE, ORDER, STATE

ENV = {"ambient_temperature": 22.0}
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def model(trained: Any) -> Any:
    from serving._models import load_model

    return load_model(str(trained.bundle))


@pytest.fixture()
def calls(model: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The row count of every surrogate call (the real session answers them)."""
    seen: list[int] = []
    run = type(model).run

    def counted(self: Any, raw: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(raw.shape[0])
        return run(self, raw)

    monkeypatch.setattr(type(model), "run", counted)
    return seen


def _policy(**maintenance: Any) -> Any:
    """The default policy, but blind to the process limits and the breakage risk: these
    tests place their own quality limits and count calls, and must not hang on what the
    small test surrogate makes of a deflection or a breakage at this order."""
    from serving._settings import DEFAULT_POLICY
    from serving.domain.policy import load_policy

    p = load_policy(DEFAULT_POLICY)
    p = p.model_copy(update={
        "feasibility": p.feasibility.model_copy(update={"p_violation_max": 0.999})})
    maintenance = {"p_breakage_max": 0.999, **maintenance}
    return p.model_copy(update={"maintenance": p.maintenance.model_copy(update=maintenance)})


def _asset(eq: str, **state: float) -> Any:
    """A machine measured an hour ago, with a fresh tool unless ``state`` says otherwise
    (at STATE's 0.04 mm of wear the small surrogate already fears a breakage)."""
    from serving.domain.assess import AssetView

    return AssetView(eq, "milling_spindle", {**STATE, "tool_wear": 0.0, **state}, ENV,
                     NOW - timedelta(hours=1), machine=dict(MACHINE))


def _order(model: Any, limits: list[Any]) -> Any:
    from serving._schemas import JobOrderParameter
    from serving.domain.assess import OrderView
    from serving.domain.orders import order_values

    params = [JobOrderParameter(id=k, value=v) for k, v in ORDER.items()]
    values, quantity = order_values(model.spec, params, 30, path="job_order_parameters")
    return OrderView("WO-T1", values, quantity, limits)


def _unreachable(model: Any) -> Any:
    """A limit no row can meet: the order fails it, and so does every alternative."""
    from serving.domain.assess import QualityLimit

    kpi, q = next(iter(model.spec.quality.items()))
    return QualityLimit(kpi, q.characteristic_id, q.unit, None, -1e9)


def _rul_rows(model: Any) -> int:
    q = next(c for c in model.inputs if c["name"] == "quantity")
    return len(np.unique(np.geomspace(max(1, int(q["min"])), int(q["max"]), 50).round()))


def test_an_order_that_passes_costs_one_call_of_the_order_and_its_scan(
        model: Any, calls: list[int]) -> None:
    from serving.domain.assess import assess

    out = assess(model, _policy(), _asset("M1"), _order(model, []),
                 others=[_asset("M2"), _asset("M3")], now=NOW)
    assert out["decision"]["type"] == "RELEASE", out["decision"]
    assert calls == [1 + _rul_rows(model)]


def test_an_order_that_fails_costs_a_second_call_of_every_alternative(
        model: Any, calls: list[int]) -> None:
    from serving.domain.assess import assess

    policy = _policy()
    limit = _unreachable(model)
    out = assess(model, policy, _asset("M1"), _order(model, [limit]),
                 others=[_asset("M2"), _asset("M3")], now=NOW)
    assert out["decision"]["reason_codes"] == [
        f"QUALITY_AT_RISK:{limit.characteristic_id}", "NO_REMEDY"]
    assert out["decision"]["type"] == "HOLD_FOR_REVIEW"
    scans = sum(p.scan for p in policy.adjustment.parameters.values())
    alternatives = len(policy.maintenance.remedies) + policy.adjustment.candidates + scans + 2
    assert calls == [1 + _rul_rows(model), alternatives]


def test_a_parameter_scan_tries_its_values_alone_beside_the_joint_design(model: Any) -> None:
    from serving.domain.assess import _candidates

    policy = _policy()
    order = _order(model, [])
    adj = policy.adjustment
    cands = _candidates(model, order, policy)
    joint, scan = cands[:adj.candidates], cands[adj.candidates:]
    assert all(set(c) == set(adj.parameters) for c in joint)
    # spindle_speed's 25 speeds alone, evenly over +-30 % of the ordered speed (inside
    # the spec's bounds here), the feed as ordered.
    n = float(order.values["spindle_speed"])
    assert adj.parameters["spindle_speed"].scan == 25
    assert [set(c) for c in scan] == [{"spindle_speed"}] * 25
    speeds = np.array([c["spindle_speed"] for c in scan])
    assert speeds == pytest.approx(np.linspace(0.7 * n, 1.3 * n, 25), rel=1e-12)


def test_with_no_alternative_to_try_a_failing_order_is_held_after_one_call(
        model: Any, calls: list[int]) -> None:
    from serving.domain.assess import assess

    policy = _policy(remedies={})
    policy = policy.model_copy(update={
        "adjustment": policy.adjustment.model_copy(update={"parameters": {}})})
    out = assess(model, policy, _asset("M1"), _order(model, [_unreachable(model)]),
                 others=[], now=NOW)
    assert out["decision"]["type"] == "HOLD_FOR_REVIEW"
    assert out["decision"]["explanation"].startswith("no remedy, adjustment or other machine")
    assert calls == [1 + _rul_rows(model)]


def test_a_remedy_is_the_surrogate_s_answer_for_its_row_alone(model: Any) -> None:
    """A worn tool, and a limit the worn tool's interval crosses and the fresh tool's
    does not: MAINTAIN_FIRST, and the numbers of the remedy and of the order as sent are
    bit for bit what the surrogate gives each row by itself."""
    from serving._predict import predict_rows
    from serving.domain.assess import QualityLimit, _row, assess
    from serving.domain.stats import p_above, p_below

    policy = _policy()
    worn = _asset("M1", tool_wear=0.29)  # near the 0.3 mm replacement criterion
    order = _order(model, [])
    fresh = predict_rows(model, [_row(order, worn, **policy.maintenance.remedies["replace_tool"])])
    as_is = predict_rows(model, [_row(order, worn)])

    def p_out(pred: Any, kpi: str, usl: float | None, lsl: float | None) -> float:
        args = (pred.column(kpi)[:1], pred.column(kpi, "lower")[:1],
                pred.column(kpi, "upper")[:1], model.level)
        if usl is not None:
            return float(p_above(usl, *args)[0])
        return float(p_below(lsl, *args)[0])

    def between() -> QualityLimit | None:
        """A limit the worn tool breaks at the policy's p_out_max and the fresh one meets,
        with a factor of two on either side."""
        p_max = policy.quality.p_out_max
        for kpi, q in model.spec.quality.items():
            ends = [float(pred.column(kpi, w)[0]) for pred in (fresh, as_is)
                    for w in ("lower", "upper")]
            for x in np.linspace(min(ends), max(ends), 401):
                for usl, lsl in ((x, None), (None, x)):
                    if (p_out(fresh, kpi, usl, lsl) <= p_max / 2
                            and p_out(as_is, kpi, usl, lsl) > 2 * p_max):
                        return QualityLimit(kpi, q.characteristic_id, q.unit, lsl, usl)
        return None

    limit = between()
    assert limit is not None, "the worn and the fresh tool predict the same bands"
    order.limits.append(limit)
    out = assess(model, policy, worn, order, others=[], now=NOW)
    decision = out["decision"]
    assert decision["type"] == "MAINTAIN_FIRST", decision
    got = decision["maintenance_first"]["quality"][0]
    assert (got["mean"], got["interval"]["lower"], got["interval"]["upper"]) == (
        float(fresh.column(limit.kpi)[0]), float(fresh.column(limit.kpi, "lower")[0]),
        float(fresh.column(limit.kpi, "upper")[0]))
    assert out["quality"][0]["mean"] == float(as_is.column(limit.kpi)[0])


def test_every_probability_is_the_two_piece_normal_of_its_own_interval(model: Any) -> None:
    """Limits placed inside and beside the bands the surrogate predicts for the order:
    each p_out_of_spec, p_violation and p_reached of the answer is the two-piece normal
    of its interval, worked out here with the exact normal CDF (serving's has an error
    under 1.5e-7), and the reason codes name exactly the characteristics over the
    policy's limit."""
    from statistics import NormalDist

    from serving._predict import predict_rows
    from serving.domain.assess import QualityLimit, _row, assess

    policy = _policy()
    asset = _asset("M1")
    order = _order(model, [])
    pred = predict_rows(model, [_row(order, asset)])
    z = NormalDist().inv_cdf(0.5 + model.level / 2)

    def band(kpi: str) -> tuple[float, float, float]:
        return (float(pred.column(kpi)[0]), float(pred.column(kpi, "lower")[0]),
                float(pred.column(kpi, "upper")[0]))

    def cdf(x: float, mean: float, lo: float, up: float) -> float:
        # serving floors a side's scale at 1e-12 of the mean (a band of zero width)
        scale = max((mean - lo) / z if x < mean else (up - mean) / z,
                    1e-12 * max(1.0, abs(mean)))
        return NormalDist().cdf((x - mean) / scale)

    def p_outside(kpi: str, low: float | None, high: float | None) -> float:
        mean, lo, up = band(kpi)
        p = (cdf(low, mean, lo, up) if low is not None else 0.0) + (
            1 - cdf(high, mean, lo, up) if high is not None else 0.0)
        return min(1.0, p)

    # Both sides inside the band; an upper limit just past it; a lower limit above it.
    shapes = [lambda m, lo, up: (m - 0.5 * (m - lo), m + 0.3 * (up - m)),
              lambda m, lo, up: (None, up + 0.1 * (up - m)),
              lambda m, lo, up: (up + 0.2 * (up - lo), None)]
    for (kpi, q), shape in zip(model.spec.quality.items(), shapes, strict=False):
        lsl, usl = shape(*band(kpi))
        order.limits.append(QualityLimit(kpi, q.characteristic_id, q.unit, lsl, usl))
    assert len(order.limits) == 3
    out = assess(model, policy, asset, order, others=[], now=NOW)

    risky = []
    for got, limit in zip(out["quality"], order.limits, strict=True):
        want = p_outside(limit.kpi, limit.lsl, limit.usl)
        assert abs(got["p_out_of_spec"] - want) < 3e-7, (limit, got["p_out_of_spec"], want)
        if want > policy.quality.p_out_max + 1e-6:
            risky.append(f"QUALITY_AT_RISK:{limit.characteristic_id}")
    assert out["quality"][2]["evaluation"] == "NotOK"  # the whole band lies below the LSL
    assert out["quality"][2]["p_out_of_spec"] > 0.975
    assert risky, "a band that lies below its LSL is at risk"
    assert [c for c in out["decision"]["reason_codes"]
            if c.startswith("QUALITY_AT_RISK:")] == risky
    assert out["feasibility"], "the spindle declares process limits"
    for f in out["feasibility"]:
        want = p_outside(f["kpi"], f["min"], f["max"])
        assert abs(f["p_violation"] - want) < 3e-7, (f["kpi"], f["p_violation"], want)
    worn = [lim for lim in out["maintenance"]["limits"] if lim["kpi"] in model.regression_names]
    assert worn, "the spindle's wear limit is a regression KPI"
    for lim in worn:
        want = p_outside(lim["kpi"], None, lim["limit"])
        assert abs(lim["p_reached"] - want) < 3e-7, (lim["kpi"], lim["p_reached"], want)


def test_a_large_batch_runs_in_slices_with_the_bits_of_one_call(model: Any) -> None:
    """Past 2 x RUN_ROWS rows the graph runs in slices (cheaper per row); every row's
    numbers are those of one call of the whole batch, also in a last slice of 2 rows+1."""
    from serving._models import RUN_ROWS
    from serving._predict import encode
    from serving.domain.assess import _row

    order = _order(model, [])
    rows = [_row(order, _asset("M1"), quantity=1 + i % 90, spindle_speed=4000.0 + i)
            for i in range(2 * RUN_ROWS + 1)]
    raw = encode(model, rows).raw
    names, input_name = model._io
    whole = dict(zip(names, model.session.run(names, {input_name: raw}), strict=True))
    sliced = model.run(raw)
    assert set(sliced) == set(whole)
    for name in names:
        assert sliced[name].shape == whole[name].shape
        np.testing.assert_array_equal(sliced[name], whole[name])

"""The MES's breakage probability: the event the surrogate classifies (worn out, fatigue)
combined with the physical breakage hazard's KPI (the cumulative hazard H, p_hazard =
1 - exp(-H)), 1 - (1 - p_event)(1 - p_hazard), on a
prediction with known numbers (no surrogate: the arithmetic of ``risks_of`` alone)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest


def _prediction(spec: Any, p_event: list[float], hazard: list[float] | None) -> Any:
    from serving._predict import Batch, Prediction
    from serving.domain.checks import BREAKAGE, BREAKAGE_HAZARD

    names = [k for k in spec.kpis if k not in (BREAKAGE, BREAKAGE_HAZARD)]
    names += [BREAKAGE_HAZARD] if hazard is not None else []
    n = len(p_event)
    mean = np.zeros((n, len(names)))
    if hazard is not None:
        mean[:, names.index(BREAKAGE_HAZARD)] = hazard
    model = SimpleNamespace(spec=spec, regression_names=names, event_names=[BREAKAGE], level=0.95)
    batch = Batch([{} for _ in range(n)], np.zeros((n, 1), np.float32), [[] for _ in range(n)])
    return Prediction(model, batch, mean, np.ones_like(mean), mean - 1.0, mean + 1.0,  # type: ignore[arg-type]
                      np.array(p_event)[:, None])  # fmt: skip


def test_the_breakage_risk_combines_the_event_and_the_hazard(spindle_spec: Any) -> None:
    from serving._settings import DEFAULT_POLICY
    from serving.domain.checks import BREAKAGE, risks_of
    from serving.domain.policy import load_policy

    policy = load_policy(DEFAULT_POLICY)
    p_max = policy.maintenance.p_breakage_max
    p_event = [0.0, 0.01, 0.01, 0.5, 0.0]
    hazard = [0.0, 0.005, 0.015, 0.2, -0.001]  # the last: a surrogate's mean just below 0
    risks = risks_of(_prediction(spindle_spec, p_event, hazard), [], policy)
    p_hazard = [1 - np.exp(-max(h, 0.0)) for h in hazard]
    expected = [1 - (1 - e) * (1 - p) for e, p in zip(p_event, p_hazard, strict=True)]
    np.testing.assert_allclose(risks.p_reached[BREAKAGE], expected, rtol=1e-14)
    basis = risks.basis["TOOL_BREAKAGE_RISK"]
    np.testing.assert_allclose(basis["p"], expected, rtol=1e-14)
    np.testing.assert_array_equal(basis["p_event"], p_event)
    np.testing.assert_allclose(basis["p_hazard"], p_hazard, rtol=1e-14)
    assert p_hazard[3] == pytest.approx(0.18127, rel=1e-4)  # 1 - exp(-0.2)
    assert basis["kpi"] == BREAKAGE and basis["p_max"] == p_max == 0.02
    # Each part alone below 0.02, together above: 1 - 0.99 exp(-0.015) = 0.02474.
    assert list(risks.reasons["TOOL_BREAKAGE_RISK"]) == [False, False, True, True, False]
    assert expected[2] == pytest.approx(1 - 0.99 * np.exp(-0.015), rel=1e-12)


def test_without_a_hazard_kpi_the_risk_is_the_event(spindle_spec: Any) -> None:
    from serving._settings import DEFAULT_POLICY
    from serving.domain.checks import BREAKAGE, risks_of
    from serving.domain.policy import load_policy

    risks = risks_of(_prediction(spindle_spec, [0.01, 0.03], None), [], load_policy(DEFAULT_POLICY))
    np.testing.assert_array_equal(risks.p_reached[BREAKAGE], [0.01, 0.03])
    assert "p_hazard" not in risks.basis["TOOL_BREAKAGE_RISK"]
    assert list(risks.reasons["TOOL_BREAKAGE_RISK"]) == [False, True]

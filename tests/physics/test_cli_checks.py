"""The check column of ``twin fmu simulate``: quality, maintenance and feasibility limits."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from physics.cli import _print_result
from physics.spec import TwinSpec


def kpi(unit: str, role: str = "process") -> dict[str, Any]:
    return {"variable": "y", "reduction": "max", "unit": unit, "role": role}


SPEC = TwinSpec.from_dict(
    {
        "name": "toy",
        "version": 1,
        "fmu": {"model": "toy", "step_size": 1.0},
        "inputs": {"x": {"variable": "x", "source": "order", "unit": "m", "min": 0, "max": 1}},
        "quantity": {"unit": "parts", "min": 1, "max": 10, "integer": True},
        "stop_time": "quantity",
        "kpis": {
            "dev": kpi("um", "quality"),
            "wear": kpi("mm", "maintenance"),
            "power_utilization_max": kpi("1"),
            "stability_margin_min": kpi("1"),
            "energy": kpi("J"),
        },
        "quality": {"dev": {"characteristic_id": "DIM_DEV", "unit": "um", "usl": 100}},
        "maintenance": {"wear": {"limit": 0.3, "unit": "mm", "action": "replace_tool"}},
        "feasibility": {
            "dev": {"max": 50, "unit": "um"},
            "power_utilization_max": {"max": 1.0, "unit": "1", "description": "S1 curve"},
            "stability_margin_min": {"min": 1.0, "unit": "1"},
            "energy": {"min": 1, "max": 5e6, "unit": "J"},
        },
    }
)


def test_feasibility_limits_get_a_check_like_quality(capsys: pytest.CaptureFixture[str]) -> None:
    kpis = {
        "dev": 57.7,
        "wear": 0.17,
        "power_utilization_max": 0.82,
        "stability_margin_min": 0.9,
        "energy": 6e6,
    }
    case = SimpleNamespace(quantity=3, stop_time=3600.0)
    result = SimpleNamespace(case=case, kpis=kpis)
    _print_result(SPEC, SimpleNamespace(job_order_id="WO-1"), result)
    rows = [line.split(maxsplit=4) for line in capsys.readouterr().out.splitlines()[2:]]
    checks = {name: check for name, _value, _unit, _role, check in rows}
    assert checks == {
        "dev": "OK DIM_DEV [..100]; NotOK FEAS [..50]",
        "wear": "below limit 0.3 (replace_tool)",
        "power_utilization_max": "OK FEAS [..1]",
        "stability_margin_min": "NotOK FEAS [1..]",
        "energy": "NotOK FEAS [1..5e+06]",
    }

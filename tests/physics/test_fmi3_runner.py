"""FMI 3.0 FMUs through our adapter, the runner and a whole study."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from physics.dataset import read_card, read_runs
from physics.fmu import Fmu
from physics.runner import KpiDef, LocalPool, PoolOptions, SimulationJob, Task
from physics.spec import TwinSpec
from physics.study import generate
from tests.fmus import build_test_fmu


def test_adapter_runs_an_fmi3_fmu_with_every_value_type() -> None:
    with Fmu(build_test_fmu("lag3")) as fmu:
        assert fmu.fmi3
        assert fmu.catalogue["settle_rule"].items == {"absolute": 1, "relative": 2}
        assert (fmu.catalogue["increment"].type, fmu.catalogue["settled"].type) == (
            "Integer",
            "Boolean",
        )
        tr = fmu.simulate(
            {"u": 2.0, "tau": 0.5, "increment": 3, "settle_rule": 2, "tol": 0.01},
            3.0,
            step_size=0.01,
            output_interval=0.1,
        )
        np.testing.assert_allclose(
            tr["y"], 2.0 * (1 - np.exp(-tr.time / 0.5)), rtol=1e-12, atol=1e-15
        )
        np.testing.assert_array_equal(tr["steps_taken"], 3 * np.round(tr.time / 0.01))
        # relative rule: |y - u| < tol |u|  <=>  exp(-t/tau) < 0.01
        np.testing.assert_array_equal(tr["settled"], np.exp(-tr.time / 0.5) < 0.01)
        assert tr["steps_taken"].dtype == np.int64 and tr["settled"].dtype == bool


def test_runner_falls_back_to_fmpy_for_fmi3() -> None:
    job = SimulationJob(
        str(build_test_fmu("lag3")),
        0.1,
        0.5,
        (KpiDef("y_end", "y", "final"), KpiDef("t_set", "settled", "mean")),
    )
    tasks = [Task(i, {"u": 1.0 + i, "tau": 1.0}, 10.0) for i in range(4)]
    results = sorted(LocalPool(job, PoolOptions(workers=1)).run(tasks), key=lambda r: r.run_id)
    assert [r.status for r in results] == ["ok"] * 4
    for i, r in enumerate(results):
        assert r.kpis["y_end"] == pytest.approx((1.0 + i) * (1 - math.exp(-10.0)), rel=1e-12)


def test_a_study_over_an_fmi3_fmu(tmp_path: Path) -> None:
    spec = TwinSpec.from_dict(
        {
            "name": "lag_three",
            "version": 1,
            "fmu": {"path": str(build_test_fmu("lag3")), "step_size": 0.05, "output_interval": 0.5},
            "inputs": {
                "u": {"variable": "u", "source": "order", "min": -3, "max": 3, "unit": "1"},
                "tau": {"variable": "tau", "source": "order", "unit": "s", "min": 0.2, "max": 2},
                "rule": {
                    "variable": "settle_rule",
                    "source": "order",
                    "choices": ["absolute", "relative"],
                },
            },
            "quantity": {"unit": "s", "min": 1, "max": 10},
            "stop_time": "quantity",
            "doe": {"factors": {"u": {}, "tau": {}, "rule": {}}, "fixed": {"quantity": 4}},
            "kpis": {
                "y_end": {"variable": "y", "reduction": "final", "unit": "1", "role": "process"}
            },
        }
    )
    generate(spec, tmp_path / "ds", n=12, method="sobol", seed=3, progress=False)
    table = read_runs(tmp_path / "ds")
    data = {c: np.array(table.column(c).to_pylist()) for c in ("u", "tau", "y_end", "status")}
    assert (data["status"] == "ok").all()
    np.testing.assert_allclose(
        data["y_end"], data["u"] * (1 - np.exp(-4.0 / data["tau"])), rtol=1e-12, atol=1e-15
    )
    assert read_card(tmp_path / "ds")["fmu"]["fmi_version"] == "3.0"

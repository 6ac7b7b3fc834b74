"""Small FMUs written for the tests, structurally unlike the spindle.

Each folder here holds a model.yaml and its C file, built with the same
framework and build as ``physics/models``:

- ``tank``: state events (a hysteresis valve) located exactly inside a step;
- ``counter``: Integer and Boolean variables only;
- ``ridge``: a static map with a narrow peak (adaptive sampling);
- ``faulty``: a first-order lag that fails on request (error, hang, crash,
  NaN, leak) from a given time, and refuses tau < 0.001 s;
- ``pythonfmu/Ramp.py``: from a second exporter, PythonFMU (its CLI builds it in
  ``tests/physics/test_hostile_input.py``): a ramp with a closed form.

Their closed-form references live in ``tests/physics/test_test_fmus.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from physics.fmu import build_model

FMUS_DIR = Path(__file__).resolve().parent
TEST_FMUS = ("tank", "counter", "faulty", "lag3", "ridge")


def build_test_fmu(name: str) -> Path:
    """Build ``tests/fmus/<name>`` (cached by source hash) and return the .fmu path."""
    if name not in TEST_FMUS:
        raise ValueError(f"test FMU {name!r}: expected one of {', '.join(TEST_FMUS)}")
    return build_model(FMUS_DIR / name).path


# Training that fits the ridge's peak from a handful of runs on it (adaptive sampling).
RIDGE_TRAINING = [
    "model.members=4",
    "model.hidden=[64, 64]",
    "training.epochs=1500",
    "training.patience=300",
    "training.batch_size=16",
    "split.test=0.0",
    "split.calibration=0.1",
]


def ridge_spec_data(fmu: Path | None = None) -> dict[str, Any]:
    """A twin spec of the ridge FMU as plain data: x1, x2 in [0, 1] by DOE, y as the KPI."""
    unit = {"source": "order", "unit": "1", "min": 0, "max": 1}
    return {
        "name": "ridge",
        "version": 1,
        "fmu": {"path": str(fmu or build_test_fmu("ridge")), "step_size": 1.0},
        "inputs": {"x1": {"variable": "x1", **unit}, "x2": {"variable": "x2", **unit}},
        "quantity": {"unit": "1", "min": 1, "max": 10, "integer": True},
        "stop_time": "1.0",
        "doe": {"factors": {"x1": {}, "x2": {}}, "fixed": {"quantity": 1}},
        "kpis": {"y": {"variable": "y", "reduction": "final", "unit": "1", "role": "process"}},
    }


def ridge_spec(max_rmse: float = 0.02) -> object:
    """The ridge spec with an RMSE gate on y (adaptive sampling)."""
    from physics.spec import TwinSpec

    data = ridge_spec_data()
    data["doe"]["factors"] = {"x1": {"low": 0, "high": 1}, "x2": {"low": 0, "high": 1}}
    return TwinSpec.from_dict({**data, "acceptance": {"y": {"max_rmse": max_rmse}}})

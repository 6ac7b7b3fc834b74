"""KPI reductions against analytic results, and their boundary checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from physics.kpi import REDUCTIONS, compute_kpis, reduce
from physics.spec import TwinSpec, load_spec

SPEC = Path(__file__).resolve().parents[2] / "experiments" / "specs" / "spindle.yaml"


def triangle(periods: int) -> tuple[np.ndarray, np.ndarray]:
    """0 -> 1 -> 0 -> -1 -> 0 every 4 s, sampled only at its corners."""
    t = np.arange(4 * periods + 1, dtype=float)
    y = np.tile([0.0, 1.0, 0.0, -1.0], periods + 1)[: t.size]
    return t, y


def test_simple_reductions() -> None:
    t = np.array([0.0, 1.0, 3.0, 4.0])
    y = np.array([2.0, -5.0, 4.0, 1.0])
    assert reduce("final", t, y) == 1.0
    assert reduce("max", t, y) == 4.0
    assert reduce("min", t, y) == -5.0
    assert reduce("max_abs", t, y) == 5.0


def test_integral_of_a_ramp_is_exact_on_any_grid() -> None:
    t = np.array([0.0, 0.3, 2.0, 7.5, 10.0])
    assert reduce("integral", t, 2.0 * t) == 100.0  # int_0^10 2t dt


def test_integral_of_a_sine_meets_the_trapezoid_error_bound() -> None:
    n = 1000
    t = np.linspace(0.0, math.pi, n + 1)
    h = math.pi / n
    # int_0^pi sin = 2; the trapezoid rule errs by at most (b - a) h^2 max|f''| / 12.
    assert abs(reduce("integral", t, np.sin(t)) - 2.0) <= math.pi * h**2 / 12
    assert reduce("integral", t, np.sin(t)) < 2.0  # concave: the rule underestimates


def test_mean_is_time_weighted() -> None:
    t = np.array([1.0, 2.0, 5.0])
    y = 3.0 + 2.0 * t  # mean over [1, 5] is 3 + 2 * 3 = 9; the sample mean would be 8.33
    assert reduce("mean", t, y) == 9.0
    assert reduce("mean", [7.0], [4.5]) == 4.5


def test_single_sample() -> None:
    assert reduce("integral", [3.0], [5.0]) == 0.0
    assert reduce("time_above", [3.0], [5.0], limit=1.0) == 0.0
    assert reduce("final", [3.0], [5.0]) == 5.0


def test_time_above_a_triangle_wave_is_exact() -> None:
    t, y = triangle(periods=3)
    # Above 0.5 from 0.5 s to 1.5 s in each 4 s period.
    assert reduce("time_above", t, y, limit=0.5) == 3.0
    # Above -0.5 everywhere except 2.5 s to 3.5 s of each period.
    assert reduce("time_above", t, y, limit=-0.5) == 9.0
    assert reduce("time_above", t, y, limit=1.0) == 0.0  # touching is not above
    assert reduce("time_above", t, y, limit=-2.0) == 12.0


def test_time_above_on_an_uneven_grid_with_samples_on_the_limit() -> None:
    t = np.array([0.0, 2.0, 3.0, 7.0, 8.0])
    y = np.array([35.0, 37.0, 35.0, 31.0, 39.0])
    # (0, 3) lies above 35; then from 7 s the signal climbs 31 -> 39, above 35 after 7.5 s.
    assert reduce("time_above", t, y, limit=35.0) == 3.5


def test_booleans_reduce_as_numbers() -> None:
    t = np.array([0.0, 10.0, 20.0])
    assert reduce("max", t, np.array([False, True, False])) == 1.0


@pytest.mark.parametrize(
    ("t", "y", "message"),
    [
        (np.arange(10.0), np.arange(9.0), "expected t and y of equal length, got 10 and 9"),
        ([], [], "expected at least one sample, got 0"),
        (
            [0.0, 1.0, 1.0],
            [1, 2, 3],
            "expected strictly increasing t, got t[1] = 1.0 then t[2] = 1.0",
        ),
        (
            [0.0, 2.0, 1.0],
            [1, 2, 3],
            "expected strictly increasing t, got t[1] = 2.0 then t[2] = 1.0",
        ),
        (np.zeros((2, 3)), np.zeros((2, 3)), "expected 1-D t and y, got shapes (2, 3) and (2, 3)"),
    ],
)
def test_shapes_are_checked_at_the_boundary(t: object, y: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        reduce("max", t, y)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_reduction_arguments() -> None:
    with pytest.raises(
        ValueError,
        match=r"^unknown reduction 'maximum'; expected one of final, "
        r"max, min, max_abs, mean, integral, time_above$",
    ):
        reduce("maximum", [0.0], [1.0])
    with pytest.raises(ValueError, match=r"^time_above needs a limit$"):
        reduce("time_above", [0.0], [1.0])
    with pytest.raises(ValueError, match=r"^max takes no limit$"):
        reduce("max", [0.0], [1.0], limit=2.0)
    assert REDUCTIONS == ("final", "max", "min", "max_abs", "mean", "integral", "time_above")


def test_compute_kpis_of_the_spindle_spec() -> None:
    spec = load_spec(SPEC)
    t = np.array([0.0, 10.0, 20.0, 30.0])
    trajectories = {
        "time": t,
        "wall_error": np.array([0.0, 12.0, 20.0, 18.0]),
        "axial_drift": np.array([0.0, 4.0, -3.0, -1.5]),
        "surface_roughness": np.array([0.5, 0.6, 0.8, 0.7]),
        # a tool change at 25 s: the end is not the largest wear
        "tool_wear": np.array([0.0, 0.28, 0.29, 0.01]),
        "tool_changes": np.array([0, 0, 0, 1]),
        "tool_broken": np.array([False, False, True, True]),
        "bearing_temperature": np.array([30.0, 40.0, 36.0, 30.0]),
        "breakage_cause": np.array([0, 0, 2, 2]),
        "breakage_hazard": np.array([0.0, 0.001, 0.002, 0.002]),
        "tool_life_probability": np.array([0.0, 0.4, 0.45, 0.0]),
        "tool_stress_ratio": np.array([0.0, 0.7, 1.0, 0.0]),
        "tool_deflection_ratio": np.array([0.0, 0.2, 0.3, 0.0]),
        "spindle_load": np.array([0.0, 0.45, 0.5, 0.0]),
        "spindle_rating_load": np.array([0.0, 0.35, 0.38, 0.0]),
        "stability_margin": np.array([1.8, 1.8, 1.8, 1.7]),
        "bearing_speed_ratio": np.array([0.4, 0.4, 0.4, 0.4]),
        "preload_ratio": np.array([1.0, 1.2, 1.3, 1.1]),
        "static_safety": np.array([9.0, 6.0, 5.5, 7.0]),
        "parts_completed": np.array([0, 1, 2, 2]),
        "part_cycle_time": np.array([12.5, 12.5, 12.5, 12.5]),
        "tool_life": np.array([45.0, 45.0, 45.0, 45.0]),
        "tool_remaining_parts": np.array([50.0, 10.0, 5.0, 60.0]),
        "tool_cost_per_part": np.array([1.5, 1.5, 1.6, 1.7]),
        "bearing_damage_order": np.array([0.0, 1e-6, 2e-6, 3e-6]),
        "energy": np.array([0.0, 1.0e5, 2.0e5, 2.5e5]),
    }
    kpis = compute_kpis(spec, trajectories)
    assert kpis == {
        "wall_error_max": 20.0,
        "axial_drift_max": 4.0,
        "axial_drift_min": -3.0,
        "surface_roughness_max": 0.8,
        "tool_wear_end": 0.01,
        "tool_changes": 1.0,
        "tool_broken_end": 1.0,
        "breakage_hazard_end": 0.002,
        "p_tool_life_reached": 0.0,
        "bearing_temperature_max": 40.0,
        "breakage_cause_end": 2.0,
        "tool_stress_ratio_max": 1.0,
        "tool_deflection_ratio_max": 0.3,
        "spindle_load_max": 0.5,
        "spindle_rating_load_max": 0.38,
        "stability_margin": 1.7,
        "bearing_speed_ratio": 0.4,
        "preload_ratio_max": 1.3,
        "static_safety_min": 5.5,
        "parts_completed": 2.0,
        "part_cycle_time": 12.5,
        "tool_life": 45.0,
        "tool_remaining_parts_end": 60.0,
        "tool_cost_per_part": 1.7,
        "bearing_damage_order": 3e-6,
        "energy": 2.5e5,
    }
    assert list(kpis) == list(spec.kpis)  # in the spec's order


def test_compute_kpis_with_a_time_above_kpi() -> None:
    data = yaml.safe_load(SPEC.read_text())
    data["kpis"] = {
        "bearing_hot_time": {
            "variable": "bearing_temperature",
            "reduction": "time_above",
            "limit": 35.0,
            "unit": "s",
            "role": "process",
        },
        "energy_used": {
            "variable": "spindle_power",
            "reduction": "integral",
            "unit": "J",
            "role": "process",
        },
    }
    for section in ("quality", "maintenance", "feasibility", "acceptance"):
        data[section] = {}
    spec = TwinSpec.from_dict(data)
    t = np.array([0.0, 10.0, 20.0, 30.0])
    trajectories = {
        "time": t,
        "bearing_temperature": np.array([30.0, 40.0, 36.0, 30.0]),
        "spindle_power": np.array([0.0, 1000.0, 1000.0, 0.0]),
    }
    assert compute_kpis(spec, trajectories) == {
        # above 35: from 5 s (30 -> 40) to 20 s, then 36 -> 30 crosses at 20 + 10/6 s
        "bearing_hot_time": pytest.approx(15.0 + 10.0 / 6.0),
        "energy_used": 20000.0,  # trapezoids: 5 kJ + 10 kJ + 5 kJ
    }


def test_compute_kpis_names_what_is_missing() -> None:
    spec = load_spec(SPEC)
    with pytest.raises(ValueError, match=r"^expected a 'time' trajectory, got only energy$"):
        compute_kpis(spec, {"energy": np.zeros(3)})
    with pytest.raises(ValueError) as err:
        compute_kpis(spec, {"time": np.arange(3.0)})
    assert str(err.value) == "KPI 'wall_error_max' needs the trajectory of 'wall_error', not given"
    short = {"time": np.arange(3.0), "wall_error": np.zeros(2)}
    with pytest.raises(ValueError) as err:
        compute_kpis(spec, short)
    assert str(err.value) == (
        "KPI 'wall_error_max' (wall_error): expected t and y of equal length, got 3 and 2"
    )

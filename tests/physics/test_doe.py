"""Designs of experiments: every point valid and complete, distributions as declared,
space filling where promised, reproducible, and each refusal worded exactly."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from physics.doe import METHODS, Design, DoeError, _stratum_seed, make_design
from physics.spec import SpecError, TwinSpec, load_spec

ROOT = Path(__file__).resolve().parents[2]
SPINDLE = load_spec(ROOT / "experiments" / "specs" / "spindle.yaml")
SAMPLED = [m for m in METHODS if m != "grid"]

INPUTS: dict[str, Any] = {
    "x": {"variable": "x", "source": "order", "unit": "m", "min": 0, "max": 10, "default": 5},
    "speed": {
        "variable": "speed",
        "source": "order",
        "unit": "rpm",
        "min": 1,
        "max": 1000,
        "default": 10,
    },
    "z": {"variable": "z", "source": "order", "min": 1, "max": 5, "integer": True, "default": 3},
    "flag": {"variable": "flag", "source": "order", "boolean": True, "default": False},
    "mat": {"variable": "mat", "source": "order", "choices": ["a", "b", "c"], "default": "a"},
}


def toy_data(
    factors: dict[str, Any],
    *,
    fixed: dict[str, Any] | None = None,
    constraints: Sequence[tuple[str, str]] = (),
    quantity_integer: bool = True,
    stratify: str | None = None,
) -> dict[str, Any]:
    """A five-input spec whose DOE varies ``factors``; quantity is fixed at 5 unless varied."""
    doe: dict[str, Any] = {"factors": factors, "fixed": {"quantity": 5} if fixed is None else fixed}
    if stratify is not None:
        doe["stratify"] = stratify
    return {
        "name": "toy",
        "version": 1,
        "fmu": {"model": "toy", "step_size": 1.0},
        "inputs": INPUTS,
        "quantity": {"unit": "parts", "min": 1, "max": 10, "integer": quantity_integer},
        "stop_time": "quantity",
        "constraints": [{"expr": e, "message": m} for e, m in constraints],
        "doe": doe,
        "kpis": {"y": {"variable": "y", "reduction": "final", "unit": "m", "role": "process"}},
    }


def toy(factors: dict[str, Any], **options: Any) -> TwinSpec:
    return TwinSpec.from_dict(toy_data(factors, **options))


def column(design: Design, key: str) -> np.ndarray:
    return design.columns()[key]


# ---- the spindle spec ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "n"), [("lhs", 40), ("sobol", 100), ("halton", 100), ("random", 100)]
)
def test_spindle_points_are_valid_complete_and_in_range(method: str, n: int) -> None:
    design = make_design(SPINDLE, n, method=method, seed=3)
    assert len(design.points) == n
    assert design.rejected > 0 and design.candidates - design.rejected >= n
    cols = design.columns()
    assert list(cols) == [*SPINDLE.inputs, "quantity"]
    inputs = {k: v for k, v in cols.items() if k != "quantity"}
    assert SPINDLE.constraints_mask(inputs, cols["quantity"]).all()
    # The same constraints by hand, not through the spec's expressions.
    assert (cols["radial_width"] <= cols["tool_diameter"]).all()
    window = {  # cutting speed [m/min], hex / D, largest ap * ae / D^2, kc1.1, mc
        "aluminium_6061": (250, 1000, 0.009, 1.0, 830, 0.23),
        "steel_c45": (120, 300, 0.0067, 0.5, 2220, 0.14),
        "stainless_316l": (80, 200, 0.005, 0.4, 2150, 0.21),
        "ti6al4v": (35, 90, 0.0045, 0.35, 1400, 0.23),
        "cast_iron_gjl250": (120, 320, 0.008, 0.6, 1160, 0.26),
    }
    for p in design.points:
        d, ae, ap = p["tool_diameter"], p["radial_width"], p["axial_depth"]
        vc = math.pi * d * p["spindle_speed"] / 1000
        low, high, hex_ratio, section, kc11, mc = window[p["material"]]
        assert low <= vc <= high
        hex_ = p["feed_per_tooth"] * (2 * math.sqrt(ae / d * (1 - ae / d)) if ae < d / 2 else 1)
        assert 0.5 * hex_ratio * d <= hex_ <= 1.5 * hex_ratio * d
        reach = min(1.0, (3 * d / p["tool_overhang"]) ** 2)
        assert ap * ae <= section * reach * d**2 and ap <= 2 * d
        assert ap + d / 2 <= p["tool_overhang"] <= 5 * d
        assert p["corner_radius"] <= d / 4
        vf = p["feed_per_tooth"] * p["n_teeth"] * p["spindle_speed"]
        assert vf <= 20000
        # Kienzle power at the mean chip thickness within 70 % of the S1 curve (the
        # machine's rated power, a DOE factor).
        hm = 2 * p["feed_per_tooth"] * (ae / d) / math.acos(1 - 2 * ae / d)
        power = ae * ap * vf * kc11 * hm**-mc / 60e3
        assert power <= 0.7 * p["rated_power"] * min(1.0, p["spindle_speed"] / 7000)
    # Not varied: the measuring interval takes its default, the coolant temperature is
    # fixed.
    same = ("coolant_temperature", "tool_measure_interval")
    assert design.factors == (*(k for k in SPINDLE.inputs if k not in same), "quantity")
    # doe.stratify: material, so every material has the same share of the points.
    assert Counter(cols["material"]) == {m: n // 5 for m in window}
    assert SPINDLE.doe is not None
    for key, f in SPINDLE.doe.factors.items():
        values = cols[key]
        if f.low is not None and f.high is not None:
            assert f.low <= values.min() and values.max() <= f.high
    assert all(type(p["n_teeth"]) is int and type(p["quantity"]) is int for p in design.points)
    assert all(type(p["coolant_on"]) is bool for p in design.points)
    assert all(type(p["replace_worn_tool"]) is bool for p in design.points)
    assert all(type(p["tool_measure_interval"]) is int for p in design.points)
    assert all(type(p["spindle_speed"]) is float for p in design.points)
    assert set(cols["finished_surface"]) == {"wall", "floor"}
    assert all(p["coolant_temperature"] == 20.0 for p in design.points)  # doe.fixed
    assert all(0.0 <= p["bearing_damage"] <= 1.5 for p in design.points)  # doe.factors
    assert all(p["tool_measure_interval"] == 0 for p in design.points)
    assert all(25.0 <= p["helix_angle"] <= 45.0 for p in design.points)


@pytest.mark.parametrize("method", SAMPLED)
def test_small_stratified_spindle_designs_never_run_out_of_candidates(method: str) -> None:
    # About 5 % of the box is valid: with one or two points per material, 50 draws per
    # point would fail by chance; a small design may always draw MIN_CANDIDATES.
    for seed in range(2 if method == "lhs" else 6):  # optimised LHS rounds cost 0.3 s
        for n in (1, 5):
            design = make_design(SPINDLE, n, method=method, seed=seed)
            cols = design.columns()
            quantity = cols.pop("quantity")
            assert len(design.points) == n
            assert np.all(SPINDLE.constraints_mask(cols, quantity))


def test_spindle_rejection_rate_matches_an_independent_estimate() -> None:
    """The share of valid candidates is the share of the box inside the constraints,
    estimated here by sampling the spindle's factor box with numpy directly, one
    material at a time: the design is stratified by material, so each material draws
    until it has its n / 5 points, and the overall share is the harmonic mean of the
    materials' shares."""
    rng = np.random.default_rng(99)
    m = 20_000  # per material
    assert SPINDLE.doe is not None and SPINDLE.doe.stratify == "material"
    shares = []
    for material in SPINDLE.inputs["material"].choice_names:
        box: dict[str, Any] = {"coolant_temperature": 20.0, "material": np.full(m, material)}
        for key, f in SPINDLE.doe.factors.items():
            low, high = float(f.low or 0), float(f.high or 0)  # set for every numeric factor
            if key == "material":
                continue
            if SPINDLE.factor_domain(key)[0] in ("boolean", "categorical"):
                choices = f.choices or SPINDLE.inputs[key].choice_names
                weights = np.asarray(f.weights or [1.0] * len(choices))
                box[key] = rng.choice(np.asarray(choices), m, p=weights / weights.sum())
            elif key in ("n_teeth", "quantity"):
                box[key] = rng.integers(int(low), int(high) + 1, m)
            elif f.distribution == "loguniform":
                box[key] = np.exp(rng.uniform(np.log(low), np.log(high), m))
            else:
                box[key] = rng.uniform(low, high, m)
        quantity = box.pop("quantity")
        shares.append(SPINDLE.constraints_mask(box, quantity).mean())
    share = len(shares) / sum(1 / s for s in shares)
    design = make_design(SPINDLE, 2000, method="random", seed=5)
    sigma = math.sqrt(share * (1 - share) * (1 / (len(shares) * m) + 1 / design.candidates))
    assert abs((design.candidates - design.rejected) / design.candidates - share) < 4 * sigma


def test_spindle_grid_is_refused_above_a_million_points() -> None:
    with pytest.raises(DoeError) as err:
        make_design(SPINDLE, 1, method="grid")
    # 18 real factors and n_teeth and quantity at 3 levels, 5 materials, 2 finished
    # surfaces, coolant on/off, tool-life management on/off
    assert str(err.value) == (
        "levels: 3 levels over 24 factors make 139,471,376,040 grid points, more than "
        "1,000,000; use fewer levels or another method"
    )
    assert 3**20 * 5 * 2 * 2 * 2 == 139_471_376_040


# ---- values filled in and their types --------------------------------------------------


def test_fixed_values_and_defaults_fill_every_input() -> None:
    spec = toy(
        {"x": {"low": 2, "high": 4}},
        fixed={"quantity": 7, "mat": "b", "speed": 250},
        constraints=[("z >= 2", "z at least 2")],  # fixed values only: one bool for all rows
    )
    design = make_design(spec, 20, method="random", seed=1)
    assert design.factors == ("x",)
    assert (design.candidates, design.rejected) == (20, 0)
    for p in design.points:
        assert list(p) == ["x", "speed", "z", "flag", "mat", "quantity"]
        assert {k: v for k, v in p.items() if k != "x"} == {
            "speed": 250.0,
            "z": 3,
            "flag": False,
            "mat": "b",
            "quantity": 7,
        }
        assert [type(p[k]) for k in p] == [float, float, int, bool, str, int]
        assert 2 <= p["x"] <= 4


def test_factor_values_are_plain_scalars_and_columns_typed() -> None:
    factors = {"x": {}, "z": {}, "flag": {}, "mat": {}, "quantity": {"low": 1, "high": 10}}
    design = make_design(toy(factors, fixed={}, quantity_integer=False), 50, method="sobol")
    assert design.factors == ("x", "z", "flag", "mat", "quantity")
    p = design.points[0]
    assert [type(p[k]) for k in p] == [float, float, int, bool, str, float]
    cols = design.columns()
    assert [cols[k].dtype for k in cols] == [
        np.float64,
        np.float64,
        np.int64,
        np.bool_,
        np.dtype(object),
        np.float64,
    ]
    np.testing.assert_array_equal(cols["mat"], [q["mat"] for q in design.points])


def test_a_fixed_value_breaking_a_constraint_rejects_everything() -> None:
    spec = toy({"x": {}}, fixed={"quantity": 5, "mat": "b"}, constraints=[("mat_is_a", "use a")])
    with pytest.raises(DoeError) as err:
        make_design(spec, 4, method="halton")
    assert str(err.value) == (
        "constraints: only 0 of 10000 candidates meet every constraint, 4 needed; most rejected "
        "by 'use a' (10000 candidates); widen the factor ranges or relax the constraints"
    )


# ---- distributions ---------------------------------------------------------------------


def test_integers_are_equally_likely() -> None:
    design = make_design(toy({"z": {}}), 3000, method="random", seed=2)
    counts = Counter(column(design, "z").tolist())
    assert sorted(counts) == [1, 2, 3, 4, 5]
    chi2 = sum((c - 600) ** 2 / 600 for c in counts.values())
    assert chi2 < stats.chi2.ppf(0.999, df=4)
    # A stratified design puts exactly n / 5 in each integer's cell.
    lhs = make_design(toy({"z": {}}), 100, method="lhs", seed=2)
    assert Counter(column(lhs, "z").tolist()) == {1: 20, 2: 20, 3: 20, 4: 20, 5: 20}


def test_categorical_and_boolean_weights_are_honoured() -> None:
    factors = {
        "mat": {"choices": ["a", "b", "c"], "weights": [5, 3, 2]},
        "flag": {"choices": [True, False], "weights": [0.8, 0.2]},
    }
    n = 3000
    design = make_design(toy(factors), n, method="random", seed=4)
    mats = Counter(column(design, "mat").tolist())
    flags = Counter(column(design, "flag").tolist())
    expected: list[tuple[Counter[Any], Any, float]]
    expected = [(mats, "a", 0.5), (mats, "b", 0.3), (mats, "c", 0.2)]
    expected += [(flags, True, 0.8), (flags, False, 0.2)]
    for counts, key, share in expected:
        assert abs(counts[key] - n * share) < 3 * math.sqrt(n * share * (1 - share))


def test_zero_weights_and_choice_subsets_are_never_left() -> None:
    factors = {"mat": {"choices": ["c", "b"], "weights": [1, 0]}, "flag": {"choices": [False]}}
    design = make_design(toy(factors), 200, method="halton", seed=1)
    assert set(column(design, "mat")) == {"c"}
    assert set(column(design, "flag").tolist()) == {False}


@pytest.mark.parametrize("method", ["random", "sobol"])
def test_loguniform_is_uniform_in_the_log(method: str) -> None:
    design = make_design(toy({"speed": {"distribution": "loguniform"}}), 2000, method=method)
    logs = np.log(column(design, "speed"))
    assert column(design, "speed").min() >= 1 and column(design, "speed").max() <= 1000
    top = math.log(1000)
    # mean of ln(speed) for ln(speed) ~ U(0, ln 1000); a uniform speed would give ~ 5.9
    assert abs(logs.mean() - top / 2) < 4 * top / math.sqrt(12 * 2000)
    assert stats.kstest(logs, stats.uniform(0, top).cdf).pvalue > 0.01


def test_normal_is_truncated_to_the_range() -> None:
    factor = {"distribution": "normal", "mean": 3, "std": 2, "low": 0, "high": 10}
    x = column(make_design(toy({"x": factor}), 4000, method="random", seed=8), "x")
    ref = stats.truncnorm((0 - 3) / 2, (10 - 3) / 2, loc=3, scale=2)
    assert x.min() >= 0 and x.max() <= 10
    assert abs(x.mean() - ref.mean()) < 4 * ref.std() / math.sqrt(4000)
    assert abs(x.std() - ref.std()) < 0.05 * ref.std()
    # Cutting at 0 moves the mean by 0.28, far beyond the tolerance above: clipping an
    # untruncated normal (mean ~3.02) would fail.
    assert ref.mean() - 3 > 0.25
    assert stats.kstest(x, ref.cdf).pvalue > 0.01


def test_triangular_follows_its_mode() -> None:
    factor = {"distribution": "triangular", "mode": 2, "low": 0, "high": 10}
    x = column(make_design(toy({"x": factor}), 3000, method="random", seed=6), "x")
    assert abs(x.mean() - 4.0) < 4 * math.sqrt((100 + 4 - 20) / 18 / 3000)  # (a + b + c) / 3
    assert stats.kstest(x, stats.triang(0.2, loc=0, scale=10).cdf).pvalue > 0.01


@pytest.mark.parametrize(("method", "n"), [("lhs", 50), ("sobol", 64)])
def test_each_of_n_bins_holds_exactly_one_point(method: str, n: int) -> None:
    factors = {"x": {}, "speed": {"distribution": "loguniform"}}
    design = make_design(toy(factors), n, method=method, seed=11)
    x_bins = np.floor(column(design, "x") / 10 * n)
    log_bins = np.floor(np.log(column(design, "speed")) / math.log(1000) * n)
    np.testing.assert_array_equal(np.sort(x_bins), np.arange(n))
    np.testing.assert_array_equal(np.sort(log_bins), np.arange(n))


# ---- grid ------------------------------------------------------------------------------


def test_grid_is_the_full_factorial_of_exact_levels() -> None:
    factors = {
        "x": {},
        "speed": {"distribution": "loguniform"},
        "z": {},
        "flag": {},
        "mat": {"choices": ["a", "c"]},
    }
    design = make_design(toy(factors), 1, method="grid", levels=4)
    assert len(design.points) == 4 * 4 * 4 * 2 * 2 == design.candidates
    assert design.rejected == 0
    rows = {tuple(p[k] for k in design.factors) for p in design.points}
    assert len(rows) == 256
    cols = design.columns()
    np.testing.assert_allclose(sorted(set(cols["x"])), [0, 10 / 3, 20 / 3, 10])
    np.testing.assert_allclose(sorted(set(cols["speed"])), [1, 10, 100, 1000])
    assert sorted(set(cols["z"].tolist())) == [1, 2, 4, 5]  # 1, 2.33, 3.67, 5 rounded
    assert set(cols["flag"].tolist()) == {True, False}
    assert set(cols["mat"]) == {"a", "c"}
    assert all(p["quantity"] == 5 for p in design.points)


def test_grid_takes_every_integer_when_there_are_few_and_ignores_the_distribution() -> None:
    factor = {"distribution": "normal", "mean": 1, "std": 0.1}
    design = make_design(toy({"z": {"low": 2, "high": 4}, "x": factor}), 999, method="grid")
    cols = design.columns()
    assert len(design.points) == 9
    assert sorted(set(cols["z"].tolist())) == [2, 3, 4]
    assert sorted(set(cols["x"].tolist())) == [0.0, 5.0, 10.0]


def test_grid_filters_by_the_constraints() -> None:
    spec = toy({"x": {}, "z": {}}, constraints=[("x + z <= 8", "x + z at most 8")])
    design = make_design(spec, 1, method="grid", levels=5)
    expected = [
        (x, z) for x, z in itertools.product([0, 2.5, 5, 7.5, 10], range(1, 6)) if x + z <= 8
    ]
    assert [(p["x"], p["z"]) for p in design.points] == expected
    assert (design.candidates, design.rejected) == (25, 25 - len(expected))


def test_a_grid_with_no_valid_point_is_refused() -> None:
    spec = toy({"x": {}}, constraints=[("x >= 20", "x cannot reach 20")])
    with pytest.raises(DoeError) as err:
        make_design(spec, 1, method="grid")
    assert str(err.value) == (
        "constraints: none of the 3 grid points meets every constraint; most rejected by "
        "'x cannot reach 20' (3 grid points); widen the factor ranges or relax the constraints"
    )


# ---- constraints while sampling --------------------------------------------------------


@pytest.mark.parametrize("method", SAMPLED)
def test_constrained_points_are_kept_in_draw_order(method: str) -> None:
    spec = toy({"x": {}, "z": {}}, constraints=[("x <= 2 * z", "x at most 2 z")])
    design = make_design(spec, 30, method=method, seed=7)
    assert len(design.points) == 30
    assert all(p["x"] <= 2 * p["z"] for p in design.points)
    assert design.rejected > 0 and design.candidates - design.rejected >= 30


@pytest.mark.parametrize("method", SAMPLED)
def test_too_few_valid_candidates_name_the_worst_constraint(method: str) -> None:
    spec = toy(
        {"x": {}},
        constraints=[("x >= 1", "x at least 1"), ("x >= 20", "x cannot reach 20")],
    )
    with pytest.raises(DoeError) as err:
        make_design(spec, 10, method=method)
    assert err.value.field == "constraints"
    assert str(err.value) == (
        "constraints: only 0 of 10000 candidates meet every constraint, 10 needed; most "
        "rejected by 'x cannot reach 20' (10000 candidates); widen the factor ranges or relax "
        "the constraints"
    )


def test_lhs_sizes_its_one_round_from_a_probe_of_the_box() -> None:
    # 10 % of x in [0, 10] is valid: a random probe of the box sizes the Latin
    # hypercube so that one round holds the n valid points, (n + 3 sqrt n) / 0.1,
    # instead of optimising an LHS of n first and throwing it away.
    spec = toy({"x": {}}, constraints=[("x >= 9", "x at least 9")])
    design = make_design(spec, 100, method="lhs", seed=4)
    assert len(design.points) == 100
    assert all(p["x"] >= 9 for p in design.points)
    assert 1000 <= design.candidates <= 1.2 * 130 / 0.1
    # A box with no constraint still gets an exact Latin hypercube of n.
    design = make_design(toy({"x": {}}), 50, method="lhs", seed=4)
    assert design.candidates == 50
    bins = np.floor(column(design, "x") / 10 * 50).astype(int)
    assert sorted(bins) == list(range(50))


def test_sobol_keeps_quiet_about_balance() -> None:
    spec = toy({"x": {}, "z": {}}, constraints=[("x <= 2 * z", "x at most 2 z")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert len(make_design(spec, 100, method="sobol").points) == 100
        assert len(make_design(spec, 64, method="sobol").points) == 64


# ---- reproducibility -------------------------------------------------------------------


@pytest.mark.parametrize("method", SAMPLED)
def test_same_arguments_same_design_other_seed_other_design(method: str) -> None:
    spec = toy({"x": {}, "z": {}, "mat": {}}, constraints=[("x <= 2 * z", "x at most 2 z")])
    first = make_design(spec, 25, method=method, seed=3)
    again = make_design(spec, 25, method=method, seed=3)
    other = make_design(spec, 25, method=method, seed=4)
    assert first == again
    assert first.points != other.points
    assert (first.method, first.seed, other.seed) == (method, 3, 4)


def test_spindle_design_is_reproducible() -> None:
    first = make_design(SPINDLE, 50, method="sobol", seed=12)
    assert first.points == make_design(SPINDLE, 50, method="sobol", seed=12).points
    assert first.points != make_design(SPINDLE, 50, method="sobol", seed=13).points


# ---- stratified designs -----------------------------------------------------------------


@pytest.mark.parametrize("method", SAMPLED)
def test_strata_are_exactly_balanced_and_every_prefix_too(method: str) -> None:
    spec = toy(
        {"x": {}, "z": {}, "mat": {"weights": [8, 1, 1]}},  # weights do not shape the strata
        constraints=[("x <= 2 * z + 4 * mat_is_a", "x at most 2 z (4 more for a)")],
        stratify="mat",
    )
    design = make_design(spec, 100, method=method, seed=5)
    mats = column(design, "mat").tolist()
    assert Counter(mats) == {"a": 34, "b": 33, "c": 33}  # n // k, the first n % k one more
    assert mats[:6] == ["a", "b", "c", "a", "b", "c"]  # round-robin
    for m in range(1, len(mats) + 1):
        counts = Counter(mats[:m])
        assert max(counts.values()) - min(counts.values()) <= 1
        assert len(counts) == min(m, 3)
    assert design.factors == ("x", "z", "mat")
    assert all(p["x"] <= 2 * p["z"] + 4 * (p["mat"] == "a") for p in design.points)
    assert design.rejected > 0 and design.candidates - design.rejected >= 100


def test_zero_weight_choices_get_no_stratum_and_booleans_stratify_too() -> None:
    factors = {"x": {}, "mat": {"choices": ["c", "a", "b"], "weights": [1, 0, 4]}, "flag": {}}
    mats = column(make_design(toy(factors, stratify="mat"), 11, method="lhs"), "mat").tolist()
    assert mats == ["c", "b"] * 5 + ["c"]
    flags = column(make_design(toy(factors, stratify="flag"), 7, method="sobol"), "flag")
    assert flags.tolist() == [True, False] * 3 + [True]


def test_fewer_points_than_strata_and_a_stratum_factor_alone() -> None:
    design = make_design(toy({"mat": {}}, stratify="mat"), 2, method="halton")
    assert column(design, "mat").tolist() == ["a", "b"]
    assert (design.candidates, design.rejected) == (2, 0)


@pytest.mark.parametrize("method", ["lhs", "sobol"])
def test_each_stratum_is_the_methods_design_with_the_choice_fixed(method: str) -> None:
    """A stratum is exactly the design of the spec with the choice fixed, from its own seed
    (constraints filtering that stratum alone); candidates and rejections add up."""
    constraints = [("x <= 2 * z + 6 * mat_is_c", "x at most 2 z (6 more for c)")]
    spec = toy({"x": {}, "z": {}, "mat": {}}, constraints=constraints, stratify="mat")
    design = make_design(spec, 20, method=method, seed=9)
    candidates = rejected = 0
    for position, (choice, count) in enumerate([("a", 7), ("b", 7), ("c", 6)]):
        alone = toy(
            {"x": {}, "z": {}}, fixed={"quantity": 5, "mat": choice}, constraints=constraints
        )
        own = make_design(alone, count, method=method, seed=_stratum_seed(9, position))
        assert [p for p in design.points if p["mat"] == choice] == own.points
        candidates, rejected = candidates + own.candidates, rejected + own.rejected
    assert (design.candidates, design.rejected) == (candidates, rejected)
    assert _stratum_seed(9, 0) != _stratum_seed(9, 1) != _stratum_seed(10, 1)


@pytest.mark.parametrize("method", SAMPLED)
def test_stratified_design_is_reproducible(method: str) -> None:
    spec = toy({"x": {}, "z": {}, "mat": {}}, stratify="mat")
    first = make_design(spec, 30, method=method, seed=3)
    assert first == make_design(spec, 30, method=method, seed=3)
    assert first.points != make_design(spec, 30, method=method, seed=4).points
    xs = {m: [p["x"] for p in first.points if p["mat"] == m] for m in "abc"}
    assert xs["a"] != xs["b"] != xs["c"]  # each stratum has a seed of its own


def test_grid_ignores_stratify() -> None:
    factors = {"x": {}, "mat": {"choices": ["a", "c"]}}
    plain = make_design(toy(factors), 1, method="grid")
    assert make_design(toy(factors, stratify="mat"), 1, method="grid") == plain


@pytest.mark.parametrize("method", SAMPLED)
def test_a_stratum_short_of_valid_points_is_named(method: str) -> None:
    spec = toy(
        {"x": {}, "mat": {}},
        constraints=[("x >= 20 * mat_is_b", "b needs x >= 20")],
        stratify="mat",
    )
    with pytest.raises(DoeError) as err:
        make_design(spec, 10, method=method)
    assert err.value.field == "constraints"
    assert str(err.value) == (
        "constraints: mat=b: only 0 of 10000 candidates meet every constraint, 3 needed; most "
        "rejected by 'b needs x >= 20' (10000 candidates); widen the factor ranges or relax "
        "the constraints"
    )


def test_a_boolean_stratum_is_named_true_or_false() -> None:
    spec = toy({"x": {}, "flag": {}}, constraints=[("x >= 20 * flag", "x")], stratify="flag")
    with pytest.raises(DoeError) as err:
        make_design(spec, 4, method="random")
    assert str(err.value).startswith("constraints: flag=true: only 0 of 10000 candidates")


@pytest.mark.parametrize(
    ("factors", "stratify", "message"),
    [
        (
            {"x": {}, "mat": {}, "flag": {}},
            "x",
            "doe.stratify: 'x' is a real factor; stratify needs a categorical or boolean "
            "factor (allowed: mat, flag)",
        ),
        (
            {"z": {}, "flag": {}},
            "z",
            "doe.stratify: 'z' is an integer factor; stratify needs a categorical or boolean "
            "factor (allowed: flag)",
        ),
        (
            {"x": {}, "mat": {}},
            "mta",
            "doe.stratify: 'mta' is not a DOE factor (did you mean 'mat'?)",
        ),
        (
            {"x": {}, "flag": {}},
            "mat",
            "doe.stratify: 'mat' is not a DOE factor (allowed: flag)",
        ),
        (
            {"x": {}},
            "quantity",
            "doe.stratify: 'quantity' is not a DOE factor (the DOE varies no categorical or "
            "boolean input)",
        ),
        ({"x": {}}, 5, "doe.stratify: expected text, got 5"),
    ],
)
def test_stratify_must_name_a_categorical_or_boolean_factor(
    factors: dict[str, Any], stratify: Any, message: str
) -> None:
    with pytest.raises(SpecError) as err:
        toy(factors, stratify=stratify)
    assert err.value.problems == [message]


def test_stratify_is_part_of_the_spec_hash() -> None:
    factors = {"x": {}, "mat": {}, "flag": {}}
    plain, by_mat = toy(factors), toy(factors, stratify="mat")
    assert len({plain.spec_hash, by_mat.spec_hash, toy(factors, stratify="flag").spec_hash}) == 3
    assert by_mat.doe is not None and by_mat.doe.stratify == "mat"


# ---- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        (
            {"method": "foo"},
            "method",
            "method: 'foo' is not one of lhs, sobol, halton, grid, random",
        ),
        ({"n": 0}, "n", "n: 0 must be a whole number >= 1"),
        ({"n": 2.5}, "n", "n: 2.5 must be a whole number >= 1"),
        ({"n": True}, "n", "n: true must be a whole number >= 1"),
        ({"seed": -1}, "seed", "seed: -1 must be a whole number >= 0"),
        ({"levels": 1}, "levels", "levels: 1 must be >= 2"),
        ({"levels": 2.5}, "levels", "levels: 2.5 must be a whole number"),
    ],
)
def test_arguments_are_checked(kwargs: dict[str, Any], field: str, message: str) -> None:
    args: dict[str, Any] = {"n": 5, **kwargs}
    with pytest.raises(DoeError) as err:
        make_design(toy({"x": {}}), **args)
    assert str(err.value) == message
    assert err.value.field == field
    assert isinstance(err.value, ValueError)


def test_whole_floats_are_accepted() -> None:
    design = make_design(toy({"x": {}}), 4.0, method="random", seed=2.0)  # type: ignore[arg-type]
    assert len(design.points) == 4 and design.seed == 2 and type(design.seed) is int


@pytest.mark.parametrize("doe", [{"fixed": {"quantity": 5}}, None])
def test_a_spec_without_factors_is_refused(doe: dict[str, Any] | None) -> None:
    data = toy_data({})
    data["doe"] = doe
    with pytest.raises(DoeError) as err:
        make_design(TwinSpec.from_dict(data), 5)
    assert str(err.value) == "doe.factors: spec 'toy' varies nothing; declare at least one factor"


def test_importing_the_module_stays_light() -> None:
    code = "import physics.doe, sys; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_lhs_of_a_nearly_empty_box_draws_a_full_round_at_the_cap() -> None:
    # 3 % of x in [0, 10] is valid, as the spindle's GJL-250 stratum keeps 3 % of its
    # box. An LHS keeps only its last round, so the cap (50 candidates a point, here
    # 20,000) bounds one round, not the rounds' sum (which stopped the demo's design).
    spec = toy({"x": {}}, constraints=[("x >= 9.7", "x near its top")])
    design = make_design(spec, 400, method="lhs", seed=3)
    x = np.array([p["x"] for p in design.points])
    assert len(x) == 400 and (x >= 9.7).all()

"""Verification designs: the spec's slices and partitions, the emphasis warp of a design,
and each refusal worded exactly."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from physics.doe import DoeError, make_design, warp
from physics.spec import SpecError, TwinSpec, load_spec
from physics.verification import (
    describe_slice,
    partition_masks,
    slice_spec,
    slices_of,
)
from tests.physics.test_doe import SPINDLE, toy_data


def test_warp_corners_is_the_arcsine_law_and_interior_stays_off_the_bounds() -> None:
    u = (np.arange(100_000) + 0.5) / 100_000
    corners = warp("corners", u)
    # arcsine CDF F(x) = (2 / pi) asin(sqrt(x)): 10.1 % of the mass below 0.025
    assert np.mean(corners < 0.025) == pytest.approx(2 / math.pi * math.asin(math.sqrt(0.025)),
                                                     abs=1e-4)  # fmt: skip
    assert np.mean(corners > 0.975) == pytest.approx(np.mean(corners < 0.025), abs=1e-4)
    assert corners.min() >= 0.0 and corners.max() < 1.0
    interior = warp("interior", u)
    assert interior.min() == pytest.approx(0.1, abs=1e-5)
    assert interior.max() == pytest.approx(0.9, abs=1e-5)
    assert np.array_equal(warp("uniform", u), u)


def test_a_corner_design_reaches_the_bounds_an_interior_one_keeps_off() -> None:
    spec = TwinSpec.from_dict(toy_data({"x": {}, "speed": {"distribution": "loguniform"}}))
    n = 4000
    uniform = make_design(spec, n, method="random", seed=3).columns()
    corners = make_design(spec, n, method="random", seed=3, emphasis="corners").columns()
    interior = make_design(spec, n, method="random", seed=3, emphasis="interior").columns()
    near = lambda x: np.mean((x < 0.25) | (x > 9.75))  # noqa: E731  (2.5 % of the range)
    assert near(uniform["x"]) == pytest.approx(0.05, abs=0.015)
    assert near(corners["x"]) == pytest.approx(0.2, abs=0.03)
    assert interior["x"].min() >= 1.0 and interior["x"].max() <= 9.0
    # a loguniform factor is warped in its own (log) scale: 10^(0.1 * 3) = 2 rpm at least
    assert interior["speed"].min() >= 10 ** 0.3 - 1e-9
    assert interior["speed"].max() <= 10 ** 2.7 + 1e-9


def test_an_emphasis_is_refused_by_name_and_on_a_grid() -> None:
    spec = TwinSpec.from_dict(toy_data({"x": {}}))
    with pytest.raises(DoeError) as exc:
        make_design(spec, 10, method="random", emphasis="edges")
    assert str(exc.value) == (
        "emphasis: 'edges' is not one of uniform, corners, interior, or a mixture "
        "EMPHASIS:SHARE such as corners:0.3"
    )
    with pytest.raises(DoeError) as exc:
        make_design(spec, 10, method="grid", emphasis="corners")
    assert str(exc.value) == "emphasis: 'corners' needs a sampled design; a grid has its levels"
    with pytest.raises(DoeError) as exc:
        make_design(spec, 10, method="grid", emphasis="corners:0.3")
    assert str(exc.value) == (
        "emphasis: 'corners:0.3' needs a sampled design; a grid has its levels"
    )
    for bad in ("corners:1.5", "uniform:0.3", "edges:0.2", "corners:x", "corners:0"):
        with pytest.raises(DoeError) as exc:
            make_design(spec, 10, method="random", emphasis=bad)
        assert str(exc.value) == (
            f"emphasis: {bad!r} is not a mixture EMPHASIS:SHARE with EMPHASIS one of "
            "corners, interior and 0 < SHARE < 1"
        )


def test_a_mixture_holds_its_share_of_emphasised_points_in_every_prefix() -> None:
    """corners:0.3 is a uniform design of 70 % and a corner-heavy one of 30 % (its own
    seed), the corner points evenly spread so that a prefix keeps the mixture."""
    spec = TwinSpec.from_dict(toy_data({"x": {}}))
    n = 1000
    mixed = make_design(spec, n, method="lhs", seed=4, emphasis="corners:0.3")
    uniform = make_design(spec, 700, method="lhs", seed=4)
    x = mixed.columns()["x"]
    assert len(x) == n
    corner_rows = np.floor((np.arange(300) + 0.5) * n / 300).astype(int)
    plain_rows = np.setdiff1d(np.arange(n), corner_rows)
    # The uniform part is the plain design of 700, in order, with no point lost.
    np.testing.assert_array_equal(x[plain_rows], uniform.columns()["x"])
    # The other 300 follow the arcsine law: 20 % within 2.5 % of a bound (5 % plain).
    edge = lambda v: np.mean((v < 0.25) | (v > 9.75))  # noqa: E731
    assert edge(x[corner_rows]) == pytest.approx(0.2, abs=0.05)
    assert edge(x[plain_rows]) == pytest.approx(0.05, abs=0.02)
    # Every prefix of 100 holds 30 corner points, within one.
    for m in range(100, n + 1, 100):
        assert abs(np.sum(corner_rows < m) - 0.3 * m) <= 1
    # Same arguments, same design.
    again = make_design(spec, n, method="lhs", seed=4, emphasis="corners:0.3")
    np.testing.assert_array_equal(again.columns()["x"], x)


def test_the_spindle_slices_narrow_its_doe_and_keep_its_hash() -> None:
    assert list(slices_of(SPINDLE)) == ["uniform", "corners", "interior", "shop"]
    shop = slice_spec(SPINDLE, "shop")
    assert shop.doe is not None and SPINDLE.doe is not None
    assert (shop.doe.factors["tool_wear"].low, shop.doe.factors["tool_wear"].high) == (0.15, 0.3)
    assert shop.doe.factors["warmup"].low == 0.7
    assert SPINDLE.doe.factors["tool_wear"].low == 0  # the spec itself is untouched
    cols = make_design(shop, 200, method="random", seed=1).columns()
    assert cols["tool_wear"].min() >= 0.15 and cols["warmup"].min() >= 0.7
    assert describe_slice("shop", slices_of(SPINDLE)["shop"]).startswith(
        "shop: uniform, warmup 0.7..1, tool_wear 0.15..0.3"
    )
    # how a surrogate is verified is not what it learns: the hash ignores the section
    path = SPINDLE.source_dir / "spindle.yaml"  # type: ignore[operator]
    data = yaml.safe_load(path.read_text())
    del data["verification"]
    without = TwinSpec.from_dict(data, source_dir=SPINDLE.source_dir)
    assert without.spec_hash == SPINDLE.spec_hash
    assert list(slices_of(without)) == ["uniform"]


def test_partitions_split_rows_by_choice() -> None:
    frame = pd.DataFrame({"material": ["steel_c45", "ti6al4v", "steel_c45"],
                          "finished_surface": ["wall", "wall", "floor"]})  # fmt: skip
    masks = partition_masks(SPINDLE, frame)
    assert list(masks) == ["material=steel_c45", "material=ti6al4v", "finished_surface=wall",
                           "finished_surface=floor"]  # fmt: skip
    assert masks["material=steel_c45"].tolist() == [True, False, True]


def _with_verification(section: dict[str, Any]) -> list[str]:
    data = toy_data({"x": {"low": 2, "high": 8}, "mat": {}})
    data["verification"] = section
    with pytest.raises(SpecError) as exc:
        TwinSpec.from_dict(data)
    return exc.value.problems


def test_verification_mistakes_are_named() -> None:
    assert _with_verification({
        "slices": {"Edge": {}, "band": {"factors": {"y": {"low": 1}, "x": {"low": 9}}}},
        "partitions": ["x", "mat", "mat", "flag"],
    }) == [
        "verification.slices.Edge: 'Edge' is not a valid name (lower-case letters, digits "
        "and _, starting with a letter)",
        "verification.slices.band.factors.y: not a DOE factor",
        "verification.slices.band.factors.x.low: 9 is not below high 8",
        "verification.partitions[0]: 'x' is a real factor; a partition needs a categorical "
        "or boolean one",
        "verification.partitions[2]: 'mat' is listed twice",
        "verification.partitions[3]: 'flag' is not a DOE factor",
    ]  # fmt: skip
    assert _with_verification({"slices": {}}) == [
        "verification.slices: empty; give at least one slice"
    ]
    assert _with_verification({"slices": {"s": {"design": "edges"}}})[0].startswith(
        "verification.slices.s.design:"
    )


def test_a_slice_band_outside_the_input_is_refused() -> None:
    problems = _with_verification({"slices": {"s": {"factors": {"x": {"high": 12}}}}})
    assert problems == ["verification.slices.s.factors.x.high: 12 is above the input's max 10"]


def test_the_spindle_spec_file_loads_with_its_verification() -> None:
    spec = load_spec(SPINDLE.source_dir / "spindle.yaml")  # type: ignore[operator]
    assert spec.verification is not None
    assert spec.verification.partitions == ["material", "finished_surface"]

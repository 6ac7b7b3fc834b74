"""Derived blocks (physics.blocks): steps, grids and their crossing reduction, checked
against values worked out by hand, and each mistake named exactly."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from physics.blocks import crossing_min
from physics.spec import SpecError, TwinSpec
from tests.physics.test_spec import RAW


def with_derived(**derived: Any) -> dict[str, Any]:
    data = copy.deepcopy(RAW)
    data["derived"].update(derived)
    return data


def spec_of(**derived: Any) -> TwinSpec:
    return TwinSpec.from_dict(with_derived(**derived))


def problems(**derived: Any) -> list[str]:
    with pytest.raises(SpecError) as err:
        TwinSpec.from_dict(with_derived(**derived))
    return err.value.problems


def grid(value: str, phase: str, points: int = 12, **steps: str) -> dict[str, Any]:
    return {"steps": steps, "over": "u", "points": points,
            "at_each": {"y": value, "p": phase},
            "min_at_crossings": [{"value": "y", "phase": "p"}]}  # fmt: skip


def test_steps_give_the_value_of_the_written_out_expression() -> None:
    spec = spec_of(
        reach_area={
            "steps": {"r": "tool_overhang / tool_diameter", "a": "pi * r ** 2"},
            "value": "a + 1",
        },
        reach_check="pi * (tool_overhang / tool_diameter) ** 2 + 1",
    )
    names = spec.namespace({"tool_overhang": np.array([30.0, 50.0]),
                            "tool_diameter": np.array([10.0, 8.0])})  # fmt: skip
    np.testing.assert_allclose(names["reach_area"], [np.pi * 9 + 1, np.pi * 6.25**2 + 1])
    np.testing.assert_array_equal(names["reach_area"], names["reach_check"])
    row = spec.derived_exprs["reach_area"].evaluate_row({"tool_overhang": 30.0,
                                                        "tool_diameter": 10.0})  # fmt: skip
    assert row == pytest.approx(np.pi * 9 + 1, rel=1e-15)
    assert "r" not in names and "a" not in names  # a block's steps are its own


def test_a_linear_value_is_read_exactly_where_the_phase_passes_a_whole_number() -> None:
    # phase 10 u - 0.3 passes n = 0..9 at u = (n + 0.3) / 10; y = 2 - u is linear, so the
    # interpolation is exact: the least is at n = 9, 2 - 0.93.
    spec = spec_of(g=grid("2 - u", "10 * u - 0.3"))
    assert spec.namespace({})["g"] == pytest.approx(1.07, rel=1e-12)
    # not finite beyond u = 0.9: the pairs (0.818, 0.909) and (0.909, 1) are skipped, so
    # n = 8 (u = 0.83) goes too; n = 7 at u = 0.73 is the least left
    spec = spec_of(g=grid("inf if u > 0.9 else 2 - u", "10 * u - 0.3"))
    assert spec.namespace({})["g"] == pytest.approx(1.27, rel=1e-12)


def test_several_whole_numbers_in_one_step_take_the_smaller_point_and_none_is_inf() -> None:
    # 30 u over 12 points passes 2-3 whole numbers per step: the smaller end, 2 - 1
    assert spec_of(g=grid("2 - u", "30 * u")).namespace({})["g"] == 1.0
    # a phase that only falls, or stays between two whole numbers, crosses nothing
    assert spec_of(g=grid("2 - u", "5 - 3 * u")).namespace({})["g"] == np.inf
    assert spec_of(g=grid("2 - u", "0.2 + 0.5 * u")).namespace({})["g"] == np.inf
    # below zero does not count: -3.5 .. -0.5 passes -3, -2, -1 only
    assert spec_of(g=grid("2 - u", "3 * u - 3.5")).namespace({})["g"] == np.inf


def test_a_grid_reads_the_spec_names_per_row_and_its_steps() -> None:
    # y = d (1 + u), phase (k u) with k = overhang / 10: the first whole number, 1, at
    # u = 10 / overhang; y there d (1 + 10 / overhang)
    spec = spec_of(g=grid("tool_diameter * (1 + u)", "k * u", points=101,
                          k="tool_overhang / 10"))  # fmt: skip
    names = spec.namespace({"tool_diameter": np.array([10.0, 6.0]),
                            "tool_overhang": np.array([40.0, 20.0])})  # fmt: skip
    np.testing.assert_allclose(names["g"], [10.0 * 1.25, 6.0 * 1.5], rtol=1e-12)
    row = spec.derived_exprs["g"].evaluate_row({"tool_diameter": 6.0, "tool_overhang": 20.0})
    assert row == pytest.approx(9.0, rel=1e-12)


def test_crossing_min_of_two_pairs_is_the_lesser() -> None:
    u = np.linspace(0, 1, 11)
    a = crossing_min(np.stack([3 - u, 5 - u]), np.stack([4 * u, 4 * u - 0.5]))
    np.testing.assert_allclose(a, [2.0, 4.125])


def test_block_mistakes_are_named() -> None:
    assert problems(g={"steps": {"tool_diameter": "1"}, "value": "2"}) == [
        "derived.g.steps.tool_diameter: 'tool_diameter' is already input 'tool_diameter'; "
        "a block's names are its own"
    ]
    assert problems(g={"steps": {"a": "1", "b": "a + zz"}, "value": "b"}) == [
        "derived.g.steps.b: unknown name 'zz'; expressions can use inputs, derived values "
        "and quantity"
    ]
    assert problems(g=grid("2 - u", "10 * u") | {
        "min_at_crossings": [{"value": "y", "phase": "q"}]}) == [
        "derived.g.min_at_crossings[0].phase: 'q' is not a value of at_each"
    ]  # fmt: skip
    assert problems(g=grid("2 - u", "u") | {"value": "1"}) == [
        "derived.g: a block has either a value or a grid (over, points, at_each, "
        "min_at_crossings or sum_of), not both"
    ]
    assert problems(g={"over": "u", "points": 5, "at_each": {"y": "u"}}) == [
        "derived.g: a block needs a value, or a grid: missing min_at_crossings or sum_of"
    ]
    assert problems(g=grid("2 - u", "u") | {"vlue": "1"}) == [
        "derived.g.vlue: unknown key (did you mean 'value'?)"
    ]
    assert problems(g=3) == ["derived.g: expected text, got 3"]
    few = problems(g=grid("2 - u", "u", points=2))
    assert few == ["derived.g.points: Input should be greater than or equal to 3"]
    # the locals of a block are not names of the spec
    assert problems(g=grid("2 - u", "u"), h="y + 1") == [
        "derived.h: unknown name 'y'; expressions can use inputs, derived values and quantity"
    ]


def test_a_block_changes_the_spec_hash_and_only_its_content_counts() -> None:
    a = spec_of(g=grid("2 - u", "10 * u"))
    b = spec_of(g=grid("2 - u", "10*u"))  # the same expression, written otherwise
    c = spec_of(g=grid("2 - u", "10 * u", points=13))
    assert a.spec_hash == b.spec_hash != c.spec_hash


def across(value: str, phase: str, listed: list[Any], points: int = 11) -> dict[str, Any]:
    return grid(value, phase, points) | {"across": {"b": listed}}


def test_a_grid_across_listed_values_is_the_least_over_them_and_never_crosses_between() -> None:
    # b = 1: phase 4 u passes 1..4 at u = n / 4 and y = 3 - u is least at u = 1 (2); b = 2:
    # phase 4 u - 0.5 passes 1..3 at u = 0.375, 0.625, 0.875 and y = 5 - u is least there
    # (4.125): test_crossing_min_of_two_pairs_is_the_lesser, as one block
    spec = spec_of(g=across("1 + 2 * b - u", "4 * u - 0.5 * (b - 1)", [1, 2]))
    assert spec.namespace({})["g"] == pytest.approx(2.0, rel=1e-12)
    # with b = 2 alone, its own lobes: 4.125
    assert spec_of(g=across("1 + 2 * b - u", "4 * u - 0.5 * (b - 1)", [2, 2])).namespace(
        {})["g"] == pytest.approx(4.125, rel=1e-12)  # fmt: skip
    # the phase runs 0..0.9 for b = 0 and 1..1.9 for b = 1: each stays within one whole
    # number, so nothing is crossed, though the flattened grid would pass 1 between them
    assert spec_of(g=across("2 - u", "b + 0.9 * u", [0, 1])).namespace({})["g"] == np.inf
    # per row, and a value that does not use b (the phase does) is read for each b
    spec = spec_of(g=across("tool_diameter * (1 + u)", "b * u", [2, 4], points=101))
    names = spec.namespace({"tool_diameter": np.array([10.0, 6.0])})
    np.testing.assert_allclose(names["g"], [12.5, 7.5], rtol=1e-12)  # b = 4: u = 1/4
    row = spec.derived_exprs["g"].evaluate_row({"tool_diameter": 6.0})
    assert row == pytest.approx(7.5, rel=1e-12)


def test_across_mistakes_are_named_and_it_changes_the_hash() -> None:
    assert problems(g=across("2 - u", "b * u", [1])) == [
        "derived.g.across.b: [1.0]; expected 2 to 16 finite numbers"
    ]
    assert problems(g=across("2 - u", "b * u", [1, float("nan")])) == [
        "derived.g.across.b[1]: nan is not a finite number"
    ]
    assert problems(g=grid("2 - u", "u") | {"across": {"b": [1, 2], "c": [1, 2]}}) == [
        "derived.g.across: 2 names (b, c); a grid runs across one listed parameter at most"
    ]
    assert problems(g=across("2 - u", "u", [1, 2]) | {"across": {"u": [1, 2]}}) == [
        "derived.g.across: 'u' is already a name of this block"
    ]
    assert problems(g={"steps": {}, "value": "1", "across": {"b": [1, 2]}}) == [
        "derived.g: across is a second parameter of a grid; a block with a value has none"
    ]
    assert problems(g=across("2 - u", "b * u", ["x", 2])) == [
        "derived.g.across.b[0]: 'x' is not a number"
    ]
    plain = spec_of(g=grid("2 - u", "10 * u"))
    assert spec_of(g=across("2 - u", "10 * u", [1, -1])).spec_hash != plain.spec_hash
    assert spec_of(g=grid("2 - u", "10 * u") | {"across": {}}).spec_hash == plain.spec_hash


def summed(value: str, points: int, **extra: Any) -> dict[str, Any]:
    return {"steps": {}, "over": "u", "points": points, "at_each": {"y": value},
            "sum_of": "y"} | extra  # fmt: skip


GAUSS4 = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526]


def test_a_grid_summed_over_its_points_and_listed_values() -> None:
    # u = 0, 1/4, ..., 1: the squares sum to 1.875; across b = 1, 2: 3 * (0 + ... + 1)
    assert spec_of(g=summed("u ** 2", 5)).namespace({})["g"] == pytest.approx(1.875, rel=1e-15)
    spec = spec_of(g=summed("b * u", 5, across={"b": [1, 2]}))
    assert spec.namespace({})["g"] == pytest.approx(7.5, rel=1e-15)
    # 4-point Gauss-Legendre is exact for degree 7: the integral of x^6 over [0, L] per row
    quad = summed("w * (span / 2 * (1 + x)) ** 6", 3, across={"x": GAUSS4})
    quad["at_each"] = {"w": "(0.3478548451374538 if abs(x) > 0.5 else 0.6521451548625461)"
                            " * span / 2 * (u > 0.75)", "y": quad["at_each"]["y"]}  # fmt: skip
    quad["steps"] = {"span": "tool_overhang / 10"}
    spec = spec_of(g=quad)  # u = 0, 0.5, 1: only the last point weighs
    overhang = np.array([10.0, 25.0, 80.0])
    got = spec.namespace({"tool_overhang": overhang})["g"]
    np.testing.assert_allclose(got, (overhang / 10) ** 7 / 7, rtol=1e-13)
    row = spec.derived_exprs["g"].evaluate_row({"tool_overhang": 25.0})
    assert row == pytest.approx(2.5**7 / 7, rel=1e-13)


def test_sum_mistakes_are_named() -> None:
    assert problems(g=summed("u", 4) | {"sum_of": "z"}) == [
        "derived.g.sum_of: 'z' is not a value of at_each"
    ]
    assert problems(g=summed("tool_diameter * 2", 4)) == [
        "derived.g.sum_of: 'y' does not vary with 'u'; a sum runs over the points of the grid"
    ]
    assert problems(g=summed("u", 4, across={"b": [1, 2]})) == [
        "derived.g.sum_of: 'y' does not vary with 'u' and 'b'; a sum runs over the points "
        "of the grid"
    ]
    both = summed("u", 4) | {"min_at_crossings": [{"value": "y", "phase": "y"}]}
    assert problems(g=both) == [
        "derived.g: a grid is reduced by min_at_crossings or by sum_of, not both"
    ]
    a = spec_of(g=summed("u ** 2", 5))
    assert a.spec_hash != spec_of(g=summed("u ** 3", 5)).spec_hash
    assert a.spec_hash == spec_of(g=summed("u**2", 5)).spec_hash

"""The expression language: values against hand computation, and every refusal."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from physics.expr import ExpressionError, compile_expr
from tests._trained import random_inputs


def ev(text: str, **values: float) -> float:
    result = compile_expr(text, field="f").evaluate(values)
    assert isinstance(result, float)
    return result


def test_arithmetic_matches_hand_computation() -> None:
    assert ev("pi * d * n / 1000", d=12.0, n=8000.0) == pytest.approx(301.59289474462014)
    assert ev("60 * L / (fz * z * n) + t", L=1500, fz=0.1, z=3, n=8000, t=60) == 97.5
    assert ev("2 ** 10 - 7 % 3") == 1023.0
    assert ev("-x ** 2", x=3) == -9.0  # power binds tighter than unary minus, as in Python
    assert ev("-7 % 3") == 2.0  # Python's sign rule for %
    assert ev("+x", x=4) == 4.0


def test_functions_and_constant() -> None:
    assert ev("sqrt(16) + abs(-2) + exp(0) + log(1)") == 7.0
    assert ev("min(3, 1, 2) + max(3, 1, 2)") == 4.0
    assert ev("floor(2.7) + ceil(2.1)") == 5.0
    assert ev("sin(pi / 2) + cos(0) + tan(0)") == pytest.approx(2.0)
    assert ev("acos(1) + asin(1) + atan(1)") == pytest.approx(math.pi / 2 + math.pi / 4)


def test_comparisons_and_logic_give_one_or_zero() -> None:
    assert ev("1 < x <= 3", x=3) == 1.0
    assert ev("1 < x <= 3", x=1) == 0.0
    assert ev("x == 2 and not y != 5", x=2, y=5) == 1.0
    assert ev("x > 5 or y > 5", x=1, y=2) == 0.0
    assert ev("x >= 2 and x < 3 or x == 10", x=10) == 1.0
    assert ev("(x > 1) * 10 + True", x=2) == 11.0


def test_conditional() -> None:
    assert ev("a if c > 0 else b", a=1, b=2, c=1) == 1.0
    assert ev("a if c > 0 else b", a=1, b=2, c=-1) == 2.0


def test_names_are_the_free_variables() -> None:
    expr = compile_expr("pi * max(a, b) if c else sqrt(d)", field="f")
    assert expr.names == frozenset({"a", "b", "c", "d"})
    assert compile_expr("2 * pi", field="f").names == frozenset()


def test_vectorised_evaluation_matches_numpy() -> None:
    n = np.array([1000.0, 8000.0, 24000.0])
    d = np.array([6.0, 12.0, 25.0])
    expr = compile_expr("pi * d * n / 1000 if n < 10000 else -1", field="f")
    np.testing.assert_array_equal(
        expr.evaluate({"d": d, "n": n}), [np.pi * 6 * 1000 / 1000, np.pi * 12 * 8000 / 1000, -1.0]
    )
    mask = compile_expr("x > 1 and x < 3 or x == 5", field="f").evaluate(
        {"x": np.array([0.0, 2.0, 3.0, 5.0])}
    )
    np.testing.assert_array_equal(mask, [0.0, 1.0, 0.0, 1.0])
    # A scalar broadcasts against an array; min/max are element-wise.
    both = compile_expr("min(x, 2) + max(x, y)", field="f").evaluate(
        {"x": np.array([1.0, 3.0]), "y": 2.5}
    )
    np.testing.assert_array_equal(both, [1.0 + 2.5, 2.0 + 3.0])


def test_floating_point_trouble_gives_inf_or_nan() -> None:
    assert ev("1 / x", x=0) == math.inf
    assert math.isnan(ev("sqrt(x)", x=-1))


def test_missing_value_is_named() -> None:
    expr = compile_expr("a * b + c", field="stop_time")
    with pytest.raises(ExpressionError) as err:
        expr.evaluate({"b": 1.0})
    assert str(err.value) == "stop_time: 'a * b + c' needs a value for 'a', 'c'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo.bar", "'foo.bar' uses attribute access, which is not allowed"),
        ("x[0]", "'x[0]' uses subscripting, which is not allowed"),
        ("x[1:2]", "'x[1:2]' uses subscripting, which is not allowed"),
        ("(lambda: 1)()", "'(lambda: 1)()' calls something that is not a function name"),
        ("lambda: 1", "'lambda: 1' uses a lambda, which is not allowed"),
        ("'steel'", "\"'steel'\" uses the string 'steel', which is not allowed"),
        ("None", "'None' uses the constant None, which is not allowed"),
        ("1j", "'1j' uses the constant 1j, which is not allowed"),
        ("[1, 2]", "'[1, 2]' uses a list, which is not allowed"),
        ("(1, 2)", "'(1, 2)' uses a tuple, which is not allowed"),
        ("{1: 2}", "'{1: 2}' uses a dict, which is not allowed"),
        ("[x for x in y]", "'[x for x in y]' uses a comprehension, which is not allowed"),
        ("(y := 2)", "'(y := 2)' uses an assignment expression, which is not allowed"),
        ("f'{x}'", "\"f'{x}'\" uses an f-string, which is not allowed"),
        ("x // 2", "'x // 2' uses the operator '//', which is not allowed"),
        ("x & 1", "'x & 1' uses the operator '&', which is not allowed"),
        ("~x", "'~x' uses the operator '~', which is not allowed"),
        ("x is None", "'x is None' uses the comparison 'is', which is not allowed"),
        ("x in y", "'x in y' uses the comparison 'in', which is not allowed"),
        (
            "__import__('os')",
            "\"__import__('os')\" calls the unknown function '__import__' "
            "(allowed: abs, acos, asin, atan, atan2, ceil, cos, exp, floor, log, max, min, sin, "
            "sqrt, tan)",
        ),
        (
            "foo(1)",
            "'foo(1)' calls the unknown function 'foo' (allowed: abs, acos, asin, atan, atan2, "
            "ceil, cos, exp, floor, log, max, min, sin, sqrt, tan)",
        ),
        ("sqrt", "'sqrt' uses the function 'sqrt' without calling it"),
        ("sqrt(x=1)", "'sqrt(x=1)' uses keyword arguments, which is not allowed"),
        ("max(*x)", "'max(*x)' uses argument unpacking, which is not allowed"),
        ("sqrt(1, 2)", "'sqrt(1, 2)' calls sqrt() with 2 arguments; it takes 1"),
        ("min(1)", "'min(1)' calls min() with 1 argument; it takes at least 2"),
        ("x +", "'x +' is not a valid expression (invalid syntax)"),
        ("x = 1", "'x = 1' is not a valid expression (invalid syntax at column 3)"),
    ],
)
def test_refused_constructs(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as err:
        compile_expr(text, field="stop_time")
    assert str(err.value) == f"stop_time: {message}"


def test_text_is_required() -> None:
    with pytest.raises(ExpressionError) as err:
        compile_expr(3600, field="stop_time")  # type: ignore[arg-type]
    assert str(err.value) == "stop_time: expected an expression as text, got 3600"


# Row-by-row evaluation (Python floats) must give what the numpy tree gives, including
# where Python raises and numpy returns inf or nan.
ROW_CASES = [
    ("pi * d * n / 1000", {"d": 12.0, "n": 8000.0}),
    ("-7 % 3 + x ** 0.5", {"x": 2.0}),
    ("a if a < b else b - 1", {"a": 3.0, "b": 2.0}),
    ("a < b < c", {"a": 1.0, "b": 2.0, "c": 2.0}),
    ("(a > 0 and b > 0) + (not a) + (a or b)", {"a": 0.0, "b": 1.0}),
    ("floor(x) + ceil(x) + atan(x) + cos(x)", {"x": -2.5}),
    ("1 / x", {"x": 0.0}),  # Python: ZeroDivisionError; numpy: inf
    ("x % 0", {"x": 1.0}),  # nan
    ("log(x) + sqrt(x)", {"x": -1.0}),  # nan
    ("log(x)", {"x": 0.0}),  # -inf
    ("exp(x)", {"x": 1000.0}),  # inf
    ("x ** 0.5", {"x": -4.0}),  # Python's ** would give a complex number; numpy nan
    ("10 ** x", {"x": 400.0}),  # overflow: inf
    ("min(x - x, 1) + max(2, y)", {"x": math.inf, "y": 1.0}),  # nan propagates
    ("acos(x)", {"x": 2.0}),  # nan
]


@pytest.mark.parametrize(("text", "values"), ROW_CASES, ids=[t for t, _ in ROW_CASES])
def test_a_row_evaluates_as_the_numpy_tree_does(text: str, values: dict[str, float]) -> None:
    expr = compile_expr(text, field="f")
    np.testing.assert_equal(expr.evaluate_row(values), expr.evaluate(values))


def test_a_missing_name_in_a_row_names_it() -> None:
    with pytest.raises(ExpressionError, match=r"f: 'a \+ b' needs a value for 'b'"):
        compile_expr("a + b", field="f").evaluate_row({"a": 1.0})


def test_the_spindle_constraints_read_only_their_inputs(spindle_spec: object) -> None:
    """Redrawing every input outside ``constraint_inputs`` (and the quantity) leaves
    each constraint of 200 random rows as it was, while the inputs it names do move
    them; the constraints-only namespace gives the same constraint values."""
    from physics.spec import TwinSpec

    spec = spindle_spec
    assert isinstance(spec, TwinSpec)
    keys = spec.constraint_inputs
    assert {"material", "spindle_speed", "tool_diameter"} <= set(keys)
    assert not {"quantity", "tool_wear", "bearing_damage", "ambient_temperature"} & set(keys)
    rng = np.random.default_rng(11)
    n = 200
    values = random_inputs(spec, rng, n)
    other = random_inputs(spec, rng, n)
    quantity = rng.integers(1, 100, n).astype(float)

    def constraints(v: dict[str, np.ndarray], q: np.ndarray, **kw: Any) -> np.ndarray:
        names = spec.namespace(v, q, **kw)
        return np.array([np.broadcast_to(e.evaluate(names), (n,)) for e in spec.constraint_exprs])

    base = constraints(values, quantity)
    assert 0 < base.sum() < base.size  # some rows fail a constraint, some pass
    kept = {k: values[k] if k in keys else other[k] for k in spec.inputs}
    np.testing.assert_array_equal(constraints(kept, quantity[::-1].copy()), base)
    np.testing.assert_array_equal(constraints(values, quantity, constraints_only=True), base)
    moved = {k: other[k] if k in keys else values[k] for k in spec.inputs}
    assert (constraints(moved, quantity) != base).any()


def test_the_spindle_row_namespace_equals_the_vectorised_one(spindle_spec: object) -> None:
    """Every derived value and constraint of the spindle spec, row by row, against the
    vectorised namespace over 200 random rows of its own DOE bounds."""
    from physics.spec import TwinSpec

    spec = spindle_spec
    assert isinstance(spec, TwinSpec)
    rng = np.random.default_rng(7)
    n = 200
    values = random_inputs(spec, rng, n)
    quantity = rng.integers(1, 100, n).astype(float)
    vec = spec.namespace(values, quantity)
    constraints = [np.broadcast_to(e.evaluate(vec), (n,)) for e in spec.constraint_exprs]
    assert len(spec.derived_exprs) > 20 and len(constraints) > 5
    for i in range(n):
        row = {k: v[i].item() for k, v in values.items()} | {"quantity": quantity[i]}
        names = spec.row_namespace(row)
        for key in spec.derived_exprs:
            np.testing.assert_allclose(names[key], np.broadcast_to(vec[key], (n,))[i],
                                       rtol=1e-12, atol=1e-12, err_msg=key)  # sin near 0
        want = [c[i] for c in constraints]
        np.testing.assert_array_equal([e.evaluate_row(names) for e in spec.constraint_exprs],
                                      want)
        few = spec.row_namespace(row, constraints_only=True)
        assert len(few) < len(names)
        np.testing.assert_array_equal([e.evaluate_row(few) for e in spec.constraint_exprs],
                                      want)


def test_booleans_add_as_numbers_in_both_trees() -> None:
    expr = compile_expr("(a > 0) + (b > 0) - (a > b)", field="f")
    assert expr.evaluate({"a": 1.0, "b": 1.0}) == 2.0
    assert expr.evaluate_row({"a": 1.0, "b": 1.0}) == 2.0
    np.testing.assert_array_equal(expr.evaluate({"a": np.array([1.0, 2.0]), "b": 1.0}),
                                  [2.0, 1.0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1" * 2001, "f: an expression of 2,001 characters; expected at most 2,000"),
        ("-" * 1500 + "1", "f: '" + "-" * 40 + "'... is nested too deeply"),
        ("+".join(["x"] * 900), "f: '" + "x+" * 20 + "'... is nested too deeply"),
        ("1" * 400 + " * x", f"f: {'1' * 400 + ' * x'!r} holds a number too large for a float"),
    ],
)
def test_hostile_expressions_are_refused_not_crashed_on(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expr(text, field="f")
    assert str(info.value) == message

"""Spec expressions compiled to ONNX agree with physics.expr evaluated by numpy."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from physics.blocks import BlockExpr
from physics.expr import ExpressionError, compile_expr
from physics.spec import load_spec
from surrogates._onnx_expr import OPSET, OnnxExprBuilder

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "experiments" / "specs" / "spindle.yaml"
# What the module promises to emit; Cast and Where also carry the bool values.
ALLOWED_OPS = {
    *("Add", "Sub", "Mul", "Div", "Pow", "Neg", "Reciprocal", "Abs", "Sqrt", "Exp", "Log"),
    *("Floor", "Ceil", "Concat", "MatMul", "Gemm"),
    *("Sin", "Cos", "Tan", "Acos", "Asin", "Atan", "Min", "Max", "Where", "Cast"),
    *("Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal", "Not", "And", "Or"),
    *("Sign", "Slice", "ReduceMin", "ReduceSum"),  # atan2, and a derived block's grid
}


def run(
    builder: OnnxExprBuilder,
    feeds: Mapping[str, np.ndarray],
    outputs: Mapping[str, str],
    elem: int = TensorProto.FLOAT,
    shape: tuple[Any, ...] = ("N",),
) -> dict[str, np.ndarray]:
    """Run the builder's nodes on ``feeds`` (tensor -> float32 vector); ``outputs`` maps a
    label to a tensor. Returns label -> array."""
    # Identity gives every label its own graph output, even where two expressions (or an
    # expression and an input) share one tensor.
    identities = [helper.make_node("Identity", [t], [f"out/{k}"]) for k, t in outputs.items()]
    graph = helper.make_graph(
        [*builder.nodes, *identities],
        "exprs",
        [helper.make_tensor_value_info(t, elem, list(shape)) for t in feeds],
        [helper.make_tensor_value_info(f"out/{k}", elem, list(shape)) for k in outputs],
        initializer=builder.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    results = session.run([f"out/{k}" for k in outputs], dict(feeds))
    return dict(zip(outputs, results, strict=True))


def check_graph_hygiene(builder: OnnxExprBuilder) -> None:
    names = [n.name for n in builder.nodes]
    assert len(set(names)) == len(names)
    assert {n.op_type for n in builder.nodes} <= ALLOWED_OPS
    assert all(name.startswith(builder.prefix + "/") for name in names)
    values = [(t.data_type, numpy_helper.to_array(t).tobytes()) for t in builder.initializers]
    assert len(set(values)) == len(values)  # one initializer per distinct constant


# ---- the spindle spec ----------------------------------------------------------------


def random_orders(spec: Any, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Twin-level values inside the spec's input ranges, rounded to float32."""
    values: dict[str, np.ndarray] = {}
    for key, inp in spec.inputs.items():
        if inp.kind == "categorical":
            values[key] = rng.choice(inp.choice_names, size=n)
        elif inp.kind == "boolean":
            values[key] = rng.integers(0, 2, size=n).astype(bool)
        elif inp.kind == "integer":
            values[key] = rng.integers(int(inp.min), int(inp.max) + 1, size=n).astype(float)
        else:
            values[key] = rng.uniform(inp.min, inp.max, size=n).astype(np.float32).astype(float)
    return values


@pytest.mark.parametrize("columns", [False, True])
def test_spindle_derived_and_stop_time_match_the_spec(columns: bool) -> None:
    """In float64, as the export computes them: the tool-life chain's floors and Newton
    steps need it. ``columns``: sums that would take four nodes or more as one Gemm (as
    the export builds them), else pairwise; [N, 1] tensors either way (the chatter
    limit's grid is [N, points], [2, N, points] across its two directions)."""
    spec = load_spec(SPEC)
    rng = np.random.default_rng(7)
    n = 300
    orders = random_orders(spec, n, rng)
    quantity = rng.integers(int(spec.quantity.min), int(spec.quantity.max) + 1, size=n)
    reference = spec.namespace(orders, quantity.astype(float))
    derived = spec.derived_exprs
    stop_time = spec.stop_time_expr
    raw = set().union(stop_time.names, *(e.names for e in derived.values())) - derived.keys()
    feeds = {f"in/{k}": reference[k].astype(np.float64).reshape(n, 1) for k in sorted(raw)}

    builder = OnnxExprBuilder(
        {k: f"in/{k}" for k in raw}, prefix="derived", dtype=np.float64, columns=columns
    )
    outputs = {
        key: builder.add_block(key, expr) if isinstance(expr, BlockExpr)
        else builder.add(key, expr.text) for key, expr in derived.items()
    }  # fmt: skip
    assert sum(isinstance(e, BlockExpr) for e in derived.values()) == 2  # mode, chatter
    outputs["stop_time"] = builder.add("stop_time", stop_time.text)
    check_graph_hygiene(builder)
    got = run(builder, feeds, outputs, TensorProto.DOUBLE, ("N", 1))
    got = {k: v.reshape(n) for k, v in got.items()}
    ops = {node.op_type for node in builder.nodes}
    assert ("Gemm" in ops or "MatMul" in ops) == columns

    reference["stop_time"] = stop_time.evaluate(reference)
    for key, value in got.items():
        assert value.shape == (n,), key
        # 1e-7: acos(-1) of a full slot (ae = D) keeps 4e-8 of float32's error, where
        # Newton's step converges only linearly; elsewhere the error is ~1e-14. The chatter
        # limit (inf where no lobe is crossed, in both) takes that acos through the
        # immersion's directional factors and a quadratic's root: 1e-6.
        rtol = 1e-6 if "zoa" in key else 1e-7
        np.testing.assert_allclose(value, reference[key], rtol=rtol, atol=1e-12, err_msg=key)
    assert 0.2 < np.isinf(got["chatter_limit_zoa"]).mean() < 0.9


def blocks_both_ways(spec: Any, n: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec's blocks g and h on n random rows of diameter and overhang: numpy's
    values and the float64 graph's, [n] each."""
    rng = np.random.default_rng(seed)
    rows = {"tool_diameter": rng.uniform(3, 25, n), "tool_overhang": rng.uniform(5, 125, n)}
    reference = {**rows, **spec.namespace(rows)}
    builder = OnnxExprBuilder({k: f"in/{k}" for k in rows}, dtype=np.float64)
    outputs = {k: builder.add_block(k, spec.derived_exprs[k]) for k in ("g", "h")}
    check_graph_hygiene(builder)
    feeds = {f"in/{k}": v.reshape(n, 1) for k, v in rows.items()}
    got = run(builder, feeds, outputs, TensorProto.DOUBLE, ("N", 1))
    return reference, {k: v.reshape(n) for k, v in got.items()}


def test_a_grid_across_listed_values_matches_numpy() -> None:
    """A block across a listed parameter: [values, N, points] in the graph, crossings
    along each value's points only, the least over all (physics.blocks)."""
    from tests.physics.test_blocks import across, spec_of

    spec = spec_of(
        g=across("tool_diameter * (1 + 2 * b - u)", "k * u - 0.5 * (b - 1)", [1, 2, 3], 23)
        | {"steps": {"k": "tool_overhang / 10"}},
        h=across("2 - u", "b + 0.9 * u", [0, 1]),  # crosses nothing within a value: inf
    )
    reference, got = blocks_both_ways(spec, 40, seed=3)
    np.testing.assert_allclose(got["g"], reference["g"], rtol=1e-12)
    assert np.isfinite(reference["g"]).mean() > 0.5
    assert np.isinf(got["h"]).all() and np.isinf(reference["h"]).all()


def test_a_grid_sum_matches_numpy() -> None:
    """sum_of over [N, points] and over [values, N, points]: ReduceSum on both axes."""
    from tests.physics.test_blocks import spec_of, summed

    spec = spec_of(
        g=summed("tool_diameter * u ** 2 + tool_overhang * b * u", 7, across={"b": [1, -2]}),
        h=summed("exp(-u * tool_diameter / 10)", 5),
    )
    reference, got = blocks_both_ways(spec, 25, seed=4)
    for key in ("g", "h"):
        np.testing.assert_allclose(got[key], reference[key], rtol=1e-13, err_msg=key)
    # by hand: u = 0, 1/6, ..., 1 gives sum u^2 = 91/36 and sum u = 3.5, twice and with
    # b = 1 - 2 = -1
    d, o = reference["tool_diameter"], reference["tool_overhang"]
    np.testing.assert_allclose(reference["g"], 2 * d * 91 / 36 - 3.5 * o, rtol=1e-13)


# ---- every construct -----------------------------------------------------------------

X = [-3.75, -2.5, -1.0, -0.4, -0.0, 0.0, 0.3, 0.5, 1.0, 1.7, 2.0, 3.25, 7.5, np.nan, np.inf]
# Divisors exact in float32, so no x / y sits on an integer in one precision only.
Y = [1.5, -0.75, 2.0, -3.0, 0.5, -1.25, 0.375, 4.0, -1.0, 2.0, -2.5, 0.8, 3.25, 1.0, 2.0]
Z = [0.1, 0.9, 0.5, 0.0, 1.0, 0.25, 0.75, 0.6, 0.05, 0.5, 0.33, 1.2, -0.2, 0.4, 0.7]
EXPRESSIONS = [
    # constants kept pending and sums collected: NaN and inf survive every fold
    "0 * x",
    "x / 0",
    "(x - x) * 2",
    "2 * x - 2 * x + y",
    "-(3 * x + 1) / 2",
    "(2 * x + y - z / 4 - 1) * 3",
    "exp(x / 8 + 1)",
    "((x + 1) * 2) ** 2",
    "(-2 * x) ** 3",
    "(2 * x) ** 0.5",
    "3 / (2 * x + 1)",
    "(2 * x + 1) if y > 0 else (2 * z + 1)",
    "(2 * x + 1) if y > 0 else (3 * z)",
    "(x + y + z) / (x - y + 2 * z)",
    # arithmetic, including %'s sign rule and ** with fractional exponents
    "x + y",
    "x - y * z",
    "x * y / z",
    "(x + 1) / (y - 2)",
    "x ** 2",
    "-x ** 3",
    "abs(x) ** 0.5",
    "x ** -0.5",
    "z ** y",
    "x ** y",
    "y ** 1.5",
    "2 ** x",
    "x % y",
    "x % 3",
    "x % -2.5",
    "-x % y",
    "-7.5 % y",
    "-x",
    "+x",
    "-(x - y)",
    "x - -y",
    # comparisons, chained
    "x < y",
    "x <= y",
    "x > y",
    "x >= y",
    "x == y",
    "x != y",
    "x == 2",
    "-1 < x <= 2",
    "x < y <= z",
    "0 < z < 1 != x",
    "1 < 2 < x",
    "z < 0.5 > 1",
    # logic on truth values and on plain numbers
    "x > 0 and y > 0",
    "x > 0 or y < 0",
    "not x",
    "not (x > y)",
    "x and y",
    "x or z",
    "x or 0",
    "0 or x",
    "1 and x",
    "0 and x",
    "x and y and z",
    "x > 0 or y > 0 or z > 0.5",
    "not x and y or z",
    "x >= 2 and x < 3 or x == 7.5",
    # conditionals, nested
    "x if y > 0 else z",
    "x if y else z",
    "1 if x > 0 else 2",
    "(x if x > y else y) if z > 0.5 else (-1 if x < 0 else 1)",
    "x if 1 else y",
    "x if 0 < 1 else y",
    "x if z > 0.5 else x > y",
    # functions
    "min(x, y)",
    "max(x, y)",
    "min(x, y, z)",
    "max(z, 1, y)",
    "min(2, x, -1)",
    "max(x, x)",
    "abs(x)",
    "sqrt(x)",
    "exp(x)",
    "log(x)",
    "log(abs(x) + 1)",
    "sin(x)",
    "cos(x)",
    "tan(x)",
    "acos(z)",
    "asin(z)",
    "acos(x)",
    "atan(x)",
    "atan2(x, y)",
    "atan2(y, x)",
    "atan2(z, x - 1)",
    "atan2(x, 0)",
    "atan2(0, y)",
    "floor(x)",
    "ceil(x)",
    "floor(x / y)",
    "ceil(-x * z)",
    # the constant, booleans as numbers, constants only
    "pi * x",
    "2 * pi",
    "pi",
    "(x > 1) * 10 + True",
    "x * (y > 0) + (z < 0.5)",
    "2 ** 10 - 7 % 3",
    "-7 % 3",
    "7 % -3",
    "min(3, 1, 2) + max(3, 1, 2)",
    "sqrt(16) + abs(-2) + exp(0) + log(1)",
    "acos(1) + asin(1) + atan(1) + cos(pi) + floor(2.7) + ceil(2.1)",
    "1 < 2 < 3",
    "1 if 0 else 2",
    "not 0",
    "0 and 1 or 2",
    "1 / 0",
    "0 / 0",
    "-0.0",
]


@pytest.mark.parametrize("as_columns", [False, True])
def test_every_construct_matches_numpy(as_columns: bool) -> None:
    columns = {k: np.asarray(v, dtype=np.float32) for k, v in zip("xyz", (X, Y, Z), strict=True)}
    builder = OnnxExprBuilder({k: f"in/{k}" for k in columns}, columns=as_columns)
    outputs = {f"e{i}": builder.add(f"e{i}", text) for i, text in enumerate(EXPRESSIONS)}
    check_graph_hygiene(builder)
    shape = (len(X), 1) if as_columns else (len(X),)
    feeds = {f"in/{k}": v.reshape(shape) for k, v in columns.items()}
    got = run(builder, feeds, outputs, shape=("N", 1) if as_columns else ("N",))
    got = {k: v.reshape(len(X)) for k, v in got.items()}

    values = {k: v.astype(np.float64) for k, v in columns.items()}
    for i, text in enumerate(EXPRESSIONS):
        expected = np.broadcast_to(compile_expr(text, field="t").evaluate(values), (len(X),))
        value = got[f"e{i}"]
        assert value.shape == (len(X),), text
        # The sign of a zero is not compared: onnxruntime's Where gives +0 for -0, and
        # a - floor(a / b) * b gives +0 where np.mod gives -0.
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6, err_msg=text)


def test_later_expressions_use_earlier_ones_and_constants_fold() -> None:
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float32)
    builder = OnnxExprBuilder({"x": "x_in"}, prefix="d")
    a = builder.add("a", "2 * x")
    b = builder.add("b", "a + 1")
    k = builder.add("k", "3 * pi / 2")
    before = len(builder.nodes)
    c = builder.add("c", "k * 2 + 1")  # only constants: folded, then broadcast
    assert len(builder.nodes) == before + 1  # the Where that broadcasts it
    d = builder.add("d", "k * x + a")
    same = builder.add("same", "2 * x")  # an identical computation is not emitted again
    assert same == a
    assert builder.add("just_x", "x") == "x_in"
    got = run(builder, {"x_in": x}, {"a": a, "b": b, "k": k, "c": c, "d": d})
    np.testing.assert_allclose(got["b"], 2 * x + 1)
    np.testing.assert_allclose(got["k"], np.full(3, 3 * np.pi / 2), rtol=1e-6)
    np.testing.assert_allclose(got["c"], np.full(3, 3 * np.pi + 1), rtol=1e-6)
    np.testing.assert_allclose(got["d"], 3 * np.pi / 2 * x + 2 * x, rtol=1e-6)
    check_graph_hygiene(builder)


def test_a_sum_goes_to_one_gemm_by_the_nodes_it_would_take() -> None:
    """Pairwise, a sum takes an Add or Sub per term and a Mul per coefficient unlike the
    first's; from four such nodes (GEMM_NODES) one Concat and one Gemm are cheaper."""
    cols = np.array([[-1.0, 0.5, 2.0], [0.25, 3.0, -1.5], [4.0, -2.0, 0.5]])
    cases = {
        "x + y - z": ["Add", "Sub"],  # unit coefficients: two nodes
        # 2 (x + y + 2 z): three, then the pending 2 applied
        "2 * x + 2 * y + 4 * z": ["Add", "Mul", "Add", "Mul"],
        "2 * x + 3 * y + 5 * z": ["Concat", "MatMul"],  # pairwise: Mul Add Mul Add
        "x + y + z + x * y": ["Mul", "Add", "Add", "Add"],  # three, after the product
        "x + y - z + 1.5": ["Add", "Sub", "Add"],  # the offset applied last
        "x + 2 * y + 3 * z + 1.5": ["Concat", "Gemm"],  # the offset in the Gemm
    }
    names = {"x": "x_in", "y": "y_in", "z": "z_in"}
    for text, ops in cases.items():
        builder = OnnxExprBuilder(names, prefix="d", dtype=np.float64, columns=True)
        out = builder.add("s", text)
        assert [n.op_type for n in builder.nodes] == ops, text
        feeds = {f"{k}_in": v.reshape(3, 1) for k, v in zip("xyz", cols, strict=True)}
        got = run(builder, feeds, {"s": out}, TensorProto.DOUBLE, ("N", 1))["s"].reshape(3)
        want = compile_expr(text, field="s").evaluate(dict(zip("xyz", cols, strict=True)))
        np.testing.assert_allclose(got, want, rtol=1e-15, err_msg=text)


def test_float64_graph() -> None:
    x = np.array([0.1, 2.0, -3.0])
    builder = OnnxExprBuilder({"x": "x"}, dtype=np.float64)
    out = builder.add("y", "x % 0.7 + sqrt(abs(x)) * pi if x > 0 else exp(x)")
    graph = helper.make_graph(
        builder.nodes,
        "f64",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N"])],
        [helper.make_tensor_value_info(out, TensorProto.DOUBLE, ["N"])],
        initializer=builder.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = compile_expr("x % 0.7 + sqrt(abs(x)) * pi if x > 0 else exp(x)", field="f")
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected.evaluate({"x": x}))


# ---- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "foo(x)",
        "x.real",
        "x // 2",
        "x +",
        "lambda: 1",
        "sqrt",
        "min(x)",
        "abs(x, y)",
        "'text'",
        "x in y",
    ],
)
def test_refused_expressions_raise_as_compile_expr_does(text: str) -> None:
    with pytest.raises(ExpressionError) as reference:
        compile_expr(text, field="derived.bad")
    builder = OnnxExprBuilder({"x": "x", "y": "y"})
    with pytest.raises(ExpressionError) as err:
        builder.add("bad", text, field="derived.bad")
    assert str(err.value) == str(reference.value)
    assert builder.nodes == [] and builder.initializers == []


def test_a_name_without_a_tensor_is_named() -> None:
    builder = OnnxExprBuilder({"x": "x"})
    with pytest.raises(ExpressionError, match=r"^f: 'x \+ b \* a' needs a value for 'a', 'b'$"):
        builder.add("f", "x + b * a")


def test_dtype_must_be_floating() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        OnnxExprBuilder({"x": "x"}, dtype=np.int64)


@pytest.mark.parametrize("fn", ["tan", "acos", "asin", "atan"])
def test_float64_inverse_trigonometry_is_float64_accurate(fn: str) -> None:
    """onnxruntime has no float64 Tan/Acos/Asin/Atan: sin/cos, or float32 plus one Newton
    step, must still agree with numpy to float64 precision (float32 alone: ~1e-7)."""
    x = np.linspace(-1.0, 1.0, 2001) if fn in ("acos", "asin") else np.linspace(-1.4, 1.4, 2001)
    builder = OnnxExprBuilder({"x": "x"}, dtype=np.float64)
    out = builder.add("y", f"{fn}(x)")
    graph = helper.make_graph(
        [*builder.nodes, helper.make_node("Identity", [out], ["y"])],
        "trig",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N"])],
        initializer=builder.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["y"], {"x": x})
    want = compile_expr(f"{fn}(x)", field="t").evaluate({"x": x})
    # acos/asin at +-1 have a double root, where Newton's step converges only linearly:
    # ~1e-9 is left near the ends, 5e-8 at the ends themselves; 1e-12 over the rest.
    inner = np.abs(x) < 0.99
    np.testing.assert_allclose(got[inner], want[inner], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

"""The graph-to-C generator, operator by operator, against onnxruntime on the same graph."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from surrogates._cgen import CGenError, NativeGraph, compile_library, generate
from surrogates._export import session

N = "N"


class _Graph:
    """A small graph written node by node; every value it marks becomes an output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.k = 0

    def const(self, value: object, dtype: object = np.float64) -> str:
        self.k += 1
        name = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op: str, *inputs: str, **attrs: object) -> str:
        self.k += 1
        out = f"v{self.k}_{op}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def ops(self, op: str, *inputs: str, n: int, **attrs: object) -> list[str]:
        self.k += 1
        outs = [f"v{self.k}_{op}_{i}" for i in range(n)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, **attrs))
        return outs

    def out(self, name: str, dtype: int, shape: list) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, dtype, shape))

    def model(self, width: int) -> onnx.ModelProto:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, width])
        g = helper.make_graph(self.nodes, "ops", [x], self.outputs, self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _every_operator() -> onnx.ModelProto:
    """Every operator the exporter emits, with broadcasting, NaN and infinities in play."""
    g = _Graph()
    xd = g.op("Cast", "x", to=TensorProto.DOUBLE)  # [N, 4]
    row = g.const([[0.5, -2.0, np.nan, np.inf]])  # [1, 4]
    col = g.const([[3.0], [-1.0]])  # [2, 1] -> with [N, 4] gives [2?]; used on [2, N, 4] below
    two = g.const(2.0)
    parts = [
        g.op("Add", xd, row),
        g.op("Sub", row, xd),
        g.op("Mul", xd, two),
        g.op("Div", xd, row),
        g.op("Pow", g.op("Abs", xd), g.const(1.5)),
        g.op("Min", xd, row),
        g.op("Max", xd, row),
        g.op("Where", g.op("Greater", xd, two), xd, row),
        g.op("Where", g.op("And", g.op("Less", xd, two), g.op("GreaterOrEqual", xd, row)), xd, two),
        g.op(
            "Where",
            g.op("Or", g.op("Equal", xd, row), g.op("LessOrEqual", xd, g.const(0.0))),
            row,
            xd,
        ),
        g.op("Ceil", xd),
        g.op("Floor", xd),
        g.op("Cos", xd),
        g.op("Sin", xd),
        g.op("Exp", g.op("Neg", xd)),
        g.op("Log", g.op("Abs", xd)),
        g.op("Reciprocal", xd),
        g.op("Sigmoid", xd),
        g.op("Sign", xd),
        g.op("Sqrt", g.op("Abs", xd)),
        g.op("Identity", xd),
    ]
    flat = g.op("Concat", *parts, axis=1)  # [N, 4 * len(parts)]
    g.out(flat, TensorProto.DOUBLE, [N, 4 * len(parts)])
    # float32 functions: the nets' activations, and the inverse trigonometric functions
    # (onnxruntime has no float64 kernels for them)
    tenth = g.op("Mul", "x", g.const(0.1, np.float32))
    unit = g.op("Min", g.op("Max", tenth, g.const(-1.0, np.float32)), g.const(1.0, np.float32))
    g.out(g.op("Concat", g.op("Sigmoid", "x"), g.op("Exp", "x"), g.op("Erf", "x"),
               g.op("Min", "x", g.const([np.nan, 1, 2, 3], np.float32)), g.op("Atan", "x"),
               g.op("Acos", unit), axis=1),
          TensorProto.FLOAT, [N, 24])  # fmt: skip
    # data movement
    grid = g.op(
        "Mul",
        g.op("Unsqueeze", xd, g.const([0], np.int64)),
        g.op("Unsqueeze", col, g.const([1], np.int64)),
    )
    g.out(grid, TensorProto.DOUBLE, [2, N, 4])  # [2, 1, 1] * [1, N, 4]
    g.out(g.op("Transpose", grid, perm=[1, 2, 0]), TensorProto.DOUBLE, [N, 4, 2])
    g.out(g.op("ReduceMin", grid, axes=[0, 2], keepdims=0), TensorProto.DOUBLE, [N])
    g.out(g.op("ReduceMean", grid, axes=[2], keepdims=1), TensorProto.DOUBLE, [2, N, 1])
    g.out(g.op("ReduceSum", grid, g.const([0], np.int64), keepdims=0), TensorProto.DOUBLE, [N, 4])
    g.out(
        g.op(
            "Slice",
            xd,
            g.const([3], np.int64),
            g.const([-5], np.int64),
            g.const([1], np.int64),
            g.const([-2], np.int64),
        ),
        TensorProto.DOUBLE,
        [N, 2],
    )
    a, b = g.ops("Split", xd, g.const([1, 3], np.int64), n=2, axis=1)
    g.out(g.op("Concat", b, a, axis=1), TensorProto.DOUBLE, [N, 4])
    g.out(g.op("Reshape", g.op("Squeeze", g.op("Unsqueeze", xd, g.const([2], np.int64)),
                               g.const([2], np.int64)), g.const([-1, 2, 2], np.int64)),
          TensorProto.DOUBLE, [N, 2, 2])  # fmt: skip
    g.out(g.op("Gather", xd, g.const([3, 0, 0], np.int64), axis=1), TensorProto.DOUBLE, [N, 3])
    # a group index computed from the row (NaN, negative and too large ones included)
    one, zero = g.const([1], np.int64), g.const([0], np.int64)
    first = g.op("Squeeze", g.op("Slice", "x", zero, one, one), one)  # [N]
    idx = g.op("Cast", g.op("Floor", first), to=TensorProto.INT64)
    table = g.const(np.arange(15, dtype=np.float32).reshape(5, 3), np.float32)
    g.out(g.op("Gather", table, idx, axis=0), TensorProto.FLOAT, [N, 3])
    g.out(idx, TensorProto.INT64, [N])
    g.out(
        g.op("Cast", g.op("Greater", "x", g.const(0.0, np.float32)), to=TensorProto.FLOAT),
        TensorProto.FLOAT,
        [N, 4],
    )
    # the nets: MatMul (plain and batched), Gemm with its attributes
    w = g.const(np.linspace(-1, 1, 12).reshape(4, 3), np.float32)
    g.out(g.op("MatMul", "x", w), TensorProto.FLOAT, [N, 3])
    members = g.const(np.linspace(-1, 1, 24).reshape(2, 4, 3), np.float32)
    g.out(
        g.op("MatMul", g.op("Unsqueeze", "x", g.const([0], np.int64)), members),
        TensorProto.FLOAT,
        [2, N, 3],
    )
    wt = g.const(np.linspace(-2, 1, 12).reshape(3, 4), np.float32)
    bias = g.const([0.5, -0.25, 1.0], np.float32)
    g.out(g.op("Gemm", "x", wt, bias, transB=1, alpha=0.5, beta=2.0), TensorProto.FLOAT, [N, 3])
    g.out(g.op("Gemm", "x", w, bias), TensorProto.FLOAT, [N, 3])
    return g.model(4)


def _rows() -> np.ndarray:
    rng = np.random.default_rng(5)
    x = rng.normal(0, 3, (64, 4)).astype(np.float32)
    x[:, 0] = np.clip(x[:, 0], -4.9, 4.9)  # the group index: -5..4, as Gather allows
    x[3, 0], x[4, 1], x[5, 2], x[6, 3] = np.nan, np.inf, -np.inf, 0.0
    x[7] = [2.0, -2.0, 0.5, 0.0]  # equal to the constants: the comparisons' edges
    x[8, 0], x[9, 0] = 40.0, -7.0  # group indices past the table's ends
    return x


@pytest.fixture(scope="module")
def every_operator(tmp_path_factory):  # type: ignore[no-untyped-def]
    model = _every_operator()
    onnx.checker.check_model(model, full_check=True)
    prog = generate(model)
    lib, warnings = compile_library(prog, tmp_path_factory.mktemp("cgen"))
    return model, prog, NativeGraph(prog, lib), warnings


def test_every_operator_matches_onnxruntime(every_operator) -> None:  # type: ignore[no-untyped-def]
    model, _, native, warnings = every_operator
    assert warnings == ""
    # onnxruntime refuses a computed group index out of range (NaN, 40, -7): not these rows
    x = np.delete(_rows(), [3, 8, 9], axis=0)
    sess = session(model)
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x}), strict=True))
    got = native.run(x)
    assert set(got) == set(want)
    for name, ref in want.items():
        if ref.shape[0] == len(x):
            mine = got[name].reshape(ref.shape)
        else:  # a [2, N, ...] output: the rows are its second axis
            mine = np.moveaxis(got[name].reshape((len(x), ref.shape[0], *ref.shape[2:])), 0, 1)
        # float32: a sum of products in another order differs by a few units in the last place
        tol = 2e-6 if ref.dtype == np.float32 else 1e-15
        np.testing.assert_allclose(mine, ref, rtol=tol, atol=tol, equal_nan=True, err_msg=name)


def test_out_of_range_group_index_is_clamped_and_nan_is_int64_min(every_operator) -> None:  # type: ignore[no-untyped-def]
    _, _, native, _ = every_operator
    x = _rows()
    got = native.run(x)
    idx = next(v for k, v in got.items() if v.dtype == np.int64)[:, 0]
    assert idx[3] == np.iinfo(np.int64).min  # floor(NaN) as an integer, as on x86
    gather = next(v for k, v in got.items() if k.endswith("_Gather") and v.dtype == np.float32)
    table = np.arange(15, dtype=np.float32).reshape(5, 3)
    np.testing.assert_array_equal(gather[8], table[4])  # index 40: the last group
    np.testing.assert_array_equal(gather[9], table[0])  # -7 wraps to -2, clamped to 0
    np.testing.assert_array_equal(gather[3], table[0])  # INT64_MIN: clamped to the first


def test_weights_are_written_bit_exact(every_operator) -> None:  # type: ignore[no-untyped-def]
    model, prog, _, _ = every_operator
    literals = set(re.findall(r"-?0x[0-9a-f.]+p[+-]\d+f?", prog.source))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind != "f":
            continue
        for v in arr[np.isfinite(arr)].reshape(-1).tolist():
            assert float(v).hex() + ("f" if arr.dtype == np.float32 else "") in literals, v
    assert prog.nodes == len(model.graph.node)


def test_an_operator_it_does_not_translate_is_named() -> None:
    g = _Graph()
    g.out(g.op("Tanh", "x"), TensorProto.FLOAT, [N, 2])
    with pytest.raises(CGenError, match=r"operator Tanh is not translated"):
        generate(g.model(2))


def test_rows_of_the_wrong_width_are_refused(every_operator) -> None:  # type: ignore[no-untyped-def]
    _, _, native, _ = every_operator
    with pytest.raises(CGenError, match=r"rows of 3 columns: the graph takes 4"):
        native.run(np.zeros((2, 3), np.float32))

"""Compile twin-spec expressions (:mod:`physics.expr`) into ONNX nodes.

A surrogate exported to ONNX can then compute a spec's ``derived`` quantities
(and its stop time) from the raw inputs inside the graph, so a serving runtime
needs nothing but the model file. The language and its semantics are those of
:mod:`physics.expr` evaluated on numpy arrays:

* booleans are 1.0 / 0.0; a value counts as true when it is nonzero (NaN too);
* ``a if c else b`` is element-wise (``np.where``), so both branches are computed;
* ``%`` takes the sign of the divisor, like ``np.mod``; it is built as
  ``a - floor(a / b) * b`` because ONNX ``Mod`` is integer-only unless ``fmod=1``;
* ``**`` is ``Pow`` (a negative base with a fractional exponent gives NaN);
* Min/Max propagate NaN, as ``np.minimum``/``np.maximum`` do.

Known differences from numpy, all at the edges of floating point: ``a % b`` with
an infinite ``b`` gives NaN (numpy gives ``a`` or ``±inf``); a zero result may lose
its sign (onnxruntime's Where returns +0 for -0, and ``%`` gives +0 where numpy
gives -0); and the graph computes in its dtype (float32 by default) where the
reference computes in float64.
onnxruntime's CPU provider has no float64 kernels for Tan, Asin, Acos and Atan: in
float64, tan is sin / cos, and the inverse functions are taken in float32 and
polished by one Newton step in float64 (the error squares: about 1e-14; at acos and
asin of +-1 exactly, a double root, it only halves: 4e-8 of pi is left).

Only standard opset-17 operators are emitted. Purely numeric subtrees are folded
in float64 with the reference implementation, identical nodes are emitted once
and each distinct constant gets one initializer.

A graph at batch 1 costs its node count (onnxruntime spends about as long on a node of
one element as on one of forty), so products and sums with a constant emit nothing:
a value is kept as ``scale * tensor + offset`` and the constants travel with it
through + - * / and ** by a constant (``pi * d * n / 1000`` is one Mul, its scale
pi / 1000 taken up by whatever uses it next). The pending scale and offset are
applied only where a value enters anything else (a function, a comparison, min/max,
an output). A fold that would make a scale zero or either constant non-finite is not
made (``0 * x`` keeps x's NaN, ``x / 0`` its infinity). Reassociation moves the
rounding by a few units in the last place, nothing more.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from numpy.typing import DTypeLike
from onnx import TensorProto, helper, numpy_helper

from physics.blocks import BlockExpr
from physics.expr import CONSTANTS, FUNCTIONS, ExpressionError, compile_expr

__all__ = ["OPSET", "OnnxExprBuilder"]

# A sum that would take this many element-wise nodes or more is one Concat and one Gemm
# (see _collapse).
GEMM_NODES = 4

OPSET = 17  # every operator used here has had its current form since at least opset 13

# Operator -> (ONNX op, float64 implementation used for folding constants).
_ARITHMETIC: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("Add", np.add),
    ast.Sub: ("Sub", np.subtract),
    ast.Mult: ("Mul", np.multiply),
    ast.Div: ("Div", np.true_divide),
    ast.Pow: ("Pow", np.power),
}
# NotEq has no ONNX op of its own: it is Not(Equal).
_COMPARISON: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Lt: ("Less", np.less),
    ast.LtE: ("LessOrEqual", np.less_equal),
    ast.Gt: ("Greater", np.greater),
    ast.GtE: ("GreaterOrEqual", np.greater_equal),
    ast.Eq: ("Equal", np.equal),
    ast.NotEq: ("Equal", np.not_equal),
}
_UNARY_FUNCTIONS: dict[str, str] = {
    "abs": "Abs",
    "sqrt": "Sqrt",
    "exp": "Exp",
    "log": "Log",
    "sin": "Sin",
    "cos": "Cos",
    "tan": "Tan",
    "acos": "Acos",
    "asin": "Asin",
    "atan": "Atan",
    "floor": "Floor",
    "ceil": "Ceil",
}
_VARIADIC_FUNCTIONS: dict[str, str] = {"min": "Min", "max": "Max"}


@dataclass(frozen=True)
class _Value:
    """A folded number, or a tensor that is either float (of the builder's dtype) or bool."""

    const: float | None = None
    tensor: str | None = None
    is_bool: bool = False
    # A float tensor's value is scale * tensor + sum(k * t for t, k in terms) + offset:
    # constants and sums not yet applied.
    scale: float = 1.0
    offset: float = 0.0
    terms: tuple[tuple[str, float], ...] = ()

    @property
    def pending(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0 or bool(self.terms)

    def parts(self) -> dict[str, float]:
        """tensor -> its coefficient, in order."""
        assert self.tensor is not None
        return {self.tensor: self.scale, **dict(self.terms)}


def _affine(
    tensor: str, scale: float, offset: float, terms: tuple[tuple[str, float], ...] = ()
) -> _Value | None:
    """scale * tensor + terms + offset, or None where the fold would lose a NaN or an
    inf (a coefficient of zero, a constant that is not finite)."""
    coefficients = [scale, *(k for _, k in terms)]
    if any(k == 0.0 or not np.isfinite(k) for k in coefficients) or not np.isfinite(offset):
        return None
    return _Value(tensor=tensor, scale=scale, offset=offset, terms=terms)


def _combination(parts: Mapping[str, float], offset: float) -> _Value | None:
    (tensor, scale), *rest = parts.items()
    return _affine(tensor, scale, offset, tuple(rest))


def _fold(fn: Callable[..., Any], *args: float) -> float:
    # np.float64 operands give numpy's semantics (1/0 -> inf), not Python's exceptions.
    with np.errstate(all="ignore"):
        return float(fn(*(np.float64(a) for a in args)))


def _truth(value: float) -> bool:
    return value != 0.0  # NaN is true, as for np.logical_and


class OnnxExprBuilder:
    """Accumulates ONNX nodes and initializers for several expressions that share a namespace.

    ``names`` maps expression names to existing ONNX tensors: floats of ``dtype``, all of
    the same shape (e.g. ``[N]``). After ``add(name, text)``, ``name`` is usable by later
    expressions. Put ``nodes`` and ``initializers`` into the graph (nodes in list order,
    which is topological).
    """

    def __init__(
        self,
        names: Mapping[str, str],
        *,
        prefix: str = "expr",
        dtype: DTypeLike = np.float32,
        columns: bool = False,
        fold: bool = True,
    ) -> None:
        self.dtype = np.dtype(dtype)
        # fold=False: every operation its own node, as written (the reference the folded
        # graph is tested against).
        self.fold = fold
        # Tensors of shape [N, 1]: a sum that would take GEMM_NODES element-wise nodes or
        # more is one Concat and one Gemm (else added pairwise).
        self.columns = columns
        if self.dtype.kind != "f":
            raise ValueError(f"dtype must be a floating-point type, got {self.dtype}")
        self.elem_type: int = helper.np_dtype_to_tensor_dtype(self.dtype)
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._values: dict[str, _Value] = {k: _Value(tensor=v) for k, v in names.items()}
        # A constant-valued expression still has to come out in the inputs' shape;
        # any input tensor serves as the shape reference.
        self._shape_ref: str | None = next(iter(names.values()), None)
        self._constants: dict[bytes, str] = {}  # dtype bytes of a value -> initializer
        self._emitted: dict[tuple[Any, ...], str] = {}  # (op, inputs, attrs) -> output
        self._count = 0
        # Tensors of a derived block's grid ([N, points]): no Concat-and-Gemm sums there;
        # those across a listed parameter ([values, N, points]) are also branched.
        self._wide: set[str] = set()
        self._branched: set[str] = set()
        self._label = ""  # name of the expression being compiled, for tensor names
        self._field = ""
        self._text = ""

    # ---- public -------------------------------------------------------------------------

    def add(self, name: str, text: str, *, field: str | None = None, lazy: bool = False) -> str:
        """Compile ``text`` and bind ``name`` to it; return the ONNX tensor holding its value.

        The tensor has the inputs' shape (constants are broadcast; a scalar only when the
        builder has no tensor yet). It may be an existing tensor, e.g. an input for ``text ==
        "x"``. ``field`` names the expression in error messages (default: ``name``).
        ``lazy``: a constant-valued expression, or one whose constants are still pending,
        gets no tensor of its own (returns ""; ``tensor(name)`` makes one when needed),
        and later expressions fold it.
        Raises ExpressionError for text compile_expr refuses or names without a value.
        """
        field = name if field is None else field
        expr = compile_expr(text, field=field)  # refuses what the language does not allow
        missing = sorted(expr.names - self._values.keys())
        if missing:
            listed = ", ".join(repr(m) for m in missing)
            raise ExpressionError(f"{field}: {text!r} needs a value for {listed}")
        self._label, self._field, self._text = name, field, text
        tree = ast.parse(text.strip(), mode="eval")  # the same parse compile_expr made
        value = self._visit(tree.body)
        if value.is_bool:
            value = _Value(tensor=self._float(value))
        # Later expressions see a constant as a number, so they can fold it further.
        self._values[name] = value
        if self._shape_ref is None and value.tensor is not None:
            self._shape_ref = value.tensor  # a builder without inputs gets a shape from here
        if lazy and (value.const is not None or value.pending):
            return ""
        return self._full(value)

    def add_block(self, name: str, block: BlockExpr, *, lazy: bool = False) -> str:
        """Compile a derived block (physics.blocks) and bind ``name`` to its value, as
        ``add`` does for an expression. Its local names are bound only while it compiles;
        a grid's values are [N, points] tensors (the parameter a [1, points] constant,
        broadcast), [values, N, points] where they use a listed parameter (``across``, a
        [values, 1, 1] constant), reduced to [N, 1] by ``min_at_crossings`` or ``sum_of``."""
        saved = dict(self._values)
        # a grid that reads no row's value reduces to [1, 1]: broadcast it to the rows
        rowless = all(self._values[n].const is not None for n in block.names)
        try:
            for key, expr in block.steps:
                self.add(key, expr.text, field=f"{block.field}.steps.{key}", lazy=True)
            if block.value is not None:
                self.add(name, block.value.text, field=f"{block.field}.value", lazy=True)
                value = self._values[name]
            else:
                assert block.over is not None
                grid = self._constant(np.linspace(0.0, 1.0, block.points)[None, :])
                self._wide.add(grid)
                self._values[block.over] = _Value(tensor=grid)
                if block.across is not None:
                    parameter, listed = block.across
                    branch = self._constant(np.asarray(listed).reshape(-1, 1, 1))
                    self._wide.add(branch)
                    self._branched.add(branch)
                    self._values[parameter] = _Value(tensor=branch)
                for key, expr in block.at_each:
                    self.add(key, expr.text, field=f"{block.field}.at_each.{key}", lazy=True)
                self._label = name
                if block.total is not None:
                    value = _Value(tensor=self._grid_sum(self.tensor(block.total)))
                else:
                    mins = [self._crossing_min(self.tensor(c.value), self.tensor(c.phase),
                                               block.points) for c in block.crossings]  # fmt: skip
                    value = _Value(tensor=mins[0] if len(mins) == 1 else self._emit("Min", mins))
                if rowless and self._shape_ref is not None:
                    mask = self._emit("Less", [self._shape_ref, self._shape_ref])
                    reduced = self._float(value)
                    value = _Value(tensor=self._emit("Where", [mask, reduced, reduced]))
        finally:
            self._values = saved
        self._values[name] = value
        if lazy and (value.const is not None or value.pending):
            return ""
        return self._full(value)

    def tensor(self, name: str) -> str:
        """The float tensor of a bound name, in the inputs' shape."""
        return self._full(self._values[name])

    def affine(self, name: str) -> tuple[str, float, float]:
        """(t, k, c): a bound name's value is k * t + c, t a float tensor in the inputs'
        shape; a consumer that is linear itself (a standardisation, a scatter) takes k
        and c into its own constants and saves the nodes that would apply them."""
        value = self._values[name]
        if value.const is None and value.tensor is not None and not value.is_bool:
            if value.terms:
                value = self._collapse(value)
            assert value.tensor is not None
            return value.tensor, value.scale, value.offset
        return self._full(value), 1.0, 0.0

    # ---- emitting -----------------------------------------------------------------------

    def _emit(self, op: str, inputs: list[str], **attrs: Any) -> str:
        key = (op, tuple(inputs), tuple(sorted(attrs.items())))
        if key in self._emitted:  # the same computation again: reuse its output
            return self._emitted[key]
        self._count += 1
        node_name = f"{self.prefix}/{self._label}/{op}_{self._count}"
        output = f"{node_name}:0"
        self.nodes.append(helper.make_node(op, inputs, [output], name=node_name, **attrs))
        self._emitted[key] = output
        if op not in ("ReduceMin", "ReduceSum") and not self._wide.isdisjoint(inputs):
            self._wide.add(output)
            if not self._branched.isdisjoint(inputs):
                self._branched.add(output)
        return output

    def _constant(self, value: float | bool | np.ndarray) -> str:
        return self._initializer(
            np.asarray(value, dtype=bool if isinstance(value, bool) else self.dtype)
        )

    def _int64(self, values: list[int]) -> str:
        return self._initializer(np.asarray(values, dtype=np.int64))

    def _initializer(self, array: np.ndarray) -> str:
        """One initializer per distinct array (dtype, shape and bytes)."""
        # bytes keep -0.0 and NaN apart; the shape keeps a [2, 1] from a [2]
        key = array.dtype.str.encode() + str(array.shape).encode() + array.tobytes()
        if key not in self._constants:
            name = f"{self.prefix}/const_{len(self._constants)}"
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def _float(self, value: _Value) -> str:
        """Tensor name of ``value`` as a float tensor (scalar for a constant)."""
        if value.const is not None:
            return self._constant(value.const)
        assert value.tensor is not None
        if value.is_bool:
            return self._emit("Cast", [value.tensor], to=self.elem_type)
        if value.terms:
            value = self._collapse(value)
        tensor = value.tensor
        assert tensor is not None
        if value.scale == -1.0:
            tensor = self._emit("Neg", [tensor])
        elif value.scale != 1.0:
            tensor = self._emit("Mul", [tensor, self._constant(value.scale)])
        if value.offset != 0.0:
            tensor = self._emit("Add", [tensor, self._constant(value.offset)])
        return tensor

    def _collapse(self, value: _Value) -> _Value:
        """A value with several terms as one tensor (its scale and offset maybe pending).

        Few terms are added pairwise, the first's coefficient kept pending (one Add or
        Sub per term, and a Mul where its coefficient is not that of the first or its
        negative); where that takes GEMM_NODES nodes or more (tensors [N, 1] only), one
        Concat and one Gemm take them all, with the offset: onnxruntime spends about
        0.28 us on an element-wise node of one row and about 0.95 on a Concat and a Gemm
        together (experiments/profile_onnx.py).
        """
        parts = value.parts()
        first = next(iter(parts.values()))
        pairwise = sum(1 if abs(k / first) == 1.0 else 2 for k in list(parts.values())[1:])
        if self.columns and pairwise >= GEMM_NODES and self._wide.isdisjoint(parts):
            stacked = self._emit("Concat", list(parts), axis=1)
            weights = self._constant(np.array(list(parts.values()))[:, None])
            if value.offset == 0.0:
                return _Value(tensor=self._emit("MatMul", [stacked, weights]))
            offset = self._constant(value.offset)  # a scalar C broadcasts
            return _Value(tensor=self._emit("Gemm", [stacked, weights, offset]))
        (total, first), *rest = parts.items()
        for tensor, k in rest:
            ratio = k / first
            if ratio == 1.0:
                total = self._emit("Add", [total, tensor])
            elif ratio == -1.0:
                total = self._emit("Sub", [total, tensor])
            else:
                scaled = self._emit("Mul", [tensor, self._constant(ratio)])
                total = self._emit("Add", [total, scaled])
        return _Value(tensor=total, scale=first, offset=value.offset)

    def _scaled(self, value: _Value) -> tuple[str, float]:
        """(t, k) with ``value`` = k * t: its offset applied inside, its scale kept."""
        assert value.tensor is not None and not value.is_bool
        if value.terms:
            value = self._collapse(value)
        assert value.tensor is not None
        if value.offset == 0.0:
            return value.tensor, value.scale
        inner = value.offset / value.scale
        if not np.isfinite(inner):
            return self._float(value), 1.0
        return self._emit("Add", [value.tensor, self._constant(inner)]), value.scale

    def _arithmetic(self, op: type[ast.operator], left: _Value, right: _Value) -> _Value | None:
        """``left op right`` with the constants kept pending (see the module docstring);
        None where the plain node is as good."""
        a = left.tensor is not None and not left.is_bool
        b = right.tensor is not None and not right.is_bool
        if not (a or b) or (left.is_bool or right.is_bool):
            return None
        if op in (ast.Add, ast.Sub):
            sign = 1.0 if op is ast.Add else -1.0
            if not b:  # terms + c +- r
                assert right.const is not None
                return _combination(left.parts(), left.offset + sign * right.const)
            if not a:  # l +- (terms + c)
                assert left.const is not None
                flipped = {t: sign * k for t, k in right.parts().items()}
                return _combination(flipped, left.const + sign * right.offset)
            parts = left.parts()
            for t, k in right.parts().items():  # the sum of both, like terms collected
                parts[t] = parts.get(t, 0.0) + sign * k
            return _combination(parts, left.offset + sign * right.offset)
        if op is ast.Mult or (op is ast.Div and not b):
            if a and b:
                (tl, kl), (tr, kr) = self._scaled(left), self._scaled(right)
                return _affine(self._emit("Mul", [tl, tr]), kl * kr, 0.0)
            value, number = (left, right.const) if a else (right, left.const)
            assert value.tensor is not None and number is not None
            if number == 0.0 or not np.isfinite(number):
                return None
            factor = number if op is ast.Mult else 1.0 / number
            parts = {t: k * factor for t, k in value.parts().items()}
            return _combination(parts, value.offset * factor)
        if op is ast.Div:  # right is a tensor
            tr, kr = self._scaled(right)
            if not a:  # l / (k t) = (l / k) / t
                assert left.const is not None
                if left.const == 0.0 or not np.isfinite(left.const):
                    return None
                return _affine(self._emit("Reciprocal", [tr]), left.const / kr, 0.0)
            tl, kl = self._scaled(left)
            return _affine(self._emit("Div", [tl, tr]), kl / kr, 0.0)
        if op is ast.Pow and a and not b:  # (k t) ** p = k ** p t ** p
            p = right.const
            assert p is not None
            if p == 1.0:
                return left
            if p == 0.0 or not np.isfinite(p):
                return None
            t, k = self._scaled(left)
            if k < 0 and p != round(p):
                return None
            tensor = self._emit("Mul", [t, t]) if p == 2.0 else self._emit(
                "Pow", [t, self._constant(p)])  # fmt: skip
            return _affine(tensor, _fold(np.power, k, p), 0.0)
        return None

    def _grid_sum(self, value: str) -> str:
        """A grid value's sum over the points: [N, points] -> [N, 1]; [values, N, points]
        -> [N, 1], summed over the listed values too (ReduceSum takes its axes as an input
        since opset 13)."""
        total = self._emit("ReduceSum", [value, self._int64([-1])], keepdims=1)
        if value in self._branched:
            total = self._emit("ReduceSum", [total, self._int64([0])], keepdims=0)
        return total

    def _crossing_min(self, value: str, phase: str, points: int) -> str:
        """physics.blocks.crossing_min over the grid axis (the last): [N, points] -> [N, 1];
        [values, N, points] -> [N, 1], the least over the listed values too."""
        branched = not self._branched.isdisjoint((value, phase))
        axis = self._int64([-1])

        def head(x: str) -> str:
            return self._emit("Slice", [x, self._int64([0]), self._int64([points - 1]), axis])

        def tail(x: str) -> str:
            return self._emit("Slice", [x, self._int64([1]), self._int64([points]), axis])

        lobe = self._emit("Floor", [phase])
        l0, l1, p0, p1 = head(lobe), tail(lobe), head(phase), tail(phase)
        a0, a1 = head(value), tail(value)
        inf, zero, one = (self._constant(v) for v in (np.inf, 0.0, 1.0))
        ok = self._emit("And", [self._emit("Greater", [l1, l0]),
                                self._emit("GreaterOrEqual", [l1, zero])])  # fmt: skip
        for a in (a0, a1):  # finite: |a| < inf (NaN fails too)
            ok = self._emit("And", [ok, self._emit("Less", [self._emit("Abs", [a]), inf])])
        share = self._emit("Div", [self._emit("Sub", [l1, p0]), self._emit("Sub", [p1, p0])])
        at = self._emit("Add", [a0, self._emit("Mul", [share, self._emit("Sub", [a1, a0])])])
        single = self._emit("LessOrEqual", [self._emit("Sub", [l1, l0]), one])
        pick = self._emit("Where", [single, at, self._emit("Min", [a0, a1])])
        depth = self._emit("Where", [ok, pick, inf])
        least = self._emit("ReduceMin", [depth], axes=(-1,), keepdims=1)
        return self._emit("ReduceMin", [least], axes=(0,), keepdims=0) if branched else least

    def _bool(self, value: _Value) -> str:
        """Tensor name of ``value`` as a bool tensor: nonzero is true."""
        if value.const is not None:
            return self._constant(_truth(value.const))
        assert value.tensor is not None
        if value.is_bool:
            return value.tensor
        # Cast to bool maps +-0 to false and everything else, NaN included, to true.
        return self._emit("Cast", [self._float(value)], to=TensorProto.BOOL)

    def _full(self, value: _Value) -> str:
        """Float tensor of ``value`` in the inputs' shape."""
        if value.const is None or self._shape_ref is None:
            return self._float(value)
        # Where(all-false mask, c, c) broadcasts c with standard ops only; x < x is false
        # for every x, NaN included.
        mask = self._emit("Less", [self._shape_ref, self._shape_ref])
        c = self._constant(value.const)
        return self._emit("Where", [mask, c, c])

    # ---- visiting -----------------------------------------------------------------------

    def _visit(self, node: ast.AST) -> _Value:
        method = getattr(self, f"_visit_{type(node).__name__}", None)
        if method is None:  # compile_expr accepted it, so this is a gap in this module
            raise ExpressionError(
                f"{self._field}: {self._text!r} uses a {type(node).__name__} expression, "
                "which cannot be compiled to ONNX"
            )
        result: _Value = method(node)
        return result

    def _visit_Constant(self, node: ast.Constant) -> _Value:
        value = node.value
        assert isinstance(value, int | float)  # bool included; compile_expr refuses the rest
        return _Value(const=float(value))

    def _visit_Name(self, node: ast.Name) -> _Value:
        if node.id in CONSTANTS:
            return _Value(const=CONSTANTS[node.id])
        return self._values[node.id]

    def _visit_BinOp(self, node: ast.BinOp) -> _Value:
        left, right = self._visit(node.left), self._visit(node.right)
        if isinstance(node.op, ast.Mod):
            if left.const is not None and right.const is not None:
                return _Value(const=_fold(np.mod, left.const, right.const))
            # np.mod's sign convention (that of the divisor) is a - floor(a / b) * b.
            a, b = self._float(left), self._float(right)
            quotient = self._emit("Floor", [self._emit("Div", [a, b])])
            return _Value(tensor=self._emit("Sub", [a, self._emit("Mul", [quotient, b])]))
        op, fn = _ARITHMETIC[type(node.op)]
        if left.const is not None and right.const is not None:
            return _Value(const=_fold(fn, left.const, right.const))
        folded = self._arithmetic(type(node.op), left, right) if self.fold else None
        if folded is not None:
            return folded
        return _Value(tensor=self._emit(op, [self._float(left), self._float(right)]))

    def _visit_UnaryOp(self, node: ast.UnaryOp) -> _Value:
        operand = self._visit(node.operand)
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.USub):
            if operand.const is not None:
                return _Value(const=-operand.const)
            if self.fold and operand.tensor is not None and not operand.is_bool:
                negated = _combination({t: -k for t, k in operand.parts().items()},
                                       -operand.offset)  # fmt: skip
                if negated is not None:
                    return negated
            return _Value(tensor=self._emit("Neg", [self._float(operand)]))
        # ast.Not, the only other unary operator compile_expr lets through
        if operand.const is not None:
            return _Value(const=float(not _truth(operand.const)))
        return _Value(tensor=self._emit("Not", [self._bool(operand)]), is_bool=True)

    def _visit_BoolOp(self, node: ast.BoolOp) -> _Value:
        is_and = isinstance(node.op, ast.And)
        result = self._visit(node.values[0])
        for part in node.values[1:]:
            result = self._logical(is_and, result, self._visit(part))
        if result.const is None and not result.is_bool:
            # `x and y` is a truth value even when only one operand is left after folding.
            result = _Value(tensor=self._bool(result), is_bool=True)
        return result

    def _logical(self, is_and: bool, a: _Value, b: _Value) -> _Value:
        """Element-wise ``a and b`` / ``a or b``, folding constant operands."""
        for const, other in ((a, b), (b, a)):
            if const.const is None:
                continue
            if other.const is not None:
                x, y = _truth(const.const), _truth(other.const)
                return _Value(const=float((x and y) if is_and else (x or y)))
            # true and x == x, false or x == x (as truth values); else the constant decides.
            if _truth(const.const) == is_and:
                return _Value(tensor=self._bool(other), is_bool=True)
            return _Value(const=float(not is_and))
        op = "And" if is_and else "Or"
        return _Value(tensor=self._emit(op, [self._bool(a), self._bool(b)]), is_bool=True)

    def _visit_Compare(self, node: ast.Compare) -> _Value:
        operands = [self._visit(node.left), *(self._visit(c) for c in node.comparators)]
        result: _Value | None = None
        # a < b < c is (a < b) and (b < c); each operand is computed once.
        for cmp, left, right in zip(node.ops, operands, operands[1:], strict=False):
            op, fn = _COMPARISON[type(cmp)]
            if left.const is not None and right.const is not None:
                pair = _Value(const=_fold(fn, left.const, right.const))
            else:
                out = self._emit(op, [self._float(left), self._float(right)])
                if isinstance(cmp, ast.NotEq):
                    out = self._emit("Not", [out])
                pair = _Value(tensor=out, is_bool=True)
            result = pair if result is None else self._logical(True, result, pair)
        assert result is not None
        return result

    def _visit_IfExp(self, node: ast.IfExp) -> _Value:
        test, body, orelse = (self._visit(n) for n in (node.test, node.body, node.orelse))
        if test.const is not None:
            # np.where with a scalar condition picks one branch whole.
            return body if _truth(test.const) else orelse
        cond = self._bool(test)
        same = (body.tensor is not None and orelse.tensor is not None and not body.is_bool
                and not orelse.is_bool and not body.terms and not orelse.terms
                and (body.scale, body.offset) == (orelse.scale, orelse.offset))  # fmt: skip
        if same and body.pending:  # both branches scaled alike: select, then scale
            assert body.tensor is not None and orelse.tensor is not None
            tensor = self._emit("Where", [cond, body.tensor, orelse.tensor])
            return _Value(tensor=tensor, scale=body.scale, offset=body.offset)
        return _Value(tensor=self._emit("Where", [cond, self._float(body), self._float(orelse)]))

    def _visit_Call(self, node: ast.Call) -> _Value:
        assert isinstance(node.func, ast.Name)  # compile_expr refuses anything else
        name = node.func.id
        args = [self._visit(a) for a in node.args]
        if name in _VARIADIC_FUNCTIONS:
            # min/max are associative and commutative (NaN wins either way), so the
            # constant arguments fold into one.
            consts = [a.const for a in args if a.const is not None]
            tensors = [self._float(a) for a in args if a.const is None]
            if consts:
                folded = _fold(FUNCTIONS[name][0], *consts) if len(consts) > 1 else consts[0]
                if not tensors:
                    return _Value(const=folded)
                tensors.append(self._constant(folded))
            return _Value(tensor=self._emit(_VARIADIC_FUNCTIONS[name], tensors))
        if name == "atan2":
            consts = [a.const for a in args if a.const is not None]
            if len(consts) == 2:
                return _Value(const=_fold(np.arctan2, *consts))
            return _Value(tensor=self._atan2(*(self._float(a) for a in args)))
        (arg,) = args
        if arg.const is not None:
            return _Value(const=_fold(FUNCTIONS[name][0], arg.const))
        factor = _fold(np.exp, arg.offset) if name == "exp" else 0.0
        if arg.tensor is not None and not arg.is_bool and arg.offset and factor > 0.0 and (
                np.isfinite(factor)):  # fmt: skip
            # exp(k t + c) = e^c exp(k t): the offset becomes the result's pending scale
            scaled = _Value(tensor=arg.tensor, scale=arg.scale, terms=arg.terms)
            return _Value(tensor=self._emit("Exp", [self._float(scaled)]), scale=factor)
        x = self._float(arg)
        if self.dtype == np.float64 and name in ("tan", "acos", "asin", "atan"):
            return _Value(tensor=self._trig64(name, x))
        return _Value(tensor=self._emit(_UNARY_FUNCTIONS[name], [x]))

    def _atan2(self, y: str, x: str) -> str:
        """np.arctan2(y, x): atan of the smaller over the larger of |y|, |x| (never more
        than 1 in size, where the float64 polish is exact), reflected, then the quadrant."""
        zero, half_pi, pi = (self._constant(v) for v in (0.0, np.pi / 2, np.pi))
        steep = self._emit("Greater", [self._emit("Abs", [y]), self._emit("Abs", [x])])
        num, den = self._emit("Where", [steep, x, y]), self._emit("Where", [steep, y, x])
        # 0 / 0 (the origin) -> 0, as numpy
        den = self._emit("Where", [self._emit("Equal", [den, zero]), self._constant(1.0), den])
        ratio = self._emit("Div", [num, den])
        wide = self.dtype == np.float64
        t = self._trig64("atan", ratio) if wide else self._emit("Atan", [ratio])
        # steep: atan(y / x) = s pi / 2 - atan(x / y), s the sign of y, flipped for x < 0
        left = self._emit("Less", [x, zero])
        sign_y = self._emit("Sign", [y])
        sign = self._emit("Where", [left, self._emit("Neg", [sign_y]), sign_y])
        reflected = self._emit("Sub", [self._emit("Mul", [sign, half_pi]), t])
        t = self._emit("Where", [steep, reflected, t])
        # x < 0: +pi above the axis (y >= 0), -pi below
        turn = self._emit("Where", [self._emit("GreaterOrEqual", [y, zero]), pi,
                                    self._emit("Neg", [pi])])  # fmt: skip
        return self._emit("Add", [t, self._emit("Where", [left, turn, zero])])

    def _trig64(self, name: str, x: str) -> str:
        """tan, acos, asin, atan of a float64 tensor from float64 Sin/Cos kernels."""
        if name == "tan":
            return self._emit("Div", [self._emit("Sin", [x]), self._emit("Cos", [x])])
        low = self._emit("Cast", [x], to=TensorProto.FLOAT)
        y = self._emit("Cast", [self._emit(_UNARY_FUNCTIONS[name], [low])], to=self.elem_type)
        sin, cos = self._emit("Sin", [y]), self._emit("Cos", [y])
        if name == "atan":  # (tan y - x) / (1 + tan^2 y) = (sin y - x cos y) cos y
            residual = self._emit("Sub", [sin, self._emit("Mul", [x, cos])])
            return self._emit("Sub", [y, self._emit("Mul", [residual, cos])])
        # acos: y + (cos y - x) / sin y; asin: y - (sin y - x) / cos y; none where the
        # slope is 0 (x = +-1, where the float32 value is already exact)
        value, slope = (cos, sin) if name == "acos" else (sin, cos)
        step = self._emit("Div", [self._emit("Sub", [value, x]), slope])
        zero = self._constant(0.0)
        step = self._emit("Where", [self._emit("Equal", [slope, zero]), zero, step])
        return self._emit("Add" if name == "acos" else "Sub", [y, step])

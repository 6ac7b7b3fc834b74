"""An exported surrogate's ONNX graph as plain C: one function that evaluates one row.

The graph is the one source of truth: the spec's derived chain, every network's
weights, the ensemble's mean and spread, the calibrated interval and the event
probabilities are all in it, so translating its nodes one by one gives the same
model without a runtime. At one row every tensor has a static shape (the batch
dimension ``N`` fixed to 1, then ONNX shape inference), so each node becomes a few
loops over constant bounds and each tensor a slice of one workspace array per type,
reused once its last reader has run (first fit, planned here).

Semantics follow onnxruntime's CPU kernels where C's libm would differ: Min and Max
propagate NaN (C's fmin does not), a float to integer Cast of NaN or of a value out
of range gives INT64_MIN (what x86 gives), Gather clamps an index it could not
have produced (a NaN group) instead of reading out of bounds. Floating-point
constants are written as C99 hexadecimal literals, so every weight is bit-exact.
Only the operators the exporter emits are translated; any other is refused by name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper, shape_inference

from surrogates._errors import SurrogateError

__all__ = ["CGenError", "CProgram", "NativeGraph", "compile_library", "generate"]

_CTYPE = {
    TensorProto.FLOAT: "float",
    TensorProto.DOUBLE: "double",
    TensorProto.INT64: "int64_t",
    TensorProto.BOOL: "unsigned char",
}
_ARENA = {"float": "wf", "double": "wd", "int64_t": "wi", "unsigned char": "wb"}
_NP = {"float": np.float32, "double": np.float64, "int64_t": np.int64, "unsigned char": np.bool_}

# Element-wise operators: their C expression of the operands a, b, c.
_BINARY = {
    "Add": "{a} + {b}",
    "Sub": "{a} - {b}",
    "Mul": "{a} * {b}",
    "Div": "{a} / {b}",
    "Pow": "{pow}({a}, {b})",
    "Min": "{min}({a}, {b})",
    "Max": "{max}({a}, {b})",
    "Equal": "{a} == {b}",
    "Greater": "{a} > {b}",
    "GreaterOrEqual": "{a} >= {b}",
    "Less": "{a} < {b}",
    "LessOrEqual": "{a} <= {b}",
    "And": "{a} && {b}",
    "Or": "{a} || {b}",
}
_UNARY = {
    "Abs": "{fabs}({a})",
    "Acos": "{acos}({a})",
    "Atan": "{atan}({a})",
    "Ceil": "{ceil}({a})",
    "Cos": "{cos}({a})",
    "Erf": "{erf}({a})",
    "Exp": "{exp}({a})",
    "Floor": "{floor}({a})",
    "Log": "{log}({a})",
    "Neg": "-{a}",
    "Reciprocal": "{one} / {a}",
    "Sigmoid": "{one} / ({one} + {exp}(-{a}))",
    "Sign": "{sign}({a})",
    "Sin": "{sin}({a})",
    "Sqrt": "{sqrt}({a})",
    "Identity": "{a}",
}
_MATH = ("fabs", "acos", "atan", "ceil", "cos", "erf", "exp", "floor", "log", "sin", "sqrt",
         "pow")  # fmt: skip
_MOVES = ("Slice", "Transpose", "Squeeze", "Unsqueeze", "Reshape", "Gather")
_REDUCE = ("ReduceMean", "ReduceMin", "ReduceSum")

# Helpers every generated file carries (static, so two surrogates link side by side).
_PRELUDE = """\
/* min and max that propagate NaN (a + b is NaN when either is) */
static inline double tw_mind(double a, double b) {
    return a != a || b != b ? a + b : a < b ? a : b; }
static inline double tw_maxd(double a, double b) {
    return a != a || b != b ? a + b : a > b ? a : b; }
static inline float tw_minf(float a, float b) { return a != a || b != b ? a + b : a < b ? a : b; }
static inline float tw_maxf(float a, float b) { return a != a || b != b ? a + b : a > b ? a : b; }
static inline double tw_signd(double a) { return a > 0 ? 1.0 : (a < 0 ? -1.0 : a); }
static inline float tw_signf(float a) { return a > 0 ? 1.0f : (a < 0 ? -1.0f : a); }
static inline int64_t tw_to_i64(double a) {
    /* NaN and values out of range give INT64_MIN, as x86's conversion does */
    return (a == a && a > -9.2233720368547758e18 && a < 9.2233720368547758e18)
        ? (int64_t)a : INT64_MIN;
}
"""


class CGenError(SurrogateError):
    """The graph has something the generator does not translate (named in the message)."""


@dataclass(frozen=True)
class Port:
    name: str  # the C parameter
    ctype: str
    shape: tuple[int, ...]
    value: str = ""  # the graph's name of the value

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class CProgram:
    """The generated C: ``source`` defines ``void <function>(const float *x, float *out...)``
    with one pointer per graph output, in ``outputs``' order, each of one row's width."""

    function: str
    source: str
    inputs: list[Port]
    outputs: list[Port]
    workspace_bytes: int
    nodes: int
    weights: int = 0
    ops: dict[str, int] = field(default_factory=dict)

    @property
    def prototype(self) -> str:
        args = [f"const {p.ctype} *{p.name}" for p in self.inputs]
        args += [f"{p.ctype} *{p.name}" for p in self.outputs]
        return f"SURROGATE_API void {self.function}({', '.join(args)})"

    def rows_function(self) -> str:
        """``<function>_rows(int n, ...)``: the same for ``n`` rows stored one after another."""
        args = [f"const {p.ctype} *{p.name}" for p in self.inputs]
        args += [f"{p.ctype} *{p.name}" for p in self.outputs]
        call = ", ".join(f"{p.name} + (size_t)r * {p.size}" for p in [*self.inputs, *self.outputs])
        return "\n".join([
            f"SURROGATE_API void {self.function}_rows(int n, {', '.join(args)});",
            f"SURROGATE_API void {self.function}_rows(int n, {', '.join(args)})",
            "{", f"    for (int r = 0; r < n; r++) {self.function}({call});", "}", "",
        ])  # fmt: skip


def _literal(value: float, ctype: str) -> str:
    """A C literal of exactly ``value`` in ``ctype``."""
    if ctype in ("int64_t",):
        i = int(value)
        return "INT64_MIN" if i == -(2**63) else f"INT64_C({i})"
    if ctype == "unsigned char":
        return "1" if value else "0"
    v = float(value)
    if math.isnan(v):
        return "NAN" if ctype == "float" else "(double)NAN"
    if math.isinf(v):
        sign = "-" if v < 0 else ""
        return f"{sign}INFINITY" if ctype == "float" else f"{sign}(double)INFINITY"
    text = v.hex()
    return text + "f" if ctype == "float" else text


class _Planner:
    """First-fit offsets in one arena per C type; a slice is freed after its last reader."""

    def __init__(self) -> None:
        self.free: dict[str, list[tuple[int, int]]] = {}
        self.top: dict[str, int] = {}

    def take(self, ctype: str, size: int) -> int:
        holes = self.free.setdefault(ctype, [])
        for i, (off, n) in enumerate(holes):
            if n >= size:
                holes[i] = (off + size, n - size)
                if holes[i][1] == 0:
                    holes.pop(i)
                return off
        off = self.top.get(ctype, 0)
        self.top[ctype] = off + size
        return off

    def give(self, ctype: str, off: int, size: int) -> None:
        holes = sorted([*self.free.setdefault(ctype, []), (off, size)])
        merged: list[tuple[int, int]] = []
        for o, n in holes:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((o, n))
        self.free[ctype] = merged


def _static(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with the batch dimension fixed to 1 and every value's shape inferred."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in [*m.graph.input, *m.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    del m.graph.value_info[:]
    return shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)


def _broadcast_index(out: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """The C index into an operand of ``shape`` broadcast to ``out``, from the flat ``i``."""
    size = int(np.prod(shape, dtype=np.int64))
    if size == 1:
        return "0"
    if tuple(shape) == tuple(out):
        return "i"
    shape = (1,) * (len(out) - len(shape)) + tuple(shape)
    terms, out_stride, in_stride = [], 1, 1
    for d_out, d_in in zip(reversed(out), reversed(shape), strict=True):
        if d_in != 1:
            part = "i" if out_stride == 1 else f"i / {out_stride}"
            part = part if out_stride * d_out == int(np.prod(out)) else f"({part}) % {d_out}"
            terms.append(part if in_stride == 1 else f"({part}) * {in_stride}")
        out_stride *= d_out
        in_stride *= d_in
    return " + ".join(reversed(terms))


class _Gen:
    def __init__(self, model: onnx.ModelProto, function: str) -> None:
        self.model = _static(model)
        self.function = function
        g = self.model.graph
        self.types: dict[str, tuple[str, tuple[int, ...]]] = {}
        for vi in [*g.input, *g.output, *g.value_info]:
            t = vi.type.tensor_type
            if t.elem_type not in _CTYPE:
                raise CGenError(f"value {vi.name!r}: element type {t.elem_type} is not translated")
            self.types[vi.name] = (_CTYPE[t.elem_type], tuple(d.dim_value for d in t.shape.dim))
        self.consts: dict[str, np.ndarray] = {}
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            if init.data_type not in _CTYPE:
                raise CGenError(f"initializer {init.name!r}: type {init.data_type} not translated")
            self.consts[init.name] = arr
            self.types[init.name] = (_CTYPE[init.data_type], tuple(arr.shape))
        self.ref: dict[str, str] = {}  # value -> C pointer expression
        self.decls: list[str] = []
        self.body: list[str] = []
        self.plan = _Planner()
        self.where: dict[str, tuple[str, int, int]] = {}
        self.weights = 0
        self.ops: dict[str, int] = {}

    # -- values ------------------------------------------------------------------------
    def ctype(self, name: str) -> str:
        return self.types[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.types[name][1]

    def size(self, name: str) -> int:
        return int(np.prod(self.shape(name), dtype=np.int64))

    def const(self, name: str) -> np.ndarray:
        if name not in self.consts:
            raise CGenError(f"input {name!r} must be a constant (an initializer) here")
        return self.consts[name]

    def operand(self, name: str) -> str:
        if name in self.ref:
            return self.ref[name]
        if name in self.consts:
            ctype = self.ctype(name)
            arr = self.consts[name].reshape(-1)
            cname = f"k{len(self.decls)}"
            values = ", ".join(_literal(v, ctype) for v in arr.tolist()) if arr.size else "0"
            self.decls.append(f"static const {ctype} {cname}[{max(arr.size, 1)}] = {{{values}}};")
            self.ref[name] = cname
            self.weights += int(arr.size)
            return cname
        raise CGenError(f"value {name!r} is read before it is computed")

    def output(self, name: str) -> str:
        ctype, size = self.ctype(name), self.size(name)
        off = self.plan.take(ctype, size)
        self.where[name] = (ctype, off, size)
        ref = f"({_ARENA[ctype]} + {off})"
        self.ref[name] = ref
        return ref

    # -- emitting ----------------------------------------------------------------------
    def line(self, text: str) -> None:
        self.body.append("    " + text)

    def loop(self, size: int, statement: str) -> None:
        if size == 1:
            self.line(statement.replace("[i]", "[0]"))
        else:
            self.line(f"for (int i = 0; i < {size}; i++) {statement}")

    def fns(self, ctype: str) -> dict[str, str]:
        f = "f" if ctype == "float" else ""
        out = {m: m + f for m in _MATH}
        out.update(min=f"tw_min{f or 'd'}", max=f"tw_max{f or 'd'}", sign=f"tw_sign{f or 'd'}",
                   one="1.0f" if f else "1.0")  # fmt: skip
        return out

    def node(self, n: onnx.NodeProto) -> None:
        self.ops[n.op_type] = self.ops.get(n.op_type, 0) + 1
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        op = n.op_type
        if op in _BINARY or op in _UNARY or op == "Where":
            self.elementwise(n)
        elif op == "Cast":
            self.cast(n)
        elif op == "Concat":
            self.concat(n, int(attrs["axis"]))
        elif op == "Split":
            self.split(n, int(attrs.get("axis", 0)))
        elif op in _MOVES and not (op == "Gather" and n.input[1] not in self.consts):
            self.move(n, attrs)
        elif op == "Gather":
            self.gather(n, int(attrs.get("axis", 0)))
        elif op in _REDUCE:
            self.reduce(n, attrs)
        elif op == "MatMul":
            self.matmul(n)
        elif op == "Gemm":
            self.gemm(n, attrs)
        else:
            raise CGenError(f"node {n.name or n.output[0]!r}: operator {op} is not translated")

    def elementwise(self, n: onnx.NodeProto) -> None:
        op, out = n.op_type, n.output[0]
        shape, size = self.shape(out), self.size(out)
        ins = list(n.input)
        if op in ("Min", "Max") and len(ins) != 2:
            if len(ins) == 1:
                op = "Identity"
            else:
                raise CGenError(f"{op} of {len(ins)} inputs is not translated")
        # comparisons compute in their operands' type; Where's in its branches'
        ctype = self.ctype(ins[1] if op == "Where" else ins[0])
        args = [f"{self.operand(x)}[{_broadcast_index(shape, self.shape(x))}]" for x in ins]
        dst = self.output(out)
        if op == "Where":
            expr = f"{args[0]} ? {args[1]} : {args[2]}"
        else:
            template = _BINARY.get(op) or _UNARY[op]
            expr = template.format(a=args[0], b=args[1] if len(args) > 1 else "",
                                   **self.fns(ctype))  # fmt: skip
        self.loop(size, f"{dst}[i] = {expr};")

    def cast(self, n: onnx.NodeProto) -> None:
        src, out = n.input[0], n.output[0]
        a, dst = self.operand(src), None
        to, frm = self.ctype(out), self.ctype(src)
        dst = self.output(out)
        if to == "unsigned char":
            expr = f"{a}[i] != 0"
        elif to == "int64_t" and frm in ("float", "double"):
            expr = f"tw_to_i64((double){a}[i])"
        else:
            expr = f"({to}){a}[i]"
        self.loop(self.size(out), f"{dst}[i] = {expr};")

    def copy_map(self, dst: str, src: str, index: np.ndarray) -> None:
        """dst[j] = src[index[j]] for every j: one memcpy where the indices run contiguously,
        else a loop over a constant index table."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size == 0:
            return
        if index.size == 1:
            self.line(f"{dst}[0] = {src}[{int(index[0])}];")
        elif np.all(np.diff(index) == 1):
            self.line(f"memcpy({dst}, {src} + {int(index[0])}, {index.size} * sizeof *{dst});")
        else:
            name = f"m{len(self.decls)}"
            self.decls.append(f"static const int {name}[{index.size}] = {{"
                              + ", ".join(map(str, index.tolist())) + "};")  # fmt: skip
            self.line(f"for (int i = 0; i < {index.size}; i++) {dst}[i] = {src}[{name}[i]];")

    def move(self, n: onnx.NodeProto, attrs: dict) -> None:
        """A data movement with static parameters: applied to the element indices."""
        src, out = n.input[0], n.output[0]
        ids = np.arange(self.size(src)).reshape(self.shape(src))
        op = n.op_type
        if op == "Transpose":
            moved = np.transpose(ids, attrs.get("perm"))
        elif op == "Gather":
            moved = np.take(
                ids, self.const(n.input[1]).astype(np.int64), axis=int(attrs.get("axis", 0))
            )
        elif op == "Slice":
            starts, ends = self.const(n.input[1]), self.const(n.input[2])
            axes = self.const(n.input[3]) if len(n.input) > 3 and n.input[3] else range(len(starts))
            steps = self.const(n.input[4]) if len(n.input) > 4 and n.input[4] else [1] * len(starts)
            index: list[slice] = [slice(None)] * ids.ndim
            for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
                index[int(a)] = slice(int(s), int(e), int(st))
            moved = ids[tuple(index)]
        else:  # Reshape, Squeeze, Unsqueeze: the same elements in the same order
            moved = ids
        if moved.size != self.size(out):
            raise CGenError(f"node {out!r}: {op} gives {moved.size} elements, shape inference "
                            f"{self.size(out)}")  # fmt: skip
        self.copy_map(self.output(out), self.operand(src), moved)

    def concat(self, n: onnx.NodeProto, axis: int) -> None:
        out = n.output[0]
        shape = self.shape(out)
        axis %= len(shape)
        outer = int(np.prod(shape[:axis], dtype=np.int64))
        dst = self.output(out)
        total = int(np.prod(shape[axis:], dtype=np.int64))
        offset = 0
        for x in n.input:
            inner = int(np.prod(self.shape(x)[axis:], dtype=np.int64))
            src = self.operand(x)
            if inner == 0:
                continue
            if outer == 1:
                if inner == 1:
                    self.line(f"{dst}[{offset}] = {src}[0];")
                else:
                    self.line(f"memcpy({dst} + {offset}, {src}, {inner} * sizeof *{dst});")
            else:
                self.line(f"for (int o = 0; o < {outer}; o++) memcpy({dst} + o * {total} + "
                          f"{offset}, {src} + o * {inner}, {inner} * sizeof *{dst});")  # fmt: skip
            offset += inner

    def split(self, n: onnx.NodeProto, axis: int) -> None:
        src = n.input[0]
        shape = self.shape(src)
        axis %= len(shape)
        ids = np.arange(self.size(src)).reshape(shape)
        sizes = [self.shape(o)[axis] for o in n.output]
        start = 0
        a = self.operand(src)
        for o, k in zip(n.output, sizes, strict=True):
            part = np.take(ids, np.arange(start, start + k), axis=axis)
            self.copy_map(self.output(o), a, part)
            start += k

    def gather(self, n: onnx.NodeProto, axis: int) -> None:
        """Gather with indices computed at run time (clamped into the axis)."""
        data, idx, out = n.input[0], n.input[1], n.output[0]
        shape = self.shape(data)
        axis %= len(shape)
        dim = shape[axis]
        outer = int(np.prod(shape[:axis], dtype=np.int64))
        inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
        count = self.size(idx)
        d, ix, dst = self.operand(data), self.operand(idx), self.output(out)
        self.line(f"for (int j = 0; j < {count}; j++) {{")
        self.line(f"    int64_t k = {ix}[j] < 0 ? {ix}[j] + {dim} : {ix}[j];")
        self.line(f"    k = k < 0 ? 0 : (k > {dim - 1} ? {dim - 1} : k);")
        self.line(
            f"    for (int o = 0; o < {outer}; o++) memcpy({dst} + (o * {count} + j) * "
            f"{inner}, {d} + (o * {dim} + (int)k) * {inner}, {inner} * sizeof *{dst});"
        )
        self.line("}")

    def reduce(self, n: onnx.NodeProto, attrs: dict) -> None:
        src, out = n.input[0], n.output[0]
        shape = self.shape(src)
        if "axes" in attrs:
            axes = list(attrs["axes"])
        elif len(n.input) > 1 and n.input[1]:
            axes = [int(a) for a in self.const(n.input[1]).reshape(-1)]
        else:
            axes = []
        if not axes and not attrs.get("noop_with_empty_axes", 0):
            axes = list(range(len(shape)))
        axes = sorted(a % len(shape) for a in axes)
        keep = [a for a in range(len(shape)) if a not in axes]
        ids = np.arange(self.size(src)).reshape(shape).transpose(keep + axes)
        groups = ids.reshape(self.size(out), -1)
        m = groups.shape[1]
        ctype = self.ctype(out)
        f = self.fns(ctype)
        a, dst = self.operand(src), self.output(out)
        name = f"m{len(self.decls)}"
        self.decls.append(f"static const int {name}[{groups.size}] = {{"
                          + ", ".join(map(str, groups.reshape(-1).tolist())) + "};")  # fmt: skip
        if n.op_type == "ReduceMin":
            init, step = (
                f"{a}[{name}[i * {m}]]",
                f"acc = {f['min']}(acc, {a}[{name}[i * {m} + j]]);",
            )
            first = 1
        else:
            init, step, first = "0", f"acc += {a}[{name}[i * {m} + j]];", 0
        tail = f" / {m}" if n.op_type == "ReduceMean" else ""
        self.line(
            f"for (int i = 0; i < {groups.shape[0]}; i++) {{ {ctype} acc = {init}; "
            f"for (int j = {first}; j < {m}; j++) {step} {dst}[i] = acc{tail}; }}"
        )

    def matmul(self, n: onnx.NodeProto) -> None:
        a_name, b_name, out = n.input[0], n.input[1], n.output[0]
        sa, sb, so = self.shape(a_name), self.shape(b_name), self.shape(out)
        if len(sa) < 2 or len(sb) < 2:
            raise CGenError(f"node {out!r}: MatMul of a vector is not translated")
        m, k, nn = sa[-2], sa[-1], sb[-1]
        batch = so[:-2]
        nb = int(np.prod(batch, dtype=np.int64))
        a, b, dst = self.operand(a_name), self.operand(b_name), self.output(out)
        self.line(f"memset({dst}, 0, {nb * m * nn} * sizeof *{dst});")
        a_b = _batch_offsets(batch, sa[:-2], m * k)
        b_b = _batch_offsets(batch, sb[:-2], k * nn)
        for bi in range(nb):
            self.gemm_loops(dst, f"({a} + {a_b[bi]})", f"({b} + {b_b[bi]})", m, k, nn,
                            out_offset=bi * m * nn, ctype=self.ctype(out))  # fmt: skip

    def gemm_loops(self, dst: str, a: str, b: str, m: int, k: int, nn: int, *, out_offset: int,
                   ctype: str, trans_a: bool = False, trans_b: bool = False,
                   alpha: float = 1.0) -> None:  # fmt: skip
        """dst[m, nn] += alpha * a[m, k] b[k, nn] in the tensors' type, as onnxruntime sums
        (a sum in double drifts further from it on a row whose first layer cancels, and
        takes twice as long). Row by row, the k loop outside the n loop so the innermost
        runs along contiguous memory (the compiler vectorises it)."""
        ai = f"l * {m} + r" if trans_a else f"r * {k} + l"
        scale = "" if alpha == 1.0 else f"{_literal(alpha, ctype)} * "
        if trans_b:
            self.line(
                f"for (int r = 0; r < {m}; r++) for (int c = 0; c < {nn}; c++) {{ "
                f"{ctype} acc = 0; for (int l = 0; l < {k}; l++) acc += {a}[{ai}] * "
                f"{b}[c * {k} + l]; {dst}[{out_offset} + r * {nn} + c] += {scale}acc; }}"
            )
            return
        self.line(
            f"for (int r = 0; r < {m}; r++) for (int l = 0; l < {k}; l++) {{ "
            f"const {ctype} av = {scale}{a}[{ai}]; {ctype} *row = {dst} + {out_offset} + "
            f"r * {nn}; const {ctype} *bl = {b} + l * {nn}; "
            f"for (int c = 0; c < {nn}; c++) row[c] += av * bl[c]; }}"
        )

    def gemm(self, n: onnx.NodeProto, attrs: dict) -> None:
        out = n.output[0]
        ta, tb = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        sa, sb = self.shape(n.input[0]), self.shape(n.input[1])
        m, k = (sa[1], sa[0]) if ta else sa
        nn = sb[0] if tb else sb[1]
        a, b = self.operand(n.input[0]), self.operand(n.input[1])
        c = self.operand(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        dst = self.output(out)
        ctype = self.ctype(out)
        if c is None or beta == 0.0:
            self.line(f"memset({dst}, 0, {m * nn} * sizeof *{dst});")
        else:
            idx = _broadcast_index((m, nn), self.shape(n.input[2]))
            bscale = "" if beta == 1.0 else f"{_literal(beta, ctype)} * "
            self.loop(m * nn, f"{dst}[i] = {bscale}{c}[{idx}];")
        self.gemm_loops(dst, a, b, m, k, nn, out_offset=0, ctype=ctype, trans_a=ta,
                        trans_b=tb, alpha=alpha)  # fmt: skip

    # -- the whole graph ---------------------------------------------------------------
    def run(self) -> CProgram:
        g = self.model.graph
        taken: set[str] = set()

        def make_port(prefix: str, value: str) -> Port:
            name = base = prefix + re.sub(r"\W", "_", value)
            k = 1
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            taken.add(name)
            return Port(name, *self.types[value], value=value)

        inputs = [make_port("in_", i.name) for i in g.input if i.name not in self.consts]
        for p in inputs:
            self.ref[p.value] = p.name
        outputs = [make_port("out_", o.name) for o in g.output]
        last: dict[str, int] = {}
        for k, n in enumerate(g.node):
            for x in n.input:
                last[x] = k
        keep = {o.name for o in g.output}
        for k, n in enumerate(g.node):
            self.node(n)
            for x in set(n.input):
                if last.get(x) == k and x in self.where and x not in keep:
                    self.plan.give(*self.where[x])
        for port, o in zip(outputs, g.output, strict=True):
            self.line(
                f"memcpy({port.name}, {self.operand(o.name)}, {port.size} * sizeof *{port.name});"
            )
        arenas = [
            f"    {ct} {_ARENA[ct]}[{top}];" for ct, top in sorted(self.plan.top.items()) if top
        ]
        nbytes = sum(top * np.dtype(_NP[ct]).itemsize for ct, top in self.plan.top.items())
        prog = CProgram(self.function, "", inputs, outputs, int(nbytes), len(g.node),
                        self.weights, dict(sorted(self.ops.items())))  # fmt: skip
        prog.source = "\n".join([
            "#include <math.h>", "#include <stdint.h>", "#include <string.h>", "",
            "/* a library that exports the function defines this as its visibility */",
            "#ifndef SURROGATE_API", "#define SURROGATE_API", "#endif", "", _PRELUDE,
            *self.decls, "", prog.prototype + ";", prog.prototype, "{", *arenas, *self.body,
            "}", "", prog.rows_function(),
        ])  # fmt: skip
        return prog


def _batch_offsets(batch: tuple[int, ...], shape: tuple[int, ...], block: int) -> list[int]:
    """Each output batch element's offset into an operand broadcast over ``batch``."""
    nb = int(np.prod(batch, dtype=np.int64))
    if not shape:
        return [0] * nb
    ids = np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape)
    ids = np.broadcast_to(ids.reshape((1,) * (len(batch) - len(shape)) + shape), batch)
    return [int(v) * block for v in ids.reshape(-1)]


def generate(
    model: onnx.ModelProto | bytes | str | Path, function: str = "surrogate_run"
) -> CProgram:
    """C source of ``model``'s graph at one row (see the module's docstring)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    return _Gen(model, function).run()


def compile_library(prog: CProgram, folder: Path) -> tuple[Path, str]:
    """``prog`` as a shared library in ``folder`` (the project's compiler flags: C99, -O2,
    -Wall -Wextra); returns the library and what the compiler printed (warnings)."""
    from physics.fmu._build import _compile_shared, _shared_library_suffix

    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"{prog.function}.c"
    src.write_text(prog.source)
    lib = folder / f"{prog.function}{_shared_library_suffix()}"
    proc = _compile_shared(
        [src], lib, folder, defines=('-DSURROGATE_API=__attribute__((visibility("default")))',)
    )
    if proc.returncode != 0:
        raise CGenError(f"the generated C did not compile:\n{proc.stderr.strip()}")
    return lib, proc.stderr.strip()


class NativeGraph:
    """The compiled graph called through ctypes, row by row, like onnxruntime's ``run``."""

    def __init__(self, prog: CProgram, library: Path) -> None:
        import ctypes

        if len(prog.inputs) != 1:
            raise CGenError(f"a graph of {len(prog.inputs)} inputs: NativeGraph takes one")
        self.prog = prog
        self._lib = ctypes.CDLL(str(library))
        self._rows = getattr(self._lib, prog.function + "_rows")
        self._rows.restype = None
        self._ptr = {ct: ctypes.POINTER(getattr(ctypes, c)) for ct, c in
                     (("float", "c_float"), ("double", "c_double"), ("int64_t", "c_int64"),
                      ("unsigned char", "c_ubyte"))}  # fmt: skip

    def run(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for every row of ``raw`` [N, C], keyed as the graph names them
        (one call of ``<function>_rows``)."""
        import ctypes

        port = self.prog.inputs[0]
        x: np.ndarray = np.ascontiguousarray(raw, dtype=_NP[port.ctype]).reshape(len(raw), -1)
        if x.shape[1] != port.size:
            raise CGenError(f"rows of {x.shape[1]} columns: the graph takes {port.size}")
        outs: dict[str, np.ndarray] = {
            p.name: np.zeros((len(x), p.size), _NP[p.ctype]) for p in self.prog.outputs
        }
        args = [x.ctypes.data_as(self._ptr[port.ctype])]
        args += [outs[p.name].ctypes.data_as(self._ptr[p.ctype]) for p in self.prog.outputs]
        self._rows(ctypes.c_int(len(x)), *args)
        return {p.value: outs[p.name] for p in self.prog.outputs}

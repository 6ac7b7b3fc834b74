"""A small, safe arithmetic expression language for twin specs.

Stop times, derived quantities and constraints are written as Python-looking
expressions, parsed with :mod:`ast` and compiled to a tree of numpy closures;
no text is ever passed to ``eval``. Allowed: numbers, names, ``+ - * / ** %``,
unary ``-``/``+``, comparisons (chained), ``and``/``or``/``not``, ``a if c
else b``, the constants ``pi`` and ``inf`` and calls to the functions in :data:`FUNCTIONS`.

Given a :class:`ModelReferences` (a twin spec gives one: the FMU's parameters), an
expression also reads the model's constants: ``model.rated_power`` is a parameter's
start value and ``model.kc11[material]`` one value per choice of a categorical
input (``kc11_<choice>``). Both are replaced by numbers when the expression is
compiled: ``Expr.text`` is then the plain expression with those numbers in place
(a lookup becomes ``(830.0 * material_is_aluminium_6061 + ...)``), which every
consumer of the language (the ONNX compiler of surrogates too) reads as before.

Evaluation is vectorised: names may be bound to floats or numpy arrays, ``if``
follows ``np.where`` and ``and``/``or`` are element-wise, so a DOE can check a
whole sample matrix at once. Booleans count as 1.0 / 0.0. Floating-point
trouble (division by zero, log of a negative) gives inf/nan rather than an
exception; callers check the result where it matters. Each expression is also
compiled for a single row of Python floats (``Expr.evaluate_row``), which a service
checking one request's row uses: it gives the same numbers without numpy's per-call
cost. That form is Python bytecode compiled from a syntax tree built here out of the
checked one: only the allowed constructs, names read from the row's dict by string
key, functions from a fixed table, no builtins; no text of the spec is ever compiled.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CONSTANTS",
    "FUNCTIONS",
    "MODEL",
    "Expr",
    "ExpressionError",
    "ModelReferences",
    "compile_expr",
]


class ExpressionError(ValueError):
    """An expression that cannot be parsed, is not allowed, or cannot be evaluated."""


# The name whose attributes are the model's constants: model.<parameter>.
MODEL = "model"


class ModelReferences(Protocol):
    """What ``model.<name>`` and ``model.<column>[<input>]`` stand for. Each method raises
    LookupError whose text completes "<field>: <expression> ..." (what is wrong)."""

    def constant(self, name: str) -> float:
        """The value of ``model.<name>``."""
        ...

    def lookup(self, column: str, index: str) -> Sequence[tuple[str, float]]:
        """``model.<column>[<index>]`` as (indicator name, value) pairs, one per choice."""
        ...


Value = Any  # float or ndarray; numpy's own typing of ufunc results is too loose to help
_Node = Callable[[Mapping[str, Value]], Value]


def _minimum(*args: Value) -> Value:
    return functools.reduce(np.minimum, args)


def _maximum(*args: Value) -> Value:
    return functools.reduce(np.maximum, args)


# name -> (implementation, least number of arguments, most or None for "any")
FUNCTIONS: dict[str, tuple[Callable[..., Value], int, int | None]] = {
    "min": (_minimum, 2, None),
    "max": (_maximum, 2, None),
    "abs": (np.abs, 1, 1),
    "sqrt": (np.sqrt, 1, 1),
    "exp": (np.exp, 1, 1),
    "log": (np.log, 1, 1),
    "sin": (np.sin, 1, 1),
    "cos": (np.cos, 1, 1),
    "tan": (np.tan, 1, 1),
    "acos": (np.arccos, 1, 1),
    "asin": (np.arcsin, 1, 1),
    "atan": (np.arctan, 1, 1),
    "atan2": (np.arctan2, 2, 2),  # atan2(y, x): the angle of the point (x, y), -pi..pi
    "floor": (np.floor, 1, 1),
    "ceil": (np.ceil, 1, 1),
}
# inf: "no value here" in a derived block's reduction (see physics.blocks), the
# neutral value of a minimum.
CONSTANTS: dict[str, float] = {"pi": float(np.pi), "inf": math.inf}

# dtype float64: booleans count as 1.0 / 0.0 (numpy alone adds two bools as a logical or).
_BINARY: dict[type[ast.operator], Callable[[Value, Value], Value]] = {
    op: functools.partial(fn, dtype=np.float64)
    for op, fn in (
        (ast.Add, np.add),
        (ast.Sub, np.subtract),
        (ast.Mult, np.multiply),
        (ast.Div, np.true_divide),
        (ast.Pow, np.power),
        (ast.Mod, np.mod),
    )
}
_COMPARE: dict[type[ast.cmpop], Callable[[Value, Value], Value]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}


def _nan_aware(pick: Callable[..., float]) -> Callable[..., Value]:
    """min / max on floats that propagate NaN as np.minimum / np.maximum do."""
    return lambda *args: math.nan if any(a != a for a in args) else pick(args)


def _scalar_floor(x: Value) -> Value:
    return float(math.floor(x))


def _scalar_ceil(x: Value) -> Value:
    return float(math.ceil(x))


@dataclass(frozen=True)
class _Backend:
    """How the compiled tree computes: on numpy arrays (vectorised, inf/nan on trouble)
    or on Python floats (one row at a time, fast; raises on trouble, and
    ``Expr.evaluate_row`` then asks the numpy tree, so the answers are the same)."""

    load: Callable[[Value], Value]
    binary: Mapping[type[ast.operator], Callable[[Value, Value], Value]]
    compare: Mapping[type[ast.cmpop], Callable[[Value, Value], Value]]
    functions: Mapping[str, Callable[..., Value]]
    negative: Callable[[Value], Value]
    logical_not: Callable[[Value], Value]
    logical_and: Callable[[Value, Value], Value]
    logical_or: Callable[[Value, Value], Value]
    ifexp: Callable[[_Node, _Node, _Node], _Node]


_NUMPY = _Backend(
    load=lambda v: np.asarray(v, dtype=np.float64),
    binary=_BINARY,
    compare=_COMPARE,
    functions={name: fn for name, (fn, _, _) in FUNCTIONS.items()},
    negative=np.negative,
    logical_not=np.logical_not,
    logical_and=np.logical_and,
    logical_or=np.logical_or,
    ifexp=lambda test, body, orelse: (
        lambda values: np.where(test(values), body(values), orelse(values))
    ),
)
_SCALAR = _Backend(
    load=float,
    binary={
        ast.Add: operator.add,
        ast.Sub: operator.sub,
        ast.Mult: operator.mul,
        ast.Div: operator.truediv,
        ast.Pow: math.pow,
        ast.Mod: operator.mod,
    },
    compare={
        ast.Lt: operator.lt,
        ast.LtE: operator.le,
        ast.Gt: operator.gt,
        ast.GtE: operator.ge,
        ast.Eq: operator.eq,
        ast.NotEq: operator.ne,
    },
    functions={
        "min": _nan_aware(min),
        "max": _nan_aware(max),
        "abs": abs,
        "sqrt": math.sqrt,
        "exp": math.exp,
        "log": math.log,
        "sin": math.sin,
        "cos": math.cos,
        "tan": math.tan,
        "acos": math.acos,
        "asin": math.asin,
        "atan": math.atan,
        "atan2": math.atan2,
        "floor": _scalar_floor,
        "ceil": _scalar_ceil,
    },
    negative=operator.neg,
    logical_not=operator.not_,
    logical_and=lambda a, b: bool(a) and bool(b),
    logical_or=lambda a, b: bool(a) or bool(b),
    ifexp=lambda test, body, orelse: (
        lambda values: body(values) if test(values) else orelse(values)
    ),
)
# Python floats raise where numpy returns inf or nan: division or modulo by zero,
# log(0), sqrt(-1), overflow in exp or **, and complex results.
_SCALAR_TROUBLE = (ArithmeticError, ValueError, TypeError)
_OPERATOR_TEXT: dict[type[ast.AST], str] = {
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.Invert: "~",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
# What a disallowed construct is called in an error message.
_CONSTRUCT_TEXT: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripting",
    ast.Lambda: "a lambda",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.NamedExpr: "an assignment expression",
    ast.Starred: "argument unpacking",
    ast.JoinedStr: "an f-string",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "a slice",
}


@dataclass(frozen=True)
class Expr:
    """A compiled expression; ``names`` are the free variables it needs."""

    text: str
    field: str
    names: frozenset[str]
    _root: _Node = dataclasses.field(repr=False, compare=False)
    _row: _Node = dataclasses.field(repr=False, compare=False)

    def evaluate_row(self, values: Mapping[str, float]) -> float:
        """The value for one row of float names: ``float(evaluate(values))``, computed
        on Python floats (tens of times faster than numpy on a single row)."""
        try:
            return float(self._row(values))
        except (*_SCALAR_TROUBLE, KeyError):  # numpy's inf/nan, or its error message
            return float(self.evaluate(values))

    def evaluate(self, values: Mapping[str, ArrayLike]) -> float | NDArray[np.float64]:
        """Value for scalar names, or an array when any name is bound to an array."""
        missing = sorted(self.names - values.keys())
        if missing:
            listed = ", ".join(repr(m) for m in missing)
            raise ExpressionError(f"{self.field}: {self.text!r} needs a value for {listed}")
        with np.errstate(all="ignore"):
            out = np.asarray(self._root(values), dtype=np.float64)
        return float(out) if out.ndim == 0 else out


# Longer expressions are not formulas but data (or an attack on the parser's stack).
MAX_CHARS = 2_000


def compile_expr(text: str, *, field: str, model: ModelReferences | None = None) -> Expr:
    """Parse and check ``text``; ``field`` names where it came from, for error messages.
    ``model`` resolves ``model.<name>`` references (without one they are refused)."""
    if not isinstance(text, str):
        raise ExpressionError(f"{field}: expected an expression as text, got {text!r}")
    if len(text) > MAX_CHARS:
        raise ExpressionError(
            f"{field}: an expression of {len(text):,} characters; expected at most {MAX_CHARS:,}"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
        body, resolved = tree.body, text
        if any(_model_attribute(node) for node in ast.walk(body)):
            body = ast.fix_missing_locations(_ModelConstants(text, field, model).visit(body))
            resolved = ast.unparse(body)
        names: set[str] = set()
        root = _Compiler(text, field, names, _NUMPY).visit(body)
        row = _row_function(body, field) or _Compiler(text, field, set(), _SCALAR).visit(body)
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(
            f"{field}: {text!r} is not a valid expression ({exc.msg}{where})"
        ) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"{field}: {text[:40]!r}... is nested too deeply") from None
    return Expr(text=resolved, field=field, names=frozenset(names), _root=root, _row=row)


def _model_attribute(node: ast.AST) -> bool:
    """Whether ``node`` is ``model.<name>``."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == MODEL
    )


def _number(value: float) -> ast.expr:
    # A negative number as unary minus, so that unparsing keeps -1 ** 2 as (-1) ** 2.
    if value < 0 or (value == 0 and math.copysign(1.0, value) < 0):
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=-value))
    return ast.Constant(value=value)


class _ModelConstants(ast.NodeTransformer):
    """Replaces ``model.<name>`` by its number and ``model.<column>[<input>]`` by the sum
    of value times indicator over the input's choices, before anything is compiled."""

    def __init__(self, text: str, field: str, model: ModelReferences | None) -> None:
        self.text, self.field, self.model = text, field, model

    def fail(self, problem: str) -> ExpressionError:
        return ExpressionError(f"{self.field}: {self.text!r} {problem}")

    def _refs(self, what: str) -> ModelReferences:
        if self.model is None:
            raise self.fail(f"reads {what}; model constants are read only in a twin spec")
        return self.model

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if not _model_attribute(node):
            return self.generic_visit(node)  # refused by the compiler: attribute access
        what = f"{MODEL}.{node.attr}"
        try:
            value = self._refs(what).constant(node.attr)
        except LookupError as exc:
            raise self.fail(str(exc.args[0] if exc.args else exc)) from None
        return _number(float(value))

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if not _model_attribute(node.value):
            return self.generic_visit(node)  # refused by the compiler: subscripting
        assert isinstance(node.value, ast.Attribute)
        column = node.value.attr
        if not isinstance(node.slice, ast.Name):
            raise self.fail(
                f"indexes {MODEL}.{column} with {ast.unparse(node.slice)!r}; a table column "
                f"takes the name of a categorical input, e.g. {MODEL}.{column}[material]"
            )
        index = node.slice.id
        try:
            pairs = self._refs(f"{MODEL}.{column}[{index}]").lookup(column, index)
        except LookupError as exc:
            raise self.fail(str(exc.args[0] if exc.args else exc)) from None
        terms: list[ast.expr] = [
            ast.BinOp(left=_number(float(value)), op=ast.Mult(), right=ast.Name(id=name))
            for name, value in pairs
        ]
        if not terms:
            raise self.fail(f"reads {MODEL}.{column}[{index}], which has no choices")
        total = terms[0]
        for term in terms[1:]:
            total = ast.BinOp(left=total, op=ast.Add(), right=term)
        return total


# What the compiled row form may call: the scalar backend's functions and float().
_ROW_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    "_float": float,
    "_bool": bool,
    "_pow": math.pow,
    **{f"_fn_{name}": fn for name, fn in _SCALAR.functions.items()},
}
_ROW_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod)


def _row_function(body: ast.AST, field: str) -> _Node | None:
    """The expression (checked already: the numpy tree compiled) as bytecode on one row
    of floats, ``lambda v: ...``, with the scalar backend's semantics: names read as
    ``float(v[name])``, ``**`` as math.pow, booleans as bool. None when Python's compiler
    refuses the tree (nesting deeper than it allows): the closure tree serves then."""

    def name(n: str) -> ast.expr:
        return ast.Name(id=n, ctx=ast.Load())

    def call(fn: str, *args: ast.expr) -> ast.expr:
        return ast.Call(func=name(fn), args=list(args), keywords=[])

    def build(node: ast.AST) -> ast.expr:
        if isinstance(node, ast.Constant):
            return ast.Constant(value=float(node.value))  # type: ignore[arg-type]
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return ast.Constant(value=CONSTANTS[node.id])
            row = ast.Subscript(value=name("v"), slice=ast.Constant(value=node.id),
                                ctx=ast.Load())  # fmt: skip
            return call("_float", row)
        if isinstance(node, ast.BinOp):
            left, right = build(node.left), build(node.right)
            if isinstance(node.op, ast.Pow):
                return call("_pow", left, right)
            assert isinstance(node.op, _ROW_OPERATORS)
            return ast.BinOp(left=left, op=type(node.op)(), right=right)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                return build(node.operand)
            return ast.UnaryOp(op=type(node.op)(), operand=build(node.operand))
        if isinstance(node, ast.BoolOp):
            return ast.BoolOp(op=type(node.op)(), values=[call("_bool", build(v))
                                                          for v in node.values])  # fmt: skip
        if isinstance(node, ast.Compare):
            return ast.Compare(left=build(node.left), ops=[type(o)() for o in node.ops],
                               comparators=[build(c) for c in node.comparators])  # fmt: skip
        if isinstance(node, ast.IfExp):
            return ast.IfExp(test=build(node.test), body=build(node.body),
                             orelse=build(node.orelse))  # fmt: skip
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return call(f"_fn_{node.func.id}", *(build(a) for a in node.args))
        raise AssertionError(f"{type(node).__name__} passed the checks")  # pragma: no cover

    arguments = ast.arguments(posonlyargs=[], args=[ast.arg(arg="v")], kwonlyargs=[],
                              kw_defaults=[], defaults=[])  # fmt: skip
    tree = ast.Expression(body=ast.Lambda(args=arguments, body=build(body)))
    try:
        code = compile(ast.fix_missing_locations(tree), f"<{field}>", "eval")
    except (RecursionError, MemoryError, SyntaxError, ValueError):
        return None
    function: _Node = eval(code, dict(_ROW_GLOBALS))  # the code object built just above
    return function


class _Compiler:
    """Turns an ast node into a closure, rejecting whatever is not in the language."""

    def __init__(self, text: str, field: str, names: set[str], backend: _Backend) -> None:
        self.text, self.field, self.names, self.b = text, field, names, backend

    def fail(self, problem: str) -> ExpressionError:
        return ExpressionError(f"{self.field}: {self.text!r} {problem}")

    def refuse(self, what: str) -> ExpressionError:
        return self.fail(f"uses {what}, which is not allowed")

    def visit(self, node: ast.AST) -> _Node:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            what = _CONSTRUCT_TEXT.get(type(node), f"a {type(node).__name__} expression")
            raise self.refuse(what)
        result: _Node = method(node)
        return result

    def visit_Constant(self, node: ast.Constant) -> _Node:
        value = node.value
        # bool is an int subclass; True/False stay allowed as 1/0.
        if isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:
                raise self.fail("holds a number too large for a float") from None
            return lambda _values: number
        if isinstance(value, str):
            raise self.refuse(f"the string {value!r}")
        raise self.refuse(f"the constant {value!r}")

    def visit_Name(self, node: ast.Name) -> _Node:
        name = node.id
        if name in CONSTANTS:
            constant = CONSTANTS[name]
            return lambda _values: constant
        if name in FUNCTIONS:
            raise self.fail(f"uses the function {name!r} without calling it")
        self.names.add(name)
        load = self.b.load
        return lambda values: load(values[name])

    def visit_BinOp(self, node: ast.BinOp) -> _Node:
        op = self.b.binary.get(type(node.op))
        if op is None:
            raise self.refuse(f"the operator '{_OPERATOR_TEXT.get(type(node.op), '?')}'")
        left, right = self.visit(node.left), self.visit(node.right)
        return lambda values: op(left(values), right(values))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> _Node:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.USub):
            negative = self.b.negative
            return lambda values: negative(operand(values))
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.Not):
            logical_not = self.b.logical_not
            return lambda values: logical_not(operand(values))
        raise self.refuse(f"the operator '{_OPERATOR_TEXT.get(type(node.op), '?')}'")

    def visit_BoolOp(self, node: ast.BoolOp) -> _Node:
        combine = self.b.logical_and if isinstance(node.op, ast.And) else self.b.logical_or
        parts = [self.visit(v) for v in node.values]
        return lambda values: functools.reduce(combine, (p(values) for p in parts))

    def visit_Compare(self, node: ast.Compare) -> _Node:
        ops = []
        for op in node.ops:
            fn = self.b.compare.get(type(op))
            if fn is None:
                raise self.refuse(f"the comparison '{_OPERATOR_TEXT.get(type(op), '?')}'")
            ops.append(fn)
        operands = [self.visit(node.left), *(self.visit(c) for c in node.comparators)]
        both = self.b.logical_and

        def compare(values: Mapping[str, Value]) -> Value:
            # a < b < c means (a < b) and (b < c), each operand evaluated once.
            evaluated = [o(values) for o in operands]
            pairs = (fn(a, b) for fn, a, b in zip(ops, evaluated, evaluated[1:], strict=False))
            return functools.reduce(both, pairs)

        return compare

    def visit_IfExp(self, node: ast.IfExp) -> _Node:
        test, body, orelse = self.visit(node.test), self.visit(node.body), self.visit(node.orelse)
        return self.b.ifexp(test, body, orelse)

    def visit_Call(self, node: ast.Call) -> _Node:
        if not isinstance(node.func, ast.Name):
            raise self.fail("calls something that is not a function name")
        name = node.func.id
        if name not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise self.fail(f"calls the unknown function {name!r} (allowed: {allowed})")
        if node.keywords:
            raise self.refuse("keyword arguments")
        args = [self.visit(a) for a in node.args]
        _, least, most = FUNCTIONS[name]
        fn = self.b.functions[name]
        count = len(node.args)
        if count < least or (most is not None and count > most):
            wanted = str(least) if least == most else f"at least {least}"
            plural = "" if count == 1 else "s"
            raise self.fail(f"calls {name}() with {count} argument{plural}; it takes {wanted}")
        return lambda values: fn(*(a(values) for a in args))

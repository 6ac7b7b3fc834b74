"""The surrogate as one ONNX graph: raw inputs in; means, spreads, intervals and
event probabilities out.

Built node by node (not traced), so the graph holds exactly this and no more:

    x [N, C] --Cast to float64, Split--> one column per input
      choice indicators (Equal + Cast), the spec's derived expressions
      (surrogates._onnx_expr), logs, Concat, standardisation, all in float64 (a
      floor or a phase of a derived value would flip on float32 rounding), Cast
      --> fused ensemble: per layer one batched MatMul [G, in, out] + Add + activation
      --> [M, N, K]: regressions (mean, spread, conformal interval, back through each
          KPI's transform with clipping) and events (mean logit / T, Sigmoid)
      --> mean, std, lower, upper [N, R] (constant KPIs filled in, start values and
          baselines added back), probability [N, E]

Opset 17 and IR version 8, which every onnxruntime of the last years loads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from physics._spec_text import indicator
from physics.blocks import BlockExpr
from surrogates._errors import ParityError
from surrogates._features import EDGE_TENTH, EdgeColumns
from surrogates._surrogate import Surrogate
from surrogates._targets import EXACT_RTOL

OPSET = 17
IR_VERSION = 8
INPUT = "x"
OUTPUTS = ("mean", "std", "lower", "upper", "probability")
PARITY_RTOL = 1e-5


class _Graph:
    """Collects nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, value: Any, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        result = out or self.name(op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, list(inputs), [result], name=self.name(op_type), **attrs)
        )
        return result


def _activation(g: _Graph, h: str, kind: str) -> str:
    if kind == "silu":
        return g.op("Mul", h, g.op("Sigmoid", h))
    return g.op("Tanh" if kind == "tanh" else "Relu", h)


def needed_derived(spec: Any, used: set[str]) -> set[str]:
    """The derived expressions ``used`` features need, with what they are built from."""
    exprs = spec.derived_exprs
    out: set[str] = set()
    todo = list(used)
    while todo:
        key = todo.pop()
        if key in out or key not in exprs:
            continue
        out.add(key)
        todo.extend(exprs[key].names)
    return out


def build_onnx(s: Surrogate, *, lean: bool = True) -> Any:
    """The ONNX ModelProto of a surrogate (checked by onnx.checker). ``lean=False``:
    the derived chain as written, every operation a node (a reference for tests)."""
    import onnx
    from onnx import TensorProto, helper

    from surrogates._onnx_expr import OnnxExprBuilder

    g = _Graph()
    fmap, model = s.features, s.model
    cols = fmap.columns
    names: dict[str, str] = {}
    split = g.const("split", np.ones(len(cols)), np.int64)
    col_out = [f"in_{c.name}" for c in cols]
    x64 = g.op("Cast", INPUT, to=TensorProto.DOUBLE)
    g.nodes.append(helper.make_node("Split", [x64, split], col_out, name=g.name("Split"), axis=1))
    for col, tensor in zip(cols, col_out, strict=True):
        if col.choices:  # every indicator of a column at once: Equal, Cast, Split
            onehot = g.op(
                "Cast",
                g.op(
                    "Equal",
                    tensor,
                    g.const("choices", [np.arange(len(col.choices))], np.float64),
                ),
                to=TensorProto.DOUBLE,
            )
            outs = [indicator(col.name, choice) for choice in col.choices]
            g.nodes.append(
                helper.make_node(
                    "Split", [onehot, g.const("split", np.ones(len(outs)), np.int64)], outs,
                    name=g.name("Split"), axis=1,
                )
            )  # fmt: skip
            names.update({o: o for o in outs})
        else:
            names[col.name] = tensor
    baselines = {t.baseline for t in s.targets.targets if t.baseline}
    margins = {m for t in s.targets.of_kind("margin") for m in t.margins or []}
    used = {f.name for f in fmap.features if f.origin == "derived"} | baselines
    used |= margins & set(s.spec.derived_exprs)
    needed = needed_derived(s.spec, used)
    # A feature's value is scale * tensor + offset: a derived value's pending constants
    # go into the standardisation's (see OnnxExprBuilder.affine).
    n_feat = len(fmap.features)
    scale, offset = np.ones(n_feat), np.zeros(n_feat)
    parts = [names.get(f.name, "") for f in fmap.features]
    affine: dict[str, tuple[str, float, float]] = {}
    if needed:
        builder = OnnxExprBuilder(
            names, prefix="derived", dtype=np.float64, columns=lean, fold=lean
        )
        for key, expr in s.spec.derived_exprs.items():
            if key not in needed:
                continue
            if isinstance(expr, BlockExpr):
                builder.add_block(key, expr, lazy=True)
            else:
                builder.add(key, expr.text, lazy=True)
        affine = {key: builder.affine(key) for key in used}
        for j, f in enumerate(fmap.features):
            if f.origin != "derived":
                continue
            tensor, k, c = affine[f.name]
            if f.log and not (c == 0.0 and k > 0.0):  # log(k t) = log t + log k only then
                tensor, k, c = builder.tensor(f.name), 1.0, 0.0
            parts[j], scale[j], offset[j] = tensor, k, c
        # The margin events read their derived margins, and the baselines of the KPIs
        # among their margins, as plain tensors.
        by_name = {t.name: t for t in s.targets.targets}
        margin_bases = {str(by_name[m].baseline) for m in margins if m in by_name and
                        by_name[m].baseline}  # fmt: skip
        names.update({key: builder.tensor(key) for key in (margins | margin_bases) & set(affine)})
        g.nodes.extend(builder.nodes)
        g.initializers.extend(builder.initializers)
    # The features in the graph's order: the plain ones, then the logged ones (one Log
    # for them all; <= 0 is logged as the training min); what reads them (the first
    # layer, the skip, the spread model) takes its weights' rows in the same order.
    logged = np.array([f.log for f in fmap.features])
    order = np.concatenate([np.flatnonzero(~logged), np.flatnonzero(logged)])
    mean = fmap.mean.copy()

    def concat(columns: list[str]) -> str:
        return g.op("Concat", *columns, axis=1) if len(columns) > 1 else columns[0]

    blocks = [concat([parts[j] for j in np.flatnonzero(~logged)])] if (~logged).any() else []
    if logged.any():
        low = (fmap.low if fmap.low is not None else np.zeros(len(logged)))[logged]
        raw_logged = concat([parts[j] for j in np.flatnonzero(logged)])
        positive = g.op("Greater", raw_logged, g.const("zero", 0.0, np.float64))
        floor = low / scale[logged]  # scale > 0 where logged
        floored = g.op("Where", positive, raw_logged, g.const("log_floor", floor, np.float64))
        blocks.append(g.op("Log", floored))
        mean = np.where(logged, mean - np.log(scale), mean)
    feat = concat(blocks)
    # (k t + c - mean) / std = (t - (mean - c) / k) * k / std; logged: (log t - (mean -
    # log k)) / std.
    center = np.where(logged, mean, (mean - offset) / scale)
    factor = np.where(logged, 1.0, scale) / fmap.std
    h = g.op(
        "Mul",
        g.op("Sub", feat, g.const("feature_mean", center[order], np.float64)),
        g.const("feature_scale", factor[order], np.float64),
    )
    x32 = g.op("Cast", h, to=TensorProto.FLOAT)
    h = _nets(g, model, x32, order)
    group = _group(g, s, x64, col_out)
    interval = _interval_scale(g, s, x32, group, order)
    nets_space: dict[str, str] = {}
    outputs = _regression_outputs(g, s, h, names, affine, interval, nets_space)
    outputs += _event_outputs(g, s, h, names, nets_space)
    graph = helper.make_graph(
        g.nodes,
        f"{s.spec.name}_surrogate",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", len(cols)])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", w]) for name, w in outputs],
        g.initializers,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="asset-twin",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _nets(g: _Graph, model: Any, x: str, order: np.ndarray) -> str:
    """Every net of the fused ensemble on features x [N, F] (the model's features in
    ``order``): [M, N, K].

    The first layer of all G nets is one GEMM ([F, G H]: every net reads the same
    features), the middle layers are batched products over the nets, and a net with
    one output ends in Mul + ReduceSum rather than G tiny products: onnxruntime runs a
    batched MatMul of many small matrices one by one, which is what costs at batch 1.
    """
    st = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    layers = len(model.weights)
    w = [st[f"weights.{i}"] for i in range(layers)]  # [G, in, out]
    b = [st[f"biases.{i}"] for i in range(layers)]  # [G, 1, out]
    groups, n_features = model.groups, model.n_features
    m, k = model.members, model.n_outputs
    width, out = w[0].shape[2], w[-1].shape[2]

    def cat(a: np.ndarray) -> np.ndarray:  # [G, F, H] -> [F, G H], the rows in order
        return a.transpose(1, 0, 2).reshape(n_features, -1)[order]

    h = g.op("Add", g.op("MatMul", x, g.const("w0", cat(w[0]))), g.const("b0", b[0].reshape(-1)))
    if layers == 1:  # no hidden layer: [N, G out]
        y = h
    else:
        h = g.op("Reshape", _activation(g, h, model.activation),
                 g.const("shape", [-1, groups, width], np.int64))  # [N, G, H]  # fmt: skip
        if layers > 2:
            h = g.op("Transpose", h, perm=[1, 0, 2])  # [G, N, H]
            for i in range(1, layers - 1):
                h = g.op("Add", g.op("MatMul", h, g.const(f"w{i}", w[i])), g.const(f"b{i}", b[i]))
                h = _activation(g, h, model.activation)
            h = g.op("Transpose", h, perm=[1, 0, 2])  # [N, G, H]
        if out == 1:
            y = g.op(
                "ReduceSum",
                g.op("Mul", h, g.const("w_last", w[-1][:, :, 0])),
                g.const("axis", [-1], np.int64),
                keepdims=0,
            )  # [N, G]
            y = g.op("Add", y, g.const("b_last", b[-1][:, 0, 0]))
        else:  # shared nets, G = M: [M, N, K] by batched products, back to [N, M K]
            y = g.op("Add", g.op("MatMul", g.op("Transpose", h, perm=[1, 0, 2]),
                                 g.const("w_last", w[-1])), g.const("b_last", b[-1]))  # fmt: skip
            y = g.op("Reshape", g.op("Transpose", y, perm=[1, 0, 2]),
                     g.const("shape", [0, -1], np.int64))  # fmt: skip
    if model.skip is not None:
        y = g.op("Add", y, g.op("MatMul", x, g.const("skip", cat(st["skip"]))))
    # [N, G out] -> [N, M, K] (per KPI: g = m K + k; shared: member m, output k) -> [M, N, K]
    y = g.op("Reshape", y, g.const("shape", [-1, m, k], np.int64))
    return g.op("Transpose", y, perm=[1, 0, 2])


def _slice(g: _Graph, h: str, start: int, end: int) -> str:
    return g.op(
        "Slice",
        h,
        g.const("start", [start], np.int64),
        g.const("end", [end], np.int64),
        g.const("axis", [2], np.int64),
    )


def _group(g: _Graph, s: Surrogate, x64: str, col_out: list[str]) -> str | None:
    """The calibration group of each row, [N, 1] float64 (see Surrogate.group_index):
    the choice column, times two plus the edge band (the share of the numeric inputs
    within EDGE_TENTH of a bound, at least edge_share) where there are bands."""
    from onnx import TensorProto

    cal, cols = s.calibration, s.features.columns
    choice = None if cal.groups is None else col_out[[c.name for c in cols].index(cal.groups)]
    if cal.edge_share is None:
        return choice
    e = EdgeColumns.of(s.spec, cols)
    v = g.op("Gather", x64, g.const("edge_columns", e.index, np.int64), axis=1)
    if e.logged.any():
        floored = g.op("Max", v, g.const("edge_tiny", 1e-300, np.float64))
        v = g.op("Where", g.const("edge_logged", e.logged[None, :], np.bool_),
                 g.op("Log", floored), v)  # fmt: skip
    u = g.op("Div", g.op("Sub", v, g.const("edge_low", e.low[None, :], np.float64)),
             g.const("edge_range", (e.high - e.low)[None, :], np.float64))  # fmt: skip
    near = g.op("Or", g.op("Less", u, g.const("edge_tenth", EDGE_TENTH, np.float64)),
                g.op("Greater", u, g.const("edge_top", 1.0 - EDGE_TENTH, np.float64)))  # fmt: skip
    share = g.op("ReduceMean", g.op("Cast", near, to=TensorProto.DOUBLE), axes=[1], keepdims=1)
    band = g.op("Cast", g.op("GreaterOrEqual", share, g.const("edge_share", cal.edge_share,
                                                               np.float64)),
                to=TensorProto.DOUBLE)  # fmt: skip
    if choice is None:
        return band
    return g.op("Add", g.op("Mul", choice, g.const("two", 2.0, np.float64)), band)


def _interval_scale(
    g: _Graph, s: Surrogate, x32: str, group: str | None, order: np.ndarray
) -> Callable[[str], str]:
    """``half(spread)``: the interval's half-width in the nets' space, [1|N, N, kr] from
    the members' spread (see Calibration.scale and .quantiles); x32 holds the features
    in ``order``."""
    from onnx import TensorProto

    cal = s.calibration
    if cal.group_q is not None and group is not None:
        index = g.op("Cast", g.op("Squeeze", group, g.const("axis1", [1], np.int64)),
                     to=TensorProto.INT64)  # fmt: skip
        q = g.op("Gather", g.const("group_q", cal.group_q), index, axis=0)  # [N, kr]
    else:
        q = g.const("q", cal.q)
    d = cal.difficulty

    def half(spread: str) -> str:
        base = g.op("Add", spread, g.const("floor", cal.floor))
        if d is None:
            return g.op("Mul", base, q)
        w = np.asarray(d["weights"])
        eta = g.op(
            "Add",
            g.op("Add", g.op("Mul", g.op("Log", base), g.const("w_spread", w[0])),
                 g.op("MatMul", x32, g.const("w_features", w[1:][order]))),
            g.const("w_bias", d["bias"]),
        )  # fmt: skip
        eta = g.op("Max", g.op("Min", eta, g.const("eta_high", d["high"])),
                   g.const("eta_low", d["low"]))  # fmt: skip
        return g.op("Mul", g.op("Exp", eta), q)

    return half


def _regression_outputs(
    g: _Graph,
    s: Surrogate,
    h: str,
    names: dict[str, str],
    affine: dict[str, tuple[str, float, float]],
    half_of: Callable[[str], str],
    nets_space: dict[str, str],
) -> list[tuple[str, int]]:
    """mean, std, lower, upper; ``names``: float64 tensors of the inputs; ``affine``:
    each derived value a KPI is learned over as (t, k, c), the value k t + c;
    ``nets_space`` gets the members' mean and the interval's half-width in the nets'
    space ([1, N, kr] each) for the margin events."""
    from onnx import TensorProto, helper

    regs = s.targets.of_kind("regression")
    reported = s.targets.reported
    if not reported:
        return []
    kr = len(regs)
    if kr:
        z = _slice(g, h, 0, kr)  # [M, N, kr]
        ceiling = s.targets.ceilings()
        if np.isfinite(ceiling).any():  # capped KPIs: every member clipped to its cap
            z = g.op("Min", z, g.const("ceiling", ceiling))
        mu = g.op("ReduceMean", z, axes=[0], keepdims=1)  # [1, N, kr]
        dev = g.op("Sub", z, mu)
        spread = g.op("Sqrt", g.op("ReduceMean", g.op("Mul", dev, dev), axes=[0], keepdims=1))
        half = half_of(spread)
        nets_space.update(mu=mu, half=half)
        # Members, mean and the interval's ends go back through the transforms at once.
        stacked = g.op("Concat", z, mu, g.op("Sub", mu, half), g.op("Add", mu, half), axis=0)
        tv = g.op("Add", g.op("Mul", stacked, g.const("target_std", [t.std for t in regs])),
                 g.const("target_mean", [t.mean for t in regs]))  # fmt: skip
        bounds = np.array([t.clip_bounds() for t in regs])
        tv = g.op(
            "Max",
            g.op("Min", tv, g.const("clip_high", bounds[:, 1])),
            g.const("clip_low", bounds[:, 0]),
        )
        is_log = np.array([t.transform == "log" for t in regs])
        shifted = g.op(
            "Sub",
            g.op("Exp", g.op("Mul", tv, g.const("is_log", is_log.astype(np.float32)))),
            g.const("shift", [t.shift for t in regs]),
        )
        back = g.op("Where", g.const("is_log_mask", is_log, np.bool_), shifted, tv)
        m = s.model.members
        parts = [g.name("members"), g.name("mean"), g.name("lower"), g.name("upper")]
        g.nodes.append(
            helper.make_node("Split", [back, g.const("split", [m, 1, 1, 1], np.int64)], parts,
                             name=g.name("Split"), axis=0)
        )  # fmt: skip
        md = g.op("Sub", parts[0], g.op("ReduceMean", parts[0], axes=[0], keepdims=1))
        values = {  # [1, N, kr] each
            "mean": parts[1],
            "std": g.op("Sqrt", g.op("ReduceMean", g.op("Mul", md, md), axes=[0], keepdims=1)),
            "lower": parts[2],
            "upper": parts[3],
        }
    # Into the reported columns: out = learned @ S + c, S scattering the learned columns
    # into place and c holding the constants; then + the bases (each KPI's baseline or
    # start value) @ B, B scattering them into place; a constant's interval is its
    # tolerance plus EXACT_RTOL of its value. Each step only if needed.
    width = len(reported)
    scatter = np.zeros((kr, width), dtype=np.float32)
    fill = np.zeros(width, dtype=np.float32)
    tolerance = np.zeros(width, dtype=np.float32)
    relative = np.zeros(width, dtype=np.float32)
    learned = {t.name: i for i, t in enumerate(regs)}
    base_parts: list[str] = []
    base_columns: list[int] = []
    base_scales: list[float] = []
    base_offset = np.zeros(width)  # float64: a baseline minus a start may cancel
    for j, t in enumerate(reported):
        if t.kind == "constant":
            fill[j], tolerance[j], relative[j] = t.value, t.tolerance, EXACT_RTOL
        else:
            scatter[learned[t.name], j] = 1.0
        if t.baseline or t.start:
            tensor, k, c = affine[t.baseline] if t.baseline else (names[str(t.start)], 1.0, 0.0)
            base_parts.append(tensor)
            base_columns.append(j)
            base_scales.append(k)
            base_offset[j] = c
    if not kr:  # every reported KPI is constant: a zero [N, 1] column to broadcast from
        zero = _zero_column(g)
        values = {name: zero for name in ("mean", "std", "lower", "upper")}
    base = None
    if base_parts:
        placed = np.zeros((len(base_parts), width))
        placed[np.arange(len(base_parts)), base_columns] = base_scales
        stacked_bases = (
            g.op("Concat", *base_parts, axis=1) if len(base_parts) > 1 else base_parts[0]
        )
        weights = g.const("base_scatter", placed, np.float64)
        based = (
            g.op("Gemm", stacked_bases, weights, g.const("base_offset", base_offset, np.float64))
            if base_offset.any() else g.op("MatMul", stacked_bases, weights)
        )  # fmt: skip
        base = g.op("Cast", based, to=TensorProto.FLOAT)
    final: dict[str, str] = {}
    for name, tensor in values.items():
        if kr and kr != width:
            tensor = g.op("MatMul", tensor, g.const("scatter", scatter))
        if name != "std" and (fill.any() or not kr):
            tensor = g.op("Add", tensor, g.const("fill", fill))
        if name != "std" and base is not None:
            tensor = g.op("Add", tensor, base)
        final[name] = tensor
    if relative.any():  # constants: an interval of rounding around the value
        half = g.op(
            "Add",
            g.op("Mul", g.op("Abs", final["mean"]), g.const("exact_rtol", relative)),
            g.const("tolerance", tolerance),
        )
        final["lower"] = g.op("Sub", final["lower"], half)
        final["upper"] = g.op("Add", final["upper"], half)
    for name, tensor in final.items():
        g.op("Squeeze", tensor, g.const("axis", [0], np.int64), out=name)  # [N, width]
    return [(name, width) for name in ("mean", "std", "lower", "upper")]


def _zero_column(g: _Graph) -> str:
    """Zeros [1, N, 1] (float32), to broadcast a constant over the rows."""
    rows = g.op("Slice", INPUT, *(g.const(n, v, np.int64) for n, v in
                (("s0", [0]), ("s1", [1]), ("ax", [1]))))  # fmt: skip
    return g.op("Mul", rows, g.const("zero", [[[0.0]]]))


def _event_outputs(
    g: _Graph, s: Surrogate, h: str, names: dict[str, str], nets_space: dict[str, str]
) -> list[tuple[str, int]]:
    """probability [N, E]: the learned events (mean logit / T, Sigmoid), then the events
    derived from their margins (see Surrogate.margin_probability)."""
    from onnx import TensorProto

    events = s.targets.of_kind("event")
    margins = s.targets.of_kind("margin")
    if not events and not margins:
        return []
    kr = len(s.targets.of_kind("regression"))
    columns: list[str] = []
    learned = None
    if events:
        logits = _slice(g, h, kr, kr + len(events))
        mean = g.op("ReduceMean", logits, axes=[0], keepdims=0)
        learned = g.op("Sigmoid", g.op("Div", mean, g.const("temperature",
                                                           s.calibration.temperature)))  # fmt: skip
        columns.append(learned)
    by_name = {t.name: t for t in s.targets.targets}
    index = {t.name: k for k, t in enumerate(s.targets.of_kind("regression"))}
    z_level = NormalDist().inv_cdf(0.5 + s.calibration.level / 2)
    one = g.const("one", 1.0, np.float64)

    def reached(value64: str) -> str:  # [N, 1] float64 -> 0/1 [1, N, 1] float32
        flag = g.op("Cast", g.op("GreaterOrEqual", value64, one), to=TensorProto.FLOAT)
        return g.op("Unsqueeze", flag, g.const("axis", [0], np.int64))

    for t in margins:
        none = None
        for name in t.margins or []:
            m = by_name.get(name)
            base = names.get(m.baseline or str(m.start)) if m and (m.baseline or m.start) else None
            if m is None:  # a derived value
                p = reached(names[name])
            elif m.kind == "event":
                assert learned is not None
                col = [e.name for e in events].index(name)
                p = g.op("Unsqueeze", g.op("Slice", learned, g.const("s", [col], np.int64),
                                           g.const("e", [col + 1], np.int64),
                                           g.const("ax", [1], np.int64)),
                         g.const("axis", [0], np.int64))  # fmt: skip
            elif m.kind == "constant":
                value = g.const("value", m.value, np.float64)
                p = (reached(g.op("Add", base, value)) if base else
                     g.op("Add", _zero_column(g), g.const("p", float(m.value >= 1.0))))  # fmt: skip
            else:  # a regression: P(y >= 1) = Phi((mu - z_at) z_level / half)
                k = index[name]
                left = g.op("Sub", one, base) if base else g.const("left", [[1.0]], np.float64)
                if m.transform == "log":
                    shifted = g.op("Add", left, g.const("shift", m.shift, np.float64))
                    positive = g.op("Greater", shifted, g.const("zero", 0.0, np.float64))
                    safe = g.op("Where", positive, shifted, one)
                    z_at = g.op("Where", positive, g.op("Log", safe),
                                g.const("below", -1e30, np.float64))  # fmt: skip
                else:
                    z_at = left
                z_at = g.op("Div", g.op("Sub", z_at, g.const("mean", m.mean, np.float64)),
                            g.const("std", m.std, np.float64))  # fmt: skip
                z_at = g.op("Unsqueeze", g.op("Cast", z_at, to=TensorProto.FLOAT),
                            g.const("axis", [0], np.int64))  # [1, N, 1]  # fmt: skip
                mu_k = _slice(g, nets_space["mu"], k, k + 1)
                half_k = _slice(g, nets_space["half"], k, k + 1)
                scale = g.const("z_level", z_level / math.sqrt(2.0))
                u = g.op("Div", g.op("Mul", g.op("Sub", mu_k, z_at), scale), half_k)
                p = g.op("Mul", g.op("Add", g.op("Erf", u), g.const("one32", 1.0)),
                         g.const("half32", 0.5))  # fmt: skip
            miss = g.op("Sub", g.const("one32", 1.0), p)
            none = miss if none is None else g.op("Mul", none, miss)
        assert none is not None
        columns.append(g.op("Squeeze", g.op("Sub", g.const("one32", 1.0), none),
                            g.const("axis", [0], np.int64)))  # [N, 1]  # fmt: skip
    if len(columns) == 1:
        g.op("Identity", columns[0], out="probability")
    else:
        g.op("Concat", *columns, axis=1, out="probability")
    return [("probability", len(events) + len(margins))]


def session(model: Any, threads: int = 1) -> Any:
    """An onnxruntime session on one thread (faster than the default at batch 1)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No buffer reuse between nodes: a graph of ~1,000 small nodes runs about a tenth
    # faster at batch 1 (serving/_models.py sets the same; experiments/profile_onnx.py).
    options.enable_mem_reuse = False
    data = model if isinstance(model, bytes | str) else model.SerializeToString()
    if isinstance(data, str):
        data = Path(data).read_bytes()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run(sess: Any, raw: np.ndarray) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, {INPUT: np.ascontiguousarray(raw, dtype=np.float32)})
    return dict(zip(names, values, strict=True))


def parity(s: Surrogate, sess: Any, raw: np.ndarray) -> dict[str, float]:
    """Largest relative difference between onnxruntime and the PyTorch reference, per output.

    Relative to each KPI's scale (the largest magnitude of its mean, interval and spread
    over the rows): std, lower and upper are in the KPI's unit, and a spread that is a
    difference of nearly equal members is measured against the KPI, not against itself.

    Both sides see the rows as the graph does, rounded to float32: the spec's integer
    steps (tools per order: floor(1 / wear per part)) flip where float64 and float32
    inputs straddle one, which is a difference of inputs, not of the two computations.
    """
    raw = np.asarray(raw, dtype=np.float32).astype(np.float64)
    ref = s.predict(raw)
    got = run(sess, raw)
    out: dict[str, float] = {}
    if ref.mean.size:
        kpi_scale = np.max(
            [np.abs(getattr(ref, n)).max(axis=0) for n in ("mean", "lower", "upper")], axis=0
        )
    for name in OUTPUTS:
        if name not in got:
            continue
        want = getattr(ref, name)
        if not want.size:
            out[name] = 0.0
            continue
        own = np.abs(want).max(axis=0)
        scale = np.maximum(own if name == "probability" else kpi_scale, 1e-12)
        out[name] = float(np.max(np.abs(got[name] - want) / scale))
    return out


def parity_limits(diffs: dict[str, float], rtol: float = PARITY_RTOL) -> dict[str, float]:
    """Each output's parity limit: ``rtol`` on the means and probabilities, ten times that
    on the spread and the interval bounds (see check_parity)."""
    return {k: rtol if k in ("mean", "probability") else 10 * rtol for k in diffs}


def check_parity(s: Surrogate, sess: Any, raw: np.ndarray, rtol: float = PARITY_RTOL) -> dict:
    """Refuse an export whose graph disagrees with PyTorch: ``rtol`` on the predictions
    (mean, probability); ten times that on the spread and interval bounds, which scale
    the float32 rounding of nearly equal members by the conformal factor (a wide
    interval of an untrained model would fail on rounding alone)."""
    diffs = parity(s, sess, raw)
    limits = parity_limits(diffs, rtol)
    bad = {k: v for k, v in diffs.items() if not v <= limits[k]}
    if bad:
        shown = ", ".join(f"{k} {v:.2e} (limit {limits[k]:g})" for k, v in bad.items())
        raise ParityError(f"ONNX and PyTorch disagree beyond the parity limit: {shown}")
    return diffs

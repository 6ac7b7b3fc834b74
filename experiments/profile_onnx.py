"""Where a bundle's ONNX graph spends its time at batch 1: onnxruntime's own profiler.

    .venv/bin/python experiments/profile_onnx.py out/demo/bundle [--runs 300]

Prints the node count by operator, the time of one ``session.run`` with the serving
session options (one thread, no spinning, all graph optimisations), and the kernel time
by operator from a profiled session (profiling adds its own cost: compare the shares,
not the sums, with the plain timing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def _options(profile: bool, reuse: bool = False) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_mem_reuse = reuse  # serving: no buffer reuse between nodes
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    return opts


def _feeds(session: Any) -> dict[str, np.ndarray]:
    """One row of zeros per input, in the input's own type."""
    types = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}
    feeds = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.zeros(shape, types.get(i.type, np.float32))
    return feeds


def main() -> None:
    import onnx
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a model bundle folder (model.onnx inside)")
    parser.add_argument("--runs", type=int, default=300, help="profiled runs")
    args = parser.parse_args()
    model = args.bundle / "model.onnx"
    ops = Counter(n.op_type for n in onnx.load(str(model)).graph.node)
    print(f"{sum(ops.values())} nodes: " + ", ".join(f"{k} {v}" for k, v in ops.most_common(12)))

    for reuse in (False, True):
        plain = ort.InferenceSession(str(model), _options(False, reuse),
                                     providers=["CPUExecutionProvider"])  # fmt: skip
        feeds = _feeds(plain)
        for _ in range(50):
            plain.run(None, feeds)
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            plain.run(None, feeds)
        label = "with buffer reuse" if reuse else "serving options"
        print(f"batch 1, {label}: {1e3 * (time.perf_counter() - t0) / n:.3f} ms per session.run")

    profiled = ort.InferenceSession(str(model), _options(True), providers=["CPUExecutionProvider"])
    for _ in range(args.runs):
        profiled.run(None, feeds)
    events = json.loads(Path(profiled.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values())
    print(f"kernel time by operator (profiled, {args.runs} runs):")
    for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {op:16s} {us / args.runs:8.1f} us/run  {100 * us / total:5.1f} %")


if __name__ == "__main__":
    main()

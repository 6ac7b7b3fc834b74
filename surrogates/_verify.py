"""``twin verify``: the bundle against fresh FMU runs, and the spec's gate.

The runs are new designs (random, from other seeds than the training dataset's)
of the spec's verification slices (``physics.verification``), each simulated by the
runner into a dataset folder of its own, so they are resumable and can be inspected
with ``twin data info``.
The exported ONNX graph, not the PyTorch model, is what is scored: it is what
serving runs. The figures go into signature.json and the model card, and the
gate's verdict into the bundle and (where tracked) the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from physics.runner import PoolOptions
from physics.spec import TwinSpec
from surrogates._bundle import MODEL, read_signature, save_signature
from surrogates._errors import DataError
from surrogates._export import run, session
from surrogates._features import InputColumn, raw_matrix
from surrogates._metrics import gate, score
from surrogates._surrogate import Prediction

# A partition's part is judged on its coverage only with at least this many runs.
MIN_PARTITION_ROWS = 100


@dataclass
class SliceResult:
    """One verification slice: its runs' figures and the thresholds they miss."""

    metrics: dict[str, dict[str, float]]
    failures: list[str]
    runs: int
    folder: Path
    design: str  # describe_slice's line
    seed: int


@dataclass
class Verification:
    metrics: dict[str, dict[str, float]]  # pooled over every slice
    failures: list[str]  # every slice's, the pooled runs' and every partition's
    runs: int
    folder: Path
    signature: dict[str, Any]
    slices: dict[str, SliceResult] = field(default_factory=dict)
    partitions: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def bundle_columns(signature: dict[str, Any]) -> list[InputColumn]:
    return [
        InputColumn(
            i["name"], i["kind"], i.get("unit"), i["min"], i["max"],
            tuple(i.get("choices", ())), i.get("source", "order"),
        )
        for i in signature["inputs"]
    ]  # fmt: skip


def predict_bundle(folder: Path, signature: dict[str, Any], frame: Any) -> Prediction:
    """The bundle's ONNX graph on the rows of ``frame``, as a Prediction."""
    raw = raw_matrix(bundle_columns(signature), frame)
    got = run(session(str(folder / MODEL)), raw)
    outputs = signature["outputs"]
    n = len(frame)
    empty = np.zeros((n, 0))
    return Prediction(
        outputs.get("mean", []),
        outputs.get("probability", []),
        got.get("mean", empty).astype(np.float64),
        got.get("std", empty).astype(np.float64),
        got.get("lower", empty).astype(np.float64),
        got.get("upper", empty).astype(np.float64),
        got.get("probability", empty).astype(np.float64),
    )


def verify(
    bundle: str | Path,
    spec: TwinSpec,
    *,
    n: int,
    seed: int,
    out: str | Path,
    workers: int = 0,
    progress: bool = True,
    only: tuple[str, ...] = (),
) -> Verification:
    """Simulate every verification slice of ``spec`` (``only``: these) with ``n`` runs
    each into ``out/<slice>`` (slice i from seed ``seed + i``), score the bundle on each,
    on the pooled runs and on each partition, and apply the gate:

    * each slice: every threshold (coverage by the binomial test, ``coverage_p``);
    * the pooled runs: every threshold, coverage by the plain threshold;
    * each partition's part (a choice of a categorical factor, at least
      ``MIN_PARTITION_ROWS`` runs): coverage by the binomial test.
    """
    import pandas as pd

    from physics.dataset import read_runs
    from physics.study import generate
    from physics.verification import describe_slice, partition_masks, slice_spec, slices_of

    bundle = Path(bundle)
    signature = read_signature(bundle)
    if signature["spec"]["hash"] != spec.spec_hash:
        raise DataError(
            f"{bundle} was trained on spec hash {signature['spec']['hash'][:12]}, "
            f"not on this spec ({spec.spec_hash[:12]})"
        )
    declared = slices_of(spec)
    unknown = [s for s in only if s not in declared]
    if unknown:
        raise DataError(
            f"--slice: {', '.join(map(repr, unknown))} is not a verification slice of spec "
            f"{spec.name!r}; expected some of {', '.join(declared)}"
        )
    doe = signature["dataset"].get("doe", {})
    order = list(declared)
    chosen = [name for name in order if not only or name in only]
    for name in chosen:
        s = seed + order.index(name)
        same = doe.get("method") == "random" and doe.get("seed") == s
        if same and declared[name].design == "uniform" and not declared[name].factors:
            raise DataError(
                f"seed: {s} (slice {name}) is the training dataset's own random design; "
                "choose another seed"
            )
    out = Path(out)
    frames = []
    for name in chosen:
        result = generate(
            slice_spec(spec, name), out / name, n=n, method="random",
            seed=seed + order.index(name), pool=PoolOptions(workers=workers),
            progress=progress, emphasis=declared[name].design,
        )  # fmt: skip
        frame = read_runs(result.folder).to_pandas()
        frame = frame.loc[frame["status"] == "ok"].reset_index(drop=True)
        if frame.empty:
            raise DataError(f"{out / name}: none of the {n} verification runs succeeded")
        frames.append(frame)
    # One pass of the graph over every run; each slice and partition is a set of its rows.
    pooled = pd.concat(frames, ignore_index=True)
    prediction = predict_bundle(bundle, signature, pooled)
    labels = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
    results: dict[str, SliceResult] = {}
    for i, (name, frame) in enumerate(zip(chosen, frames, strict=True)):
        metrics = score(prediction.rows(labels == i), frame, spec)
        failures = [f"slice {name}: {line}" for line in gate(spec, metrics, tested=True)]
        results[name] = SliceResult(
            metrics, failures, len(frame), out / name, describe_slice(name, declared[name]),
            seed + order.index(name),
        )  # fmt: skip
    metrics = score(prediction, pooled, spec)
    failures = [line for r in results.values() for line in r.failures]
    failures += [f"pooled: {line}" for line in gate(spec, metrics)]
    parts: dict[str, dict[str, dict[str, float]]] = {}
    for part, mask in partition_masks(spec, pooled).items():
        sub = pooled.loc[mask].reset_index(drop=True)
        parts[part] = score(prediction.rows(mask), sub, spec)
        failures += [
            f"{part}: {line}"
            for line in gate(spec, parts[part], fields=("min_coverage",), tested=True,
                             min_rows=MIN_PARTITION_ROWS)
        ]  # fmt: skip
    signature["metrics"]["verification"] = {
        "runs": len(pooled),
        "design": ", ".join(f"{k} (random seed {r.seed}, n {n})" for k, r in results.items()),
        "folder": str(out.resolve()),
        "kpis": metrics,
        "slices": {
            k: {"design": r.design, "seed": r.seed, "runs": r.runs, "kpis": r.metrics}
            for k, r in results.items()
        },
        "partitions": parts,
    }
    signature["gate"] = {"status": "failed" if failures else "passed", "failures": failures}
    save_signature(bundle, signature)
    return Verification(metrics, failures, len(pooled), out, signature, results, parts)


def threshold_table(spec: TwinSpec, ver: Verification) -> list[str]:
    """Every acceptance threshold (rows) on every slice and the pooled runs (columns);
    ``!`` marks a value the gate refuses (slices: coverage by the binomial test)."""
    from surrogates._metrics import OPS, meets, threshold_rows

    columns = [(k, r.metrics, True) for k, r in ver.slices.items()]
    columns.append(("pooled", ver.metrics, False))
    lines = ["  " + f"{'threshold':44s}" + "".join(f"{c:>12s}" for c, _, _ in columns)]
    for _name, key, crit, metric, limit in threshold_rows(spec):
        cells = []
        for _, metrics, tested in columns:
            got = metrics.get(key)
            if got is None or metric not in got:
                cells.append(f"{'-':>12s}")
                continue
            mark = "" if meets(got, crit, limit, tested=tested) else " !"
            cells.append(f"{got[metric]:.4g}{mark}".rjust(12))
        label = f"{key} {metric} {OPS[crit]} {limit:g}"
        lines.append("  " + f"{label:44s}" + "".join(cells))
    return lines


def partition_table(spec: TwinSpec, ver: Verification) -> list[str]:
    """Interval coverage of every KPI with a coverage threshold, per partition part."""
    from surrogates._metrics import meets, threshold_rows

    rows = [r for r in threshold_rows(spec) if r[2] == "min_coverage"]
    if not ver.partitions or not rows:
        return []
    parts = list(ver.partitions)
    width = max(12, *(len(p) + 2 for p in parts))
    lines = ["  " + f"{'coverage':30s}" + "".join(f"{p:>{width}s}" for p in parts)]
    for _name, key, crit, metric, limit in rows:
        cells = []
        for part in parts:
            got = ver.partitions[part].get(key)
            if got is None:
                cells.append(f"{'-':>{width}s}")
                continue
            judged = got["n"] >= MIN_PARTITION_ROWS
            ok = not judged or meets(got, crit, limit, tested=True)
            cell = f"{100 * got[metric]:.1f} % n={int(got['n'])}" + ("" if ok else " !")
            cells.append(cell.rjust(width))
        lines.append("  " + f"{key:30s}" + "".join(cells))
    return lines


def flat_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{kpi: {metric: v}}`` -> ``{"kpi.metric": v}`` with finite values only."""
    return {
        f"{kpi}.{name}": float(v)
        for kpi, m in metrics.items()
        for name, v in m.items()
        if np.isfinite(v)
    }

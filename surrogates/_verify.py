"""``twin verify``: the bundle against fresh FMU runs, and the spec's gate.

The runs are a new design (uniform random, another seed than the training
dataset's) of the same spec, simulated by the runner into a dataset folder of
their own, so they are resumable and can be inspected with ``twin data info``.
The exported ONNX graph, not the PyTorch model, is what is scored: it is what
serving runs. The figures go into signature.json and the model card, and the
gate's verdict into the bundle and (where tracked) the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class Verification:
    metrics: dict[str, dict[str, float]]
    failures: list[str]
    runs: int
    folder: Path
    signature: dict[str, Any]


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
) -> Verification:
    from physics.dataset import read_runs
    from physics.study import generate

    bundle = Path(bundle)
    signature = read_signature(bundle)
    if signature["spec"]["hash"] != spec.spec_hash:
        raise DataError(
            f"{bundle} was trained on spec hash {signature['spec']['hash'][:12]}, "
            f"not on this spec ({spec.spec_hash[:12]})"
        )
    doe = signature["dataset"].get("doe", {})
    if doe.get("method") == "random" and doe.get("seed") == seed:
        raise DataError(
            f"seed: {seed} is the training dataset's own random design; choose another seed"
        )
    result = generate(
        spec, out, n=n, method="random", seed=seed,
        pool=PoolOptions(workers=workers), progress=progress,
    )  # fmt: skip
    frame = read_runs(result.folder).to_pandas()
    frame = frame.loc[frame["status"] == "ok"].reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{out}: none of the {n} verification runs succeeded")
    metrics = score(predict_bundle(bundle, signature, frame), frame, spec)
    failures = gate(spec, metrics)
    signature["metrics"]["verification"] = {
        "runs": len(frame),
        "design": f"random seed {seed}, n {n}",
        "folder": str(Path(out).resolve()),
        "kpis": metrics,
    }
    signature["gate"] = {"status": "failed" if failures else "passed", "failures": failures}
    save_signature(bundle, signature)
    return Verification(metrics, failures, len(frame), Path(out), signature)


def flat_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{kpi: {metric: v}}`` -> ``{"kpi.metric": v}`` with finite values only."""
    return {
        f"{kpi}.{name}": float(v)
        for kpi, m in metrics.items()
        for name, v in m.items()
        if np.isfinite(v)
    }

"""The model bundle: everything serving needs, in one folder.

    BUNDLE/model.onnx       the graph (surrogates._export)
    BUNDLE/signature.json   inputs and outputs with units, training-domain bounds and
                            constraints, KPI roles and limits, interval level and
                            calibration, dataset id and digest, metrics, bundle hash
    BUNDLE/spec.yaml        the twin spec it was trained from (its hash is in the signature)
    BUNDLE/model_card.md    the same, for people

``bundle_hash`` is the sha256 of model.onnx: the identity of the model that makes
the predictions. Verification figures are added to the signature later without
changing it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from physics.dataset import write_json_atomic
from physics.spec import TwinSpec
from surrogates._errors import BundleError
from surrogates._export import INPUT, IR_VERSION, OPSET
from surrogates._surrogate import Surrogate

FORMAT = "asset-twin-bundle/1"
MODEL = "model.onnx"
SIGNATURE = "signature.json"
SPEC = "spec.yaml"
CARD = "model_card.md"
INTERVAL_METHODS = {
    "normalized": "split-conformal on residuals normalised by the ensemble spread",
    "difficulty": "split-conformal on residuals normalised by a learned spread model "
    "(log residual on the ensemble's log spread and the features, fitted on the "
    "validation split)",
}


def interval_method(cal: Any) -> str:
    text = INTERVAL_METHODS[cal.method]
    per = [cal.groups] if cal.groups else []
    if cal.edge_share is not None:
        per.append(f"edge band (runs with {100 * cal.edge_share:g} % or more of their "
                   "numeric inputs within a tenth of their range of a bound)")  # fmt: skip
    return text + (f", one quantile per {' and '.join(per)} (Mondrian)" if per else "")


def _kpi_entry(spec: TwinSpec, t: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"unit": t.unit, "role": t.role, "kind": t.kind}
    if t.kind == "regression":
        entry.update(transform=t.transform, shift=t.shift)
    if t.kind == "constant":
        entry.update(value=t.value, tolerance=t.tolerance)
    if t.start:
        entry["start"] = t.start  # judged on the increment over this input
    if t.baseline:
        entry["baseline"] = t.baseline  # learned as the difference from this derived value
    if t.margins:
        entry["margins"] = t.margins  # an event: P(any of these reaches 1)
    if t.cap is not None:
        entry["cap"] = t.cap  # censored there, never reported above it
    for section in ("quality", "maintenance", "feasibility", "acceptance"):
        item = getattr(spec, section).get(t.name)
        if item is not None:
            entry[section] = item.model_dump(exclude_none=True)
    return entry


def signature_of(s: Surrogate, proto: Any, parity: dict[str, float]) -> dict[str, Any]:
    spec = s.spec
    onnx_bytes = proto.SerializeToString()
    params = sum(int(np.prod(p.shape)) for p in s.model.parameters())
    regression = s.targets.reported
    events = s.targets.outcomes
    outputs: dict[str, list[str]] = {}
    if regression:
        for name in ("mean", "std", "lower", "upper"):
            outputs[name] = [t.name for t in regression]
    if events:
        outputs["probability"] = [t.name for t in events]
    return {
        "format": FORMAT,
        "name": spec.name,
        "spec": {"name": spec.name, "version": spec.version, "hash": spec.spec_hash, "file": SPEC},
        "model": {
            "file": MODEL,
            "opset": OPSET,
            "ir_version": IR_VERSION,
            "input": INPUT,
            "dtype": "float32",
            "members": s.model.members,
            "per_kpi": s.model.per_kpi,
            "hidden": s.model.hidden,
            "activation": s.model.activation,
            "parameters": params,
            "nodes": len(proto.graph.node),
            "features": [f.name for f in s.features.features],
        },
        "inputs": [
            {
                "index": i,
                "name": c.name,
                "kind": c.kind,
                "source": c.source,
                "unit": c.unit,
                **({"choices": list(c.choices)} if c.choices else {}),
                # training domain: the values seen in training (choices by index)
                "min": c.low,
                "max": c.high,
            }
            for i, c in enumerate(s.features.columns)
        ],
        "constraints": [c.model_dump() for c in spec.constraints],
        "outputs": outputs,
        "kpis": {t.name: _kpi_entry(spec, t) for t in s.targets.targets},
        "events": {
            "names": [t.name for t in events],
            "conditioning": "regressions answer for the runs where none of the events occurs",
            "temperature": {
                t.name: temperature
                for t, temperature in zip(
                    s.targets.of_kind("event"), s.calibration.temperature, strict=True
                )
            },
            # Events derived from their margins (P that any reaches 1), not learned.
            "margins": {t.name: t.margins for t in s.targets.of_kind("margin")},
        },
        "interval": {
            "level": s.calibration.level,
            "method": interval_method(s.calibration),
            "calibration_rows": s.calibration.rows,
            "q": dict(
                zip([t.name for t in s.targets.of_kind("regression")], s.calibration.q, strict=True)
            ),
        },
        "dataset": s.info["dataset"],
        "splits": s.info["splits"],
        "training": {**s.info["training"], "config": s.info["config"]},
        "metrics": {"test": s.info.get("test_metrics", {}), "verification": None},
        "gate": {"status": "unverified", "failures": []},
        "parity": {"rtol": 1e-5, "max_relative_difference": parity},
        "bundle_hash": hashlib.sha256(onnx_bytes).hexdigest(),
        "created": s.info["created"],
    }


def write_bundle(
    s: Surrogate, out: Path, *, proto: Any, parity: dict[str, float], spec_file: Path
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{MODEL}.tmp"
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(out / MODEL)
    (out / SPEC).write_text(spec_file.read_text(encoding="utf-8"), encoding="utf-8")
    signature = signature_of(s, proto, parity)
    save_signature(out, signature)
    return signature


def read_signature(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / SIGNATURE
    if not path.is_file():
        raise BundleError(f"{folder}: not a model bundle (no {SIGNATURE})")
    signature: dict[str, Any] = json.loads(path.read_text())
    if signature.get("format") != FORMAT:
        raise BundleError(f"{path}: format {signature.get('format')!r}, expected {FORMAT!r}")
    for name in (MODEL, SPEC):
        if not (folder / name).is_file():
            raise BundleError(f"{folder}: the bundle has no {name}")
    digest = hashlib.sha256((folder / MODEL).read_bytes()).hexdigest()
    if digest != signature["bundle_hash"]:
        raise BundleError(
            f"{folder}/{MODEL} has sha256 {digest[:12]}, the signature says "
            f"{signature['bundle_hash'][:12]}: the bundle was changed after export"
        )
    return signature


def save_signature(folder: Path, signature: dict[str, Any]) -> None:
    write_json_atomic(folder / SIGNATURE, signature)
    from surrogates._card import model_card

    (folder / CARD).write_text(model_card(signature), encoding="utf-8")


def bundle_spec(folder: str | Path) -> TwinSpec:
    from physics.spec import load_spec

    return load_spec(Path(folder) / SPEC)

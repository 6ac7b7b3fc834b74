"""A small spindle study and its trained surrogate, shared by surrogate and serving tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SPEC = Path(__file__).resolve().parents[1] / "experiments" / "specs" / "spindle.yaml"
# Small enough to train in seconds on one thread; the figures the tests assert were
# measured on exactly this design and config.
SMALL = [
    "model.members=3",
    "model.hidden=[32, 32]",
    "training.epochs=150",
    "training.patience=30",
    "training.batch_size=64",
]


def random_inputs(spec: Any, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` random values of every input of ``spec`` within its DOE bounds."""
    values: dict[str, np.ndarray] = {}
    for key, inp in spec.inputs.items():
        if inp.kind == "categorical":
            values[key] = rng.choice(inp.choice_names, n)
        elif inp.kind == "boolean":
            values[key] = rng.random(n) < 0.5
        else:
            _, lo, hi = spec.factor_domain(key)
            lo = 0.0 if lo is None else lo
            hi = lo + 10.0 if hi is None else hi
            x = rng.uniform(lo, hi, n)
            values[key] = np.round(x) if inp.kind == "integer" else x
    return values


@dataclass
class Trained:
    spec: object
    dataset: Path
    run: Path
    bundle: Path
    result: object  # surrogates._fit.TrainResult
    parity: dict[str, float]


@pytest.fixture(scope="session")
def spindle_spec() -> object:
    from physics.spec import load_spec

    return load_spec(SPEC)


@pytest.fixture(scope="session")
def spindle_dataset(spindle_spec: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from physics.study import generate

    out = tmp_path_factory.mktemp("surrogate-data") / "spindle-lhs-400"
    generate(spindle_spec, out, n=400, method="lhs", seed=3, progress=False)  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="session")
def trained(
    spindle_spec: object, spindle_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trained]:
    from surrogates._bundle import write_bundle
    from surrogates._config import load_config
    from surrogates._export import build_onnx, check_parity, session
    from surrogates._fit import load_rows, train

    root = tmp_path_factory.mktemp("surrogate")
    config = load_config(None, SMALL)
    rows = load_rows(spindle_dataset, spindle_spec)  # type: ignore[arg-type]
    result = train(
        rows, spindle_spec, config, root / "run", dataset=spindle_dataset, progress=False
    )  # type: ignore[arg-type]
    s = result.surrogate
    proto = build_onnx(s)
    parity = check_parity(s, session(proto), s.raw(result.splits["test"]))
    write_bundle(s, root / "bundle", proto=proto, parity=parity, spec_file=SPEC)
    yield Trained(spindle_spec, spindle_dataset, root / "run", root / "bundle", result, parity)

"""Small FMUs written for the tests, structurally unlike the spindle.

Each folder here holds a model.yaml and its C file, built with the same
framework and build as ``physics/models``:

- ``tank``: state events (a hysteresis valve) located exactly inside a step;
- ``counter``: Integer and Boolean variables only;
- ``ridge``: a static map with a narrow peak (adaptive sampling);
- ``faulty``: a first-order lag that fails on request (error, hang, crash,
  NaN, leak) from a given time, and refuses tau < 0.001 s.

Their closed-form references live in ``tests/physics/test_test_fmus.py``.
"""

from __future__ import annotations

from pathlib import Path

from physics.fmu import build_model

FMUS_DIR = Path(__file__).resolve().parent
TEST_FMUS = ("tank", "counter", "faulty", "lag3", "ridge")


def build_test_fmu(name: str) -> Path:
    """Build ``tests/fmus/<name>`` (cached by source hash) and return the .fmu path."""
    if name not in TEST_FMUS:
        raise ValueError(f"test FMU {name!r}: expected one of {', '.join(TEST_FMUS)}")
    return build_model(FMUS_DIR / name).path

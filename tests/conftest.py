"""Shared fixtures: FMUs are built once per test session into a private cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_fmu_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("fmu-cache")
    old = os.environ.get("ASSET_TWIN_CACHE")
    os.environ["ASSET_TWIN_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("ASSET_TWIN_CACHE", None)
    else:
        os.environ["ASSET_TWIN_CACHE"] = old


# The small trained spindle surrogate, shared by the surrogate and serving tests (one
# training per test session).
from tests._trained import Trained, spindle_dataset, spindle_spec, trained  # noqa: E402, F401

"""Training configuration: one YAML file per surrogate (experiments/training/*.yaml).

Every section has defaults, so an empty file (or none) trains the default deep
ensemble. Unknown keys and bad values are refused with the field's path, the
value and what is allowed, before any work is done. ``--set a.b=value`` on the
command line overrides one key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from physics._spec_text import problems_from_validation, read_yaml_mapping
from surrogates._errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SplitConfig(_Section):
    """Shares of the DOE points held out of training; the rest trains."""

    validation: float = Field(default=0.1, gt=0, lt=1)
    calibration: float = Field(default=0.15, gt=0, lt=1)
    test: float = Field(default=0.15, ge=0, lt=1)

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        held = self.validation + self.calibration + self.test
        if held >= 0.9:
            raise ValueError(f"validation + calibration + test = {held:g}, must be below 0.9")
        return self


class ModelConfig(_Section):
    """The deep ensemble: ``members`` MLPs; one small net per KPI or one shared net."""

    members: int = Field(default=5, ge=1, le=64)
    per_kpi: bool = True
    hidden: list[int] = Field(default_factory=lambda: [64, 64], min_length=1, max_length=8)
    activation: Literal["silu", "tanh", "relu"] = "silu"
    linear_skip: bool = True  # a linear path beside each MLP (power laws in log space)
    derived_features: bool = True  # the spec's derived expressions as extra inputs

    @model_validator(mode="after")
    def _positive_widths(self) -> ModelConfig:
        bad = [w for w in self.hidden if w < 1 or w > 4096]
        if bad:
            raise ValueError(f"hidden: widths {bad} must be in [1, 4096]")
        return self


class TrainingConfig(_Section):
    """Optimiser, schedule and stopping."""

    epochs: int = Field(default=300, ge=1, le=100_000)
    batch_size: int = Field(default=128, ge=1, le=1_000_000)
    learning_rate: float = Field(default=3e-3, gt=0, le=1)
    weight_decay: float = Field(default=1e-5, ge=0, le=1)
    patience: int = Field(default=40, ge=1)  # epochs without a better validation loss in any net
    bootstrap: bool = True  # each member sees a Poisson(1) resample of the rows
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto" (CUDA when present)
    threads: int = Field(default=1, ge=1, le=256)  # torch CPU threads: 1 is fastest on small nets


class CalibrationConfig(_Section):
    """Interval level and method of the split-conformal calibration (surrogates._calibrate).

    ``method``: ``normalized`` scales the residual by the members' spread;
    ``difficulty`` by a spread model (log |residual| regressed on the log spread and the
    features, fitted on the validation split). ``groups``: a categorical input whose
    choices each get their own quantile (Mondrian conformal), or none. ``edge_share``:
    runs with at least this share of their numeric inputs within a tenth of their range
    of a bound get their own quantiles (per choice of ``groups``), or none.
    """

    level: float = Field(default=0.95, gt=0.5, lt=1)
    method: Literal["normalized", "difficulty"] = "normalized"
    groups: str | None = None
    edge_share: float | None = Field(default=None, gt=0, le=1)


class TransformConfig(_Section):
    """How a KPI's values are mapped before regression (``auto``: chosen from the data)."""

    heavy_tail_ratio: float = Field(
        default=20.0, gt=1
    )  # p99 / p1 above which a positive KPI is logged


class Config(_Section):
    """A training configuration."""

    spec: str | None = None  # the twin spec, relative to the config file
    seed: int = Field(default=0, ge=0)
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    transforms: TransformConfig = TransformConfig()
    # KPI -> "identity" | "log" (regression) or "event" (a 0/1 outcome), overriding the choice
    # made from the data.
    kpi_kinds: dict[str, Literal["identity", "log", "event"]] = {}

    _source_dir: Path | None = None

    def spec_path(self) -> Path | None:
        if self.spec is None:
            return None
        path = Path(self.spec)
        base = self._source_dir
        return path if path.is_absolute() or base is None else base / path


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``["training.epochs=50", "model.hidden=[32, 32]"]`` into the config mapping."""
    out = dict(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"--set {item!r}: expected KEY=VALUE, e.g. training.epochs=50"])
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, Mapping) else {}
            node[part] = child
            node = child
        node[parts[-1]] = _parse_value(value)
    return out


def make_config(
    data: Mapping[str, Any], *, source_dir: Path | None = None, source: str | None = None
) -> Config:
    """Validate a config mapping; every problem is reported in one ConfigError."""
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, Config), source=source) from None
    object.__setattr__(config, "_source_dir", source_dir)
    return config


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a training config (None: the defaults) and apply ``--set`` overrides."""
    if path is None:
        return make_config(apply_overrides({}, overrides), source="--set")
    path = Path(path)
    data = read_yaml_mapping(path, ConfigError, empty_ok=True)
    data = apply_overrides(data, overrides)
    return make_config(data, source_dir=path.resolve().parent, source=str(path))

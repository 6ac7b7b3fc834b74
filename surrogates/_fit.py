"""``twin train``: a dataset of ``twin data generate`` in, a calibrated surrogate out.

Reads the ok rows (failed runs are counted and reported, never learned), splits
the DOE points into train / validation / calibration / test with the config's
seed, fits the feature and target maps on the training split only, trains the
fused ensemble, calibrates it, scores it on the test split and saves it with
everything the export and the model card need.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physics.dataset import read_card, read_runs
from physics.spec import TwinSpec
from surrogates._calibrate import Outputs, calibrate
from surrogates._config import Config
from surrogates._errors import ConfigError, DataError
from surrogates._features import (
    FeatureMap,
    calibration_group,
    kpi_bases,
    margin_namespace,
    raw_matrix,
)
from surrogates._metrics import feasible_mask, score
from surrogates._model import FusedEnsemble
from surrogates._surrogate import Surrogate
from surrogates._targets import TargetMap
from surrogates._train import History, Trainer, describe, predict_members

SPLITS = ("train", "validation", "calibration", "test")
MIN_ROWS = 40


@dataclass
class Rows:
    frame: Any  # pandas DataFrame of the ok rows
    card: dict[str, Any]
    failed: dict[str, int]  # status -> count of rows not learned from


def load_rows(folder: str | Path, spec: TwinSpec) -> Rows:
    """The ok rows of a dataset made from ``spec`` (the same spec hash)."""
    card = read_card(folder)
    if card["spec"]["hash"] != spec.spec_hash:
        raise DataError(
            f"{folder} was generated from spec {card['spec']['name']} with hash "
            f"{card['spec']['hash'][:12]}; this spec's hash is {spec.spec_hash[:12]}: "
            "generate the dataset again from this spec"
        )
    frame = read_runs(folder).to_pandas()
    if frame.empty:
        raise DataError(f"{folder}: the dataset has no rows yet")
    ok = frame["status"] == "ok"
    failed = {str(k): int(v) for k, v in frame.loc[~ok, "status"].value_counts().items()}
    return Rows(frame.loc[ok].reset_index(drop=True), card, failed)


def group_column(spec: TwinSpec, features: Any, groups: str | None) -> int | None:
    """Index among the raw input columns of the calibration's ``groups`` input."""
    if groups is None:
        return None
    names = [c.name for c in features.columns]
    if groups not in names or not features.columns[names.index(groups)].choices:
        allowed = [c.name for c in features.columns if c.choices]
        raise ConfigError([
            f"calibration.groups: {groups!r} is not a categorical input of spec "
            f"{spec.name!r}; expected one of {', '.join(allowed) or '(none)'}"
        ])
    return names.index(groups)


def split_rows(frame: Any, config: Config) -> dict[str, Any]:
    """Train / validation / calibration / test by DOE point (run_id), seeded."""
    n = len(frame)
    order = np.random.default_rng(config.seed).permutation(n)
    s = config.split
    counts = [round(n * s.validation), round(n * s.calibration), round(n * s.test)]
    if n - sum(counts) < MIN_ROWS // 2 or min(counts[:2]) < 3:
        raise DataError(
            f"{n} ok rows are too few to split into train / validation / calibration / test "
            f"at {s.validation:g} / {s.calibration:g} / {s.test:g}: need at least {MIN_ROWS}"
        )
    bounds = np.cumsum([0, n - sum(counts), *counts])
    return {
        name: frame.iloc[np.sort(order[a:b])].reset_index(drop=True)
        for name, a, b in zip(SPLITS, bounds[:-1], bounds[1:], strict=True)
    }


@dataclass
class TrainResult:
    surrogate: Surrogate
    splits: dict[str, Any]
    history: History
    test_metrics: dict[str, dict[str, float]]
    folder: Path


def train(
    rows: Rows,
    spec: TwinSpec,
    config: Config,
    out: str | Path,
    *,
    dataset: str | Path,
    progress: bool = True,
    on_epoch: Any = None,
) -> TrainResult:
    """Fit, calibrate, score on the test split, and save into ``out``."""
    import torch

    torch.set_num_threads(config.training.threads)
    out = Path(out)
    splits = split_rows(rows.frame, config)
    train_rows = splits["train"]
    features = FeatureMap.fit(spec, train_rows, derived=config.model.derived_features)
    group_at = group_column(spec, features, config.calibration.groups)  # before any training

    def bases(frame: Any) -> dict[str, Any]:
        return kpi_bases(spec, features.columns, raw_matrix(features.columns, frame))

    targets = TargetMap.fit(
        spec,
        train_rows,
        heavy_tail_ratio=config.transforms.heavy_tail_ratio,
        declared=config.kpi_kinds,
        bases=bases(train_rows),
        derived=margin_namespace(spec, features.columns, raw_matrix(features.columns, train_rows)),
    )
    learned = targets.learned
    if not learned:
        raise DataError("every KPI is constant over the training rows: nothing to learn")
    n_reg = len(targets.of_kind("regression"))
    ceilings = targets.ceilings()  # [n_reg] the capped KPIs' caps in the nets' space

    # A regression whose acceptance is scoped to the feasible runs learns from those only
    # (as every regression learns from the runs without an event): it answers "if the
    # order keeps its feasibility limits", which is when its value decides a release.
    scoped = np.array([
        t.name in spec.acceptance and spec.acceptance[t.name].scope == "feasible"
        for t in targets.of_kind("regression")
    ], dtype=bool)  # fmt: skip

    def arrays(frame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = features.transform(spec, raw_matrix(features.columns, frame))
        quiet = targets.no_event(frame)
        if scoped.any():
            keep = feasible_mask(spec, frame)
            quiet = quiet[:, None] & (keep[:, None] | ~scoped[None, :])
        return x, targets.encode(frame, bases(frame)), quiet.astype(np.float64)

    torch.manual_seed(config.seed)
    m = config.model
    model = FusedEnsemble(
        len(features.features),
        len(learned),
        members=m.members,
        per_kpi=m.per_kpi,
        hidden=m.hidden,
        activation=m.activation,
        linear_skip=m.linear_skip,
    )
    trainer = Trainer(
        model,
        config.training,
        n_regression=n_reg,
        seed=config.seed,
        progress=progress,
        on_epoch=on_epoch,
        ceiling=ceilings,
    )
    history = trainer.fit(arrays(train_rows), arrays(splits["validation"]))
    model = trainer.model.cpu()

    cc = config.calibration

    def outputs(frame: Any) -> Outputs:
        x, y, quiet = arrays(frame)
        group = calibration_group(spec, features.columns, cc.groups, cc.edge_share,
                                  raw_matrix(features.columns, frame))  # fmt: skip
        z = predict_members(model, x.astype(np.float32), ceiling=ceilings)
        return Outputs(z, y, quiet > 0.5, x, group, ceiling=ceilings)

    n_choices = 0 if group_at is None else len(features.columns[group_at].choices)
    if cc.edge_share is not None:
        n_choices = 2 * max(n_choices, 1)
    calibration = calibrate(
        outputs(splits["calibration"]), n_reg, cc.level, method=cc.method,
        fit=outputs(splits["validation"]) if cc.method == "difficulty" else None,
        groups=cc.groups, n_choices=n_choices, edge_share=cc.edge_share,
    )  # fmt: skip
    info: dict[str, Any] = {
        "spec_name": spec.name,
        "spec_version": spec.version,
        "spec_hash": spec.spec_hash,
        "dataset": {
            "path": str(Path(dataset).resolve()),
            "spec_hash": rows.card["spec"]["hash"],
            "fmu_sha256": rows.card["fmu"]["sha256"],
            "doe": rows.card["doe"],
            "rows_ok": len(rows.frame),
            "rows_failed": rows.failed,
        },
        "splits": {k: len(v) for k, v in splits.items()},
        "config": config.model_dump(),
        "training": describe(history),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    surrogate = Surrogate(spec, features, targets, model, calibration, info)
    test = splits["test"]
    test_metrics = score(surrogate.predict_frame(test), test, spec) if len(test) else {}
    info["test_metrics"] = test_metrics
    surrogate.save(out)
    (out / "split.json").write_text(
        json.dumps({k: v["run_id"].astype(int).tolist() for k, v in splits.items()}) + "\n"
    )
    (out / "history.json").write_text(json.dumps(history.epochs) + "\n")
    return TrainResult(surrogate, splits, history, test_metrics, out)

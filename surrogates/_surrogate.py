"""A trained surrogate in memory: features, targets, the fused ensemble and its calibration.

``Surrogate.predict`` is the reference the ONNX export is checked against: the
same features (float64 here, float32 in the graph), the same nets, the same
transforms, spread, intervals and probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from physics.spec import TwinSpec
from surrogates._calibrate import Calibration, event_probability, spread
from surrogates._features import (
    FeatureMap,
    calibration_group,
    kpi_bases,
    margin_namespace,
    raw_matrix,
)
from surrogates._model import FusedEnsemble, load_checkpoint, save_checkpoint
from surrogates._targets import TargetMap, margin_limit
from surrogates._train import predict_members

CHECKPOINT = "checkpoint.pt"


@dataclass
class Prediction:
    """What the surrogate says for N rows, in the KPIs' own units."""

    regression_names: list[str]  # regressions and constants, in spec order
    event_names: list[str]
    mean: np.ndarray  # [N, R]
    std: np.ndarray  # [N, R] spread of the members
    lower: np.ndarray  # [N, R] calibrated interval
    upper: np.ndarray
    probability: np.ndarray  # [N, E] calibrated event probabilities

    def quiet_mask(self, frame: Any) -> np.ndarray:
        """Rows of ``frame`` (with KPI columns) where no event occurred."""
        quiet = np.ones(len(frame), dtype=bool)
        for name in self.event_names:
            quiet &= frame[name].to_numpy(dtype=np.float64) < 0.5
        return quiet

    def rows(self, mask: np.ndarray) -> Prediction:
        """The prediction of the rows ``mask`` selects."""
        return Prediction(
            self.regression_names, self.event_names, self.mean[mask], self.std[mask],
            self.lower[mask], self.upper[mask], self.probability[mask],
        )  # fmt: skip

    def column(self, name: str) -> np.ndarray:
        if name in self.event_names:
            return self.probability[:, self.event_names.index(name)]
        return self.mean[:, self.regression_names.index(name)]


@dataclass
class Surrogate:
    spec: TwinSpec
    features: FeatureMap
    targets: TargetMap
    model: FusedEnsemble
    calibration: Calibration
    info: dict[str, Any]  # dataset, config, training figures: what the card reports

    @property
    def regression_names(self) -> list[str]:
        return [t.name for t in self.targets.reported]

    @property
    def event_names(self) -> list[str]:
        return [t.name for t in self.targets.outcomes]

    def raw(self, frame: Any) -> np.ndarray:
        """Input rows of a frame holding the spec's inputs and ``quantity``."""
        return raw_matrix(self.features.columns, frame)

    def members(self, raw: np.ndarray) -> np.ndarray:
        """[M, N, K] network outputs for raw input rows."""
        return self._members(self.features.transform(self.spec, raw))

    def _members(self, x: np.ndarray) -> np.ndarray:
        """[M, N, K] network outputs for standardised features, capped KPIs clipped."""
        return predict_members(self.model, x.astype(np.float32), ceiling=self.targets.ceilings())

    def predict(self, raw: np.ndarray, members: np.ndarray | None = None) -> Prediction:
        """Means, spreads, intervals and probabilities; ``members`` if already computed."""
        x = self.features.transform(self.spec, raw)
        z = self._members(x) if members is None else members
        regs = self.targets.of_kind("regression")
        n, kr = raw.shape[0], len(regs)
        mean, std, lower, upper = (np.empty((n, len(self.regression_names))) for _ in range(4))
        mu, s = spread(z[:, :, :kr])
        cal = self.calibration
        half_all = cal.quantiles(self.group_index(raw)) * cal.scale(s, x)
        learned = {t.name: k for k, t in enumerate(regs)}
        bases = kpi_bases(self.spec, self.features.columns, raw)
        for j, t in enumerate(self.targets.reported):
            base = bases.get(t.name, 0.0)
            if t.kind == "constant":
                mean[:, j] = t.value + base
                half = t.half_width(mean[:, j])
                lower[:, j], upper[:, j] = mean[:, j] - half, mean[:, j] + half
                std[:, j] = 0.0
                continue
            k = learned[t.name]
            half = half_all[:, k]
            mean[:, j] = t.inverse(mu[:, k]) + base
            lower[:, j] = t.inverse(mu[:, k] - half) + base
            upper[:, j] = t.inverse(mu[:, k] + half) + base
            _, std[:, j] = spread(t.inverse(z[:, :, k]))
        prob = event_probability(z[:, :, kr:], np.asarray(cal.temperature))
        if self.targets.of_kind("margin"):
            derived = margin_namespace(self.spec, self.features.columns, raw)
            by_margins = [
                self.margin_probability(t.margins or [], mu, half_all, bases, derived, prob)
                for t in self.targets.of_kind("margin")
            ]
            prob = np.column_stack([prob, *by_margins])
        return Prediction(self.regression_names, self.event_names, mean, std, lower, upper, prob)

    def margin_probability(
        self,
        margins: list[str],
        mu: np.ndarray,
        half: np.ndarray,
        bases: dict[str, Any],
        derived: dict[str, Any],
        learned_events: np.ndarray,
    ) -> np.ndarray:
        """P(any margin reaches 1), the margins taken as independent: a derived value's
        is 0 or 1; a regression's is P(y >= 1) under the normal law whose central
        ``level`` interval is its calibrated one (in the nets' space, where the interval
        is symmetric); a learned event's is its probability."""
        from scipy.special import ndtr

        by_name = {t.name: t for t in self.targets.targets}
        learned = {t.name: k for k, t in enumerate(self.targets.of_kind("regression"))}
        events = [t.name for t in self.targets.of_kind("event")]
        z_level = NormalDist().inv_cdf(0.5 + self.calibration.level / 2)
        none = np.ones(mu.shape[0])
        for name in margins:
            if name in derived:
                p = (np.asarray(derived[name], dtype=np.float64) >= 1.0).astype(np.float64)
            elif name in events:
                p = learned_events[:, events.index(name)]
            else:
                t = by_name[name]
                base = bases.get(name, 0.0)
                if t.kind == "constant":
                    p = (t.value + base + np.zeros(mu.shape[0]) >= 1.0).astype(np.float64)
                else:
                    k = learned[name]
                    z_at = margin_limit(t, 1.0 - base + np.zeros(mu.shape[0]))
                    p = ndtr((mu[:, k] - z_at) * z_level / half[:, k])
            none *= 1.0 - p
        return 1.0 - none

    def group_index(self, raw: np.ndarray) -> np.ndarray | None:
        """The calibration group of each raw row (see calibration_group), or None."""
        cal = self.calibration
        return calibration_group(self.spec, self.features.columns, cal.groups, cal.edge_share, raw)

    def predict_frame(self, frame: Any) -> Prediction:
        return self.predict(self.raw(frame))

    # ---- persistence -----------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CHECKPOINT
        save_checkpoint(
            self.model,
            path,
            features=self.features.to_dict(),
            targets=self.targets.to_dict(),
            calibration=self.calibration.to_dict(),
            info=self.info,
        )
        return path

    @classmethod
    def load(cls, folder: Path, spec: TwinSpec | None = None) -> Surrogate:
        """A saved surrogate; ``spec`` None: the spec file recorded at training."""
        from surrogates._errors import BundleError

        path = Path(folder) / CHECKPOINT
        if not path.is_file():
            raise BundleError(f"{folder}: no {CHECKPOINT} (not a `twin train` output folder)")
        model, data = load_checkpoint(path)
        info = data["info"]
        if spec is None:
            from physics.spec import load_spec

            if not info.get("spec_file"):
                raise BundleError(f"{folder}: no spec recorded; give the twin spec (--spec)")
            spec = load_spec(info["spec_file"])
        if info.get("spec_hash") != spec.spec_hash:
            raise BundleError(
                f"{folder} was trained on spec {info.get('spec_name')} with hash "
                f"{str(info.get('spec_hash'))[:12]}, not on this spec ({spec.spec_hash[:12]})"
            )
        return cls(
            spec,
            FeatureMap.from_dict(data["features"]),
            TargetMap.from_dict(data["targets"]),
            model,
            Calibration.from_dict(data["calibration"]),
            info,
        )

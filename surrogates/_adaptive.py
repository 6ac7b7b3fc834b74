"""``twin train --adaptive``: sample where the surrogate is unsure, until it is good enough.

    round 0   a Latin hypercube of ``initial`` runs
    round k   train; score the model on a fixed held-out set of fresh runs; stop when the
              spec's acceptance thresholds are met or the budget is spent; else draw a
              pool of candidate points from the spec's DOE (random, constraints
              applied), score each by the ensemble's disagreement, weighted up near the
              limits where decisions flip, pick ``batch`` of the best that lie apart
              from each other, simulate them and append them to the same dataset

The acquisition of a candidate is the mean over the learned KPIs of the members'
spread (in the standardised space, over its median in the pool), times
1 + 2 exp(-d^2 / 2) where d is the distance of the predicted mean to the nearest
quality, maintenance or feasibility limit in units of the spread; events add their
Bernoulli variance p (1 - p), scaled the same way. The whole is multiplied by the
candidate's distance (in standardised features) to the nearest run already simulated,
over its median, so that regions no run has seen yet get explored. The batch is taken greedily from
the best 4 x batch candidates, each next one the farthest (in standardised features)
from those already taken, so one batch does not pile onto one spot.

With ``explore`` > 0, that share of each batch is instead spread out (each next point
the farthest from every run so far), which keeps the design space-filling where the
disagreement sits on discontinuities that more runs do not resolve.

The dataset is one folder (``physics.study.extend``): every row carries the round
that proposed it, the card lists the rounds, and a killed run resumes where it was.
Simulations in the held-out set are not counted in the budget; they are the same for
any design the loop is compared with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from physics.runner import PoolOptions
from physics.spec import TwinSpec
from surrogates._config import Config
from surrogates._metrics import gate, score
from surrogates._surrogate import Surrogate

if TYPE_CHECKING:
    from surrogates._fit import TrainResult


@dataclass
class Round:
    index: int
    runs: int  # training simulations so far
    failures: list[str]
    metrics: dict[str, dict[str, float]]


@dataclass
class AdaptiveResult:
    last: TrainResult  # the final round's fit, the one saved in the folder
    rows: Any  # surrogates._fit.Rows of the final dataset
    rounds: list[Round] = field(default_factory=list)
    met: bool = False
    folder: Path = Path()

    @property
    def surrogate(self) -> Surrogate:
        return self.last.surrogate


def _limits(spec: TwinSpec, name: str) -> list[float]:
    out: list[float] = []
    q = spec.quality.get(name)
    if q is not None:
        out += [v for v in (q.lsl, q.usl) if v is not None]
    m = spec.maintenance.get(name)
    if m is not None:
        out.append(m.limit)
    f = spec.feasibility.get(name)
    if f is not None:
        out += [v for v in (f.min, f.max) if v is not None]
    return out


def acquisition(s: Surrogate, raw: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """How much a simulation at each candidate row would teach the surrogate; with
    ``known`` (raw rows already simulated), times the distance to the nearest of them
    over its median, so that regions no run has seen are explored too."""
    from surrogates._calibrate import spread

    z = s.members(raw)
    regs = s.targets.of_kind("regression")
    total = np.zeros(raw.shape[0])
    parts = 0
    pred = s.predict(raw, z)
    for k, t in enumerate(regs):
        _, sd = spread(z[:, :, k])
        a = sd / max(float(np.median(sd)), 1e-12)
        limits = _limits(s.spec, t.name)
        if limits:
            j = pred.regression_names.index(t.name)
            mean, std = pred.mean[:, j], np.maximum(pred.std[:, j], 1e-12)
            d = np.min([np.abs(mean - lim) / std for lim in limits], axis=0)
            a = a * (1.0 + 2.0 * np.exp(-0.5 * d**2))
        total += a
        parts += 1
    if s.targets.outcomes:
        p = pred.probability
        var = p * (1 - p)
        total += (var / np.maximum(np.median(var, axis=0), 1e-12)).sum(axis=1)
        parts += p.shape[1]
    total = total / max(parts, 1)
    if known is not None and len(known):
        cand = s.features.transform(s.spec, raw)
        seen = s.features.transform(s.spec, known)
        d = np.empty(len(cand))
        for start in range(0, len(cand), 64):  # [64, known, F] at a time: bounded memory
            block = cand[start : start + 64]
            d[start : start + 64] = np.sqrt(
                ((block[:, None, :] - seen[None, :, :]) ** 2).sum(-1).min(axis=1)
            )
        total = total * d / max(float(np.median(d)), 1e-12)
    return total


def select(score_: np.ndarray, features: np.ndarray, batch: int) -> list[int]:
    """``batch`` indices: the best by score, spread apart (greedy farthest point)."""
    order = np.argsort(-score_)[: max(4 * batch, batch)]
    chosen = [int(order[0])]
    dist = np.linalg.norm(features[order] - features[order[0]], axis=1)
    while len(chosen) < min(batch, len(order)):
        # Farthest from the chosen, among the top candidates, weighted by score.
        pick = int(np.argmax(dist * score_[order]))
        chosen.append(int(order[pick]))
        dist = np.minimum(dist, np.linalg.norm(features[order] - features[order[pick]], axis=1))
    return chosen


def spread_out(features: np.ndarray, known: np.ndarray, count: int, taken: list[int]) -> list[int]:
    """``count`` pool indices, each the farthest from every run known or taken so far."""
    if count <= 0:
        return []
    d = np.full(len(features), np.inf)
    for ref in (known, features[taken]):
        for start in range(0, len(ref), 32):  # [pool, 32, F] at a time: bounded memory
            block = ref[start : start + 32]
            d = np.minimum(d, np.sqrt(((features[:, None, :] - block[None]) ** 2).sum(-1)).min(1))
    out: list[int] = []
    for _ in range(min(count, len(features) - len(taken))):
        pick = int(np.argmax(d))
        out.append(pick)
        d = np.minimum(d, np.linalg.norm(features - features[pick], axis=1))
    return out


def adaptive(
    spec: TwinSpec,
    config: Config,
    out: str | Path,
    *,
    budget: int,
    initial: int,
    batch: int,
    holdout: int = 300,
    seed: int = 0,
    pool_size: int = 4000,
    workers: int = 0,
    explore: float = 0.0,
    progress: bool = True,
    log: Any = print,
) -> AdaptiveResult:
    """Run the loop into ``out`` (data/, holdout/, round-k/ and the final model in out)."""
    from physics.dataset import read_runs
    from physics.doe import make_design
    from physics.study import extend, generate
    from surrogates._fit import load_rows, train

    out = Path(out)
    pool = PoolOptions(workers=workers)
    initial = min(initial, budget)
    held = generate(
        spec, out / "holdout", n=holdout, method="random", seed=seed + 7919,
        pool=pool, progress=progress,
    )  # fmt: skip
    hold = read_runs(held.folder).to_pandas()
    hold = hold.loc[hold["status"] == "ok"].reset_index(drop=True)
    first = make_design(spec, initial, method="lhs", seed=seed).points
    extend(spec, out / "data", first, label="round-000", seed=seed, pool=pool, progress=progress)
    rounds: list[Round] = []
    met = False
    k = 0
    while True:
        rows = load_rows(out / "data", spec)
        trained = train(rows, spec, config, out / f"round-{k:03d}", dataset=out / "data",
                        progress=False)  # fmt: skip
        s = trained.surrogate
        metrics = score(s.predict_frame(hold), hold, spec)
        failures = gate(spec, metrics)
        runs = len(rows.frame) + sum(rows.failed.values())
        rounds.append(Round(k, runs, failures, metrics))
        log(f"round {k}: {runs} runs, {len(failures)} acceptance thresholds missed on "
            f"{len(hold)} held-out runs")  # fmt: skip
        if not failures:
            met = True
            break
        if runs >= budget:
            break
        size = min(batch, budget - runs)
        candidates = make_design(spec, pool_size, method="random", seed=seed + 1000 + k).points
        import pandas as pd

        frame = pd.DataFrame(candidates)
        raw = s.raw(frame)
        known = s.raw(rows.frame)
        feats = s.features.transform(spec, raw)
        wide = round(explore * size)  # the share spent filling space, not on disagreement
        chosen = select(acquisition(s, raw, known), feats, size - wide) if size > wide else []
        chosen += spread_out(feats, s.features.transform(spec, known), wide, chosen)
        k += 1
        extend(spec, out / "data", [candidates[i] for i in chosen], label=f"round-{k:03d}",
               seed=seed + 1000 + k - 1, pool=pool, progress=progress)  # fmt: skip
    result = AdaptiveResult(trained, rows, rounds, met, out)
    s.info["adaptive"] = [
        {"round": r.index, "runs": r.runs, "thresholds_missed": len(r.failures)} for r in rounds
    ]
    s.save(out)
    last = out / f"round-{rounds[-1].index:03d}"
    for name in ("split.json", "history.json"):
        (out / name).write_text((last / name).read_text())
    (out / "adaptive.json").write_text(
        json.dumps(
            {"met": result.met, "rounds": s.info["adaptive"],
             "holdout": {"runs": len(hold), "seed": seed + 7919}},
            indent=2,
        ) + "\n"
    )  # fmt: skip
    return result

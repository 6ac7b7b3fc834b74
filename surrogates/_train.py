"""The training loop, in small steps a subclass can override.

``Trainer.fit`` runs epochs of ``train_step`` over shuffled mini-batches, then
``validation_step``; ``loss`` is the per-net loss (mean squared error on the
standardised regressions of rows without an event, censored at a capped KPI's
ceiling: a row at the cap costs only a prediction below it; binary cross-entropy on
the event logits of every row), weighted per member by a Poisson(1) bootstrap of the
rows. Each net keeps the weights of its own best validation epoch (its early
stop); training ends when no net has improved for ``patience`` epochs. The
learning rate follows a cosine decay. Seeded; deterministic on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from physics.progress import Progress
from surrogates._calibrate import CAP_TOLERANCE
from surrogates._config import TrainingConfig
from surrogates._errors import ConfigError
from surrogates._model import FusedEnsemble


@dataclass
class Batch:
    x: torch.Tensor  # [B, F] features
    y: torch.Tensor  # [B, K] standardised regressions, then 0/1 events
    quiet: torch.Tensor  # [B] or [B, k] 1.0 where a regression learns from the row
    weight: torch.Tensor  # [M, B] bootstrap weights per member


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: list[int] = field(default_factory=list)  # per net
    stopped_at: int = 0
    seconds: float = 0.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            [f"training.device: {name!r} is not a device (expected cpu, cuda, cuda:N or auto)"]
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError([f"training.device: {name!r} asked for, but CUDA is not available here"])
    return device


class Trainer:
    """Fits a FusedEnsemble; ``n_regression`` leading outputs are regressions, the rest events."""

    def __init__(
        self,
        model: FusedEnsemble,
        config: TrainingConfig,
        *,
        n_regression: int,
        seed: int = 0,
        progress: bool = True,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        ceiling: np.ndarray | None = None,
    ) -> None:
        self.config = config
        self.device = pick_device(config.device)
        self.model = model.to(self.device)
        self.n_regression = n_regression
        # (which regressions are capped [kr], their caps in the nets' space, 0 where
        # none: an inf would turn the unused branch's gradient to NaN); None: no caps
        self.caps: tuple[torch.Tensor, torch.Tensor] | None = None
        if ceiling is not None and np.isfinite(ceiling).any():
            finite = np.isfinite(ceiling)
            self.caps = (
                torch.as_tensor(finite, device=self.device),
                torch.as_tensor(np.where(finite, ceiling, 0.0), dtype=torch.float32,
                                device=self.device),
            )  # fmt: skip
        self.seed = seed
        self.progress = progress
        self.on_epoch = on_epoch
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )

    # ---- the steps ---------------------------------------------------------------------------

    def loss(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Loss of every member and output, [M, K]."""
        k = self.n_regression
        w = batch.weight.unsqueeze(-1)  # [M, B, 1]
        out = []
        if k:
            # quiet: [B] (no event) or [B, k] (per KPI: no event, and feasible where the
            # KPI's acceptance is scoped to the feasible runs)
            q = batch.quiet if batch.quiet.dim() == 2 else batch.quiet[:, None]
            wq = w * q[None]
            sq = (pred[..., :k] - batch.y[None, :, :k]) ** 2
            if self.caps is not None:
                # Censored at the cap: the true value is at least the cap there, so
                # only a prediction below it is wrong (Tobit's likelihood, squared).
                capped, cap = self.caps
                at_cap = capped & (batch.y[None, :, :k] >= cap - CAP_TOLERANCE)
                short = torch.relu(cap - pred[..., :k]) ** 2
                sq = torch.where(at_cap, short, sq)
            out.append((wq * sq).sum(1) / wq.sum(1).clamp_min(1e-12))
        if pred.shape[-1] > k:
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                pred[..., k:], batch.y[None, :, k:].expand_as(pred[..., k:]), reduction="none"
            )
            out.append((w * bce).sum(1) / w.sum(1).clamp_min(1e-12))
        return torch.cat(out, dim=-1)

    def group_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """[M, K] -> one loss per net."""
        return loss.reshape(-1) if self.model.per_kpi else loss.mean(dim=1)

    def train_step(self, batch: Batch) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(batch.x), batch).sum()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> torch.Tensor:
        """Per-net validation loss (unweighted)."""
        self.model.eval()
        plain = Batch(batch.x, batch.y, batch.quiet, torch.ones_like(batch.weight))
        return self.group_loss(self.loss(self.model(batch.x), plain))

    def learning_rate(self, epoch: int) -> float:
        """Cosine decay from the configured rate to 1 % of it."""
        lr0 = self.config.learning_rate
        return lr0 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * epoch / self.config.epochs)))

    # ---- the loop ----------------------------------------------------------------------------

    def batch(self, x: np.ndarray, y: np.ndarray, quiet: np.ndarray, w: np.ndarray) -> Batch:
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=torch.float32, device=self.device)

        return Batch(t(x), t(y), t(quiet), t(w))

    def fit(
        self,
        train: tuple[np.ndarray, np.ndarray, np.ndarray],
        validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> History:
        """Train on (features, targets, no-event mask); keep each net's best epoch."""
        cfg = self.config
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        x, y, quiet = train
        n = len(x)
        members = self.model.members
        weight = (
            rng.poisson(1.0, size=(members, n)).astype(np.float64)
            if cfg.bootstrap and members > 1
            else np.ones((members, n))
        )
        full = self.batch(x, y, quiet, weight)
        val = self.batch(*validation, np.ones((members, len(validation[0]))))
        best = torch.full((self.model.groups,), float("inf"), device=self.device)
        best_state = [p.detach().clone() for p in self.model.parameters()]
        best_epoch = torch.zeros(self.model.groups, dtype=torch.long)
        history = History()
        since_better = 0
        started = time.monotonic()
        bar = Progress(
            cfg.epochs, label="train", unit="epochs", enabled=self.progress, show_failed=False
        )
        with bar:
            for epoch in range(cfg.epochs):
                lr = self.learning_rate(epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                order = torch.as_tensor(rng.permutation(n), device=self.device)
                total = 0.0
                for start in range(0, n, cfg.batch_size):
                    idx = order[start : start + cfg.batch_size]
                    total += self.train_step(
                        Batch(full.x[idx], full.y[idx], full.quiet[idx], full.weight[:, idx])
                    ) * len(idx)
                val_loss = self.validation_step(val)
                better = val_loss < best
                if bool(better.any()):
                    since_better = 0
                    best = torch.where(better, val_loss, best)
                    best_epoch[better.cpu()] = epoch
                    for saved, p in zip(best_state, self.model.parameters(), strict=True):
                        saved[better] = p.detach()[better]
                else:
                    since_better += 1
                row = {
                    "epoch": float(epoch),
                    "train_loss": total / n / self.model.groups,
                    "val_loss": float(val_loss.mean()),
                    "best_val_loss": float(best.mean()),
                    "lr": lr,
                }
                history.epochs.append(row)
                if self.on_epoch is not None:
                    self.on_epoch(epoch, row)
                bar.note = f"val {row['val_loss']:.4g}"
                bar.update()
                if since_better >= cfg.patience:
                    break
        with torch.no_grad():
            for saved, p in zip(best_state, self.model.parameters(), strict=True):
                p.copy_(saved)
        self.model.eval()
        history.best_epoch = best_epoch.tolist()
        history.stopped_at = len(history.epochs)
        history.seconds = time.monotonic() - started
        return history


@torch.no_grad()
def predict_members(
    model: FusedEnsemble,
    features: np.ndarray,
    batch: int = 8192,
    ceiling: np.ndarray | None = None,
) -> np.ndarray:
    """[M, N, K] network outputs (standardised regressions, event logits), float64;
    ``ceiling`` ([kr], inf: none): the leading regressions clipped to their caps."""
    model.eval()
    device = next(model.parameters()).device
    parts = []
    for start in range(0, len(features), batch):
        x = torch.as_tensor(features[start : start + batch], dtype=torch.float32, device=device)
        parts.append(model(x).cpu().numpy())
    if not parts:
        return np.zeros((model.members, 0, model.n_outputs))
    z = np.concatenate(parts, axis=1).astype(np.float64)
    if ceiling is not None and np.isfinite(ceiling).any():
        kr = len(ceiling)
        z[:, :, :kr] = np.minimum(z[:, :, :kr], ceiling)
    return z


def describe(history: History) -> dict[str, Any]:
    return {
        "epochs_run": history.stopped_at,
        "seconds": round(history.seconds, 2),
        "best_epoch_median": float(np.median(history.best_epoch)) if history.best_epoch else 0,
    }

"""The deep ensemble, fused: every member (and, per KPI, every small net) in one tensor.

Each net is an MLP plus a linear path from its features to its output.

A layer holds the weights of all G nets as one [G, fan_in, fan_out] tensor, so a
forward pass is a few batched matrix products whatever the number of members
and KPIs; the ONNX graph has the same shape (few nodes, fast at batch 1). With
``per_kpi`` each of the M members has one small net per output (G = M x K, one
output each); without, one shared net per member (G = M, K outputs each).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": nn.functional.silu,
    "tanh": torch.tanh,
    "relu": torch.relu,
}


class FusedEnsemble(nn.Module):
    """M members x K outputs; ``forward`` maps features [N, F] to [M, N, K]."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        *,
        members: int = 5,
        per_kpi: bool = True,
        hidden: list[int] | tuple[int, ...] = (64, 64),
        activation: str = "silu",
        linear_skip: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        self.n_features, self.n_outputs, self.members = n_features, n_outputs, members
        self.per_kpi, self.hidden, self.activation = per_kpi, list(hidden), activation
        self.linear_skip = linear_skip
        self.groups = members * n_outputs if per_kpi else members
        widths = [n_features, *self.hidden, 1 if per_kpi else n_outputs]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(widths):
            # torch.nn.Linear's default initialisation, drawn independently per net.
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(self.groups, fan_in, fan_out)))
            self.biases.append(nn.Parameter(torch.empty(self.groups, 1, fan_out)))
            nn.init.uniform_(self.weights[-1], -bound, bound)
            nn.init.uniform_(self.biases[-1], -bound, bound)
        # A linear path from the features straight to each output: with logged inputs and
        # targets a power law is exactly linear, and the MLP learns what is left.
        self.skip = (
            nn.Parameter(torch.zeros(self.groups, n_features, widths[-1])) if linear_skip else None
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments: a saved model carries them beside its weights."""
        return {
            "n_features": self.n_features,
            "n_outputs": self.n_outputs,
            "members": self.members,
            "per_kpi": self.per_kpi,
            "hidden": self.hidden,
            "activation": self.activation,
            "linear_skip": self.linear_skip,
        }

    def group_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """[G, N, outputs per net]."""
        act = ACTIVATIONS[self.activation]
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.matmul(h, w) + b
            if i < last:
                h = act(h)
        if self.skip is not None:
            h = h + torch.matmul(x, self.skip)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"features: expected shape [N, {self.n_features}], got {list(x.shape)}"
            )
        out = self.group_outputs(x)
        if self.per_kpi:  # group g = m K + k holds output k of member m
            return out.reshape(self.members, self.n_outputs, -1).permute(0, 2, 1)
        return out

    def group_of(self, member: torch.Tensor | int, output: torch.Tensor | int) -> Any:
        """Index of the net that holds ``output`` of ``member``."""
        return member * self.n_outputs + output if self.per_kpi else member


def save_checkpoint(model: FusedEnsemble, path: Any, **extra: Any) -> None:
    torch.save({"config": model.config(), "state": model.state_dict(), **extra}, path)


def load_checkpoint(path: Any) -> tuple[FusedEnsemble, dict[str, Any]]:
    data = torch.load(path, map_location="cpu", weights_only=False)
    model = FusedEnsemble(**data.pop("config"))
    model.load_state_dict(data.pop("state"))
    model.eval()
    return model, data

"""Building blocks shared by the state-based algorithms."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["mlp", "TwinQ"]


def mlp(in_dim: int, hidden_dims: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """Linear-ReLU stack ending in a Linear layer of ``out_dim`` outputs."""
    layers: list[nn.Module] = []
    prev = in_dim
    for width in hidden_dims:
        layers += [nn.Linear(prev, width), nn.ReLU()]
        prev = width
    layers.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*layers)


class TwinQ(nn.Module):
    """Two independent Q(s, a) heads; the minimum curbs over-estimation (Fujimoto et al. 2018)."""

    def __init__(self, feature_dim: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.q1 = mlp(feature_dim + 1, hidden_dims, 1)
        self.q2 = mlp(feature_dim + 1, hidden_dims, 1)

    def forward(self, s: torch.Tensor, a_unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s (..., D) normalised states, a_unit (...) unit actions -> two (...) Q values."""
        x = torch.cat([s, a_unit.unsqueeze(-1)], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

"""Inverse dynamics: the action that moves the realised state to the planned next one, read from
the plan rows around the acting tick."""

from __future__ import annotations

import torch
from torch import nn

from aigb.algos.networks import mlp

__all__ = ["InverseDynamics", "transition_rows"]


class InverseDynamics(nn.Module):
    """Plan rows around the acting tick (``DiffBidConfig.idm_rows``; by default [s_{t-2}, s_{t-1},
    s_t, s_{t+1}], scaled), context, tick info -> unit action in [-1, 1]."""

    def __init__(self, plan_dim: int, context_dim: int, info_dim: int, hidden_dims: tuple[int, ...], n_rows: int = 4) -> None:
        super().__init__()
        self.net = mlp(n_rows * plan_dim + context_dim + info_dim, hidden_dims, 1)

    def forward(self, rows: torch.Tensor, context: torch.Tensor, info: torch.Tensor) -> torch.Tensor:
        """rows (B, R, P), context (B, C), info (B, I) -> (B,)."""
        return torch.tanh(self.net(torch.cat([rows.flatten(1), context, info], dim=-1))).squeeze(-1)


def transition_rows(plans: torch.Tensor, tick: torch.Tensor, offsets: tuple[int, ...] = (-2, -1, 0, 1)) -> torch.Tensor:
    """Rows t + o (o in ``offsets``; by default t-2, t-1, t, t+1) of each plan (B, T+1, P) at ticks
    (B,) -> (B, R, P); rows before 0 repeat row 0 (the first ticks have no history yet, in training
    and at serving alike), rows after the last repeat the last (the day's end)."""
    offsets = torch.as_tensor(offsets, device=plans.device)                               # (R,)
    idx = (tick[:, None].to(plans.device) + offsets[None]).clamp(0, plans.shape[1] - 1)  # (B, R)
    return torch.gather(plans, 1, idx[..., None].expand(-1, -1, plans.shape[-1]))

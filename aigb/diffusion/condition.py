"""The condition embedding y -> emb, where classifier-free guidance's label dropout lives.

A plan is conditioned on two things of different status:

* the **context** (campaign constants, e.g. log budget, target CPA, category): always known, so it
  is always embedded and never dropped;
* the **outcome** asked for (e.g. return quantile, constraint flag, utilisation): dropped jointly
  with probability ``drop_prob`` during training and replaced by a learned null embedding, so one
  network learns both eps(x_t | context, outcome) and eps(x_t | context). Sampling then mixes the
  two with classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598; Decision Diffuser,
  Ajay et al. ICLR 2023, arXiv 2211.15657, drops returns with p = 0.25).

A learned null vector (rather than multiplying the embedding by 0 as Decision Diffuser does) lets
"unconditional" be a point the network chooses. The dropout mask comes from an explicit
``torch.Generator`` so training is reproducible without the global generator.
"""

from __future__ import annotations

import torch
from torch import nn

from aigb.diffusion.layers import LearnedVector

__all__ = ["ConditionEmbedding"]


def _two_layer(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.Mish(), nn.Linear(out_dim, out_dim))


class ConditionEmbedding(nn.Module):
    """emb = MLP([MLP(context), MLP(outcome) or null]) -> (B, emb_dim).

    context_dim: width of the always-present context (>= 1).
    outcome_dim: width of the droppable outcome condition (0: there is none; always null).
    drop_prob: training-time probability that a sample's outcome is replaced by the null embedding.
    """

    def __init__(self, context_dim: int, outcome_dim: int, emb_dim: int = 64, drop_prob: float = 0.25) -> None:
        super().__init__()
        if context_dim < 1:
            raise ValueError(f"context_dim must be >= 1, got {context_dim}")
        if outcome_dim < 0:
            raise ValueError(f"outcome_dim must be >= 0, got {outcome_dim}")
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob must lie in [0, 1], got {drop_prob}")
        self.context_dim = int(context_dim)
        self.outcome_dim = int(outcome_dim)
        self.emb_dim = int(emb_dim)
        self.drop_prob = float(drop_prob)
        self.context_net = _two_layer(self.context_dim, self.emb_dim)
        self.outcome_net = _two_layer(self.outcome_dim, self.emb_dim) if self.outcome_dim else None
        self.null = LearnedVector(self.emb_dim)
        self.mix = nn.Sequential(nn.Linear(2 * self.emb_dim, self.emb_dim), nn.Mish(), nn.Linear(self.emb_dim, self.emb_dim))

    def drop_mask(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(batch,) bool, True with probability drop_prob, drawn from ``generator`` only."""
        return torch.rand(batch, generator=generator, device=generator.device) < self.drop_prob

    def forward(self, context: torch.Tensor, outcome: torch.Tensor | None = None, drop: torch.Tensor | None = None) -> torch.Tensor:
        """context (B, context_dim), outcome (B, outcome_dim) or None, drop (B,) bool or None -> (B, emb_dim).

        Where ``drop`` is True, or everywhere when ``outcome`` is None, the outcome part is the
        null embedding (the unconditional branch of classifier-free guidance).
        """
        if context.dim() != 2 or context.shape[1] != self.context_dim:
            raise ValueError(f"context must have shape (B, {self.context_dim}), got {tuple(context.shape)}")
        b = context.shape[0]
        c = self.context_net(context)                                                    # (B, E)
        null = self.null().to(c.dtype).expand(b, self.emb_dim)                           # (B, E)
        if outcome is None or self.outcome_net is None:
            o = null
        else:
            if outcome.shape != (b, self.outcome_dim):
                raise ValueError(f"outcome must have shape ({b}, {self.outcome_dim}), got {tuple(outcome.shape)}")
            o = self.outcome_net(outcome)
            if drop is not None:
                if drop.shape != (b,):
                    raise ValueError(f"drop must have shape ({b},), got {tuple(drop.shape)}")
                o = torch.where(drop.to(device=o.device, dtype=torch.bool)[:, None], null, o)
        return self.mix(torch.cat([c, o], dim=-1))

    def cfg_pair(self, context: torch.Tensor, outcome: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) embeddings, each (B, emb_dim), for ``cfg_eps_fn``."""
        return self(context, outcome), self(context, None)

"""Behaviour cloning: regress the logged action on the state (Pomerleau 1991; the BC baseline of
AuctionNet). The policy imitates the data's average bidder, so it is as good as the logs are.

    loss = mean_i (pi(s_i) - clip(a_i, A_LOW, A_HIGH))^2,   pi(s) = mid + half * tanh(f(s))

The tanh head keeps every action inside the bounds by construction; logged actions outside them
are clipped because the policy could not express them anyway.

``top_fraction`` < 1 clones only the best campaigns of the data ("%BC", Chen et al. 2021,
arXiv 2106.01345, section 5.3), ranked by ``campaign_efficiency`` (score x C / B, so that big budgets
do not crowd out well-bid small ones). Logs of an exploring bidder population are mostly bad bidding;
cloning all of them reproduces its overspending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aigb.algos.base import (
    StatePolicy, TorchAlgorithm, check_common_config, mlp, require, require_positive, transition_tensors,
)

__all__ = ["BCConfig", "BC", "best_campaigns"]


def best_campaigns(efficiency: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the ceil(fraction x N) campaigns of highest efficiency (ties: lower index), sorted."""
    efficiency = np.asarray(efficiency, dtype=np.float64)
    if efficiency.ndim != 1 or efficiency.size == 0 or not np.isfinite(efficiency).all():
        raise ValueError(f"campaign_efficiency: must be a non-empty 1-D array of finite numbers, got shape {efficiency.shape}")
    k = max(1, math.ceil(fraction * efficiency.size))
    return np.sort(np.argsort(-efficiency, kind="stable")[:k])


@dataclass(frozen=True)
class BCConfig:
    """Behaviour cloning hyper-parameters."""

    hidden_dims: tuple[int, ...] = (256, 256)
    """Widths of the actor MLP's hidden layers."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 1e-5
    """L2 penalty on the weights (Adam's coupled form); a little keeps the regression smooth."""
    batch_size: int = 512
    """Transitions per update."""
    regress_on: str = "log_ratio"
    """What the squared error is taken on: "log_ratio" (the action log(alpha / C): the policy
    learns the behaviour's median bid) or "ratio" (alpha / C: its mean bid, which is what sets the
    spend when the logged bids are noisy)."""
    top_fraction: float = 1.0
    """Share of the data's campaigns to clone, the most efficient first (1.0: plain BC)."""
    steps: int = 20_000
    """Updates per run: 20k x 512 = 10M samples, ~9 passes over 24k x 48 ticks; 2-4 min at the
    measured 5-12 ms/step (benchmarks/algo_step_speed.py, one thread, 2-core CPU)."""

    def __post_init__(self) -> None:
        check_common_config(self)
        require_positive(self, "lr")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.regress_on in ("log_ratio", "ratio"), "regress_on", f"must be 'log_ratio' or 'ratio', got {self.regress_on!r}")
        require(0.0 < self.top_fraction <= 1.0, "top_fraction", f"must lie in (0, 1], got {self.top_fraction}")


class DeterministicActor(nn.Module):
    """s (B, D) normalised -> unit action (B,) in [-1, 1]."""

    def __init__(self, feature_dim: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(feature_dim, hidden_dims, 1)

    def deterministic(self, s: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(s)).squeeze(-1)


class BC(TorchAlgorithm):
    """Behaviour cloning by mean-squared error in action units (log alpha / target_cpa)."""

    name = "bc"
    config_class = BCConfig
    batch_kind = "transitions"

    def _networks(self) -> nn.ModuleDict:
        return nn.ModuleDict({"actor": DeterministicActor(self.feature_dim, self.config.hidden_dims)})

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {"actor": torch.optim.Adam(self.nets["actor"].parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)}

    _top: tuple[object, np.ndarray] | None = None   # (dataset, indices of the campaigns cloned)

    def sample_batch(self, dataset, batch_size: int, rng: np.random.Generator) -> dict:
        fraction = self.config.top_fraction
        if fraction >= 1.0:
            return dataset.sample_transitions(batch_size, rng)
        if self._top is None or self._top[0] is not dataset:
            self._top = (dataset, best_campaigns(dataset.campaign_efficiency, fraction))
        return dataset.sample_transitions(batch_size, rng, trajectories=self._top[1])

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        b = transition_tensors(batch, self.feature_dim)
        self.nets.train()
        s = self.normalizer.states(b["obs"])                                   # (B, D)
        target = self.bounds.clip(b["action"])                                 # (B,)
        pred = self.bounds.from_unit(self.nets["actor"].deterministic(s))      # (B,)
        if self.config.regress_on == "ratio":
            loss = F.mse_loss(pred.exp(), target.exp())
        else:
            loss = F.mse_loss(pred, target)
        opt = self.optimizers["actor"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.n_updates += 1
        return {"loss": loss.item()}

    def policy(self) -> StatePolicy:
        return StatePolicy(self.nets["actor"], self.normalizer, self.bounds, self.feature_dim)

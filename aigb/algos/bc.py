"""Behaviour cloning: regress the logged action on the state (Pomerleau 1991; the BC baseline of
AuctionNet), from the best campaigns of the data.

    loss = mean_i (exp(pi(s_i)) - exp(clip(a_i, A_LOW, A_HIGH)))^2,   pi(s) = mid + half * tanh(f(s))

The tanh head keeps every action inside the bounds by construction; logged actions outside them
are clipped because the policy could not express them anyway.

Two defaults differ from the plain baseline, both measured on the default training set (5 x 48
evaluation, paired with the fixed-rate rule; benchmarks/results/all_strategies_5x48.txt):

* ``top_fraction = 0.25`` clones only the best quarter of the campaigns ("%BC", Chen et al. 2021,
  arXiv 2106.01345, section 5.3), ranked by ``campaign_efficiency`` (score x C / B, so that big
  budgets do not crowd out well-bid small ones). The logs come from an exploring population whose
  CPA is above target in 75 % of campaigns; cloning all of it reproduces that (plain BC: 48.8 %
  CPA violations, score -0.69 +- 1.80 vs the fixed rule).
* ``regress_on = "ratio"`` takes the squared error on the bid ratio alpha / C, so the policy
  learns the behaviour's mean bid. The logged bids are noisy (residual std 0.39 in log units
  within the best quarter); regressing on their logarithm learns the median, about 10 % lower,
  and the clone under-spends (70 % of budget vs the cloned campaigns' 94 %; score +0.20 +- 1.73
  vs fixed). With both: +2.59 +- 1.80.

``top_fraction = 1`` with ``regress_on = "log_ratio"`` is the plain baseline.
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
    regress_on: str = "ratio"
    """What the squared error is taken on: "ratio" (alpha / C: the policy learns the behaviour's
    mean bid, which is what sets the spend when the logged bids are noisy) or "log_ratio" (the
    action log(alpha / C): its median bid)."""
    top_fraction: float = 0.25
    """Share of the data's campaigns to clone, the most efficient first (1.0: all of them)."""
    steps: int = 20_000
    """Updates per run: 20k x 512 = 10M samples, ~36 passes over the best quarter of 24k x 48 ticks
    (early stopping usually ends it sooner); 2-4 min of updates at the measured 5-12 ms/step
    (benchmarks/algo_step_speed.py, one thread, 2-core CPU), plus the validation rollouts."""

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
    _top: tuple[object, np.ndarray] | None = None   # (dataset, indices of the campaigns cloned), made on first use

    def _networks(self) -> nn.ModuleDict:
        return nn.ModuleDict({"actor": DeterministicActor(self.feature_dim, self.config.hidden_dims)})

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {"actor": torch.optim.Adam(self.nets["actor"].parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)}

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

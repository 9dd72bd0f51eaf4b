"""Implicit Q-Learning (Kostrikov, Nair & Levine, ICLR 2022, arXiv 2110.06169).

IQL never queries Q at actions outside the data. Per update, in the paper's order:

1. value:  L_V = E[ |tau - 1(u < 0)| u^2 ],  u = min_i Q_target_i(s, a) - V(s)   (expectile tau)
2. Q:      L_Q = E[ (r + gamma (1 - done) V(s') - Q_i(s, a))^2 ]  for both heads
3. actor:  L_pi = -E[ min(exp(beta (Q_target(s, a) - V(s))), w_max) log pi(a | s) ]  (AWR)
4. target: Q_target <- (1 - polyak) Q_target + polyak Q

Rewards are the dataset's per-tick reward (CPA-penalised: a campaign's rewards sum to its score)
divided by reward_scale. The actor is a Gaussian in
unit-action space with a tanh-bounded mean and a state-independent log-std; serving takes the mean.
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
    StatePolicy, TorchAlgorithm, TwinQ, check_common_config, init_default_, init_target_, mlp, polyak_update_, require,
    require_positive, transition_tensors,
)

__all__ = ["IQLConfig", "IQL"]

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass(frozen=True)
class IQLConfig:
    """Implicit Q-Learning hyper-parameters (paper defaults for locomotion unless noted)."""

    hidden_dims: tuple[int, ...] = (256, 256)
    """Widths of the hidden layers of the actor, value and both Q networks."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the value and Q networks."""
    discount: float = 0.99
    """gamma; the 48-tick horizon is well inside 1 / (1 - 0.99) = 100 ticks."""
    expectile: float = 0.7
    """tau of the value's expectile regression; 0.5 is SARSA, -> 1 approaches max_a Q."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights exp(beta * A)."""
    max_weight: float = 100.0
    """Clip of the advantage weights, so a few large advantages cannot dominate a batch."""
    polyak: float = 0.005
    """Target-network step size."""
    batch_size: int = 256
    """Transitions per update."""
    steps: int = 40_000
    """Updates per run: 40k x 256 = 10M samples, ~9 passes over 24k x 48 ticks and 200 target
    lags (1/polyak) to carry value across 48 ticks; ~18 min at the measured 24-27 ms/step
    (benchmarks/algo_step_speed.py, one thread, 2-core CPU)."""

    def __post_init__(self) -> None:
        check_common_config(self)
        require_positive(self, "actor_lr", "critic_lr", "beta", "max_weight")
        require(0.0 < self.discount <= 1.0, "discount", f"must lie in (0, 1], got {self.discount}")
        require(0.0 < self.expectile < 1.0, "expectile", f"must lie in (0, 1), got {self.expectile}")
        require(0.0 < self.polyak <= 1.0, "polyak", f"must lie in (0, 1], got {self.polyak}")


class GaussianActor(nn.Module):
    """pi(a | s) = N(tanh(f(s)), exp(log_std)^2) over unit actions."""

    def __init__(self, feature_dim: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(feature_dim, hidden_dims, 1)
        self.log_std = nn.Parameter(torch.zeros(1))

    def init_parameters_(self, generator: torch.Generator) -> None:
        nn.init.zeros_(self.log_std)   # std 1 over a width-2 interval: broad at the start

    def deterministic(self, s: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(s)).squeeze(-1)                           # (B,)

    def log_prob(self, s: torch.Tensor, a_unit: torch.Tensor) -> torch.Tensor:
        mean = self.deterministic(s)
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return -0.5 * ((a_unit - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)


class ValueNet(nn.Module):
    def __init__(self, feature_dim: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(feature_dim, hidden_dims, 1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s).squeeze(-1)                                       # (B,)


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """E[|tau - 1(diff < 0)| diff^2] (IQL eq. 2)."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff.pow(2)).mean()


class IQL(TorchAlgorithm):
    """Implicit Q-Learning with twin Q, expectile value and advantage-weighted regression."""

    name = "iql"
    config_class = IQLConfig
    batch_kind = "transitions"

    def _networks(self) -> nn.ModuleDict:
        d, h = self.feature_dim, self.config.hidden_dims
        return nn.ModuleDict({
            "actor": GaussianActor(d, h),
            "value": ValueNet(d, h),
            "critic": TwinQ(d, h),
            "critic_target": TwinQ(d, h),
        })

    def _init_networks(self, generator: torch.Generator) -> None:
        init_default_(self.nets, generator)
        init_target_(self.nets["critic_target"], self.nets["critic"])

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {
            "actor": torch.optim.Adam(self.nets["actor"].parameters(), lr=cfg.actor_lr),
            "value": torch.optim.Adam(self.nets["value"].parameters(), lr=cfg.critic_lr),
            "critic": torch.optim.Adam(self.nets["critic"].parameters(), lr=cfg.critic_lr),
        }

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        cfg, nets, opt = self.config, self.nets, self.optimizers
        b = transition_tensors(batch, self.feature_dim)
        nets.train()
        s = self.normalizer.states(b["obs"])                                   # (B, D)
        s_next = self.normalizer.states(b["next_obs"])                         # (B, D)
        a = self.bounds.to_unit(self.bounds.clip(b["action"]))                 # (B,)
        r = self.normalizer.rewards(b["reward"])                               # (B,)
        not_done = 1.0 - b["done"]                                             # (B,)

        # 1. Value: expectile of the target Q under the data's actions.
        with torch.no_grad():
            q_target = torch.minimum(*nets["critic_target"](s, a))             # (B,)
        v = nets["value"](s)
        advantage = q_target - v
        value_loss = expectile_loss(advantage, cfg.expectile)
        opt["value"].zero_grad(set_to_none=True)
        value_loss.backward()
        opt["value"].step()

        # 2. Q: one-step backup through V, never through an action the data lacks.
        with torch.no_grad():
            y = r + cfg.discount * not_done * nets["value"](s_next)            # (B,)
        q1, q2 = nets["critic"](s, a)
        critic_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        opt["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        opt["critic"].step()

        # 3. Actor: advantage-weighted log-likelihood (advantages from before the V step).
        weight = torch.exp(cfg.beta * advantage.detach()).clamp(max=cfg.max_weight)
        actor_loss = -(weight * nets["actor"].log_prob(s, a)).mean()
        opt["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        opt["actor"].step()

        # 4. Target network.
        polyak_update_(nets["critic_target"], nets["critic"], cfg.polyak)
        self.n_updates += 1
        return {
            "value_loss": value_loss.item(),
            "critic_loss": critic_loss.item(),
            "actor_loss": actor_loss.item(),
            "q_mean": q1.mean().item(),
            "v_mean": v.mean().item(),
            "adv_weight_mean": weight.mean().item(),
        }

    def policy(self) -> StatePolicy:
        return StatePolicy(self.nets["actor"], self.normalizer, self.bounds, self.feature_dim)

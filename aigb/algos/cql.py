"""Conservative Q-Learning, continuous SAC-based variant CQL(H) (Kumar et al., NeurIPS 2020,
arXiv 2006.04779), with the importance-sampled log-sum-exp of its appendix F.

Per update, in the paper's order (Algorithm 1: Q step, then the SAC policy step):

1. Q:   L_Q = sum_i E[(Q_i(s, a) - y)^2]
              + alpha_cql * E[ log mean_j exp(Q_i(s, a_j) - log mu(a_j | s)) - Q_i(s, a) ]
        y = r + gamma (1 - done) min_i Q_target_i(s', a'),  a' ~ pi(. | s')
        a_j: n uniform actions (density 1/2 on [-1, 1]) and n policy actions at s and at s'.
2. pi:  L_pi = E[ alpha_H log pi(a~ | s) - min_i Q_i(s, a~) ],  a~ ~ pi(. | s) reparameterised
3. alpha_H (SAC entropy temperature): L = -E[ log alpha_H (log pi(a~ | s) + H_target) ]
4. target: Q_target <- (1 - polyak) Q_target + polyak Q

Actions are squashed by tanh into the unit interval, which the bounds map affinely to
[A_LOW, A_HIGH]; log-densities are taken in unit space (the uniform proposal's too). All sampling
noise comes from the algorithm's own torch.Generator.
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

__all__ = ["CQLConfig", "CQL"]

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
LOG_UNIFORM_DENSITY = math.log(0.5)   # uniform density on the unit interval [-1, 1]


@dataclass(frozen=True)
class CQLConfig:
    """Conservative Q-Learning hyper-parameters."""

    hidden_dims: tuple[int, ...] = (256, 256)
    """Widths of the hidden layers of the actor and both Q networks."""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor (the paper uses 1e-4 / 3e-5; the larger suits fewer CPU steps)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the Q networks."""
    temperature_lr: float = 1e-4
    """Adam learning rate of the SAC entropy temperature."""
    discount: float = 0.99
    """gamma; the 48-tick horizon is well inside 1 / (1 - 0.99) = 100 ticks."""
    cql_alpha: float = 5.0
    """Weight of the conservative penalty (paper: 5 for Gym tasks with the log-sum-exp form)."""
    reward_multiplier: float = 100.0
    """Rewards (already in units of the data's mean campaign score) are multiplied by this, so Q
    spans O(10-100) like the Gym returns that cql_alpha, the unit initial temperature and the
    learning rates were tuned on. On the O(1) normalised scale the per-tick differences between
    actions (~0.01-0.05) are swamped by the penalty and the entropy bonus: measured with 1, Q at the
    data's actions drifted to -7 against true values in [0, 3] and validation collapsed."""
    n_action_samples: int = 4
    """Actions per state for each of the three proposals of the log-sum-exp (paper: 10). The
    critic runs on batch x (3n + 1) actions, so n sets CQL's step cost; 12 samples cover a 1-D
    action interval well."""
    target_entropy: float = -1.0
    """SAC's entropy target, -dim(action)."""
    initial_temperature: float = 1.0
    """Starting value of the entropy temperature alpha_H."""
    backup_entropy: bool = False
    """Subtract alpha_H log pi(a'|s') in the Bellman target (the paper's CQL(H) runs without it)."""
    polyak: float = 0.005
    """Target-network step size."""
    batch_size: int = 128
    """Transitions per update (half of IQL's: CQL's step costs ~4x an IQL step at equal batch)."""
    steps: int = 25_000
    """Updates per run. Value information crosses the 48 ticks one backup per ~1/polyak = 200
    updates, so Q-learning needs >= ~10k; 25k takes ~25 min at the measured ~60 ms/step
    (benchmarks/algo_step_speed.py, one thread, 2-core CPU)."""

    def __post_init__(self) -> None:
        check_common_config(self)
        require_positive(self, "actor_lr", "critic_lr", "temperature_lr", "initial_temperature", "reward_multiplier")
        require(self.cql_alpha >= 0, "cql_alpha", f"must be >= 0, got {self.cql_alpha}")
        require(0.0 < self.discount <= 1.0, "discount", f"must lie in (0, 1], got {self.discount}")
        require(isinstance(self.n_action_samples, int) and self.n_action_samples >= 1, "n_action_samples", f"must be an integer >= 1, got {self.n_action_samples!r}")
        require(math.isfinite(self.target_entropy), "target_entropy", f"must be finite, got {self.target_entropy}")
        require(0.0 < self.polyak <= 1.0, "polyak", f"must lie in (0, 1], got {self.polyak}")


class TanhGaussianActor(nn.Module):
    """pi(. | s): u ~ N(mu(s), sigma(s)^2), unit action tanh(u) (SAC, Haarnoja et al. 2018)."""

    def __init__(self, feature_dim: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(feature_dim, hidden_dims, 2)

    def _mean_log_std(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(s)
        return out[..., 0], out[..., 1].clamp(LOG_STD_MIN, LOG_STD_MAX)

    def deterministic(self, s: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self._mean_log_std(s)[0])                           # (B,)

    def sample(self, s: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n reparameterised samples per state: unit actions (B, n) and their log-densities (B, n)."""
        mean, log_std = self._mean_log_std(s)                                   # (B,), (B,)
        eps = torch.randn((s.shape[0], n), generator=generator)
        u = mean.unsqueeze(-1) + log_std.exp().unsqueeze(-1) * eps             # (B, n)
        log_normal = -0.5 * eps.pow(2) - log_std.unsqueeze(-1) - 0.5 * math.log(2 * math.pi)
        # log |d tanh(u) / du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable form.
        log_jacobian = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return torch.tanh(u), log_normal - log_jacobian


class Temperature(nn.Module):
    """SAC's learnable entropy temperature, kept as its logarithm."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.initial = float(initial)
        self.log_alpha = nn.Parameter(torch.zeros(()))

    def init_parameters_(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.log_alpha.fill_(math.log(self.initial))

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp()


class CQL(TorchAlgorithm):
    """CQL(H) on a SAC actor-critic with twin Q and Polyak target networks."""

    name = "cql"
    config_class = CQLConfig
    batch_kind = "transitions"

    def _networks(self) -> nn.ModuleDict:
        d, h = self.feature_dim, self.config.hidden_dims
        return nn.ModuleDict({
            "actor": TanhGaussianActor(d, h),
            "critic": TwinQ(d, h),
            "critic_target": TwinQ(d, h),
            "temperature": Temperature(self.config.initial_temperature),
        })

    def _init_networks(self, generator: torch.Generator) -> None:
        init_default_(self.nets, generator)
        init_target_(self.nets["critic_target"], self.nets["critic"])

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {
            "actor": torch.optim.Adam(self.nets["actor"].parameters(), lr=cfg.actor_lr),
            "critic": torch.optim.Adam(self.nets["critic"].parameters(), lr=cfg.critic_lr),
            "temperature": torch.optim.Adam(self.nets["temperature"].parameters(), lr=cfg.temperature_lr),
        }

    def _conservative_penalty(self, s, s_next, q_data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """sum_i E[log mean_j exp(Q_i(s, a_j) - log mu(a_j | s)) - Q_i(s, a)] over the three proposals."""
        n, gen, nets = self.config.n_action_samples, self.train_generator, self.nets
        batch = s.shape[0]
        with torch.no_grad():
            a_cur, logp_cur = nets["actor"].sample(s, n, gen)                   # (B, n)
            a_next, logp_next = nets["actor"].sample(s_next, n, gen)            # (B, n)
        a_rand = torch.rand((batch, n), generator=gen) * 2.0 - 1.0             # (B, n)
        actions = torch.cat([a_rand, a_cur, a_next], dim=1)                    # (B, 3n)
        log_density = torch.cat([
            torch.full((batch, n), LOG_UNIFORM_DENSITY), logp_cur, logp_next,
        ], dim=1)                                                              # (B, 3n)
        s_rep = s.unsqueeze(1).expand(batch, 3 * n, s.shape[-1])               # (B, 3n, D)
        q1_ood, q2_ood = nets["critic"](s_rep, actions)                        # (B, 3n) each
        # Importance-sampled estimate of log integral exp Q(s, a) da: the mean of exp(Q - log mu)
        # over the 3n samples, hence the - log(3n) (it shifts the value, not the gradient).
        log_n = math.log(3 * n)
        penalty = 0.0
        for q_ood, q_in in zip((q1_ood, q2_ood), q_data):
            penalty = penalty + (torch.logsumexp(q_ood - log_density, dim=1) - log_n - q_in).mean()
        return penalty

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        cfg, nets, opt, gen = self.config, self.nets, self.optimizers, self.train_generator
        b = transition_tensors(batch, self.feature_dim)
        nets.train()
        s = self.normalizer.states(b["obs"])                                   # (B, D)
        s_next = self.normalizer.states(b["next_obs"])                         # (B, D)
        a = self.bounds.to_unit(self.bounds.clip(b["action"]))                 # (B,)
        r = cfg.reward_multiplier * self.normalizer.rewards(b["reward"])       # (B,)
        not_done = 1.0 - b["done"]                                             # (B,)
        alpha_h = nets["temperature"]().detach()

        # 1. Q: Bellman error plus the conservative penalty.
        with torch.no_grad():
            a_next, logp_next = nets["actor"].sample(s_next, 1, gen)            # (B, 1)
            q_next = torch.minimum(*nets["critic_target"](s_next, a_next.squeeze(1)))
            if cfg.backup_entropy:
                q_next = q_next - alpha_h * logp_next.squeeze(1)
            y = r + cfg.discount * not_done * q_next                           # (B,)
        q1, q2 = nets["critic"](s, a)
        bellman = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        penalty = self._conservative_penalty(s, s_next, (q1, q2))
        critic_loss = bellman + cfg.cql_alpha * penalty
        opt["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        opt["critic"].step()

        # 2. Policy: maximise the (conservative) Q plus entropy.
        a_pi, logp_pi = nets["actor"].sample(s, 1, gen)                        # (B, 1)
        nets["critic"].requires_grad_(False)   # the policy step must not accumulate critic gradients
        q_pi = torch.minimum(*nets["critic"](s, a_pi.squeeze(1)))
        nets["critic"].requires_grad_(True)
        actor_loss = (alpha_h * logp_pi.squeeze(1) - q_pi).mean()
        opt["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        opt["actor"].step()

        # 3. Entropy temperature.
        log_alpha = nets["temperature"].log_alpha
        temperature_loss = -(log_alpha * (logp_pi.detach().squeeze(1) + cfg.target_entropy)).mean()
        opt["temperature"].zero_grad(set_to_none=True)
        temperature_loss.backward()
        opt["temperature"].step()

        # 4. Target network.
        polyak_update_(nets["critic_target"], nets["critic"], cfg.polyak)
        self.n_updates += 1
        return {
            "critic_loss": critic_loss.item(),
            "bellman_loss": bellman.item(),
            "cql_penalty": penalty.item(),
            "actor_loss": actor_loss.item(),
            "temperature": alpha_h.item(),
            "q_mean": q1.mean().item(),
        }

    def policy(self) -> StatePolicy:
        return StatePolicy(self.nets["actor"], self.normalizer, self.bounds, self.feature_dim)

"""In-memory trajectories with a known good policy: the data of the contract checker
(``aigb.algos.check``), the tests and the step-speed benchmark."""

from __future__ import annotations

import math

import numpy as np

from aigb.seeding import rng as named_rng
from aigb.types import ACTION_HIGH as A_HIGH, ACTION_LOW as A_LOW

__all__ = ["SyntheticTrajectories"]


class SyntheticTrajectories:
    """Campaign-like trajectories with a learnable structure, implementing ``TrajectoryDataset``.

    Observation: feature 0 is the share of time left, feature 1 the share of budget left (spent
    faster by higher actions), the rest an AR(1) context. The best action is a smooth function
    a*(s) in [-2, 1]; the behaviour policy logs a* plus noise; the reward (conversions) is
    Poisson(1.5 exp(-(a - a*)^2)), so acting closer to a* earns more. Each trajectory's final CPA
    penalty is U(0.5, 1) (or 1 with ``penalised=False``) and scales its score_to_go.
    """

    def __init__(self, n_trajectories: int = 64, n_ticks: int = 12, feature_dim: int = 6, *, seed: int = 0,
                 penalised: bool = True, feature_version: str = "synthetic-v1", behaviour_noise: float = 0.5) -> None:
        if n_trajectories < 1 or n_ticks < 1 or feature_dim < 2:
            raise ValueError(f"need n_trajectories >= 1, n_ticks >= 1, feature_dim >= 2; got {n_trajectories}, {n_ticks}, {feature_dim}")
        g = named_rng(seed, "synthetic-trajectories")
        n, t_max, d = n_trajectories, n_ticks, feature_dim
        self.feature_dim, self.feature_version, self.n_ticks = d, feature_version, t_max
        self.weights = g.normal(size=d) / math.sqrt(d)                     # (D,) defines a*(s)
        obs = np.zeros((n, t_max, d))
        action = np.zeros((n, t_max))
        best = np.zeros((n, t_max))
        context = g.normal(size=(n, max(d - 2, 0)))
        budget_left = np.ones(n)
        for t in range(t_max):
            context = 0.8 * context + 0.6 * g.normal(size=context.shape)
            obs[:, t, 0] = 1.0 - t / t_max
            obs[:, t, 1] = budget_left
            obs[:, t, 2:] = context
            best[:, t] = self.best_action(obs[:, t])
            action[:, t] = np.clip(best[:, t] + behaviour_noise * g.normal(size=n), A_LOW, A_HIGH)
            budget_left = np.maximum(0.0, budget_left - 0.03 * np.exp(action[:, t]))
        reward = g.poisson(1.5 * np.exp(-((action - best) ** 2))).astype(np.float64)   # (N, T)
        penalty = g.uniform(0.5, 1.0, size=(n, 1)) if penalised else np.ones((n, 1))
        score_to_go = penalty * np.cumsum(reward[:, ::-1], axis=1)[:, ::-1]             # (N, T)
        self.obs = obs.astype(np.float32)
        self.action = action.astype(np.float32)
        self.reward = reward.astype(np.float32)
        self.score_to_go = score_to_go.astype(np.float32)
        self.state_mean = self.obs.reshape(-1, d).mean(0)
        self.state_std = self.obs.reshape(-1, d).std(0)
        returns = score_to_go[:, 0]
        self.reward_scale = float(max(1.0, returns.mean()))
        self.return_quantiles = {q: float(np.quantile(returns, q)) for q in (0.5, 0.75, 0.9, 0.95, 0.99)}
        self.fingerprint = {"kind": "synthetic", "seed": int(seed), "n_trajectories": n, "n_ticks": t_max,
                            "feature_dim": d, "penalised": bool(penalised), "feature_version": feature_version}

    def best_action(self, obs: np.ndarray) -> np.ndarray:
        """a*(s) for raw states (..., D)."""
        return 1.5 * np.tanh(obs @ self.weights) - 0.5

    def trajectory(self, i: int) -> dict[str, np.ndarray]:
        return {"obs": self.obs[i], "action": self.action[i], "reward": self.reward[i], "score_to_go": self.score_to_go[i]}

    @property
    def campaign_efficiency(self) -> np.ndarray:
        """(N,) each trajectory's score over the mean score (no budgets here to normalise by)."""
        return self.score_to_go[:, 0].astype(np.float64) / self.reward_scale

    def sample_transitions(self, batch_size: int, rng: np.random.Generator,
                           trajectories: np.ndarray | None = None) -> dict[str, np.ndarray]:
        pool = np.arange(self.obs.shape[0]) if trajectories is None else np.asarray(trajectories, dtype=np.int64)
        i = pool[rng.integers(pool.size, size=batch_size)]
        t = rng.integers(self.n_ticks, size=batch_size)
        last = t == self.n_ticks - 1
        t_next = np.where(last, t, t + 1)
        return {
            "obs": self.obs[i, t], "action": self.action[i, t], "reward": self.reward[i, t],
            "next_obs": self.obs[i, t_next], "done": last.astype(np.float32), "score_to_go": self.score_to_go[i, t],
        }

    def sample_windows(self, batch_size: int, context_len: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        i = rng.integers(self.obs.shape[0], size=batch_size)
        end = rng.integers(self.n_ticks, size=batch_size)
        ticks = end[:, None] - context_len + 1 + np.arange(context_len)        # (B, K)
        real = ticks >= 0
        safe = np.maximum(ticks, 0)
        rows = i[:, None]
        mask = real.astype(np.float32)
        return {
            "obs": self.obs[rows, safe] * mask[..., None],
            "action": self.action[rows, safe] * mask,
            "rtg": self.score_to_go[rows, safe] * mask,
            "reward": self.reward[rows, safe] * mask,
            "timestep": np.where(real, ticks, 0).astype(np.int64),
            "mask": mask,
        }

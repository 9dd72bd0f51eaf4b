"""A learned critic Q(s, a) that ranks a level planner's bid levels (``diffbid:PATH?select=critic``).

Decision-time search in the published auto-bidders keeps the candidate a value model likes best:
GAS votes among a DT's action candidates with transformer Q critics, QGA keeps the max-Q of
perturbed DT actions, Decision Veteran ranks 50 diffusion candidates by a critic
(``../shared/research/diffbid_anchors.md``). Here the candidates are the bid levels a DiffBid level
planner searches at a tick (its grid, below the tick's support cap, within its trust region), and
the critic is the twin-Q network of an offline-RL checkpoint trained on the same dataset (CQL or
IQL: ``aigb train cql``). A level's value is min(Q1, Q2)(s_t, a): the discounted conversions to
come, in the checkpoint's reward units, of bidding a at this tick and the checkpoint's policy
after. The planner keeps planning every level (its plans still carry an objective's log f and the
plans a report draws); the critic replaces the plans' claimed score in the ranking.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from aigb.algos.base import TwinQ

__all__ = ["LevelCritic"]


class LevelCritic:
    """min(Q1, Q2)(s, a) of a CQL or IQL checkpoint, on raw v1 states and actions log(alpha / C)."""

    def __init__(self, critic: TwinQ, normalizer, bounds, feature_dim: int, source: str = "") -> None:
        if not isinstance(critic, TwinQ):
            raise TypeError(f"critic: expected a TwinQ network, got {type(critic).__name__}")
        self.critic = critic.eval().requires_grad_(False)
        self.normalizer = normalizer
        self.bounds = bounds
        self.feature_dim = int(feature_dim)
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike, expected_feature_version: str | None = None) -> "LevelCritic":
        """The critic of checkpoint ``path`` (read with weights_only); ValueError naming the file if
        it holds no twin-Q critic (BC, DT, DiffBid)."""
        import copy

        from aigb.algos.checkpoint import load_algorithm

        algo = load_algorithm(path, expected_feature_version)
        nets = getattr(algo, "nets", {})
        if "critic" not in nets or not isinstance(nets["critic"], TwinQ):
            raise ValueError(f"critic: {path} holds a {type(algo).__name__} policy without a Q critic; "
                             "give a CQL or IQL checkpoint (aigb train cql)")
        return cls(copy.deepcopy(nets["critic"]).cpu(), algo.normalizer, algo.bounds, algo.feature_dim, str(path))

    def values(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """state (F,) the tick's raw v1 state, actions (L,) levels log(alpha / C) -> (L,) float64 values."""
        state = np.asarray(state, dtype=np.float32)
        if state.shape != (self.feature_dim,):
            raise ValueError(f"state: expected shape ({self.feature_dim},), got {state.shape}")
        a = np.clip(np.asarray(actions, dtype=np.float32).reshape(-1), self.bounds.low, self.bounds.high)
        with torch.inference_mode():
            s = self.normalizer.states(torch.from_numpy(state)[None]).expand(a.size, -1)
            q1, q2 = self.critic(s, torch.from_numpy(np.asarray(self.bounds.to_unit(a), dtype=np.float32)))
            return torch.minimum(q1, q2).double().numpy()

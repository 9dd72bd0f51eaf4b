"""A learned critic Q(s, a) that ranks a level planner's bid levels (``diffbid:PATH?select=critic``).

Decision-time search in the published auto-bidders keeps the candidate a value model likes best:
GAS votes among a DT's action candidates with transformer Q critics, QGA keeps the max-Q of
perturbed DT actions, Decision Veteran ranks 50 diffusion candidates by a critic
(``../shared/research/diffbid_anchors.md``). Here the candidates are the bid levels a DiffBid level
planner searches at a tick (its grid, below the tick's support cap, within its trust region), and
the critic is the twin-Q network of an offline-RL checkpoint trained on the same dataset (CQL or
IQL: ``aigb train cql``). A level's value is min(Q1, Q2)(s_t, a): the discounted conversions to
come, in the checkpoint's reward units, of bidding a at this tick and the checkpoint's policy
after. The critic replaces the plans' claimed score in the ranking; with an objective every level
is still planned (the plans carry its log f), without one only the kept level is (the plan a
report draws).

Two serving options temper the argmax of a learned Q, which seeks out the critic's errors between
levels as much as its knowledge:

* several checkpoints (``critic=A.pt,B.pt``): a level's value is the mean of their min(Q1, Q2), an
  ensemble of independently trained critics whose errors partly cancel;
* ``qsmooth=SD``: a level's value is the critic's expectation over a ~ N(level, SD^2) (7-point
  Gauss-Hermite quadrature, in log(alpha / C)), the value of a Gaussian policy centred on the
  level, which is what the critic's own actor is trained to maximise, and the "implicit dynamics"
  smoothing TFG applies to an objective.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from aigb.algos.networks import TwinQ

__all__ = ["LevelCritic"]


SMOOTHING_POINTS = 7
"""Gauss-Hermite nodes of ``qsmooth``'s expectation (exact for polynomials of degree 13)."""


class LevelCritic:
    """The mean over checkpoints of min(Q1, Q2), on raw v1 states and actions log(alpha / C);
    with ``smooth`` > 0 its expectation over N(action, smooth^2)."""

    def __init__(self, critics, normalizers, bounds, feature_dim: int, source: str = "", smooth: float = 0.0) -> None:
        """critics: the twin-Q networks, normalizers: the state normalizer of each."""
        critics, normalizers = list(critics), list(normalizers)
        if not critics:
            raise ValueError("critic: needs at least one twin-Q network")
        for c in critics:
            if not isinstance(c, TwinQ):
                raise TypeError(f"critic: expected a TwinQ network, got {type(c).__name__}")
        if len(normalizers) != len(critics):
            raise ValueError(f"critic: {len(critics)} networks but {len(normalizers)} state normalizers")
        if not (math.isfinite(smooth) and smooth >= 0):
            raise ValueError(f"qsmooth: must be a finite number >= 0, got {smooth}")
        self.critics = [c.eval().requires_grad_(False) for c in critics]
        self.normalizers = normalizers
        self.bounds = bounds
        self.feature_dim = int(feature_dim)
        self.smooth = float(smooth)
        self.source = source
        nodes, weights = np.polynomial.hermite_e.hermegauss(SMOOTHING_POINTS)
        self._nodes, self._weights = nodes, weights / weights.sum()

    @classmethod
    def load(cls, paths, expected_feature_version: str | None = None, smooth: float = 0.0) -> "LevelCritic":
        """The critic of checkpoint ``paths`` (one path, or several for an ensemble; each read with
        weights_only); ValueError naming the file if one holds no twin-Q critic (BC, DT, DiffBid),
        or reads other features or bids in other action units than the first."""
        import copy

        from aigb.algos.checkpoint import load_algorithm

        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        critics, normalizers, first = [], [], None
        for path in paths:
            algo = load_algorithm(path, expected_feature_version)
            nets = getattr(algo, "nets", {})
            if "critic" not in nets or not isinstance(nets["critic"], TwinQ):
                raise ValueError(f"critic: {path} holds a {type(algo).__name__} policy without a Q critic; "
                                 "give a CQL or IQL checkpoint (aigb train cql)")
            if first is None:
                first = algo
            elif algo.feature_dim != first.feature_dim or algo.bounds != first.bounds:
                raise ValueError(f"critic: {path} reads {algo.feature_dim} features with actions in {algo.bounds}, "
                                 f"{paths[0]} {first.feature_dim} in {first.bounds}; an ensemble needs one state and action space")
            critics.append(copy.deepcopy(nets["critic"]).cpu())
            normalizers.append(algo.normalizer)
        source = ",".join(str(p) for p in paths) + (f" (qsmooth {smooth:g})" if smooth > 0 else "")
        return cls(critics, normalizers, first.bounds, first.feature_dim, source, smooth)

    def values(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """state (F,) the tick's raw v1 state, actions (L,) levels log(alpha / C) -> (L,) float64 values."""
        state = np.asarray(state, dtype=np.float32)
        if state.shape != (self.feature_dim,):
            raise ValueError(f"state: expected shape ({self.feature_dim},), got {state.shape}")
        levels = np.asarray(actions, dtype=np.float64).reshape(-1)
        if self.smooth > 0:
            points = (levels[:, None] + self.smooth * self._nodes[None, :]).reshape(-1)
            return self._point_values(state, points).reshape(levels.size, -1) @ self._weights
        return self._point_values(state, levels)

    def _point_values(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The ensemble's mean min(Q1, Q2) at each action, clipped into the action bounds."""
        a = np.clip(actions.astype(np.float32), self.bounds.low, self.bounds.high)
        a_unit = torch.from_numpy(np.asarray(self.bounds.to_unit(a), dtype=np.float32))
        total = np.zeros(a.size, dtype=np.float64)
        with torch.inference_mode():
            for critic, normalizer in zip(self.critics, self.normalizers):
                s = normalizer.states(torch.from_numpy(state)[None]).expand(a.size, -1)
                q1, q2 = critic(s, a_unit)
                total += torch.minimum(q1, q2).double().numpy()
        return total / len(self.critics)

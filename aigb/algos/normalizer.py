"""Data statistics that travel with a model: state normalisation and the reward scale.

The published baselines served unnormalised states, or kept the statistics in a separate pickle
that drifted from the weights. Here they live in the algorithm's state dict and so in every
checkpoint; the policy normalises internally with exactly the statistics it was trained with.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["Normalizer", "MIN_STD", "DEFAULT_CLIP"]

MIN_STD = 1e-6
"""A feature whose standard deviation is below this is treated as constant (divided by 1)."""
DEFAULT_CLIP = 10.0
"""Normalised states are clipped to +-10 so an out-of-distribution serving state cannot blow up."""


class Normalizer:
    """``(state - mean) / std`` clipped to ``[-clip, clip]``, and the reward scale.

    state_mean, state_std: (D,) float32. reward_scale: a typical campaign score; rewards and
    returns-to-go are divided by it so value targets and DT's return tokens are O(1).
    """

    def __init__(self, state_mean, state_std, reward_scale: float = 1.0, clip: float = DEFAULT_CLIP) -> None:
        mean = np.asarray(state_mean, dtype=np.float64)
        std = np.asarray(state_std, dtype=np.float64)
        if mean.ndim != 1 or mean.shape[0] < 1:
            raise ValueError(f"state_mean: expected shape (D,), got {mean.shape}")
        if std.shape != mean.shape:
            raise ValueError(f"state_std: shape {std.shape} does not match state_mean {mean.shape}")
        if not np.all(np.isfinite(mean)):
            raise ValueError("state_mean: contains NaN or inf")
        if not np.all(np.isfinite(std)) or np.any(std < 0):
            raise ValueError("state_std: must be finite and >= 0")
        reward_scale = float(reward_scale)
        if not (math.isfinite(reward_scale) and reward_scale > 0):
            raise ValueError(f"reward_scale: must be a finite number > 0, got {reward_scale}")
        clip = float(clip)
        if not (clip > 0):
            raise ValueError(f"clip: must be > 0, got {clip}")
        self.state_mean = mean.astype(np.float32)
        # Constant features (e.g. a category one-hot in a one-category dataset) are centred only.
        self.state_std = np.where(std < MIN_STD, 1.0, std).astype(np.float32)
        self.reward_scale = reward_scale
        self.clip = clip
        self._mean_t = torch.from_numpy(self.state_mean)
        self._std_t = torch.from_numpy(self.state_std)

    @property
    def feature_dim(self) -> int:
        return int(self.state_mean.shape[0])

    @classmethod
    def identity(cls, feature_dim: int) -> "Normalizer":
        return cls(np.zeros(feature_dim), np.ones(feature_dim), 1.0)

    @classmethod
    def from_dataset(cls, dataset: Any) -> "Normalizer":
        for name in ("state_mean", "state_std", "reward_scale"):
            if not hasattr(dataset, name):
                raise ValueError(f"dataset: missing attribute {name!r} needed for normalisation")
        norm = cls(dataset.state_mean, dataset.state_std, dataset.reward_scale)
        if norm.feature_dim != int(dataset.feature_dim):
            raise ValueError(f"dataset state_mean has {norm.feature_dim} features but feature_dim is {dataset.feature_dim}")
        return norm

    def states(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise raw float32 states (..., D)."""
        return ((x - self._mean_t) / self._std_t).clamp(-self.clip, self.clip)

    def rewards(self, r: torch.Tensor) -> torch.Tensor:
        """Rewards and returns in units of reward_scale."""
        return r / self.reward_scale

    def state_dict(self) -> dict:
        return {
            "state_mean": torch.from_numpy(self.state_mean.copy()),
            "state_std": torch.from_numpy(self.state_std.copy()),
            "reward_scale": float(self.reward_scale),
            "clip": float(self.clip),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "Normalizer":
        for key in ("state_mean", "state_std", "reward_scale", "clip"):
            if key not in state:
                raise KeyError(f"normalizer state: missing {key!r}")
        return cls(np.asarray(state["state_mean"]), np.asarray(state["state_std"]), state["reward_scale"], state["clip"])

"""Any trained policy as a bidding strategy: ``aigb evaluate --strategy iql:runs/iql/best.pt``.

The policy sees exactly what it was trained on: the v1 features that ``aigb.features`` builds
(online here, offline in the dataset), its own past actions and the past ticks' conversions. The
checkpoint carries the normaliser and the feature version; a checkpoint of another feature version
is refused when it is loaded.
"""

from __future__ import annotations

import numpy as np

from aigb.features import FEATURE_VERSION
from aigb.sim.env import Observation
from aigb.strategies.base import AlphaStrategy
from aigb.types import ACTION_HIGH, ACTION_LOW, Campaign

__all__ = ["LearnedStrategy", "load_strategy"]


class LearnedStrategy(AlphaStrategy):
    """Bids ``alpha = exp(a) * target_cpa`` with ``a = policy.act(states, actions, rewards)``."""

    def __init__(self, policy, name: str):
        self.policy = policy
        self.name = name
        self._states: list[np.ndarray] = []
        self._actions: list[float] = []
        self._campaign: Campaign | None = None

    def reset(self, campaign: Campaign, n_ticks: int, seed: int) -> None:
        # Policies are deterministic; the seed is accepted for the contract and not needed.
        self._campaign = campaign
        self._states, self._actions = [], []

    def alpha(self, obs: Observation) -> float:
        self._states.append(np.asarray(obs.features, dtype=np.float32))
        rewards = np.asarray(obs.history["conversions"], dtype=np.float32)  # (t,) past ticks
        a = float(self.policy.act(np.stack(self._states), np.asarray(self._actions, dtype=np.float32), rewards))
        a = float(np.clip(a, ACTION_LOW, ACTION_HIGH))
        self._actions.append(a)
        return float(np.exp(a) * obs.campaign.target_cpa)


def load_strategy(algo: str, path: str) -> AlphaStrategy:
    """Load a checkpoint written by ``aigb train`` (``torch.load(weights_only=True)`` inside)."""
    from aigb.algos.checkpoint import load_policy, read_checkpoint

    if algo == "diffbid":   # the planner keeps its plans and seeds its noise per campaign
        from aigb.strategies.diffbid import load_diffbid_strategy

        return load_diffbid_strategy(path)
    found = read_checkpoint(path).get("algo")
    if found is not None and found != algo:
        raise ValueError(f"{path}: checkpoint holds a {found!r} policy, not {algo!r}")
    return LearnedStrategy(load_policy(path, expected_feature_version=FEATURE_VERSION), f"{algo}:{path}")

"""Any trained policy as a bidding strategy: ``aigb evaluate --strategy iql:runs/iql/best.pt``.

The policy sees exactly what it was trained on: the features of its feature set that
``aigb.features`` builds (online here, offline in the dataset: v1, or AuctionNet's 16 features for a
policy trained on imported rlData, rebuilt from the advertiser's own tick history), its own past
actions and the past ticks' conversions. The checkpoint carries the normaliser and the feature set;
a checkpoint of an unknown feature set, or of another one than the caller expects, is refused when
it is loaded, naming both.

A Decision Transformer's serving target takes options after the path:
``dt:runs/dt/best.pt?return=0.75&scale=data`` (``aigb.strategies.registry.DT_OPTIONS``;
``aigb.algos.dt.DTPolicy``).
"""

from __future__ import annotations

import numpy as np

from aigb.features import FEATURE_VERSION, check_feature_set, features_for
from aigb.sim.env import Observation
from aigb.strategies.base import AlphaStrategy
from aigb.types import ACTION_HIGH, ACTION_LOW, Campaign

__all__ = ["LearnedStrategy", "load_strategy"]


class LearnedStrategy(AlphaStrategy):
    """Bids ``alpha = exp(a) * target_cpa`` with ``a = policy.act(states, actions, rewards)``."""

    def __init__(self, policy, name: str, feature_set: str = FEATURE_VERSION, trained_for: tuple[str, str] | None = None):
        self.policy = policy
        self.name = name
        self.feature_set = check_feature_set(feature_set, f"{name}: feature_set")
        self.trained_for = trained_for
        self._states: list[np.ndarray] = []
        self._actions: list[float] = []
        self._campaign: Campaign | None = None

    def reset(self, campaign: Campaign, n_ticks: int, seed: int) -> None:
        # Policies are deterministic; the seed is accepted for the contract and not needed.
        self._campaign = campaign
        self._states, self._actions = [], []

    def alpha(self, obs: Observation) -> float:
        if self.feature_set == FEATURE_VERSION:
            state = obs.features
        else:
            c = obs.campaign
            n_pv = obs.p_value.size
            state = features_for(self.feature_set, obs.history, obs.n_ticks, n_pv,
                                 float(obs.p_value.mean(dtype=np.float64)) if n_pv else 0.0, c.budget, c.target_cpa, c.category)
        self._states.append(np.asarray(state, dtype=np.float32))
        rewards = np.asarray(obs.history["conversions"], dtype=np.float32)  # (t,) past ticks
        a = float(self.policy.act(np.stack(self._states), np.asarray(self._actions, dtype=np.float32), rewards))
        a = float(np.clip(a, ACTION_LOW, ACTION_HIGH))
        self._actions.append(a)
        return float(np.exp(a) * obs.campaign.target_cpa)


def load_strategy(algo: str, path: str, feature_set: str | None = None, market_version: str | None = None) -> AlphaStrategy:
    """Load a checkpoint written by ``aigb train`` (``torch.load(weights_only=True)`` inside);
    ``feature_set`` (optional) is the one the caller expects, a checkpoint of another is refused, and
    so is one trained for another market version than ``market_version`` (the market it plays).
    ``path`` may carry a DT's serving options (``split_spec_options``)."""
    from aigb.algos.checkpoint import checkpoint_task, load_algorithm, read_checkpoint
    from aigb.strategies.registry import split_spec_options

    if algo == "diffbid":   # the planner keeps its plans and seeds its noise per campaign
        from aigb.strategies.diffbid import load_diffbid_strategy

        return load_diffbid_strategy(path, market_version=market_version)
    name = f"{algo}:{path}"
    path, options = split_spec_options(algo, path)
    payload = read_checkpoint(path)
    found = payload.get("algo")
    if found is not None and found != algo:
        raise ValueError(f"{path}: checkpoint holds a {found!r} policy, not {algo!r}")
    stored = check_feature_set(str(payload.get("feature_version")), f"checkpoint {path}", feature_set)
    task = checkpoint_task(payload)
    policy = load_algorithm(path, expected_feature_version=stored, market_version=market_version).policy(**options)
    return LearnedStrategy(policy, name, stored, None if task is None else (task, f"checkpoint {path}"))

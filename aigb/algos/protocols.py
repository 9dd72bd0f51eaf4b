"""What the training loop samples from (``TrajectoryDataset``), what serving calls
(``Policy``) and what the training loop drives (``Algorithm``)."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np

__all__ = ["TrajectoryDataset", "Policy", "Algorithm"]


@runtime_checkable
class TrajectoryDataset(Protocol):
    """Per-tick trajectories of campaign-days, sampled as numpy batches (see aigb.data)."""

    feature_dim: int
    feature_version: str
    state_mean: np.ndarray      # (D,)
    state_std: np.ndarray       # (D,)
    reward_scale: float         # a typical campaign score; rewards and returns are divided by it
    # Optional: return_quantiles, a mapping {quantile level: episode score_to_go_0} (DT's target);
    # campaign_efficiency, (N,) per-trajectory scores comparable across campaigns (filtered BC).

    def sample_transitions(self, batch_size: int, rng: np.random.Generator,
                           trajectories: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """obs (B, D), action (B,), reward (B,), next_obs (B, D), done (B,), score_to_go (B,);
        from the trajectories of index ``trajectories`` only, when given."""

    def sample_windows(self, batch_size: int, context_len: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """obs (B, K, D), action/rtg/reward/mask (B, K), timestep (B, K) int64; left-padded, mask 0."""


@runtime_checkable
class Policy(Protocol):
    """A trained bidding policy: one deterministic action per tick from the campaign's history."""

    def act(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> float:
        """states (t+1, D) raw states of ticks 0..t; actions (t,), rewards (t,) of ticks 0..t-1."""


@runtime_checkable
class Algorithm(Protocol):
    """What the training loop drives. See ``TorchAlgorithm`` for the shared implementation."""

    name: ClassVar[str]
    config: Any
    feature_dim: int
    n_updates: int

    def prepare(self, dataset: TrajectoryDataset, seed: int) -> None: ...
    def sample_batch(self, dataset: TrajectoryDataset, batch_size: int, rng: np.random.Generator) -> dict: ...
    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]: ...
    def policy(self) -> Policy: ...
    def state_dict(self, *, with_optimizers: bool = True) -> dict: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

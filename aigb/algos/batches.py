"""Batches and serving histories: validated numpy in, tensors out; a bad field raises one line
naming it."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["TRANSITION_FIELDS", "WINDOW_FIELDS", "transition_tensors", "window_tensors", "validate_history"]

# field -> number of dims; obs and next_obs end in the feature axis D.
TRANSITION_FIELDS = {"obs": 2, "action": 1, "reward": 1, "next_obs": 2, "done": 1, "score_to_go": 1}
WINDOW_FIELDS = {"obs": 3, "action": 2, "rtg": 2, "reward": 2, "timestep": 2, "mask": 2}


def _checked(batch: Mapping[str, Any], spec: Mapping[str, int], feature_dim: int, what: str) -> dict[str, np.ndarray]:
    if not isinstance(batch, Mapping):
        raise TypeError(f"{what} batch must be a mapping of arrays, got {type(batch).__name__}")
    missing = [k for k in spec if k not in batch]
    if missing:
        raise ValueError(f"{what} batch: missing field(s) {missing}; expected {sorted(spec)}")
    out = {}
    obs_shape = np.shape(batch["obs"])
    lead = obs_shape[:-1]                       # (B,) for transitions, (B, K) for windows
    for key, ndim in spec.items():
        arr = np.asarray(batch[key])
        if arr.ndim != ndim:
            raise ValueError(f"{what} batch field {key!r}: expected {ndim} dims, got shape {arr.shape}")
        if arr.shape[: len(lead)] != lead:
            raise ValueError(f"{what} batch field {key!r}: leading shape {arr.shape} does not match obs {lead}")
        if key in ("obs", "next_obs") and arr.shape[-1] != feature_dim:
            raise ValueError(f"{what} batch field {key!r}: feature dim {arr.shape[-1]} != algorithm feature_dim {feature_dim}")
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
            raise ValueError(f"{what} batch field {key!r}: numeric array expected, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} batch field {key!r}: contains NaN or inf")
        out[key] = arr
    if int(np.prod(lead)) == 0:
        raise ValueError(f"{what} batch is empty (obs shape {np.asarray(batch['obs']).shape})")
    return out


def transition_tensors(batch: Mapping[str, Any], feature_dim: int) -> dict[str, torch.Tensor]:
    """Validate a transition batch and convert it to float32 tensors."""
    arrays = _checked(batch, TRANSITION_FIELDS, feature_dim, "transition")
    return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in arrays.items()}


def window_tensors(batch: Mapping[str, Any], feature_dim: int, context_len: int, max_ticks: int) -> dict[str, torch.Tensor]:
    """Validate a window batch (B, K) and convert it: timestep int64, the rest float32."""
    arrays = _checked(batch, WINDOW_FIELDS, feature_dim, "window")
    if arrays["obs"].shape[1] != context_len:
        raise ValueError(f"window batch field 'obs': context length {arrays['obs'].shape[1]} != config context_len {context_len}")
    mask = arrays["mask"]
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("window batch field 'mask': values must be 0 or 1")
    ts = arrays["timestep"]
    if np.any(ts < 0) or np.any(ts >= max_ticks):
        raise ValueError(f"window batch field 'timestep': values must lie in [0, {max_ticks - 1}], got [{ts.min()}, {ts.max()}]")
    out = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in arrays.items() if k != "timestep"}
    out["timestep"] = torch.as_tensor(ts, dtype=torch.int64)
    return out


def validate_history(states, actions, rewards, feature_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check a serving history: states (t+1, D), actions (t,), rewards (t,); returns float32 copies."""
    states = np.asarray(states, dtype=np.float32)
    actions = np.asarray(actions, dtype=np.float32).reshape(-1)
    rewards = np.asarray(rewards, dtype=np.float32).reshape(-1)
    if states.ndim != 2 or states.shape[0] < 1:
        raise ValueError(f"states: expected shape (t+1, {feature_dim}) with t >= 0, got {states.shape}")
    if states.shape[1] != feature_dim:
        raise ValueError(f"states: feature dim {states.shape[1]} != policy feature_dim {feature_dim}")
    t = states.shape[0] - 1
    if actions.shape[0] != t:
        raise ValueError(f"actions: expected {t} past actions for {t + 1} states, got {actions.shape[0]}")
    if rewards.shape[0] != t:
        raise ValueError(f"rewards: expected {t} past rewards for {t + 1} states, got {rewards.shape[0]}")
    for name, arr in (("states", states), ("actions", actions), ("rewards", rewards)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or inf")
    return states, actions, rewards

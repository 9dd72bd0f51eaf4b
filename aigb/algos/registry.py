"""Registered learning algorithms, their construction from overrides, and the contract checker.

    ALGORITHMS["iql"]                                    -> the IQL class
    make_algorithm("iql", feature_dim=30, overrides={"expectile": 0.8})
    check_algorithm("iql")                               -> raises AlgorithmCheckError on a broken contract

``check_algorithm`` runs a tiny configuration on ``SyntheticTrajectories``, an in-memory dataset
with a known good policy that also serves the tests and the step-speed benchmark.
"""

from __future__ import annotations

import json
import math
import tempfile
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from aigb.algos.base import A_HIGH, A_LOW, Algorithm, Policy, TorchAlgorithm
from aigb.algos.bc import BC
from aigb.algos.cql import CQL
from aigb.algos.diffbid import DiffBid
from aigb.algos.dt import DecisionTransformer
from aigb.algos.iql import IQL
from aigb.algos.oil import OIL
from aigb.seeding import rng as named_rng
from aigb.types import ConfigError

__all__ = [
    "ALGORITHMS", "CHECK_OVERRIDES", "AlgorithmCheckError", "SyntheticTrajectories",
    "algorithm_class", "config_from_dict", "make_config", "make_algorithm", "check_algorithm",
]

ALGORITHMS: dict[str, type[TorchAlgorithm]] = {"bc": BC, "iql": IQL, "cql": CQL, "dt": DecisionTransformer, "diffbid": DiffBid,
                                             "oil": OIL}

CHECK_OVERRIDES: dict[str, dict[str, Any]] = {
    "bc": {"hidden_dims": (32, 32), "batch_size": 32},
    "iql": {"hidden_dims": (32, 32), "batch_size": 32},
    "cql": {"hidden_dims": (32, 32), "batch_size": 32, "n_action_samples": 4},
    "dt": {"context_len": 4, "embed_dim": 32, "n_layers": 1, "n_heads": 2, "max_ticks": 16, "batch_size": 16, "warmup_steps": 10},
    "diffbid": {"plan": "raw", "n_ticks": 12, "d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16, "diffusion_steps": 20,
                "sampling_steps": 4, "idm_hidden_dims": (32, 32), "batch_size": 16, "warmup_steps": 10},
    "oil": {"hidden_dims": (32, 32), "batch_size": 32},
}
"""Tiny configurations the checker and the tests use (seconds on one CPU core)."""


class AlgorithmCheckError(AssertionError):
    """A registered algorithm breaks its contract; the message says which part."""


def algorithm_class(name: str) -> type[TorchAlgorithm]:
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {name!r}; registered: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name]


def config_from_dict(config_class: type, values: Mapping[str, Any]):
    """Build a config from plain values; JSON strings ('3e-4', '[64, 64]', 'null') are parsed
    (except for text fields), lists become tuples, and an unknown key raises ``ConfigError``
    listing the known ones."""
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown option for {config_class.__name__}; known options: {', '.join(sorted(known))}")
    text_fields = {name for name, hint in typing.get_type_hints(config_class).items() if hint is str}
    parsed = {}
    for key, value in values.items():
        if isinstance(value, str) and key not in text_fields:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                try:
                    value = float(value)  # numbers JSON does not spell: '.25', '1.', '+3'
                except ValueError:
                    raise ConfigError(f"{key}: cannot parse {value!r} as a number, list, boolean or null") from None
        if isinstance(value, list):
            value = tuple(value)
        parsed[key] = value
    try:
        return config_class(**parsed)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a value of the wrong type: find the key it came from
        for key, value in parsed.items():
            try:
                config_class(**{key: value})
            except (TypeError, ValueError):
                raise ConfigError(f"{key}: invalid value {value!r} ({err})") from None
        raise ConfigError(f"{', '.join(parsed)}: invalid together ({err})") from None


def make_config(name: str, overrides: Mapping[str, Any] | None = None):
    """The default config of ``name`` with ``overrides`` applied."""
    return config_from_dict(algorithm_class(name).config_class, dict(overrides or {}))


def make_algorithm(name: str, feature_dim: int, overrides: Mapping[str, Any] | None = None, *, seed: int = 0) -> TorchAlgorithm:
    """A fresh algorithm ``name`` for ``feature_dim``-dimensional states, initialised from ``seed``."""
    cls = algorithm_class(name)
    return cls(make_config(name, overrides), feature_dim, seed=seed)


# --------------------------------------------------------------------------------------------
# Synthetic data with a known good policy
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# The contract checker
# --------------------------------------------------------------------------------------------

def _fail(name: str, what: str) -> None:
    raise AlgorithmCheckError(f"{name}: {what}")


def _actions(policy: Policy, data: SyntheticTrajectories, ticks: tuple[int, ...]) -> list[float]:
    traj = data.trajectory(0)
    return [policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t]) for t in ticks]


def check_algorithm(name: str, *, seed: int = 0, overrides: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Check the ``Algorithm`` contract of ``name`` on tiny synthetic data; returns the last losses.

    Checks: protocol conformance; ``update`` returns finite float losses; the policy meets
    ``Policy``, returns floats within [A_LOW, A_HIGH], is deterministic and is a snapshot;
    a checkpoint round trip and a state-dict round trip reproduce actions exactly, and the
    restored algorithm continues training identically; a malformed batch raises ``ValueError``.
    """
    from aigb.algos.checkpoint import load_policy, save_checkpoint   # checkpoint imports this module

    data = SyntheticTrajectories(n_trajectories=32, n_ticks=12, feature_dim=5, seed=seed)
    cfg_overrides = {**CHECK_OVERRIDES.get(name, {}), **dict(overrides or {})}
    algo = make_algorithm(name, data.feature_dim, cfg_overrides, seed=seed)
    if not isinstance(algo, Algorithm):
        _fail(name, "does not implement the Algorithm protocol")
    algo.prepare(data, seed)
    rng = named_rng(seed, "check-algorithm")
    batches = [algo.sample_batch(data, algo.config.batch_size, rng) for _ in range(4)]
    losses: dict[str, float] = {}
    for batch in batches[:3]:
        losses = algo.update(batch)
        if not isinstance(losses, dict) or not losses:
            _fail(name, f"update must return a non-empty dict of losses, got {losses!r}")
        for key, value in losses.items():
            if not isinstance(value, float) or not math.isfinite(value):
                _fail(name, f"loss {key!r} is not a finite float: {value!r}")
    if algo.n_updates != 3:
        _fail(name, f"n_updates is {algo.n_updates} after 3 updates")

    ticks = (0, 1, 5, data.n_ticks - 1)
    policy = algo.policy()
    if not isinstance(policy, Policy):
        _fail(name, "policy() does not implement the Policy protocol")
    first = _actions(policy, data, ticks)
    if first != _actions(policy, data, ticks):
        _fail(name, f"policy is not deterministic: {first} vs a second call")
    for a in first:
        if not isinstance(a, float) or not (A_LOW <= a <= A_HIGH):
            _fail(name, f"action {a!r} is not a float within [{A_LOW}, {A_HIGH}]")

    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "check.pt", algo, dataset_fingerprint=data.fingerprint)
        restored = load_policy(path, expected_feature_version=data.feature_version)
        if _actions(restored, data, ticks) != first:
            _fail(name, "checkpoint round trip changes the policy's actions")

    twin = make_algorithm(name, data.feature_dim, cfg_overrides, seed=seed + 1)
    twin.load_state_dict(algo.state_dict())
    if _actions(twin.policy(), data, ticks) != first:
        _fail(name, "state-dict round trip changes the policy's actions")
    loss_a, loss_b = algo.update(batches[3]), twin.update(batches[3])
    if loss_a != loss_b:
        _fail(name, f"a restored algorithm trains differently: {loss_a} vs {loss_b}")
    for (key, p), q in zip(algo.nets.state_dict().items(), twin.nets.state_dict().values()):
        if not torch.equal(p, q):
            _fail(name, f"weights {key!r} diverge after one update from a restored state")
    if _actions(policy, data, ticks) != first:
        _fail(name, "policy() is not a snapshot: further training changed it")

    broken = dict(batches[0])
    broken.pop("obs")
    try:
        algo.update(broken)
    except ValueError as exc:
        if "obs" not in str(exc):
            _fail(name, f"a batch without 'obs' raised an error that does not name it: {exc}")
    else:
        _fail(name, "a batch without 'obs' was accepted")
    return loss_a

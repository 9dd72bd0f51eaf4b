"""The contracts every learned bidding algorithm meets, and the mechanics they share.

* Action: one scalar per tick, the bid multiplier relative to the target CPA,
  ``a = log(alpha / target_cpa)``, bounded to ``[A_LOW, A_HIGH]``. Networks see it rescaled to
  ``[-1, 1]`` ("unit" actions) and produce it through ``tanh``, so a policy can never leave the bounds.
* ``TrajectoryDataset``: what the training loop samples from (numpy in, numpy out).
* ``Policy``: what serving calls once per tick with the campaign's history.
* ``Algorithm``: what the training loop drives; ``TorchAlgorithm`` implements the plumbing
  (seeded initialisation, normaliser, state dicts) so that each algorithm file holds only its
  config, networks and losses.

Initial weights never come from torch's global generator: modules are built on the ``meta``
device and initialised from a ``torch.Generator`` seeded by ``aigb.seeding.torch_seed``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from aigb.algos.normalizer import Normalizer
from aigb.seeding import torch_seed
from aigb.types import ACTION_HIGH, ACTION_LOW, ConfigError

__all__ = [
    "A_LOW", "A_HIGH", "ACTION_PARAMETERISATION", "ActionBounds", "ACTION_BOUNDS",
    "TrajectoryDataset", "Policy", "Algorithm", "TorchAlgorithm",
    "TRANSITION_FIELDS", "WINDOW_FIELDS", "transition_tensors", "window_tensors", "validate_history",
    "require", "require_positive", "check_common_config", "init_default_", "init_target_", "polyak_update_", "mlp", "TwinQ",
    "StatePolicy",
]

A_LOW = ACTION_LOW
"""Lowest action: alpha = exp(-3) * target_cpa, about 5 % of the target CPA."""
A_HIGH = ACTION_HIGH
"""Highest action: alpha = exp(2) * target_cpa, about 7.4 times the target CPA."""
ACTION_PARAMETERISATION = "log(alpha / target_cpa)"
"""How an action maps to the bid: ``bid = exp(a) * target_cpa * p_value``."""


def require(ok: bool, field_name: str, problem: str) -> None:
    """Raise ``ConfigError('field: problem')`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{field_name}: {problem}")


@dataclass(frozen=True)
class ActionBounds:
    """The action interval and its affine map to the unit interval the networks use."""

    low: float = A_LOW
    """Lowest action (log of the bid multiplier relative to target CPA)."""
    high: float = A_HIGH
    """Highest action."""

    def __post_init__(self) -> None:
        require(math.isfinite(self.low) and math.isfinite(self.high), "action_bounds", f"must be finite, got [{self.low}, {self.high}]")
        require(self.low < self.high, "action_bounds", f"low must be < high, got [{self.low}, {self.high}]")

    @property
    def mid(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def half(self) -> float:
        return 0.5 * (self.high - self.low)

    def to_unit(self, action):
        """Action -> [-1, 1] (the bounds map to -1 and 1); works on numpy arrays and tensors."""
        return (action - self.mid) / self.half

    def from_unit(self, unit):
        """[-1, 1] -> action."""
        return self.mid + self.half * unit

    def clip(self, action):
        """Clip to the bounds (numpy arrays, tensors or floats)."""
        if isinstance(action, torch.Tensor):
            return action.clamp(self.low, self.high)
        return np.clip(action, self.low, self.high)

    def to_dict(self) -> dict:
        return {"low": float(self.low), "high": float(self.high), "parameterisation": ACTION_PARAMETERISATION}


ACTION_BOUNDS = ActionBounds()


# --------------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Batches and histories: validated numpy -> tensors
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Seeded initialisation
# --------------------------------------------------------------------------------------------

def init_default_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Initialise every parameter from ``generator`` with PyTorch's default schemes.

    Linear: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)); LayerNorm: ones and zeros;
    Embedding: N(0, 1). A module type outside this list must define
    ``init_parameters_(generator)``; anything else raises, so no parameter is ever left as the
    uninitialised memory of ``to_empty``.
    """
    for sub in module.modules():
        own = list(sub.parameters(recurse=False))
        if hasattr(sub, "init_parameters_"):
            sub.init_parameters_(generator)
        elif isinstance(sub, nn.Linear):
            bound = 1.0 / math.sqrt(sub.in_features)
            nn.init.uniform_(sub.weight, -bound, bound, generator=generator)
            if sub.bias is not None:
                nn.init.uniform_(sub.bias, -bound, bound, generator=generator)
        elif isinstance(sub, nn.LayerNorm):
            if sub.weight is not None:
                nn.init.ones_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, 0.0, 1.0, generator=generator)
        elif own:
            raise TypeError(f"init_default_: no initialisation rule for {type(sub).__name__}; define init_parameters_(generator)")
    return module


def init_target_(target: nn.Module, source: nn.Module) -> None:
    """Start a target network as a frozen copy of ``source`` (updated only by ``polyak_update_``)."""
    target.load_state_dict(source.state_dict())
    target.requires_grad_(False)


def polyak_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * source (Lillicrap et al. 2016)."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)


# --------------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------------

class TorchAlgorithm:
    """Seeded construction, data statistics and (de)serialisation shared by BC, IQL, CQL and DT.

    A subclass sets ``name``, ``config_class``, ``batch_kind`` and implements ``_build``
    (networks and optimisers), ``update`` and ``policy``. Everything learnable lives in
    ``self.nets`` (an ``nn.ModuleDict``, target networks included) so one state dict holds it.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    batch_kind: ClassVar[str] = "transitions"   # or "windows"

    def __init__(self, config, feature_dim: int, *, seed: int = 0) -> None:
        """config: the algorithm's config (None takes the defaults); feature_dim: D."""
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{self.name}: config must be a {self.config_class.__name__}, got {type(config).__name__}")
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, (int, np.integer)) or feature_dim < 1:
            raise ConfigError(f"feature_dim: must be an integer >= 1, got {feature_dim!r}")
        self.config = config
        self.feature_dim = int(feature_dim)
        self.bounds = ACTION_BOUNDS
        self.normalizer = Normalizer.identity(self.feature_dim)
        self.feature_version: str | None = None
        self.reset(seed)

    # --- construction ------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Re-draw the initial weights, fresh optimisers and training noise, all from ``seed``."""
        init_gen = torch.Generator().manual_seed(torch_seed(seed, f"algo/{self.name}/init"))
        self.train_generator = torch.Generator().manual_seed(torch_seed(seed, f"algo/{self.name}/train"))
        with torch.device("meta"):
            nets = self._networks()
        self.nets = nets.to_empty(device="cpu")
        self._init_networks(init_gen)
        self.optimizers: dict[str, torch.optim.Optimizer] = self._optimizers()
        self.n_updates = 0

    def _networks(self) -> nn.ModuleDict:
        raise NotImplementedError

    def _init_networks(self, generator: torch.Generator) -> None:
        init_default_(self.nets, generator)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def prepare(self, dataset: TrajectoryDataset, seed: int) -> None:
        """Start a training run: weights from ``seed``, statistics and feature version from the data."""
        fd = int(getattr(dataset, "feature_dim", -1))
        if fd != self.feature_dim:
            raise ValueError(f"dataset feature_dim {fd} != algorithm feature_dim {self.feature_dim}")
        version = getattr(dataset, "feature_version", None)
        if not isinstance(version, str) or not version:
            raise ValueError(f"dataset feature_version must be a non-empty string, got {version!r}")
        self.reset(seed)
        self.normalizer = Normalizer.from_dataset(dataset)
        self.feature_version = version
        self._adapt(dataset, seed)

    def _adapt(self, dataset: TrajectoryDataset, seed: int) -> None:
        """Hook for data-derived settings (DT's target return)."""

    def sample_batch(self, dataset: TrajectoryDataset, batch_size: int, rng: np.random.Generator) -> dict:
        if self.batch_kind == "windows":
            return dataset.sample_windows(batch_size, self.config.context_len, rng)
        return dataset.sample_transitions(batch_size, rng)

    # --- serialisation -----------------------------------------------------------------------
    def config_dict(self) -> dict:
        return asdict(self.config)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        pass

    def state_dict(self, *, with_optimizers: bool = True) -> dict:
        """Tensors and primitive containers only, so ``torch.load(weights_only=True)`` reads it."""
        state = {
            "nets": {k: v.detach().clone() for k, v in self.nets.state_dict().items()},
            "normalizer": self.normalizer.state_dict(),
            "feature_version": self.feature_version,
            "n_updates": int(self.n_updates),
            "extra": self._extra_state(),
        }
        if with_optimizers:
            state["optimizers"] = {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()}
            state["train_generator"] = self.train_generator.get_state()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore networks, statistics and, when present, optimisers and the noise generator."""
        for key in ("nets", "normalizer", "n_updates", "extra"):
            if key not in state:
                raise KeyError(f"{self.name} state: missing {key!r}")
        self.nets.load_state_dict(state["nets"], strict=True)
        self.normalizer = Normalizer.from_state_dict(state["normalizer"])
        if self.normalizer.feature_dim != self.feature_dim:
            raise ValueError(f"{self.name} state: normalizer feature dim {self.normalizer.feature_dim} != {self.feature_dim}")
        self.feature_version = state.get("feature_version")
        self.n_updates = int(state["n_updates"])
        self._load_extra_state(state["extra"])
        if "optimizers" in state:
            if set(state["optimizers"]) != set(self.optimizers):
                raise KeyError(f"{self.name} state: optimizers {sorted(state['optimizers'])} != {sorted(self.optimizers)}")
            for k, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][k])
        if "train_generator" in state:
            self.train_generator.set_state(state["train_generator"])


def check_common_config(cfg) -> None:
    """Validate the fields every algorithm config shares (steps, batch_size, hidden sizes)."""
    for name in ("steps", "batch_size"):
        value = getattr(cfg, name)
        require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1, name, f"must be an integer >= 1, got {value!r}")
    if hasattr(cfg, "hidden_dims"):
        dims = tuple(cfg.hidden_dims)
        require(len(dims) >= 1 and all(isinstance(d, (int, np.integer)) and d >= 1 for d in dims), "hidden_dims", f"must be a non-empty tuple of integers >= 1, got {cfg.hidden_dims!r}")
        object.__setattr__(cfg, "hidden_dims", tuple(int(d) for d in dims))


def require_positive(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, name, f"must be a finite number > 0, got {value!r}")


# --------------------------------------------------------------------------------------------
# Building blocks shared by the state-based algorithms
# --------------------------------------------------------------------------------------------

def mlp(in_dim: int, hidden_dims: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """Linear-ReLU stack ending in a Linear layer of ``out_dim`` outputs."""
    layers: list[nn.Module] = []
    prev = in_dim
    for width in hidden_dims:
        layers += [nn.Linear(prev, width), nn.ReLU()]
        prev = width
    layers.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*layers)


class TwinQ(nn.Module):
    """Two independent Q(s, a) heads; the minimum curbs over-estimation (Fujimoto et al. 2018)."""

    def __init__(self, feature_dim: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.q1 = mlp(feature_dim + 1, hidden_dims, 1)
        self.q2 = mlp(feature_dim + 1, hidden_dims, 1)

    def forward(self, s: torch.Tensor, a_unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s (..., D) normalised states, a_unit (...) unit actions -> two (...) Q values."""
        x = torch.cat([s, a_unit.unsqueeze(-1)], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class StatePolicy:
    """A Markov policy (BC, IQL, CQL): the action depends on the current tick's state only.

    Holds a frozen copy of the actor, so training that continues afterwards does not change it.
    The actor must provide ``deterministic(s) -> (B,)`` unit actions in [-1, 1].
    """

    def __init__(self, actor: nn.Module, normalizer: Normalizer, bounds: ActionBounds, feature_dim: int) -> None:
        self.actor = copy.deepcopy(actor).eval().requires_grad_(False)
        self.normalizer = normalizer
        self.bounds = bounds
        self.feature_dim = feature_dim

    def act(self, states, actions, rewards) -> float:
        states, _, _ = validate_history(states, actions, rewards, self.feature_dim)
        with torch.inference_mode():
            s = self.normalizer.states(torch.from_numpy(states[-1:]))   # (1, D)
            unit = self.actor.deterministic(s)                           # (1,)
        return float(self.bounds.clip(self.bounds.from_unit(float(unit[0]))))

"""The shared plumbing of the learned bidding algorithms: ``TorchAlgorithm`` implements seeded
initialisation, the normaliser and state dicts, so that each algorithm file holds only its config,
networks and losses.

What used to live here too is split by what it is for, and stays importable from here:
``bounds`` (the action and its bounds), ``protocols`` (TrajectoryDataset, Policy, Algorithm),
``batches`` (validated batches and histories), ``init`` (seeded initialisation), ``networks``
(mlp, TwinQ), ``policy`` (StatePolicy) and ``validation`` (config checks).
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from aigb.algos.batches import TRANSITION_FIELDS, WINDOW_FIELDS, transition_tensors, validate_history, window_tensors
from aigb.algos.bounds import A_HIGH, A_LOW, ACTION_BOUNDS, ACTION_PARAMETERISATION, ActionBounds
from aigb.algos.init import init_default_, init_target_, polyak_update_
from aigb.algos.networks import TwinQ, mlp
from aigb.algos.normalizer import Normalizer
from aigb.algos.policy import StatePolicy
from aigb.algos.protocols import Algorithm, Policy, TrajectoryDataset
from aigb.algos.validation import check_common_config, require, require_positive
from aigb.score import check_task
from aigb.seeding import torch_seed
from aigb.types import ConfigError

__all__ = [
    "A_LOW", "A_HIGH", "ACTION_PARAMETERISATION", "ActionBounds", "ACTION_BOUNDS",
    "TrajectoryDataset", "Policy", "Algorithm", "TorchAlgorithm",
    "TRANSITION_FIELDS", "WINDOW_FIELDS", "transition_tensors", "window_tensors", "validate_history",
    "require", "require_positive", "check_common_config", "init_default_", "init_target_", "polyak_update_", "mlp", "TwinQ",
    "StatePolicy",
]


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
        self.market_version: str | None = None
        """The market version the policy is trained for (the dataset's; ``aigb train`` sets imported data's)."""
        self.task: str | None = None
        """The task the policy is trained for (``aigb.score.TASKS``, from the dataset); None: unrecorded."""
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
        # Data from no market of ours (OIL's labelled states) keeps the version its trainer set.
        self.market_version = getattr(dataset, "market_version", None) or self.market_version
        task = getattr(dataset, "task", None)   # trajectory datasets know theirs; OIL's labelled states do not
        self.task = None if task is None else check_task(task, "dataset task")
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
            "task": self.task,
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
        self.task = state.get("task")   # None in checkpoints written before tasks were recorded
        self.n_updates = int(state["n_updates"])
        self._load_extra_state(state["extra"])
        if "optimizers" in state:
            if set(state["optimizers"]) != set(self.optimizers):
                raise KeyError(f"{self.name} state: optimizers {sorted(state['optimizers'])} != {sorted(self.optimizers)}")
            for k, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][k])
        if "train_generator" in state:
            self.train_generator.set_state(state["train_generator"])

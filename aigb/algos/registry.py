"""Registered learning algorithms and their construction from overrides.

    ALGORITHMS["iql"]                                    -> the IQL class
    make_algorithm("iql", feature_dim=30, overrides={"expectile": 0.8})

The contract checker (``check_algorithm``, ``AlgorithmCheckError``) lives in ``aigb.algos.check``
and its data in ``aigb.algos.synthetic`` (``SyntheticTrajectories``, re-exported here): checkpoints
import this module, and this module imports no checkpoint code.
"""

from __future__ import annotations

from typing import Any, Mapping

from aigb.algos.base import TorchAlgorithm
from aigb.algos.bc import BC
from aigb.algos.cql import CQL
from aigb.algos.diffbid.model import DiffBid
from aigb.algos.dt import DecisionTransformer
from aigb.algos.iql import IQL
from aigb.algos.oil import OIL
from aigb.algos.synthetic import SyntheticTrajectories
from aigb.configs import config_from_dict

__all__ = [
    "ALGORITHMS", "CHECK_OVERRIDES", "SyntheticTrajectories",
    "algorithm_class", "config_from_dict", "make_config", "make_algorithm",
]

ALGORITHMS: dict[str, type[TorchAlgorithm]] = {"bc": BC, "iql": IQL, "cql": CQL, "dt": DecisionTransformer, "diffbid": DiffBid,
                                             "oil": OIL}

CHECK_OVERRIDES: dict[str, dict[str, Any]] = {
    "bc": {"hidden_dims": (32, 32), "batch_size": 32},
    "iql": {"hidden_dims": (32, 32), "batch_size": 32},
    "cql": {"hidden_dims": (32, 32), "batch_size": 32, "n_action_samples": 4},
    # Synthetic states hold no budget, CPA or spend: one target for every campaign, counted down by the rewards.
    "dt": {"context_len": 4, "embed_dim": 32, "n_layers": 1, "n_heads": 2, "max_ticks": 16, "batch_size": 16, "warmup_steps": 10,
           "target_scale": "data", "rtg_decrement": "conversions"},
    "diffbid": {"plan": "raw", "n_ticks": 12, "d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16, "diffusion_steps": 20,
                "sampling_steps": 4, "idm_hidden_dims": (32, 32), "batch_size": 16, "warmup_steps": 10},
    "oil": {"hidden_dims": (32, 32), "batch_size": 32},
}
"""Tiny configurations the checker and the tests use (seconds on one CPU core)."""


def algorithm_class(name: str) -> type[TorchAlgorithm]:
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {name!r}; registered: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name]


def make_config(name: str, overrides: Mapping[str, Any] | None = None):
    """The default config of ``name`` with ``overrides`` applied."""
    return config_from_dict(algorithm_class(name).config_class, dict(overrides or {}))


def make_algorithm(name: str, feature_dim: int, overrides: Mapping[str, Any] | None = None, *, seed: int = 0) -> TorchAlgorithm:
    """A fresh algorithm ``name`` for ``feature_dim``-dimensional states, initialised from ``seed``."""
    cls = algorithm_class(name)
    return cls(make_config(name, overrides), feature_dim, seed=seed)

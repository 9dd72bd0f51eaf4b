"""Self-describing checkpoints: one file rebuilds a trained policy with nothing else at hand.

A checkpoint is a ``torch.save`` of tensors and primitive containers only, read back with
``torch.load(weights_only=True)`` (no pickled code runs on load). It holds:

    format, format_version    what this file is
    algo                      registry name ("bc", "iql", "cql", "dt")
    config                    the algorithm config as a JSON string
    feature_dim, feature_version, action_bounds
    dataset_fingerprint       JSON string (optional): which data trained it
    task                      the task it was trained for (``aigb.score.TASKS``: its dataset's, or
                              OIL's ``--task``); None in files written before tasks were recorded
    algorithm                 the algorithm's state dict: weights, normaliser statistics,
                              data-derived settings, and optionally optimisers and noise state
    fit_state                 JSON string (optional): the training loop's step, rng and best score

Files are written atomically (temporary file in the same directory, fsync, ``os.replace``), so a
crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigb.algos.base import ACTION_BOUNDS, Policy, TorchAlgorithm
from aigb.algos.registry import algorithm_class, config_from_dict
from aigb.files import atomic_output
from aigb.features import FeatureVersionError
from aigb.types import MARKET_VERSION, check_market_version, recorded_market_version

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_FORMAT_VERSION", "FeatureVersionMismatch",
    "save_checkpoint", "read_checkpoint", "stored_config", "checkpoint_task", "load_algorithm", "load_policy", "atomic_torch_save", "torch_load_weights_only", "json_default", "one_line",
]

CHECKPOINT_FORMAT = "aigb.algos.checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


class FeatureVersionMismatch(FeatureVersionError):
    """A checkpoint trained on one feature version is asked to serve another."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (temporary sibling, fsync, ``os.replace``).

    The bytes are serialised in memory and written by Python's file I/O: torch's own writer turns a
    full disk into ``RuntimeError: [enforce fail at inline_container.cc...]``, where a Python write
    raises the OSError itself (ENOSPC, EFBIG), which ``atomic_output`` reports as ``OutputPathError``
    naming ``path``, leaving no partial file and ``path`` as it was.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        fh.write(buffer.getbuffer())
    return Path(path)


def one_line(err: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line (torch's state-dict errors span several), cut to ``limit``."""
    text = "; ".join(part.strip() for part in str(err).splitlines() if part.strip())
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for numpy and one-element torch scalars."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _json(value: Any, what: str) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, sort_keys=True, default=json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: must be JSON-serialisable ({exc})") from None


def save_checkpoint(path: str | os.PathLike, algo: TorchAlgorithm, *, dataset_fingerprint: dict | None = None,
                    fit_state: dict | None = None, with_optimizers: bool = True) -> Path:
    """Write ``algo`` (and the loop's ``fit_state``) to ``path`` atomically."""
    if not algo.feature_version:
        raise ValueError(f"{algo.name}: feature_version is unset; call prepare(dataset, seed) or fit() before saving")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "algo": algo.name,
        "config": json.dumps(algo.config_dict(), sort_keys=True),
        "feature_dim": int(algo.feature_dim),
        "feature_version": str(algo.feature_version),
        # The market the policy was trained for; data from no market of ours (synthetic) serves the default.
        "market_version": algo.market_version or MARKET_VERSION,
        "action_bounds": algo.bounds.to_dict(),
        "dataset_fingerprint": _json(dataset_fingerprint, "dataset_fingerprint"),
        "task": algo.task,
        "fit_state": _json(fit_state, "fit_state"),
        "algorithm": algo.state_dict(with_optimizers=with_optimizers),
    }
    return atomic_torch_save(payload, path)


def torch_load_weights_only(path: str | os.PathLike, what: str, reading: str = "cannot be read") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing or unreadable file raises one
    line naming ``what`` and the path (FileNotFoundError / ValueError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # torch raises several types for corrupt or foreign files
        raise ValueError(f"{what} {path}: {reading} ({type(exc).__name__}: {exc})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint's payload (``weights_only=True``)."""
    path = Path(path)
    payload = torch_load_weights_only(path, "checkpoint", "cannot be read as an aigb checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path}: not an aigb algorithm checkpoint (format {payload.get('format') if isinstance(payload, dict) else None!r})")
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"checkpoint {path}: format_version {version!r} is not supported (expected {CHECKPOINT_FORMAT_VERSION})")
    for key in ("algo", "config", "feature_dim", "feature_version", "action_bounds", "algorithm"):
        if key not in payload:
            raise ValueError(f"checkpoint {path}: missing field {key!r}")
    bounds = payload["action_bounds"]
    expected = ACTION_BOUNDS.to_dict()
    if bounds != expected:
        raise ValueError(f"checkpoint {path}: action bounds {bounds} differ from this code's {expected}")
    return payload


def checkpoint_task(payload: dict) -> str | None:
    """The task a checkpoint payload (``read_checkpoint``) was trained for, or None where it records
    none (written before tasks were recorded; DiffBid's always kept its own, in its extra state)."""
    task = payload.get("task")
    if task is None:
        extra = payload["algorithm"].get("extra") if isinstance(payload["algorithm"], dict) else None
        task = extra.get("task") if isinstance(extra, dict) else None
    return None if task is None else str(task)


def _check_feature_version(payload: dict, path, expected: str | None) -> None:
    stored = payload["feature_version"]
    if expected is not None and stored != expected:
        raise FeatureVersionMismatch(
            f"checkpoint {path} was trained on feature version {stored!r} but the caller expects "
            f"{expected!r}; retrain on the current features or serve with the matching feature builder"
        )


def stored_config(payload: dict):
    """The config object a checkpoint payload was trained with. Fields added to the config class
    after the checkpoint was written read as what that checkpoint did: the algorithm's
    ``legacy_config`` value, else the field's default. Fields removed since (the algorithm's
    ``retired_config``: field -> the value under which it did nothing) are dropped when they hold
    that value; a checkpoint that used one is refused, naming it."""
    cls = algorithm_class(payload["algo"])
    stored = json.loads(payload["config"])
    for key, inert in getattr(cls, "retired_config", {}).items():
        if key in stored and stored.pop(key) != inert:
            raise ValueError(f"{key}: this {payload['algo']} checkpoint serves with {key} set, an option aigb no longer "
                             f"has (it measured within noise); retrain, or use an aigb release that has it")
    return config_from_dict(cls.config_class, {**getattr(cls, "legacy_config", {}), **stored})


def load_algorithm(path: str | os.PathLike, expected_feature_version: str | None = None,
                   market_version: str | None = None) -> TorchAlgorithm:
    """Rebuild the algorithm (networks, statistics, optimisers if saved) from a checkpoint.

    Refuses a checkpoint of a market version this code does not simulate (none recorded: v1) and,
    given ``market_version`` (the market it is to play), one trained for another version."""
    payload = read_checkpoint(path)
    found = recorded_market_version(payload.get("market_version"), f"checkpoint {path}")
    if market_version is not None:
        check_market_version(found, f"checkpoint {path}", market_version, "evaluation market")
    _check_feature_version(payload, path, expected_feature_version)
    cls = algorithm_class(payload["algo"])
    try:
        algo = cls(stored_config(payload), int(payload["feature_dim"]))
        # A damaged or edited file can hold weights of other shapes or miss some: torch and the
        # algorithms raise RuntimeError / KeyError / ValueError for those, never naming the file.
        algo.load_state_dict(payload["algorithm"])
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: its {payload['algo']} weights or config cannot be restored "
                         f"({one_line(err)})") from None
    algo.market_version = found
    return algo


def load_policy(path: str | os.PathLike, expected_feature_version: str | None = None,
                market_version: str | None = None) -> Policy:
    """The deterministic serving policy stored in ``path``.

    Refuses a checkpoint whose feature version differs from ``expected_feature_version``, or (given
    ``market_version``) trained for another market version.
    """
    return load_algorithm(path, expected_feature_version, market_version).policy()

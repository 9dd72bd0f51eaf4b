"""Config checks every algorithm config uses: one ``ConfigError`` line naming the field."""

from __future__ import annotations

import math

import numpy as np

from aigb.types import ConfigError

__all__ = ["require", "require_positive", "check_common_config"]


def require(ok: bool, field_name: str, problem: str) -> None:
    """Raise ``ConfigError('field: problem')`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{field_name}: {problem}")


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

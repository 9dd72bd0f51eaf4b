"""The action every learned bidding algorithm emits: one scalar per tick, the bid multiplier
relative to the target CPA, ``a = log(alpha / target_cpa)``, bounded to ``[A_LOW, A_HIGH]``. Networks
see it rescaled to ``[-1, 1]`` ("unit" actions) and produce it through ``tanh``, so a policy can
never leave the bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from aigb.algos.validation import require
from aigb.types import ACTION_HIGH, ACTION_LOW

__all__ = ["A_LOW", "A_HIGH", "ACTION_PARAMETERISATION", "ActionBounds", "ACTION_BOUNDS"]

A_LOW = ACTION_LOW
"""Lowest action: alpha = exp(-3) * target_cpa, about 5 % of the target CPA."""
A_HIGH = ACTION_HIGH
"""Highest action: alpha = exp(2) * target_cpa, about 7.4 times the target CPA."""
ACTION_PARAMETERISATION = "log(alpha / target_cpa)"
"""How an action maps to the bid: ``bid = exp(a) * target_cpa * p_value``."""



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

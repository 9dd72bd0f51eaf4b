"""The serving wrapper of a Markov policy (BC, IQL, CQL)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from aigb.algos.batches import validate_history
from aigb.algos.bounds import ActionBounds
from aigb.algos.normalizer import Normalizer

__all__ = ["StatePolicy"]


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

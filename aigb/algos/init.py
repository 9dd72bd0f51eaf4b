"""Seeded initialisation: initial weights never come from torch's global generator. Modules are
built on the ``meta`` device and initialised from a ``torch.Generator`` seeded by
``aigb.seeding.torch_seed``; target networks start as frozen copies and follow by Polyak averaging."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["init_default_", "init_target_", "polyak_update_"]


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

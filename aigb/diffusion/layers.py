"""Building blocks shared by the denoisers and the condition embedding, with seeded initialisation.

Every module here that owns parameters is either an ``nn.Linear`` / ``nn.LayerNorm`` /
``nn.Embedding`` or defines ``init_parameters_(generator)``. That is the contract of
``aigb.algos.base.init_default_``, which builds networks on the ``meta`` device and draws every
initial weight from a ``torch.Generator``; ``seeded_init_`` below applies the same contract
without importing the algorithms layer, so the diffusion package stays standalone. No module
holds buffers, because ``to_empty`` would leave them uninitialised.
"""

from __future__ import annotations

import math
from typing import Any, Callable, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Conv1d", "ConvTranspose1d", "GroupNorm", "LearnedVector", "SelfAttentionBlock",
    "sinusoidal_embedding", "group_count", "seeded_init_", "build_seeded",
]

M = TypeVar("M", bound=nn.Module)


def _uniform_fan_in_(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int, generator: torch.Generator) -> None:
    # PyTorch's default for linear and conv layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    with torch.no_grad():
        nn.init.uniform_(weight, -bound, bound, generator=generator)
        if bias is not None:
            nn.init.uniform_(bias, -bound, bound, generator=generator)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` with a seeded ``init_parameters_`` (PyTorch's default distribution)."""

    def init_parameters_(self, generator: torch.Generator) -> None:
        _uniform_fan_in_(self.weight, self.bias, self.weight[0].numel(), generator)


class ConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with a seeded ``init_parameters_``; weight is (in, out / groups, k)."""

    def init_parameters_(self, generator: torch.Generator) -> None:
        _uniform_fan_in_(self.weight, self.bias, self.weight.shape[1] * self.weight.shape[2], generator)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` whose affine parameters start at ones and zeros."""

    def init_parameters_(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)


class LearnedVector(nn.Module):
    """A learned tensor of a fixed shape (positional table, null embedding), N(0, std^2) at start."""

    def __init__(self, *shape: int, std: float = 0.02) -> None:
        super().__init__()
        self.std = float(std)
        self.value = nn.Parameter(torch.empty(*shape))

    def init_parameters_(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            nn.init.normal_(self.value, 0.0, self.std, generator=generator)

    def forward(self) -> torch.Tensor:
        return self.value


def group_count(channels: int, preferred: int = 8) -> int:
    """Number of GroupNorm groups: ``preferred`` when it divides ``channels``, else their gcd."""
    return math.gcd(preferred, channels)


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal features of the diffusion step (DDPM appendix B). t: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10_000.0) / max(half - 1, 1)))
    angles = t.to(torch.float32)[:, None] * freqs[None, :]                              # (B, half)
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x)). Bidirectional (no mask).

    Written out (rather than ``nn.TransformerEncoderLayer``) so every parameter is an
    ``nn.Linear`` or ``nn.LayerNorm`` and the same code path runs with and without autograd,
    which the gradient-based guidance relies on. Dropout > 0 draws from torch's global
    generator in training mode only; sampling runs in eval mode and never does.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, mlp_ratio: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.dropout = float(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, mlp_ratio * d_model)
        self.fc2 = nn.Linear(mlp_ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                                  # (B, L, d)
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        h = F.scaled_dot_product_attention(q, k, v, dropout_p=p)                          # (B, heads, L, d/heads)
        h = h.transpose(1, 2).reshape(b, length, d)
        x = x + F.dropout(self.proj(h), p, self.training)
        return x + F.dropout(self.fc2(F.gelu(self.fc1(self.norm2(x)))), p, self.training)


def seeded_init_(module: M, generator: torch.Generator) -> M:
    """Draw every parameter of ``module`` from ``generator`` (same rules as ``init_default_``).

    Linear: U(+-1/sqrt(fan_in)); LayerNorm: ones/zeros; Embedding: N(0, 1); any other
    parametrised module must define ``init_parameters_(generator)``, else TypeError.
    """
    for sub in module.modules():
        own = list(sub.parameters(recurse=False))
        if hasattr(sub, "init_parameters_"):
            sub.init_parameters_(generator)
        elif isinstance(sub, nn.Linear):
            _uniform_fan_in_(sub.weight, sub.bias, sub.in_features, generator)
        elif isinstance(sub, nn.LayerNorm):
            with torch.no_grad():
                if sub.weight is not None:
                    nn.init.ones_(sub.weight)
                if sub.bias is not None:
                    nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            with torch.no_grad():
                nn.init.normal_(sub.weight, 0.0, 1.0, generator=generator)
        elif own:
            raise TypeError(f"seeded_init_: no initialisation rule for {type(sub).__name__}")
    return module


def build_seeded(factory: Callable[..., M], *args: Any, generator: torch.Generator, device: str | torch.device = "cpu", **kwargs: Any) -> M:
    """``factory(*args, **kwargs)`` built on the meta device, then initialised from ``generator``.

    Example: ``build_seeded(TransformerDenoiser, 48, 7, generator=torch.Generator().manual_seed(0))``.
    Torch's global generator is never touched.
    """
    with torch.device("meta"):
        module = factory(*args, **kwargs)
    return seeded_init_(module.to_empty(device=device), generator)

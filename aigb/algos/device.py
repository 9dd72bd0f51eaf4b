"""Which torch device a run uses: ``--device auto|cpu|cuda`` for training and serving.

``auto`` takes the GPU when torch sees one and the CPU otherwise, so a CPU-only machine (the CPU
build of torch) never needs CUDA packages.
"""

from __future__ import annotations

import torch

from aigb.types import ConfigError

__all__ = ["DEVICE_CHOICES", "resolve_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' (or a torch.device) -> torch.device; ConfigError if unusable."""
    if isinstance(name, torch.device):
        name = str(name)
    name = "auto" if name is None else str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} asked for, but torch {torch.__version__} sees no CUDA device; use 'cpu' or 'auto'")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
        return device
    raise ConfigError(f"device: unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")

"""Training objective: the noise-prediction loss of DDPM, as a completer of known prefixes.

DDPM (Ho et al. 2020, eq. 14) trains eps_theta to recover the noise: ``|| eps - eps_theta(x_t, t) ||^2``
with t uniform and x_t = q_sample(x_0, t, eps). A planner that re-plans every tick sees the
realised rows s_0..s_k as known and must complete the rest. CBD (arXiv 2509.03348) trains for
exactly that: the known prefix of each sample is kept **clean** in x_t (never noised) and the loss
covers only the unknown rows. Sampling then re-imposes the same clean rows (``sampling.inpaint``),
so training and serving see the same inputs; plain replacement in-painting on a model that never
saw clean rows gives "dynamically illegitimate" continuations (CBD; Decision Diffuser's row-0
weight 0 is the one-row special case). CleanDiffuser's ``fix_mask`` implements the same idea.
"""

from __future__ import annotations

import torch
from torch import nn

from aigb.diffusion.schedule import CosineSchedule

__all__ = ["completer_loss", "prefix_mask", "random_prefix_mask"]


def prefix_mask(lengths: torch.Tensor, horizon: int) -> torch.Tensor:
    """(B,) prefix lengths -> (B, H) bool, True on rows h < lengths[b]."""
    rows = torch.arange(horizon, device=lengths.device)
    return rows[None, :] < lengths[:, None]


def random_prefix_mask(batch: int, horizon: int, generator: torch.Generator, low: int = 0, high: int | None = None) -> torch.Tensor:
    """(B, H) bool prefixes with lengths uniform on {low, ..., high - 1} (default high = H, so at
    least one row is always unknown). Drawn from ``generator`` only."""
    high = horizon if high is None else high
    if not 0 <= low < high <= horizon:
        raise ValueError(f"need 0 <= low < high <= horizon, got low={low}, high={high}, horizon={horizon}")
    lengths = torch.randint(low, high, (batch,), generator=generator, device=generator.device)
    return prefix_mask(lengths, horizon)


def completer_loss(denoiser: nn.Module, schedule: CosineSchedule, x0: torch.Tensor, emb: torch.Tensor, known: torch.Tensor,
                   generator: torch.Generator, weight: torch.Tensor | None = None, prediction: str = "eps") -> torch.Tensor:
    """Mean squared noise-prediction error over the unknown rows, with known rows clean in x_t.

    prediction: what the denoiser outputs, "eps" (the noise; DDPM's parameterisation) or "x0" (the
    clean sample; Diffuser's choice for planning): the loss compares the output with that target.
    An eps model's x0 estimate at high noise is (x_t - sqrt(1 - abar) eps) / sqrt(abar), which
    multiplies its error by up to 1 / sqrt(abar) (~2,000 at the cosine schedule's last step); an
    x0 model predicts the clean plan directly at every noise level.

    x0: (B, H, D) float32 clean plans; emb: (B, E) condition embedding; known: (B, H) bool;
    generator: source of t ~ U{0..n_steps-1} (B,) and noise ~ N(0, I) (B, H, D), in that order.
    weight: optional per-row weights broadcastable to (B, H) (e.g. extra weight on the next
    row); the loss is then the weighted mean over unknown rows.
    Returns a scalar; rows marked known contribute nothing, whatever the denoiser outputs there.
    A denoiser with ``known_input`` True also receives ``known``.
    """
    if x0.dim() != 3:
        raise ValueError(f"x0 must have shape (B, H, D), got {tuple(x0.shape)}")
    b, h, d = x0.shape
    if prediction not in ("eps", "x0"):
        raise ValueError(f"prediction must be 'eps' or 'x0', got {prediction!r}")
    if known.shape != (b, h) or known.dtype != torch.bool:
        raise ValueError(f"known must be a bool tensor of shape ({b}, {h}), got {known.dtype} {tuple(known.shape)}")
    t = torch.randint(0, schedule.n_steps, (b,), generator=generator, device=generator.device).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    x_t = torch.where(known[..., None], x0, schedule.q_sample(x0, t, noise))                # (B, H, D)
    if getattr(denoiser, "known_input", False):
        eps_hat = denoiser(x_t, t, emb, known=known)                                      # (B, H, D)
    else:
        eps_hat = denoiser(x_t, t, emb)
    row_w = (~known).to(x0.dtype)                                                         # (B, H)
    if weight is not None:
        row_w = row_w * torch.as_tensor(weight, dtype=x0.dtype, device=x0.device).expand(b, h)
    target = noise if prediction == "eps" else x0
    err = (eps_hat - target).square().mean(dim=-1)                                        # (B, H)
    # Masking by multiplication would let a NaN/inf output on a known row leak in (0 * inf).
    err = torch.where(row_w > 0, err, torch.zeros((), dtype=err.dtype, device=err.device))
    return (err * row_w).sum() / row_w.sum().clamp_min(torch.finfo(x0.dtype).tiny)

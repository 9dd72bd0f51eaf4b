"""The forward (noising) process: a cosine variance schedule and the maps between x_0, x_t and eps.

DDPM (Ho et al., NeurIPS 2020, arXiv 2006.11239) corrupts a clean plan x_0 in n_steps Gaussian
steps; in closed form

    x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps,    eps ~ N(0, I)        (DDPM eq. 4)

The cosine schedule (Nichol & Dhariwal, ICML 2021, arXiv 2102.09672, eq. 17) sets

    alpha_bar(u) = f(u) / f(0),   f(u) = cos^2( (u / T + s) / (1 + s) * pi / 2 ),   s = 0.008

so that the signal decays gently at both ends instead of the linear schedule's early collapse;
betas are clipped at 0.999 to avoid the singularity at u = T. Index i of every tensor here is
diffusion step i + 1 of the paper (i = 0 is the least noisy), so ``alpha_bar[i] = prod_{j<=i}
alphas[j]`` and ``alpha_bar[n_steps - 1]`` is practically pure noise.

The schedule is kept in float64; coefficients are gathered per sample and cast to the dtype of
the tensors they multiply (float32 for networks), so the maps below are exact inverses up to
float32 rounding.
"""

from __future__ import annotations

import math

import torch

__all__ = ["CosineSchedule"]


class CosineSchedule:
    """Cosine noise schedule with n_steps training steps (Nichol & Dhariwal 2021).

    Attributes (float64 tensors of shape (n_steps,)): ``betas``, ``alphas = 1 - betas`` and
    ``alpha_bar = cumprod(alphas)``.
    """

    max_beta = 0.999
    """Upper clip on beta (Nichol & Dhariwal, section 3.2)."""

    def __init__(self, n_steps: int = 100, s: float = 0.008) -> None:
        if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
        if not s >= 0.0:
            raise ValueError(f"s must be >= 0, got {s!r}")
        self.n_steps = int(n_steps)
        self.s = float(s)
        u = torch.arange(self.n_steps + 1, dtype=torch.float64) / self.n_steps          # (T+1,)
        f = torch.cos((u + self.s) / (1.0 + self.s) * (math.pi / 2.0)) ** 2
        closed_form = f / f[0]                                                            # alpha_bar(u)
        self.betas = (1.0 - closed_form[1:] / closed_form[:-1]).clamp(0.0, self.max_beta)  # (T,)
        self.alphas = 1.0 - self.betas                                                    # (T,)
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)                                # (T,)

    def __repr__(self) -> str:
        return f"CosineSchedule(n_steps={self.n_steps}, s={self.s})"

    # --- per-sample coefficients -------------------------------------------------------------
    def _coef(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] reshaped to broadcast over ``like`` (B, ...) and cast to its dtype/device."""
        t = torch.as_tensor(t, dtype=torch.long)
        if t.dim() != 1 or t.shape[0] != like.shape[0]:
            raise ValueError(f"t must have shape ({like.shape[0]},), got {tuple(t.shape)}")
        if int(t.min()) < 0 or int(t.max()) >= self.n_steps:
            raise ValueError(f"t must lie in [0, {self.n_steps}), got [{int(t.min())}, {int(t.max())}]")
        c = values[t.cpu()].to(device=like.device, dtype=like.dtype)                      # (B,)
        return c.view(-1, *([1] * (like.dim() - 1)))                                      # (B, 1, 1)

    def signal(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """sqrt(alpha_bar[t]), shaped to broadcast over ``like``."""
        return self._coef(self.alpha_bar.sqrt(), t, like)

    def sigma(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """sqrt(1 - alpha_bar[t]), shaped to broadcast over ``like``."""
        return self._coef((1.0 - self.alpha_bar).sqrt(), t, like)

    # --- the three maps ------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (DDPM eq. 4). x0, noise: (B, H, D); t: (B,)."""
        return self.signal(t, x0) * x0 + self.sigma(t, x0) * noise

    def x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Tweedie's estimate of x0 from a noise prediction: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        return (x_t - self.sigma(t, x_t) * eps) / self.signal(t, x_t)

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The noise that maps x0 to x_t: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
        return (x_t - self.signal(t, x_t) * x0) / self.sigma(t, x_t)

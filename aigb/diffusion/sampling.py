"""Reverse process: DDIM and DDPM samplers with in-painting, classifier-free guidance and a guidance hook.

* DDPM ancestral sampling (Ho et al. 2020, eq. 6-7): all n_steps steps, posterior
  q(x_{t-1} | x_t, x0_hat) with variance beta~_t.
* DDIM (Song, Meng & Ermon, ICLR 2021, arXiv 2010.02502, eq. 12): K evenly spaced steps of the
  training schedule, deterministic at eta = 0:
      x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
      sigma  = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).
* Low-temperature sampling (Decision Diffuser, Ajay et al. 2023): the initial noise and every
  step's noise are multiplied by ``temperature`` (0.5 there).
* Classifier-free guidance (Ho & Salimans 2022): eps = eps_u + w (eps_c - eps_u); ``cfg_eps_fn``
  runs both branches as one batch of 2B.
* In-painting: the known rows (the realised prefix) are re-imposed, clean, on x_t before every
  call of the denoiser, on every step's result and on the final x0 -- the inputs the completer
  saw in training (``training.completer_loss``).
* Warm start: the previous tick's plan re-noised to an intermediate step (``start_step``) and
  denoised from there in a few steps (CleanDiffuser's warm_start_forward_level); the cheap route
  to a per-tick latency budget.

All randomness comes from the ``generator`` argument, in a fixed order, so one seed gives the
same plan bit for bit. ``DDIMStep`` is what a guidance hook (``aigb.diffusion.guidance``) receives:
the pieces of one step, so the hook can take the step with its own corrections.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol, Sequence

import torch
from torch import nn

from aigb.diffusion.schedule import CosineSchedule

__all__ = [
    "EpsFn", "Guidance", "DDIMStep", "cfg_combine", "cfg_eps_fn", "inpaint", "ddim_timesteps", "ddim_sample", "ddpm_sample",
]

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""eps_fn(x_t (B, H, D), t (B,) long) -> eps_hat (B, H, D)."""


class Guidance(Protocol):
    """A hook that takes one DDIM step itself: ``guidance(step, x_t) -> x_prev``.

    An object whose ``active`` attribute is False is ignored (the sampler takes the plain step),
    which makes zero-strength guidance bit-identical to unguided sampling.
    """

    def __call__(self, step: "DDIMStep", x_t: torch.Tensor) -> torch.Tensor: ...


def cfg_combine(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: eps_uncond + w (eps_cond - eps_uncond); exactly eps_uncond at w = 0
    and eps_cond at w = 1 (``torch.lerp`` evaluates from the nearer end)."""
    w = torch.as_tensor(w, dtype=eps_cond.dtype, device=eps_cond.device)
    return torch.lerp(eps_uncond, eps_cond, w)


def cfg_eps_fn(denoiser: nn.Module, emb_cond: torch.Tensor, emb_uncond: torch.Tensor | None = None, w: float = 1.0,
               known: torch.Tensor | None = None) -> EpsFn:
    """An ``eps_fn`` for the samplers from a denoiser and (B, E) embeddings.

    With 0 < w != 1 both branches run in one batch of 2B (one network call per step); w = 1 (or
    no unconditional embedding) runs the conditional branch alone and w = 0 the unconditional one.
    known (B, H) bool: passed on to a denoiser built with ``known_input`` (ignored otherwise).
    The denoiser should be in eval mode.
    """
    extra = {"known": known} if known is not None and getattr(denoiser, "known_input", False) else {}
    if emb_uncond is None or w == 1:
        return lambda x_t, t: denoiser(x_t, t, emb_cond, **extra)
    if w == 0:
        return lambda x_t, t: denoiser(x_t, t, emb_uncond, **extra)
    emb = torch.cat([emb_cond, emb_uncond], dim=0)                                       # (2B, E)
    if extra:
        extra = {"known": torch.cat([known, known], dim=0)}

    def eps_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps_c, eps_u = denoiser(torch.cat([x_t, x_t], dim=0), torch.cat([t, t], dim=0), emb, **extra).chunk(2, dim=0)
        return cfg_combine(eps_c, eps_u, w)

    return eps_fn


def x0_model_eps_fn(x0_fn: EpsFn, schedule: CosineSchedule) -> EpsFn:
    """The ``eps_fn`` of a model that predicts x0: eps = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t).

    The samplers recover x0_hat from it exactly (up to rounding), so an x0 model samples with the
    same DDIM/DDPM code; CFG may be applied to the x0 outputs before (the map is affine in x0).
    """
    abar = schedule.alpha_bar

    def eps_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = abar.to(x_t.device)[t].to(x_t.dtype)[:, None, None]                          # (B, 1, 1)
        return (x_t - ab.sqrt() * x0_fn(x_t, t)) / (1.0 - ab).sqrt()

    return eps_fn


def inpaint(x: torch.Tensor, known_x: torch.Tensor | None, known_mask: torch.Tensor | None) -> torch.Tensor:
    """x (B, H, D) with the rows where known_mask (B, H) is True replaced by known_x (B, H, D)."""
    if known_mask is None or known_x is None:
        return x
    return torch.where(known_mask[..., None], known_x.to(x.dtype), x)


def ddim_timesteps(n_steps: int, steps: int, start: int | None = None) -> list[int]:
    """``steps`` training-schedule indices evenly spaced from ``start`` (default n_steps - 1) down to 0.

    Duplicates from rounding are dropped, so fewer come back when steps > start + 1.
    """
    start = n_steps - 1 if start is None else int(start)
    if not 0 <= start < n_steps:
        raise ValueError(f"start_step must lie in [0, {n_steps}), got {start}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps == 1:
        return [start]
    grid = torch.linspace(float(start), 0.0, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(grid), reverse=True)


def _abar(schedule: CosineSchedule, t: int) -> float:
    return 1.0 if t < 0 else float(schedule.alpha_bar[t])


class DDIMStep:
    """One DDIM transition from step ``t`` to ``t_prev`` (-1 after the last), given to guidance hooks.

    Attributes: ``schedule, eps_fn, timesteps`` (the whole descending sequence), ``index``, ``t``,
    ``t_prev``, ``alpha_bar_t``, ``alpha_bar_prev`` (1 after the last step), ``alpha =
    alpha_bar_t / alpha_bar_prev`` (the effective one-step alpha of the jump), ``eta,
    temperature, clip_x0, known_x, known_mask, generator``. Plain DDIM is
    ``step.update(*step.predict(x_t))``.
    """

    def __init__(self, schedule: CosineSchedule, eps_fn: EpsFn, timesteps: Sequence[int], index: int, *, eta: float = 0.0,
                 temperature: float = 1.0, clip_x0: float | None = None, known_x: torch.Tensor | None = None,
                 known_mask: torch.Tensor | None = None, generator: torch.Generator) -> None:
        self.schedule, self.eps_fn = schedule, eps_fn
        self.timesteps, self.index = tuple(int(s) for s in timesteps), int(index)
        self.t = self.timesteps[self.index]
        self.t_prev = self.timesteps[self.index + 1] if self.index + 1 < len(self.timesteps) else -1
        self.alpha_bar_t = _abar(schedule, self.t)
        self.alpha_bar_prev = _abar(schedule, self.t_prev)
        self.alpha = self.alpha_bar_t / self.alpha_bar_prev
        self.eta, self.temperature, self.clip_x0 = float(eta), float(temperature), clip_x0
        self.known_x, self.known_mask, self.generator = known_x, known_mask, generator

    def alphas(self) -> list[float]:
        """The effective one-step alpha = abar_t / abar_prev of each of the K steps, in sampling order."""
        ts = (*self.timesteps, -1)
        return [_abar(self.schedule, ts[k]) / _abar(self.schedule, ts[k + 1]) for k in range(len(self.timesteps))]

    def inpaint(self, x: torch.Tensor) -> torch.Tensor:
        """Re-impose the known rows (clean) on x (B, H, D), or on a stack of such (..., B, H, D)."""
        return inpaint(x, self.known_x, self.known_mask)

    def predict(self, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_hat, x0_hat), each (B, H, D), at step t; x_t is in-painted first. With ``clip_x0``,
        x0_hat is clamped and eps re-derived from it, so the update stays consistent."""
        return _predict(self.eps_fn, self.inpaint(x_t), self.t, self.alpha_bar_t, self.clip_x0)

    @property
    def sigma(self) -> float:
        """DDIM's per-step noise scale (eq. 16), before the temperature."""
        if self.eta == 0.0 or self.t_prev < 0:
            return 0.0
        ab_t, ab_p = self.alpha_bar_t, self.alpha_bar_prev
        return self.eta * math.sqrt((1.0 - ab_p) / (1.0 - ab_t) * (1.0 - ab_t / ab_p))

    def update(self, eps: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """DDIM eq. 12: x_prev from (eps, x0_hat); noise sigma * temperature * z; known rows re-imposed."""
        sigma = self.sigma
        direction = math.sqrt(max(1.0 - self.alpha_bar_prev - sigma * sigma, 0.0))
        x_prev = math.sqrt(self.alpha_bar_prev) * x0 + direction * eps
        if sigma > 0.0:
            x_prev = x_prev + (sigma * self.temperature) * _randn(x0.shape, self.generator)
        return self.inpaint(x_prev)

    def renoise(self, x_prev: torch.Tensor) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_prev) = N(sqrt(alpha) x_prev, (1 - alpha) temperature^2 I), known rows
        re-imposed (TFG's recurrence, FreeDoM's time travel)."""
        z = _randn(x_prev.shape, self.generator)
        return self.inpaint(math.sqrt(self.alpha) * x_prev + (math.sqrt(1.0 - self.alpha) * self.temperature) * z)


def _randn(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=torch.float32)


def _predict(eps_fn: EpsFn, x_t: torch.Tensor, t: int, alpha_bar_t: float, clip_x0: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps_hat, x0_hat) at training step t from an already in-painted x_t (B, H, D)."""
    t_vec = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)          # (B,)
    eps = eps_fn(x_t, t_vec)
    signal, noise_scale = math.sqrt(alpha_bar_t), math.sqrt(1.0 - alpha_bar_t)
    x0 = (x_t - noise_scale * eps) / signal
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - signal * x0) / noise_scale
    return eps, x0


def _check_sampling_args(shape, temperature: float, known_x, known_mask, generator) -> tuple[int, int, int]:
    if generator is None:
        raise ValueError("sampling needs an explicit torch.Generator (library code never uses the global one)")
    if len(shape) != 3:
        raise ValueError(f"shape must be (B, H, D), got {tuple(shape)}")
    if not temperature >= 0.0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if (known_x is None) != (known_mask is None):
        raise ValueError("known_x and known_mask go together")
    if known_mask is not None:
        if known_mask.dtype != torch.bool or known_mask.shape[-1] != shape[1]:
            raise ValueError(f"known_mask must be bool (B, {shape[1]}), got {known_mask.dtype} {tuple(known_mask.shape)}")
    return tuple(int(s) for s in shape)


def ddim_sample(eps_fn: EpsFn, schedule: CosineSchedule, shape: tuple[int, int, int], *, steps: int = 10, eta: float = 0.0,
                temperature: float = 1.0, known_x: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None, clip_x0: float | None = None, x_init: torch.Tensor | None = None,
                start_step: int | None = None, guidance: Guidance | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """DDIM sampling in ``steps`` steps -> x0 (B, H, D) float32.

    eps_fn(x_t, t): noise prediction, t a (B,) long tensor of training-schedule indices.
    temperature: scales the initial noise and every step's noise (0.5: Decision Diffuser).
    known_x (B, H, D), known_mask (B, H) bool: rows re-imposed clean before every eps_fn call,
        after every step and on the result.
    generator: the only source of randomness (initial noise, then each step's noise in order).
    clip_x0: clamp x0_hat to [-clip_x0, clip_x0] at every step (None: no clamp).
    x_init, start_step: warm start -- x_init (B, H, D) (e.g. last tick's plan shifted) is noised
        to training step ``start_step`` and sampling runs ``steps`` steps from there to 0.
    guidance: a hook ``guidance(step, x_t) -> x_prev`` taking each step instead of plain DDIM;
        None, or an object with ``active`` False, gives plain DDIM bit for bit.
    noise: the standard-normal initial noise x_T / temperature (B, H, D) instead of a draw from
        ``generator`` (e.g. one draw shared by several rows: common random numbers); with eta 0
        the sample is then a function of it alone.
    Runs under ``torch.no_grad``; a hook enables gradients where it needs them.
    """
    shape = _check_sampling_args(shape, temperature, known_x, known_mask, generator)
    if (x_init is None) != (start_step is None):
        raise ValueError("x_init and start_step go together (warm start)")
    timesteps = ddim_timesteps(schedule.n_steps, steps, start_step)
    with torch.no_grad():
        if noise is not None:
            if x_init is not None or tuple(noise.shape) != shape:
                raise ValueError(f"noise must have shape {shape} and excludes x_init, got {tuple(noise.shape)}")
            x = temperature * noise.to(torch.float32)
        elif x_init is None:
            x = temperature * _randn(shape, generator)                                   # x_T ~ N(0, temperature^2 I)
        else:
            if tuple(x_init.shape) != shape:
                raise ValueError(f"x_init must have shape {shape}, got {tuple(x_init.shape)}")
            ab = _abar(schedule, timesteps[0])
            z = _randn(shape, generator)
            x = math.sqrt(ab) * x_init.to(torch.float32) + (math.sqrt(1.0 - ab) * temperature) * z
        x = inpaint(x, known_x, known_mask)
        active = guidance is not None and getattr(guidance, "active", True)
        for i in range(len(timesteps)):
            step = DDIMStep(schedule, eps_fn, timesteps, i, eta=eta, temperature=temperature, clip_x0=clip_x0,
                            known_x=known_x, known_mask=known_mask, generator=generator)
            x = guidance(step, x) if active else step.update(*step.predict(x))
        return inpaint(x, known_x, known_mask).to(torch.float32)


def ddpm_sample(eps_fn: EpsFn, schedule: CosineSchedule, shape: tuple[int, int, int], *, temperature: float = 1.0,
                known_x: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None, clip_x0: float | None = None) -> torch.Tensor:
    """DDPM ancestral sampling over all n_steps steps -> x0 (B, H, D) float32.

    x_{t-1} = c0 x0_hat + ct x_t + sqrt(beta~_t) temperature z, with c0 = sqrt(abar_{t-1}) beta_t /
    (1 - abar_t), ct = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t), beta~_t = beta_t (1 - abar_{t-1})
    / (1 - abar_t) (DDPM eq. 7); no noise on the last step. Arguments as in ``ddim_sample``.
    """
    shape = _check_sampling_args(shape, temperature, known_x, known_mask, generator)
    with torch.no_grad():
        x = inpaint(temperature * _randn(shape, generator), known_x, known_mask)
        for t in range(schedule.n_steps - 1, -1, -1):
            ab_t, ab_prev = _abar(schedule, t), _abar(schedule, t - 1)
            beta, alpha = float(schedule.betas[t]), float(schedule.alphas[t])
            _, x0 = _predict(eps_fn, x, t, ab_t, clip_x0)
            x = (math.sqrt(ab_prev) * beta / (1.0 - ab_t)) * x0 + (math.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab_t)) * x
            if t > 0:
                var = beta * (1.0 - ab_prev) / (1.0 - ab_t)
                x = x + (math.sqrt(var) * temperature) * _randn(shape, generator)
            x = inpaint(x, known_x, known_mask)
        return x.to(torch.float32)

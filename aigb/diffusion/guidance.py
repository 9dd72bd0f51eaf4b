"""Training-free guidance: steer a trained planner toward a differentiable objective at sampling time.

Implements the unified algorithm of TFG (Ye et al., NeurIPS 2024, arXiv 2409.15761). Given a
per-sample log objective ``log_f(x0) -> (B,)``, one DDIM step t -> t_prev (``sampling.DDIMStep``,
alpha = abar_t / abar_prev) is taken ``n_recur`` times:

    eps, x0 = predict(x_t)                                   # Tweedie estimate through the denoiser
    delta_t = rho_t * grad_{x_t} log f~(x0(x_t))              # (a) variance guidance (backprop through eps)
    delta_0 = 0; repeat n_iter:                               # (b) mean guidance (no denoiser gradient)
        delta_0 += mu_t * grad_{x0} log f~(x0 + delta_0)
    x_prev = DDIM(eps, x0) + delta_t / sqrt(alpha) + sqrt(abar_prev) * delta_0
    if another recurrence: x_t = sqrt(alpha) x_prev + sqrt(1 - alpha) z   # (d) recurrence

(c) implicit dynamics: log f~(x) = log mean_k f(x + gamma_t delta_k), delta_k ~ N(0, I), k = 1..eps_bsz
(a log-mean-exp); with gamma = 0 it is log f itself.

Schedules over the K sampling steps: ``"increase"`` makes rho_t, mu_t proportional to alpha_t
(small at the noisy start, large at the end), normalised so their mean over the K steps is rho, mu;
``"decrease"`` sets gamma_t = gamma sqrt(1 - abar_t); ``"constant"`` uses the value as given.

Published methods are corners of this space (TFG section 3; ``PRESETS``):

* DPS (Chung et al. 2023): variance guidance only -- mu = 0, gamma = 0, n_recur = 1. The update is
  DDIM + zeta_t grad_{x_t} log f(x0(x_t)) with zeta_t = rho_t / sqrt(alpha_t).
* LGD (Song et al. 2023): DPS with log f replaced by its Monte-Carlo Gaussian smoothing (gamma > 0).
* FreeDoM (Yu et al. 2023): DPS plus recurrence ("time travel"), n_recur > 1.
* MPGD (He et al. 2024): mean guidance only -- rho = 0: gradient steps on x0 directly, no backward
  pass through the denoiser; the DDIM step then uses the moved x0 with the same eps.
* UGD (Bansal et al. 2024): variance + mean ("backward guidance", n_iter steps) + recurrence.

Known rows (the realised prefix) are re-imposed on every x0 before log f sees it and after every
update, so guidance never moves what has happened. Zero strength (rho = mu = 0) makes the hook
inactive and the sampler bit-identical to plain DDIM. Gradients of log f can be clipped per sample
(``grad_clip``): image-scale strengths push plans off the data (anchors section 3.5), start small.

Also here: the authors' beam search over (rho, mu, gamma), and best-of-N selection.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from aigb.diffusion.sampling import DDIMStep

__all__ = [
    "TFGConfig", "TFGGuidance", "PRESETS", "dps", "lgd", "freedom", "mpgd", "ugd",
    "strength_weights", "beam_search_strengths", "SearchResult", "best_of_n", "BestOfN",
]

LogF = Callable[[torch.Tensor], torch.Tensor]
"""log_f(x0 (B, H, D)) -> (B,) differentiable log objective (higher is better)."""

_STRENGTH_SCHEDULES = ("constant", "increase")
_GAMMA_SCHEDULES = ("constant", "decrease")


@dataclass(frozen=True)
class TFGConfig:
    """Hyper-parameters of one training-free guidance method (TFG's design space)."""

    rho: float = 0.0
    """Variance-guidance strength (mean over the sampling steps); 0 turns it off."""
    mu: float = 0.0
    """Mean-guidance strength (mean over the sampling steps); 0 turns it off."""
    gamma: float = 0.0
    """Implicit-dynamics smoothing scale; 0 evaluates log f at x0 itself."""
    n_iter: int = 1
    """Mean-guidance ascent steps per recurrence."""
    n_recur: int = 1
    """Times each sampling step is taken (re-noising in between)."""
    eps_bsz: int = 1
    """Gaussian perturbations averaged by implicit dynamics (used when gamma > 0)."""
    rho_schedule: str = "increase"
    """"increase" (proportional to alpha_t, mean rho) or "constant"."""
    mu_schedule: str = "increase"
    """"increase" (proportional to alpha_t, mean mu) or "constant"."""
    gamma_schedule: str = "decrease"
    """"decrease" (gamma * sqrt(1 - abar_t)) or "constant"."""
    grad_clip: float | None = None
    """Clip each per-sample gradient of log f to this L2 norm (None: no clip)."""

    def __post_init__(self) -> None:
        for name in ("rho", "mu", "gamma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        for name in ("n_iter", "n_recur", "eps_bsz"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < (0 if name == "n_iter" else 1):
                raise ValueError(f"{name} must be an integer >= {0 if name == 'n_iter' else 1}, got {value!r}")
        if self.rho_schedule not in _STRENGTH_SCHEDULES or self.mu_schedule not in _STRENGTH_SCHEDULES:
            raise ValueError(f"rho_schedule and mu_schedule must be one of {_STRENGTH_SCHEDULES}")
        if self.gamma_schedule not in _GAMMA_SCHEDULES:
            raise ValueError(f"gamma_schedule must be one of {_GAMMA_SCHEDULES}")
        if self.grad_clip is not None and not self.grad_clip > 0.0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")

    @property
    def active(self) -> bool:
        """False when no guidance is applied (rho = 0 and no mean-guidance step)."""
        return self.rho > 0.0 or (self.mu > 0.0 and self.n_iter > 0)


# --- the published special cases ---------------------------------------------------------------
def dps(rho: float, *, schedule: str = "increase", grad_clip: float | None = None) -> TFGConfig:
    """DPS: variance guidance only."""
    return TFGConfig(rho=rho, rho_schedule=schedule, grad_clip=grad_clip)


def lgd(rho: float, gamma: float, *, eps_bsz: int = 4, schedule: str = "increase", grad_clip: float | None = None) -> TFGConfig:
    """LGD: variance guidance on the Gaussian-smoothed objective (implicit dynamics)."""
    return TFGConfig(rho=rho, gamma=gamma, eps_bsz=eps_bsz, rho_schedule=schedule, grad_clip=grad_clip)


def freedom(rho: float, *, n_recur: int = 2, schedule: str = "increase", grad_clip: float | None = None) -> TFGConfig:
    """FreeDoM: variance guidance with recurrence (time travel)."""
    return TFGConfig(rho=rho, n_recur=n_recur, rho_schedule=schedule, grad_clip=grad_clip)


def mpgd(mu: float, *, n_iter: int = 1, schedule: str = "increase", grad_clip: float | None = None) -> TFGConfig:
    """MPGD: mean guidance only (gradient steps on x0, no backward pass through the denoiser)."""
    return TFGConfig(mu=mu, n_iter=n_iter, mu_schedule=schedule, grad_clip=grad_clip)


def ugd(rho: float, mu: float, *, n_iter: int = 2, n_recur: int = 2, schedule: str = "increase",
        grad_clip: float | None = None) -> TFGConfig:
    """UGD: forward (variance) and backward (mean, n_iter steps) guidance with self-recurrence."""
    return TFGConfig(rho=rho, mu=mu, n_iter=n_iter, n_recur=n_recur, rho_schedule=schedule, mu_schedule=schedule,
                     grad_clip=grad_clip)


PRESETS: dict[str, Callable[..., TFGConfig]] = {"dps": dps, "lgd": lgd, "freedom": freedom, "mpgd": mpgd, "ugd": ugd}
"""Named methods as functions of their strengths, each returning the TFGConfig it reduces to."""


# --- the guided step -------------------------------------------------------------------------
def strength_weights(step: DDIMStep, schedule: str) -> float:
    """The factor on rho or mu at this step: 1, or alpha_t / mean_k alpha_k over the K sampling steps."""
    if schedule == "constant":
        return 1.0
    alphas = step.alphas()
    return alphas[step.index] * len(alphas) / sum(alphas)


def _clip_per_sample(grad: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    if max_norm is None:
        return grad
    norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)                                    # (B,)
    return grad * (max_norm / norm).clamp(max=1.0).view(-1, *([1] * (grad.dim() - 1)))


class TFGGuidance:
    """The ``guidance`` hook of ``ddim_sample``: takes each DDIM step with TFG's corrections.

    log_f: x0 (B, H, D) -> (B,) differentiable log objective, higher is better.
    config: a ``TFGConfig`` (or a preset, e.g. ``PRESETS["mpgd"](0.05)``).
    """

    def __init__(self, log_f: LogF, config: TFGConfig) -> None:
        if not isinstance(config, TFGConfig):
            raise TypeError(f"config must be a TFGConfig, got {type(config).__name__}")
        self.log_f, self.config = log_f, config

    @property
    def active(self) -> bool:
        return self.config.active

    def smoothed_log_f(self, x0: torch.Tensor, gamma: float, step: DDIMStep) -> torch.Tensor:
        """log f~(x0) (B,): log-mean-exp of log f over eps_bsz perturbations x0 + gamma delta, known rows
        re-imposed on every perturbed copy; plain log f(x0) when gamma = 0."""
        b = x0.shape[0]
        if gamma <= 0.0:
            out = self.log_f(step.inpaint(x0))
        else:
            k = self.config.eps_bsz
            delta = torch.randn((k, *x0.shape), generator=step.generator, device=step.generator.device, dtype=x0.dtype)
            copies = step.inpaint(x0[None] + gamma * delta)                                # (k, B, H, D)
            lp = self.log_f(copies.reshape(k * b, *x0.shape[1:])).view(k, b)
            out = torch.logsumexp(lp, dim=0) - math.log(k)
        if out.shape != (b,):
            raise ValueError(f"log_f must return shape ({b},), got {tuple(out.shape)}")
        return out

    def _grad(self, x0_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, gamma: float, step: DDIMStep) -> torch.Tensor:
        """grad_x log f~(x0_of(x)), per-sample clipped."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.smoothed_log_f(x0_of(x), gamma, step).sum(), x)
        return _clip_per_sample(grad, self.config.grad_clip)

    def __call__(self, step: DDIMStep, x_t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        rho = cfg.rho * strength_weights(step, cfg.rho_schedule)
        mu = cfg.mu * strength_weights(step, cfg.mu_schedule)
        gamma = cfg.gamma * (math.sqrt(1.0 - step.alpha_bar_t) if cfg.gamma_schedule == "decrease" else 1.0)
        x_prev = x_t
        for r in range(cfg.n_recur):
            if r > 0:
                x_t = step.renoise(x_prev)                                                  # (d) recurrence
            delta_t = None
            if rho > 0.0:                                                                   # (a) variance guidance
                cache = {}

                def x0_of(x_in: torch.Tensor) -> torch.Tensor:
                    cache["eps"], cache["x0"] = step.predict(x_in)
                    return cache["x0"]

                delta_t = rho * self._grad(x0_of, x_t, gamma, step)
                eps, x0 = cache["eps"].detach(), cache["x0"].detach()
            else:
                eps, x0 = step.predict(x_t)
            delta_0 = None
            if mu > 0.0 and cfg.n_iter > 0:                                                 # (b) mean guidance
                delta_0 = torch.zeros_like(x0)
                for _ in range(cfg.n_iter):
                    delta_0 = delta_0 + mu * self._grad(lambda z: z, x0 + delta_0, gamma, step)
            x_prev = step.update(eps, x0)
            if delta_t is not None:
                x_prev = x_prev + delta_t / math.sqrt(step.alpha)
            if delta_0 is not None:
                x_prev = x_prev + math.sqrt(step.alpha_bar_prev) * delta_0
            x_prev = step.inpaint(x_prev)
        return x_prev


# --- hyper-parameter search and decision-time selection -----------------------------------------
class SearchResult(NamedTuple):
    best: TFGConfig
    score: float
    history: list[tuple[TFGConfig, float]]
    """Every configuration evaluated, in evaluation order, with its score."""


def beam_search_strengths(evaluate: Callable[[TFGConfig], float], start: TFGConfig = TFGConfig(rho=0.25, mu=0.25, gamma=0.001),
                          rounds: int = 6, keep: int = 2,
                          moves: tuple[tuple[str, float, float], ...] = (("rho", 2.0, 8.0), ("mu", 2.0, 8.0), ("gamma", 10.0, 1.0)),
                          ) -> SearchResult:
    """TFG's beam search over guidance strengths (Ye et al. 2024, their hyper-parameter search).

    Start from ``start`` (the authors': rho = mu = 0.25, gamma = 0.001). Each round, every kept
    configuration proposes one child per move (name, factor, cap): that field multiplied by the
    factor (x2 rho, x2 mu, x10 gamma), skipped when the field is 0 or the result exceeds the cap.
    The ``keep`` best of everything evaluated so far survive; ``evaluate(config) -> score`` (higher
    is better) is called once per distinct configuration. Ties go to the earlier-evaluated one.
    """
    if rounds < 0 or keep < 1:
        raise ValueError(f"need rounds >= 0 and keep >= 1, got rounds={rounds}, keep={keep}")
    scores: dict[TFGConfig, float] = {}
    order: list[TFGConfig] = []

    def score(config: TFGConfig) -> None:
        if config not in scores:
            value = float(evaluate(config))
            scores[config] = value if math.isfinite(value) else -math.inf
            order.append(config)

    score(start)
    beam = [start]
    for _ in range(rounds):
        n_before = len(order)
        for config in beam:
            for name, factor, cap in moves:
                value = getattr(config, name)
                if value > 0.0 and value * factor <= cap * (1 + 1e-12):
                    score(dataclasses.replace(config, **{name: value * factor}))
        if len(order) == n_before:
            break
        beam = sorted(order, key=lambda c: -scores[c])[:keep]                              # stable: earlier wins ties
    best = max(order, key=lambda c: scores[c])
    return SearchResult(best, scores[best], [(c, scores[c]) for c in order])


class BestOfN(NamedTuple):
    plan: torch.Tensor
    """(B, H, D) the best candidate of each sample."""
    index: torch.Tensor
    """(B,) long, which candidate won (the first on ties)."""
    scores: torch.Tensor
    """(N, B) every candidate's score (NaN counted as -inf)."""


def best_of_n(candidates: torch.Tensor | Callable[[int], torch.Tensor], score_fn: Callable[[torch.Tensor], torch.Tensor],
              n: int | None = None) -> BestOfN:
    """Decision-time selection: the highest-scoring of N candidate plans, per sample.

    candidates: (N, B, H, D) plans, or a sampler ``i -> (B, H, D)`` called for i = 0..n-1 (give each
    call its own generator). score_fn: (M, H, D) -> (M,), higher is better; it sees all N*B
    candidates at once. With N = 1 the plan is the single candidate, unchanged.
    """
    if callable(candidates):
        if n is None or n < 1:
            raise ValueError(f"a sampler needs n >= 1, got {n}")
        plans = torch.stack([candidates(i) for i in range(n)])                               # (N, B, H, D)
    else:
        plans = candidates
    if plans.dim() != 4:
        raise ValueError(f"candidates must be (N, B, H, D), got {tuple(plans.shape)}")
    n_cand, b = plans.shape[:2]
    with torch.no_grad():
        scores = score_fn(plans.reshape(n_cand * b, *plans.shape[2:])).reshape(n_cand, b)
    scores = torch.nan_to_num(scores.to(torch.float64), nan=-math.inf)
    index = scores.argmax(dim=0)                                                          # (B,)
    return BestOfN(plans[index, torch.arange(b, device=plans.device)], index, scores)

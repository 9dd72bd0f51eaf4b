"""DiffBid: plan the day's state trajectory with a conditional diffusion model, then act by inverse
dynamics (AIGB, Guo et al., KDD 2024, arXiv 2405.16141; Decision Diffuser, Ajay et al., ICLR 2023,
arXiv 2211.15657).

Plan, then control. A denoiser learns the distribution of whole-day plans x (T + 1 rows of the
dynamic state, ``aigb.algos.plan_features``) given the campaign (context c, always on) and the
outcome asked for (y: return rank, CPA satisfaction, budget utilisation):

    x_k = sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps,   cosine schedule, 100 steps          (DDPM eq. 4)
    L_diff = E || eps - eps_theta(x_k, k, emb(c, y or null)) ||^2  over the rows after the prefix

It is trained as a completer (CBD, arXiv 2509.03348): each sample keeps a random realised prefix,
rows 0..t with t ~ U{0..T-1}, clean in x_k and out of the loss, which is the situation of a
re-planning bidder at tick t. y is dropped jointly (p = 0.25) for classifier-free guidance
(Ho & Salimans 2022): eps = eps_u + w (eps_c - eps_u). An inverse-dynamics model (IDM) learns the
action from the recent states and the next one,

    a_t = f([s_{t-2}, s_{t-1}, s_t, s_{t+1}], c, tick info_t),    a = log(alpha / C)
    L_idm = E (a_t - f(.))^2                                     (own optimiser, logged transitions)

Serving (``DiffBidPlanner``): at tick t the realised rows 0..t are in-painted, DDIM samples the
rest (K steps, eta 0, initial noise x temperature, one seeded generator per (campaign seed, tick)),
and the IDM turns s_{t+1} of the plan into the tick's action. The denoiser and condition network
used for planning are exponential moving averages of the trained ones. Without retraining, the
samples can be steered toward an objective on the plan (``plan_objectives``, training-free
guidance: ``aigb.diffusion.guidance``), and N candidates sampled as one batch can be ranked by a
learned evaluator (``plan_evaluator``), the plan's own claimed score, and/or the objective.

The generic pieces (schedule, denoisers, condition embedding, completer loss, samplers) live in
``aigb.diffusion``; this file holds what is specific to bidding.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aigb.algos.base import TorchAlgorithm, check_common_config, mlp, require, require_positive, validate_history
from aigb.algos.device import resolve_device
from aigb.algos.plan_features import (
    PLAN_VERSION, PLAN_VIEWS, RobustScaler, efficiency_rank, make_plan_view, whole_trajectories,
)
from aigb.diffusion import (
    DENOISERS, ConditionEmbedding, CosineSchedule, TFGConfig, TFGGuidance, best_of_n, cfg_eps_fn, completer_loss, ddim_sample,
    x0_model_eps_fn,
)
from aigb.seeding import torch_seed

__all__ = ["DiffBidConfig", "DiffBidTraining", "ServingDefaults", "DiffBid", "DiffBidPlanner", "PlanStep", "InverseDynamics", "PLAN_BATCH_FIELDS",
           "EFFICIENCY_LEVELS", "SELECTIONS"]

LEVEL_DAYS = ("open_loop", "held", "all")
OPEN_LOOP_AUTOCORR = 0.25
"""A day whose logged actions have a lag-1 autocorrelation under this is open-loop (no feedback)."""
SUPPORT_LEVELS = np.linspace(0.5, 1.0, 11)
"""Quantiles at which a level planner's checkpoint stores, per tick, the levels of the open-loop
training days still bidding at that tick (``DiffBid.level_support``)."""
LEVEL_QUANTILES = (0.05, 0.95)
"""The bid levels a level planner searches span these quantiles of the training days' levels
(the mean logged action of a whole day; on the default dataset about -1.8 to 0.96)."""
EFFICIENCY_LEVELS = np.linspace(0.0, 1.0, 101)
"""Levels at which the checkpoint stores the training campaigns' score efficiency, so a return
condition R (a rank) can be read as an efficiency score x C / B."""


@dataclass(frozen=True)
class DiffBidTraining:
    """What a DiffBid planner is and how it learns. Defaults follow research/diffbid_anchors.md §1."""

    plan: str = "market"
    """What is diffused: "market" (the 7 plan channels of v1 states, aigb.algos.plan_features),
    "demand" (those plus each tick's own demand; measured worse, kept to reproduce it) or "raw"
    (the states themselves; any feature set, e.g. the contract checker's synthetic data)."""
    n_ticks: int = 48
    """Ticks per day T; plans have T + 1 rows (the state before each tick and after the last)."""
    denoiser: str = "transformer"
    """Noise predictor: "transformer" (meets the CPU latency budget) or "unet" (Diffuser's temporal
    U-Net, for parity with the papers; ~6x slower per tick on a CPU)."""
    d_model: int = 64
    """Transformer width (anchors: 64 x 2 layers x 4 heads, ~0.12 M parameters, ~10 ms per tick)."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads; must divide d_model."""
    unet_dim: int = 32
    """U-Net base channels (levels x1, x2, x4), when denoiser = "unet"."""
    emb_dim: int = 64
    """Width of the condition embedding (context + outcome)."""
    diffusion_steps: int = 100
    """Training diffusion steps of the cosine schedule (Nichol & Dhariwal 2021)."""
    prediction: str = "x0"
    """What the denoiser predicts: "x0", the clean plan (Diffuser's choice for planning), or "eps",
    the noise. An eps model's plan estimate at high noise divides its error by sqrt(abar) (~1/2,000
    at the cosine schedule's last step); on the default dataset an eps DiffBid at 1,500 updates
    predicted the next plan row at noise level 90 with a scaled RMSE of 0.56-0.97 per channel, worse
    than repeating the current row (0.07-0.48), and so planned days that ignore the realised prefix."""
    known_input: bool = True
    """Give the denoiser each row's known (realised) flag as an input. Without it a small completer
    must tell the clean prefix from noise by its values and barely uses it: on a toy of lines, the
    completion error fell from 0.54 to 0.19 RMS (DDIM) with the flag (tests/diffusion); on the
    default dataset, a DiffBid without it planned a next budget share of -0.09 from a realised 0.52
    at 1,500 updates."""
    next_row_weight: float = 1.0
    """Loss weight of the first unknown row, the state the inverse dynamics acts on (CleanDiffuser's
    Decision Diffuser pipeline uses 10); 1 weighs every unknown row alike."""
    condition: str = "outcome"
    """What the plan is conditioned on besides the campaign. "outcome": the outcome asked for (return
    rank, CPA satisfaction, budget utilisation; AIGB), the IDM acts on the planned next state.
    "level": the bid level a = log(alpha / C) held over the rest of the day (the mean logged action
    of the ticks from the plan's first unknown one to exhaustion), which makes the planner a
    generative model of how the day unfolds under a bid level; serving searches ``search_levels``
    levels (``search_samples`` plans each, sharing their noise) and bids the level whose planned day
    scores best (plus any objective), re-planning every tick."""
    level_days: str = "open_loop"
    """Which training days teach a "level" planner what a level does: "open_loop", the days whose
    logged actions show no feedback (lag-1 autocorrelation of the actions over the active ticks
    < ``OPEN_LOOP_AUTOCORR``, at least 12 active ticks: fixed-rate bidders and their per-tick noise),
    or "all". The other days still train the planner, with the condition dropped. A pacing bidder
    lowers its level *because* its market is cheap, so over all days a low level comes with a spent
    budget (default dataset: 10 % left whatever the level) while on open-loop days it leaves the
    budget unspent (85 % left at levels -1.2..-0.8, 0 % at 0.8..1.2): only the latter say what
    bidding a level does. "held": the open-loop days, plus every other day from the tick its
    actions stop changing until its last active tick (``held_from``; at least two ticks), e.g. a
    dataset's holding advertisers (``aigb generate --hold-share``), which hold one level after a
    closed-loop morning: the condition is kept for the prefixes that end inside the held part."""
    condition_dropout: float = 0.25
    """Probability that a training sample's outcome condition is replaced by the null embedding
    (Decision Diffuser 0.25, AIGB 0.2); the context is never dropped."""
    cpa_condition_scale: float = 1.0
    """The CPA condition E = min(1, (k C / CPA)^2) is computed against k x C. A model trained with
    k = 0.8 plans for CPAs within 0.8 C when asked for E = 1: the retrained reference that serving-time
    guidance toward the same target (``guide=cpa:0.8``) is compared with; 1 is the campaign's own C."""
    idm_hidden_dims: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of the inverse-dynamics MLP (AIGB baseline: 3 x 256)."""
    idm_rows: tuple[int, ...] = (-2, -1, 0, 1)
    """Plan rows the inverse dynamics reads, as offsets from the acting tick t (0: the realised
    state s_t, 1: the planned s_{t+1}; rows before 0 repeat row 0, rows after T repeat row T). Must
    contain 0 and 1. Negative offsets give it the realised history; positive ones beyond 1 the
    plan's later rows."""
    completer: bool = True
    """Train as a completer: each sample keeps a random realised prefix (rows 0..t, t uniform over
    the day) clean and learns the rest. False (the ablation): only row 0, the day's first state,
    is kept clean, so the denoiser only ever learns whole days; serving still in-paints the
    realised rows by replacement."""
    lr: float = 3e-4
    """AdamW peak learning rate of the denoiser and condition network."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay on matrix weights."""
    warmup_steps: int = 500
    """Linear warm-up of the learning rate, then a cosine decay to 10 % at ``steps``."""
    idm_lr: float = 3e-4
    """Adam learning rate of the inverse dynamics (its own optimiser)."""
    ema: float = 0.999
    """Decay of the exponential moving average of the denoiser and condition weights that plan
    (warmed up as min(ema, (1 + n) / (10 + n)) so short runs are not stuck at the initial weights)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip of each optimiser."""
    batch_size: int = 256
    """Campaign-days per update (each gives one plan and one IDM transition)."""
    steps: int = 15_000
    """Updates per run (anchors: ~15k at batch 256, early-stopped on the validation market score;
    about 55 min at the measured ~0.22 s per step on one CPU thread)."""

    def __post_init__(self) -> None:
        self._check_training()

    def _check_training(self) -> None:
        check_common_config(self)
        require(isinstance(self.completer, bool), "completer", f"must be true or false, got {self.completer!r}")
        require(self.plan in PLAN_VIEWS, "plan", f"must be one of {', '.join(PLAN_VIEWS)}, got {self.plan!r}")
        require(self.level_days in LEVEL_DAYS, "level_days", f"must be one of {', '.join(map(repr, LEVEL_DAYS))}, got {self.level_days!r}")
        require(self.condition in ("outcome", "level"), "condition", f"must be 'outcome' or 'level', got {self.condition!r}")
        require(self.denoiser in DENOISERS, "denoiser", f"must be one of {', '.join(DENOISERS)}, got {self.denoiser!r}")
        require(self.prediction in ("eps", "x0"), "prediction", f"must be 'eps' or 'x0', got {self.prediction!r}")
        for name in ("n_ticks", "d_model", "n_layers", "n_heads", "unet_dim", "emb_dim", "diffusion_steps"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, f"must be an integer >= 1, got {value!r}")
        require(self.d_model % self.n_heads == 0, "n_heads", f"must divide d_model {self.d_model}, got {self.n_heads}")
        dims = tuple(self.idm_hidden_dims)
        require(len(dims) >= 1 and all(isinstance(d, (int, np.integer)) and d >= 1 for d in dims), "idm_hidden_dims",
                f"must be a non-empty tuple of integers >= 1, got {self.idm_hidden_dims!r}")
        object.__setattr__(self, "idm_hidden_dims", tuple(int(d) for d in dims))
        rows = tuple(self.idm_rows)
        require(all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in rows) and len(set(rows)) == len(rows)
                and {0, 1} <= set(rows) and all(-self.n_ticks < r <= self.n_ticks for r in rows), "idm_rows",
                f"must be distinct integer offsets in ({-self.n_ticks}, {self.n_ticks}] including 0 and 1, got {self.idm_rows!r}")
        object.__setattr__(self, "idm_rows", tuple(sorted(int(r) for r in rows)))
        require(math.isfinite(self.cpa_condition_scale) and self.cpa_condition_scale > 0, "cpa_condition_scale",
                f"must be a finite number > 0, got {self.cpa_condition_scale}")
        require(0.0 <= self.condition_dropout < 1.0, "condition_dropout", f"must lie in [0, 1), got {self.condition_dropout}")
        require_positive(self, "lr", "idm_lr", "grad_clip", "next_row_weight")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "warmup_steps", f"must be an integer >= 0, got {self.warmup_steps!r}")
        require(0.0 <= self.ema < 1.0, "ema", f"must lie in [0, 1), got {self.ema}")


@dataclass(frozen=True)
class ServingDefaults:
    """How a trained planner plans by default: the values a checkpoint stores and a ``diffbid:``
    spec overrides without retraining (``aigb.algos.diffbid_serving``)."""

    sampling_steps: int = 10
    """DDIM steps K per tick at serving (anchors: K = 10 beat K = 30 on AuctionNet; sweep 5/10/20)."""
    eta: float = 0.0
    """DDIM stochasticity (0: deterministic given the initial noise)."""
    temperature: float = 0.5
    """Scale of the initial and per-step noise at serving (Decision Diffuser's low temperature)."""
    guidance: float = 1.2
    """Classifier-free guidance weight w: eps = eps_u + w (eps_c - eps_u); 0 unconditional, 1 plain
    conditional (Decision Diffuser 1.2, AIGB 0.2; to be swept)."""
    target_return: float = 0.9
    """Return condition at serving: the score-efficiency rank in [0, 1] to plan for."""
    target_cpa: float = 1.0
    """CPA condition at serving: min(1, (C / CPA)^2) in [0, 1] (1: within the target CPA)."""
    target_util: float = 1.0
    """Budget-utilisation condition at serving, spend / B in [0, 1]."""
    clip_x0: float = 3.0
    """Clip of the predicted clean plan during sampling, in scaled units (the 1st-99th percentile
    range of every channel maps to [-1, 1]); 0 turns clipping off."""
    search_levels: int = 16
    """Bid levels tried per tick by a "level" planner, evenly spaced over the 5th-95th percentile
    range of the training days' levels (``LEVEL_QUANTILES``)."""
    search_samples: int = 2
    """Plans sampled per level and tick (their scores averaged); the same noise serves every level."""
    support: float = 0.9
    """A level planner searches, at tick t, only levels up to this quantile of the levels of the
    open-loop training days still bidding at t (1: every level). High levels leave the data as the
    day goes on (they exhaust their budgets: the 90th percentile falls from 0.88 at tick 0 to 0.39
    at tick 36 on the default dataset), and there the planner's outcomes are extrapolation: without
    the cap it raised its bids through the afternoon into CPAs of 1.5-2.6 C."""
    max_change: float = 0.0
    """A level planner's trust region: from tick 1 on, search only levels within this distance (in
    log(alpha / C)) of the last tick's (0: no limit)."""
    refine: bool = False
    """A level planner bids between grid levels: the vertex of the parabola through the best
    level's score and its two neighbours' (when both were searched), within half a grid step of
    the best level; False bids the best grid level."""
    day_noise: bool = False
    """Draw a planner's sampling noise once per day (the same draw at every tick) instead of once
    per tick: consecutive decisions then differ only through what the day has realised."""

    def __post_init__(self) -> None:
        self._check_serving()

    def _check_serving(self) -> None:
        require(math.isfinite(self.max_change) and self.max_change >= 0, "max_change", f"must be a finite number >= 0, got {self.max_change}")
        require(0.5 <= self.support <= 1.0, "support", f"must lie in [0.5, 1], got {self.support}")
        for name in ("search_levels", "search_samples", "sampling_steps"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, f"must be an integer >= 1, got {value!r}")
        require_positive(self, "temperature")
        require(self.eta >= 0.0, "eta", f"must be >= 0, got {self.eta}")
        require(math.isfinite(self.guidance) and self.guidance >= 0.0, "guidance", f"must be a finite number >= 0, got {self.guidance}")
        for name in ("target_return", "target_cpa", "target_util"):
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and 0.0 <= value <= 1.0, name, f"must lie in [0, 1], got {value!r}")
        require(self.clip_x0 >= 0.0, "clip_x0", f"must be >= 0, got {self.clip_x0}")


@dataclass(frozen=True)
class DiffBidConfig(ServingDefaults, DiffBidTraining):
    """A DiffBid checkpoint's config: the training config (``DiffBidTraining``) and the serving
    defaults it stores (``ServingDefaults``), one flat set of fields so that ``--set KEY=VALUE``
    reaches either and older checkpoints load unchanged."""

    def __post_init__(self) -> None:
        self._check_training()
        self._check_serving()
        require(self.sampling_steps <= self.diffusion_steps, "sampling_steps", f"must be <= diffusion_steps {self.diffusion_steps}, got {self.sampling_steps}")

    @property
    def training(self) -> DiffBidTraining:
        """The training part alone."""
        return DiffBidTraining(**{f.name: getattr(self, f.name) for f in fields(DiffBidTraining)})

    @property
    def serving(self) -> ServingDefaults:
        """The stored serving defaults alone."""
        return ServingDefaults(**{f.name: getattr(self, f.name) for f in fields(ServingDefaults)})


# --------------------------------------------------------------------------------------------
# Batches: one whole day per sample
# --------------------------------------------------------------------------------------------

PLAN_BATCH_FIELDS = {"obs": 3, "context": 2, "outcome": 2, "prefix": 1, "tick": 1, "tick_info": 2, "action": 1}
"""Field -> dims. obs (B, T+1, P) plans in plan units; context (B, C); outcome (B, O); prefix (B,)
the tick t whose rows 0..t are known; tick (B,) the IDM's transition tick (one whose bids could
act: budget left); tick_info (B, I) of that tick; action (B,) the logged action of that tick."""


class InverseDynamics(nn.Module):
    """Plan rows around the acting tick (``DiffBidConfig.idm_rows``; by default [s_{t-2}, s_{t-1},
    s_t, s_{t+1}], scaled), context, tick info -> unit action in [-1, 1]."""

    def __init__(self, plan_dim: int, context_dim: int, info_dim: int, hidden_dims: tuple[int, ...], n_rows: int = 4) -> None:
        super().__init__()
        self.net = mlp(n_rows * plan_dim + context_dim + info_dim, hidden_dims, 1)

    def forward(self, rows: torch.Tensor, context: torch.Tensor, info: torch.Tensor) -> torch.Tensor:
        """rows (B, R, P), context (B, C), info (B, I) -> (B,)."""
        return torch.tanh(self.net(torch.cat([rows.flatten(1), context, info], dim=-1))).squeeze(-1)


def open_loop_days(action: np.ndarray, active_ticks: np.ndarray, min_ticks: int = 12) -> np.ndarray:
    """(N,) bool: days whose actions over their active ticks (``action`` (N, T), ``active_ticks``
    (N,)) look open-loop, i.e. a level plus independent noise: lag-1 autocorrelation of the
    deviations from the day's mean < ``OPEN_LOOP_AUTOCORR``, over at least ``min_ticks`` ticks (a
    constant day counts as open-loop)."""
    action = np.asarray(action, dtype=np.float64)
    k = np.asarray(active_ticks, dtype=np.int64)
    live = np.arange(action.shape[1])[None] < k[:, None]
    mean = np.where(live, action, 0.0).sum(axis=1) / np.maximum(k, 1)
    d = np.where(live, action - mean[:, None], 0.0)
    num = (d[:, 1:] * d[:, :-1]).sum(axis=1)
    den = (d * d).sum(axis=1)
    autocorr = np.where(den > 1e-12, num / np.maximum(den, 1e-12), 0.0)
    return (autocorr < OPEN_LOOP_AUTOCORR) & (k >= min_ticks)


def held_from(action: np.ndarray, active_ticks: np.ndarray, open_loop: np.ndarray, min_ticks: int = 2) -> np.ndarray:
    """(N,) int: the first tick from which each day's logged actions say what holding a level
    does: 0 for an open-loop day (``open_loop`` (N,) bool); otherwise the start s of the run of
    actions exactly equal to the last active one (a_s = ... = a_{k-1}, k = active ticks) when it
    covers at least ``min_ticks`` ticks; T (no tick) when it does not."""
    action = np.asarray(action, dtype=np.float64)
    n, t_max = action.shape
    k = np.clip(np.asarray(active_ticks, dtype=np.int64), 1, t_max)
    ticks = np.arange(t_max)
    last = action[np.arange(n), k - 1][:, None]
    differs = (action != last) & (ticks[None] < k[:, None])                             # (N, T)
    start = np.where(differs.any(axis=1), t_max - np.argmax(differs[:, ::-1], axis=1), 0)   # after the last differing tick
    held = (k - start) >= min_ticks
    return np.where(np.asarray(open_loop, dtype=bool), 0, np.where(held, start, t_max)).astype(np.int64)


def level_support(level: np.ndarray, active_ticks: np.ndarray, days: np.ndarray | None = None) -> np.ndarray:
    """(len(SUPPORT_LEVELS), T): per tick t, the SUPPORT_LEVELS quantiles of ``level[:, t]`` over the
    days (``days`` (N,) bool, or (N, T) bool per day and tick; None: all) still bidding at t
    (t < active ticks); a tick with no such day takes the previous tick's column (the first:
    every day's)."""
    level = np.asarray(level, dtype=np.float64)
    active_ticks = np.asarray(active_ticks)
    n, t_max = level.shape
    chosen = np.ones((n, t_max), dtype=bool) if days is None or not np.any(days) else np.asarray(days, dtype=bool)
    if chosen.ndim == 1:
        chosen = np.repeat(chosen[:, None], t_max, axis=1)
    out = np.empty((SUPPORT_LEVELS.size, t_max))
    for t in range(t_max):
        live = chosen[:, t] & (active_ticks > t)
        if live.any():
            out[:, t] = np.quantile(level[live, t], SUPPORT_LEVELS)
        else:
            first = chosen[:, 0] if chosen[:, 0].any() else np.ones(n, dtype=bool)
            out[:, t] = out[:, t - 1] if t else np.quantile(level[first, 0], SUPPORT_LEVELS)
    return out


def remaining_levels(action: np.ndarray, active_ticks: np.ndarray) -> np.ndarray:
    """The bid level of every (campaign, tick): the mean of a_t .. a_{k-1}, k the campaign's active
    ticks (``action`` (N, T), ``active_ticks`` (N,) >= 1) -> (N, T) float64; ticks from k on (no
    bid acts any more) take a_{k-1}, the level the day ended on."""
    action = np.asarray(action, dtype=np.float64)
    n, t_max = action.shape
    k = np.clip(np.asarray(active_ticks, dtype=np.int64), 1, t_max)
    ticks = np.arange(t_max)
    live = np.where(ticks[None] < k[:, None], action, 0.0)
    tail = np.cumsum(live[:, ::-1], axis=1)[:, ::-1]                                   # sum over s >= t of live a_s
    count = np.maximum(k[:, None] - ticks[None], 1)
    last = action[np.arange(n), k - 1][:, None]
    return np.where(ticks[None] < k[:, None], tail / count, last)


def parabola_vertex(left: float, mid: float, right: float) -> float:
    """Where the parabola through (-1, left), (0, mid), (1, right) peaks, when ``mid`` is the
    largest of the three: an offset in [-0.5, 0.5] grid steps (0 for a flat or upward curve)."""
    curve = left - 2.0 * mid + right
    return float(np.clip(0.5 * (left - right) / curve, -0.5, 0.5)) if curve < 0 else 0.0


def transition_rows(plans: torch.Tensor, tick: torch.Tensor, offsets: tuple[int, ...] = (-2, -1, 0, 1)) -> torch.Tensor:
    """Rows t + o (o in ``offsets``; by default t-2, t-1, t, t+1) of each plan (B, T+1, P) at ticks
    (B,) -> (B, R, P); rows before 0 repeat row 0 (the first ticks have no history yet, in training
    and at serving alike), rows after the last repeat the last (the day's end)."""
    offsets = torch.as_tensor(offsets, device=plans.device)                               # (R,)
    idx = (tick[:, None].to(plans.device) + offsets[None]).clamp(0, plans.shape[1] - 1)  # (B, R)
    return torch.gather(plans, 1, idx[..., None].expand(-1, -1, plans.shape[-1]))


# --------------------------------------------------------------------------------------------
# The algorithm
# --------------------------------------------------------------------------------------------

class DiffBid(TorchAlgorithm):
    """Conditional diffusion planner (completer training, CFG) plus inverse dynamics."""

    name = "diffbid"
    config_class = DiffBidConfig
    legacy_config = {"prediction": "eps", "known_input": False}
    """What a checkpoint that does not name these fields was trained with (they came later)."""
    batch_kind = "plans"
    _cache: tuple[object, dict] | None = None   # (dataset, its plans/contexts/outcomes), made on first use

    def __init__(self, config, feature_dim: int, *, seed: int = 0, device: str | torch.device = "cpu") -> None:
        self.device = resolve_device(device)
        cfg = self.config_class() if config is None else config
        self.view = make_plan_view(cfg.plan, int(feature_dim), cfg.n_ticks) if isinstance(cfg, DiffBidConfig) else None
        super().__init__(config, feature_dim, seed=seed)
        self.schedule = CosineSchedule(self.config.diffusion_steps)

    # --- networks ------------------------------------------------------------------------------
    @property
    def horizon(self) -> int:
        return self.config.n_ticks + 1

    @property
    def outcome_names(self) -> tuple[str, ...]:
        """The droppable condition's names: the view's outcomes, or ("level",)."""
        return ("level",) if self.config.condition == "level" else tuple(self.view.outcome_names)

    def _networks(self) -> nn.ModuleDict:
        cfg, v = self.config, self.view
        p, c, o, i = len(v.channels), len(v.context_names), len(self.outcome_names), len(v.tick_info_names)
        if cfg.denoiser == "transformer":
            denoiser = DENOISERS["transformer"](self.horizon, p, emb_dim=cfg.emb_dim, d_model=cfg.d_model,
                                                n_layers=cfg.n_layers, n_heads=cfg.n_heads, known_input=cfg.known_input)
        else:
            denoiser = DENOISERS["unet"](self.horizon, p, emb_dim=cfg.emb_dim, dim=cfg.unet_dim, known_input=cfg.known_input)
        cond = ConditionEmbedding(c, o, emb_dim=cfg.emb_dim, drop_prob=cfg.condition_dropout)
        return nn.ModuleDict({
            "cond": cond, "denoiser": denoiser,
            "ema_cond": copy.deepcopy(cond), "ema_denoiser": copy.deepcopy(denoiser),
            "idm": InverseDynamics(p, c, i, cfg.idm_hidden_dims, n_rows=len(cfg.idm_rows)),
        })

    def _init_networks(self, generator: torch.Generator) -> None:
        super()._init_networks(generator)
        for name in ("cond", "denoiser"):
            self.nets[f"ema_{name}"].load_state_dict(self.nets[name].state_dict())
            self.nets[f"ema_{name}"].requires_grad_(False)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        params = [p for name in ("cond", "denoiser") for p in self.nets[name].parameters()]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return {"diffusion": torch.optim.AdamW(groups, lr=cfg.lr),
                "idm": torch.optim.Adam(self.nets["idm"].parameters(), lr=cfg.idm_lr)}

    def reset(self, seed: int) -> None:
        super().reset(seed)
        # Module.to moves parameters in place, so the optimisers keep pointing at them.
        self.nets.to(self.device)
        self.plan_scaler = RobustScaler.identity(len(self.view.channels))
        self.context_scaler = RobustScaler.identity(len(self.view.context_names))
        self.info_scaler = RobustScaler.identity(len(self.view.tick_info_names))
        self.efficiency_levels = np.full(EFFICIENCY_LEVELS.size, np.nan)
        self.level_range = np.array([self.bounds.low, self.bounds.high], dtype=np.float64)
        self.level_support = np.full((SUPPORT_LEVELS.size, self.config.n_ticks), self.bounds.high, dtype=np.float64)
        self.task = "cpa"

    def to_device(self, device: str | torch.device) -> "DiffBid":
        """Train (and plan) on ``device`` ('auto', 'cpu', 'cuda'); random draws stay on the CPU
        generator, so a run's batches and noise do not depend on the device."""
        self.device = resolve_device(device)
        self.nets.to(self.device)
        return self

    # --- data ------------------------------------------------------------------------------------
    def _arrays(self, dataset: Any) -> dict[str, np.ndarray]:
        """Plans, contexts, tick information, outcomes and actions of every training campaign."""
        if self._cache is not None and self._cache[0] is dataset:
            return self._cache[1]
        tr = whole_trajectories(dataset)
        obs, terminal = tr["obs"], tr["terminal"]                                       # (N, T, F), (N, F)
        if obs.shape[1] != self.config.n_ticks:
            raise ValueError(f"dataset: trajectories have {obs.shape[1]} ticks, the config plans {self.config.n_ticks} "
                             f"(set n_ticks={obs.shape[1]})")
        days = np.concatenate([obs, terminal[:, None]], axis=1)                          # (N, T+1, F)
        rank = efficiency_rank(tr["efficiency"])
        arrays = {
            "plan": self.view.plan(days),                                                # (N, T+1, P)
            "context": self.view.context(days),                                          # (N, C)
            "tick_info": self.view.tick_info(obs),                                       # (N, T, I)
            "outcome": self.view.outcomes(terminal, rank, cpa_scale=self.config.cpa_condition_scale,
                                          task=tr["task"]),                              # (N, O)
            "action": tr["action"],                                                      # (N, T)
            "efficiency": tr["efficiency"],
            # Ticks 0..k-1 of a campaign can act; from its exhaustion on the market zeroes the bids,
            # and the logged alpha (still recorded) says nothing about the next state.
            "active_ticks": np.maximum(1, self.view.can_act(obs).sum(axis=1)),          # (N,)
            "task": tr["task"],
        }
        arrays["level"] = remaining_levels(self.bounds.clip(arrays["action"]), arrays["active_ticks"])   # (N, T)
        arrays["open_loop"] = open_loop_days(arrays["action"], arrays["active_ticks"])                # (N,)
        arrays["held_from"] = held_from(arrays["action"], arrays["active_ticks"], arrays["open_loop"])  # (N,)
        self._cache = (dataset, arrays)
        return arrays

    def _adapt(self, dataset: Any, seed: int) -> None:
        self.view.check_feature_version(self.feature_version)
        a = self._arrays(dataset)
        self.plan_scaler = RobustScaler.fit(a["plan"])
        self.context_scaler = RobustScaler.fit(a["context"])
        self.info_scaler = RobustScaler.fit(a["tick_info"])
        self.efficiency_levels = np.quantile(a["efficiency"], EFFICIENCY_LEVELS)
        self.level_range, self.level_support = self.level_tables(a)
        self.task = str(a["task"])

    def level_tables(self, arrays: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The search tables of a level planner, from the training arrays (``_arrays``): the range
        of levels searched (``LEVEL_QUANTILES`` of the day levels) and the per-tick support
        (``level_support``), both over the open-loop days with ``level_days = "open_loop"`` (all
        days when there are none), the support with ``"held"`` over the (day, tick)s from each
        day's ``held_from`` on, and both over every day with ``"all"``."""
        days = arrays["open_loop"] if self.config.level_days in ("open_loop", "held") else None
        if days is not None and not days.any():
            days = None
        first = arrays["level"][:, 0] if days is None else arrays["level"][days, 0]
        ticks = days
        if self.config.level_days == "held":
            ticks = np.arange(arrays["level"].shape[1])[None] >= arrays["held_from"][:, None]          # (N, T)
        return (np.quantile(first, LEVEL_QUANTILES).astype(np.float64),
                level_support(arrays["level"], arrays["active_ticks"], ticks))

    def sample_batch(self, dataset: Any, batch_size: int, rng: np.random.Generator) -> dict:
        a = self._arrays(dataset)
        n, t_max = a["action"].shape
        i = rng.integers(0, n, size=batch_size)
        prefix = rng.integers(0, t_max, size=batch_size)
        if not self.config.completer:   # the ablation: whole days, row 0 known (drawn anyway: same stream)
            prefix = np.zeros_like(prefix)
        tick = rng.integers(0, a["active_ticks"][i])     # the IDM learns from ticks whose bids could act
        outcome = (a["outcome"][i] if self.config.condition == "outcome"
                   else self.bounds.to_unit(a["level"][i, prefix])[:, None].astype(np.float32))
        batch = {"obs": a["plan"][i], "context": a["context"][i], "outcome": outcome,
                "prefix": prefix.astype(np.int64), "tick": tick.astype(np.int64),
                "tick_info": a["tick_info"][i, tick], "action": a["action"][i, tick].astype(np.float32)}
        if self.config.condition == "level" and self.config.level_days == "open_loop":
            batch["condition_known"] = a["open_loop"][i]
        elif self.config.condition == "level" and self.config.level_days == "held":
            batch["condition_known"] = prefix >= a["held_from"][i]
        return batch

    def _batch_tensors(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if not isinstance(batch, Mapping):
            raise TypeError(f"plan batch must be a mapping of arrays, got {type(batch).__name__}")
        missing = [k for k in PLAN_BATCH_FIELDS if k not in batch]
        if missing:
            raise ValueError(f"plan batch: missing field(s) {missing}; expected {sorted(PLAN_BATCH_FIELDS)}")
        v, h = self.view, self.horizon
        widths = {"obs": len(v.channels), "context": len(v.context_names), "outcome": len(self.outcome_names),
                  "tick_info": len(v.tick_info_names)}
        b = np.shape(batch["obs"])[0] if np.ndim(batch["obs"]) else 0
        out = {}
        for key, ndim in PLAN_BATCH_FIELDS.items():
            arr = np.asarray(batch[key])
            if arr.ndim != ndim or arr.shape[0] != b:
                raise ValueError(f"plan batch field {key!r}: expected {ndim} dims with batch {b}, got shape {arr.shape}")
            if key in widths and arr.shape[-1] != widths[key]:
                raise ValueError(f"plan batch field {key!r}: width {arr.shape[-1]} != {widths[key]}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"plan batch field {key!r}: contains NaN or inf")
            out[key] = arr
        if b == 0:
            raise ValueError("plan batch is empty")
        if out["obs"].shape[1] != h:
            raise ValueError(f"plan batch field 'obs': {out['obs'].shape[1]} rows != horizon {h} (n_ticks + 1)")
        for key in ("prefix", "tick"):
            if np.any(out[key] < 0) or np.any(out[key] >= self.config.n_ticks) or np.any(out[key] != np.round(out[key])):
                raise ValueError(f"plan batch field {key!r}: must be integer ticks in [0, {self.config.n_ticks - 1}]")
        dev = self.device
        tensors = {k: torch.as_tensor(out[k], dtype=torch.float32, device=dev) for k in ("obs", "context", "outcome", "tick_info", "action")}
        tensors.update({k: torch.as_tensor(out[k], dtype=torch.int64, device=dev) for k in ("prefix", "tick")})
        return tensors

    # --- training ------------------------------------------------------------------------------
    def _lr(self) -> float:
        cfg, n = self.config, self.n_updates
        warm = min(1.0, (n + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        progress = min(1.0, n / cfg.steps)
        return cfg.lr * warm * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        cfg = self.config
        b = self._batch_tensors(batch)
        self.nets.train()
        x0 = self.plan_scaler.to_unit(b["obs"])                                          # (B, H, P)
        context = self.context_scaler.to_unit(b["context"])                              # (B, C)
        row = torch.arange(self.horizon, device=self.device)[None]                       # (1, H)
        known = row <= b["prefix"][:, None]                                              # (B, H) rows 0..t

        # Diffusion: completer loss with the outcome dropped jointly for guidance.
        lr = self._lr()
        opt = self.optimizers["diffusion"]
        for group in opt.param_groups:
            group["lr"] = lr
        cond = self.nets["cond"]
        drop = cond.drop_mask(x0.shape[0], self.train_generator)
        if "condition_known" in batch:   # a level planner learns levels from open-loop days only
            drop = drop | ~torch.as_tensor(np.asarray(batch["condition_known"], dtype=bool), device=drop.device)
        emb = cond(context, b["outcome"], drop=drop)
        weight = None
        if cfg.next_row_weight != 1.0:
            weight = 1.0 + (cfg.next_row_weight - 1.0) * (row == b["prefix"][:, None] + 1).float()   # (B, H)
        diffusion_loss = completer_loss(self.nets["denoiser"], self.schedule, x0, emb, known, self.train_generator, weight,
                                        prediction=cfg.prediction)
        opt.zero_grad(set_to_none=True)
        diffusion_loss.backward()
        grad_norm = nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
        opt.step()

        idm_loss = self._idm_step(b, x0, context)
        self._update_ema()
        self.n_updates += 1
        return {"diffusion_loss": diffusion_loss.item(), "idm_loss": idm_loss, "grad_norm": float(grad_norm), "lr": lr}

    def _idm_step(self, b: Mapping[str, torch.Tensor], x0: torch.Tensor, context: torch.Tensor) -> float:
        """One update of the inverse dynamics on the logged transitions (rows around t) -> a_t."""
        rows = transition_rows(x0, b["tick"], self.config.idm_rows)                      # (B, R, P)
        info = self.info_scaler.to_unit(b["tick_info"])
        pred = self.bounds.from_unit(self.nets["idm"](rows, context, info))              # (B,)
        idm_loss = F.mse_loss(pred, self.bounds.clip(b["action"]))
        idm_opt = self.optimizers["idm"]
        idm_opt.zero_grad(set_to_none=True)
        idm_loss.backward()
        nn.utils.clip_grad_norm_(self.nets["idm"].parameters(), self.config.grad_clip)
        idm_opt.step()
        return idm_loss.item()

    def update_inverse_dynamics(self, batch: Mapping[str, np.ndarray]) -> float:
        """One update of the inverse dynamics alone (the planner is left as it is): refits an
        inverse dynamics of other rows (``idm_rows``) under a trained planner. Returns the loss."""
        b = self._batch_tensors(batch)
        self.nets["idm"].train()
        return self._idm_step(b, self.plan_scaler.to_unit(b["obs"]), self.context_scaler.to_unit(b["context"]))

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.config.ema, (1.0 + self.n_updates) / (10.0 + self.n_updates))
        for name in ("cond", "denoiser"):
            for e, p in zip(self.nets[f"ema_{name}"].parameters(), self.nets[name].parameters()):
                e.lerp_(p, 1.0 - decay)

    # --- serialisation ---------------------------------------------------------------------------
    def _extra_state(self) -> dict:
        return {
            "plan": self.view.kind, "plan_version": PLAN_VERSION,
            "channels": list(self.view.channels), "outcomes": list(self.view.outcome_names),
            "plan_scaler": self.plan_scaler.state_dict(), "context_scaler": self.context_scaler.state_dict(),
            "info_scaler": self.info_scaler.state_dict(),
            "efficiency_levels": torch.as_tensor(self.efficiency_levels, dtype=torch.float64),
            "level_range": torch.as_tensor(self.level_range, dtype=torch.float64), "task": self.task,
            "level_support": torch.as_tensor(self.level_support, dtype=torch.float64),
        }

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        if extra.get("plan") != self.view.kind or extra.get("plan_version") != PLAN_VERSION:
            raise ValueError(f"diffbid state: plan {extra.get('plan')!r} version {extra.get('plan_version')!r} != this code's "
                             f"{self.view.kind!r} {PLAN_VERSION!r}; retrain")
        self.plan_scaler = RobustScaler.from_state_dict(extra["plan_scaler"])
        self.context_scaler = RobustScaler.from_state_dict(extra["context_scaler"])
        self.info_scaler = RobustScaler.from_state_dict(extra["info_scaler"])
        self.efficiency_levels = np.asarray(extra["efficiency_levels"], dtype=np.float64)
        if "level_range" in extra:   # checkpoints from before level conditioning do not need it
            self.level_range = np.asarray(extra["level_range"], dtype=np.float64)
        if "level_support" in extra:
            self.level_support = np.asarray(extra["level_support"], dtype=np.float64)
        self.task = str(extra.get("task", "cpa"))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.nets.to(self.device)

    def policy(self, **options) -> "DiffBidPlanner":
        """The planner with the config's serving defaults, on the training device; ``options``
        override them (see ``DiffBidPlanner``)."""
        return DiffBidPlanner(self, **{"device": self.device, **options})


# --------------------------------------------------------------------------------------------
# Serving: re-plan every tick, act by inverse dynamics
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanStep:
    """One tick's decision and the plan behind it."""

    tick: int
    """The tick t the plan was made at (rows 0..t are realised)."""
    action: float
    """a_t = log(alpha / C), within the action bounds."""
    plan: np.ndarray
    """(T + 1, P) the plan in plan units (``channels``), rows 0..t the realised prefix."""
    unit: np.ndarray
    """(T + 1, P) the same in the scaled units the model works in."""
    candidate: int = 0
    """Which of the N candidate plans was kept (0 without search)."""


SELECTIONS = ("evaluator", "plan", "objective", "critic")
"""How a search ranks its candidates: the learned evaluator's predicted score efficiency, the
efficiency the plan's last row claims, or the objective alone; with an objective, log f is added
to the log efficiency (the score as if the objective were a multiplicative penalty). "critic"
ranks a level planner's levels by a Q critic (``level_critic.LevelCritic``), Q + mean|Q| log f."""


class DiffBidPlanner:
    """The serving policy: ``act(states, actions, rewards)`` (the ``Policy`` protocol) or
    ``plan(states, seed=...)`` for the plan as well.

    Options (None keeps the checkpoint config's): guidance (w), target_return, target_cpa,
    target_util, steps (DDIM K), temperature, eta, device ('auto' | 'cpu' | 'cuda'), seed (of
    ``act``; ``plan`` takes it per call). Holds frozen copies of the networks, so training that
    continues afterwards does not change it.

    Serving-time objectives and search (none by default; the plain planner is unchanged):
    guide: objective terms (``plan_objectives.parse_guide`` text or terms); tfg: the TFGConfig that
    steers each DDIM step toward the objective's log f (zero strength: plain sampling, bit for
    bit); n_candidates: plans sampled per tick as one batch (one denoiser call on N x 2 rows with
    CFG), the best kept by ``select`` (``SELECTIONS``), which with "evaluator" needs ``evaluator``
    (a ``plan_evaluator.PlanEvaluator``). N = 1 is plain sampling. A level planner ranks its levels
    by the plans' claimed score, or with select="critic" by ``critic`` (a ``level_critic.LevelCritic``).
    """

    def __init__(self, algo: DiffBid, *, guidance: float | None = None, target_return: float | None = None,
                 target_cpa: float | None = None, target_util: float | None = None, steps: int | None = None,
                 temperature: float | None = None, eta: float | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, guide=None, tfg: TFGConfig | None = None, n_candidates: int = 1,
                 select: str = "evaluator", evaluator=None, search_levels: int | None = None,
                 search_samples: int | None = None, support: float | None = None, max_change: float | None = None,
                 refine: bool | None = None, day_noise: bool | None = None, critic=None) -> None:
        cfg = algo.config
        if cfg.condition != "level" and any(v is not None for v in (search_levels, search_samples, support, max_change, refine)):
            raise ValueError("levels, samples, support, change, refine: only a planner trained with condition='level' searches bid levels")
        chosen = {"guidance": cfg.guidance if guidance is None else guidance,
                  "target_return": cfg.target_return if target_return is None else target_return,
                  "target_cpa": cfg.target_cpa if target_cpa is None else target_cpa,
                  "target_util": cfg.target_util if target_util is None else target_util,
                  "sampling_steps": cfg.sampling_steps if steps is None else steps,
                  "temperature": cfg.temperature if temperature is None else temperature,
                  "eta": cfg.eta if eta is None else eta,
                  "search_levels": cfg.search_levels if search_levels is None else search_levels,
                  "search_samples": cfg.search_samples if search_samples is None else search_samples,
                  "support": cfg.support if support is None else support,
                  "max_change": cfg.max_change if max_change is None else max_change,
                  "refine": cfg.refine if refine is None else bool(refine),
                  "day_noise": cfg.day_noise if day_noise is None else bool(day_noise)}
        self.config = DiffBidConfig(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, **chosen})  # validates
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.view = algo.view
        self.feature_dim = algo.feature_dim
        self.n_ticks = cfg.n_ticks
        self.horizon = algo.horizon
        self.bounds = algo.bounds
        self.schedule = algo.schedule
        self.channels = tuple(algo.view.channels)
        self.plan_scaler, self.context_scaler, self.info_scaler = algo.plan_scaler, algo.context_scaler, algo.info_scaler
        self.efficiency_levels = algo.efficiency_levels
        frozen = {k: copy.deepcopy(algo.nets[k]).to(self.device).eval().requires_grad_(False)
                  for k in ("ema_cond", "ema_denoiser", "idm")}
        self.cond, self.denoiser, self.idm = frozen["ema_cond"], frozen["ema_denoiser"], frozen["idm"]
        self.level_search = cfg.condition == "level"
        self.task = algo.task
        if self.level_search:   # the levels tried at every tick, and their condition inputs
            low, high = (float(v) for v in algo.level_range)
            self.levels = torch.linspace(low, high, self.config.search_levels, dtype=torch.float32, device=self.device)
            self.outcome = self.bounds.to_unit(self.levels)[:, None]                       # (L, 1)
            self._level_values = self.levels.cpu().numpy()
            # per tick, the highest level the data support: the support quantile of each tick's levels
            self.level_cap = np.array([np.interp(self.config.support, SUPPORT_LEVELS, algo.level_support[:, t])
                                       for t in range(cfg.n_ticks)])
        else:
            targets = {"return": self.config.target_return, "cpa": self.config.target_cpa, "util": self.config.target_util}
            self.outcome = torch.tensor([[targets[n] for n in self.view.outcome_names]], dtype=torch.float32, device=self.device)
        self._embeddings: tuple | None = None   # (context key, context, conditional and null embeddings)
        self._init_search(guide, tfg, n_candidates, select, evaluator, critic)

    def _init_search(self, guide, tfg, n_candidates, select, evaluator, critic=None) -> None:
        from aigb.algos.plan_objectives import PlanObjective

        self.objective = None if guide is None else PlanObjective(guide, self.channels, self.plan_scaler, self.n_ticks)
        if tfg is not None and not isinstance(tfg, TFGConfig):
            raise TypeError(f"tfg must be a TFGConfig, got {type(tfg).__name__}")
        if tfg is not None and tfg.active and self.objective is None:
            raise ValueError("guide: guidance strengths need an objective to follow (guide=...)")
        self.tfg = tfg
        self._guided = self.objective is not None and tfg is not None and tfg.active
        if isinstance(n_candidates, bool) or int(n_candidates) != n_candidates or n_candidates < 1:
            raise ValueError(f"n: candidates per tick must be an integer >= 1, got {n_candidates!r}")
        self.n_candidates = int(n_candidates)
        if self.level_search and self.n_candidates > 1:
            raise ValueError("n: a level planner already searches its bid levels (search_levels, search_samples); n does not apply")
        if select not in SELECTIONS:
            raise ValueError(f"select: must be one of {', '.join(SELECTIONS)}, got {select!r}")
        self.select = select
        self.evaluator = evaluator
        self.critic = critic
        if (select == "critic") != (critic is not None):
            raise ValueError("select: ranking by a critic needs one (critic=CHECKPOINT), and a critic needs select='critic'")
        if select == "critic":
            if not self.level_search:
                raise ValueError("select: 'critic' ranks the bid levels of a planner trained with condition='level'; "
                                 "rank an outcome planner's candidates with select=evaluator, plan or objective")
            if critic.feature_dim != self.feature_dim:
                raise ValueError(f"critic: it reads states of {critic.feature_dim} features, the planner {self.feature_dim}")
        if self.n_candidates > 1:
            if select == "evaluator" and evaluator is None:
                raise ValueError("select: ranking candidates by the evaluator needs one (aigb fit-evaluator)")
            if select == "objective" and self.objective is None:
                raise ValueError("select: ranking candidates by the objective needs guide=...")
            if select == "plan" and not {"budget_left", "value_delivered"} <= set(self.channels):
                raise ValueError(f"select: 'plan' reads the budget and value channels, absent from {self.channels}")
        if evaluator is not None:
            if tuple(evaluator.channels) != self.channels:
                raise ValueError(f"evaluator: its plan channels {evaluator.channels} differ from the planner's {self.channels}")
            evaluator.to(self.device)

    def options(self) -> dict[str, Any]:
        """The serving options in force (for logs and reports)."""
        c = self.config
        out = {"guidance": c.guidance, "target_return": c.target_return, "target_cpa": c.target_cpa,
               "target_util": c.target_util, "steps": c.sampling_steps, "temperature": c.temperature, "eta": c.eta,
               "device": str(self.device), "n_candidates": self.n_candidates}
        if self.level_search:
            out.update(condition="level", search_levels=int(self.levels.numel()), search_samples=c.search_samples,
                       support=c.support, max_change=c.max_change, refine=c.refine)
        if c.day_noise:
            out["day_noise"] = True
        if self.objective is not None:
            out["guide"] = self.objective.text
        if self.tfg is not None:
            out["tfg"] = {k: getattr(self.tfg, k) for k in self.tfg.__dataclass_fields__}
        if self.n_candidates > 1 or self.critic is not None:
            out["select"] = self.select
        if self.critic is not None:
            out["critic"] = self.critic.source
        return out

    def _candidate_scores(self, x0: torch.Tensor, t: int, context_plan: torch.Tensor) -> torch.Tensor:
        """x0 (N, H, P) scaled candidates -> (N,) scores, higher is better (``SELECTIONS``)."""
        if self.select == "plan":
            return self.plan_score(x0, t)
        score = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
        if self.select == "evaluator":
            eff = self.evaluator.predict_efficiency(self.plan_scaler.from_unit(x0), t, context_plan).to(x0.device)
            score = score + eff.clamp_min(1e-6).log()
        if self.objective is not None:
            score = score + self.objective(x0, t).double()
        return score

    @torch.no_grad()   # not inference_mode: guidance takes gradients of the objective inside
    def plan(self, states: np.ndarray, *, seed: int, previous: float | None = None) -> PlanStep:
        """Plan the rest of the day from the v1 states of ticks 0..t (rows of ``states``) and act.
        ``previous``: last tick's action; a level planner with ``max_change`` searches only levels
        within that distance of it."""
        states = np.asarray(states, dtype=np.float32)
        if states.ndim != 2 or states.shape[0] < 1 or states.shape[1] != self.feature_dim:
            raise ValueError(f"states: expected shape (t+1, {self.feature_dim}), got {states.shape}")
        t = states.shape[0] - 1
        if t >= self.n_ticks:
            raise ValueError(f"states: tick {t} is beyond the planner's day of {self.n_ticks} ticks")
        dev = self.device
        prefix = self.plan_scaler.to_unit(self.view.plan(states))                        # (t+1, P) numpy
        known_x = torch.zeros(1, self.horizon, len(self.channels), device=dev)
        known_x[0, : t + 1] = torch.from_numpy(prefix).to(dev)
        known_mask = torch.zeros(1, self.horizon, dtype=torch.bool, device=dev)
        known_mask[0, : t + 1] = True
        context_np = self.context_scaler.to_unit(self.view.context(states))                # (C,)
        key = context_np.tobytes()
        if self._embeddings is None or self._embeddings[0] != key:   # the campaign's, computed once a day
            context = torch.from_numpy(context_np).to(dev)[None]                        # (1, C)
            emb_cond = self.cond(context.expand(self.outcome.shape[0], -1), self.outcome)   # (1 or L, E)
            self._embeddings = (key, context, emb_cond, self.cond(context, None))
        _, context, emb_cond, emb_null = self._embeddings
        stream = ("diffbid/plan",) if self.config.day_noise else ("diffbid/plan", t)
        generator = torch.Generator(device=dev).manual_seed(torch_seed(seed, *stream))
        c = self.config
        if self.level_search:
            return self._search_levels(t, known_x, known_mask, emb_cond, emb_null, generator, previous, states[-1])
        n = self.n_candidates
        if n > 1:   # N candidates in one batch: every tensor of the single plan repeated N times
            known_x, known_mask = known_x.expand(n, -1, -1), known_mask.expand(n, -1)
            emb_cond, emb_null = emb_cond.expand(n, -1), emb_null.expand(n, -1)
        # Guidance with w != 0, 1 runs the conditional and unconditional branches as one batch of 2N.
        eps_fn = cfg_eps_fn(self.denoiser, emb_cond, emb_null, c.guidance, known=known_mask)
        if c.prediction == "x0":   # CFG mixes the x0 outputs; the sampler takes the implied noise
            eps_fn = x0_model_eps_fn(eps_fn, self.schedule)
        x0 = ddim_sample(eps_fn, self.schedule, tuple(known_x.shape), steps=c.sampling_steps,
                         eta=c.eta, temperature=c.temperature, known_x=known_x, known_mask=known_mask,
                         generator=generator, clip_x0=c.clip_x0 or None,
                         guidance=TFGGuidance(self.objective.at(t), self.tfg) if self._guided else None)   # (N, H, P)
        chosen = 0
        if n > 1:
            context_plan = torch.from_numpy(self.view.context(states)).to(dev)              # (C,) plan units
            best = best_of_n(x0[:, None], lambda plans: self._candidate_scores(plans, t, context_plan))
            x0, chosen = best.plan, int(best.index[0])                                   # (1, H, P)
        rows = transition_rows(x0, torch.tensor([t], device=dev), c.idm_rows)            # (1, R, P)
        info = torch.from_numpy(self.info_scaler.to_unit(self.view.tick_info(states)[-1:])).to(dev)   # (1, I)
        a = float(self.bounds.from_unit(self.idm(rows, context, info))[0])
        unit = x0[0].float().cpu().numpy()
        return PlanStep(tick=t, action=float(self.bounds.clip(a)), plan=self.plan_scaler.from_unit(unit), unit=unit,
                        candidate=chosen)

    def plan_score(self, x0: torch.Tensor, t: int) -> torch.Tensor:
        """x0 (B, H, P) scaled plans -> (B,) the log score efficiency their last row claims under the
        planner's task (Target-CPA: v_T min(1, (C / CPA_T)^2); Max-Return: v_T), plus the
        objective's log f when one is given. Ranks a level search's plans and, with select=plan,
        a candidate search's."""
        from aigb.algos.plan_objectives import planned_efficiency

        plan = self.plan_scaler.from_unit(x0)
        b, v = (plan[..., self.channels.index(name)] for name in ("budget_left", "value_delivered"))
        eff = v[..., self.n_ticks].clamp_min(0.0) if self.task == "max-return" else planned_efficiency(b, v, self.n_ticks)
        score = eff.double().clamp_min(1e-6).log()
        if self.objective is not None:
            score = score + self.objective(x0, t).double()
        return score

    def _search_levels(self, t: int, known_x, known_mask, emb_cond, emb_null, generator, previous=None,
                       state=None) -> PlanStep:
        """Plan the day under each bid level that may be chosen (S plans each, one shared noise draw),
        bid the best (by the plans' mean claimed score, or with a critic by Q(state, level), plus,
        with an objective, the log of its mean f over the level's plans times the levels' mean |Q|:
        Q f to first order where Q > 0, and a penalty that also lowers a negative Q). Levels above
        the tick's support cap (the lowest always stays) or, with ``max_change``, farther than that
        from ``previous`` are not sampled at all: a level's plans
        depend only on its own condition and the shared noise, so leaving the others out changes
        no choice and saves their share of the compute. A critic without an objective needs no plan
        to rank: only the level it keeps is planned (the plan a trace or report shows)."""
        c, dev = self.config, self.device
        outside = self._level_values > self.level_cap[t]
        outside[0] = False                                                                 # the lowest level always stays
        if previous is not None and c.max_change > 0:   # a trust region around last tick's level
            far = np.abs(self._level_values - previous) > c.max_change
            if not np.all(far | outside):
                outside |= far
        keep = np.flatnonzero(~outside)                                                    # (L',) level indices searched
        # A critic values the levels from the state alone. Without an objective that decides before
        # any plan is drawn, and only the kept level is planned (from the same shared noise: at eta 0
        # the plans the whole batch would have given it).
        q = None if self.critic is None else torch.from_numpy(self.critic.values(state, self._level_values[keep]))  # (L',)
        planned = keep[[int(torch.argmax(q))]] if q is not None and self.objective is None else keep
        n_levels, n_samples = planned.size, c.search_samples
        m = n_levels * n_samples
        noise = torch.randn((n_samples, self.horizon, len(self.channels)), generator=generator,
                            device=generator.device).to(dev).repeat(n_levels, 1, 1)         # (L'*S, H, P), level-major
        level_emb = emb_cond[torch.from_numpy(planned).to(emb_cond.device)].repeat_interleave(n_samples, dim=0)   # (L'*S, E)
        eps_fn = cfg_eps_fn(self.denoiser, level_emb, emb_null.expand(m, -1), c.guidance, known=known_mask.expand(m, -1))
        if c.prediction == "x0":
            eps_fn = x0_model_eps_fn(eps_fn, self.schedule)
        x0 = ddim_sample(eps_fn, self.schedule, (m,) + tuple(known_x.shape[1:]), steps=c.sampling_steps, eta=c.eta,
                         temperature=c.temperature, known_x=known_x.expand(m, -1, -1), known_mask=known_mask.expand(m, -1),
                         generator=generator, clip_x0=c.clip_x0 or None, noise=noise,
                         guidance=TFGGuidance(self.objective.at(t), self.tfg) if self._guided else None)   # (L'*S, H, P)
        # The expected score of a level: the mean of its plans' scores (not of their logs, which
        # would penalise a level for the spread of its outcomes on top of their mean).
        if q is None:
            score = torch.logsumexp(self.plan_score(x0, t).view(n_levels, n_samples), dim=1)  # (L',) log S + log mean
        elif self.objective is None:
            score = q
        else:   # Q plus the log of the mean f of the level's plans, in units of the levels' mean |Q|
            log_f = torch.logsumexp(self.objective(x0, t).double().view(n_levels, n_samples).cpu(), dim=1) - math.log(n_samples)
            score = q + q.abs().mean() * log_f
        pos = int(torch.argmax(score))
        best = int(keep[pos])
        unit = x0[int(np.flatnonzero(planned == best)[0]) * n_samples].float().cpu().numpy()
        level = float(self.levels[best])
        if c.refine and 0 < pos < n_levels - 1 and keep[pos - 1] == best - 1 and keep[pos + 1] == best + 1:
            step = float(self.levels[1] - self.levels[0])
            level += step * parabola_vertex(*(float(score[i]) for i in (pos - 1, pos, pos + 1)))
        a = float(self.bounds.clip(level))
        return PlanStep(tick=t, action=a, plan=self.plan_scaler.from_unit(unit), unit=unit, candidate=best)

    def act(self, states, actions, rewards) -> float:
        states, actions, _ = validate_history(states, actions, rewards, self.feature_dim)
        return self.plan(states, seed=self.seed, previous=float(actions[-1]) if len(actions) else None).action

    def efficiency_of_rank(self, rank: float) -> float:
        """The training campaigns' score efficiency (score x C / B) at return rank ``rank``."""
        return float(np.interp(rank, EFFICIENCY_LEVELS, self.efficiency_levels))

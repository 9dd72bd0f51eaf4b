"""DiffBid's configs: what a planner is and how it learns (``DiffBidTraining``), the serving
defaults a checkpoint stores (``ServingDefaults``), and the two as one checkpoint config
(``DiffBidConfig``), plus the constants of the level search and the return condition."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from aigb.algos.dagger import DAggerSchedule
from aigb.algos.validation import check_common_config, require, require_positive
from aigb.algos.diffbid.plans import PLAN_VIEWS
from aigb.diffusion import DENOISERS

__all__ = ["DiffBidConfig", "DiffBidTraining", "ServingDefaults", "CONDITIONS", "LEVEL_DAYS", "OPEN_LOOP_AUTOCORR", "SUPPORT_LEVELS",
           "LEVEL_QUANTILES", "EFFICIENCY_LEVELS"]

LEVEL_DAYS = ("open_loop", "held", "all")
CONDITIONS = ("outcome", "level", "oracle")
"""What a planner's plans are conditioned on besides the campaign (``DiffBidTraining.condition``)."""
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
class DiffBidTraining(DAggerSchedule):
    """What a DiffBid planner is and how it learns. Defaults follow research/diffbid_anchors.md §1.
    The DAgger schedule (``DAggerSchedule``: rounds, periods_per_round, slots, expert_decay,
    reference) applies to ``condition="oracle"`` only, which learns in the simulator."""

    plan: str = "market"
    """What is diffused: "market" (the 7 plan channels of v1 states, aigb.algos.diffbid.plans),
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
    scores best (plus any objective), re-planning every tick. "oracle": nothing besides the
    campaign and the realised prefix; the planner learns in the simulator, with DAgger, the
    hindsight oracle's continuation of the day from every state its own rollouts visit (the
    per-tick spend and conversions of the oracle's best multiplier for the rest of the day,
    ``aigb.strategies.oracle_state``), and the inverse dynamics learns that multiplier from the
    realised rows and the oracle's next one (``aigb train diffbid --set condition=oracle``, no
    dataset; ``steps`` is then the run's total, spread evenly over the rounds)."""
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
        require(self.condition in CONDITIONS, "condition", f"must be one of {', '.join(map(repr, CONDITIONS))}, got {self.condition!r}")
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
        self._check_schedule()
        require(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "warmup_steps", f"must be an integer >= 0, got {self.warmup_steps!r}")
        require(0.0 <= self.ema < 1.0, "ema", f"must lie in [0, 1), got {self.ema}")


@dataclass(frozen=True)
class ServingDefaults:
    """How a trained planner plans by default: the values a checkpoint stores and a ``diffbid:``
    spec overrides without retraining (``aigb.algos.diffbid.serving``)."""

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

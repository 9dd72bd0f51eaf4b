"""Decision Transformer (Chen et al., NeurIPS 2021, arXiv 2106.01345).

A GPT-style causal transformer reads the last K ticks as interleaved tokens
``(rtg_0, s_0, a_0, rtg_1, s_1, a_1, ...)``, each embedding plus a learned tick embedding, and
predicts a_t from the output at the state token s_t (so a_t itself is never seen). Training:

    loss = sum_{b,k} mask_bk (a_hat_bk - a_bk)^2 / sum mask       (masked steps only)

rtg is the CPA-penalised score-to-go. By default (``target_scale="efficiency"``) it is counted in
units of what the campaign's budget buys at its target CPA, score-to-go x C / B (B and C read from
the state), so that a return token means the same for a campaign of 20 and one of 80 affordable
conversions; at serving the return-to-go starts at the ``target_return_quantile`` of the training
campaigns' score efficiency (score x C / B) and counts down by the task's score earned so far
(``rtg_decrement="score"``: conversions x the CPA penalty of the CPA so far, the realised
counterpart of the penalised score-to-go the tokens were trained on). The other scales keep score
units (divided by reward_scale): ``"campaign"`` starts each campaign at that efficiency quantile x
its B / C; ``"data"`` starts every campaign at one quantile of the raw campaign scores, as
AuctionNet's DT baseline does and as checkpoints written before these choices serve (counting down by
the conversions, ``rtg_decrement="conversions"``). docs/experiments/2026-12-dt-return-targets.md
measures them. Training windows and serving windows have the same
layout: K steps, left-padded with mask 0 before tick 0, and padded keys are never attended, so the
two paths feed the same function.

Dropout draws from the algorithm's own torch.Generator; attention itself has no dropout.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aigb.algos.base import TorchAlgorithm, check_common_config, require, require_positive, validate_history, window_tensors
from aigb.features import FEATURE_SETS
from aigb.score import DEFAULT_TASK, cpa_penalty, task_beta
from aigb.seeding import rng as named_rng
from aigb.types import ConfigError

__all__ = ["DTConfig", "DecisionTransformer", "DTPolicy", "left_padded_window", "predict_actions", "campaign_columns",
           "efficiency_to_go", "TARGET_SCALES", "RTG_DECREMENTS"]

TARGET_SCALES = ("efficiency", "campaign", "data")
"""How returns are scaled: tokens and target in score-efficiency units; score tokens with a target
per campaign; score tokens with one target for all (module docstring)."""
RTG_DECREMENTS = ("score", "conversions")
"""What the serving return-to-go counts down by (``DTConfig.rtg_decrement``)."""
EFFICIENCY_LEVELS = tuple(round(0.01 * i, 2) for i in range(1, 100))
"""Quantile levels of the training campaigns' score efficiency stored in a checkpoint (serving may
pick another level than the config's without retraining)."""


@dataclass(frozen=True)
class DTConfig:
    """Decision Transformer hyper-parameters (paper's Gym settings scaled to 48-tick days)."""

    context_len: int = 20
    """K, ticks in the context; training windows and serving use the same K."""
    embed_dim: int = 64
    """Token embedding width (paper: 128; 64 quarters the matmul cost on CPU for 30 features)."""
    n_layers: int = 3
    """Transformer blocks."""
    n_heads: int = 1
    """Attention heads (the paper uses one)."""
    dropout: float = 0.1
    """Dropout on embeddings and residual branches during training."""
    lr: float = 3e-4
    """AdamW peak learning rate (paper: 1e-4 over 100k steps; the smaller model and shorter run
    take a larger one)."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay, applied to matrix weights only."""
    warmup_steps: int = 1_000
    """Linear learning-rate warm-up from 0 over this many updates."""
    grad_clip: float = 0.25
    """Global gradient-norm clip."""
    max_ticks: int = 48
    """Size of the tick embedding table; ticks must lie in [0, max_ticks)."""
    target_return: float | None = None
    """Initial return-to-go at serving, in score units, the same for every campaign; None derives it
    from the data as target_scale says."""
    target_return_quantile: float = 0.9
    """Quantile level of the training campaigns' returns (target_scale 'data') or score efficiencies
    ('efficiency', 'campaign') the target is taken from when target_return is None (0.9 measured
    best of 0.9 / 0.95 / 0.99 on the tuning set, docs/experiments/2026-12-dt-return-targets.md)."""
    target_scale: str = "efficiency"
    """How returns are scaled (needs a feature set with budget and target_cpa, v1, except 'data'):
    'efficiency', tokens and target in units of what B buys at C (score x C / B), the target the
    quantile of the training campaigns' score efficiency; 'campaign', score tokens, the target that
    quantile x the campaign's B / C; 'data', score tokens, one target (the quantile of the raw
    campaign scores) for every campaign."""
    rtg_decrement: str = "score"
    """What the return-to-go counts down by at serving: 'score', the task's score earned so far
    (conversions x the CPA penalty of the CPA so far, read from the state: the realised counterpart of
    the CPA-penalised score-to-go the tokens were trained on); 'conversions', the raw conversions."""
    batch_size: int = 32
    """Windows per update."""
    steps: int = 12_000
    """Updates per run: 12k x 32 windows = 384k windows of 20 ticks (~7 per trajectory of a
    24k-trajectory dataset); 22-28 min at the measured 110-140 ms/step
    (benchmarks/algo_step_speed.py, one thread, 2-core CPU)."""

    def __post_init__(self) -> None:
        check_common_config(self)
        for name in ("context_len", "embed_dim", "n_layers", "n_heads", "max_ticks"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, f"must be an integer >= 1, got {value!r}")
        require(self.embed_dim % self.n_heads == 0, "n_heads", f"must divide embed_dim {self.embed_dim}, got {self.n_heads}")
        require(self.context_len <= self.max_ticks, "context_len", f"must be <= max_ticks {self.max_ticks}, got {self.context_len}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must lie in [0, 1), got {self.dropout}")
        require_positive(self, "lr", "grad_clip")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "warmup_steps", f"must be an integer >= 0, got {self.warmup_steps!r}")
        if self.target_return is not None:
            require(isinstance(self.target_return, (int, float)) and math.isfinite(self.target_return), "target_return", f"must be a finite number or None, got {self.target_return!r}")
        require(0.0 < self.target_return_quantile < 1.0, "target_return_quantile", f"must lie in (0, 1), got {self.target_return_quantile}")
        require(self.target_scale in TARGET_SCALES, "target_scale", f"must be one of {', '.join(TARGET_SCALES)}, got {self.target_scale!r}")
        require(self.rtg_decrement in RTG_DECREMENTS, "rtg_decrement", f"must be one of {', '.join(RTG_DECREMENTS)}, got {self.rtg_decrement!r}")


def seeded_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout drawing from ``generator``; identity when it is None (evaluation)."""
    if generator is None or p == 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator) >= p
    return x * keep / (1.0 - p)


class CausalSelfAttention(nn.Module):
    def __init__(self, embed_dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x (B, L, E); allowed (B, 1, L, L) bool, True where query i may attend key j."""
        b, length, e = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, e // self.n_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)   # (B, H, L, E/H)
        return self.proj(out.transpose(1, 2).reshape(b, length, e))


class Block(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2)."""

    def __init__(self, embed_dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim, n_heads)
        self.ln2 = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, 4 * embed_dim)
        self.out = nn.Linear(4 * embed_dim, embed_dim)

    def forward(self, x, allowed, generator):
        x = x + seeded_dropout(self.attn(self.ln1(x), allowed), self.dropout, generator)
        return x + seeded_dropout(self.out(F.gelu(self.fc(self.ln2(x)))), self.dropout, generator)


class DecisionTransformerNet(nn.Module):
    """(states, actions, rtg, ticks, mask) windows (B, K, .) -> predicted unit actions (B, K)."""

    def __init__(self, feature_dim: int, cfg: DTConfig) -> None:
        super().__init__()
        e = cfg.embed_dim
        self.dropout = cfg.dropout
        self.state_emb = nn.Linear(feature_dim, e)
        self.action_emb = nn.Linear(1, e)
        self.rtg_emb = nn.Linear(1, e)
        self.tick_emb = nn.Embedding(cfg.max_ticks, e)
        self.emb_norm = nn.LayerNorm(e)
        self.blocks = nn.ModuleList(Block(e, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        self.out_norm = nn.LayerNorm(e)
        self.head = nn.Linear(e, 1)

    def forward(self, s, a_unit, rtg, tick, mask, generator: torch.Generator | None = None) -> torch.Tensor:
        b, k, _ = s.shape
        t_emb = self.tick_emb(tick)                                             # (B, K, E)
        tokens = torch.stack([
            self.rtg_emb(rtg.unsqueeze(-1)) + t_emb,
            self.state_emb(s) + t_emb,
            self.action_emb(a_unit.unsqueeze(-1)) + t_emb,
        ], dim=2).reshape(b, 3 * k, -1)                                         # (B, 3K, E)
        x = seeded_dropout(self.emb_norm(tokens), self.dropout, generator)
        real = mask.bool().repeat_interleave(3, dim=1)                          # (B, 3K)
        causal = torch.ones(3 * k, 3 * k, dtype=torch.bool).tril()              # (3K, 3K)
        # A padded query attends to itself only, so no softmax row is empty; real queries never
        # see padded keys, which makes the padding values irrelevant.
        allowed = causal & (real.unsqueeze(1) | torch.eye(3 * k, dtype=torch.bool))  # (B, 3K, 3K)
        allowed = allowed.unsqueeze(1)                                          # (B, 1, 3K, 3K)
        for block in self.blocks:
            x = block(x, allowed, generator)
        x = self.out_norm(x).reshape(b, k, 3, -1)
        return torch.tanh(self.head(x[:, :, 1]).squeeze(-1))                    # (B, K) from state tokens


def gpt_init_(module: nn.Module, generator: torch.Generator) -> None:
    """GPT-2 initialisation: N(0, 0.02) weights and embeddings, zero biases, unit LayerNorm."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Embedding)):
            nn.init.normal_(sub.weight, 0.0, 0.02, generator=generator)
            if getattr(sub, "bias", None) is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif list(sub.parameters(recurse=False)):
            raise TypeError(f"gpt_init_: no rule for {type(sub).__name__}")


def predict_actions(model: DecisionTransformerNet, normalizer, bounds, w: Mapping[str, torch.Tensor],
                    generator: torch.Generator | None, efficiency: bool = False) -> torch.Tensor:
    """The one path from a raw window batch to predicted actions (B, K), for training and serving.

    ``efficiency``: ``w["rtg"]`` is already in score-efficiency units (``efficiency_to_go``), O(1),
    and is fed as it is; otherwise it is in score units and divided by the reward scale."""
    return bounds.from_unit(model(
        normalizer.states(w["obs"]),
        bounds.to_unit(bounds.clip(w["action"])),
        w["rtg"] if efficiency else normalizer.rewards(w["rtg"]),
        w["timestep"],
        w["mask"],
        generator,
    ))


def efficiency_to_go(rtg: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor, columns: tuple[int, int]) -> torch.Tensor:
    """Score-to-go (B, K) in units of what the campaign's budget buys at its target CPA: x C / B,
    with B and C read from the raw states (B, K, D) at ``columns``; 0 at padded steps."""
    budget, target_cpa = obs[..., columns[0]], obs[..., columns[1]]
    return torch.where(mask > 0, rtg * target_cpa / budget.clamp_min(1e-9), torch.zeros_like(rtg))


def left_padded_window(obs, action, rtg, tick, context_len: int) -> dict[str, np.ndarray]:
    """The last ``context_len`` steps of a history, left-padded with mask 0 like training windows.

    obs (n, D), action (n,), rtg (n,), tick (n,) for the n most recent ticks -> arrays (K, .).
    """
    n = obs.shape[0]
    if n > context_len:
        obs, action, rtg, tick, n = obs[-context_len:], action[-context_len:], rtg[-context_len:], tick[-context_len:], context_len
    pad = context_len - n
    return {
        "obs": np.concatenate([np.zeros((pad, obs.shape[1]), np.float32), obs]).astype(np.float32),
        "action": np.concatenate([np.zeros(pad, np.float32), action]).astype(np.float32),
        "rtg": np.concatenate([np.zeros(pad, np.float32), rtg]).astype(np.float32),
        "timestep": np.concatenate([np.zeros(pad, np.int64), tick]).astype(np.int64),
        "mask": np.concatenate([np.zeros(pad, np.float32), np.ones(n, np.float32)]),
    }


class DecisionTransformer(TorchAlgorithm):
    """Return-conditioned sequence model trained by masked action regression."""

    name = "dt"
    config_class = DTConfig
    batch_kind = "windows"

    def _networks(self) -> nn.ModuleDict:
        return nn.ModuleDict({"model": DecisionTransformerNet(self.feature_dim, self.config)})

    # Checkpoints written before campaign targets and score decrements serve as they did.
    legacy_config = {"target_scale": "data", "rtg_decrement": "conversions"}

    def reset(self, seed: int) -> None:
        super().reset(seed)
        # Unset (NaN) until prepare() reads it from the data, unless the config fixes it.
        self.target_return = float("nan") if self.config.target_return is None else float(self.config.target_return)
        # Quantile levels -> score efficiency (score x C / B) of the training campaigns; empty until
        # prepare() (and in checkpoints written before campaign targets).
        self.efficiency_quantiles: dict[float, float] = {}
        self.return_quantiles: dict[float, float] = {}   # quantile level -> campaign score, likewise

    def _init_networks(self, generator: torch.Generator) -> None:
        gpt_init_(self.nets, generator)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = list(self.nets["model"].parameters())
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": self.config.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return {"model": torch.optim.AdamW(groups, lr=self.config.lr)}

    def _adapt(self, dataset: Any, seed: int) -> None:
        cfg = self.config
        efficiency = getattr(dataset, "campaign_efficiency", None)
        if efficiency is not None:
            eff = np.asarray(efficiency, dtype=np.float64)
            self.efficiency_quantiles = {float(q): float(np.quantile(eff, q)) for q in EFFICIENCY_LEVELS}
        self.return_quantiles = {float(q): float(v) for q, v in (getattr(dataset, "return_quantiles", None) or {}).items()}
        if cfg.target_return is not None:
            self.target_return = float(cfg.target_return)
            return
        if cfg.rtg_decrement == "score":
            state_columns(self.feature_version, ("spend", "conversions", "target_cpa"), "rtg_decrement")
        if cfg.target_scale != "data":
            campaign_columns(self.feature_version, "target_scale")   # the state must hold budget and CPA
            if not self.efficiency_quantiles:
                raise ValueError(f"dataset: no campaign_efficiency for target_scale {cfg.target_scale!r}; "
                                 "set DTConfig.target_scale='data' or target_return")
        quantiles = getattr(dataset, "return_quantiles", None)
        if quantiles:
            levels = np.array(sorted(float(q) for q in quantiles))
            values = np.array([float(quantiles[q]) for q in sorted(quantiles, key=float)])
            self.target_return = float(np.interp(cfg.target_return_quantile, levels, values))
        else:
            self.target_return = self._estimate_return_quantile(dataset, seed)
        if not math.isfinite(self.target_return):
            raise ValueError(f"dataset: derived target_return is not finite ({self.target_return})")

    def _estimate_return_quantile(self, dataset: Any, seed: int) -> float:
        """The quantile of score_to_go at tick 0 over sampled windows (when the data gives none)."""
        gen = named_rng(seed, "algo/dt/target-return")
        returns: list[np.ndarray] = []
        for _ in range(64):
            w = dataset.sample_windows(256, self.config.max_ticks, gen)
            first = (np.asarray(w["timestep"]) == 0) & (np.asarray(w["mask"]) > 0)
            returns.append(np.asarray(w["rtg"], dtype=np.float64)[first])
            if sum(r.size for r in returns) >= 2048:
                break
        pooled = np.concatenate(returns)
        if pooled.size == 0:
            raise ValueError("dataset: no window reaches tick 0; set DTConfig.target_return or give return_quantiles")
        return float(np.quantile(pooled, self.config.target_return_quantile))

    def _extra_state(self) -> dict:
        return {"target_return": float(self.target_return),
                "efficiency_quantiles": {str(q): float(v) for q, v in self.efficiency_quantiles.items()},
                "return_quantiles": {str(q): float(v) for q, v in self.return_quantiles.items()}}

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        self.target_return = float(extra["target_return"])
        self.efficiency_quantiles = {float(q): float(v) for q, v in extra.get("efficiency_quantiles", {}).items()}
        self.return_quantiles = {float(q): float(v) for q, v in extra.get("return_quantiles", {}).items()}

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        cfg = self.config
        w = window_tensors(batch, self.feature_dim, cfg.context_len, cfg.max_ticks)
        if float(w["mask"].sum()) == 0:
            raise ValueError("window batch field 'mask': no real step in the batch")
        self.nets.train()
        lr = cfg.lr * min(1.0, (self.n_updates + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        opt = self.optimizers["model"]
        for group in opt.param_groups:
            group["lr"] = lr
        efficiency = cfg.target_scale == "efficiency"
        if efficiency:   # return tokens comparable across campaigns (the state holds B and C)
            w = {**w, "rtg": efficiency_to_go(w["rtg"], w["obs"], w["mask"], campaign_columns(self.feature_version, "target_scale"))}
        pred = predict_actions(self.nets["model"], self.normalizer, self.bounds, w, self.train_generator, efficiency)  # (B, K)
        target = self.bounds.clip(w["action"])
        loss = ((pred - target).pow(2) * w["mask"]).sum() / w["mask"].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.nets.parameters(), cfg.grad_clip)
        opt.step()
        self.n_updates += 1
        return {"loss": loss.item(), "grad_norm": float(grad_norm), "lr": lr}

    def policy(self, *, target_quantile: float | None = None, target_scale: str | None = None,
               rtg_decrement: str | None = None) -> "DTPolicy":
        """The serving policy; ``target_quantile``, ``target_scale`` and ``rtg_decrement`` override
        the config's ``target_return_quantile``, ``target_scale`` and ``rtg_decrement`` (serving
        options, no retraining)."""
        if not math.isfinite(self.target_return):
            raise ValueError("dt: target_return is unset; call prepare(dataset, seed) / fit, or set DTConfig.target_return")
        return DTPolicy(self, target_quantile=target_quantile, target_scale=target_scale, rtg_decrement=rtg_decrement)


def state_columns(feature_version: str | None, wanted: tuple[str, ...], field: str) -> tuple[int, ...]:
    """Indices of the features ``wanted`` in the states of ``feature_version``; a ConfigError naming
    ``field`` for a feature set without them (AuctionNet's 16 features hold no budget, CPA or spend)."""
    names = FEATURE_SETS.get(feature_version or "", ())
    missing = [w for w in wanted if w not in names]
    if missing:
        other = "target_scale 'data' (one target for every campaign)" if field == "target_scale" else "rtg_decrement 'conversions'"
        raise ConfigError(f"{field}: reads {', '.join(wanted)} from the state, which feature set {feature_version!r} "
                          f"does not hold ({', '.join(missing)} missing); use {other}")
    return tuple(names.index(w) for w in wanted)


def campaign_columns(feature_version: str | None, field: str) -> tuple[int, int]:
    """Indices of budget and target_cpa in the states of ``feature_version`` (``state_columns``)."""
    return state_columns(feature_version, ("budget", "target_cpa"), field)


class DTPolicy:
    """Serving-side DT: rebuilds the K-step window from the history at every tick.

    The return-to-go starts at the campaign's target (module docstring) and counts down by the
    conversions observed. ``target_quantile`` / ``target_scale`` (None: the config's) pick the
    target among the quantiles stored in the checkpoint."""

    def __init__(self, algo: DecisionTransformer, *, target_quantile: float | None = None,
                 target_scale: str | None = None, rtg_decrement: str | None = None) -> None:
        cfg = algo.config
        self.model = copy.deepcopy(algo.nets["model"]).eval().requires_grad_(False)
        self.normalizer = algo.normalizer
        self.bounds = algo.bounds
        self.context_len = cfg.context_len
        self.max_ticks = cfg.max_ticks
        self.feature_dim = algo.feature_dim
        scale = cfg.target_scale if target_scale is None else target_scale
        if scale not in TARGET_SCALES:
            raise ConfigError(f"target_scale: must be one of {', '.join(TARGET_SCALES)}, got {scale!r}")
        if target_quantile is not None and not 0.0 < target_quantile < 1.0:
            raise ConfigError(f"target_quantile: must lie in (0, 1), got {target_quantile}")
        if (scale == "efficiency") != (cfg.target_scale == "efficiency"):
            raise ConfigError(f"target_scale: this model reads returns in {'efficiency' if cfg.target_scale == 'efficiency' else 'score'} "
                              f"units (trained with target_scale {cfg.target_scale!r}); it cannot be served with {scale!r}")
        self.target_scale = scale
        self.efficiency = scale == "efficiency"
        decrement = cfg.rtg_decrement if rtg_decrement is None else rtg_decrement
        if decrement not in RTG_DECREMENTS:
            raise ConfigError(f"rtg_decrement: must be one of {', '.join(RTG_DECREMENTS)}, got {decrement!r}")
        self.rtg_decrement = decrement
        # state columns of the spend, conversions and target CPA so far, and the task's CPA exponent
        self.score_columns = state_columns(algo.feature_version, ("spend", "conversions", "target_cpa"), "rtg_decrement") \
            if decrement == "score" else (-1, -1, -1)
        self.beta = task_beta(algo.task or DEFAULT_TASK)
        self.target_return = float(algo.target_return)
        self.target_efficiency = float("nan")
        self.campaign_columns = (-1, -1)
        fixed = cfg.target_return is not None and target_quantile is None
        level = cfg.target_return_quantile if target_quantile is None else target_quantile
        if scale != "data" and not fixed:
            self.campaign_columns = campaign_columns(algo.feature_version, "target_scale")
            if not algo.efficiency_quantiles:
                raise ValueError("dt: this checkpoint stores no campaign efficiency quantiles (trained before campaign "
                                 "targets); serve it with target_scale 'data'")
            levels = sorted(algo.efficiency_quantiles)
            self.target_efficiency = float(np.interp(level, levels, [algo.efficiency_quantiles[q] for q in levels]))
        elif target_quantile is not None:
            if not algo.return_quantiles:
                raise ValueError("dt: this checkpoint stores one target return and no return quantiles; serve it "
                                 "without a target quantile")
            levels = sorted(algo.return_quantiles)
            self.target_return = float(np.interp(level, levels, [algo.return_quantiles[q] for q in levels]))

    def target(self, first_state: np.ndarray) -> float:
        """The return-to-go at tick 0, in score units, from the campaign's first state (D,)."""
        if self.target_scale == "data" or not math.isfinite(self.target_efficiency):
            return self.target_return
        budget, target_cpa = (float(first_state[i]) for i in self.campaign_columns)
        return self.target_efficiency * budget / target_cpa

    def earned(self, states: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """(t+1,) float64: what the campaign had earned before each tick 0..t, in score units: the
        task's score so far (conversions x CPA penalty, from states (t+1, D)), or the conversions
        (the sum of the rewards (t,) before each tick)."""
        if self.rtg_decrement == "conversions":
            return np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float64)])
        spend, conversions, target_cpa = (states[:, i].astype(np.float64) for i in self.score_columns)
        return conversions * cpa_penalty(spend, conversions, target_cpa, self.beta)

    def act(self, states, actions, rewards) -> float:
        states, actions, rewards = validate_history(states, actions, rewards, self.feature_dim)
        t = states.shape[0] - 1
        if t >= self.max_ticks:
            raise ValueError(f"states: tick {t} is beyond the model's max_ticks {self.max_ticks}")
        # Return-to-go at ticks 0..t: the target minus what was earned before each tick.
        rtg = (self.target(states[0]) - self.earned(states, rewards)).astype(np.float32)
        # a_t is unknown; its token comes after s_t, so causality keeps the placeholder unseen.
        past_and_current = np.concatenate([actions, np.zeros(1, np.float32)])
        window = left_padded_window(states, past_and_current, rtg, np.arange(t + 1, dtype=np.int64), self.context_len)
        tensors = {k: torch.from_numpy(v).unsqueeze(0) for k, v in window.items()}   # (1, K, .)
        with torch.inference_mode():
            if self.efficiency:   # the tokens training fed: x C / B, as efficiency_to_go computes them
                tensors["rtg"] = efficiency_to_go(tensors["rtg"], tensors["obs"], tensors["mask"], self.campaign_columns)
            pred = predict_actions(self.model, self.normalizer, self.bounds, tensors, None, self.efficiency)   # (1, K)
        return float(self.bounds.clip(float(pred[0, -1])))

"""DiffBid: plan the day's state trajectory with a conditional diffusion model, then act by inverse
dynamics (AIGB, Guo et al., KDD 2024, arXiv 2405.16141; Decision Diffuser, Ajay et al., ICLR 2023,
arXiv 2211.15657).

Plan, then control. A denoiser learns the distribution of whole-day plans x (T + 1 rows of the
dynamic state, ``aigb.algos.diffbid.plans``) given the campaign (context c, always on) and the
outcome asked for (y: return rank, CPA satisfaction, budget utilisation):

    x_k = sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps,   cosine schedule, 100 steps          (DDPM eq. 4)
    L_diff = E || eps - eps_theta(x_k, k, emb(c, y or null)) ||^2  over the rows after the prefix

It is trained as a completer (CBD, arXiv 2509.03348): each sample keeps a random realised prefix,
rows 0..t with t ~ U{0..T-1}, clean in x_k and out of the loss, which is the situation of a
re-planning bidder at tick t. y is dropped jointly (p = 0.25) for classifier-free guidance
(Ho & Salimans 2022): eps = eps_u + w (eps_c - eps_u). An inverse-dynamics model (IDM,
``dynamics``) learns the action from the recent states and the next one,

    a_t = f([s_{t-2}, s_{t-1}, s_t, s_{t+1}], c, tick info_t),    a = log(alpha / C)
    L_idm = E (a_t - f(.))^2                                     (own optimiser, logged transitions)

Serving is ``planner.DiffBidPlanner`` (with ``search``). The generic pieces (schedule, denoisers,
condition embedding, completer loss, samplers) live in ``aigb.diffusion``; this file holds the
algorithm: its networks, batches, losses and checkpoint state.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aigb.algos.base import TorchAlgorithm
from aigb.algos.device import resolve_device
from aigb.algos.diffbid.config import EFFICIENCY_LEVELS, LEVEL_QUANTILES, SUPPORT_LEVELS, DiffBidConfig
from aigb.algos.diffbid.dynamics import InverseDynamics, transition_rows
from aigb.algos.diffbid.levels import held_from, level_support, open_loop_days, remaining_levels
from aigb.algos.diffbid.plans import PLAN_VERSION, RobustScaler, efficiency_rank, make_plan_view, whole_trajectories
from aigb.diffusion import DENOISERS, ConditionEmbedding, CosineSchedule, completer_loss
from aigb.types import ConfigError

__all__ = ["DiffBid", "PLAN_BATCH_FIELDS"]

PLAN_BATCH_FIELDS = {"obs": 3, "context": 2, "outcome": 2, "prefix": 1, "tick": 1, "tick_info": 2, "action": 1}
"""Field -> dims. obs (B, T+1, P) plans in plan units; context (B, C); outcome (B, O); prefix (B,)
the tick t whose rows 0..t are known; tick (B,) the IDM's transition tick (one whose bids could
act: budget left); tick_info (B, I) of that tick; action (B,) the logged action of that tick."""


class DiffBid(TorchAlgorithm):
    """Conditional diffusion planner (completer training, CFG) plus inverse dynamics."""

    name = "diffbid"
    config_class = DiffBidConfig
    legacy_config = {"prediction": "eps", "known_input": False}
    """What a checkpoint that does not name these fields was trained with (they came later)."""
    retired_config = {"refine": False, "day_noise": False}
    """Serving fields removed (they measured within noise): dropped from a checkpoint that left them off."""
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
        """The droppable condition's names: the view's outcomes, ("level",) or ("oracle",) (a constant
        1: the oracle's continuation is the only plan such a planner learns)."""
        if self.config.condition == "oracle":
            return ("oracle",)
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
        if self.config.condition == "oracle":
            self._adapt_oracle(dataset)
            return
        a = self._arrays(dataset)
        self.plan_scaler = RobustScaler.fit(a["plan"])
        self.context_scaler = RobustScaler.fit(a["context"])
        self.info_scaler = RobustScaler.fit(a["tick_info"])
        self.efficiency_levels = np.quantile(a["efficiency"], EFFICIENCY_LEVELS)
        self.level_range, self.level_support = self.level_tables(a)
        self.task = str(a["task"])

    # --- the oracle form: plans labelled in the simulator ------------------------------------------
    def oracle_fields(self, days: np.ndarray, tick: np.ndarray) -> dict[str, np.ndarray]:
        """What the oracle form learns from a labelled state: ``days`` (n, T+1, F) the v1 states of
        each state's day as the oracle continues it (rows 0..tick realised, ``aigb.workflows.oil``),
        ``tick`` (n,) the state's tick -> plan (n, T+1, P), context (n, C), tick_info (n, I) of
        the state's tick."""
        days = np.asarray(days, dtype=np.float32)
        tick = np.asarray(tick, dtype=np.int64)
        if days.ndim != 3 or days.shape[1] != self.horizon or days.shape[0] != tick.shape[0]:
            raise ValueError(f"oracle days: expected (n, {self.horizon}, F) with one tick per day, got {days.shape}, {tick.shape}")
        rows = days[np.arange(days.shape[0]), tick][:, None]                               # (n, 1, F)
        return {"plan": self.view.plan(days), "context": self.view.context(days),
                "tick_info": self.view.tick_info(rows)[:, 0]}

    def _adapt_oracle(self, data: Any) -> None:
        """Scalers from labelled states (``aigb.workflows.oil.LabelledPlans``): plans, contexts, tick
        information; the efficiency table from the oracle days' expected score x C / B."""
        if not all(hasattr(data, k) for k in ("plan", "context", "tick_info", "tick", "efficiency")):
            raise ConfigError("condition: 'oracle' learns in the simulator from labelled states (aigb train diffbid "
                              "--set condition=oracle, without --data); a dataset holds no oracle days")
        self.plan_scaler = RobustScaler.fit(data.plan)
        self.context_scaler = RobustScaler.fit(data.context)
        self.info_scaler = RobustScaler.fit(data.tick_info)
        self.efficiency_levels = np.quantile(data.efficiency, EFFICIENCY_LEVELS)
        self.task = str(data.task)

    def _oracle_batch(self, data: Any, batch_size: int, rng: np.random.Generator) -> dict:
        """Labelled states drawn uniformly: the prefix is the state's tick, the target the oracle's
        rest of the day, the IDM's transition that tick's (realised rows, the oracle's next row) ->
        the oracle's action."""
        i = rng.integers(0, data.plan.shape[0], size=batch_size)
        tick = data.tick[i].astype(np.int64)
        return {"obs": data.plan[i], "context": data.context[i], "outcome": np.ones((batch_size, 1), np.float32),
                "prefix": tick, "tick": tick, "tick_info": data.tick_info[i], "action": data.action[i].astype(np.float32)}

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
        if self.config.condition == "oracle":
            return self._oracle_batch(dataset, batch_size, rng)
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
        from aigb.algos.diffbid.planner import DiffBidPlanner

        return DiffBidPlanner(self, **{"device": self.device, **options})

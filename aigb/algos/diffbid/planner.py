"""Serving: a trained DiffBid re-plans the rest of the day at every tick, with the realised rows
in-painted, and acts by inverse dynamics (an outcome planner) or by the best searched bid level
(a level planner).

At tick t the realised rows 0..t are in-painted, DDIM samples the rest (K steps, eta 0, initial
noise x temperature, one seeded generator per (campaign seed, tick)), and the IDM turns s_{t+1} of
the plan into the tick's action. The denoiser and condition network used for planning are
exponential moving averages of the trained ones. Without retraining, the samples can be steered
toward an objective on the plan (``objectives``, training-free guidance: ``aigb.diffusion.guidance``),
and searched (``search``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aigb.algos.batches import validate_history
from aigb.algos.device import resolve_device
from aigb.algos.diffbid.config import EFFICIENCY_LEVELS, SUPPORT_LEVELS, DiffBidConfig
from aigb.algos.diffbid.dynamics import transition_rows
from aigb.algos.diffbid.search import PlanSearch, PlanStep
from aigb.diffusion import TFGConfig, TFGGuidance, best_of_n, cfg_eps_fn, ddim_sample, x0_model_eps_fn
from aigb.seeding import torch_seed

if TYPE_CHECKING:
    from aigb.algos.diffbid.model import DiffBid

__all__ = ["DiffBidPlanner", "PlanStep"]


class DiffBidPlanner(PlanSearch):
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

    def __init__(self, algo: "DiffBid", *, guidance: float | None = None, target_return: float | None = None,
                 target_cpa: float | None = None, target_util: float | None = None, steps: int | None = None,
                 temperature: float | None = None, eta: float | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, guide=None, tfg: TFGConfig | None = None, n_candidates: int = 1,
                 select: str = "evaluator", evaluator=None, search_levels: int | None = None,
                 search_samples: int | None = None, support: float | None = None, max_change: float | None = None,
                 critic=None) -> None:
        cfg = algo.config
        if cfg.condition != "level" and any(v is not None for v in (search_levels, search_samples, support, max_change)):
            raise ValueError("levels, samples, support, change: only a planner trained with condition='level' searches bid levels")
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
                  "max_change": cfg.max_change if max_change is None else max_change}
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
        else:   # an oracle planner's one condition is the constant it was trained with
            targets = {"return": self.config.target_return, "cpa": self.config.target_cpa, "util": self.config.target_util,
                       "oracle": 1.0}
            self.outcome_values = {n: float(targets[n]) for n in algo.outcome_names}
            self.outcome = torch.tensor([list(self.outcome_values.values())], dtype=torch.float32, device=self.device)
        self._embeddings: tuple | None = None   # (context key, context, conditional and null embeddings)
        self._init_search(guide, tfg, n_candidates, select, evaluator, critic)

    def options(self) -> dict[str, Any]:
        """The serving options in force (for logs and reports)."""
        c = self.config
        out = {"guidance": c.guidance, "target_return": c.target_return, "target_cpa": c.target_cpa,
               "target_util": c.target_util, "steps": c.sampling_steps, "temperature": c.temperature, "eta": c.eta,
               "device": str(self.device), "n_candidates": self.n_candidates}
        if self.level_search:
            out.update(condition="level", search_levels=int(self.levels.numel()), search_samples=c.search_samples,
                       support=c.support, max_change=c.max_change)
        if self.objective is not None:
            out["guide"] = self.objective.text
        if self.tfg is not None:
            out["tfg"] = {k: getattr(self.tfg, k) for k in self.tfg.__dataclass_fields__}
        if self.n_candidates > 1 or self.critic is not None:
            out["select"] = self.select
        if self.critic is not None:
            out["critic"] = self.critic.source
        return out

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
        generator = torch.Generator(device=dev).manual_seed(torch_seed(seed, "diffbid/plan", t))
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

    def act(self, states, actions, rewards) -> float:
        states, actions, _ = validate_history(states, actions, rewards, self.feature_dim)
        return self.plan(states, seed=self.seed, previous=float(actions[-1]) if len(actions) else None).action

    def efficiency_of_rank(self, rank: float) -> float:
        """The training campaigns' score efficiency (score x C / B) at return rank ``rank``."""
        return float(np.interp(rank, EFFICIENCY_LEVELS, self.efficiency_levels))

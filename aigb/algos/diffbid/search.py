"""Decision-time search of a DiffBid planner and its rankers: N candidate plans ranked by the plan
evaluator (``evaluator``), the plan's claimed score or the objective (``objectives``); or a level
planner's grid of bid levels ranked by the plans' claimed score or by a Q critic (``critic``).

``PlanSearch`` is the part of ``planner.DiffBidPlanner`` that ranks; it works on the planner's
networks, scalers and config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from aigb.algos.diffbid.serving import SELECTIONS
from aigb.diffusion import TFGConfig, TFGGuidance, cfg_eps_fn, ddim_sample, x0_model_eps_fn

__all__ = ["SELECTIONS", "PlanSearch", "PlanStep"]


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


class PlanSearch:
    """Candidate and level search (mixed into ``DiffBidPlanner``)."""

    def _init_search(self, guide, tfg, n_candidates, select, evaluator, critic=None) -> None:
        from aigb.algos.diffbid.objectives import PlanObjective

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
                raise ValueError("select: ranking candidates by the evaluator needs one (aigb diffbid fit-evaluator)")
            if select == "objective" and self.objective is None:
                raise ValueError("select: ranking candidates by the objective needs guide=...")
            if select == "plan" and not {"budget_left", "value_delivered"} <= set(self.channels):
                raise ValueError(f"select: 'plan' reads the budget and value channels, absent from {self.channels}")
        if evaluator is not None:
            if tuple(evaluator.channels) != self.channels:
                raise ValueError(f"evaluator: its plan channels {evaluator.channels} differ from the planner's {self.channels}")
            evaluator.to(self.device)

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

    def plan_score(self, x0: torch.Tensor, t: int) -> torch.Tensor:
        """x0 (B, H, P) scaled plans -> (B,) the log score efficiency their last row claims under the
        planner's task (Target-CPA: v_T min(1, (C / CPA_T)^2); Max-Return: v_T), plus the
        objective's log f when one is given. Ranks a level search's plans and, with select=plan,
        a candidate search's."""
        from aigb.algos.diffbid.objectives import planned_efficiency

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
        a = float(self.bounds.clip(level))
        return PlanStep(tick=t, action=a, plan=self.plan_scaler.from_unit(unit), unit=unit, candidate=best)

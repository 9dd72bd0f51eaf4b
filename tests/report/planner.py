"""A fake planning strategy and an evaluation that stores traces, for the report tests.

``Planner`` bids ``rate * C`` and, every ``every`` ticks, plans to spend the rest of its budget
evenly over the remaining ticks; it exposes the plans the way a planning strategy (DiffBid) does.
``evaluate_with_traces`` is ``aigb.eval.evaluate.evaluate`` followed by what its trace hook does
(``aigb.eval.traces.write_traces`` over the same rows, replayed here: rollouts are deterministic).
"""

from __future__ import annotations

import numpy as np

from aigb.eval.evaluate import evaluate
from aigb.eval.rollout import run_campaign
from aigb.eval.traces import write_traces
from aigb.sim.population import PopulationConfig
from aigb.strategies import registry
from aigb.strategies.base import AlphaStrategy

NAME = "test-planner"


class Planner(AlphaStrategy):
    def __init__(self, rate: float = 1.0, every: int = 3):
        self.rate, self.every, self.name = rate, every, NAME

    def reset(self, campaign, n_ticks, seed):
        self.c, self.n_ticks, self.plans = campaign, n_ticks, []

    def alpha(self, obs):
        if obs.tick % self.every == 0:
            spent = np.cumsum(np.concatenate([[0.0], obs.history["cost"]]))        # (tick + 1,)
            prefix = self.c.budget - spent[:-1]                                     # realised rows before tick
            plan = np.linspace(obs.remaining_budget, 0.0, self.n_ticks - obs.tick + 1)
            self.plans.append((obs.tick, np.concatenate([prefix, plan])))          # (n_ticks + 1,)
        return self.rate * self.c.target_cpa


def _build(market, rate):
    return Planner(rate)


registry.register(NAME, _build, params={"rate": registry.Param(float, 1.0, "alpha / C")},
                  help="test strategy that records plans")


def evaluate_with_traces(specs, out_dir, *, periods, slots, market, baseline=None, seeds=(0,)):
    res = evaluate(specs, periods=periods, slots=slots, market=market, seeds=seeds, out_dir=out_dir,
                   baseline=baseline, progress=False)
    c = res.config
    rows = [run_campaign(tuple(specs), market, PopulationConfig(), s, p, a)
            for s in c.seeds for p in c.periods for a in c.slots]
    write_traces([r for campaign in rows for r in campaign], out_dir)
    return res

"""One strategy, one campaign: play it against the population and describe it as one tidy row.

``rollout`` plays a strategy in one advertiser slot of one (seed, period) with
``BiddingEnv(record_competitors=True)``; the competitors' top bids recorded in that very run feed
the hindsight oracle (``aigb.strategies.oracle.solve_oracle``), which gives the row its own upper
bound. ``run_campaign`` does this for several strategies on the same campaign (the unit of work of
``aigb.eval.evaluate``); a strategy that raises or returns invalid bids gets a row naming the
strategy and tick, and the other strategies are unaffected.

The bound. ``solve_oracle`` bounds the *expected* score (expected conversions and expected spend,
given the competitors' recorded bids) of any strategy whose expected spend is within the budget.
The market's hard cap acts on *realised* spend, so a strategy that spends its budget to the last
cent can end with an expected spend a little above the budget (fewer exposures than expected).
For those rows ``bound_score`` re-solves the oracle with the budget raised to the row's expected
spend; ``oracle_score`` always uses the campaign's budget. ``expected_score <= bound_score`` holds on
every row; ``expected_score <= oracle_score`` can fail by that slack (``aigb.eval.metrics`` counts it).

The task (``aigb.score.TASKS``, default "cpa") decides what the row's scores and its bound are:
under "max-return" the score is the conversions and the oracle maximises expected conversions
within the budget (``solve_oracle`` with the task's beta). A hindsight strategy learns it from
``Episode.task``; every other strategy bids as it always does.

A completed row also carries the optional ``aigb.eval.traces.TRACE_FIELDS`` (the per-tick bid
multiplier and, for a planning strategy, its plans), which ``aigb.eval.traces.write_traces`` stores
beside the results.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys

import numpy as np

from aigb.eval.traces import tick_traces
from aigb.sim.env import BiddingEnv, InvalidBids
from aigb.sim.period import campaign_outcomes
from aigb.sim.population import PopulationConfig, market_population
from aigb.strategies.base import Episode, Strategy, strategy_seed
from aigb.strategies.oracle import score_at_budget, solve_oracle
from aigb.score import DEFAULT_TASK, task_beta
from aigb.strategies.registry import strategy_factory
from aigb.types import MarketConfig

__all__ = ["ROW_FIELDS", "rollout", "run_campaign", "campaign_task", "spend_oscillation", "exhaustion_tick", "complete_row", "failed_row", "one_torch_thread"]

ROW_FIELDS: tuple[str, ...] = (
    "strategy", "seed", "period", "advertiser", "category", "budget", "target_cpa",
    "spend", "conversions", "expected_conversions", "expected_spend", "realized_cpa", "score", "expected_score",
    "oracle_score", "oracle_conversions", "oracle_spend", "oracle_alpha", "bound_score",
    "budget_utilisation", "exhaustion_tick", "spend_oscillation", "tick_spend", "remaining_budget",
    "error", "error_tick",
)
_NUMERIC = ("spend", "conversions", "expected_conversions", "expected_spend", "realized_cpa", "score", "expected_score",
            "oracle_score", "oracle_conversions", "oracle_spend", "oracle_alpha", "bound_score",
            "budget_utilisation", "spend_oscillation")


def spend_oscillation(tick_spend: np.ndarray) -> float:
    """Tick-to-tick total variation of spend over total spend: ``sum |s_t - s_{t-1}| / sum s_t``.

    About 0.1 for spend that follows the day's traffic, 2 for the whole budget in one tick, more for
    spend that switches on and off. NaN without spend.
    """
    s = np.asarray(tick_spend, dtype=np.float64)
    total = s.sum()
    return float(np.abs(np.diff(s)).sum() / total) if total > 0 else math.nan


def exhaustion_tick(remaining_before: np.ndarray, tick_spend: np.ndarray, min_remaining_budget: float) -> int:
    """First tick after which the remaining budget is below the market's minimum (-1: never)."""
    after = np.asarray(remaining_before, dtype=np.float64) - np.asarray(tick_spend, dtype=np.float64)
    hit = np.flatnonzero(after < min_remaining_budget)
    return int(hit[0]) if hit.size else -1


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one thread inside (when a strategy has imported it), then restore the count.

    A learned strategy's networks are small: a decision is many tiny matrix products, which a
    second thread does not speed up, and which stall when that thread waits for a core another job
    holds. DiffBid's 480 denoiser calls per campaign took 33.9 s with torch's default two threads
    beside one busy process on this 2-core machine, 4.5 s with one. And a network's reductions
    (a U-Net's convolutions) round differently with the number of threads: one thread everywhere
    makes bids the same wherever they are computed (an export's selftest replays on one)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rollout(strategy: Strategy, label: str, market: MarketConfig, seed: int, period: int, advertiser: int,
            population: PopulationConfig | None = None, task: str = DEFAULT_TASK) -> dict:
    """Play ``strategy`` (shown as ``label``) in one campaign; return one row of ``ROW_FIELDS``,
    scored and bounded under ``task``. Torch, if a strategy uses it, runs on one thread meanwhile."""
    population = market_population(market) if population is None else population
    with one_torch_thread():
        return _rollout(strategy, label, market, seed, period, advertiser, population, task)


def _rollout(strategy: Strategy, label: str, market: MarketConfig, seed: int, period: int, advertiser: int,
             population: PopulationConfig, task: str) -> dict:
    env = BiddingEnv(market, advertiser, seed=seed, population=population,
                     keep_pv_history=strategy.needs_pv_history, record_competitors=True)
    obs, _ = env.reset(period=period)
    c = obs.campaign
    row = {"strategy": label, "seed": int(seed), "period": int(period), "advertiser": int(advertiser),
           "category": int(c.category), "budget": c.budget, "target_cpa": c.target_cpa,
           "error": None, "error_tick": -1}
    p_value, comp_top, tick = [], [], []
    try:
        if strategy.hindsight:
            strategy.prepare(Episode(market, int(seed), int(period), int(advertiser), population, c, task))
        strategy.reset(c, market.n_ticks, strategy_seed(seed, period, advertiser))
    except Exception as err:  # noqa: BLE001 - any failure of user code becomes a row, not a crash
        return _failed(row, env, f"{label} raised before tick 0 (prepare/reset): {type(err).__name__}: {err}", 0)
    done = False
    while not done:
        t = obs.tick
        try:
            bids = strategy.bid(obs)
        except Exception as err:  # noqa: BLE001
            return _failed(row, env, f"{label} raised at tick {t}: {type(err).__name__}: {err}", t)
        try:
            obs, _, done, _, info = env.step(bids)
        except InvalidBids as err:
            return _failed(row, env, f"{label} returned invalid bids at tick {t}: {err}", t)
        p_value.append(info["p_value"])
        comp_top.append(info["competitor_top"])
        tick.append(np.full(info["p_value"].size, t, dtype=np.int64))

    p, ct, tk = np.concatenate(p_value).astype(np.float64), np.concatenate(comp_top), np.concatenate(tick)
    return complete_row(row, strategy, market, env.sim.history, env.sim.campaigns, advertiser, (p, ct, tk), task)


def complete_row(row: dict, strategy: Strategy, market: MarketConfig, history: dict[str, np.ndarray], campaigns,
                 advertiser: int, oracle_inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None, task: str) -> dict:
    """Fill a played campaign's row: its outcomes from the market's tick statistics (history: field
    -> (n_ticks, n_adv)), the traces, and the hindsight bound from ``oracle_inputs`` = (own p_value
    (n_pv,) float64, the competitors' top bids (n_pv, n_slots), tick (n_pv,)) as the campaign
    recorded them; None leaves the oracle columns NaN (rollouts that need no bound)."""
    a, c = advertiser, campaigns[advertiser]
    beta = task_beta(task)
    out = {k: v[a] for k, v in campaign_outcomes(history, campaigns, task).items()}
    tick_spend = history["cost"][:, a].copy()
    remaining = history["remaining_budget"][:, a].copy()
    expected_spend = float(history["expected_cost"][:, a].sum())
    row.update({
        "spend": float(out["spend"]), "conversions": float(out["conversions"]),
        "expected_conversions": float(out["expected_conversions"]), "expected_spend": expected_spend,
        "realized_cpa": float(out["realized_cpa"]), "score": float(out["score"]),
        "expected_score": float(out["expected_score"]), "budget_utilisation": float(out["budget_utilisation"]),
        "exhaustion_tick": exhaustion_tick(remaining, tick_spend, market.min_remaining_budget),
        "spend_oscillation": spend_oscillation(tick_spend),
        "tick_spend": tick_spend.tolist(), "remaining_budget": remaining.tolist(),
    })
    row.update(tick_traces(strategy, history, a))  # per-tick bid multiplier and plans (aigb.eval.traces)
    oracle_fields = ("oracle_score", "oracle_conversions", "oracle_spend", "oracle_alpha", "bound_score")
    if oracle_inputs is None:
        row.update({k: math.nan for k in oracle_fields})
        return row
    p, ct, tk = oracle_inputs
    rules = {"n_ticks": market.n_ticks, "exposure_probs": market.net_exposure_probs, "reserve_price": market.reserve_price,
             "beta": beta}
    try:
        # The frontier only as far as the row needs it: what the row spent (solve_oracle raises it to the budget).
        sol = solve_oracle(p, ct, tk, c.budget, c.target_cpa, frontier_spend=expected_spend, **rules)
        bound = sol.max_score
        if expected_spend > c.budget:
            # The same frontier at the budget the row spent in expectation (solve_oracle's
            # score-optimal spend over [0, budget], on the frontier it already built).
            bound = score_at_budget(sol.frontier, expected_spend, c.target_cpa, beta)
    except Exception as err:  # noqa: BLE001 - a failed bound is reported on the row, not fatal
        row["error"] = f"hindsight oracle failed for {row['strategy']}: {type(err).__name__}: {err}"
        row["error_tick"] = market.n_ticks
        row.update({k: math.nan for k in oracle_fields})
        return row
    row.update({"oracle_score": float(sol.max_score), "oracle_conversions": float(sol.conversions),
                "oracle_spend": float(sol.spend), "oracle_alpha": float(sol.alpha), "bound_score": float(bound)})
    return row


def failed_row(row: dict, history: dict[str, np.ndarray], advertiser: int, n_played: int, message: str, tick: int) -> dict:
    """A row for a campaign cut short: the message, the tick, what was spent in the ``n_played``
    ticks played, no metrics."""
    row.update({k: math.nan for k in _NUMERIC})
    row.update({"exhaustion_tick": -1, "error": message, "error_tick": int(tick),
                "tick_spend": history["cost"][:n_played, advertiser].tolist(),
                "remaining_budget": history["remaining_budget"][:n_played, advertiser].tolist()})
    return row


def _failed(row: dict, env: BiddingEnv, message: str, tick: int) -> dict:
    return failed_row(row, env.sim.history, env.advertiser, env.sim.tick, message, tick)


def run_campaign(specs: tuple[str, ...], market: MarketConfig, population: PopulationConfig,
                 seed: int, period: int, advertiser: int, built: dict[str, Strategy] | None = None,
                 task: str = DEFAULT_TASK) -> list[dict]:
    """Every strategy of ``specs`` on one campaign, in order; one row each (errors included), scored
    under ``task``.

    built: strategies already built from their specs, still unused (a Ray task receives them
    through the object store); each campaign plays a copy of one, the others are built here."""
    rows = []
    for spec in specs:
        try:
            if built is not None and spec in built:
                strategy = copy.deepcopy(built[spec])   # fresh per campaign, as a new build is
            else:
                strategy = strategy_factory(spec)(market)
        except Exception as err:  # noqa: BLE001 - e.g. a checkpoint that fails to load in a worker
            env = BiddingEnv(market, advertiser, seed=seed, population=population)
            env.reset(period=period)
            c = env.campaign
            row = {"strategy": spec, "seed": int(seed), "period": int(period), "advertiser": int(advertiser),
                   "category": int(c.category), "budget": c.budget, "target_cpa": c.target_cpa}
            rows.append(_failed(row, env, f"{spec} could not be built: {type(err).__name__}: {err}", 0))
            continue
        rows.append(rollout(strategy, spec, market, seed, period, advertiser, population, task))
    return rows


def campaign_task(task: tuple, built: dict[str, Strategy] | None = None) -> tuple[int, list[dict]]:
    """``run_campaign`` on ``(index, specs, market, population, seed, period, slot, scoring)``, scoring
    the ``aigb.score`` task; what a worker process or Ray task runs (it lives here so that workers
    import the simulator, not the file writers)."""
    index, specs, market, population, seed, period, slot, scoring = task
    return index, run_campaign(specs, market, population, seed, period, slot, built, scoring)

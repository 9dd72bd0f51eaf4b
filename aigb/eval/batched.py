"""Every campaign of one (seed, period) in one batched run, with the rows ``aigb.eval.rollout`` gives.

``play_period`` plays several (strategy, advertiser slot) campaigns of one period together on an
``aigb.sim.batch.CampaignBatch``: the period's traffic and luck are made once per tick, each
campaign's market advances from its own budgets, and every campaign's row equals the row
``aigb.eval.rollout.rollout`` writes for it alone, bit for bit (``tests/eval/test_batched.py``).

Each campaign plays its own copy of its strategy, asked for bids once per tick as in a single
rollout. Decisions stay per campaign on purpose: a network's forward pass over a batch of states
rounds differently from the same states one at a time (torch's CPU matrix products block by batch
size; 6e-8 apart on a 256-unit MLP), so a batched decision would move the rows off the
single-campaign ones; and a decision costs far less than its campaign's market.

A strategy that fails (raises, returns invalid bids) ends its own campaign with an error row, as
in ``rollout``; the other campaigns of the batch play on.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from aigb.eval.rollout import complete_row, failed_row, one_torch_thread
from aigb.score import DEFAULT_TASK
from aigb.sim.batch import CampaignBatch
from aigb.sim.env import InvalidBids, make_observation, validate_bids
from aigb.sim.population import PopulationConfig, market_population
from aigb.strategies.base import Episode, Strategy, strategy_seed
from aigb.strategies.registry import strategy_factory
from aigb.types import MarketConfig

__all__ = ["play_period", "period_task", "MAX_BATCH"]

MAX_BATCH = 96
"""Campaigns played in one batch at most; more are played in further batches. A batch keeps the
period's p_values for the bounds (96 MB at the default size) and, per campaign, who the
competitors' top bids were (1.5 MB); a tick's auction holds (campaigns, PVs of the tick, 4) arrays."""


def play_period(specs: Sequence[str], market: MarketConfig, population: PopulationConfig | None, seed: int, period: int,
                slots: Sequence[int], built: dict[str, Strategy] | None = None, task: str = DEFAULT_TASK,
                with_oracle: bool = True) -> list[list[dict]]:
    """Every strategy of ``specs`` on every slot of ``slots`` in (seed, period); ``rows[i][k]`` is
    slot i's row of strategy k, as ``aigb.eval.rollout.run_campaign`` gives it.

    built: strategies already built from their specs, still unused; each campaign plays a copy.
    with_oracle: False leaves the rows' bound columns NaN and records nothing for them (rollouts
    that only need the scores).
    """
    population = market_population(market) if population is None else population   # None: the market's field
    pairs = [(a, k) for a in slots for k in range(len(specs))]
    rows: dict[tuple[int, int], dict] = {}
    for first in range(0, len(pairs), MAX_BATCH):
        chunk = pairs[first:first + MAX_BATCH]
        with one_torch_thread():
            rows.update(_play(specs, chunk, market, population, seed, period, built, task, with_oracle))
    return [[rows[(a, k)] for k in range(len(specs))] for a in slots]


def _play(specs, pairs, market, population, seed, period, built, task, with_oracle) -> dict[tuple[int, int], dict]:
    batch = CampaignBatch(market, seed, period, [a for a, _ in pairs], population=population,
                          record_competitors=with_oracle)
    n = len(pairs)
    out: dict[tuple[int, int], dict] = {}
    strategies: list[Strategy | None] = [None] * n
    rows: list[dict] = []
    for b, (a, k) in enumerate(pairs):
        c = batch.campaigns[a]
        rows.append({"strategy": specs[k], "seed": int(seed), "period": int(period), "advertiser": int(a),
                     "category": int(c.category), "budget": c.budget, "target_cpa": c.target_cpa,
                     "error": None, "error_tick": -1})

    def fail(b: int, message: str, tick: int) -> None:
        a, _ = pairs[b]
        out[pairs[b]] = failed_row(rows[b], batch.history[b], a, batch.tick, message, tick)
        batch.drop(b)

    for b, (a, k) in enumerate(pairs):
        spec = specs[k]
        try:
            strategy = copy.deepcopy(built[spec]) if built is not None and spec in built else strategy_factory(spec)(market)
        except Exception as err:  # noqa: BLE001 - e.g. a checkpoint that fails to load in a worker
            fail(b, f"{spec} could not be built: {type(err).__name__}: {err}", 0)
            continue
        c = batch.campaigns[a]
        try:
            if strategy.hindsight:
                strategy.prepare(Episode(market, int(seed), int(period), int(a), population, c, task))
            strategy.reset(c, market.n_ticks, strategy_seed(seed, period, a))
        except Exception as err:  # noqa: BLE001 - any failure of user code becomes a row, not a crash
            fail(b, f"{spec} raised before tick 0 (prepare/reset): {type(err).__name__}: {err}", 0)
            continue
        strategies[b] = strategy

    pv_history = {b: [] for b in range(n) if strategies[b] is not None and strategies[b].needs_pv_history}
    ticks: list[np.ndarray] = []
    while not batch.done and batch.live.any():
        t = batch.tick
        inputs = batch.tick_inputs()
        n_pv = inputs[0].shape[0]
        live = [b for b in range(n) if batch.live[b]]
        observations = {b: make_observation(market, batch.campaigns[pairs[b][0]], t, batch.history[b], inputs,
                                            float(batch.remaining_budget(b)[pairs[b][0]]), pv_history.get(b))
                        for b in live}
        bids: dict[int, np.ndarray] = {}
        for b in live:
            label = rows[b]["strategy"]
            try:
                decided = strategies[b].bid(observations[b])
            except Exception as err:  # noqa: BLE001 - any failure of user code becomes a row
                fail(b, f"{label} raised at tick {t}: {type(err).__name__}: {err}", t)
                continue
            try:
                bids[b] = validate_bids(decided, n_pv)
            except InvalidBids as err:
                fail(b, f"{label} returned invalid bids at tick {t}: {err}", t)
        if not batch.live.any():
            break
        results = batch.step(bids)
        if with_oracle:
            ticks.append(np.full(n_pv, t, dtype=np.int64))
        for b, res in results.items():
            a = pairs[b][0]
            if b in pv_history:
                pv_history[b].append({
                    "p_value": inputs[0][:, a].copy(), "p_value_sigma": inputs[1][:, a].copy(),
                    "bid": res.bids, "least_winning_cost": res.least_winning_cost, **res.view(a, market)})

    played = [b for b, pair in enumerate(pairs) if pair not in out]   # every tick of the period played
    if with_oracle and played:
        tick = np.concatenate(ticks)
        p_cat = {a: batch.own_p_value(a).astype(np.float64) for a in dict.fromkeys(a for a, _ in pairs)}
    for b in played:
        pair = pairs[b]
        a = pair[0]
        inputs = (p_cat[a], batch.competitor_top(b), tick) if with_oracle else None
        out[pair] = complete_row(rows[b], strategies[b], market, batch.history[b], batch.campaigns, a, inputs, task)
    return out


def period_task(task: tuple, built: dict[str, Strategy] | None = None) -> list[tuple[int, list[dict]]]:
    """``play_period`` on ``(indices, specs, market, population, seed, period, slots, scoring)``:
    [(index, rows of slot)] for each slot, the unit of work of ``aigb.eval.evaluate`` (one per
    period, or a part of one, over local processes or Ray tasks)."""
    indices, specs, market, population, seed, period, slots, scoring = task
    rows = play_period(specs, market, population, seed, period, slots, built, scoring)
    return list(zip(indices, rows))

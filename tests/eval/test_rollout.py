import math

import numpy as np
import pytest

from aigb.eval.rollout import ROW_FIELDS, exhaustion_tick, rollout, run_campaign, spend_oscillation
from aigb.strategies.base import Strategy
from aigb.strategies.rules import FixedRate
from aigb.sim.population import PopulationConfig
from aigb.types import MarketConfig

MARKET = MarketConfig(n_pv=4000, n_ticks=10, n_advertisers=10)


def test_spend_oscillation_on_known_series():
    assert spend_oscillation([1.0, 1.0, 1.0, 1.0]) == 0.0
    assert spend_oscillation([0.0, 4.0, 0.0, 0.0]) == pytest.approx(2.0)   # one spike: up and down
    assert spend_oscillation([1.0, 3.0, 1.0, 3.0]) == pytest.approx(6.0 / 8.0)
    assert math.isnan(spend_oscillation([0.0, 0.0]))


def test_exhaustion_tick():
    remaining_before = np.array([10.0, 6.0, 1.0, 0.05])
    spend = np.array([4.0, 5.0, 0.95, 0.0])
    assert exhaustion_tick(remaining_before, spend, 0.1) == 2
    assert exhaustion_tick(remaining_before, np.zeros(4), 0.1) == 3  # starts below the minimum at the last tick
    assert exhaustion_tick(np.array([10.0, 10.0]), np.zeros(2), 0.1) == -1


class RaisesAt(Strategy):
    def __init__(self, tick):
        self.tick, self.name = tick, f"raises-at-{tick}"

    def reset(self, campaign, n_ticks, seed):
        self.c = campaign

    def bid(self, obs):
        if obs.tick == self.tick:
            raise ZeroDivisionError("boom")
        return self.c.target_cpa * obs.p_value.astype(np.float64)


class NaNAt(RaisesAt):
    def bid(self, obs):
        bids = self.c.target_cpa * obs.p_value.astype(np.float64)
        if obs.tick == self.tick:
            bids[:] = np.nan
        return bids


def test_a_raising_strategy_gives_an_error_row_naming_it_and_the_tick():
    row = rollout(RaisesAt(5), "raiser", MARKET, 0, 1_000_000, 2)
    assert set(row) == set(ROW_FIELDS)
    assert row["error"].startswith("raiser raised at tick 5: ZeroDivisionError: boom")
    assert row["error_tick"] == 5 and math.isnan(row["score"]) and len(row["tick_spend"]) == 5
    row = rollout(NaNAt(3), "nan-bidder", MARKET, 0, 1_000_000, 2)
    assert "nan-bidder returned invalid bids at tick 3" in row["error"] and row["error_tick"] == 3


def test_row_is_complete_and_bounded():
    row = rollout(FixedRate(1.2), "fixed", MARKET, 0, 1_000_000, 4)
    assert set(row) == set(ROW_FIELDS) | {"tick_alpha"} and row["error"] is None and row["error_tick"] == -1
    assert len(row["tick_spend"]) == len(row["remaining_budget"]) == MARKET.n_ticks
    assert sum(row["tick_spend"]) == pytest.approx(row["spend"])
    assert row["remaining_budget"][0] == row["budget"]
    assert row["expected_score"] <= row["bound_score"] * (1 + 1e-9)
    assert row["oracle_score"] > 0 and row["oracle_spend"] <= row["budget"] * (1 + 1e-12)


def test_run_campaign_is_paired_and_keeps_other_strategies():
    rows = run_campaign(("fixed", "fixed:rate=1", "pid"), MARKET, PopulationConfig(), 0, 1_000_000, 1)
    assert [r["strategy"] for r in rows] == ["fixed", "fixed:rate=1", "pid"]
    a, b = rows[0], rows[1]
    # Same strategy under two names on the same campaign: identical, bit for bit.
    # (assert_equal: NaN equals NaN, e.g. the realised CPA of a campaign without conversions)
    np.testing.assert_equal({k: v for k, v in a.items() if k != "strategy"}, {k: v for k, v in b.items() if k != "strategy"})


def test_torch_runs_on_one_thread_during_a_rollout_and_is_restored():
    torch = pytest.importorskip("torch")

    class Threads(FixedRate):
        seen: list[int] = []

        def bid(self, obs):
            self.seen.append(torch.get_num_threads())
            return super().bid(obs)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        strategy = Threads()
        row = rollout(strategy, "threads", MarketConfig(n_pv=2000, n_ticks=6, n_advertisers=4), 0, 0, 1)
        assert row["error"] is None and strategy.seen == [1] * 6
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

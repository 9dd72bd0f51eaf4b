import textwrap

import numpy as np
import pytest

from aigb.sim.env import BiddingEnv
from aigb.strategies.check import check_strategy
from aigb.strategies.neurips2024 import CompetitionStrategy
from aigb.strategies.registry import make_strategy, strategy_factory
from aigb.types import ConfigError, MarketConfig

MARKET = MarketConfig(n_pv=3000, n_ticks=8, n_advertisers=8)


class RecordingBidder:
    """A competition-style strategy: bids cpa * pValue and keeps what the harness handed it."""

    def __init__(self, budget=100, name="Recording", cpa=2, category=1):
        self.budget, self.cpa, self.category, self.name = budget, cpa, category, name
        self.remaining_budget = budget
        self.calls, self.resets = [], 0

    def reset(self):
        self.remaining_budget = self.budget
        self.resets += 1

    def bidding(self, timeStepIndex, pValues, pValueSigmas, historyPValueInfo, historyBid,
                historyAuctionResult, historyImpressionResult, historyLeastWinningCost):
        self.calls.append({
            "tick": timeStepIndex, "p": pValues.copy(), "sigma": pValueSigmas.copy(), "remaining": self.remaining_budget,
            "pinfo": [x.copy() for x in historyPValueInfo], "bid": [x.copy() for x in historyBid],
            "auction": [x.copy() for x in historyAuctionResult], "impression": [x.copy() for x in historyImpressionResult],
            "lwc": [x.copy() for x in historyLeastWinningCost]})
        return 1.5 * self.cpa * pValues


def _play(bidder, advertiser=2, market=MARKET):
    s = CompetitionStrategy(bidder)
    env = BiddingEnv(market, advertiser, seed=3, keep_pv_history=True)
    obs, _ = env.reset(period=0)
    s.reset(obs.campaign, market.n_ticks, seed=0)
    done, remaining = False, []
    while not done:
        remaining.append(obs.remaining_budget)
        obs, _, done, _, _ = env.step(s.bid(obs))
    return env, remaining


def test_attributes_reset_and_history_layouts():
    bidder = RecordingBidder()
    env, remaining = _play(bidder)
    c = env.campaign
    assert (bidder.budget, bidder.cpa, bidder.category, bidder.resets) == (c.budget, c.target_cpa, c.category, 1)
    pv = env._pv_history
    assert len(bidder.calls) == MARKET.n_ticks
    for t, call in enumerate(bidder.calls):
        assert call["tick"] == t
        for key in ("pinfo", "bid", "auction", "impression", "lwc"):
            assert len(call[key]) == t
        assert call["remaining"] == pytest.approx(remaining[t], abs=1e-9)
        np.testing.assert_array_equal(call["p"], pv[t]["p_value"].astype(np.float64))
        np.testing.assert_array_equal(call["sigma"], pv[t]["p_value_sigma"].astype(np.float64))
        for s in range(t):
            n = pv[s]["p_value"].size
            past = pv[s]
            assert call["pinfo"][s].shape == (n, 2) and call["auction"][s].shape == (n, 3)
            assert call["impression"][s].shape == (n, 2) and call["bid"][s].shape == (n,) and call["lwc"][s].shape == (n,)
            np.testing.assert_array_equal(call["pinfo"][s][:, 0], past["p_value"].astype(np.float64))
            np.testing.assert_array_equal(call["pinfo"][s][:, 1], past["p_value_sigma"].astype(np.float64))
            np.testing.assert_array_equal(call["bid"][s], past["bid"])
            np.testing.assert_array_equal(call["auction"][s][:, 0], past["won"].astype(float))
            np.testing.assert_array_equal(call["auction"][s][:, 1], past["slot"].astype(float))
            np.testing.assert_array_equal(call["auction"][s][:, 2], past["price"])
            np.testing.assert_array_equal(call["impression"][s][:, 0], past["exposed"].astype(float))
            np.testing.assert_array_equal(call["impression"][s][:, 1], past["conversion"].astype(float))
            np.testing.assert_array_equal(call["lwc"][s], past["least_winning_cost"])
    last = bidder.calls[-1]
    # Sanity of the layouts: a won slot is 1..3 and costs at most the bid; a conversion needs exposure.
    won = np.concatenate([a[:, 0] for a in last["auction"]]) == 1
    slot = np.concatenate([a[:, 1] for a in last["auction"]])
    assert won.any() and np.all((slot[won] >= 1) & (slot[won] <= 3)) and np.all(slot[~won] == 0)
    imp = np.concatenate(last["impression"])
    assert np.all(imp[:, 1] <= imp[:, 0])


def test_stops_asking_below_the_minimum_remaining_budget():
    bidder = RecordingBidder()
    s = CompetitionStrategy(bidder, min_remaining_budget=1e9)  # every budget counts as exhausted
    env = BiddingEnv(MARKET, 1, seed=0, keep_pv_history=True)
    obs, _ = env.reset(period=0)
    s.reset(obs.campaign, MARKET.n_ticks, seed=0)
    assert np.all(s.bid(obs) == 0) and bidder.calls == []


def test_rejects_objects_without_the_interface():
    with pytest.raises(ConfigError, match="bidding"):
        CompetitionStrategy(object())


def test_registry_loads_a_competition_file_and_it_passes_the_checker(tmp_path):
    path = tmp_path / "player.py"
    path.write_text(textwrap.dedent("""
        import numpy as np

        class PlayerBiddingStrategy:
            def __init__(self, budget=100, name="Player", cpa=2, category=1):
                self.budget, self.cpa, self.category, self.name = budget, cpa, category, name
                self.remaining_budget = budget

            def reset(self):
                self.remaining_budget = self.budget

            def bidding(self, timeStepIndex, pValues, pValueSigmas, historyPValueInfo, historyBid,
                        historyAuctionResult, historyImpressionResult, historyLeastWinningCost):
                spent = sum(float(np.sum(r[:, 2] * i[:, 0])) for r, i in zip(historyAuctionResult, historyImpressionResult))
                assert abs(self.budget - spent - self.remaining_budget) < 1e-6 * self.budget
                return self.cpa * pValues
    """))
    spec = f"neurips2024:{path}:PlayerBiddingStrategy"
    assert make_strategy(spec, MARKET).name == spec
    check_strategy(strategy_factory(spec))
    with pytest.raises(ConfigError, match="no attribute 'Missing'"):
        strategy_factory(f"neurips2024:{path}:Missing")


class NegativeBidder(RecordingBidder):
    def bidding(self, timeStepIndex, pValues, *history):
        bids = 1.5 * self.cpa * pValues
        bids[::2] = -1.0  # "no bid" in competition code
        return bids


def test_negative_competition_bids_are_no_bids():
    env, _ = _play(NegativeBidder())
    bids = [h["bid"] for h in env._pv_history]
    assert all((b[::2] == 0).all() for b in bids)
    assert any((b[1::2] > 0).any() for b in bids)

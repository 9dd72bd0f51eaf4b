"""Hard caps on early spend by throttling (``aigb.strategies.throttle``): the forecast and the share
on hand-computed cases, and in the real market a bidder that overspends its mornings keeps under
the cap once guarded."""

import numpy as np
import pytest

from aigb.algos.plan_objectives import parse_guide
from aigb.eval.rollout import rollout
from aigb.sim.env import Observation
from aigb.strategies.diffbid import parse_diffbid_spec
from aigb.strategies.rules import FixedRate
from aigb.strategies.throttle import SpendCapGuard, caps_of_terms
from aigb.types import Campaign, ConfigError, MarketConfig


def test_caps_come_from_cap_and_exhaust_terms_only():
    terms = parse_guide("cpa:0.9,cap:0.3@24,exhaust@40,exhaust:0.2@30,util:0.95,smooth")
    assert caps_of_terms(terms, 48) == ((0.3, 24), (1.0 - 1.0 / 48, 40), (0.8, 30))
    assert caps_of_terms(parse_guide("cpa:0.8"), 48) == ()


def _obs(tick, remaining, history, budget=1000.0, n_pv=4):
    campaign = Campaign(advertiser=0, category=0, budget=budget, target_cpa=50.0)
    return Observation(tick=tick, n_ticks=48, campaign=campaign, remaining_budget=remaining,
                       p_value=np.full(n_pv, 0.01, dtype=np.float32), p_value_sigma=np.zeros(n_pv, dtype=np.float32),
                       history={k: np.asarray(v, dtype=np.float64) for k, v in history.items()},
                       features=np.zeros(1, dtype=np.float32))


def test_charge_rate_and_participation_by_hand():
    guard = SpendCapGuard([(0.3, 24)], margin=0.1, window=2)
    # offered bid money per tick = bid_mean x n_pv: 0, 200, 100, 400; charged 0, 20, 30, 40
    history = {"bid_mean": [0.0, 2.0, 1.0, 4.0], "n_pv": [10, 100, 100, 100], "cost": [0.0, 20.0, 30.0, 40.0]}
    assert guard.charge_rate(history) == pytest.approx(max(30 / 100, 40 / 400))          # the last two ticks with bids
    assert SpendCapGuard([(0.3, 24)], window=3).charge_rate(history) == pytest.approx(0.3)
    assert guard.charge_rate({"bid_mean": [0.0], "n_pv": [5], "cost": [0.0]}) == 1.0      # nothing offered yet
    # spent 90 of 1000, aim 0.3 x 0.9 x 1000 = 270: allowance 180; bids 4 x 250 = 1000 at q 0.3: forecast 300
    obs = _obs(4, 910.0, history)
    bids = np.full(4, 250.0)
    assert guard.participation(obs, bids) == pytest.approx(180 / (2 * 300))
    assert guard.participation(_obs(24, 910.0, history), bids) == 1.0                     # after the cap's tick
    assert guard.participation(_obs(4, 720.0, history), bids) == 0.0                      # spent 280 > 270
    assert guard.participation(_obs(4, 995.0, history), np.full(4, 50.0)) == 1.0        # 265 left >= 2 x 0.3 x 200

def test_throttled_bids_are_a_seeded_subset():
    guard = SpendCapGuard([(0.3, 24)], margin=0.1, q_floor=0.0)
    history = {"bid_mean": [1.0], "n_pv": [1000], "cost": [100.0]}                         # q = 0.1
    obs = _obs(1, 900.0, history, n_pv=20_000)
    bids = np.full(20_000, 0.5)                                                            # forecast 0.1 x 10,000 = 1000
    out = guard.apply(obs, bids, seed=7)
    assert guard.participation(obs, bids) == pytest.approx((270 - 100) / 2000)
    kept = out > 0
    assert np.all(out[kept] == 0.5)
    assert kept.mean() == pytest.approx(0.085, abs=0.01)
    # the default floor: q is taken as at least 0.3, so the forecast is 3,000
    assert SpendCapGuard([(0.3, 24)], margin=0.1).participation(obs, bids) == pytest.approx((270 - 100) / 6000)
    assert np.array_equal(out, guard.apply(obs, bids, seed=7))
    assert not np.array_equal(out, guard.apply(obs, bids, seed=8))


@pytest.mark.parametrize("kwargs, message", [
    ({"caps": []}, "no cap on early spend"), ({"caps": [(1.5, 24)]}, "share must lie in"),
    ({"caps": [(0.3, 0)]}, "tick must be >= 1"), ({"caps": [(0.3, 24)], "margin": 1.0}, "margin"),
    ({"caps": [(0.3, 24)], "q_floor": 1.5}, "q_floor"),
])
def test_bad_guards_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpendCapGuard(**kwargs)


def test_throttle_option_needs_a_cap_to_enforce():
    assert parse_diffbid_spec("b.pt?guide=cap:0.3@24&throttle=0.1")[1] == {"guide": "cap:0.3@24", "throttle": 0.1}
    for text in ("b.pt?throttle=0.1", "b.pt?guide=cpa:0.8&throttle=0.1"):
        with pytest.raises(ConfigError, match="option throttle enforces caps on early spend"):
            parse_diffbid_spec(text)
    with pytest.raises(ConfigError, match="option throttle: .*must be <= 0.99"):
        parse_diffbid_spec("b.pt?guide=cap:0.3@24&throttle=1")


class _Guarded(FixedRate):
    def __init__(self, rate, guard):
        super().__init__(rate=rate)
        self.guard = guard

    def reset(self, campaign, n_ticks, seed):
        super().reset(campaign, n_ticks, seed)
        self._seed = seed

    def bid(self, obs):
        return self.guard.apply(obs, super().bid(obs), self._seed)


def test_in_the_market_a_guarded_bidder_keeps_its_mornings_under_the_cap():
    market = MarketConfig(n_pv=20_000, n_advertisers=12)
    share, tau = 0.2, 24
    shares, guarded = [], []
    for advertiser in range(4):
        plain = rollout(FixedRate(rate=3.0), "fixed", market, 0, 1, advertiser)
        capped = rollout(_Guarded(3.0, SpendCapGuard([(share, tau)], margin=0.1)), "guarded", market, 0, 1, advertiser)
        shares.append(sum(plain["tick_spend"][:tau]) / plain["budget"])
        guarded.append(sum(capped["tick_spend"][:tau]) / capped["budget"])
        assert sum(capped["tick_spend"][tau:]) > 0.0                                     # it bids again after the cap
    assert max(shares) > share                                                            # unguarded, mornings overspend
    assert max(guarded) <= share

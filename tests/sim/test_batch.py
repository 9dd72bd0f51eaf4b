"""The batched market against the one-campaign market it must equal, bit for bit."""

import numpy as np
import pytest

from aigb.seeding import rng
from aigb.sim.auction import rank_bids
from aigb.sim.batch import CampaignBatch, _auction_batch, _candidates, _rank_candidates, _rank_rows, _rerank_rows
from aigb.sim.period import PeriodSim
from aigb.types import TICK_STAT_FIELDS, MarketConfig

# Dense enough in spend that budgets run out within the day (the budget cap's re-runs) and
# advertisers fall below the minimum budget (their bids become 0).
MARKET = MarketConfig(n_pv=30_000, n_ticks=24, n_advertisers=12)
SEED, PERIOD = 4, 1_000_002


def _bids(b: int, tick: int, p_column: np.ndarray, target_cpa: float) -> np.ndarray:
    """Campaign b's bids: multipliers drawn per (campaign, tick), from 0 (no bid) to 60 x the CPA."""
    g = rng(99, "test-bids", b, tick)
    rate = g.choice([0.0, 0.5, 1.0, 3.0, 60.0])
    bids = rate * target_cpa * p_column.astype(np.float64)
    bids[g.random(bids.size) < 0.05] = 0.0
    return bids


def test_every_campaign_of_a_batch_steps_as_its_own_period():
    advertisers = [0, 5, 5, 11, 3]   # slot 5 twice: two campaigns of one slot, bid differently
    batch = CampaignBatch(MARKET, SEED, PERIOD, advertisers, record_competitors=True)
    refs = [PeriodSim(MARKET, SEED, PERIOD) for _ in advertisers]
    # Advertiser 3 starts below the minimum budget (it bids 0 throughout, controlled or not) and
    # 8 runs out early.
    for sim in [batch, *refs]:
        sim.budget[3], sim.budget[8] = 0.05, 3.0
    reruns = zeroed = 0
    tops, p_own = [[] for _ in advertisers], [[] for _ in advertisers]
    while not batch.done:
        p, _ = batch.tick_inputs()
        bids = {b: _bids(b, batch.tick, p[:, a], batch.campaigns[a].target_cpa) for b, a in enumerate(advertisers)}
        got = batch.step(bids)
        for b, a in enumerate(advertisers):
            ref = refs[b]
            zeroed += int((ref.remaining_budget < MARKET.min_remaining_budget).sum())
            record = ref.step({a: bids[b]})
            reruns += record.outcome.n_reruns
            out = record.outcome
            assert np.array_equal(got[b].winner, out.winner)
            assert np.array_equal(got[b].price, out.price)
            assert np.array_equal(got[b].exposed, out.exposed)
            assert np.array_equal(got[b].conversion, out.conversion)
            assert np.array_equal(got[b].least_winning_cost, out.least_winning_cost)
            assert np.array_equal(got[b].bids, out.bids[:, a])
            others = out.bids.copy()
            others[:, a] = 0.0
            tops[b].append(rank_bids(others, MARKET.n_slots)[1])
            p_own[b].append(record.p_value[:, a])
    assert reruns > 0 and zeroed > 0   # both rare paths were played
    for b, a in enumerate(advertisers):
        for field in TICK_STAT_FIELDS:
            want, have = refs[b].history[field], batch.history[b][field]
            if field == "bid_mean":   # the controlled column only
                want, have = want[:, a], have[:, a]
            assert np.array_equal(want, have), (b, field)
        assert np.array_equal(refs[b].spent, batch.spent[b])
        # What the hindsight bound reads: the competitors' top bids and the own p_values.
        assert np.array_equal(batch.competitor_top(b), np.concatenate(tops[b]))
        assert np.array_equal(batch.own_p_value(a), np.concatenate(p_own[b]))


def test_a_campaign_that_leaves_changes_nothing_for_the_others():
    advertisers = [2, 7]
    whole = CampaignBatch(MARKET, SEED, PERIOD, advertisers)
    cut = CampaignBatch(MARKET, SEED, PERIOD, advertisers)
    while not whole.done:
        p, _ = whole.tick_inputs()
        bids = {b: _bids(b, whole.tick, p[:, a], whole.campaigns[a].target_cpa) for b, a in enumerate(advertisers)}
        whole.step(bids)
        if cut.tick == 3:
            cut.drop(0)
        cut.step({b: v for b, v in bids.items() if cut.live[b]})
    for field in TICK_STAT_FIELDS:
        assert np.array_equal(whole.history[1][field], cut.history[1][field], equal_nan=True)
    assert cut.history[0]["cost"][3:].sum() == 0   # the campaign that left stopped where it was


@pytest.mark.parametrize("integer_bids", [False, True])
def test_candidate_ranking_equals_ranking_every_bid(integer_bids):
    """Any multipliers inside the candidates' ranges rank as the full bid matrix does, ties included
    (integer-valued bids tie often; the lower advertiser must win)."""
    g = np.random.default_rng(3)
    n_pv, n_adv, n_camp = 3000, 10, 6
    p = g.integers(1, 4, (n_pv, n_adv)).astype(np.float32) if integer_bids else g.random((n_pv, n_adv)).astype(np.float32)
    p[g.random((n_pv, n_adv)) < 0.1] = 0.0
    alpha = g.integers(1, 3, (n_camp, n_adv)).astype(np.float64) if integer_bids else g.uniform(0.5, 2.0, (n_camp, n_adv))
    zeroed = g.random((n_camp, n_adv)) < 0.1
    ctrl = g.integers(0, n_adv, n_camp)
    x = g.integers(0, 8, (n_camp, n_pv)).astype(np.float64) if integer_bids else g.random((n_camp, n_pv)) * 2.0
    eff = np.where(zeroed, 0.0, alpha)
    own = np.zeros((n_camp, n_adv), dtype=bool)
    own[np.arange(n_camp), ctrl] = True
    a_min = np.where(own, np.inf, eff).min(axis=0)
    a_max = np.where(own, -np.inf, eff).max(axis=0)
    start, cand, thresh = _candidates(p, a_min, a_max, 4)
    assert cand.size < n_pv * n_adv   # the bound leaves bidders out
    # The evaluation's pass: every campaign at once (slots priced by the reserve 0: a sold slot is any bid).
    shown = np.ones((n_pv, 3), dtype=bool)
    batch_who, batch_value = np.empty((n_camp, n_pv, 4), dtype=np.int64), np.empty((n_camp, n_pv, 4))
    winner, price = np.empty((n_camp, n_pv, 3), dtype=np.int64), np.empty((n_camp, n_pv, 3))
    exposed, cost = np.empty((n_camp, n_pv, 3), dtype=bool), np.zeros((n_camp, n_adv))
    _auction_batch(p, alpha, zeroed, ctrl, x, start, cand, 0.0, shown, batch_who, batch_value, winner, price, exposed, cost)
    for c in range(n_camp):
        dense = p.astype(np.float64) * eff[c]
        dense[:, ctrl[c]] = 0.0 if zeroed[c, ctrl[c]] else x[c]
        want_who, want_value = rank_bids(dense, 4)
        who, value = np.empty((n_pv, 4), dtype=np.int64), np.empty((n_pv, 4))
        _rank_candidates(p, alpha[c], zeroed[c], int(ctrl[c]), x[c], np.arange(n_pv), np.zeros((0, 0), dtype=bool),
                         start, cand, who, value)
        assert np.array_equal(who, want_who) and np.array_equal(value, want_value)
        assert np.array_equal(batch_who[c], want_who) and np.array_equal(batch_value[c], want_value)
        sold = want_value[:, 1:] > 0
        assert np.array_equal(winner[c], np.where(sold, want_who[:, :3], -1))
        assert np.allclose(cost[c], np.bincount(winner[c][sold], weights=want_value[:, 1:][sold], minlength=n_adv))
        dropped = g.random((n_pv, n_adv)) < 0.2
        dense[dropped] = 0.0
        want_who, want_value = rank_bids(dense, 4)
        rows = np.arange(n_pv)
        _rank_rows(p, alpha[c], zeroed[c], int(ctrl[c]), x[c], rows, dropped, who, value)
        assert np.array_equal(who, want_who) and np.array_equal(value, want_value)
        # A re-run: candidates first, every bidder where the drops broke the bound.
        who[:], value[:] = -7, -7.0
        _rerank_rows(p, alpha[c], zeroed[c], int(ctrl[c]), x[c], rows, dropped, start, cand, thresh, who, value)
        assert np.array_equal(who, want_who) and np.array_equal(value, want_value)

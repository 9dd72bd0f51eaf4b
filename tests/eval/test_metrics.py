import math

import numpy as np
import pytest
from scipy import stats

from aigb.eval.metrics import format_summary, mean_ci, ratio_of_sums_ci, summarize


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mean_ci_matches_scipys_t_interval(confidence):
    x = np.random.default_rng(3).gamma(2.0, 3.0, size=37)
    ci = mean_ci(x, confidence)
    low, high = stats.t.interval(confidence, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    assert ci.n == 37 and ci.mean == pytest.approx(x.mean(), rel=1e-12)
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-10)


def test_mean_ci_edge_cases():
    # Student's t table: t_{0.975, 4} = 2.7764; sd of 1..5 = sqrt(2.5).
    ci = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (ci.high - ci.low) / 2 == pytest.approx(2.7764 * math.sqrt(2.5) / math.sqrt(5), abs=1e-4)
    assert mean_ci([2.0, math.nan]).n == 1 and math.isnan(mean_ci([2.0]).low)
    assert math.isnan(mean_ci([]).mean)
    wide = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0], confidence=0.99)
    assert wide.high - wide.low > ci.high - ci.low


def test_ratio_of_sums_bootstrap_is_reproducible_and_covers_the_point():
    g = np.random.default_rng(1)
    den = g.uniform(10, 20, 200)
    num = 0.7 * den + g.normal(0, 1, 200)
    a, b = ratio_of_sums_ci(num, den), ratio_of_sums_ci(num, den)
    assert a == b
    assert a.mean == pytest.approx(num.sum() / den.sum())
    assert a.low < a.mean < a.high and a.high - a.low < 0.05


def _rows():
    rows = []
    # Two strategies on the same three campaigns; "b" fails on the third one.
    for name, scores in (("a", [1.0, 2.0, 3.0]), ("b", [2.0, 2.5, None])):
        for i, s in enumerate(scores):
            err = None if s is not None else "b raised at tick 5: boom"
            rows.append({
                "strategy": name, "seed": 0, "period": 1_000_000, "advertiser": i,
                "score": math.nan if s is None else s, "expected_score": math.nan if s is None else s,
                "oracle_score": 4.0, "bound_score": 4.0,
                "realized_cpa": [10.0, 30.0, 10.0][i], "target_cpa": 20.0,
                "budget_utilisation": [0.5, 1.0, 1.0][i], "exhaustion_tick": [-1, 40, 30][i],
                "spend_oscillation": 0.2, "error": err,
            })
    return rows


def test_summary_compares_every_strategy_on_the_campaigns_all_completed():
    # "b" failed on campaign 2, so campaign 2 is left out for "a" too: both means are over
    # campaigns 0 and 1 (a: 1, 2; b: 2, 2.5), not a over three and b over two.
    s = summarize(_rows(), baseline="a")
    a, b = s.strategies
    assert (a.n_rows, a.n_errors, b.n_rows, b.n_errors) == (3, 0, 3, 1)
    assert (s.campaigns, s.campaigns_played, a.n_campaigns, b.n_campaigns) == (2, 3, 2, 2)
    assert a.score.mean == 1.5 and b.score.mean == 2.25 and a.score.n == b.score.n == 2
    assert a.pct_oracle.mean == pytest.approx((1 / 4 + 2 / 4) / 2) and a.pct_oracle_sum.mean == pytest.approx(3 / 8)
    assert a.cpa_violation_rate == pytest.approx(1 / 2) and b.cpa_violation_rate == pytest.approx(1 / 2)
    assert a.exhausted_share == pytest.approx(1 / 2) and a.exhaustion_tick.mean == 40.0
    assert b.exhausted_share == pytest.approx(1 / 2) and b.exhaustion_tick.mean == 40.0
    assert a.bound_violations == 0 and a.budget_slack_rows == 0
    (p,) = s.paired
    assert p.strategy == "b" and p.score.n == 2 and p.win_rate == 1.0
    # Same campaigns on both sides: the paired difference is the difference of the headline means.
    assert p.score.mean == pytest.approx(b.score.mean - a.score.mean)
    text = format_summary(s)
    assert "over the 2 campaign(s) all 2 strategies completed" in text
    assert "LEFT OUT: 1 of 3 campaign(s)" in text and "1 error row(s)" in text
    assert "paired differences vs a" in text
    row_b = next(line for line in text.splitlines() if line.startswith("b "))
    assert row_b.split()[1:3] == ["2", "1"]  # n campaigns, err


def test_summary_leaves_out_campaigns_a_strategy_did_not_play():
    rows = [r for r in _rows() if r["strategy"] == "a"]
    rows += [{**r, "strategy": "c", "seed": 1} for r in rows] + [{**rows[0], "strategy": "c"}]
    s = summarize(rows)
    assert (s.campaigns, s.campaigns_played) == (1, 6)  # a: seed 0 x 3, c: seed 1 x 3 and seed 0 adv 0
    assert [x.score.mean for x in s.strategies] == [1.0, 1.0]


def test_bound_violations_are_counted():
    rows = _rows()
    rows[0]["expected_score"] = 5.0  # above its bound of 4
    s = summarize(rows)
    assert s.strategies[0].bound_violations == 1 and s.strategies[0].budget_slack_rows == 1


def test_unknown_baseline_and_missing_columns_are_errors():
    with pytest.raises(ValueError, match="baseline"):
        summarize(_rows(), baseline="zzz")
    rows = [{k: v for k, v in r.items() if k != "bound_score"} for r in _rows()]
    with pytest.raises(ValueError, match="bound_score"):
        summarize(rows)


def test_long_strategy_names_stay_told_apart_in_the_table():
    """Two specs that differ only in their serving options (the end of the name) get rows of their
    own; a name over the widest column keeps its start and end."""
    base = "diffbid:runs/a_long_run_directory_name/best_checkpoint_4500.pt"
    names = [base + "?guide=cpa:0.8&strength=0", base + "?guide=cap:0.3@24*4&strength=0"]
    rows = [{**r, "strategy": n} for n in names for r in _rows() if r["strategy"] == "a"]
    lines = format_summary(summarize(rows, baseline=names[0])).splitlines()
    first = [line.split()[0] for line in lines if line.startswith("diffbid:")]
    assert len(first) == 3 and first[0] != first[1] and first[1] == first[2]   # 2 table rows, 1 paired row
    assert all(f.startswith("diffbid:runs/") and "..." in f for f in first)
    assert first[0].endswith("cpa:0.8&strength=0") and first[1].endswith("cap:0.3@24*4&strength=0")
    short = format_summary(summarize(_rows())).splitlines()
    assert short[2][:34] == "strategy".ljust(28) + "     n"   # short names: the 28-wide column

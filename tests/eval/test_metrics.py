import math

import numpy as np
import pytest
from scipy import stats

from aigb.eval.metrics import format_summary, mean_ci, ratio_of_sums_ci, summarize


def test_mean_ci_matches_the_t_interval():
    ci = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    half = stats.t.ppf(0.975, 4) * np.std([1, 2, 3, 4, 5], ddof=1) / math.sqrt(5)
    assert ci.mean == 3.0 and ci.n == 5
    assert (ci.low, ci.high) == pytest.approx((3.0 - half, 3.0 + half))
    assert half == pytest.approx(1.9632, abs=1e-4)
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


def test_summary_on_known_rows():
    s = summarize(_rows(), baseline="a")
    a, b = s.strategies
    assert (a.n_rows, a.n_errors, b.n_rows, b.n_errors) == (3, 0, 3, 1)
    assert a.score.mean == 2.0 and b.score.mean == 2.25
    assert a.pct_oracle.mean == pytest.approx(0.5) and a.pct_oracle_sum.mean == pytest.approx(6 / 12)
    assert a.cpa_violation_rate == pytest.approx(1 / 3) and b.cpa_violation_rate == pytest.approx(1 / 2)
    assert a.exhausted_share == pytest.approx(2 / 3) and a.exhaustion_tick.mean == 35.0
    assert b.exhausted_share == pytest.approx(1 / 2) and b.exhaustion_tick.mean == 40.0
    assert a.bound_violations == 0 and a.budget_slack_rows == 0
    (p,) = s.paired
    assert p.strategy == "b" and p.score.n == 2 and p.score.mean == pytest.approx(0.75)  # (1 + 0.5) / 2
    assert p.win_rate == 1.0
    text = format_summary(s)
    assert "paired differences vs a" in text and "b" in text


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

import numpy as np
import pyarrow.parquet as pq
import pytest

from aigb.eval.rollout import rollout
from aigb.eval.traces import PLANS_FILE, TICKS_FILE, write_traces
from aigb.strategies.rules import FixedRate
from aigb.types import MarketConfig

from tests.report.planner import Planner

MARKET = MarketConfig(n_pv=4000, n_ticks=12, n_advertisers=8)


def test_a_planning_strategy_gets_its_plans_written_as_rows(tmp_path):
    row = rollout(Planner(rate=1.1, every=4), "planner", MARKET, 0, 1_000_000, 3)
    assert row["error"] is None
    assert [t for t, _ in row["plans"]] == [0, 4, 8]
    written = write_traces([row], tmp_path)
    assert sorted(p.name for p in written) == [PLANS_FILE, TICKS_FILE]
    plans = pq.read_table(tmp_path / PLANS_FILE).to_pydict()
    assert len(plans["tick"]) == 3 * (MARKET.n_ticks + 1)
    assert set(plans["strategy"]) == {"planner"} and set(plans["advertiser"]) == {3}
    # The plan made at tick 4: the realised prefix, then an even spread of what was left, to 0.
    at4 = [(t, v) for t, v, pt in zip(plans["tick"], plans["planned_remaining_budget"], plans["plan_tick"]) if pt == 4]
    values = np.array([v for _, v in sorted(at4)])
    realised = np.array(row["remaining_budget"])
    np.testing.assert_allclose(values[:5], realised[:5])
    assert values[-1] == 0.0 and np.all(np.diff(values[4:]) <= 0)


def test_tick_alpha_is_the_bid_multiplier_the_market_saw(tmp_path):
    row = rollout(FixedRate(0.8), "fixed", MARKET, 0, 1_000_000, 2)
    assert "plans" not in row  # no plans attribute: no plan rows
    alpha = np.array(row["tick_alpha"])
    live = np.array(row["remaining_budget"]) - np.array(row["tick_spend"]) >= MARKET.min_remaining_budget
    assert live[:3].all()
    np.testing.assert_allclose(alpha[live], 0.8 * row["target_cpa"], rtol=1e-9)
    assert write_traces([row], tmp_path) == [tmp_path / TICKS_FILE]
    ticks = pq.read_table(tmp_path / TICKS_FILE).to_pydict()
    assert ticks["tick_alpha"] == [row["tick_alpha"]] and ticks["seed"] == [0] and ticks["period"] == [1_000_000]


def test_nothing_to_write_writes_nothing_and_leaves_no_stale_traces(tmp_path):
    assert write_traces([], tmp_path) == []
    assert not any(tmp_path.iterdir())
    (tmp_path / PLANS_FILE).write_bytes(b"from an earlier evaluation")
    row = rollout(FixedRate(0.8), "fixed", MARKET, 0, 1_000_000, 2)
    assert write_traces([row], tmp_path) == [tmp_path / TICKS_FILE]
    assert not (tmp_path / PLANS_FILE).exists()


@pytest.mark.parametrize("length", ["n_ticks", "n_ticks + 1"])
def test_plans_of_either_length_are_kept(tmp_path, length):
    n = MARKET.n_ticks + (1 if length == "n_ticks + 1" else 0)
    row = {"strategy": "s", "seed": 0, "period": 1, "advertiser": 2, "tick_alpha": [1.0] * MARKET.n_ticks,
           "plans": [(5, list(np.linspace(10.0, 0.0, n)))]}
    write_traces([row], tmp_path)
    plans = pq.read_table(tmp_path / PLANS_FILE).to_pydict()
    assert plans["tick"] == list(range(n)) and plans["plan_tick"] == [5] * n


class _Step:
    def __init__(self, budget_left):
        self.budget_left = budget_left


class RichPlanner(Planner):
    """Keeps plan objects and answers planned_remaining_budget(i), as DiffBidStrategy does."""

    def alpha(self, obs):
        left = np.linspace(obs.remaining_budget, 0.0, self.n_ticks + 1)
        self.plans.append(_Step(left))
        return self.rate * self.c.target_cpa

    def planned_remaining_budget(self, tick):
        return self.plans[tick].budget_left


def test_plans_from_a_strategy_that_answers_planned_remaining_budget(tmp_path):
    row = rollout(RichPlanner(rate=0.9), "rich", MARKET, 0, 1_000_000, 1)
    assert [t for t, _ in row["plans"]] == list(range(MARKET.n_ticks))
    assert row["plans"][0][1][0] == row["budget"]
    write_traces([row], tmp_path)
    assert pq.read_table(tmp_path / PLANS_FILE).num_rows == MARKET.n_ticks * (MARKET.n_ticks + 1)

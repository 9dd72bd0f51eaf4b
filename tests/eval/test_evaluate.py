import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aigb.data.parquet import read_metadata, write_table_atomic
from aigb.eval.evaluate import (
    EVAL_FIRST_PERIOD, JOURNAL_FILE, RESULT_SCHEMA, EvaluationStopped, combine_results, evaluate, resolve_periods,
    resolve_slots,
)
from aigb.eval.rollout import rollout, run_campaign
from aigb.eval.traces import TRACE_FIELDS
from aigb.sim.population import PopulationConfig
from aigb.strategies import registry
from aigb.strategies.registry import UnknownStrategyError
from aigb.types import ConfigError, MarketConfig

from tests.eval.test_rollout import RaisesAt

MARKET = MarketConfig(n_pv=5000, n_ticks=10, n_advertisers=10)


def assert_same_rows(a, b):
    """Tables equal value for value; NaN equals NaN (pyarrow's equals says NaN != NaN)."""
    np.testing.assert_equal(a.to_pydict(), b.to_pydict())


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "aigb-cache"))


def test_rollout_rows_fit_the_result_schema_without_losing_a_field(tmp_path):
    """Completed and failed rows of real rollouts store every field they carry (traces go to their
    own files) and read back unchanged."""
    rows = run_campaign(("fixed", "oracle:mode=slots"), MARKET, PopulationConfig(), 0, EVAL_FIRST_PERIOD, 3)
    rows.append(rollout(RaisesAt(2), "raises-at-2", MARKET, 0, EVAL_FIRST_PERIOD, 3))
    for row in rows:
        assert set(row) - set(TRACE_FIELDS) == set(RESULT_SCHEMA.names), row["strategy"]
    stored = pq.read_table(write_table_atomic(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA),
                                              tmp_path / "rows.parquet")).to_pylist()
    for row, back in zip(rows, stored):
        np.testing.assert_equal({k: row[k] for k in RESULT_SCHEMA.names}, back)
    assert rows[-1]["error"].startswith("raises-at-2 raised at tick 2")


def test_small_evaluation_respects_the_bound_and_writes_self_describing_files(tmp_path):
    res = evaluate(["fixed:rate=1.5", "pid", "oracle:mode=slots"], periods=2, slots=4, market=MARKET,
                   out_dir=tmp_path, baseline="pid", progress=False)
    t = res.table.to_pydict()
    assert res.table.num_rows == 3 * 2 * 4 and all(e is None for e in t["error"])
    assert sorted(set(t["period"])) == [EVAL_FIRST_PERIOD, EVAL_FIRST_PERIOD + 1]
    assert t["strategy"][:8] == ["fixed:rate=1.5"] * 8
    exp, bound, oracle = (np.array(t[k]) for k in ("expected_score", "bound_score", "oracle_score"))
    spend, budget = np.array(t["expected_spend"]), np.array(t["budget"])
    assert np.all(exp <= bound * (1 + 1e-9) + 1e-12)
    # Above the budget-B oracle only where expected spend exceeded the budget.
    assert np.all((exp <= oracle * (1 + 1e-9) + 1e-12) | (spend > budget))
    assert len(res.summary.strategies) == 3 and all(s.bound_violations == 0 for s in res.summary.strategies)
    # The hindsight oracle gets close to its bound in expectation.
    orc = res.summary.strategies[2]
    assert orc.pct_oracle_expected.mean > 0.8
    meta = read_metadata(tmp_path / "results.parquet")
    config = json.loads((tmp_path / "config.json").read_text())
    assert meta["kind"] == "evaluation" and meta["config"] == config
    assert config["market"]["n_pv"] == MARKET.n_pv and config["slots"] == list(res.config.slots)
    assert_same_rows(pq.read_table(tmp_path / "results.parquet"), res.table)


def test_bit_for_bit_reproducible_across_runs_and_worker_counts():
    kwargs = dict(periods=1, slots=[0, 7], market=MARKET, progress=False)
    a = evaluate(["fixed", "onlinelp"], workers=1, **kwargs)
    b = evaluate(["fixed", "onlinelp"], workers=2, **kwargs)
    assert_same_rows(a.table, b.table)


def test_a_failing_strategy_keeps_the_others(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("raise5", lambda market: RaisesAt(5))
    kwargs = dict(periods=1, slots=2, market=MARKET, progress=False)
    res = evaluate(["fixed", "raise5"], keep_going=True, **kwargs)
    t = res.table.to_pydict()
    errors = [e for s, e in zip(t["strategy"], t["error"]) if s == "raise5"]
    assert len(errors) == 2 and all(e.startswith("raise5 raised at tick 5") for e in errors)
    fixed_errors = [e for s, e in zip(t["strategy"], t["error"]) if s == "fixed"]
    assert len(fixed_errors) == 2 and fixed_errors == [None, None]
    alone = evaluate(["fixed"], **kwargs)
    assert_same_rows(res.table.slice(0, 2), alone.table)
    assert res.summary.strategies[1].n_errors == 2


def test_empty_ticks_work_for_every_rule_strategy():
    tiny = MarketConfig(n_pv=20, n_ticks=48, n_advertisers=6)
    res = evaluate(["fixed", "pid", "onlinelp", "oracle"], periods=1, slots=2, market=tiny, progress=False)
    assert res.table.column("error").to_pylist() == [None] * (4 * 2)   # 4 strategies x 2 slots, none failed


def test_bad_requests_fail_before_running():
    with pytest.raises(UnknownStrategyError, match="'nope'"):
        evaluate(["fixed", "nope"], market=MARKET, progress=False)
    with pytest.raises(ConfigError, match="baseline"):
        evaluate(["fixed"], baseline="pid", market=MARKET, progress=False)
    with pytest.raises(ConfigError, match="once"):
        evaluate(["fixed", "fixed"], market=MARKET, progress=False)
    with pytest.raises(ConfigError, match="slots"):
        evaluate(["fixed"], slots=[99], market=MARKET, progress=False)


def test_resolve_periods_and_slots():
    assert resolve_periods(3) == (EVAL_FIRST_PERIOD, EVAL_FIRST_PERIOD + 1, EVAL_FIRST_PERIOD + 2)
    assert resolve_periods([5, 9]) == (5, 9)
    with pytest.raises(ConfigError, match="periods"):
        resolve_periods(0)
    assert resolve_slots("all", 4) == (0, 1, 2, 3)
    assert resolve_slots(4, 48) == (0, 16, 31, 47)
    assert resolve_slots("spread:3", 48) == (0, 24, 47)
    assert resolve_slots("7", 48) == (7,)  # one advertiser, not a count
    assert resolve_slots("5,9", 48) == (5, 9)
    for bad in ("x,y", 0, [1, 1], [48], "48", "spread:0", "spread:x", "spread:49"):
        with pytest.raises(ConfigError, match="slots"):
            resolve_slots(bad, 48)


def test_combined_evaluations_equal_one_joint_evaluation(tmp_path):
    kwargs = dict(periods=1, slots=3, market=MARKET, progress=False)
    joint = evaluate(["fixed", "pid", "fixed:rate=0.7"], baseline="fixed", **kwargs)
    evaluate(["fixed", "pid"], out_dir=tmp_path / "rules", **kwargs)
    evaluate(["fixed:rate=0.7"], out_dir=tmp_path / "later", **kwargs)
    combined = combine_results([tmp_path / "rules", tmp_path / "later"], baseline="fixed")
    assert combined == joint.summary


def test_combining_pools_seeds_like_one_evaluation_over_both(tmp_path):
    kwargs = dict(periods=1, slots=2, market=MARKET, progress=False)
    joint = evaluate(["fixed", "pid"], seeds=[0, 1], baseline="fixed", **kwargs)
    evaluate(["fixed", "pid"], seeds=[0], out_dir=tmp_path / "s0", **kwargs)
    evaluate(["fixed", "pid"], seeds=[1], out_dir=tmp_path / "s1", **kwargs)
    pooled = combine_results([tmp_path / "s0", tmp_path / "s1"], baseline="fixed")
    a, b = pooled.paired[0].score, joint.summary.paired[0].score
    assert (a.mean, a.low, a.high) == pytest.approx((b.mean, b.low, b.high), rel=1e-12)
    assert [s.n_rows for s in pooled.strategies] == [4, 4]


def test_combining_refuses_unpaired_or_overlapping_evaluations(tmp_path):
    kwargs = dict(slots=3, market=MARKET, progress=False)
    evaluate(["fixed"], periods=1, out_dir=tmp_path / "a", **kwargs)
    evaluate(["pid"], periods=2, out_dir=tmp_path / "b", **kwargs)
    evaluate(["fixed"], periods=1, out_dir=tmp_path / "c", **kwargs)
    with pytest.raises(ConfigError, match="^periods: .* played other campaigns"):
        combine_results([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ConfigError, match="^strategies: 'fixed' on seed 0 is in both"):
        combine_results([tmp_path / "a", tmp_path / "c"])
    with pytest.raises(ConfigError, match="^baseline: 'pid'"):
        combine_results([tmp_path / "a"], baseline="pid")
    with pytest.raises(FileNotFoundError, match="no results.parquet"):
        combine_results([tmp_path / "missing"])


class FailsOn(RaisesAt):
    """Raises at tick 2 of one advertiser's campaigns; counts the campaigns it is reset for."""

    resets: list = []

    def __init__(self, advertiser):
        super().__init__(2)
        self.advertiser, self.name = advertiser, "fails"

    def reset(self, campaign, n_ticks, seed):
        FailsOn.resets.append(campaign.advertiser)
        self.tick = 2 if campaign.advertiser == self.advertiser else -1
        super().reset(campaign, n_ticks, seed)


def test_a_failure_stops_the_evaluation_keeping_finished_campaigns_for_a_resume(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("fails3", lambda market: FailsOn(3))
    kwargs = dict(periods=1, slots=[0, 3, 5], market=MARKET, progress=False)
    FailsOn.resets.clear()
    # The period's campaigns play together, so those in flight (0 and 5) finish and are kept.
    with pytest.raises(EvaluationStopped, match=r"fails3 raised at tick 2.*advertiser 3\).*2 campaigns completed.*re-run resumes"):
        evaluate(["fixed", "fails3"], out_dir=tmp_path / "e", **kwargs)
    assert FailsOn.resets == [0, 3, 5]
    lines = (tmp_path / "e" / JOURNAL_FILE).read_text().splitlines()
    # header + advertisers 0 and 5; the failed one is not kept
    assert len(lines) == 3 and [json.loads(line)["task"] for line in lines[1:]] == [0, 2]
    assert not (tmp_path / "e" / "results.parquet").exists()
    FailsOn.resets.clear()
    resumed = evaluate(["fixed", "fails3"], out_dir=tmp_path / "e", keep_going=True, **kwargs)
    assert FailsOn.resets == [3]  # advertisers 0 and 5 came from the journal
    whole = evaluate(["fixed", "fails3"], out_dir=tmp_path / "whole", keep_going=True, **kwargs)
    assert_same_rows(resumed.table, whole.table)
    assert_same_rows(pq.read_table(tmp_path / "e" / "results.parquet"), whole.table)
    assert [s.n_errors for s in resumed.summary.strategies] == [0, 1] and resumed.summary.campaigns == 2


def test_an_interrupted_evaluation_is_compared_on_the_campaigns_it_completed(monkeypatch, tmp_path, capsys):
    """A stopped evaluation (a real failure: its journal holds advertisers 0 and 3, not 5) loads as
    those campaigns' rows, equal to an uninterrupted run's, says it is partial, and pairs with a
    whole evaluation of another strategy on the campaigns both played."""
    from aigb.cli import main
    from aigb.eval.evaluate import load_results

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("fails5", lambda market: FailsOn(5))
    kwargs = dict(periods=1, slots=[0, 3, 5], market=MARKET, progress=False)
    with pytest.raises(EvaluationStopped):
        evaluate(["fixed", "fails5"], out_dir=tmp_path / "stopped", **kwargs)
    table, config = load_results(tmp_path / "stopped")
    assert config["partial"] == [2, 3]
    assert sorted(table.column("advertiser").to_pylist()) == [0, 0, 3, 3]
    whole = evaluate(["fixed", "fails5"], out_dir=tmp_path / "whole", keep_going=True, **kwargs).table
    keep = [i for i, a in enumerate(whole.column("advertiser").to_pylist()) if a != 5]
    order = lambda t: t.sort_by([("strategy", "ascending"), ("advertiser", "ascending")])  # noqa: E731
    assert_same_rows(order(table), order(whole.take(keep)))
    assert "partial" not in load_results(tmp_path / "whole")[1]
    evaluate(["onlinelp"], out_dir=tmp_path / "other", **kwargs)
    summary = combine_results([tmp_path / "stopped", tmp_path / "other"], baseline="onlinelp")
    assert summary.campaigns == 2 and summary.campaigns_played == 3
    assert summary.notes == (f"{tmp_path / 'stopped'}: an interrupted evaluation; its 2 completed campaign(s) of 3 take part",)
    capsys.readouterr()
    main(["compare", str(tmp_path / "stopped"), str(tmp_path / "other")])
    assert capsys.readouterr().out.startswith(f"# {tmp_path / 'stopped'}: an interrupted evaluation; its 2 completed campaign(s) of 3 take part\n")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / JOURNAL_FILE).write_text('{"kind": "aigb-evaluation-ro')   # cut inside its header
    with pytest.raises(ValueError, match="header line"):
        load_results(tmp_path / "cut")


def test_evaluation_and_checker_apply_one_bid_rule(monkeypatch):
    from aigb.strategies.check import StrategyCheckError, check_strategy
    from tests.strategies.test_registry import _Negative

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("negative", lambda market: _Negative())
    res = evaluate(["negative"], periods=1, slots=[0], market=MARKET, progress=False, keep_going=True)
    (error,) = res.table.column("error").to_pylist()
    assert "negative returned invalid bids at tick 0" in error and "bids are negative" in error
    with pytest.raises(StrategyCheckError, match="bids are negative"):
        check_strategy(lambda market: _Negative())


def test_evaluate_writes_the_per_tick_bid_multipliers_beside_the_results(tmp_path):
    res = evaluate(["fixed:rate=1.5"], periods=1, slots=2, market=MARKET, out_dir=tmp_path, progress=False)
    ticks = pq.read_table(tmp_path / "ticks.parquet").to_pydict()
    cpa = dict(zip(res.table.column("advertiser").to_pylist(), res.table.column("target_cpa").to_pylist()))
    assert sorted(ticks["advertiser"]) == sorted(cpa)
    for adv, alphas in zip(ticks["advertiser"], ticks["tick_alpha"]):
        bid = np.array([a for a in alphas if a is not None and np.isfinite(a)])
        assert bid.size > 0
        np.testing.assert_allclose(bid / cpa[adv], 1.5, rtol=1e-6)   # the rule bids 1.5 x its CPA
    assert not (tmp_path / "plans.parquet").exists()   # a rule strategy makes no plans

"""The diffbid:PATH?options strategy: spec parsing, and generate -> train -> checkpoint -> strategy -> evaluate."""

import json

import numpy as np
import pytest

from aigb.strategies.diffbid import DIFFBID_OPTIONS, parse_diffbid_spec
from aigb.strategies.registry import strategy_factory
from aigb.types import ConfigError, MarketConfig

SMALL = MarketConfig(n_pv=3000, preset="random")
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16, "diffusion_steps": 20, "sampling_steps": 4,
        "idm_hidden_dims": (32, 32), "warmup_steps": 10}


def test_spec_options_parse():
    path, options = parse_diffbid_spec("runs/d/best.pt?w=1.2&return=0.9&cpa=1&util=0.8&steps=10&temperature=0.5&eta=0&device=cpu")
    assert path == "runs/d/best.pt"
    assert options == {"guidance": 1.2, "target_return": 0.9, "target_cpa": 1.0, "target_util": 0.8, "steps": 10,
                       "temperature": 0.5, "eta": 0.0, "device": "cpu"}
    assert parse_diffbid_spec("best.pt") == ("best.pt", {})
    assert parse_diffbid_spec("best.pt?select=critic&critic=runs/cql/best.pt")[1] == {"select": "critic", "critic": "runs/cql/best.pt"}
    assert {"w", "return", "cpa", "util", "steps", "temperature", "eta", "device"} <= set(DIFFBID_OPTIONS)   # + guidance
    # and search options: tests/strategies/test_diffbid_guidance.py


@pytest.mark.parametrize("text, message", [
    ("best.pt?weight=2", "unknown option 'weight'.*accepted: w, return"),
    ("best.pt?w=abc", "option w: cannot use 'abc'"),
    ("best.pt?w=-1", "option w: .*must be >= 0"),
    ("best.pt?return=1.5", "option return: .*must be <= 1"),
    ("best.pt?steps=0", "option steps"),
    ("best.pt?steps=2.5", "option steps"),
    ("best.pt?temperature=0", "option temperature: .*must be > 0"),
    ("best.pt?device=tpu", "option device"),
    ("best.pt?refine=1", "unknown option 'refine'"),
    ("best.pt?select=critic", "select=critic and critic=CHECKPOINT go together"),
    ("best.pt?critic=runs/cql/best.pt", "select=critic and critic=CHECKPOINT go together"),
    ("best.pt?select=plan&critic=runs/cql/best.pt", "select=critic and critic=CHECKPOINT go together"),
    ("best.pt?qsmooth=0.2", "option qsmooth smooths a critic's values; it needs select=critic"),
    ("best.pt?select=critic&critic=a.pt&qsmooth=-0.1", "option qsmooth: .*must be >= 0"),
    ("best.pt?w=1&w=2", "given twice"),
    ("best.pt?w", "expected option=value"),
    ("?w=1", "needs a checkpoint path"),
])
def test_bad_options_are_named(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_diffbid_spec(text)


def test_registry_checks_the_spec_before_building(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint at"):
        strategy_factory("diffbid:/no/such/best.pt?w=1")
    (tmp_path / "best.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="unknown option 'x'"):
        strategy_factory(f"diffbid:{tmp_path / 'best.pt'}?x=1")
    assert strategy_factory(f"diffbid:{tmp_path / 'best.pt'}?w=2").spec.endswith("?w=2")
    with pytest.raises(ConfigError, match="option critic: no checkpoint at '/no/cql.pt'"):
        strategy_factory(f"diffbid:{tmp_path / 'best.pt'}?select=critic&critic=/no/cql.pt")
    (tmp_path / "cql.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="option critic: no checkpoint at '/no/cql2.pt'"):   # each of an ensemble
        strategy_factory(f"diffbid:{tmp_path / 'best.pt'}?select=critic&critic={tmp_path / 'cql.pt'},/no/cql2.pt")
    with pytest.raises(ConfigError, match="option critic: an empty checkpoint path"):
        strategy_factory(f"diffbid:{tmp_path / 'best.pt'}?select=critic&critic={tmp_path / 'cql.pt'},")


# ------------------------------------------------------------------------------ end to end

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from aigb.data.generate import generate_dataset
    from aigb.workflows.training import ValidationSet, train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = tmp_path_factory.mktemp("data")
        generate_dataset(data, periods=3, seed=11, market=SMALL, progress=False)
        run = tmp_path_factory.mktemp("run")
        result = train("diffbid", data, run_dir=run, steps=30, batch_size=16, seed=3, overrides=TINY,
                       validation=ValidationSet(slots=(0, 5), market=MarketConfig(n_pv=3000)), eval_every=15,
                       progress=False, device="cpu")
    finally:
        torch.set_num_threads(before)
    return result, run


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_validates_in_the_market_and_writes_checkpoints(trained):
    result, run = trained
    assert result.steps_done == 30 and (run / "best.pt").exists() and (run / "last.pt").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == 2 and all(np.isfinite(e["score"]) for e in evals)
    assert json.loads((run / "train_args.json").read_text())["device"] == "cpu"
    # --steps sizes the run and its learning-rate schedule: the cosine ends at 10 % of the peak
    # at step 30 (left at the default 15,000, the rate would still be near its peak).
    from aigb.algos.checkpoint import load_algorithm

    algo = load_algorithm(str(run / "last.pt"))
    assert algo.config.steps == 30 and algo.n_updates == 30
    assert algo._lr() == pytest.approx(0.1 * algo.config.lr)


def test_strategy_keeps_the_contract_and_its_plans(trained):
    from aigb.strategies.check import check_strategy
    from aigb.strategies.diffbid import DiffBidStrategy
    from aigb.strategies.learned import load_strategy
    from aigb.strategies.check import play_bids

    _, run = trained
    spec = f"diffbid:{run / 'best.pt'}?w=1.5&return=0.8&steps=3&device=cpu"
    factory = strategy_factory(spec)
    market = MarketConfig(n_pv=2000, n_advertisers=12)                  # 48 ticks, like the planner's days
    check_strategy(factory, market=market)
    strategy = factory(market)
    assert isinstance(strategy, DiffBidStrategy) and strategy.name == spec
    assert strategy.planner.options()["guidance"] == 1.5 and strategy.planner.options()["steps"] == 3
    play_bids(strategy, market, 0, 0, 3)
    assert len(strategy.plans) == 48 and [p.tick for p in strategy.plans] == list(range(48))
    assert all(p.plan.shape == (49, 7) for p in strategy.plans)
    remaining = strategy.planned_remaining_budget(10)                   # money, before each tick and after the day
    assert remaining.shape == (49,) and remaining[0] == pytest.approx(strategy._campaign.budget)
    # Same seed, same bids (another seed, other bids); the generic loader gives the same strategy
    # for a diffbid checkpoint, bid for bid.
    first = play_bids(factory(market), market, 0, 0, 3)
    again = play_bids(factory(market), market, 0, 0, 3)
    other = play_bids(factory(market), market, 1, 0, 3)
    assert len(first) == len(again) == 48 and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(first, other))
    loaded = load_strategy("diffbid", str(run / "best.pt"))
    assert isinstance(loaded, DiffBidStrategy)
    by_spec = play_bids(strategy_factory(f"diffbid:{run / 'best.pt'}")(market), market, 0, 0, 3)
    by_loader = play_bids(loaded, market, 0, 0, 3)
    assert len(by_spec) == len(by_loader) == 48 and all(np.array_equal(a, b) for a, b in zip(by_spec, by_loader))
    with pytest.raises(ValueError, match="holds a 'diffbid' policy"):
        load_strategy("bc", str(run / "best.pt"))
    # A planner trained on 48-tick days refuses another day length.
    with pytest.raises(ConfigError, match="48 ticks"):
        strategy.reset(strategy._campaign, 12, 0)


def test_paired_evaluation_with_diffbid(trained):
    from aigb.eval.evaluate import evaluate

    _, run = trained
    results = evaluate([f"diffbid:{run / 'best.pt'}?steps=2", "fixed"], periods=1, slots=[0, 3],
                       market=MarketConfig(n_pv=3000), progress=False)
    rows = results.table.to_pylist()
    assert len(rows) == 4 and all(r["error"] is None for r in rows)
    assert all(r["expected_score"] <= r["bound_score"] + 1e-9 for r in rows)


def test_evaluation_records_the_resolved_serving_config(trained, tmp_path):
    """config.json and the results' metadata carry each DiffBid spec's typed config and the planner's
    options in force (the checkpoint's values filled in: w 1.2 is the stored default)."""
    import pyarrow.parquet as pq

    from aigb.eval.evaluate import evaluate

    _, run = trained
    spec = f"diffbid:{run / 'best.pt'}?steps=2"
    evaluate([spec, "fixed"], periods=1, slots=[0], market=MarketConfig(n_pv=3000), progress=False, out_dir=tmp_path / "r")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert list(config["serving"]) == [spec]
    served = config["serving"][spec]
    assert served["checkpoint"] == str(run / "best.pt")
    assert served["spec"]["sampling"]["steps"] == 2 and served["spec"]["condition"]["guidance"] is None
    assert served["planner"]["steps"] == 2 and served["planner"]["guidance"] == 1.2
    meta = pq.read_schema(tmp_path / "r" / "results.parquet").metadata
    assert json.loads(meta[b"aigb.config"])["serving"] == config["serving"]


def test_a_preset_bids_as_its_options_written_out(trained):
    from aigb.strategies.check import play_bids
    from aigb.strategies.registry import make_strategy

    _, run = trained
    market = MarketConfig(n_pv=2000, n_advertisers=12)
    named, written = (make_strategy(f"diffbid:{run / 'best.pt'}{tail}", market) for tail in ("@own?device=cpu", "?steps=5&device=cpu"))
    for s in (named, written):
        play_bids(s, market, 0, 0, 1)
    assert [p.action for p in named.plans] == [p.action for p in written.plans]
    assert named.planner.options()["steps"] == 5


def test_rollout_traces_carry_the_plans(trained):
    from aigb.eval.rollout import rollout
    from aigb.strategies.registry import make_strategy

    _, run = trained
    market = MarketConfig(n_pv=3000)
    row = rollout(make_strategy(f"diffbid:{run / 'best.pt'}?steps=2", market), "diffbid", market, 0, 1_000_000, 2)
    assert row["error"] is None
    assert [t for t, _ in row["plans"]] == list(range(48))
    assert all(len(p) == 49 for _, p in row["plans"])
    assert row["plans"][0][1][0] == pytest.approx(row["budget"])                  # the realised start of every plan
    # The plan made at tick t starts with the realised remaining budget before ticks 0..t.
    t, planned = row["plans"][20]
    np.testing.assert_allclose(planned[: t + 1], row["remaining_budget"][: t + 1], rtol=1e-4)


def test_a_level_planner_trains_serves_and_bids_searched_levels(tmp_path_factory, trained):
    """generate -> train (condition=level) -> checkpoint -> strategy: every bid is alpha = exp(level) C
    for one of the searched levels; levels= on an outcome planner is refused, naming the option."""
    from aigb.data.generate import generate_dataset
    from aigb.workflows.training import train
    from aigb.strategies.check import play_bids

    data = tmp_path_factory.mktemp("level-data")
    generate_dataset(data, periods=3, seed=12, market=SMALL, progress=False)
    run = tmp_path_factory.mktemp("level-run")
    train("diffbid", data, run_dir=run, steps=20, batch_size=16, seed=3, overrides={**TINY, "condition": "level"},
          validation=None, progress=False, device="cpu")
    factory = strategy_factory(f"diffbid:{run / 'last.pt'}?levels=4&samples=1&steps=2")
    market = MarketConfig(n_pv=2000, n_advertisers=12)
    strategy = factory(market)
    assert strategy.planner.options()["search_levels"] == 4
    play_bids(strategy, market, 0, 0, 3)
    levels = strategy.planner.levels.numpy()
    assert len(strategy.plans) == 48
    assert all(p.action == pytest.approx(float(levels[p.candidate])) for p in strategy.plans)
    _, outcome_run = trained
    with pytest.raises(ConfigError, match="levels, samples, support, change: only a planner trained with condition='level'"):
        strategy_factory(f"diffbid:{outcome_run / 'best.pt'}?levels=4")(market)


def test_a_level_planner_ranked_by_a_cql_critic_bids_the_critics_best_level(tmp_path_factory, trained):
    """generate -> train a level planner and a CQL -> diffbid:PATH?select=critic&critic=CQL: at every
    tick the level bid is the one the CQL checkpoint's min(Q1, Q2) values highest at the tick's
    state among the searched levels; a BC checkpoint as the critic is refused, naming it."""
    from aigb.algos.level_critic import LevelCritic
    from aigb.data.generate import generate_dataset
    from aigb.workflows.training import train
    from aigb.strategies.check import play_bids

    data = tmp_path_factory.mktemp("critic-data")
    generate_dataset(data, periods=3, seed=13, market=SMALL, progress=False)
    runs = {algo: tmp_path_factory.mktemp(f"critic-{algo}") for algo in ("diffbid", "cql", "bc")}
    train("diffbid", data, run_dir=runs["diffbid"], steps=20, batch_size=16, seed=3, overrides={**TINY, "condition": "level"},
          validation=None, progress=False, device="cpu")
    for algo in ("cql", "bc"):
        train(algo, data, run_dir=runs[algo], steps=20, batch_size=16, seed=3, overrides={"hidden_dims": (16, 16)},
              validation=None, progress=False, device="cpu")
    cql = runs["cql"] / "last.pt"
    spec = f"diffbid:{runs['diffbid'] / 'last.pt'}?levels=6&samples=1&steps=2&support=1&select=critic&critic={cql}"
    market = MarketConfig(n_pv=2000, n_advertisers=12)
    strategy = strategy_factory(spec)(market)
    assert strategy.planner.options()["critic"] == str(cql)
    play_bids(strategy, market, 0, 0, 3)
    levels = strategy.planner.levels.numpy()
    critic = LevelCritic.load(cql)
    chosen = [int(np.argmax(critic.values(strategy._states[p.tick], levels))) for p in strategy.plans]
    assert [p.candidate for p in strategy.plans] == chosen and len(set(chosen)) > 1
    with pytest.raises(ConfigError, match="critic: .*bc.*last.pt holds a BC policy without a Q critic"):
        strategy_factory(spec.replace(str(cql), str(runs["bc"] / "last.pt")))(market)
    _, outcome_run = trained
    with pytest.raises(ConfigError, match="'critic' ranks the bid levels of a planner trained with condition='level'"):
        strategy_factory(f"diffbid:{outcome_run / 'best.pt'}?select=critic&critic={cql}")(market)

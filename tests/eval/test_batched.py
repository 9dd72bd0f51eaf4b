"""A batched period's rows against the rows of playing each campaign alone: equal, bit for bit,
for every kind of strategy (rules, OnlineLP with its per-PV history, the hindsight oracle, a
competition-interface class, state policies, the Decision Transformer, DiffBid), for failures
and for both tasks."""

import math
import textwrap

import pytest

from aigb.eval import batched as batched_module
from aigb.eval.batched import play_period
from aigb.eval.rollout import run_campaign
from aigb.sim.population import PopulationConfig
from aigb.strategies import registry
from aigb.types import MarketConfig
from tests.eval.test_evaluate import FailsOn

torch = pytest.importorskip("torch")

# 48 ticks (the sequence models' day) and enough traffic that budgets run out within the day.
MARKET = MarketConfig(n_pv=20_000, n_advertisers=8)
SEED, PERIOD, SLOTS = 2, 1_000_001, (0, 3, 6)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_rows_equal(batched: list[list[dict]], single: list[list[dict]]) -> None:
    assert len(batched) == len(single)
    for got_slot, want_slot in zip(batched, single):
        for got, want in zip(got_slot, want_slot, strict=True):
            assert set(got) == set(want)
            diff = [k for k in want if not _same(got[k], want[k])]
            assert not diff, f"{want['strategy']} slot {want['advertiser']}: {diff}"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny checkpoints of a state policy, the DT and DiffBid (a few updates on a tiny dataset)."""
    from aigb.algos.checkpoint import save_checkpoint
    from aigb.algos.registry import make_algorithm
    from aigb.data.dataset import TrajectoryDataset
    from aigb.data.generate import generate_dataset
    from aigb.features import FEATURE_DIM
    from aigb.seeding import rng
    from tests.export.conftest import TINY

    root = tmp_path_factory.mktemp("batched")
    generate_dataset(root / "data", periods=1, seed=11, market=MarketConfig(n_pv=3000, n_advertisers=8), progress=False)
    data = TrajectoryDataset.load(root / "data")
    paths = {}
    for key in ("bc", "dt", "diffbid"):
        algo = make_algorithm(key, FEATURE_DIM, TINY[key], seed=0)
        algo.prepare(data, 0)
        g = rng(0, "batched-test", len(paths))
        for _ in range(3):
            algo.update(algo.sample_batch(data, algo.config.batch_size, g))
        paths[key] = save_checkpoint(root / f"{key}.pt", algo, with_optimizers=False)
    return paths


def _both(specs, task="cpa"):
    """(batched rows, single-campaign rows) of ``specs`` on SLOTS."""
    batched = play_period(specs, MARKET, PopulationConfig(), SEED, PERIOD, SLOTS, task=task)
    single = [run_campaign(specs, MARKET, PopulationConfig(), SEED, PERIOD, a, task=task) for a in SLOTS]
    return batched, single


def test_rules_oracle_and_competition_classes_play_as_alone(tmp_path):
    player = tmp_path / "player.py"
    player.write_text(textwrap.dedent("""
        import numpy as np

        class Player:
            def __init__(self, budget=100, name="Player", cpa=2, category=1):
                self.budget, self.cpa, self.category, self.name = budget, cpa, category, name
                self.remaining_budget = budget

            def reset(self):
                self.remaining_budget = self.budget

            def bidding(self, timeStepIndex, pValues, pValueSigmas, historyPValueInfo, historyBid,
                        historyAuctionResult, historyImpressionResult, historyLeastWinningCost):
                # Outbid last tick's least winning cost where it was low: reads every history layout.
                if not historyLeastWinningCost:
                    return 1.5 * self.cpa * pValues
                lwc = float(np.mean(historyLeastWinningCost[-1]))
                won = float(np.mean(historyAuctionResult[-1][:, 0]))
                return (1.0 + won) * self.cpa * pValues + 0.1 * lwc
    """))
    specs = ("fixed:rate=7", "pid", "onlinelp:prior=none", "oracle", f"neurips2024:{player}:Player")
    batched, single = _both(specs)
    assert_rows_equal(batched, single)
    rows = [r for slot in single for r in slot]
    assert any(r["exhaustion_tick"] >= 0 for r in rows)           # budgets ran out: the cap was played
    assert all(r["error"] is None and r["oracle_score"] > 0 for r in rows)


def test_learned_strategies_play_as_alone(checkpoints):
    specs = (f"bc:{checkpoints['bc']}", f"dt:{checkpoints['dt']}", f"diffbid:{checkpoints['diffbid']}?steps=2")
    assert_rows_equal(*_both(specs))


def test_failures_and_max_return_rows_are_those_of_a_single_campaign(monkeypatch):
    monkeypatch.setattr(batched_module, "MAX_BATCH", 4)   # 9 campaigns in three batches: the cap changes no row
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("fails3", lambda market: FailsOn(3))
    batched, single = _both(("fixed", "fails3", "pid"), task="max-return")
    assert_rows_equal(batched, single)
    errors = [r for slot in batched for r in slot if r["error"] is not None]
    assert [(r["strategy"], r["advertiser"], r["error_tick"]) for r in errors] == [("fails3", 3, 2)]

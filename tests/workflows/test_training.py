"""End to end: generate -> train (with market validation) -> checkpoint -> strategy -> evaluate."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aigb.data.generate import generate_dataset
from aigb.eval.evaluate import evaluate
from aigb.workflows.training import ValidationSet, train
from aigb.strategies.check import check_strategy
from aigb.strategies.learned import LearnedStrategy, load_strategy
from aigb.strategies.registry import make_strategy
from aigb.types import ConfigError, MarketConfig

SMALL = MarketConfig(n_pv=3000, preset="random")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate_dataset(out, periods=3, seed=11, market=SMALL, progress=False)
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("algo", ["bc", "dt"])
def test_train_validates_and_checkpoint_bids(algo, data_dir, tmp_path):
    validation = ValidationSet(slots=(0, 5), market=MarketConfig(n_pv=3000))
    overrides = {"context_len": 4, "n_layers": 1} if algo == "dt" else {}
    result = train(algo, data_dir, run_dir=tmp_path / algo, steps=40, batch_size=16, seed=3, overrides=overrides,
                   validation=validation, eval_every=20, progress=False)
    assert result.steps_done == 40
    evals = [json.loads(line) for line in (tmp_path / algo / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert len(evals) >= 2 and all(np.isfinite(e["score"]) for e in evals)
    assert {"realized_score", "pct_oracle", "cpa_ok_rate"} <= set(evals[-1])

    strategy = load_strategy(algo, str(tmp_path / algo / "best.pt"))
    assert isinstance(strategy, LearnedStrategy)
    check_strategy(lambda market: load_strategy(algo, str(tmp_path / algo / "best.pt")))
    # The registry spec works the same way, and a wrong algorithm name for the file is refused.
    assert make_strategy(f"{algo}:{tmp_path / algo / 'best.pt'}").name.startswith(algo)
    other = "dt" if algo == "bc" else "bc"
    with pytest.raises((ValueError, ConfigError), match="not"):
        load_strategy(other, str(tmp_path / algo / "best.pt"))


def test_learned_strategy_in_the_paired_evaluation(data_dir, tmp_path):
    train("bc", data_dir, run_dir=tmp_path / "bc", steps=20, batch_size=16, seed=1, validation=None, progress=False)
    spec = f"bc:{tmp_path / 'bc' / 'best.pt'}"
    results = evaluate([spec, "fixed"], periods=1, slots=[0, 3], market=MarketConfig(n_pv=3000), progress=False)
    rows = results.table.to_pylist()
    assert len(rows) == 4 and all(r["error"] is None for r in rows)
    assert all(r["expected_score"] <= r["bound_score"] + 1e-9 for r in rows)


def test_train_refuses_unknown_algorithm(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="algo"):
        train("ppo", data_dir, run_dir=tmp_path / "x", validation=None)

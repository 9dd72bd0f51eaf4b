"""The exported runtime on its own: v1 features from the competition's histories, the history layouts of
our loop against the adapter's, named streams, self-containment, safe weight loading, the self-test."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aigb import features, seeding
from aigb.export.exporter import RUNTIME, RUNTIME_FILES, export_neurips2024
from aigb.export.harness import HISTORY_NAMES, play_competition
from aigb.export.runtime import history, planner, rules
from aigb.sim.env import BiddingEnv
from aigb.strategies.neurips2024 import CompetitionStrategy
from aigb.strategies.registry import make_strategy
from tests.export.conftest import MARKET, PERIOD, SEED, SLOT, tight_campaign

STDLIB = set(sys.stdlib_module_names)


def test_runtime_constants_are_aigbs():
    assert history.FEATURE_NAMES == features.FEATURE_NAMES and history.FEATURE_VERSION == features.FEATURE_VERSION
    assert (history.WINDOW, history.CPA_RATIO_CAP) == (features.WINDOW, features.CPA_RATIO_CAP)
    assert history.N_CATEGORIES == features.N_CATEGORIES


def test_named_streams_are_aigbs():
    for seed, name, idx in [(0, "rule_strategy", (2,)), (123456789, "diffbid/plan", (47,)), (7, "x", (1, 2, 3))]:
        assert planner.torch_seed(seed, name, *idx) == seeding.torch_seed(seed, name, *idx)
        np.testing.assert_array_equal(rules.rule_stream(seed, name, *idx).random(5), seeding.rng(seed, name, *idx).random(5))


def test_runtime_imports_numpy_torch_and_the_standard_library_only():
    for name in RUNTIME_FILES:
        tree = ast.parse((RUNTIME / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [] if node.level else [node.module.split(".")[0]]
            else:
                continue
            bad = [r for r in roots if r not in STDLIB | {"numpy", "torch"}]
            assert not bad, f"{name} imports {bad}"
    assert sorted(p.name for p in RUNTIME.glob("*.py")) == sorted(RUNTIME_FILES)


def test_runtime_runs_on_python_3_9_syntax():
    for name in RUNTIME_FILES:
        ast.parse((RUNTIME / name).read_text(), feature_version=(3, 9))


class _Recorder:
    """A competition player that bids 3 C x pValue and keeps every argument it is handed."""

    def __init__(self):
        self.budget, self.cpa, self.category, self.remaining_budget = 1.0, 1.0, 0, 1.0
        self.calls = []

    def reset(self):
        self.calls = []

    def bidding(self, t, p, s, *hist):
        self.calls.append((t, p.copy(), s.copy(), [list(h) for h in hist], self.remaining_budget))
        return 3.0 * self.cpa * p


def test_our_loop_hands_over_what_the_adapter_hands_over():
    """Two implementations of the competition's loop (aigb's adapter in the env, and ours) agree on
    every array of every history, and on the remaining budget, tick by tick."""
    campaign = tight_campaign()
    ours = _Recorder()
    play_competition(ours, MARKET, SEED, PERIOD, SLOT, campaign=campaign)
    theirs = _Recorder()
    env = BiddingEnv(MARKET, SLOT, seed=SEED, campaign=campaign, keep_pv_history=True)
    obs, _ = env.reset(period=PERIOD)
    adapter = CompetitionStrategy(theirs, min_remaining_budget=MARKET.min_remaining_budget)
    adapter.reset(obs.campaign, MARKET.n_ticks, 0)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(adapter.bid(obs))
    assert 0 < len(ours.calls) == len(theirs.calls) < MARKET.n_ticks          # the budget ran out
    for a, b in zip(ours.calls, theirs.calls):
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])
        assert a[4] == pytest.approx(b[4], rel=1e-12, abs=1e-9)
        for name, ha, hb in zip(HISTORY_NAMES, a[3], b[3]):
            assert len(ha) == len(hb) == a[0], name
            for x, y in zip(ha, hb):
                np.testing.assert_array_equal(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), err_msg=name)


def test_v1_features_from_the_histories_equal_the_envs_bit_for_bit():
    campaign = tight_campaign()
    env = BiddingEnv(MARKET, SLOT, seed=SEED, campaign=campaign, keep_pv_history=True)
    obs, _ = env.reset(period=PERIOD)
    strategy = make_strategy("pid:gain=2,rate=3", MARKET)
    strategy.reset(obs.campaign, MARKET.n_ticks, 0)
    ledger = history.TickLedger()
    done, nonzero = False, set()
    while not done:
        past = obs.pv_history
        hist = (
            [np.stack([p["p_value"], p["p_value_sigma"]], axis=1).astype(np.float64) for p in past],
            [p["bid"] for p in past],
            [np.stack([p["won"], p["slot"], p["price"]], axis=1).astype(np.float64) for p in past],
            [np.stack([p["exposed"], p["conversion"]], axis=1).astype(np.float64) for p in past],
            [p["least_winning_cost"] for p in past],
        )
        ledger.update(*hist)
        n, mean = history.current_tick(obs.p_value.astype(np.float64))
        got = history.v1_features(ledger.history(obs.tick), MARKET.n_ticks, n, mean, campaign.budget, campaign.target_cpa,
                                  campaign.category)
        np.testing.assert_array_equal(got, obs.features)
        assert campaign.budget - (campaign.budget - ledger.spent(obs.tick)) == campaign.budget - obs.remaining_budget
        nonzero |= {features.FEATURE_NAMES[i] for i in np.flatnonzero(got)}
        obs, _, done, _, _ = env.step(strategy.bid(obs))
    # Every feature was exercised with a non-zero value at some tick (one category is ours).
    assert nonzero >= set(features.FEATURE_NAMES) - {f"category_{i}" for i in range(6) if i != campaign.category}


@pytest.fixture(scope="module")
def pid_export(tmp_path_factory):
    return export_neurips2024("pid:gain=1.5,rate=2", tmp_path_factory.mktemp("pid") / "pid", market=MARKET).out


def _run_selftest(folder: Path, *prefix: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *prefix, str(folder / "selftest.py")], capture_output=True, text=True,
                          cwd=folder.parent, timeout=300)


def test_selftest_replays_the_recorded_period_without_aigb(pid_export):
    # aigb blocked from import: the folder must not need it.
    code = ("import sys, runpy; sys.modules['aigb'] = None; sys.argv = [sys.argv[1]]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(pid_export / "selftest.py")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"selftest: \d+ ticks replayed, max \|bid difference\| 0: OK", done.stdout), done.stdout


def test_selftest_fails_on_a_drifted_folder(pid_export, tmp_path):
    import json
    import shutil

    drifted = tmp_path / "drifted"
    shutil.copytree(pid_export, drifted)
    params = json.loads((drifted / "params.json").read_text())
    params["rule"]["gain"] = 0.5
    (drifted / "params.json").write_text(json.dumps(params))
    done = _run_selftest(drifted)
    assert done.returncode == 1 and "FAILED" in done.stdout


def test_weights_load_without_weights_only_through_the_tensors_only_unpickler(tmp_path, monkeypatch):
    """torch 1.12 has no weights_only: the restricted unpickler takes tensors and refuses anything else."""
    import collections
    import pickle

    import torch

    from aigb.export.runtime import bundle

    real_load = torch.load

    def old_torch_load(*args, **kwargs):
        if "weights_only" in kwargs:
            raise TypeError("load() got an unexpected keyword argument 'weights_only'")
        return real_load(*args, weights_only=False, **kwargs)

    monkeypatch.setattr(torch, "load", old_torch_load)
    torch.save({"a.weight": torch.arange(6.0).reshape(2, 3), "s": torch.zeros(2, dtype=torch.float64)}, tmp_path / "weights.pt")
    tensors = bundle.load_tensors(str(tmp_path))
    assert torch.equal(tensors["a.weight"], torch.arange(6.0).reshape(2, 3)) and tensors["s"].dtype == torch.float64
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"a": torch.zeros(1), "b": collections.Counter("ab")}, evil / "weights.pt")
    with pytest.raises(pickle.UnpicklingError, match="collections.Counter"):
        bundle.load_tensors(str(evil))


def test_the_folder_drops_into_a_harness_package(pid_export, tmp_path):
    """Copied into a competition kit's package tree, it imports as a package (and its player.py as a member)."""
    import shutil

    strategy_dir = tmp_path / "bidding_train_env" / "strategy"
    strategy_dir.mkdir(parents=True)
    for d in (tmp_path / "bidding_train_env", strategy_dir):
        (d / "__init__.py").write_text("")
    shutil.copytree(pid_export, strategy_dir / "aigb_export")
    code = (
        "import numpy as np\n"
        "from bidding_train_env.strategy.aigb_export import PlayerBiddingStrategy as A\n"
        "from bidding_train_env.strategy.aigb_export.player import PlayerBiddingStrategy as B\n"
        "assert A is B, (A, B)\n"
        "data = np.load('bidding_train_env/strategy/aigb_export/selftest.npz')\n"
        "budget, cpa, category = data['campaign']\n"
        "p = A(budget=budget, name='aigb', cpa=cpa, category=int(category))\n"
        "n = data['offsets'][1]\n"
        "bids = p.bidding(0, data['historyPValueInfo'][:n, 0].astype(float), data['historyPValueInfo'][:n, 1].astype(float), [], [], [], [], [])\n"
        "assert np.array_equal(bids, data['returned'][:n])\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


@pytest.mark.parametrize("key", ["dt", "diffbid"])
def test_attention_without_torchs_fused_kernel_replays_the_period(key, exports, monkeypatch):
    """torch 1.12 lacks scaled_dot_product_attention: the explicit softmax stands in, to rounding."""
    import importlib.util

    import torch.nn.functional as F

    _, folder, _ = exports(key)
    monkeypatch.delattr(F, "scaled_dot_product_attention")
    spec = importlib.util.spec_from_file_location("_selftest_" + key, folder / "selftest.py")
    selftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(selftest)
    asked, worst, allowed = selftest.replay(str(folder))        # AssertionError beyond 1e-5 of a bid
    assert asked > 0 and worst <= allowed

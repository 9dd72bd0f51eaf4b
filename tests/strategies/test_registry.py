import sys
import types

import numpy as np
import pytest

from aigb.strategies import registry
from aigb.strategies.base import Strategy
from aigb.strategies.check import CHECK_MARKET, StrategyCheckError, check_strategy
from aigb.strategies.oracle_strategy import HindsightOracle
from aigb.strategies.registry import (LEARNED_ALGOS, UnknownStrategyError, known_strategies, make_strategy, parse_spec,
                                      strategy_factory)
from aigb.strategies.rules import FixedRate, OnlineLP, PIDPacing
from aigb.types import ConfigError

# Every registered strategy that needs no external file, in each of its modes. Learned ones need
# a checkpoint (their own tests check them); the competition adapter is checked in test_neurips2024.
RULE_SPECS = ("fixed", "fixed:rate=0.8", "pid", "pid:gain=2.5,rate=1.2", "onlinelp", "onlinelp:prior=none,cap=2",
              "oracle", "oracle:mode=lp", "oracle:mode=slots,reference=fixed:rate=0.9")
PATH_TAKING = set(LEARNED_ALGOS) | {"neurips2024"}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "aigb-cache"))


def test_every_registered_rule_strategy_is_checked():
    checked = {s.partition(":")[0] for s in RULE_SPECS}
    # Tests may register helper strategies of their own (named test-*, e.g. tests/report/planner.py);
    # under xdist they share this worker's registry, and they are not the product's.
    product = {name for name in known_strategies() if not name.startswith("test-")}
    assert product == checked | PATH_TAKING


@pytest.mark.parametrize("spec", RULE_SPECS)
def test_checker_passes_registered_rule_strategies(spec):
    report = check_strategy(strategy_factory(spec))
    assert report["campaigns"] == 5 and report["empty_ticks"] > 0


def test_specs_build_the_right_strategies():
    fixed = make_strategy("fixed:rate=0.9", CHECK_MARKET)
    assert isinstance(fixed, FixedRate) and fixed.rate == 0.9 and fixed.name == "fixed:rate=0.9"
    pid = make_strategy("pid:gain=2", CHECK_MARKET)
    assert isinstance(pid, PIDPacing) and pid.gain == 2.0 and pid.name == "pid:gain=2"
    lp = make_strategy("onlinelp:prior=none", CHECK_MARKET)
    assert isinstance(lp, OnlineLP) and lp.prior is None
    assert make_strategy("onlinelp", CHECK_MARKET).prior is not None
    oracle = make_strategy("oracle:mode=slots,reference=pid:gain=2,rate=0.9", CHECK_MARKET)
    assert isinstance(oracle, HindsightOracle) and oracle.mode == "slots"
    assert parse_spec("oracle:mode=slots,reference=pid:gain=2,rate=0.9") == ("oracle", {"mode": "slots", "reference": "pid:gain=2,rate=0.9"})


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownStrategyError, match="unknown strategy 'nope'.*fixed.*oracle.*pid"):
        strategy_factory("nope:rate=1")
    assert issubclass(UnknownStrategyError, ConfigError)


@pytest.mark.parametrize("spec, message", [
    ("fixed:rat=1", "unknown parameter 'rat'.*accepted: rate"),
    ("fixed:rate=abc", "parameter rate"),
    ("fixed:rate", "expected key=value"),
    ("fixed:rate=1,rate=2", "given twice"),
    ("fixed:rate=-1", "rate: must be a number"),
    ("pid:gain=-1", "gain"),
    ("oracle:mode=psychic", "unknown oracle mode"),
    ("oracle:reference=nope", "unknown strategy 'nope'"),
    ("oracle:reference=oracle", "cannot itself be an oracle"),
    ("onlinelp:prior=/no/such/file.npz", "no OnlineLP prior file"),
    ("iql", "needs an argument"),
    ("iql:/no/such/checkpoint.pt", "no checkpoint at"),
    ("neurips2024:no_such_module_xyz:Bidder", "cannot import"),
    ("", "non-empty"),
])
def test_bad_specs_fail_before_building(spec, message):
    with pytest.raises(ConfigError, match=message):
        strategy_factory(spec)


def test_learned_specs_call_the_learned_hook(tmp_path, monkeypatch):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    calls = []
    hook = types.ModuleType("aigb.strategies.learned")

    def load_strategy(algo, path, market_version=None):
        calls.append((algo, path, market_version))
        return FixedRate(1.0)

    hook.load_strategy = load_strategy
    monkeypatch.setitem(sys.modules, "aigb.strategies.learned", hook)
    s = make_strategy(f"iql:{checkpoint}", CHECK_MARKET)
    assert calls == [("iql", str(checkpoint), CHECK_MARKET.version)]   # the market it plays
    assert s.name == f"iql:{checkpoint}"


class _Negative(Strategy):
    name = "negative"

    def reset(self, campaign, n_ticks, seed):
        pass

    def bid(self, obs):
        return -np.ones(obs.p_value.size)


class _WrongShape(_Negative):
    def bid(self, obs):
        return np.ones(obs.p_value.size + 1)


class _Unseeded(_Negative):
    draws = iter(range(10**9))  # shared by every instance: a second instance sees other numbers

    def bid(self, obs):
        return np.full(obs.p_value.size, float(next(self.draws)))


class _Leaky(_Negative):
    def __init__(self):
        self.ticks_seen = 0  # never reset: the second campaign starts where the first ended

    def bid(self, obs):
        self.ticks_seen += 1
        return np.full(obs.p_value.size, float(self.ticks_seen))


@pytest.mark.parametrize("cls, message", [(_Negative, "negative"), (_WrongShape, "shape"),
                                          (_Unseeded, "not deterministic"), (_Leaky, "reset\\(\\) keeps state")])
def test_checker_catches_broken_strategies(cls, message):
    with pytest.raises(StrategyCheckError, match=message):
        check_strategy(lambda market: cls())

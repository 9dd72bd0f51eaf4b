"""A market plays its own version's competitor field in every layer that builds one: a rollout, a
batched period, the evaluation, the OnlineLP prior and the competition harness."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aigb.eval.batched import play_period
from aigb.eval.evaluate import evaluate
from aigb.eval.rollout import rollout
from aigb.export.harness import play_env
from aigb.sim.population import V3_FIELD, PopulationConfig, market_population
from aigb.strategies.registry import make_strategy
from aigb.strategies.rules import fit_lp_prior
from aigb.types import MarketConfig

V3 = MarketConfig(n_pv=3000, n_ticks=12, n_advertisers=8)
V2 = replace(V3, version="v2")
SEED, PERIOD, SLOT = 3, 1_000_001, 2


def _played(row) -> tuple:
    """What a campaign's row says it spent and earned, tick by tick (NaN-free columns)."""
    return row["spend"], row["conversions"], tuple(row["tick_spend"]), row["oracle_score"]


@pytest.mark.parametrize("market", [V3, V2], ids=["v3", "v2"])
def test_every_layer_plays_the_field_of_the_markets_version(market, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path))
    field, other = market_population(market), (PopulationConfig() if market.version == "v3" else V3_FIELD)
    assert field != other
    pid = lambda: make_strategy("pid", market)  # noqa: E731 - a fresh strategy per play

    explicit = rollout(pid(), "pid", market, SEED, PERIOD, SLOT, field)
    assert _played(rollout(pid(), "pid", market, SEED, PERIOD, SLOT)) == _played(explicit)
    assert rollout(pid(), "pid", market, SEED, PERIOD, SLOT, other)["spend"] != explicit["spend"]
    batched = play_period(("pid",), market, None, SEED, PERIOD, [SLOT])[0][0]
    assert _played(batched) == _played(play_period(("pid",), market, field, SEED, PERIOD, [SLOT])[0][0])
    assert play_env(pid(), market, SEED, PERIOD, SLOT).spend == play_env(pid(), market, SEED, PERIOD, SLOT, population=field).spend
    config = evaluate(["fixed"], periods=1, slots=[SLOT], market=market, progress=False).config
    assert config.population == field and config.market.version == market.version
    assert fit_lp_prior(market, periods=1).metadata["population"] == field.to_dict()


def test_the_rules_pace_on_the_markets_day_profile():
    """PID's plan follows the public day profile of the market it plays (v2's and v3's differ)."""
    v3, v2 = make_strategy("pid", V3), make_strategy("pid", V2)
    assert (v3.market_version, v2.market_version) == ("v3", "v2")
    assert rollout(make_strategy("pid", V3), "pid", V3, SEED, PERIOD, SLOT, PopulationConfig())["spend"] != \
        rollout(make_strategy("pid", V2), "pid", V3, SEED, PERIOD, SLOT, PopulationConfig())["spend"]

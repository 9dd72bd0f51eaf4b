"""Market v3: selected by ``MarketConfig.version``, recorded in every market record, refused by
code that loads another version, and it changes the field and the day profile only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from aigb.data.dataset import TrajectoryDataset
from aigb.data.generate import generate_dataset
from aigb.sim.market import reference
from aigb.sim.period import PeriodSim
from aigb.sim.population import ANET_PID, FEEDBACK, PopulationConfig, V3_FIELD, market_population
from aigb.sim.traffic import day_profile
from aigb.types import ConfigError, MarketConfig, MarketVersionError

SMALL = MarketConfig(n_pv=3000, n_ticks=8, n_advertisers=8, preset="random")


def test_the_version_is_recorded_and_validated():
    assert MarketConfig().to_dict()["market_version"] == "v3" and "version" not in MarketConfig().to_dict()
    assert MarketConfig(version="v2").to_dict()["market_version"] == "v2"
    with pytest.raises(ConfigError, match="version: unknown market version 'v9'"):
        MarketConfig(version="v9")


def test_a_dataset_records_the_version_it_was_generated_on(tmp_path):
    generate_dataset(tmp_path / "v2", 1, 0, market=replace(SMALL, version="v2"), progress=False)
    generate_dataset(tmp_path / "v3", 1, 0, market=SMALL, progress=False)
    assert TrajectoryDataset.load(tmp_path / "v2").market_version == "v2"
    assert TrajectoryDataset.load(tmp_path / "v3").market_version == "v3"


def test_v3_draws_its_own_field_and_day_profile():
    assert market_population(MarketConfig(version="v2")) == PopulationConfig()
    assert market_population(MarketConfig()) == V3_FIELD
    sim = PeriodSim(MarketConfig(n_pv=20_000, version="v3"), 0, 0)
    b = sim.bidders
    assert np.allclose(b.rate[b.kind == ANET_PID], 0.158)  # AuctionNet's PID opens at 15 of a 95 scale
    fb = b.kind == FEEDBACK
    assert ((b.rate[fb] >= 0.75) & (b.rate[fb] <= 1.7)).all() and (b.market_gain[fb] == 0).all()
    v3 = np.asarray(reference()["tick_volume_share_v3"])
    np.testing.assert_allclose(day_profile(48, "v3"), v3 / v3.sum())
    assert not np.allclose(day_profile(48, "v3"), day_profile(48, "v2"))
    # The same (seed, period) keeps its advertisers and p_value curves; only volumes and the field move.
    v2 = PeriodSim(MarketConfig(n_pv=20_000, version="v2"), 0, 0)
    np.testing.assert_array_equal(v2.traffic.mean, sim.traffic.mean)
    assert v2.traffic.n_pv.sum() == sim.traffic.n_pv.sum() == 20_000

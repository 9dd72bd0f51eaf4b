"""Golden tests: an exported strategy bids as the aigb strategy does, through aigb's environment, through
our competition loop, and back through the ``neurips2024:`` adapter, over whole periods."""

import json

import numpy as np
import pytest

from aigb.algos.checkpoint import read_checkpoint
from aigb.export.exporter import ExportMismatch, export_neurips2024, load_exported_class
from aigb.export.harness import play_competition, play_env
from aigb.sim.traffic import day_profile
from aigb.strategies.registry import make_strategy
from aigb.types import MARKET_VERSION, ConfigError, MarketConfig
from tests.export.conftest import EXPORT_SEED, KINDS, MARKET, PERIOD, SEED, SLOT, SOURCES, tight_campaign


@pytest.mark.parametrize("key", sorted(SOURCES))
def test_export_bids_as_aigb_in_the_env_and_in_the_competition_loop(key, exports):
    spec, folder, report = exports(key)
    assert report.kind == KINDS[key] and report.max_bid_difference == 0.0
    campaign = tight_campaign()
    env = play_env(make_strategy(spec, MARKET), MARKET, SEED, PERIOD, SLOT, strategy_seed=EXPORT_SEED, campaign=campaign)
    player = load_exported_class(folder)()
    harness = play_competition(player, MARKET, SEED, PERIOD, SLOT, campaign=campaign)
    # Identical arithmetic on identical inputs: equal to the last bit, over the whole period.
    assert env.max_bid_difference(harness) == 0.0
    assert harness.score == pytest.approx(env.score, rel=1e-12, abs=1e-12)
    assert harness.spend == pytest.approx(env.spend, rel=1e-12) and harness.conversions == env.conversions
    assert harness.remaining_budget == pytest.approx(env.remaining_budget, rel=1e-9, abs=1e-9)
    if key not in ("fixed", "onlinelp"):   # a fixed rate; a threshold at its cap all day
        assert len({round(a, 9) for a in player.alphas}) > 2, "a constant bid multiplier would test little"
    assert env.asked == harness.asked


@pytest.mark.parametrize("key", sorted(set(SOURCES) - {"diffbid-unet"}))   # the denoiser plays no part in the adapter
def test_round_trip_through_the_neurips2024_adapter(key, exports):
    spec, folder, _ = exports(key)
    campaign = tight_campaign()
    native = play_env(make_strategy(spec, MARKET), MARKET, SEED, PERIOD, SLOT, strategy_seed=EXPORT_SEED, campaign=campaign)
    adapted = make_strategy(f"neurips2024:{folder / 'player.py'}:PlayerBiddingStrategy", MARKET)
    back = play_env(adapted, MARKET, SEED, PERIOD, SLOT, campaign=campaign)
    assert back.max_bid_difference(native) == 0.0
    assert back.score == native.score


def test_an_export_carries_the_task_of_its_checkpoint_and_is_refused_on_the_other(exports):
    from aigb.strategies.base import check_task

    _, folder, _ = exports("bc")   # trained on a Target-CPA dataset
    assert json.loads((folder / "params.json").read_text())["task"] == "cpa"
    adapted = make_strategy(f"neurips2024:{folder / 'player.py'}:PlayerBiddingStrategy", MARKET)
    assert adapted.trained_for[0] == "cpa"
    check_task(adapted, "cpa")
    with pytest.raises(ConfigError, match=r"trained for the cpa task \(export .*\), not max-return;"):
        check_task(adapted, "max-return")
    _, rule, _ = exports("fixed")
    assert json.loads((rule / "params.json").read_text())["task"] is None
    check_task(make_strategy(f"neurips2024:{rule / 'player.py'}:PlayerBiddingStrategy", MARKET), "max-return")


def test_the_tight_campaign_runs_out_of_budget(exports):
    # Bidding 5 C, the tight campaign spends its budget within the day: the market caps the tick
    # that would overspend and the harness stops asking; the bids above still agree.
    _, folder, _ = exports("fixed")
    play = play_competition(load_exported_class(folder)(), MARKET, SEED, PERIOD, SLOT, campaign=tight_campaign())
    assert 0 < sum(play.asked) < MARKET.n_ticks and play.budget - 0.1 < play.spend <= play.budget
    assert play.conversions > 0


@pytest.mark.parametrize("key", ["pid", "onlinelp-prior", "dt", "diffbid"])
def test_ticks_the_harness_skipped_are_decided_afterwards_in_order(key, exports):
    """A harness that skips ticks: the decisions at the later ticks are those of a player asked every tick."""
    _, folder, _ = exports(key)
    data = np.load(folder / "selftest.npz")
    names = ("historyPValueInfo", "historyBid", "historyAuctionResult", "historyImpressionResult", "historyLeastWinningCost")
    offsets = data["offsets"]
    budget, cpa, category = data["campaign"]
    last = int(np.flatnonzero(data["asked"])[-1])
    player = load_exported_class(folder)(budget=budget, cpa=cpa, category=int(category))
    player.reset()
    histories = [[] for _ in names]
    for t in range(last + 1):
        rows = slice(offsets[t], offsets[t + 1])
        info = data["historyPValueInfo"][rows].astype(np.float64)
        if t < 4 or t > min(last, 12) - 1:
            bids = player.bidding(t, info[:, 0], info[:, 1], *histories)
            np.testing.assert_array_equal(bids, data["returned"][rows])
        for h, name in zip(histories, names):
            h.append(data[name][rows].astype(np.float64))
    assert len(player.alphas) == last + 1


def test_params_describe_the_export(exports):
    spec, folder, _ = exports("diffbid")
    params = json.loads((folder / "params.json").read_text())
    assert params["source"] == spec and params["kind"] == "diffbid" and params["seed"] == EXPORT_SEED
    planner = params["planner"]
    assert planner["guidance"] == 1.5 and planner["outcome"]["return"] == 0.7 and planner["sampling_steps"] == 2
    assert planner["temperature"] == 0.8 and planner["eta"] == 0.5 and len(planner["timesteps"]) == 2
    assert params["feature_version"] == "v1" and params["n_ticks"] == 48
    # The golden tests play the default market (v3) with checkpoints trained on its data.
    assert params["market_version"] == MARKET.version == MARKET_VERSION == "v3"
    assert read_checkpoint(spec.split(":", 1)[1].partition("?")[0])["market_version"] == "v3"
    assert planner["net"]["known_input"] is True and planner["prediction"] == "x0"   # aigb's defaults
    unet = json.loads((exports("diffbid-unet")[1] / "params.json").read_text())["planner"]
    assert unet["denoiser"] == "unet" and unet["net"]["known_input"] is False and unet["prediction"] == "eps"
    rule = json.loads((exports("onlinelp-prior")[1] / "params.json").read_text())["rule"]
    assert rule["lp_prior"]["advertiser"] == SLOT and rule["lp_prior"]["n_pv"] == MARKET.n_pv
    assert rule["profile"] == day_profile(MARKET.n_ticks, "v3").tolist()   # the market's public day profile
    assert not (exports("pid")[1] / "weights.pt").exists()


def test_a_diffbid_device_option_becomes_the_exports_device_and_the_check_runs_on_the_cpu(checkpoints, tmp_path):
    report = export_neurips2024(f"diffbid:{checkpoints['diffbid']}?device=cuda&steps=1", tmp_path / "d", market=MARKET)
    params = json.loads((tmp_path / "d" / "params.json").read_text())
    assert params["device"] == "cuda" and "device" not in params["planner"]["options"]
    assert report.max_bid_difference == 0.0 and report.spec.endswith("?device=cuda&steps=1")


def test_onlinelp_prior_without_a_slot_uses_the_category_mean(lp_prior_path, tmp_path):
    report = export_neurips2024(f"onlinelp:prior={lp_prior_path}", tmp_path / "lp", market=MARKET)
    assert report.max_bid_difference == 0.0   # checked against aigb's OnlineLP given the same row
    assert json.loads((tmp_path / "lp" / "params.json").read_text())["rule"]["lp_prior"]["advertiser"] is None


def test_a_different_seed_changes_a_random_strategy_and_the_export_follows(exports, checkpoints, tmp_path):
    spec, folder, _ = exports("diffbid")
    other = export_neurips2024(spec, tmp_path / "d", market=MARKET, seed=EXPORT_SEED + 1)
    a = play_competition(load_exported_class(folder)(), MARKET, SEED, PERIOD, SLOT)
    b = play_competition(load_exported_class(other.out)(), MARKET, SEED, PERIOD, SLOT)
    assert a.max_bid_difference(b) > 0


@pytest.mark.parametrize("source, message", [
    ("oracle", "hindsight"),
    ("neurips2024:x.py:C", "competition code already"),
    ("runs/none/best.pt", "no checkpoint file"),
    ("nonsense", "unknown strategy"),
])
def test_sources_without_an_export_are_refused(source, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        export_neurips2024(source, tmp_path / "out", market=MARKET)
    assert not (tmp_path / "out").exists()


def test_refuses_to_overwrite_a_foreign_folder_and_replaces_an_earlier_export(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "mine" / "params.json").write_text('{"learning_rate": 0.1}')     # someone else's params
    with pytest.raises(ValueError, match="params.json exists and was not written by `aigb export-neurips2024`"):
        export_neurips2024("fixed", tmp_path / "mine", market=MARKET)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    export_neurips2024("fixed", tmp_path / "out", market=MARKET)
    export_neurips2024("fixed:rate=1.1", tmp_path / "out", market=MARKET)
    assert json.loads((tmp_path / "out" / "params.json").read_text())["rule"]["rate"] == 1.1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out"]     # no staging folder left


def test_a_mismatching_export_is_not_written(tmp_path, monkeypatch):
    from aigb.export import exporter

    real = exporter._rule_params
    monkeypatch.setattr(exporter, "_rule_params", lambda *a: {**real(*a), "rate": 0.5})   # a drifted export
    with pytest.raises(ExportMismatch, match="bids differently"):
        export_neurips2024("fixed:rate=0.9", tmp_path / "out", market=MARKET)
    assert list(tmp_path.iterdir()) == []


def test_diffbid_guidance_and_search_are_refused(checkpoints, tmp_path):
    from aigb.strategies.diffbid import DIFFBID_OPTIONS

    if "n" not in DIFFBID_OPTIONS:
        pytest.skip("this aigb's diffbid: spec has no candidate search")
    with pytest.raises(ConfigError, match="no competition export yet"):
        export_neurips2024(f"diffbid:{checkpoints['diffbid']}?n=2&select=plan", tmp_path / "out", market=MARKET)


def test_cli_exports_and_reports_the_check(tmp_path, capsys):
    from aigb.cli import main

    assert main(["export-neurips2024", "pid:gain=2", "--out", str(tmp_path / "pid"), "--n-pv", "20000",
                 "--n-advertisers", "8", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "max |bid difference| 0" in out and "selftest.py" in out
    assert json.loads((tmp_path / "pid" / "params.json").read_text())["seed"] == 3
    assert main(["export-neurips2024", "oracle", "--out", str(tmp_path / "o")]) == 2
    assert "hindsight" in capsys.readouterr().err


def test_markets_of_other_day_lengths_export_rules(tmp_path):
    market = MarketConfig(n_pv=20_000, n_ticks=24, n_advertisers=8)
    report = export_neurips2024("pid", tmp_path / "pid24", market=market)
    assert report.max_bid_difference == 0.0
    assert json.loads((tmp_path / "pid24" / "params.json").read_text())["n_ticks"] == 24

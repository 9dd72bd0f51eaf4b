"""``aigb calibrate``: the report of a small market beside the AuctionNet sample, and bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from aigb.cli import main
from aigb.report.calibrate import calibration_report, format_report
from aigb.types import MarketConfig

SAMPLE = Path(__file__).parents[1] / "data" / "auctionnet_period-0-rlData.csv.zst"


def test_report_puts_a_log_beside_two_market_versions():
    small = MarketConfig(n_pv=6000)
    report = calibration_report(("v2", "v3"), rldata=[SAMPLE], periods=2, market=small, player=0,
                                auctionnet_roster=True, progress=False)
    assert set(report["markets"]) == {"v2", "v3"}
    assert report["markets"]["v3"]["config"]["market_version"] == "v3"
    log = report["logs"][str(SAMPLE)]["summary"]
    assert log["total_spend"]["mean"] == pytest.approx(110_153, rel=1e-3)  # the period's 48 advertisers
    assert report["markets"]["v2"]["summary"]["n_pv"]["mean"] == 6000
    text = format_report(report)
    # The small markets hold 6,000 PVs, the log 499,980: the volume is outside both bands.
    assert any(line.startswith("n_pv") and line.rstrip().endswith("]") and " !! " in line for line in text.splitlines())
    assert "statistics inside market v3's band" in text


def test_excluded_slots_leave_the_per_advertiser_statistics_on_both_sides():
    small = MarketConfig(n_pv=3000)
    full = calibration_report(("v2",), rldata=[SAMPLE], periods=1, market=small, progress=False)
    part = calibration_report(("v2",), rldata=[SAMPLE], periods=1, market=small, progress=False, exclude=range(8, 48))
    for r in (full, part):
        assert r["markets"]["v2"]["summary"]["lwc_mean"]["mean"] == full["markets"]["v2"]["summary"]["lwc_mean"]["mean"]
    assert part["logs"][str(SAMPLE)]["summary"]["total_spend"]["mean"] < full["logs"][str(SAMPLE)]["summary"]["total_spend"]["mean"]
    assert part["excluded_advertisers"] == list(range(8, 48))


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["calibrate", "--exclude-stand-ins", "--quiet"]) == 2
    assert "--exclude-stand-ins: needs --auctionnet-roster" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main(["calibrate", "--rldata", str(tmp_path / "bad.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.csv: not an rlData CSV" in err
    assert main(["calibrate", "--periods", "0", "--quiet"]) == 2


def test_cli_writes_the_figures(tmp_path, capsys, monkeypatch):
    import aigb.report.calibrate as cal

    real = cal.calibration_report
    monkeypatch.setattr(cal, "calibration_report", lambda *a, **k: real(*a, **{**k, "market": replace(k["market"], n_pv=3000)}))
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--rldata", str(SAMPLE), "--periods", "1", "--preset", "dense", "--quiet", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["markets"]["v3"]["per_period"][0]["n_pv"] == 3000
    assert data["markets"]["v3"]["config"]["preset"] == "dense"
    assert "mult_median_w0" in capsys.readouterr().out
    assert data["logs"][str(SAMPLE)]["per_period"][0]["mult_median_lp"] is None  # unknown kinds: null, not NaN

import base64
import json
import re
import shutil

import numpy as np
import pytest
from matplotlib.image import imread

from aigb.cli import main
from aigb.eval.evaluate import load_results
from aigb.eval.metrics import summarize
from aigb.report import build_report
from aigb.report.build import FIGURES
from aigb.report.figures import sweeps
from aigb.report.inputs import short_labels, spec_params

from tests.report.conftest import SPECS

FILES = ["report.html", "leaderboard.json", "leaderboard.txt"] + [f"{stem}.png" for stem, *_ in FIGURES]


def test_same_inputs_give_the_same_report_byte_for_byte(evaluation, report_dir, tmp_path, capsys):
    assert main(["report", str(evaluation), "--out", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (report_dir / name).read_bytes(), name


def test_leaderboard_numbers_are_those_the_evaluation_summary_prints(evaluation, report_dir, capsys):
    board = json.loads((report_dir / "leaderboard.json").read_text())
    assert board["baseline"] == "fixed" and {r["strategy"] for r in board["strategies"]} == set(SPECS)
    # Independently: the rows summarised again, and the table `aigb compare` prints.
    table, _ = load_results(evaluation)
    summary = summarize(table, baseline="fixed")
    by_name = {s.strategy: s for s in summary.strategies}
    paired = {p.strategy: p for p in summary.paired}
    assert main(["compare", str(evaluation), "--baseline", "fixed"]) == 0
    printed = capsys.readouterr().out.splitlines()
    for rec in board["strategies"]:
        s = by_name[rec["strategy"]]
        assert rec["values"]["score"]["mean"] == s.score.mean and rec["values"]["score"]["low"] == s.score.low
        assert rec["values"]["pct_oracle"]["mean"] == s.pct_oracle.mean
        assert rec["values"]["cpa_violation_rate"] == s.cpa_violation_rate
        assert rec["values"]["budget_utilisation"]["mean"] == s.budget_utilisation.mean
        row = next(line for line in printed if line.startswith(rec["strategy"] + " "))
        for key in ("score", "pct_oracle", "cpa_violations", "budget_used", "exhausted"):
            assert f" {rec[key]}" in row, (key, rec[key], row)
        if rec["strategy"] != "fixed":
            assert rec["values"]["d_score"]["mean"] == paired[rec["strategy"]].score.mean
            pair_row = [line for line in printed if line.startswith(rec["strategy"] + " ")][-1]
            assert f" {rec['d_score']}" in pair_row and pair_row != row
    means = [r["values"]["score"]["mean"] for r in board["strategies"]]
    assert means == sorted(means, reverse=True)          # ranked
    text = (report_dir / "leaderboard.txt").read_text()
    assert all(r["score"] in text for r in board["strategies"])


def test_every_figure_is_a_valid_png(report_dir):
    for stem, *_ in FIGURES:
        path = report_dir / f"{stem}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        image = imread(path)
        assert image.ndim == 3 and image.shape[1] >= 1000 and image.shape[0] >= 250, (stem, image.shape)
        assert image[..., :3].std() > 0.05, f"{stem} looks blank"


def test_report_html_is_self_contained(report_dir):
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "http:" not in page and "https:" not in page and "<script" not in page and "<link" not in page
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == len(FIGURES)
    for (stem, *_), src in zip(FIGURES, sources):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (report_dir / f"{stem}.png").read_bytes()
    assert "Not shown" not in page     # plans, bid multipliers and a sweep are all present here


def test_a_report_without_traces_says_what_it_leaves_out(evaluation, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("results.parquet", "config.json"):
        shutil.copy(evaluation / name, bare / name)
    report = build_report([bare], tmp_path / "out", baseline="pid")
    assert any("plans" in n for n in report.notes) and any("bid multiplier" in n for n in report.notes)
    assert not (tmp_path / "out" / "plans.png").exists() and (tmp_path / "out" / "tick_spend.png").exists()
    assert "vs pid" in report.leaderboard_text


def test_spec_parsing_labels_and_sweeps():
    assert spec_params("fixed:rate=0.9") == ("fixed", {"rate": "0.9"}, "")
    assert spec_params("bc:runs/bc/best.pt") == ("bc", {}, "runs/bc/best.pt")
    assert spec_params("diffbid:runs/d/best.pt?w=1.2&return=0.9") == ("diffbid", {"w": "1.2", "return": "0.9"}, "runs/d/best.pt")
    specs = ["fixed", "bc:runs/bc/best.pt", "diffbid:r/best.pt?w=0", "diffbid:r/best.pt?w=1.5", "diffbid:r/best.pt?w=3",
             "dt:a/best.pt", "dt:b/best.pt"]
    labels = short_labels(specs)
    assert labels["bc:runs/bc/best.pt"] == "bc" and labels["diffbid:r/best.pt?w=1.5"] == "diffbid (w=1.5)"
    assert labels["dt:a/best.pt"] == "dt:a/best.pt"           # ambiguous without the path
    assert sweeps(specs) == [("diffbid", "w", [(0.0, specs[2]), (1.5, specs[3]), (3.0, specs[4])])]
    assert sweeps(SPECS) == [("test-planner", "rate", [(0.8, SPECS[3]), (1.2, SPECS[4])])]

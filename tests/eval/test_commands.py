import argparse

import pytest

from aigb.eval.commands import register
from aigb.strategies.registry import UnknownStrategyError


def _parser():
    parser = argparse.ArgumentParser(prog="aigb")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_evaluate_command_prints_the_table_and_writes_results(tmp_path, capsys):
    args = _parser().parse_args(["evaluate", "--strategy", "fixed", "pid", "--periods", "1", "--slots", "spread:2",
                                 "--n-pv", "3000", "--n-ticks", "8", "--n-advertisers", "8",
                                 "--out", str(tmp_path), "--baseline", "pid", "--quiet"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "paired differences vs pid" in out and "fixed" in out and "wrote 4 rows" in out
    assert (tmp_path / "results.parquet").is_file() and (tmp_path / "config.json").is_file()


def test_evaluate_command_rejects_unknown_strategies(tmp_path):
    args = _parser().parse_args(["evaluate", "--strategy", "nope", "--out", str(tmp_path), "--quiet"])
    with pytest.raises(UnknownStrategyError, match="known: "):
        args.func(args)
    assert not (tmp_path / "results.parquet").exists()


def test_compare_command_prints_one_paired_table(tmp_path, capsys):
    common = ["--periods", "1", "--slots", "spread:2", "--n-pv", "3000", "--n-ticks", "8", "--n-advertisers", "8", "--quiet"]
    for name, out in (("fixed", "a"), ("pid", "b")):
        args = _parser().parse_args(["evaluate", "--strategy", name, "--out", str(tmp_path / out), *common])
        assert args.func(args) == 0
    capsys.readouterr()
    args = _parser().parse_args(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--baseline", "fixed"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "paired differences vs fixed" in out and "\npid " in out


def test_max_return_rows_score_the_conversions_and_do_not_mix_with_target_cpa(tmp_path, capsys):
    import json

    from aigb.eval.evaluate import load_results
    from aigb.types import ConfigError

    common = ["--periods", "1", "--slots", "spread:2", "--n-pv", "20000", "--n-ticks", "8", "--n-advertisers", "8", "--quiet"]
    runs = ((["fixed"], "a", "cpa"), (["pid", "oracle"], "b", "cpa"), (["pid", "oracle"], "c", "max-return"))
    for names, out, task in runs:
        args = _parser().parse_args(["evaluate", "--strategy", *names, "--task", task, "--out", str(tmp_path / out), *common])
        assert args.func(args) == 0
    assert ", task max-return;" in capsys.readouterr().out
    table, config = load_results(tmp_path / "c")
    rows = table.to_pylist()
    assert config["task"] == "max-return" and len(rows) == 4
    assert any(r["conversions"] > 0 for r in rows)
    for r in rows:
        assert r["score"] == r["conversions"] and r["expected_score"] == r["expected_conversions"]
        assert r["expected_score"] <= r["bound_score"] + 1e-9
    # Same campaigns: dropping the CPA term can only raise the bound.
    cpa_rows = load_results(tmp_path / "b")[0].to_pylist()
    assert [r["advertiser"] for r in rows] == [r["advertiser"] for r in cpa_rows]
    for mr, cpa in zip(rows, cpa_rows):
        assert mr["oracle_score"] >= cpa["oracle_score"] - 1e-9 and mr["oracle_score"] > 0

    # Results written before tasks existed record none: they are Target-CPA ones and still combine.
    config_b = json.loads((tmp_path / "b" / "config.json").read_text())
    del config_b["task"]
    (tmp_path / "b" / "config.json").write_text(json.dumps(config_b))
    assert load_results(tmp_path / "b")[1]["task"] == "cpa"
    args = _parser().parse_args(["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert args.func(args) == 0 and "\noracle " in capsys.readouterr().out
    args = _parser().parse_args(["compare", str(tmp_path / "a"), str(tmp_path / "c")])
    with pytest.raises(ConfigError, match=rf"task: {tmp_path / 'c'} is a max-return evaluation and {tmp_path / 'a'} a cpa one"):
        args.func(args)

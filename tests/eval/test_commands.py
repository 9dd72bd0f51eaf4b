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

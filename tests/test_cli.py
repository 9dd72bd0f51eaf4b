"""``aigb simulate`` through ``aigb.cli.main``: the table it prints and its configuration errors."""

import re

import numpy as np
import pytest

from aigb.cli import main
from aigb.sim.runs import OUTCOME_COLUMNS, simulate_periods
from aigb.types import MarketConfig


def test_simulate_prints_one_row_per_advertiser_and_totals(capsys):
    assert main(["simulate", "--periods", "1", "--n-pv", "20000", "--seed", "1", "--quiet"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert "preset sparse" in lines[0] and "seed 1" in lines[0] and "20,000 PVs x 48 ticks" in lines[0]
    assert lines[1].split()[:3] == ["adv", "cat", "budget"]
    rows = lines[2:50]
    assert all(re.match(r"^\s*\d+\s+\d\s", r) for r in rows)
    assert [int(r.split()[0]) for r in rows] == list(range(48))
    assert int(rows[0].split()[1]) == 0 and int(rows[-1].split()[1]) == 5  # categories of the table
    assert rows[0].split()[2:4] == ["2,900", "100"]  # advertiser 0 of the reference table
    total = [line for line in lines if line.lstrip().startswith("all")]
    assert len(total) == 1
    assert lines[-1].startswith("mean score per campaign:")
    assert len(lines) == 2 + 48 + 2
    assert err == ""  # --quiet: no progress bar


def test_simulate_is_reproducible(capsys):
    args = ["simulate", "--n-pv", "3000", "--n-ticks", "12", "--n-advertisers", "6", "--seed", "4", "--quiet"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first
    main(args[:-2] + ["5", "--quiet"])
    assert capsys.readouterr().out != first


@pytest.mark.parametrize("args, field", [
    (["--preset", "crowded"], "preset"),
    (["--n-pv", "0"], "n_pv"),
    (["--n-ticks", "0"], "n_ticks"),
])
def test_configuration_errors_exit_2_naming_the_field(args, field, capsys):
    assert main(["simulate", "--quiet", *args]) == 2
    out, err = capsys.readouterr()
    assert field in err and "invalid configuration" in err
    assert out == ""


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["teleport"])
    assert e.value.code == 2


def test_diffbid_commands_sit_under_aigb_diffbid_and_errors_name_the_full_command(capsys, tmp_path):
    for command in ("tune-guidance", "fit-evaluator", "objective-check"):
        with pytest.raises(SystemExit) as e:        # no longer top-level commands
            main([command, "--help"])
        assert e.value.code == 2
        capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["diffbid"])                           # a group needs its subcommand
    assert e.value.code == 2 and "COMMAND" in capsys.readouterr().err
    assert main(["diffbid", "objective-check", str(tmp_path), "--guide", "cap:0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aigb diffbid objective-check: invalid configuration: guide:"), err


def test_simulate_periods_rows():
    config = MarketConfig(n_pv=2000, n_ticks=6, n_advertisers=5)
    rows = simulate_periods(config, periods=2, seed=3, first_period=4, progress=False)
    assert tuple(rows) == OUTCOME_COLUMNS
    assert all(v.shape == (10,) for v in rows.values())
    assert rows["period"].tolist() == [4] * 5 + [5] * 5
    assert rows["advertiser"].tolist() == list(range(5)) * 2
    assert (rows["spend"] <= rows["budget"]).all()
    np.testing.assert_allclose(rows["budget_utilisation"], rows["spend"] / rows["budget"])
    with pytest.raises(ValueError, match="periods"):
        simulate_periods(config, periods=0, seed=3, progress=False)


@pytest.mark.parametrize("args, field", [(["--periods", "0"], "periods"), (["--seed", "-1"], "seed")])
def test_other_bad_arguments_exit_2_naming_the_field(args, field, capsys):
    assert main(["simulate", "--quiet", "--n-pv", "1000", *args]) == 2
    assert field in capsys.readouterr().err


def test_simulate_out_writes_one_row_per_period_and_advertiser(tmp_path, capsys):
    import pyarrow.parquet as pq

    from aigb.data.parquet import read_metadata

    out = tmp_path / "rows.parquet"
    assert main(["simulate", "--periods", "2", "--n-pv", "3000", "--n-advertisers", "6", "--seed", "2",
                 "--quiet", "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 12 and table.column_names == list(OUTCOME_COLUMNS)
    meta = read_metadata(out)
    assert meta["kind"] == "simulation" and meta["seed"] == 2 and meta["config"]["n_pv"] == 3000
    assert f"wrote 12 rows to {out}" in capsys.readouterr().out

"""Faults and bad input, second round: outputs never replaced without a word, an interrupted finish
that resumes, full disks under torch, tables that cover nothing, stops that take seconds, values
checked by type and range before work.

Real faults: a file-size limit (RLIMIT_FSIZE, writes fail with EFBIG as on a full disk), a
directory where a file must be written (the write fails as any failed write does), a real SIGINT
to the process group as a terminal's Ctrl-C sends, a TCP port nobody listens on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import skip_or_fail
from tests.test_cli_faults import TINY, _player, file_size_limit, one_line_error, run_main
from aigb.data.generate import generate_dataset
from aigb.types import MarketConfig

DATA_MARKET = MarketConfig(n_pv=2000, n_ticks=12, n_advertisers=6, preset="random")
EVAL = ["--strategy", "fixed", "pid", "--periods", "1", "--slots", "spread:2", "--quiet", *TINY]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "aigb-cache"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate_dataset(out, 2, 5, market=DATA_MARKET, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """A trained bc run directory (best.pt, last.pt, config.json)."""
    from aigb.workflows.training import train

    run = tmp_path_factory.mktemp("runs") / "bc"
    train("bc", dataset, run_dir=run, steps=20, validation=None, progress=False)
    return run


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.name != ".aigb-output.json")


# --- 1. nothing replaced without a word -------------------------------------------------------

def test_train_refuses_an_evaluation_directory(capsys, tmp_path, dataset):
    assert run_main(capsys, "evaluate", *EVAL, "--out", tmp_path / "e")[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "e").iterdir()}
    code, out, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", tmp_path / "e", "--steps", "5",
                              "--no-validation", "--quiet")
    assert code == 2 and out == ""
    one_line_error(err, "aigb train: error:", str(tmp_path / "e"), "`aigb evaluate`", "--force")
    assert {p.name: p.read_bytes() for p in (tmp_path / "e").iterdir()} == before


def test_train_refuses_a_users_file_and_writes_with_force(capsys, tmp_path, dataset):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text('{"mine": true}')
    args = ["train", "bc", "--data", dataset, "--out", tmp_path / "mine", "--steps", "5", "--no-validation", "--quiet"]
    code, _, err = run_main(capsys, *args)
    assert code == 2
    one_line_error(err, str(tmp_path / "mine" / "config.json"), "not written by `aigb train`", "--force")
    assert (tmp_path / "mine" / "config.json").read_text() == '{"mine": true}'
    assert run_main(capsys, *args, "--force")[0] == 0
    assert (tmp_path / "mine" / "best.pt").is_file()
    assert run_main(capsys, *args)[0] == 0   # now the directory is train's: a re-run resumes there


def test_fit_evaluator_refuses_a_trained_policy(capsys, tmp_path, dataset, trained):
    import shutil

    run = shutil.copytree(trained, tmp_path / "bc")
    before = (run / "best.pt").read_bytes()
    code, out, err = run_main(capsys, "diffbid", "fit-evaluator", "--data", dataset, "--out", run / "best.pt", "--steps", "5", "--quiet")
    assert code == 2 and out == ""
    one_line_error(err, "aigb diffbid fit-evaluator: error:", str(run / "best.pt"), "`aigb train`", "--force")
    assert (run / "best.pt").read_bytes() == before


def test_simulate_refuses_an_evaluations_results_and_force_replaces(capsys, tmp_path):
    assert run_main(capsys, "evaluate", *EVAL, "--out", tmp_path / "e")[0] == 0
    results = tmp_path / "e" / "results.parquet"
    before = results.read_bytes()
    code, out, err = run_main(capsys, "simulate", "--out", results, "--quiet", *TINY)
    assert code == 2 and out == ""
    one_line_error(err, "aigb simulate: error:", str(results), "`aigb evaluate`", "--force")
    assert results.read_bytes() == before
    (tmp_path / "notes.parquet").write_bytes(b"not aigb's")
    code, _, err = run_main(capsys, "simulate", "--out", tmp_path / "notes.parquet", "--quiet", *TINY)
    assert code == 2 and "not a file aigb wrote" in err
    assert run_main(capsys, "simulate", "--out", tmp_path / "s.parquet", "--quiet", *TINY)[0] == 0
    assert run_main(capsys, "simulate", "--out", tmp_path / "s.parquet", "--quiet", "--seed", "1", *TINY)[0] == 0  # its own
    assert run_main(capsys, "simulate", "--out", results, "--quiet", "--force", *TINY)[0] == 0
    assert pq.read_schema(results).metadata[b"aigb.kind"] == b'"simulation"'


def test_export_keeps_the_users_files_and_refuses_to_replace_them(capsys, tmp_path):
    out = tmp_path / "x"
    args = ["export-neurips2024", "pid", "--out", out, *TINY]
    assert run_main(capsys, *args)[0] == 0
    (out / "notes.txt").write_text("my notes")
    (out / "mine").mkdir()
    (out / "mine" / "data.csv").write_text("1,2\n")
    first = (out / "params.json").read_text()
    code, _, err = run_main(capsys, *args, "--seed", "3")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "my notes" and (out / "mine" / "data.csv").read_text() == "1,2\n"
    assert (out / "params.json").read_text() != first and json.loads((out / "params.json").read_text())["seed"] == 3
    assert not list(tmp_path.glob(".x*"))   # no staging or old folder left beside it
    # A folder of the user's own that holds a file an export writes: refused, untouched.
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "README.md").write_text("mine")
    code, _, err = run_main(capsys, "export-neurips2024", "pid", "--out", tmp_path / "u", *TINY)
    assert code == 2
    one_line_error(err, str(tmp_path / "u" / "README.md"), "--force")
    assert (tmp_path / "u" / "README.md").read_text() == "mine"


# --- 2. an evaluation whose final write failed resumes from its journal ------------------------

def test_an_evaluation_whose_final_write_failed_resumes_from_its_journal(capsys, tmp_path):
    assert run_main(capsys, "evaluate", *EVAL, "--out", tmp_path / "whole")[0] == 0
    out = tmp_path / "e"
    with file_size_limit(4000):   # the journal fails after its header line: nothing finished is lost
        code, _, err = run_main(capsys, "evaluate", *EVAL, "--out", out)
    assert code == 1 and "re-run of the same command resumes" in err
    # The traces cannot be written (a directory holds their name): the last writes fail after
    # results.parquet, as on a disk that fills up while the files are written.
    (out / "ticks.parquet" / "blocked").mkdir(parents=True)
    code, _, err = run_main(capsys, "evaluate", *EVAL, "--out", out)
    assert code == 1
    one_line_error(err, "aigb evaluate: error:", str(out / "ticks.parquet"), "rows.partial.jsonl",
                   "re-run the same command")
    assert (out / "results.parquet").is_file() and not (out / "config.json").exists()
    code, stdout, _ = run_main(capsys, "compare", out)   # what is kept reads as an interrupted evaluation
    assert code == 0 and "an interrupted evaluation; its 2 completed campaign(s) of 2" in stdout
    (out / "ticks.parquet" / "blocked").rmdir()
    (out / "ticks.parquet").rmdir()
    code, _, err = run_main(capsys, "evaluate", *EVAL, "--out", out)
    assert code == 0, err
    a, b = (pq.read_table(d / "results.parquet") for d in (tmp_path / "whole", out))
    np.testing.assert_equal(a.to_pydict(), b.to_pydict())
    assert (out / "config.json").is_file() and not (out / "rows.partial.jsonl").exists()
    assert run_main(capsys, "compare", out)[0] == 0


# --- 3. a full disk where torch writes: one line, the path, nothing half-written ---------------

def test_train_on_a_full_disk_names_the_checkpoint_and_leaves_no_partial_file(capsys, tmp_path, dataset):
    run = tmp_path / "r"
    with file_size_limit(60_000):   # the json files fit, a checkpoint does not
        code, out, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", run, "--steps", "20",
                                  "--no-validation", "--quiet")
    assert code == 1 and out == ""
    one_line_error(err, "aigb train: error:", str(run / "last.pt"), "File too large")
    assert not list(run.glob("*.pt")) and hidden_files(run) == []
    code, _, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", run, "--steps", "20", "--no-validation",
                            "--quiet")
    assert code == 0, err   # room again: the run starts (or resumes) and finishes


def test_fit_evaluator_on_a_full_disk(capsys, tmp_path):
    data = tmp_path / "d48"   # the plan evaluator reads whole 48-tick days
    generate_dataset(data, 1, 0, market=MarketConfig(n_pv=2000, n_advertisers=6, preset="random"), progress=False)
    with file_size_limit(2_000):
        code, out, err = run_main(capsys, "diffbid", "fit-evaluator", "--data", data, "--out", tmp_path / "ev.pt", "--steps", "5",
                                  "--quiet")
    assert code == 1
    one_line_error(err, "aigb diffbid fit-evaluator: error:", str(tmp_path / "ev.pt"), "File too large")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d48"]


def test_export_on_a_full_disk(capsys, tmp_path, trained):
    with file_size_limit(20_000):   # the runtime files fit (<17 kB), the network's weights do not
        code, out, err = run_main(capsys, "export-neurips2024", trained / "best.pt", "--out", tmp_path / "x", *TINY)
    assert code == 1 and out == ""
    one_line_error(err, "aigb export-neurips2024: error:", "weights.pt", "File too large")
    # Nothing half-written: no staging folder beside it, and the folder holds no export file.
    assert list(tmp_path.iterdir()) == []


# --- 4. tables that cover nothing fail; partial and failed rows are said ----------------------

def test_compare_and_report_of_disjoint_seeds_fail(capsys, tmp_path):
    assert run_main(capsys, "evaluate", *EVAL, "--out", tmp_path / "a")[0] == 0
    assert run_main(capsys, "evaluate", "--strategy", "onlinelp", "--periods", "1", "--slots", "spread:2", "--seeds", "1",
                    "--quiet", *TINY, "--out", tmp_path / "b")[0] == 0
    for command in (["compare"], ["report", "--out", tmp_path / "rep"]):
        code, out, err = run_main(capsys, *command, tmp_path / "a", tmp_path / "b")
        assert code == 2 and out == ""
        one_line_error(err, "no campaign was completed by every strategy", "seed(s) 0", "seed(s) 1")


def test_report_counts_only_completed_campaigns_and_fails_on_errors(capsys, tmp_path):
    from aigb.sim.market import campaigns_for

    categories = [c.category for c in campaigns_for(MarketConfig(n_pv=2000, n_ticks=12, n_advertisers=6))]
    spec = _player(tmp_path, category=max(categories))
    failing = sum(c == max(categories) for c in categories)
    code, _, _ = run_main(capsys, "evaluate", "--strategy", "fixed", spec, "--periods", "1", "--quiet", "--keep-going",
                          *TINY, "--out", tmp_path / "e")
    assert code == 1
    code, out, err = run_main(capsys, "report", tmp_path / "e", "--out", tmp_path / "rep")
    assert code == 1 and "row(s) hold errors" in err
    assert f"over the {6 - failing} campaign(s) all 2 strategies completed" in out
    assert f"LEFT OUT: {failing} of 6 campaign(s)" in out
    board = json.loads((tmp_path / "rep" / "leaderboard.json").read_text())["strategies"]
    assert sorted((r["n"], r["errors"]) for r in board) == sorted([(str(6 - failing), "0"), (str(6 - failing), str(failing))])


def test_report_of_an_interrupted_evaluation_says_it_is_partial(capsys, tmp_path):
    args = ["evaluate", "--strategy", "fixed", "pid", "--periods", "2", "--slots", "spread:3", "--quiet", *TINY,
            "--out", tmp_path / "e"]
    with file_size_limit(6000):
        assert run_main(capsys, *args)[0] == 1
    done = (tmp_path / "e" / "rows.partial.jsonl").read_text().count("\n") - 1   # whole lines after the header
    assert 1 <= done < 6
    code, out, _ = run_main(capsys, "report", tmp_path / "e", "--out", tmp_path / "rep")
    assert code == 0
    note = f"an interrupted evaluation; its {done} completed campaign(s) of 6 take part"
    assert note in out and note in (tmp_path / "rep" / "report.html").read_text()


# --- 5. stops within seconds ------------------------------------------------------------------

def _aigb(*argv) -> list[str]:
    return [sys.executable, "-c", "import sys; from aigb.cli import main; sys.exit(main(sys.argv[1:]))", *map(str, argv)]


def _env() -> dict:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_ctrl_c_stops_a_sweep_with_two_workers_within_seconds(tmp_path, dataset):
    out = tmp_path / "sw"
    cmd = _aigb("sweep", "bc", "--data", dataset, "--grid", "lr=1e-4,2e-4,3e-4,4e-4", "--out", out, "--workers", "2",
                "--steps", "1000000", "--eval-every", "1000000", "--quiet")
    # A terminal's Ctrl-C: SIGINT to the whole process group (the sweep and its workers), with
    # SIGINT's default action restored (a test runner may ignore it in its children).
    proc = subprocess.Popen(cmd, env=_env(), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*/config.json"))) < 2:   # both workers are training
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the workers did not start training"
            time.sleep(0.2)
        time.sleep(1.0)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "aigb sweep: interrupted", err
    assert took < 10, took
    with pytest.raises(ProcessLookupError):   # no worker left behind in the group
        for _ in range(50):
            os.killpg(proc.pid, 0)
            time.sleep(0.1)
    assert len(list(out.glob("*/config.json"))) == 2   # no queued point started after the interrupt


def test_an_unreachable_ray_address_fails_within_seconds_naming_it(tmp_path):
    try:
        import ray  # noqa: F401
    except ImportError:
        skip_or_fail("the ray extra is not installed (pip install 'aigb[ray]')")
    cmd = _aigb("evaluate", "--strategy", "fixed", "--periods", "1", "--backend", "ray", "--ray-address", "127.0.0.1:1",
                "--quiet", *TINY, "--out", tmp_path / "e")
    start = time.monotonic()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 30
    assert done.returncode == 2 and done.stdout == ""
    one_line_error(done.stderr, "--ray-address: cannot reach 127.0.0.1:1")
    assert not (tmp_path / "e").exists()


# --- 6. values checked by type and range before work -------------------------------------------

@pytest.mark.parametrize("item, message", [
    ("weight_decay=true", "weight_decay: expected a finite number, got true"),
    ("lr=true", "lr: expected a finite number, got true"),
    ("lr=false", "lr: expected a finite number, got false"),
    ("hidden_dims=[true,2]", "hidden_dims: expected a list of integers, got [true, 2]"),
    ("hidden_dims=[64.5]", "hidden_dims: expected a list of integers"),
    ("lr=Infinity", "lr: expected a finite number, got Infinity"),
    ("weight_decay=NaN", "weight_decay: expected a finite number, got NaN"),
    ("steps=2.5", "steps: expected an integer, got 2.5"),
    ("lr=[1]", "lr: expected a finite number, got [1]"),
])
def test_set_values_are_checked_by_type(capsys, tmp_path, dataset, item, message):
    code, out, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", tmp_path / "r", "--no-validation",
                              "--steps", "2", "--quiet", "--set", item)
    assert code == 2 and out == ""
    one_line_error(err, message)
    assert not (tmp_path / "r" / "last.pt").exists()


def test_set_numbers_keep_their_types(capsys, tmp_path, dataset):
    code, _, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", tmp_path / "r", "--no-validation",
                            "--steps", "2", "--quiet", "--set", "hidden_dims=[16.0,8]", "--set", "lr=1")
    assert code == 0, err
    config = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert config["hidden_dims"] == [16, 8] and isinstance(config["lr"], float) and config["lr"] == 1.0


@pytest.mark.parametrize("command", ["simulate", "generate", "evaluate"])
@pytest.mark.parametrize("n", ["40000", "100000000"])
def test_market_sizes_beyond_the_logs_columns_fail_before_any_work(capsys, tmp_path, command, n):
    extra = {"simulate": [], "generate": ["--periods", "1", "--out", tmp_path / "d"],
             "evaluate": ["--strategy", "fixed", "--out", tmp_path / "e"]}[command]
    start = time.monotonic()
    code, out, err = run_main(capsys, command, "--n-advertisers", n, "--n-pv", "2000", "--n-ticks", "12", "--quiet", *extra)
    assert code == 2 and out == "" and time.monotonic() - start < 5
    one_line_error(err, "n_advertisers: must lie in [1, 32,767]", "int16")
    assert not list(tmp_path.iterdir())


def test_market_limits_are_what_the_schema_holds():
    from aigb.data.schema import IMPRESSION_SCHEMA
    from aigb.types import MAX_ADVERTISERS, MAX_PV, MAX_SLOTS, MAX_TICKS

    for column, limit in (("advertiser", MAX_ADVERTISERS), ("tick", MAX_TICKS), ("pv_index", MAX_PV), ("slot", MAX_SLOTS)):
        dtype = IMPRESSION_SCHEMA.field(column).type.to_pandas_dtype()
        assert np.iinfo(dtype).max == limit, column
        pa.array([limit], type=IMPRESSION_SCHEMA.field(column).type)   # the largest index fits
    MarketConfig(n_advertisers=MAX_ADVERTISERS, n_pv=MAX_PV, n_ticks=MAX_TICKS)
    with pytest.raises(ValueError, match="n_advertisers"):
        MarketConfig(n_advertisers=MAX_ADVERTISERS + 1)


def test_validation_periods_are_checked_before_training(capsys, tmp_path, dataset):
    code, _, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", tmp_path / "r", "--val-periods", "0",
                            "--steps", "5", "--quiet")
    assert code == 2
    one_line_error(err, "val_periods: must be an integer >= 1, got 0")
    assert not (tmp_path / "r").exists()

"""Faults and bad input through ``aigb.cli.main`` (issue 13): one line naming the file or key on
stderr, a non-zero exit, no traceback, and nothing lost or mixed.

Real faults, not fakes: outputs under a regular file (a path no user, root included, can create),
a file-size limit (RLIMIT_FSIZE: writes fail with EFBIG as on a full disk), bytes flipped in the
middle of a Parquet file with its footer intact, checkpoints edited with torch. Killed processes:
tests/test_kill_resume.py.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from aigb.cli import main
from aigb.data.generate import generate_dataset, period_path
from aigb.types import MarketConfig

TINY = ["--n-pv", "2000", "--n-ticks", "12", "--n-advertisers", "6"]
DATA_MARKET = MarketConfig(n_pv=2000, n_ticks=12, n_advertisers=6, preset="random")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "aigb-cache"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate_dataset(out, 3, 5, market=DATA_MARKET, progress=False)
    return out


def run_main(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def flip_middle(path: Path, n: int = 16) -> None:
    """Damage a data page: invert n bytes in the middle of the file, footer untouched."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


# --- unwritable outputs fail first, naming the path --------------------------------------------

@pytest.fixture
def blocked(tmp_path) -> Path:
    """A directory path nobody can create: it lies under a regular file."""
    (tmp_path / "file.txt").write_text("not a directory")
    return tmp_path / "file.txt" / "sub"


def test_generate_into_an_unwritable_directory(capsys, blocked):
    code, out, err = run_main(capsys, "generate", "--periods", "1", "--out", blocked, "--quiet", *TINY)
    assert code == 1 and out == ""
    one_line_error(err, "aigb generate: error:", str(blocked), "cannot write")


def test_train_into_an_unwritable_run_directory(capsys, blocked, dataset):
    code, _, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", blocked, "--no-validation", "--quiet")
    assert code == 1
    one_line_error(err, "aigb train: error:", str(blocked))


def test_evaluate_into_an_unwritable_directory_fails_before_any_rollout(capsys, blocked):
    code, out, err = run_main(capsys, "evaluate", "--strategy", "fixed", "--periods", "1", "--out", blocked, "--quiet",
                              *TINY)
    assert code == 1 and out == ""
    one_line_error(err, "aigb evaluate: error:", str(blocked))


def test_simulate_out_onto_a_directory_or_an_unwritable_one(capsys, tmp_path, blocked):
    code, out, err = run_main(capsys, "simulate", "--out", tmp_path, "--quiet", *TINY)
    assert code == 2 and out == ""
    one_line_error(err, "aigb simulate: error: --out:", str(tmp_path), "is a directory")
    code, out, err = run_main(capsys, "simulate", "--out", blocked / "rows.parquet", "--quiet", *TINY)
    assert code == 1 and out == ""
    one_line_error(err, str(blocked))


def test_onlinelp_with_an_unwritable_cache_directory(capsys, tmp_path, blocked, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(blocked))
    code, _, err = run_main(capsys, "evaluate", "--strategy", "onlinelp", "--periods", "1", "--slots", "0",
                            "--out", tmp_path / "e", "--quiet", *TINY)
    assert code == 1
    one_line_error(err, "OnlineLP prior cache", str(blocked), "AIGB_CACHE_DIR")


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's sysfs (/sys)")
@pytest.mark.parametrize("out", ["/sys", "/sys/aigb-data"])
def test_a_directory_nobody_can_write(capsys, out):
    """An existing directory that refuses new files, and one that cannot be made, to every process,
    root included (a chmod'ed directory stops everyone but root, and CI runs as root): sysfs holds
    only the kernel's own entries (EACCES / EPERM whatever the user)."""
    code, out_text, err = run_main(capsys, "generate", "--periods", "1", "--out", out, "--quiet", *TINY)
    assert code == 1 and out_text == ""
    one_line_error(err, "aigb generate: error:", f"{out}: cannot write here")
    assert not Path("/sys/aigb-data").exists()


# --- a full disk mid-run: the error names the file, the work done is kept, a re-run resumes -----

@contextlib.contextmanager
def file_size_limit(n_bytes: int):
    """RLIMIT_FSIZE (soft) for this process: writes past n_bytes into any file fail with EFBIG,
    as on a full disk (Python ignores SIGXFSZ). The soft limit goes back up afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_generate_hitting_a_file_size_limit_keeps_its_periods_and_resumes(capsys, tmp_path):
    args = ["generate", "--seed", "4", "--quiet", *TINY]
    assert run_main(capsys, *args, "--periods", "3", "--out", tmp_path / "whole")[0] == 0
    assert run_main(capsys, *args, "--periods", "1", "--out", tmp_path / "resumed")[0] == 0
    size = (tmp_path / "whole" / "trajectories" / "period=00001.parquet").stat().st_size
    with file_size_limit(size // 2):  # below one period file: period 1 cannot be written
        code, _, err = run_main(capsys, *args, "--periods", "3", "--out", tmp_path / "resumed")
    assert code == 1
    one_line_error(err, "aigb generate: error:", "resumed/trajectories/period=00001.parquet", "File too large")
    done = sorted(p.name for p in (tmp_path / "resumed" / "trajectories").glob("period=*"))
    assert done == ["period=00000.parquet"]  # period 0 kept, nothing half-written (hidden files included)
    code, out, _ = run_main(capsys, *args, "--periods", "3", "--out", tmp_path / "resumed")
    assert code == 0 and "generated 2 period(s), skipped 1 already complete" in out
    for p in range(3):
        a = pq.read_table(period_path(tmp_path / "whole", "trajectories", p))
        b = pq.read_table(period_path(tmp_path / "resumed", "trajectories", p))
        assert a.equals(b), p


def test_evaluate_hitting_a_file_size_limit_keeps_finished_campaigns_and_resumes(capsys, tmp_path):
    args = ["evaluate", "--strategy", "fixed", "pid", "--periods", "2", "--slots", "spread:3", "--quiet", *TINY]
    assert run_main(capsys, *args, "--out", tmp_path / "whole")[0] == 0
    with file_size_limit(6000):  # the journal of finished campaigns outgrows it after a few lines
        code, _, err = run_main(capsys, *args, "--out", tmp_path / "resumed")
    assert code == 1
    one_line_error(err, "aigb evaluate: error:", "resumed/rows.partial.jsonl", "File too large")
    kept = (tmp_path / "resumed" / "rows.partial.jsonl").read_text().splitlines()
    assert 2 <= len(kept) < 7  # the header and at least one of the 6 campaigns
    code, _, err = run_main(capsys, *args, "--out", tmp_path / "resumed")
    assert code == 0, err
    a, b = (pq.read_table(tmp_path / d / "results.parquet") for d in ("whole", "resumed"))
    np.testing.assert_equal(a.to_pydict(), b.to_pydict())
    assert not (tmp_path / "resumed" / "rows.partial.jsonl").exists()


# --- bad values name their key; reserved periods ----------------------------------------------

@pytest.mark.parametrize("item, message", [
    ("top_fraction=abc", "top_fraction: cannot parse 'abc'"),
    ("hidden_dims=64", "hidden_dims: expected a list of integers, got 64"),
    ("top_fraction=2", "top_fraction"),
    ("no_such_key=1", "no_such_key: unknown option"),
    ("top_fraction", "--set: expected KEY=VALUE"),
])
def test_set_errors_name_the_key(capsys, dataset, tmp_path, item, message):
    code, _, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", tmp_path / "r", "--no-validation",
                            "--steps", "2", "--quiet", "--set", item)
    assert code == 2
    one_line_error(err, message)


def test_set_takes_numbers_json_does_not_spell(capsys, dataset, tmp_path):
    code, _, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", tmp_path / "r", "--no-validation",
                            "--steps", "2", "--quiet", "--set", "top_fraction=.25")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["top_fraction"] == 0.25


@pytest.mark.parametrize("first, periods", [(499_999, 2), (500_000, 1), (1_000_000, 1)])
def test_generate_refuses_validation_and_evaluation_periods(capsys, tmp_path, first, periods):
    code, _, err = run_main(capsys, "generate", "--periods", periods, "--first-period", first, "--out", tmp_path / "d",
                            "--quiet", *TINY)
    assert code == 2
    one_line_error(err, "first_period", "500,000")
    assert not (tmp_path / "d").exists()


# --- damaged files -------------------------------------------------------------------------------

def test_damaged_period_file(capsys, tmp_path, dataset):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    flip_middle(period_path(data, "trajectories", 1))
    code, _, err = run_main(capsys, "train", "bc", "--data", data, "--out", tmp_path / "r", "--no-validation", "--quiet")
    assert code == 2
    one_line_error(err, "aigb train: error:", "period=00001.parquet", "damaged file")
    code, out, err = run_main(capsys, "dataset", "info", data, "--verify")
    assert code == 1 and "DAMAGED          " in out and "period=00001.parquet" in out
    # generate checks the files it would skip, regenerates the damaged one and says so.
    code, out, err = run_main(capsys, "generate", "--periods", "3", "--seed", "5", "--out", data, "--quiet", *TINY)
    assert code == 0 and "generated 1 period(s), skipped 2 already complete" in out
    one_line_error(err, "period=00001.parquet", "damaged", "regenerated")
    assert pq.read_table(period_path(data, "trajectories", 1)).equals(pq.read_table(period_path(dataset, "trajectories", 1)))
    assert run_main(capsys, "dataset", "info", data, "--verify")[0] == 0


def test_damaged_results_file_in_compare(capsys, tmp_path):
    assert run_main(capsys, "evaluate", "--strategy", "fixed", "--periods", "1", "--slots", "0,3", "--out", tmp_path / "a",
                    "--quiet", *TINY)[0] == 0
    flip_middle(tmp_path / "a" / "results.parquet", n=64)
    code, out, err = run_main(capsys, "compare", tmp_path / "a")
    assert code == 2 and out == ""
    one_line_error(err, "aigb compare: error:", "results.parquet")


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    torch = pytest.importorskip("torch")
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "bc", "--data", str(dataset), "--out", str(run), "--steps", "4", "--no-validation",
                 "--quiet"]) == 0
    return torch, run


@pytest.mark.parametrize("damage, message", [("shape", "size mismatch"), ("weight", "Missing key"),
                                             ("normalizer", "missing 'normalizer'")])
def test_broken_checkpoints(capsys, tmp_path, dataset, trained, damage, message):
    torch, run = trained
    payload = torch.load(run / "last.pt", weights_only=True)
    nets = payload["algorithm"]["nets"]
    first = next(iter(nets))
    if damage == "shape":
        nets[first] = torch.zeros(3, 3)
    elif damage == "weight":
        del nets[first]
    else:
        del payload["algorithm"]["normalizer"]
    broken = tmp_path / "broken.pt"
    torch.save(payload, broken)
    code, _, err = run_main(capsys, "evaluate", "--strategy", f"bc:{broken}", "--periods", "1", "--slots", "0",
                            "--out", tmp_path / "e", "--quiet", *TINY)
    assert code == 2
    one_line_error(err, "aigb evaluate: error: checkpoint", str(broken), message)
    # The same damage in a run directory's last.pt stops a resume with one line.
    resumed = tmp_path / "run"
    resumed.mkdir()
    torch.save(payload, resumed / "last.pt")
    code, _, err = run_main(capsys, "train", "bc", "--data", dataset, "--out", resumed, "--steps", "4",
                            "--no-validation", "--quiet")
    assert code == 2
    one_line_error(err, "aigb train: error:", str(resumed / "last.pt"), "weights do not fit", message)


# --- training resumes only on its own dataset ----------------------------------------------------

def test_train_refuses_to_resume_on_another_dataset_and_keeps_its_arguments(capsys, tmp_path, dataset):
    other = tmp_path / "other"
    generate_dataset(other, 3, 6, market=DATA_MARKET, progress=False)  # another seed: other data
    run = tmp_path / "run"

    def args(steps, data):
        return ["train", "bc", "--out", run, "--steps", steps, "--no-validation", "--quiet", "--data", data]

    assert run_main(capsys, *args(6, dataset))[0] == 0
    train_args = (run / "train_args.json").read_text()
    assert json.loads(train_args)["dataset_fingerprint"].startswith("sha256:")
    last = (run / "last.pt").read_bytes()
    code, _, err = run_main(capsys, *args(12, other))
    assert code == 2
    one_line_error(err, "last.pt", "was trained on dataset sha256:", "not sha256:")
    assert (run / "train_args.json").read_text() == train_args and (run / "last.pt").read_bytes() == last
    # A copy of the same dataset elsewhere has the same fingerprint: the run resumes.
    shutil.copytree(dataset, tmp_path / "copy")
    code, out, _ = run_main(capsys, *args(12, tmp_path / "copy"))
    assert code == 0 and "bc: 12 updates" in out
    assert (run / "train_args.json").read_text() == train_args  # a resume does not rewrite it


# --- evaluate: failed strategies, existing results, slots -------------------------------------

FAILING_PLAYER = """
class Player:
    budget = cpa = category = remaining_budget = 0

    def reset(self):
        pass

    def bidding(self, timeStepIndex, pValues, *history):
        if self.category >= {category} and timeStepIndex == 3:
            raise RuntimeError("player broke")
        return self.cpa * pValues
"""


def _player(tmp_path, category: int) -> str:
    path = tmp_path / "player.py"
    path.write_text(textwrap.dedent(FAILING_PLAYER.format(category=category)))
    return f"neurips2024:{path}:Player"


def test_a_failing_strategy_stops_the_evaluation_and_keep_going_reports_it(capsys, tmp_path):
    from aigb.sim.market import campaigns_for

    categories = [c.category for c in campaigns_for(MarketConfig(n_pv=2000, n_ticks=12, n_advertisers=6))]
    spec = _player(tmp_path, category=max(categories))  # fails on the last category's campaigns only
    failing = [a for a, c in enumerate(categories) if c == max(categories)]
    common = ["--strategy", "fixed", spec, "--periods", "1", "--slots", "all", "--quiet", *TINY]
    code, out, err = run_main(capsys, "evaluate", *common, "--out", tmp_path / "stop")
    assert code == 1 and out == ""
    one_line_error(err, "aigb evaluate: error:", "raised at tick 3", "player broke", f"advertiser {failing[0]}",
                   "rows.partial.jsonl", "--keep-going")
    assert not (tmp_path / "stop" / "results.parquet").exists()

    code, out, err = run_main(capsys, "evaluate", *common, "--out", tmp_path / "all", "--keep-going", "--baseline", "fixed")
    assert code == 1
    assert f"over the {6 - len(failing)} campaign(s) all 2 strategies completed" in out
    assert f"LEFT OUT: {len(failing)} of 6 campaign(s)" in out
    table = out.split("paired differences")[0]
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith(("fixed ", "neurips2024"))}
    assert rows["fixed"][1:3] == [str(6 - len(failing)), "0"] and rows[next(k for k in rows if k.startswith("neurips2024"))][1:3] == [str(6 - len(failing)), str(len(failing))]
    assert "row(s) hold errors" in err
    # Both strategies' means are over the same campaigns: fixed's equals an evaluation of fixed alone on them.
    from aigb.eval.evaluate import evaluate

    kept = [a for a in range(6) if a not in failing]
    alone = evaluate(["fixed"], periods=1, slots=kept, market=MarketConfig(n_pv=2000, n_ticks=12, n_advertisers=6),
                     progress=False)
    fixed_line = next(line for line in out.splitlines() if line.startswith("fixed "))
    assert alone.summary.strategies[0].score.fmt() in fixed_line
    code, out, _ = run_main(capsys, "compare", tmp_path / "all")
    assert code == 1 and "LEFT OUT" in out


def test_evaluate_refuses_to_overwrite_and_force_replaces(capsys, tmp_path):
    common = ["--strategy", "fixed", "--periods", "1", "--quiet", *TINY, "--out", tmp_path / "e"]
    assert run_main(capsys, "evaluate", *common, "--slots", "0")[0] == 0
    before = (tmp_path / "e" / "results.parquet").read_bytes()
    code, out, err = run_main(capsys, "evaluate", *common, "--slots", "1")
    assert code == 2 and out == ""
    one_line_error(err, "already holds an evaluation", "--force")
    assert (tmp_path / "e" / "results.parquet").read_bytes() == before
    code, out, _ = run_main(capsys, "evaluate", *common, "--slots", "1", "--force")
    assert code == 0 and pq.read_table(tmp_path / "e" / "results.parquet").column("advertiser").to_pylist() == [1]


def test_a_partial_evaluation_of_other_settings_is_refused(capsys, tmp_path):
    from aigb.eval.evaluate import JOURNAL_FILE

    out_dir = tmp_path / "e"
    common = ["--strategy", "fixed", "--periods", "1", "--quiet", *TINY, "--out", out_dir]
    assert run_main(capsys, "evaluate", *common, "--slots", "0,1")[0] == 0
    journal = json.dumps({"kind": "aigb-evaluation-rows",
                          "config": json.loads((out_dir / "config.json").read_text())}) + "\n"
    (out_dir / "results.parquet").unlink()
    (out_dir / "config.json").unlink()
    (out_dir / JOURNAL_FILE).write_text(journal)
    code, _, err = run_main(capsys, "evaluate", *common, "--slots", "0,2")
    assert code == 2
    one_line_error(err, "partial evaluation of other settings", "slots: [0, 1] there, [0, 2] now", "--force")


def test_slots_name_advertisers_and_spread_counts(capsys, tmp_path):
    code, out, _ = run_main(capsys, "evaluate", "--strategy", "fixed", "--periods", "1", "--slots", "5", "--quiet", *TINY,
                            "--out", tmp_path / "one")
    assert code == 0 and "x slot(s) 5," in out
    assert pq.read_table(tmp_path / "one" / "results.parquet").column("advertiser").to_pylist() == [5]
    code, out, _ = run_main(capsys, "evaluate", "--strategy", "fixed", "--periods", "1", "--slots", "spread:3", "--quiet",
                            *TINY, "--out", tmp_path / "spread")
    assert code == 0 and "x slot(s) 0,2,5," in out


# --- import-csv ---------------------------------------------------------------------------------

def test_import_csv_refuses_a_different_file_with_the_same_base_name(capsys, tmp_path):
    from tests.data.test_csv_import import IMPRESSION_HEADER, impression_lines, write_lines

    a, b = tmp_path / "a" / "period-3.csv", tmp_path / "b" / "period-3.csv"
    for path, n_pv in ((a, 5), (b, 7)):  # two different logs of the same name
        path.parent.mkdir()
        write_lines(path, IMPRESSION_HEADER, impression_lines(n_pv, period=3))
    out = tmp_path / "imported"
    assert run_main(capsys, "import-csv", a, "--out", out)[0] == 0
    written = sorted(out.rglob("*.parquet"))
    before = [p.read_bytes() for p in written]
    code, _, err = run_main(capsys, "import-csv", b, "--out", out)
    assert code == 2
    one_line_error(err, str(b), "another file with the same name", str(a.resolve()))
    assert [p.read_bytes() for p in sorted(out.rglob("*.parquet"))] == before
    assert run_main(capsys, "import-csv", a, "--out", out)[0] == 0  # the same file again replaces its outputs

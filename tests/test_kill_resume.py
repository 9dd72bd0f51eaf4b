"""Real interruptions: ``aigb generate``, ``aigb train`` and ``aigb evaluate`` are killed with
SIGKILL mid-run (no clean-up code runs), re-run, and compared with an uninterrupted run; the worker
processes of a killed parallel run must not outlive it. The train and evaluate cases start torch
or two worker processes and are marked slow (``make test-all``); the default suite covers their
resumes in-process (tests/algos/test_algos_fit.py, tests/test_cli_faults.py).
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
import pyarrow.parquet as pq
import pytest

from aigb.cli import main
from aigb.data.generate import generate_dataset, period_path
from aigb.types import MarketConfig

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "aigb-cache"))


def start(args, cwd) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "aigb.cli", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's wait() is missing


def kill_and_check_workers(proc: subprocess.Popen, workers: set[int]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    end = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < end:
        time.sleep(0.05)
    left = [w for w in workers if alive(w)]
    for w in left:  # do not leave them running if the test fails
        os.kill(w, signal.SIGKILL)
    assert not left, f"worker processes {left} outlived their killed parent"


GEN_MARKET = MarketConfig(n_pv=60_000, n_ticks=24, n_advertisers=12, preset="random")
GEN_ARGS = ["generate", "--periods", "8", "--seed", "3", "--workers", "2", "--quiet",
            "--n-pv", "60000", "--n-ticks", "24", "--n-advertisers", "12"]


def test_killed_generate_leaves_no_workers_and_resumes_to_the_uninterrupted_dataset(tmp_path):
    out = tmp_path / "killed"
    proc = start([*GEN_ARGS, "--out", out], tmp_path)
    traj = out / "trajectories"
    wait_for(lambda: traj.is_dir() and any(traj.glob("period=*.parquet")), proc, what="the first period file")
    workers = children(proc.pid)
    assert len(workers) >= 2  # the pool's processes (and multiprocessing's resource tracker)
    kill_and_check_workers(proc, workers)
    done = sorted(traj.glob("period=*.parquet"))
    assert 1 <= len(done) < 8, "killed too late to test a resume"
    report = generate_dataset(out, 8, 3, market=GEN_MARKET, progress=False)
    assert set(report.skipped) == {int(p.stem.split("=")[1]) for p in done}
    assert not list(traj.glob(".*")), "temporary files of the killed run are left"
    whole = tmp_path / "whole"
    generate_dataset(whole, 8, 3, market=GEN_MARKET, progress=False)
    for p in range(8):
        assert pq.read_table(period_path(whole, "trajectories", p)).equals(pq.read_table(period_path(out, "trajectories", p))), p
    assert json.loads((out / "dataset.json").read_text())["fingerprint"] == json.loads((whole / "dataset.json").read_text())["fingerprint"]


EVAL_ARGS = ["evaluate", "--strategy", "fixed", "pid", "--periods", "3", "--slots", "spread:4", "--quiet",
             "--n-pv", "30000", "--n-ticks", "24", "--n-advertisers", "8"]


@pytest.mark.slow
def test_killed_evaluate_leaves_no_workers_and_resumes_to_the_uninterrupted_table(tmp_path, capsys):
    out = tmp_path / "killed"
    proc = start([*EVAL_ARGS, "--workers", "2", "--out", out], tmp_path)
    journal = out / "rows.partial.jsonl"
    wait_for(lambda: journal.exists() and journal.read_text().count("\n") >= 3, proc, what="two finished campaigns")
    workers = children(proc.pid)
    kill_and_check_workers(proc, workers)
    kept = journal.read_text().count("\n") - 1
    assert 2 <= kept < 12, "killed too late to test a resume"
    assert main([*EVAL_ARGS, "--out", str(out)]) == 0
    assert main([*EVAL_ARGS, "--out", str(tmp_path / "whole")]) == 0
    a, b = (pq.read_table(tmp_path / d / "results.parquet") for d in ("whole", "killed"))
    np.testing.assert_equal(a.to_pydict(), b.to_pydict())
    assert not journal.exists()


@pytest.mark.slow
def test_killed_train_resumes_to_the_weights_and_logged_losses_of_an_uninterrupted_run(tmp_path):
    torch = pytest.importorskip("torch")
    from aigb.algos.checkpoint import read_checkpoint

    data = tmp_path / "data"
    generate_dataset(data, 2, 8, market=MarketConfig(n_pv=3000, n_ticks=24, n_advertisers=8, preset="random"),
                     progress=False)
    # last.pt every 15 updates (steps / 20), a loss record every 100: a resume starts inside a loss
    # window, which it must carry over from the checkpoint to log the same means.
    args = ["train", "bc", "--data", data, "--steps", "300", "--batch-size", "16", "--no-validation", "--quiet"]
    killed = tmp_path / "killed"
    proc = start([*args, "--out", killed], tmp_path)
    wait_for(lambda: (killed / "last.pt").exists(), proc, what="the first checkpoint")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = json.loads(read_checkpoint(killed / "last.pt")["fit_state"])["step"]
    assert 0 < step < 300 and step % 100, f"killed at step {step}: too late, or on a loss record"
    assert main([*map(str, args), "--out", str(killed)]) == 0
    assert main([*map(str, args), "--out", str(tmp_path / "whole")]) == 0
    for name in ("last.pt", "best.pt"):
        a = read_checkpoint(tmp_path / "whole" / name)["algorithm"]["nets"]
        b = read_checkpoint(killed / name)["algorithm"]["nets"]
        assert all(torch.equal(a[k], b[k]) for k in a), name

    def records(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "ms_per_step"} for line in lines]

    assert records(killed) == records(tmp_path / "whole")

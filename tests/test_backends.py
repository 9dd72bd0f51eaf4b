"""The Ray backend: the same rows and files as a local run, resume, a killed worker, the sweep, and
one-line errors for bad options. One local Ray instance (2 CPUs) serves the module."""

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from aigb.backends import Backend, TaskRun
from aigb.cli import main
from aigb.data.generate import generate_dataset, period_path
from aigb.eval import evaluate as evaluate_module
from aigb.eval.evaluate import evaluate
from aigb.workflows.sweep import SWEEP_JSON, SWEEP_TABLE, parse_grid, sweep
from aigb.workflows.training import ValidationSet
from aigb.types import ConfigError, MarketConfig

DATA_MARKET = MarketConfig(n_pv=3000, preset="random")
EVAL_MARKET = MarketConfig(n_pv=5000, n_ticks=10, n_advertisers=10)


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'aigb[ray]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "aigb-cache"))


@pytest.fixture(scope="module")
def bc_checkpoint(tmp_path_factory):
    """A tiny BC checkpoint and its dataset."""
    pytest.importorskip("torch")
    from aigb.workflows.training import train

    root = tmp_path_factory.mktemp("bc")
    generate_dataset(root / "data", 2, 5, market=DATA_MARKET, progress=False)
    train("bc", root / "data", run_dir=root / "run", steps=10, batch_size=16, seed=0, validation=None, progress=False)
    return root


def _aigb_metadata(path):
    # created_at differs between any two writes (and ARROW:schema embeds it); the rest must not.
    meta = pq.read_schema(path).metadata
    return {k: v for k, v in meta.items() if k.startswith(b"aigb.") and k != b"aigb.created_at"}


def test_generate_on_ray_writes_the_files_of_a_local_run(ray_instance, tmp_path):
    generate_dataset(tmp_path / "local", 3, 4, market=DATA_MARKET, impressions=True, workers=2, progress=False)
    # Through the command line, which joins the Ray instance this process already runs.
    assert main(["generate", "--periods", "3", "--seed", "4", "--n-pv", "3000", "--impressions", "--quiet",
                 "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 0
    for kind in ("trajectories", "impressions"):
        for p in range(3):
            a, b = period_path(tmp_path / "local", kind, p), period_path(tmp_path / "ray", kind, p)
            assert pq.read_table(a).equals(pq.read_table(b)), (kind, p)
            assert _aigb_metadata(a) == _aigb_metadata(b)
            assert pq.ParquetFile(a).metadata.num_row_groups == pq.ParquetFile(b).metadata.num_row_groups


def test_generate_on_ray_resumes_skipping_finished_periods(ray_instance, tmp_path):
    generate_dataset(tmp_path, 2, 4, market=DATA_MARKET, progress=False)
    report = generate_dataset(tmp_path, 4, 4, market=DATA_MARKET, progress=False, backend="ray")
    assert report.generated == (2, 3) and report.skipped == (0, 1)


def test_evaluate_on_ray_gives_the_rows_of_a_local_run(ray_instance, bc_checkpoint, monkeypatch):
    specs = ["fixed", "onlinelp", "oracle:mode=slots", f"bc:{bc_checkpoint / 'run' / 'best.pt'}"]
    kwargs = dict(periods=1, slots=[0, 4, 7], market=EVAL_MARKET, progress=False)
    local = evaluate(specs, workers=1, **kwargs)
    put = ray_instance.put
    shipped = []
    monkeypatch.setattr(ray_instance, "put", lambda value, **kw: (shipped.append(value), put(value, **kw))[1])
    on_ray = evaluate(specs, backend=Backend("ray"), **kwargs)
    # The built strategies (the checkpoint's weights, the OnlineLP prior) went to the store once.
    assert len(shipped) == 1 and list(shipped[0]) == specs
    assert all(e is None for e in on_ray.table.column("error").to_pylist())
    np.testing.assert_equal(local.table.to_pydict(), on_ray.table.to_pydict())


def test_a_failing_strategy_stops_a_ray_evaluation_keeping_the_finished_campaigns(ray_instance, tmp_path, monkeypatch):
    from aigb.strategies import registry
    from tests.eval.test_rollout import RaisesAt

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    # Registered here only: the Ray tasks get the built strategy through the object store.
    registry.register("raise5", lambda market: RaisesAt(5))
    kwargs = dict(periods=1, slots=4, market=EVAL_MARKET, progress=False, backend="ray")
    with pytest.raises(evaluate_module.EvaluationStopped, match="raise5 raised at tick 5"):
        evaluate(["fixed", "raise5"], out_dir=tmp_path, **kwargs)
    assert (tmp_path / evaluate_module.JOURNAL_FILE).is_file() and not (tmp_path / "results.parquet").exists()
    res = evaluate(["fixed", "raise5"], keep_going=True, **kwargs)
    assert res.summary.strategies[1].n_errors == 4


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _kill_first_worker_running(title: bytes, stop: threading.Event, killed: list) -> None:
    """SIGKILL the first worker of this process's Ray instance (this process started its raylet,
    the raylet its workers) whose title is ``title``: a Ray worker names itself after the task
    it is executing (ray::period_task). The task then runs again on another worker."""
    while not stop.is_set() and not killed:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if cmdline.read_bytes().startswith(title) and _parent(_parent(int(cmdline.parent.name))) == os.getpid():
                    pid = int(cmdline.parent.name)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            except (OSError, ValueError):
                continue
        time.sleep(0.002)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the Ray worker through /proc")
def test_evaluate_on_ray_survives_a_killed_worker_without_losing_or_repeating_a_campaign(ray_instance, tmp_path,
                                                                                        monkeypatch):
    specs = ["fixed", "pid", "oracle:mode=slots"]
    kwargs = dict(periods=2, slots=[0, 3, 6, 9], market=MarketConfig(n_pv=20_000, n_ticks=24, n_advertisers=10),
                  progress=False)
    journaled = []
    add = evaluate_module._Journal.add
    monkeypatch.setattr(evaluate_module._Journal, "add", lambda self, task, rows: (journaled.append(task),
                                                                                   add(self, task, rows)))
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_first_worker_running, args=(b"ray::period_task", stop, killed))
    watcher.start()
    try:
        on_ray = evaluate(specs, backend="ray", out_dir=tmp_path, **kwargs)
    finally:
        stop.set()
        watcher.join()
    assert killed, "no worker was found running a campaign"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)   # really gone
    assert sorted(journaled) == list(range(8))   # every campaign once: none lost, none twice
    np.testing.assert_equal(evaluate(specs, **kwargs).table.to_pydict(), on_ray.table.to_pydict())
    np.testing.assert_equal(pq.read_table(tmp_path / "results.parquet").to_pydict(), on_ray.table.to_pydict())


def test_sweep_on_ray_equals_a_local_sweep_and_names_the_best_checkpoint(ray_instance, bc_checkpoint, tmp_path):
    grid = parse_grid(["lr=1e-3,1e-2", "top_fraction=0.5"])
    kwargs = dict(steps=10, batch_size=16, eval_every=5, validation=ValidationSet(slots=(0, 5), market=MarketConfig(n_pv=2000)),
                  progress=False)
    local = sweep("bc", bc_checkpoint / "data", grid, tmp_path / "local", **kwargs)
    on_ray = sweep("bc", bc_checkpoint / "data", grid, tmp_path / "ray", backend="ray", **kwargs)
    assert [r["name"] for r in local.rows] == [r["name"] for r in on_ray.rows]
    assert [r["best_score"] for r in local.rows] == [r["best_score"] for r in on_ray.rows]
    assert {r["name"] for r in on_ray.rows} == {"00_lr=1e-3_top_fraction=0.5", "01_lr=1e-2_top_fraction=0.5"}
    best = Path(on_ray.best["run_dir"]) / "best.pt"
    assert best.is_file() and on_ray.best["best_score"] == max(r["best_score"] for r in on_ray.rows)
    table = (tmp_path / "ray" / SWEEP_TABLE).read_text()
    assert f"best: point {on_ray.best['name'][:2]}" in table and str(best) in table
    assert (tmp_path / "ray" / SWEEP_JSON).is_file()


def test_sweep_refuses_a_grid_key_the_config_lacks_before_anything_runs(tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(ConfigError, match="--grid: bc: expectile: unknown option"):
        sweep("bc", tmp_path, parse_grid(["lr=1e-3,1e-4", "expectile=0.7"]), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="--grid: lr is given twice"):
        parse_grid(["lr=1", "lr=2"])


def test_task_run_cancel_pending_keeps_what_finished():
    with TaskRun(abs, [-1, -2, -3]) as run:
        first = run.wait()
        run.cancel_pending()
        assert first == [1] and run.pending == 0 and list(run) == []


@pytest.mark.parametrize("argv, message", [
    (["generate", "--periods", "1", "--out", "X", "--ray-address", "auto"], "--ray-address: only with --backend ray"),
    (["evaluate", "--strategy", "fixed", "--out", "X", "--ray-address", "auto"], "--ray-address: only with --backend ray"),
    (["demo", "--out", "X", "--ray-address", "auto"], "--ray-address: only with --backend ray"),
    (["evaluate", "--strategy", "fixed", "--out", "X", "--backend", "ray", "--workers", "2"], "--workers:"),
])
def test_bad_backend_options_fail_in_one_line_before_anything_runs(argv, message, tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "X").exists()


@pytest.mark.parametrize("command", [["generate", "--periods", "1", "--out", "X"],
                                     ["evaluate", "--strategy", "fixed", "--out", "X"], ["demo", "--out", "X"],
                                     ["sweep", "bc", "--data", "D", "--grid", "lr=1e-3", "--out", "X"]])
def test_backend_ray_without_ray_says_how_to_install_it(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)   # import ray now raises ImportError
    assert main(command + ["--backend", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--backend ray" in err and "pip install 'aigb[ray]'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "X").exists()


def test_the_demo_on_ray_evaluates_as_the_local_demo_does(ray_instance, tmp_path):
    pytest.importorskip("torch")
    from aigb.workflows.demo import AlgoRun, DemoSize, run_demo

    size = DemoSize("test", n_pv=1000, data_periods=1, step_scale=1.0, validation_slots=(0,), validations=1,
                    eval_periods=1, eval_slots=2, workers=1)
    for where in ("local", "ray"):
        run_demo(tmp_path / where, size=size, algos=(AlgoRun("bc", 10, 16),), progress=False, say=lambda _: None,
                 backend=where)
    local, on_ray = (pq.read_table(tmp_path / w / "eval" / "results.parquet").to_pydict() for w in ("local", "ray"))
    # The checkpoint's path is in the strategy's label; everything else matches.
    for rows in (local, on_ray):
        rows["strategy"] = [s.split(":")[0] for s in rows["strategy"]]
    np.testing.assert_equal(local, on_ray)

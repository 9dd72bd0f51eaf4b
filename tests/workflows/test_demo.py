import json

import pytest

import aigb.data.generate
import aigb.eval.evaluate
import aigb.report
import aigb.strategies.rules
from aigb.workflows import demo
from aigb.workflows.demo import AlgoRun, DemoSize, run_demo, run_stage
from aigb.types import ConfigError

SMALL = DemoSize("test", n_pv=1000, data_periods=1, step_scale=1.0, validation_slots=(0,), validations=1,
                 eval_periods=1, eval_slots=1, workers=1)


def test_a_finished_stage_is_not_run_again(tmp_path):
    calls = []
    run = lambda: calls.append(1) or {"value": 3}  # noqa: E731
    assert run_stage(tmp_path, "data", {"periods": 2}, run, say=lambda _: None) == ({"value": 3}, True)
    said = []
    assert run_stage(tmp_path, "data", {"periods": 2}, run, say=said.append) == ({"value": 3}, False)
    assert calls == [1] and "skipped" in said[0]
    with pytest.raises(ConfigError, match="other settings"):
        run_stage(tmp_path, "data", {"periods": 3}, run, say=lambda _: None)


@pytest.fixture
def fake_pipeline(monkeypatch):
    """Every stage's work replaced by a recorder (the real ones are exercised by the slow test)."""
    calls = []

    def generate(out, periods, seed, **kw):
        calls.append("data")
        return type("Report", (), {"mean_score": 1.0})()

    def train_one(run, data_dir, run_dir, validation, eval_every):
        calls.append(f"train-{run.algo}")
        return {"algo": run.algo, "steps": run.steps, "best_score": 2.0, "best_step": run.steps,
                "validation": [[run.steps, 2.0]], "seconds": 0.0}

    def evaluate(specs, **kw):
        calls.append("evaluate")
        return type("Results", (), {"table": type("T", (), {"num_rows": 1})(), "wall_s": 0.0})()

    def build_report(dirs, out, **kw):
        calls.append("report")
        out.mkdir(parents=True, exist_ok=True)
        (out / "leaderboard.txt").write_text("the leaderboard\n")
        return type("R", (), {"figures": (), "notes": ()})()

    monkeypatch.setattr(aigb.data.generate, "generate_dataset", generate)
    monkeypatch.setattr(demo, "_train_one", train_one)
    monkeypatch.setattr(aigb.eval.evaluate, "evaluate", evaluate)
    monkeypatch.setattr(aigb.report, "build_report", build_report)
    monkeypatch.setattr(aigb.strategies.rules, "default_lp_prior", lambda market: None)
    monkeypatch.setattr(demo, "_validation_reference", lambda size: calls.append("reference") or {"fixed": 1.0})
    return calls


def test_the_demo_resumes_where_it_stopped(tmp_path, fake_pipeline):
    algos = (AlgoRun("iql", 30), AlgoRun("bc", 20), AlgoRun("not-an-algorithm", 10))
    said = []
    first = run_demo(tmp_path, size=SMALL, algos=algos, progress=False, say=said.append)
    assert fake_pipeline == ["data", "train-iql", "train-bc", "reference", "evaluate", "report"]
    assert first.ran == ("data", "train-iql", "train-bc", "validation-reference", "evaluate", "report")
    assert first.skipped and "not-an-algorithm" in first.skipped[0] and any("skipped not-an-algorithm" in s for s in said)
    assert first.leaderboard == "the leaderboard" and str(first.report).endswith("report.html")
    # Interrupted after training bc: its marker gone, everything else done.
    (tmp_path / "stages" / "train-bc.json").unlink()
    fake_pipeline.clear()
    second = run_demo(tmp_path, size=SMALL, algos=algos, progress=False, say=lambda _: None)
    assert fake_pipeline == ["train-bc"] and second.ran == ("train-bc",)
    fake_pipeline.clear()
    third = run_demo(tmp_path, size=SMALL, algos=algos, progress=False, say=lambda _: None)
    assert fake_pipeline == [] and third.ran == ()
    marker = json.loads((tmp_path / "stages" / "evaluate.json").read_text())
    assert marker["settings"]["specs"][:4] == ["fixed", "pid", "onlinelp", "oracle"]
    assert marker["settings"]["specs"][4].startswith("iql:")
    with pytest.raises(ConfigError, match="other settings"):
        run_demo(tmp_path, size="tiny", algos=algos, progress=False, say=lambda _: None)


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGB_CACHE_DIR", str(tmp_path / "cache"))
    result = run_demo(tmp_path / "demo", size="tiny", progress=False, say=lambda _: None)
    board = json.loads((tmp_path / "demo" / "report" / "leaderboard.json").read_text())
    names = {r["label"] for r in board["strategies"]}
    assert {"fixed", "pid", "onlinelp", "oracle", "bc", "iql", "cql", "dt"} <= names
    assert all(r["errors"] == "0" for r in board["strategies"])
    assert result.report.is_file() and (tmp_path / "demo" / "report" / "budget_curves.png").is_file()
    again = run_demo(tmp_path / "demo", size="tiny", progress=False, say=lambda _: None)
    assert again.ran == () and again.leaderboard == result.leaderboard

"""The shared training loop: run directory, early stopping, determinism and resumption."""

import json

import numpy as np
import pytest
import torch

from aigb.algos.checkpoint import load_policy, read_checkpoint
from aigb.algos.fit import fit
from aigb.algos.registry import CHECK_OVERRIDES, SyntheticTrajectories, make_algorithm


@pytest.fixture(scope="module")
def data():
    return SyntheticTrajectories(n_trajectories=64, n_ticks=12, feature_dim=5, seed=0)


def _algo(name, data, **overrides):
    return make_algorithm(name, data.feature_dim, {**CHECK_OVERRIDES[name], **overrides})


def _imitation_score(data):
    """-RMSE between the policy and a* over a few served histories (deterministic)."""
    def eval_fn(policy):
        err = []
        for i in range(4):
            traj = data.trajectory(i)
            for t in (0, 6, 11):
                err.append(policy.act(traj["obs"][: t + 1], traj["action"][:t], traj["reward"][:t]) - data.best_action(traj["obs"][t]))
        return {"score": -float(np.sqrt(np.mean(np.square(err)))), "n_states": len(err)}
    return eval_fn


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(path):
    return read_checkpoint(path)["algorithm"]["nets"]


def test_fit_writes_a_self_describing_run_directory(data, tmp_path):
    result = fit(_algo("bc", data), data, steps=30, seed=0, run_dir=tmp_path, eval_fn=_imitation_score(data),
                 eval_every=10, log_every=10, patience=None, progress=False)
    assert result.steps_done == 30 and not result.stopped_early and result.resumed_from == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["algo"] == "bc" and config["config"]["hidden_dims"] == [32, 32]
    assert config["fit"]["steps"] == 30 and config["fit"]["batch_size"] == 32 and config["fit"]["seed"] == 0
    assert config["feature_version"] == data.feature_version and config["dataset_fingerprint"] == data.fingerprint
    records = _records(tmp_path)
    assert [r["step"] for r in records if r["kind"] == "train"] == [10, 20, 30]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [10, 20, 30] and all(r["n_states"] == 12 for r in evals)
    assert result.best_score == max(r["score"] for r in evals)
    best = load_policy(tmp_path / "best.pt", expected_feature_version=data.feature_version)
    assert _imitation_score(data)(best)["score"] == result.best_score
    assert read_checkpoint(tmp_path / "last.pt")["algorithm"]["n_updates"] == 30
    assert "optimizers" not in read_checkpoint(tmp_path / "best.pt")["algorithm"]


def test_fit_stops_early_when_the_score_stops_improving(data, tmp_path):
    scores = iter([5.0, 4.0, 6.0, 3.0, 2.0, 1.0, 0.0, -1.0])
    result = fit(_algo("iql", data), data, steps=100, seed=0, run_dir=tmp_path, eval_fn=lambda p: {"score": next(scores)},
                 eval_every=5, patience=3, log_every=5, progress=False)
    assert result.stopped_early and result.steps_done == 30
    assert (result.best_score, result.best_step) == (6.0, 15)
    assert _records(tmp_path)[-1]["stopped_early"] is True
    again = fit(_algo("iql", data), data, steps=100, seed=0, run_dir=tmp_path, eval_fn=lambda p: {"score": 0.0},
                eval_every=5, patience=3, log_every=5, progress=False)
    assert again.stopped_early and again.steps_done == 30 and again.resumed_from == 30


class Crash(Exception):
    pass


@pytest.mark.parametrize("name", ["cql", "dt"])
def test_a_crashed_run_resumes_to_the_weights_and_metrics_of_an_uninterrupted_one(name, data, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    score = _imitation_score(data)
    kw = dict(steps=24, seed=3, eval_every=8, patience=None, log_every=4, checkpoint_every=4, progress=False)
    fit(_algo(name, data), data, run_dir=straight, eval_fn=score, **kw)

    calls = []
    def crashing(policy):   # dies at the second evaluation (step 16), after last.pt of step 12
        calls.append(1)
        if len(calls) == 2:
            raise Crash()
        return score(policy)
    with pytest.raises(Crash):
        fit(_algo(name, data), data, run_dir=split, eval_fn=crashing, **kw)
    # A fresh algorithm object with other initial weights: everything must come from last.pt.
    other = make_algorithm(name, data.feature_dim, CHECK_OVERRIDES[name], seed=99)
    resumed = fit(other, data, run_dir=split, eval_fn=score, **kw)
    assert resumed.resumed_from == 12 and resumed.steps_done == 24
    a, b = _weights(straight / "last.pt"), _weights(split / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "ms_per_step"} for r in rs]
    assert strip(_records(straight)) == strip(_records(split))


def test_a_resume_inside_a_loss_window_logs_the_uninterrupted_means(data, tmp_path):
    # last.pt at steps 7, 8 (eval) and 14; the crash comes at the eval of step 16. The resume starts
    # at 14 inside the loss window 11..15, which last.pt carries over.
    straight, split = tmp_path / "straight", tmp_path / "split"
    score = _imitation_score(data)
    kw = dict(steps=20, seed=1, eval_every=8, patience=None, log_every=5, checkpoint_every=7, progress=False)
    fit(_algo("bc", data), data, run_dir=straight, eval_fn=score, **kw)
    calls = []

    def crashing(policy):
        calls.append(1)
        if len(calls) == 2:
            raise Crash()
        return score(policy)
    with pytest.raises(Crash):
        fit(_algo("bc", data), data, run_dir=split, eval_fn=crashing, **kw)
    assert fit(_algo("bc", data), data, run_dir=split, eval_fn=score, **kw).resumed_from == 14
    strip = lambda rs: [{k: v for k, v in r.items() if k != "ms_per_step"} for r in rs]
    assert strip(_records(straight)) == strip(_records(split))


def test_a_finished_run_can_be_extended(data, tmp_path):
    fit(_algo("bc", data), data, steps=6, seed=0, run_dir=tmp_path, log_every=2, progress=False)
    more = fit(_algo("bc", data), data, steps=10, seed=0, run_dir=tmp_path, log_every=2, progress=False)
    assert (more.resumed_from, more.steps_done) == (6, 10)
    assert read_checkpoint(tmp_path / "best.pt")["algorithm"]["n_updates"] == 10


def test_resume_drops_metrics_logged_after_the_last_checkpoint(data, tmp_path):
    fit(_algo("bc", data), data, steps=10, seed=0, run_dir=tmp_path, log_every=2, checkpoint_every=10, progress=False)
    with open(tmp_path / "metrics.jsonl", "a") as fh:       # as if a crash followed step 12's log
        fh.write(json.dumps({"step": 12, "kind": "train", "loss": 1.0}) + "\n")
    fit(_algo("bc", data), data, steps=14, seed=0, run_dir=tmp_path, log_every=2, checkpoint_every=10, progress=False)
    steps = [r["step"] for r in _records(tmp_path)]
    assert steps == [2, 4, 6, 8, 10, 12, 14]


def test_same_seed_same_run_other_seed_other_run(data, tmp_path):
    for run, seed in (("a", 1), ("b", 1), ("c", 2)):
        fit(_algo("bc", data), data, steps=8, seed=seed, run_dir=tmp_path / run, progress=False)
    a, b, c = (_weights(tmp_path / r / "best.pt") for r in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_false_starts_afresh_and_a_changed_config_is_refused(data, tmp_path):
    fit(_algo("bc", data), data, steps=6, seed=0, run_dir=tmp_path, log_every=2, progress=False)
    fresh = fit(_algo("bc", data), data, steps=4, seed=0, run_dir=tmp_path, log_every=2, resume=False, progress=False)
    assert fresh.resumed_from == 0 and [r["step"] for r in _records(tmp_path)] == [2, 4]
    with pytest.raises(ValueError, match="was trained with config"):
        fit(_algo("bc", data, lr=5e-4), data, steps=8, seed=0, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="seed=0, not 1"):
        fit(_algo("bc", data), data, steps=8, seed=1, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="was trained on dataset"):
        fit(_algo("bc", data), data, steps=8, seed=0, run_dir=tmp_path, progress=False,
            dataset_fingerprint={"periods": np.arange(3)[1:2].sum()})


def test_fit_refuses_bad_eval_results_and_diverging_losses(data, tmp_path):
    with pytest.raises(ValueError, match="finite 'score'"):
        fit(_algo("bc", data), data, steps=2, seed=0, run_dir=tmp_path / "a", eval_fn=lambda p: {"return": 1.0},
            eval_every=1, progress=False)
    algo = _algo("bc", data)
    algo.update = lambda batch: {"loss": float("nan")}
    with pytest.raises(FloatingPointError, match="loss 'loss' is nan at step 1"):
        fit(algo, data, steps=2, seed=0, run_dir=tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="feature_dim"):
        fit(make_algorithm("bc", 7, CHECK_OVERRIDES["bc"]), data, steps=2, seed=0, run_dir=tmp_path / "c", progress=False)


def test_a_checkpoint_without_a_dataset_fingerprint_does_not_resume_on_fingerprinted_data(data, tmp_path):
    fit(_algo("bc", data), data, steps=4, seed=0, run_dir=tmp_path, progress=False)
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    payload["dataset_fingerprint"] = None  # as written before datasets carried fingerprints
    torch.save(payload, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="records no dataset fingerprint"):
        fit(_algo("bc", data), data, steps=8, seed=0, run_dir=tmp_path, progress=False)


def test_a_checkpoint_with_weights_of_other_shapes_does_not_resume(data, tmp_path):
    fit(_algo("bc", data), data, steps=4, seed=0, run_dir=tmp_path, progress=False)
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    nets = payload["algorithm"]["nets"]
    nets[next(iter(nets))] = torch.zeros(2, 2)
    torch.save(payload, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="last.pt: its weights do not fit this bc run .RuntimeError: .*size mismatch"):
        fit(_algo("bc", data), data, steps=8, seed=0, run_dir=tmp_path, progress=False)


def test_a_run_from_before_a_config_field_existed_resumes_with_that_fields_default(data, tmp_path):
    fit(_algo("bc", data), data, steps=4, seed=0, run_dir=tmp_path, progress=False)
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    config = json.loads(payload["config"])
    default_lr = config.pop("lr")                     # as if "lr" had been added to the config later
    payload["config"] = json.dumps(config, sort_keys=True)
    torch.save(payload, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="was trained with config"):   # another value is still refused
        fit(_algo("bc", data, lr=default_lr * 2), data, steps=8, seed=0, run_dir=tmp_path, progress=False)
    resumed = fit(_algo("bc", data), data, steps=8, seed=0, run_dir=tmp_path, progress=False)
    assert resumed.resumed_from == 4

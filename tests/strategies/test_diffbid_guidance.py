"""DiffBid after training: objectives by training-free guidance, decision-time search, strength=auto,
the plan evaluator and the commands, through the ``diffbid:`` spec and on a tiny checkpoint."""

import json
import math

import numpy as np
import pytest

from aigb.strategies.diffbid import DIFFBID_OPTIONS, GUIDANCE_PRESETS, SELECTIONS, parse_diffbid_spec
from aigb.types import ConfigError, MarketConfig


def test_guidance_and_search_options_parse():
    path, options = parse_diffbid_spec("b.pt?guide=util:0.95, cpa:0.9&preset=ugd&strength=0.1&gamma=0.01&iters=3&recur=2"
                                       "&clip=1&n=16&select=plan")
    assert options == {"guide": "util:0.95,cpa:0.9", "preset": "ugd", "strength": 0.1, "gamma": 0.01, "n_iter": 3,
                       "n_recur": 2, "grad_clip": 1.0, "n_candidates": 16, "select": "plan"}
    assert parse_diffbid_spec("b.pt?guide=cpa:0.9&strength=auto")[1]["strength"] == "auto"
    assert parse_diffbid_spec("b.pt?guide=cap:0.5@24&preset=mpgd&mu=0.05")[1] == {"guide": "cap:0.5@24", "preset": "mpgd", "mu": 0.05}
    assert {"guide", "preset", "strength", "rho", "mu", "gamma", "iters", "recur", "clip", "n", "select", "evaluator"} <= set(DIFFBID_OPTIONS)


@pytest.mark.parametrize("text, message", [
    ("b.pt?guide=cost:1", "option guide: cannot use 'cost:1' \\(unknown term 'cost'"),
    ("b.pt?guide=cap:0.5", "option guide: .*needs a tick"),
    ("b.pt?guide=cpa:1&preset=dpm", "option preset: .*must be one of mpgd, dps"),
    ("b.pt?guide=cpa:1&strength=-1", "option strength: .*must be >= 0"),
    ("b.pt?guide=cpa:1&strength=high", "option strength: cannot use 'high'"),
    ("b.pt?strength=0.1", "option strength steers toward an objective; give one with guide="),
    ("b.pt?mu=0.1", "option mu steers"),
    ("b.pt?guide=cpa:1&strength=auto&mu=0.1", "option mu: strength=auto tunes"),
    ("b.pt?guide=cpa:1&iters=-1", "option iters"),
    ("b.pt?guide=cpa:1&recur=0", "option recur"),
    ("b.pt?guide=cpa:1&clip=0", "option clip: .*must be > 0"),
    ("b.pt?n=0", "option n: .*>= 1"),
    ("b.pt?n=2.5", "option n"),
    ("b.pt?select=plan", "option select ranks candidate plans; it needs n >= 2"),
    ("b.pt?n=4&select=best", "option select: .*must be one of evaluator, plan, objective"),
    ("b.pt?n=4&select=objective", "'objective' needs guide="),
    ("b.pt?evaluator=e.pt", "option evaluator ranks candidate plans"),
])
def test_bad_guidance_options_are_named(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_diffbid_spec(text)


# ------------------------------------------------------------------------------ with torch

torch = pytest.importorskip("torch")

from aigb.diffusion import PRESETS, TFGConfig  # noqa: E402
from aigb.strategies.diffbid import guidance_config  # noqa: E402

SMALL = MarketConfig(n_pv=3000, preset="random")
PLAY = MarketConfig(n_pv=2000, n_advertisers=12)                    # 48 ticks, like the planner's days
# "steps": the tiny run trains the first updates of a default-length schedule, at the full learning
# rate (a schedule of its own 20 updates would decay to 10 % and leave a denoiser that DPS barely moves).
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16, "diffusion_steps": 20, "sampling_steps": 4,
        "idm_hidden_dims": (32, 32), "warmup_steps": 10, "steps": 15_000}


def test_presets_and_strengths_map_to_tfg_configs():
    assert set(GUIDANCE_PRESETS) == set(PRESETS) | {"tfg"}
    from aigb.algos.diffbid import SELECTIONS as PLANNER_SELECTIONS

    assert SELECTIONS == PLANNER_SELECTIONS
    g = {"guide": "cpa:0.9"}
    assert guidance_config({}) is None
    assert guidance_config({**g, "strength": 0.05}) == PRESETS["mpgd"](0.05)                 # mpgd is the default
    assert guidance_config({**g, "preset": "dps", "strength": 0.05}) == PRESETS["dps"](0.05)
    assert guidance_config({**g, "preset": "freedom", "strength": 0.05}) == PRESETS["freedom"](0.05)
    assert guidance_config({**g, "preset": "lgd", "strength": 0.05}) == PRESETS["lgd"](0.05, 0.001)
    assert guidance_config({**g, "preset": "ugd", "strength": 0.05, "n_iter": 3}) == PRESETS["ugd"](0.05, 0.05, n_iter=3)
    assert guidance_config({**g, "preset": "tfg", "strength": 0.1, "gamma": 0.01}) == TFGConfig(rho=0.1, mu=0.1, gamma=0.01, eps_bsz=4)
    assert guidance_config({**g, "mu": 0.2, "grad_clip": 1.0}) == TFGConfig(mu=0.2, grad_clip=1.0)
    assert not guidance_config({**g, "strength": 0.0}).active
    tuned = {"rho": 0.0, "mu": 0.08, "gamma": 0.0, "n_iter": 1, "n_recur": 1, "eps_bsz": 1, "rho_schedule": "increase",
             "mu_schedule": "increase", "gamma_schedule": "decrease", "grad_clip": None}
    assert guidance_config({**g, "strength": "auto"}, tuned) == TFGConfig(mu=0.08)
    assert guidance_config(g, tuned) == TFGConfig(mu=0.08)                                  # no strength: auto
    with pytest.raises(ValueError, match="needs the stored tuning"):
        guidance_config(g)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny diffbid checkpoint (a few updates: the tests need its plumbing, not its skill) and its data."""
    from aigb.data.generate import generate_dataset
    from aigb.workflows.training import train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = tmp_path_factory.mktemp("data")
        generate_dataset(data, periods=2, seed=5, market=SMALL, progress=False)
        run = tmp_path_factory.mktemp("run")
        train("diffbid", data, run_dir=run, steps=20, batch_size=16, seed=1, overrides=TINY, validation=None,
              progress=False, device="cpu")
    finally:
        torch.set_num_threads(before)
    return run / "best.pt", data


def played(spec, seed=3):
    """The plans a spec's strategy makes over one campaign of the small market."""
    from aigb.strategies.check import play_bids
    from aigb.strategies.registry import strategy_factory

    strategy = strategy_factory(spec)(PLAY)
    play_bids(strategy, PLAY, 0, 1, seed)
    return strategy


def test_zero_strength_is_plain_diffbid_bit_for_bit_through_the_strategy(tiny):
    ckpt, _ = tiny
    plain = played(f"diffbid:{ckpt}?steps=3&device=cpu")
    for extra in ("guide=cpa:0.9&strength=0", "guide=cap:0.5@24,util:0.9&preset=ugd&strength=0&recur=3&iters=2",
                  "guide=smooth&preset=dps&rho=0"):
        zero = played(f"diffbid:{ckpt}?steps=3&device=cpu&{extra}")
        assert len(zero.plans) == len(plain.plans) == PLAY.n_ticks
        assert [p.action for p in zero.plans] == [p.action for p in plain.plans]
        assert all(np.array_equal(a.unit, b.unit) for a, b in zip(zero.plans, plain.plans))


@pytest.mark.parametrize("extra", ["preset=mpgd&strength=0.5", "preset=dps&strength=0.2", "preset=tfg&strength=0.1&recur=2"])
def test_guided_plans_keep_the_realised_prefix(tiny, extra):
    ckpt, _ = tiny
    plain = played(f"diffbid:{ckpt}?steps=3&device=cpu")
    guided = played(f"diffbid:{ckpt}?steps=3&device=cpu&guide=cpa:0.5,cap:0.3@24&{extra}")
    # Both strategies saw the same campaign; each plan's rows 0..t are the realised states it planned from.
    for step in guided.plans:
        t = step.tick
        realised = guided.planner.plan_scaler.to_unit(guided.planner.view.plan(np.stack(guided._states[: t + 1])))
        np.testing.assert_array_equal(step.unit[: t + 1], realised)
    assert not np.array_equal(guided.plans[0].unit, plain.plans[0].unit)
    np.testing.assert_array_equal(guided.plans[0].unit[:1], plain.plans[0].unit[:1])


def planned_spend(planner, states, guide, t, seeds=range(6)):
    """Mean planned budget share spent over the day, as the objective reads it, at tick t."""
    from aigb.algos.plan_objectives import PlanObjective

    reader = PlanObjective(guide, planner.channels, planner.plan_scaler, planner.n_ticks)
    out = []
    for s in seeds:
        step = planner.plan(states[: t + 1], seed=s)
        b, _ = reader.quantities(torch.from_numpy(step.unit)[None], tick=t)
        out.append(1.0 - float(b[0, -1]))
    return float(np.mean(out))


def test_a_spend_objective_makes_plans_spend_less(tiny):
    from aigb.algos.checkpoint import load_algorithm

    ckpt, _ = tiny
    algo = load_algorithm(ckpt)
    states = np.stack(played(f"diffbid:{ckpt}?steps=3&device=cpu")._states)
    guide = "cap:0.05@48"                                     # spend at most 5 % of the budget over the day
    plain = algo.policy(steps=3, device="cpu")
    # The tiny model's plans sit at the x0 clip and the cap's gradient is spread over 48 ticks, so it
    # takes large strengths here (a planner trained 600 steps on 40 periods responds from ~0.1).
    for tfg in (PRESETS["mpgd"](5.0), PRESETS["dps"](5.0)):
        guided = algo.policy(steps=3, device="cpu", guide=guide, tfg=tfg)
        for t in (0, 20):
            assert planned_spend(guided, states, guide, t) < planned_spend(plain, states, guide, t) - 0.01


def test_search_of_one_candidate_is_plain_sampling(tiny):
    from aigb.algos.checkpoint import load_algorithm

    ckpt, _ = tiny
    algo = load_algorithm(ckpt)
    states = np.stack(played(f"diffbid:{ckpt}?steps=3&device=cpu")._states)
    plain = algo.policy(steps=3, device="cpu")
    one = algo.policy(steps=3, device="cpu", n_candidates=1, select="plan")
    for t in (0, 17, 47):
        a, b = plain.plan(states[: t + 1], seed=9), one.plan(states[: t + 1], seed=9)
        assert a.action == b.action and np.array_equal(a.unit, b.unit) and b.candidate == 0
    assert np.array_equal(played(f"diffbid:{ckpt}?steps=3&device=cpu&n=1").plans[5].unit,
                          played(f"diffbid:{ckpt}?steps=3&device=cpu").plans[5].unit)


def test_search_keeps_the_best_scoring_candidate(tiny, monkeypatch):
    from aigb.algos.checkpoint import load_algorithm

    ckpt, _ = tiny
    algo = load_algorithm(ckpt)
    states = np.stack(played(f"diffbid:{ckpt}?steps=3&device=cpu")._states)
    for select, guide in (("plan", None), ("objective", "cpa:0.8,cap:0.4@24"), ("plan", "util:0.9")):
        planner = algo.policy(steps=3, device="cpu", n_candidates=5, select=select, guide=guide,
                              tfg=None if guide is None else PRESETS["mpgd"](0.1))
        seen = {}
        score = planner._candidate_scores

        def spy(x0, t, context, score=score):
            seen["x0"], seen["scores"] = x0.clone(), score(x0, t, context)
            return seen["scores"]

        monkeypatch.setattr(planner, "_candidate_scores", spy)
        step = planner.plan(states[:13], seed=4)
        assert seen["x0"].shape == (5, 49, 7)
        k = int(torch.argmax(seen["scores"]))
        assert step.candidate == k and np.array_equal(step.unit, seen["x0"][k].numpy())
        assert torch.equal(seen["x0"][:, :13], seen["x0"][:1, :13].expand(5, -1, -1))      # one realised prefix
        assert len({tuple(x.flatten().tolist()) for x in seen["x0"]}) == 5                  # distinct candidates


def test_strength_auto_reads_the_stored_tuning_and_names_the_command(tiny, tmp_path):
    import shutil

    from aigb.strategies.diffbid import read_tuned_strengths, tuned_strengths_path, write_tuned_strengths
    from aigb.strategies.registry import strategy_factory

    ckpt = tmp_path / "best.pt"
    shutil.copy(tiny[0], ckpt)
    spec = f"diffbid:{ckpt}?guide=cpa:0.9,cap:0.5@24&steps=3&strength=auto"
    with pytest.raises(ConfigError, match="strength=auto: no tuned strengths.*run `aigb diffbid tune-guidance"):
        strategy_factory(spec)
    _, options = parse_diffbid_spec(spec[len("diffbid:"):])
    file = write_tuned_strengths(str(ckpt), options, {"config": {**TFGConfig(mu=0.07).__dict__}})
    assert file.parent == tmp_path / "best.guidance" and not list(tmp_path.glob("**/*.tmp*"))
    # The key ignores the order of the terms, the strengths and the device; not the other options.
    same = parse_diffbid_spec(f"{ckpt}?guide=cap:0.5@24,cpa:0.9&steps=3&device=cpu&strength=auto")[1]
    assert tuned_strengths_path(str(ckpt), same) == file
    assert tuned_strengths_path(str(ckpt), {**options, "steps": 4}) != file
    assert read_tuned_strengths(str(ckpt), same)["config"]["mu"] == 0.07
    strategy = strategy_factory(spec)(PLAY)
    assert strategy.planner.tfg == TFGConfig(mu=0.07)
    assert strategy_factory(spec.replace("&strength=auto", ""))(PLAY).planner.tfg == TFGConfig(mu=0.07)   # auto by default
    with open(ckpt, "ab") as f:                                                         # a retrained checkpoint
        f.write(b"\0")
    with pytest.raises(ConfigError, match="no tuned strengths"):
        strategy_factory(spec)


def test_tune_guidance_searches_and_stores_what_auto_serves(tiny, tmp_path):
    import shutil

    from aigb.workflows.guidance import tune_guidance
    from aigb.strategies.registry import strategy_factory

    ckpt = tmp_path / "best.pt"
    shutil.copy(tiny[0], ckpt)
    with pytest.raises(ConfigError, match="option mu: the search sets the strengths"):
        tune_guidance(f"diffbid:{ckpt}?guide=cpa:0.9&mu=0.1", slots=(0,), market=PLAY, rounds=1, progress=False)
    entry = tune_guidance(f"diffbid:{ckpt}?guide=cpa:0.9&steps=2", slots=(1,), market=PLAY, rounds=1, progress=False)
    configs = [h["config"] for h in entry["history"]]
    assert [c["mu"] for c in configs] == [0.0, 0.05, 0.1]                   # unguided, the start, one doubling
    assert all(math.isfinite(h["criterion"]) for h in entry["history"])
    assert entry["criterion"] == max(h["criterion"] for h in entry["history"])
    stored = json.loads(open(entry["file"]).read())
    assert stored["config"] == entry["config"] and stored["key"]["options"]["guide"] == "cpa:0.9"
    served = strategy_factory(f"diffbid:{ckpt}?guide=cpa:0.9&steps=2&strength=auto")(PLAY)
    assert served.planner.tfg == TFGConfig(**entry["config"])


def test_plan_evaluator_fits_saves_and_ranks_a_search(tiny, tmp_path):
    import shutil

    from aigb.algos.plan_evaluator import PlanEvaluator, PlanEvaluatorConfig, fit_plan_evaluator
    from aigb.data.dataset import TrajectoryDataset
    from aigb.strategies.registry import strategy_factory

    ckpt = tmp_path / "best.pt"
    shutil.copy(tiny[0], ckpt)
    spec = f"diffbid:{ckpt}?steps=2&n=3&device=cpu"
    with pytest.raises(ConfigError, match="ranks candidates by the plan evaluator, none at .*aigb diffbid fit-evaluator"):
        strategy_factory(spec)
    data = TrajectoryDataset.load(tiny[1])
    evaluator = fit_plan_evaluator(data, PlanEvaluatorConfig(steps=30, batch_size=64), seed=2)
    again = fit_plan_evaluator(data, PlanEvaluatorConfig(steps=30, batch_size=64), seed=2)
    first, second = evaluator.net.state_dict(), again.net.state_dict()
    assert len(first) > 0 and first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert {"holdout_r2", "holdout_rank_mse", "train_campaigns"} <= set(evaluator.metrics)
    evaluator.save(tmp_path / "evaluator.pt")
    loaded = PlanEvaluator.load(tmp_path / "evaluator.pt", channels=evaluator.channels)
    strategy = strategy_factory(spec)(PLAY)
    assert strategy.planner.select == "evaluator" and strategy.planner.n_candidates == 3
    from aigb.strategies.check import play_bids

    play_bids(strategy, PLAY, 0, 1, 3)
    assert len(strategy.plans) == 48 and {p.candidate for p in strategy.plans} <= {0, 1, 2}
    x = torch.from_numpy(np.stack([p.plan for p in strategy.plans[:4]]))                 # (4, 49, 7) plan units
    ctx = torch.from_numpy(strategy.planner.view.context(np.stack(strategy._states[:1])))
    r1, r2 = evaluator.predict_rank(x, 10, ctx), loaded.predict_rank(x, 10, ctx)
    assert torch.equal(r1, r2) and ((r1 >= 0) & (r1 <= 1)).all()
    eff = loaded.predict_efficiency(x, 10, ctx)
    assert (eff >= loaded.efficiency_levels[0]).all() and (eff <= loaded.efficiency_levels[-1]).all()
    with pytest.raises(ValueError, match="plan channels"):
        PlanEvaluator.load(tmp_path / "evaluator.pt", channels=("a", "b"))


def test_commands_fit_evaluator_and_objective_check(tiny, tmp_path, capsys):
    from aigb.cli import main
    from aigb.eval.evaluate import evaluate

    assert main(["diffbid", "fit-evaluator", "--data", str(tiny[1]), "--out", str(tmp_path / "ev.pt"), "--steps", "20", "--quiet"]) == 0
    assert (tmp_path / "ev.pt").is_file() and "held-out rank R^2" in capsys.readouterr().out
    evaluate(["fixed", "fixed:rate=2"], periods=1, slots=[0, 3], market=MarketConfig(n_pv=3000), progress=False,
             out_dir=tmp_path / "res")
    assert main(["diffbid", "objective-check", str(tmp_path / "res"), "--guide", "cap:0.5@24,cpa:1"]) == 0
    out = capsys.readouterr().out
    assert "cap:0.5@24 met" in out and "fixed:rate=2" in out
    assert main(["diffbid", "objective-check", str(tmp_path / "res"), "--guide", "cap:0.5"]) == 2

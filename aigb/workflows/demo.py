"""``aigb demo``: the whole pipeline at a laptop's size, in stages that resume.

    data      simulate periods of the exploring market into a trajectory dataset (aigb generate)
    train     fit each learned algorithm of ``DEMO_ALGOS`` at its demo size (aigb train), two at a
              time, validating on a few campaigns and keeping the best checkpoint
    evaluate  the rule strategies, the hindsight oracle and every trained checkpoint on the same
              held-out campaigns (aigb evaluate)
    report    tables and figures from the evaluation (aigb report), and the leaderboard printed

Everything goes under ``out_dir`` (``data/``, ``runs/ALGO/``, ``eval/``, ``report/``). A stage that
finishes writes ``stages/NAME.json`` holding its settings and outcome; a re-run skips every stage
whose marker has the same settings, and refuses one whose settings differ (another ``--size`` in the
same directory), naming it. Within a stage the commands resume on their own: generation skips
finished periods and training continues from ``last.pt``. ``--backend ray`` runs the periods, the
training runs and the evaluation's campaigns as Ray tasks (``aigb.backends``); the outcome is the same.

The sizes (``SIZES``) are small but honest: the default market of 500,000 PVs and 48 advertisers
throughout, real algorithm settings with fewer updates (and a smaller batch where that keeps an
update cheap), and validation on 4 campaigns instead of 16. They are named in the README, with
what each algorithm reaches; the full benchmark is the README's recipe.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from aigb.backends import Backend, TaskRun, add_backend_args, backend_from_args
from aigb.files import atomic_output, claim_dir
from aigb.types import ConfigError, MarketConfig

__all__ = ["AlgoRun", "DemoSize", "DEMO_ALGOS", "SIZES", "DemoResult", "run_demo", "run_stage", "register"]


@dataclass(frozen=True)
class AlgoRun:
    """One algorithm at demo size."""

    algo: str
    """Registered algorithm name (``aigb.algos.registry.ALGORITHMS``)."""
    steps: int
    """Updates (the full default is in the algorithm's config)."""
    batch_size: int | None = None
    """Batch size; None keeps the algorithm's default."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields changed for the demo, beside steps and batch size."""


DEMO_ALGOS: tuple[AlgoRun, ...] = (
    # Longest first, so the two training workers finish together; each is about a minute of one
    # core (CPU time measured on this machine), validations included, CQL about two and a half:
    # at 2,000 updates it had not learned yet (validation 0.6 -> 1.6), at 5,000 it has (10.3 -> 25.7).
    AlgoRun("diffbid", 400, 64, {"warmup_steps": 100}),
    AlgoRun("cql", 5_000, 128),
    AlgoRun("dt", 1_000, 32, {"warmup_steps": 100}),
    AlgoRun("iql", 2_000, 256),
    AlgoRun("bc", 1_000, 512),
)
"""The demo's algorithms; one missing from the registry is skipped with the reason printed."""


@dataclass(frozen=True)
class DemoSize:
    """How big each stage is."""

    name: str
    """Shown in the output and kept in the stage markers."""
    n_pv: int
    """PVs per period, for data, validation and evaluation alike."""
    data_periods: int
    """Dataset periods (each 48 campaign-days of 48 ticks)."""
    step_scale: float
    """Multiplies every ``AlgoRun.steps``."""
    validation_slots: tuple[int, ...]
    """Advertiser slots of the validation period (``aigb.workflows.training.ValidationSet``)."""
    validations: int
    """Validations per training run (early stopping keeps the best)."""
    eval_periods: int
    """Evaluation periods (held out: numbered from 1,000,000)."""
    eval_slots: int
    """Advertiser slots per evaluation period, spread over the 48."""
    workers: int = 2
    """Processes for generation, training and evaluation."""

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


SIZES: dict[str, DemoSize] = {
    "demo": DemoSize("demo", n_pv=500_000, data_periods=24, step_scale=1.0, validation_slots=(3, 16, 29, 42),
                     validations=2, eval_periods=1, eval_slots=16),
    # For tests: a small market, a few dozen updates; shows that every stage runs, not what learns.
    "tiny": DemoSize("tiny", n_pv=20_000, data_periods=2, step_scale=0.02, validation_slots=(5,), validations=1,
                     eval_periods=1, eval_slots=2),
}

BASELINE = "fixed"
RULES = ("fixed", "pid", "onlinelp", "oracle")


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` did."""

    out_dir: Path
    report: Path
    """report.html."""
    leaderboard: str
    """The printed leaderboard."""
    skipped: tuple[str, ...]
    """Algorithms left out, with the reason."""
    ran: tuple[str, ...]
    """Stages run by this call (the others were done before)."""
    seconds: float


def run_stage(out_dir: Path, name: str, settings: dict, run: Callable[[], dict], say=print) -> tuple[dict, bool]:
    """Run a stage once: ``(outcome, ran)``. A marker ``stages/NAME.json`` with the same settings
    means the stage is done and ``run`` is not called; other settings are refused."""
    settings = json.loads(json.dumps(settings))
    marker = Path(out_dir) / "stages" / f"{name}.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done["settings"] != settings:
            raise ConfigError(f"{out_dir}: stage {name!r} was run with other settings ({marker}); "
                              f"use another --out, or delete the directory to start again")
        say(f"{name}: done in an earlier run ({done['seconds']:.0f} s), skipped")
        return done["outcome"], False
    start = time.perf_counter()
    outcome = json.loads(json.dumps(run()))
    marker.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(marker) as tmp:
        tmp.write_text(json.dumps({"settings": settings, "outcome": outcome,
                                   "seconds": time.perf_counter() - start}, indent=2) + "\n")
    return outcome, True


def _markets(size: DemoSize) -> tuple[MarketConfig, MarketConfig]:
    """(training market: the sparse regime with random campaigns, evaluation market: sparse)."""
    from aigb.data.generate import DEFAULT_MARKET

    return replace(DEFAULT_MARKET, n_pv=size.n_pv), MarketConfig(n_pv=size.n_pv)


def _plan(size: DemoSize, algos: tuple[AlgoRun, ...]) -> tuple[list[AlgoRun], list[str]]:
    """The runs at this size and the algorithms skipped, with why."""
    from aigb.algos.registry import ALGORITHMS

    runs, skipped = [], []
    for a in algos:
        if a.algo not in ALGORITHMS:
            skipped.append(f"{a.algo}: not in this installation's algorithms ({', '.join(ALGORITHMS)})")
            continue
        runs.append(replace(a, steps=max(10, round(a.steps * size.step_scale))))
    return runs, skipped


def _train_one(run: AlgoRun, data_dir: str, run_dir: str, validation, eval_every: int) -> dict:
    """One training run in a worker process (one torch thread: two run side by side on 2 cores)."""
    import torch

    from aigb.workflows.training import train

    torch.set_num_threads(1)
    start = time.perf_counter()
    result = train(run.algo, data_dir, run_dir=run_dir, steps=run.steps, batch_size=run.batch_size,
                   overrides=run.overrides, validation=validation, eval_every=eval_every, patience=None,
                   progress=False, device="cpu")
    evals = [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    return {"algo": run.algo, "steps": result.steps_done, "best_score": result.best_score, "best_step": result.best_step,
            "validation": [[e["step"], e["score"]] for e in evals], "seconds": time.perf_counter() - start}


def _steps_done(run_dir: Path) -> int:
    """The last step ``metrics.jsonl`` records (progress of a run in another process)."""
    path = run_dir / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return 0


def _train_all(out: Path, runs: list[AlgoRun], size: DemoSize, progress: bool, say,
               backend: Backend = Backend()) -> tuple[dict, list[str]]:
    """The train stages: every run not done yet, ``size.workers`` at a time, one bar over all their
    updates. Returns (algorithm -> outcome, in ``runs`` order; the stages run now)."""
    from aigb.workflows.training import ValidationSet

    _, eval_market = _markets(size)
    validation = ValidationSet(periods=1, slots=size.validation_slots, market=eval_market)
    settings = {r.algo: {"run": asdict(r), "size": size.to_dict()} for r in runs}
    todo = [r for r in runs if not (out / "stages" / f"train-{r.algo}.json").is_file()]
    outcomes = {r.algo: run_stage(out, f"train-{r.algo}", settings[r.algo], _nothing, say)[0]
                for r in runs if r not in todo}
    if todo:
        say(f"train: {', '.join(f'{r.algo} ({r.steps:,} updates)' for r in todo)}; {size.workers} at a time, "
            f"validating {size.validations}x on {len(size.validation_slots)} campaign(s)")
        calls = {r.algo: _StageCall(run_stage, out, f"train-{r.algo}", settings[r.algo],
                                    _StageCall(_train_one, r, str(out / "data"), str(out / "runs" / r.algo), validation,
                                               math.ceil(r.steps / size.validations)), _quiet) for r in todo}
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(r.steps for r in todo), desc="train", unit="update", disable=not progress)
        if size.workers == 1 and backend.kind == "local":   # here, one after the other
            for r in todo:
                bar.set_postfix_str(f"{r.algo} ({r.steps} updates)", refresh=True)
                outcomes[r.algo] = calls[r.algo]()[0]
                bar.update(r.steps)
        else:   # local worker processes, or Ray tasks
            with TaskRun(_call, [calls[r.algo] for r in todo], backend=backend, workers=size.workers) as run:
                while run.pending:
                    outcomes.update({outcome["algo"]: outcome for outcome, _ in run.wait(timeout=0.5)})
                    # Workers train quietly; their progress is the last step each metrics.jsonl records.
                    steps = {r.algo: r.steps if r.algo in outcomes else min(r.steps, _steps_done(out / "runs" / r.algo))
                             for r in todo}
                    bar.n = sum(steps.values())
                    bar.set_postfix_str(", ".join(f"{r.algo} {steps[r.algo]}/{r.steps}" for r in todo), refresh=True)
            bar.n = bar.total
            bar.set_postfix_str("all done", refresh=True)
        bar.close()
    return {r.algo: outcomes[r.algo] for r in runs}, [f"train-{r.algo}" for r in todo]


class _StageCall:
    """A picklable ``run`` for ``run_stage`` in a worker: ``fn(*args)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __call__(self):
        return self.fn(*self.args)


def _call(call: "_StageCall"):
    """What a worker process or Ray task runs: the call it is handed."""
    return call()


def _quiet(_message: str) -> None:
    pass


def _nothing() -> dict:
    raise AssertionError("a finished stage has a marker: run_stage does not call this")


def _validation_reference(size: DemoSize) -> dict:
    """The fixed rule's validation score: what the learning curves are read against."""
    from aigb.eval.rollout import rollout
    from aigb.workflows.training import VALIDATION_FIRST_PERIOD, VALIDATION_SEED
    from aigb.strategies.registry import strategy_factory

    _, market = _markets(size)
    scores = [rollout(strategy_factory("fixed")(market), "fixed", market, VALIDATION_SEED, VALIDATION_FIRST_PERIOD, a)
              ["expected_score"] for a in size.validation_slots]
    return {"fixed": sum(scores) / len(scores)}


def _learning_lines(outcomes: dict) -> list[str]:
    lines = []
    for algo, o in outcomes.items():
        curve = " -> ".join(f"{score:.1f}" for _, score in o["validation"])
        lines.append(f"  {algo:<8} {o['steps']:>6,} updates  validation expected score {curve or 'n/a'}"
                     + (f"  (best {o['best_score']:.2f} at step {o['best_step']:,})" if o["best_score"] is not None else ""))
    return lines


def run_demo(out_dir="demo", *, size: str | DemoSize = "demo", algos: tuple[AlgoRun, ...] = DEMO_ALGOS,
             progress: bool = True, say=print, backend: Backend | str = "local", force: bool = False) -> DemoResult:
    """Run (or resume) the demo in ``out_dir``; see the module docstring.

    backend: 'ray' (or an ``aigb.backends.Backend``) runs generation, training and evaluation as
    Ray tasks on one Ray connection; the stages' settings, and so their markers, are the same."""
    backend = Backend.of(backend)
    with backend.session():
        return _run_demo(out_dir, size, algos, progress, say, backend, force)


def _run_demo(out_dir, size, algos, progress, say, backend: Backend, force: bool) -> DemoResult:
    from aigb.data.generate import generate_dataset
    from aigb.eval.evaluate import evaluate
    from aigb.report import build_report
    from aigb.strategies.rules import default_lp_prior

    size = SIZES[size] if isinstance(size, str) else size
    if not isinstance(size, DemoSize):
        raise ConfigError(f"size: choose one of {', '.join(SIZES)}")
    out = claim_dir(out_dir, "demo", force=force, writes=("stages", "data", "runs", "eval", "report"))
    start = time.perf_counter()
    train_market, eval_market = _markets(size)
    runs, skipped = _plan(size, algos)
    ran = []
    say(f"aigb demo ({size.name} size) in {out}: data -> train {', '.join(r.algo for r in runs)} -> evaluate -> report")
    for s in skipped:
        say(f"skipped {s}")

    def data() -> dict:
        say(f"data: simulating {size.data_periods} periods of the exploring market ({size.n_pv:,} PVs, "
            f"48 advertisers, random budgets and CPAs) into {out / 'data'}")
        rep = generate_dataset(out / "data", size.data_periods, 0, market=train_market, workers=size.workers,
                               progress=progress, backend=backend)
        return {"periods": size.data_periods, "campaigns": size.data_periods * train_market.n_advertisers,
                "mean_behaviour_score": rep.mean_score}
    outcome, did = run_stage(out, "data", {"size": size.to_dict(), "market": train_market.to_dict()}, data, say)
    ran += ["data"] if did else []

    trained, did_train = _train_all(out, runs, size, progress, say, backend)
    ran += did_train
    reference, did = run_stage(out, "validation-reference", {"size": size.to_dict()},
                               lambda: _validation_reference(size), say)
    ran += ["validation-reference"] if did else []
    say(f"learning (validation: expected-conversion score per campaign on {len(size.validation_slots)} held-out "
        f"campaigns, where the fixed rule scores {reference['fixed']:.1f}):")
    for line in _learning_lines(trained):
        say(line)

    specs = list(RULES) + [f"{r.algo}:{out / 'runs' / r.algo / 'best.pt'}" for r in runs]

    def evaluation() -> dict:
        say(f"evaluate: {len(specs)} strategies on {size.eval_periods * size.eval_slots} held-out campaigns "
            f"({size.eval_periods} period(s) x {size.eval_slots} advertisers, {size.n_pv:,} PVs), paired; "
            f"first the OnlineLP prior (fitted once per market, then cached)")
        default_lp_prior(eval_market)
        res = evaluate(specs, periods=size.eval_periods, slots=size.eval_slots, market=eval_market,
                       workers=size.workers, out_dir=out / "eval", baseline=BASELINE, progress=progress,
                       backend=backend)
        return {"rows": res.table.num_rows, "seconds": res.wall_s}
    _, did = run_stage(out, "evaluate", {"size": size.to_dict(), "specs": specs}, evaluation, say)
    ran += ["evaluate"] if did else []

    def report() -> dict:
        say(f"report: leaderboard and figures from {out / 'eval'} into {out / 'report'}")
        from aigb.report.build import FIGURES

        from tqdm.auto import tqdm

        bar = tqdm(total=len(FIGURES), desc="report", unit="figure", disable=not progress)

        def drawing(stem: str) -> None:
            bar.set_postfix_str(stem)
            bar.update(1)
        rep = build_report([out / "eval"], out / "report", baseline=BASELINE, progress=drawing)
        bar.close()
        return {"figures": [p.name for p in rep.figures], "notes": list(rep.notes)}
    _, did = run_stage(out, "report", {"size": size.to_dict(), "specs": specs}, report, say)
    ran += ["report"] if did else []
    text = (out / "report" / "leaderboard.txt").read_text().rstrip("\n")
    seconds = time.perf_counter() - start
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    say("")
    say(f"leaderboard ({size.eval_periods * size.eval_slots} held-out campaigns per strategy, paired vs {BASELINE}):")
    say(text)
    say("")
    say(f"report: {out / 'report' / 'report.html'}")
    say(f"{seconds:.0f} s wall, {cpu:.0f} s CPU (load average {os.getloadavg()[2]:.1f} over the last 15 min); "
        f"stages run now: {', '.join(ran) or 'none, all were done before'}")
    return DemoResult(out, out / "report" / "report.html", text, tuple(skipped), tuple(ran), seconds)


def register(subparsers) -> None:
    """Add the ``demo`` command."""
    p = subparsers.add_parser(
        "demo", help="the whole pipeline at demo size: data, training, evaluation, report (resumable)",
        description="Generate a small dataset, train demo-sized learned strategies, evaluate them with the rule "
                    "strategies and the hindsight oracle on held-out campaigns, and write the report. Re-running "
                    "skips finished stages.")
    p.add_argument("--out", default="demo", help="directory for everything (default %(default)s)")
    p.add_argument("--size", default="demo", choices=sorted(SIZES), help="demo (default) or tiny (seconds, for tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_backend_args(p, "data periods, training runs and evaluation campaigns")
    p.add_argument("--force", action="store_true", help="write into an --out that another aigb command wrote (refused otherwise)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    run_demo(args.out, size=args.size, progress=not args.quiet, backend=backend_from_args(args), force=args.force)
    return 0

"""Tuning DiffBid's guidance strengths for an objective (``strength=auto``):

    aigb diffbid tune-guidance 'diffbid:runs/diffbid/best.pt?guide=cpa:0.9'   # then ...&strength=auto

strength=auto is an explicit command, not a search run on first use: a search plays the
validation campaigns once per candidate strength (minutes), which inside ``aigb evaluate`` would
be a hidden cost, paid again by every worker process that builds the strategy, racing to write
the same file. Run once, its result is a small JSON file beside the checkpoint
(``aigb.strategies.diffbid.tuned_strengths_path``), written atomically and keyed by the
checkpoint's bytes and the spec's options, which every later ``strength=auto`` reads; a retrained
checkpoint or other options find no tuning and say which command to run.

The search is TFG's beam search (``aigb.diffusion.guidance.beam_search_strengths``: x2 on rho and
mu, x10 on gamma per round, the best 2 kept, 6 rounds) over the chosen preset's strengths, from a
planning-scale start (``START_STRENGTH``; research/diffbid_anchors.md §2.7: planners use strengths
~25x smaller than images). Each candidate plays the validation campaigns of ``aigb train``
(``aigb.workflows.training``: periods of the validation seed, disjoint from training and evaluation)
and is scored by

    criterion = sum_i expected_score_i * f_i / sum_i oracle_score_i

f_i the objective's f (``plan_objectives``) on campaign i's realised day, with the expected
conversions: the share of the hindsight bound reached if the objective were part of the contract,
a multiplicative penalty like the score's own CPA penalty (for ``cpa:1`` f is that penalty).
Zero strength (plain DiffBid) is scored too, and kept when nothing beats it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

from aigb.workflows.training import VALIDATION_SEED, ValidationSet
from aigb.seeding import VALIDATION_FIRST_PERIOD
from aigb.sim.population import market_population
from aigb.types import MARKET_VERSIONS, ConfigError, MarketConfig

__all__ = ["START_STRENGTH", "tuning_criterion", "tune_guidance"]

START_STRENGTH = 0.05
"""Start of the beam search for rho and mu (gamma starts at TFG's 0.001); six doublings reach 3.2."""


def tuning_criterion(rows: Sequence[dict], terms) -> float:
    """sum(expected_score x f(realised day)) / sum(oracle_score) over completed rows (higher is better)."""
    from aigb.algos.plan_objectives import parse_guide, realised_day, term_log_f

    terms = parse_guide(terms) if isinstance(terms, str) else tuple(terms)
    num = den = 0.0
    for row in rows:
        if row.get("error"):
            raise RuntimeError(f"validation rollout failed: {row['error']}")
        b, v = realised_day(row, expected=True)
        n_ticks = b.shape[0] - 1
        log_f = float(sum(term_log_f(t, b, v, n_ticks) for t in terms)) if terms else 0.0
        num += float(row["expected_score"]) * math.exp(log_f)
        den += float(row["oracle_score"])
    return num / max(den, 1e-12)


def _spec_parts(spec: str) -> tuple[str, dict]:
    from aigb.strategies.diffbid import parse_diffbid_spec

    text = spec[len("diffbid:"):] if spec.startswith("diffbid:") else spec
    path, options = parse_diffbid_spec(text)
    if "guide" not in options:
        raise ConfigError(f"tune-guidance: the spec needs an objective (guide=...), got {spec!r}")
    for key in ("rho", "mu", "gamma"):
        if key in options:
            raise ConfigError(f"tune-guidance: option {key}: the search sets the strengths; leave it out of {spec!r}")
    if options.get("strength", "auto") != "auto":
        raise ConfigError(f"tune-guidance: option strength: the search sets it; leave it out of {spec!r}")
    options.pop("strength", None)
    return path, options


def tune_guidance(spec: str, *, periods: int = 1, slots: Sequence[int] = ValidationSet().slots,
                  market: MarketConfig = MarketConfig(), rounds: int = 6, keep: int = 2,
                  start: float = START_STRENGTH, progress: bool = True, write: bool = True) -> dict:
    """Search the guidance strengths of ``spec`` (``diffbid:PATH?guide=...``) on validation
    campaigns; store and return the tuning entry (its "config" is what strength=auto serves)."""
    from aigb.algos.checkpoint import load_algorithm
    from aigb.eval.batched import play_period
    from aigb.diffusion.guidance import TFGConfig, beam_search_strengths
    from aigb.features import FEATURE_VERSION
    from aigb.strategies.diffbid import DiffBidStrategy, guidance_config, planner_of, write_tuned_strengths

    path, options = _spec_parts(spec)
    if periods < 1 or not slots:
        raise ConfigError("tune-guidance: needs periods >= 1 and at least one slot")
    algo = load_algorithm(path, expected_feature_version=FEATURE_VERSION, market_version=market.version)
    history: list[dict] = []
    began = time.perf_counter()

    def evaluate(config: TFGConfig) -> float:
        t0 = time.perf_counter()
        strategy = DiffBidStrategy(planner_of(algo, path, options, tfg=config), "tune")
        rows = [row for p in range(periods)
                for slot in play_period(("tune",), market, market_population(market), VALIDATION_SEED, VALIDATION_FIRST_PERIOD + p,
                                        slots, {"tune": strategy})
                for row in slot]
        value = tuning_criterion(rows, options["guide"])
        cpa_ok = sum(not (r["realized_cpa"] > r["target_cpa"]) for r in rows) / len(rows)
        history.append({"config": dataclasses.asdict(config), "criterion": value, "cpa_ok_rate": cpa_ok,
                        "seconds": round(time.perf_counter() - t0, 1)})
        if progress:
            print(f"tune-guidance: rho={config.rho:g} mu={config.mu:g} gamma={config.gamma:g} -> criterion {value:.4f} "
                  f"(CPA met on {cpa_ok:.0%}, {time.perf_counter() - t0:.0f} s)", flush=True)
        return value

    zero = guidance_config({**options, "strength": 0.0})
    unguided = evaluate(zero)
    start_config = guidance_config({**options, "strength": start})
    if start_config.gamma > 0:
        start_config = dataclasses.replace(start_config, gamma=0.001)
    found = beam_search_strengths(evaluate, start=start_config, rounds=rounds, keep=keep)
    best, score = (found.best, found.score) if found.score > unguided else (zero, unguided)
    entry = {
        "spec": spec, "config": dataclasses.asdict(best), "criterion": score, "unguided_criterion": unguided,
        "criterion_definition": "sum(expected_score * f(realised day)) / sum(oracle_score) on the validation campaigns",
        "validation": {"seed": VALIDATION_SEED, "first_period": VALIDATION_FIRST_PERIOD, "periods": periods,
                       "slots": list(slots), "market": market.to_dict()},
        "search": {"rounds": rounds, "keep": keep, "start": start}, "history": history,
        "seconds": round(time.perf_counter() - began, 1),
    }
    if write:
        entry["file"] = str(write_tuned_strengths(path, options, entry))
    return entry

"""Strategies by name: spec strings to factories.

A spec is ``NAME`` or ``NAME:ARGUMENTS``:

* rule strategies take ``key=value`` pairs separated by commas: ``fixed:rate=0.9``,
  ``pid:gain=1.5``, ``onlinelp:cap=1.5,prior=PATH`` (``prior=none`` for no prior; by default the
  prior is fitted once per market into the cache directory, ``aigb.strategies.rules``), and
  ``oracle:mode=slots,reference=pid:gain=2`` (``reference`` takes the rest of the spec);
* learned strategies take a checkpoint path: ``iql:runs/iql/best.pt`` calls
  ``aigb.strategies.learned.load_strategy("iql", path)``; DiffBid's path may carry serving
  options, ``diffbid:runs/diffbid/best.pt?w=1.2&return=0.9`` (``aigb.strategies.diffbid``), and a
  Decision Transformer's its return target, ``dt:runs/dt/best.pt?return=0.75&decrement=conversions``
  (``DT_OPTIONS``);
* ``neurips2024:module.path:ClassName`` or ``neurips2024:file.py:ClassName`` wraps a competition
  class (instantiated without arguments) in ``aigb.strategies.neurips2024.CompetitionStrategy``.
  Trust boundary: checking such a spec imports the file or module, i.e. runs its code in this
  process (and in every worker) with the user's permissions.

``strategy_factory(spec)`` checks the spec (names, parameters, paths) without building anything,
so a typo fails before an evaluation starts; the factory it returns builds a fresh strategy per
call. Registrations made at run time (``register``) are seen by worker processes only if they
happen when a module the workers import is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigb.strategies.base import Strategy, StrategyFactory
from aigb.types import ConfigError, MarketConfig

__all__ = ["Param", "UnknownStrategyError", "register", "known_strategies", "parse_spec", "strategy_factory",
           "make_strategy", "describe_strategies", "LEARNED_ALGOS", "DT_OPTIONS", "split_spec_options"]

LEARNED_ALGOS = ("bc", "iql", "cql", "dt", "diffbid", "oil")
_DT_SCALES = ("efficiency", "campaign", "data")   # aigb.algos.dt.TARGET_SCALES, without importing torch here


class UnknownStrategyError(ConfigError):
    """A spec names no registered strategy."""


def _number(text: str) -> float:
    return float(text)


@dataclass(frozen=True)
class Param:
    """One ``key=value`` parameter of a rule strategy."""

    parse: Callable[[str], Any]
    """Turns the text after '=' into the value (raise ValueError on bad text)."""
    default: Any
    """Value when the spec leaves the parameter out."""
    help: str
    """One line for ``describe_strategies``."""
    greedy: bool = False
    """Takes the rest of the spec, commas included (for nested specs); must come last."""


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., Strategy]
    params: dict[str, Param] = field(default_factory=dict)
    help: str = ""
    takes_path: bool = False
    check: Callable[..., Any] | None = None


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, build: Callable[..., Strategy], *, params: dict[str, Param] | None = None,
             help: str = "", takes_path: bool = False, check: Callable[..., Any] | None = None) -> None:
    """Register ``name``. ``build(market, **params)`` builds a strategy, or ``build(market, text)``
    when ``takes_path`` (the spec's text after ``name:`` is handed over as it is). ``check(**params)``
    or ``check(text)``, if given, validates a spec cheaply before anything runs (raise ConfigError)."""
    if not name or ":" in name or "," in name:
        raise ConfigError(f"name: a strategy name must be non-empty without ':' or ',', got {name!r}")
    _REGISTRY[name] = _Entry(build, dict(params or {}), help, takes_path, check)


def known_strategies() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def parse_spec(spec: str) -> tuple[str, dict[str, Any] | str]:
    """``(name, parameters)`` for rule specs, ``(name, text)`` for path-taking ones; raises on any problem."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"strategy: a spec must be a non-empty string, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    entry = _REGISTRY.get(name)
    if entry is None:
        raise UnknownStrategyError(f"strategy: unknown strategy {name!r} (from {spec!r}); known: {', '.join(known_strategies())}")
    if entry.takes_path:
        if not rest:
            raise ConfigError(f"{name}: needs an argument after '{name}:' ({entry.help})")
        return name, rest
    values = {k: p.default for k, p in entry.params.items()}
    given = set()
    while rest:
        item, _, after = rest.partition(",")
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq:
            raise ConfigError(f"{name}: expected key=value, got {item!r} in {spec!r}")
        param = entry.params.get(key)
        if param is None:
            accepted = ", ".join(entry.params) or "none"
            raise ConfigError(f"{name}: unknown parameter {key!r} in {spec!r}; accepted: {accepted}")
        if key in given:
            raise ConfigError(f"{name}: parameter {key!r} given twice in {spec!r}")
        given.add(key)
        if param.greedy:
            text, after = rest.partition("=")[2], ""
        try:
            values[key] = param.parse(text.strip())
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{name}: parameter {key}: cannot use {text!r} ({err})") from None
        rest = after
    return name, values


def strategy_factory(spec: str) -> StrategyFactory:
    """A factory ``market -> Strategy`` for ``spec``, checked now (names, parameters, paths)."""
    name, args = parse_spec(spec)
    entry = _REGISTRY[name]
    if isinstance(args, str):
        if entry.check is not None:
            entry.check(args)

        def factory(market: MarketConfig) -> Strategy:
            return _named(entry.build(market, args), spec)
    else:
        if entry.check is not None:
            entry.check(**args)

        def factory(market: MarketConfig) -> Strategy:
            return _named(entry.build(market, **args), spec)
    factory.spec = spec
    return factory


def make_strategy(spec: str, market: MarketConfig = MarketConfig()) -> Strategy:
    """Build the strategy ``spec`` for ``market``."""
    return strategy_factory(spec)(market)


def describe_strategies() -> str:
    """One line per registered strategy, with its parameters and defaults."""
    lines = []
    for name in known_strategies():
        e = _REGISTRY[name]
        params = ", ".join(f"{k}={p.default}" for k, p in e.params.items())
        lines.append(f"{name}{' [' + params + ']' if params else ''}: {e.help}")
    return "\n".join(lines)


def _named(strategy: Strategy, spec: str) -> Strategy:
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"{spec}: its factory returned {type(strategy).__name__}, not an aigb.strategies.base.Strategy")
    strategy.name = spec
    return strategy


# ------------------------------------------------------------------------------ built-in entries


def _fixed(market, rate):
    from aigb.strategies.rules import FixedRate

    return FixedRate(rate, market_version=market.version)


def _pid(market, gain, rate):
    from aigb.strategies.rules import PIDPacing

    return PIDPacing(gain, rate, market_version=market.version)


def _onlinelp(market, cap, rate, prior):
    from aigb.strategies.rules import LPPrior, OnlineLP, default_lp_prior

    if prior == "none":
        loaded = None
    elif prior == "default":
        loaded = default_lp_prior(market)[0]
    else:
        loaded = LPPrior.load(prior)
    return OnlineLP(loaded, cap=cap, rate=rate, n_pv=market.n_pv, market_version=market.version)


def _check_onlinelp(cap, rate, prior):
    from aigb.strategies.rules import LPPrior, OnlineLP

    OnlineLP(None, cap=cap, rate=rate)
    if prior not in ("default", "none"):
        LPPrior.load(prior)


def _oracle(market, mode, reference):
    from aigb.strategies.oracle_strategy import HindsightOracle

    if reference.partition(":")[0] == "oracle":
        raise ConfigError("oracle: reference: the reference strategy cannot itself be an oracle")
    return HindsightOracle(strategy_factory(reference), reference, mode)


def _competition(market, target):
    from aigb.strategies.neurips2024 import CompetitionStrategy, load_competition_class

    cls = load_competition_class(target)
    return CompetitionStrategy(cls(), min_remaining_budget=market.min_remaining_budget)


def _check_competition(target):
    from aigb.strategies.neurips2024 import load_competition_class

    load_competition_class(target)


def _learned(algo: str):
    def build(market, path):
        try:
            learned = importlib.import_module("aigb.strategies.learned")
        except ImportError as err:
            raise ConfigError(f"{algo}: learned strategies need aigb.strategies.learned and torch ({err})") from None
        return learned.load_strategy(algo, path, market_version=market.version)
    return build


def _check_checkpoint(algo: str):
    def check(text):
        path, _ = split_spec_options(algo, text)
        if not Path(path).exists():
            raise ConfigError(f"{algo}: no checkpoint at {path!r}")
    return check


DT_OPTIONS = {
    "return": "quantile level (0, 1) of the training campaigns the target return is taken from (default: the config's)",
    "scale": "'efficiency', 'campaign' or 'data': how the target is scaled (aigb.algos.dt.TARGET_SCALES)",
    "decrement": "'score' (the score earned so far) or 'conversions': what the return-to-go counts down by",
}
"""Serving options of a Decision Transformer spec, ``dt:PATH?return=Q&scale=...&decrement=...``."""


def split_spec_options(algo: str, text: str) -> tuple[str, dict]:
    """``'PATH?key=value&...'`` -> ``(PATH, options)`` for a learned spec; only ``dt`` takes options
    (``DT_OPTIONS``). A ConfigError names a bad key or value."""
    path, sep, query = text.partition("?")
    if not sep:
        return text, {}
    if algo != "dt":
        raise ConfigError(f"{algo}: takes no serving options, got {'?' + query!r} after the checkpoint path")
    options: dict = {}
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if key not in DT_OPTIONS or not eq:
            raise ConfigError(f"dt: unknown option {item!r} in {text!r}; options: {', '.join(f'{k}=...' for k in DT_OPTIONS)}")
        if key == "return":
            try:
                level = float(value)
            except ValueError:
                level = float("nan")
            if not 0.0 < level < 1.0:
                raise ConfigError(f"dt: return: must be a quantile level in (0, 1), got {value!r} in {text!r}")
            options["target_quantile"] = level
        elif key == "scale":
            if value not in _DT_SCALES:
                raise ConfigError(f"dt: scale: must be one of {', '.join(_DT_SCALES)}, got {value!r} in {text!r}")
            options["target_scale"] = value
        else:
            if value not in ("score", "conversions"):
                raise ConfigError(f"dt: decrement: must be score or conversions, got {value!r} in {text!r}")
            options["rtg_decrement"] = value
    return path, options


def _text(text: str) -> str:
    if not text:
        raise ValueError("empty value")
    return text


register("fixed", _fixed, check=lambda rate: _fixed(MarketConfig(), rate), help="alpha = rate * target CPA every tick",
         params={"rate": Param(_number, 1.0, "alpha / target CPA")})
register("pid", _pid, check=lambda gain, rate: _pid(MarketConfig(), gain, rate),
         help="multiplicative pacing toward the day profile, with a CPA guard",
         params={"gain": Param(_number, 1.0, "pacing gain"), "rate": Param(_number, 1.0, "first tick's alpha / target CPA")})
register("onlinelp", _onlinelp, check=_check_onlinelp,
         help="greedy threshold on forecast cost per conversion, prior learned from training periods",
         params={"cap": Param(_number, 1.5, "cap on alpha / target CPA"), "rate": Param(_number, 1.0, "first tick's alpha / target CPA"),
                 "prior": Param(_text, "default", "'default' (fitted once, cached), 'none', or a .npz path")})
register("oracle", _oracle, check=lambda mode, reference: _oracle(None, mode, reference),
         help="hindsight oracle: replays the period with a reference strategy, solves the LP, bids from it",
         params={"mode": Param(_text, "uniform", "uniform, lp or slots"),
                 "reference": Param(_text, "pid", "spec of the reference strategy (must come last)", greedy=True)})
register("neurips2024", _competition, check=_check_competition, takes_path=True,
         help="competition-interface class: neurips2024:module.path:ClassName or neurips2024:file.py:ClassName "
              "(runs that file's code in the aigb process: name only code you trust)")
for _algo in LEARNED_ALGOS:
    if _algo != "diffbid":
        register(_algo, _learned(_algo), check=_check_checkpoint(_algo), takes_path=True,
                 help=f"learned {_algo} policy: {_algo}:PATH/TO/checkpoint"
                      + ("[?return=0.9&scale=efficiency|campaign|data&decrement=score|conversions]" if _algo == "dt" else ""))
del _algo


def _diffbid(market, text):
    from aigb.strategies.diffbid import load_diffbid_strategy

    return load_diffbid_strategy(text, market_version=market.version)


def _check_diffbid(text):
    from aigb.strategies.diffbid import check_diffbid_spec

    check_diffbid_spec(text)


register("diffbid", _diffbid, check=_check_diffbid, takes_path=True,
         help="DiffBid planner: diffbid:PATH[?w=1.2&return=0.9&cpa=1&util=1&steps=10&temperature=0.5&eta=0&device=auto"
              "&guide=cpa:0.9,cap:0.5@24&preset=mpgd&strength=auto&n=16&select=evaluator]")

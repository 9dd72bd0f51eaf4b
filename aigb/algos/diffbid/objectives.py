"""Objectives on a planned day: differentiable log f(plan) for training-free guidance and search.

An advertiser who changes their mind after training ("a CPA of 0.9 x C tomorrow", "no more than
half the budget before noon") is served by steering DiffBid's samples toward ``log f`` (TFG,
``aigb.diffusion.guidance``) and by keeping the best of several candidates. Every objective reads
the plan through three of its channels (``aigb.algos.diffbid.plans``), mapped back from the
planner's scaled units by the checkpoint's scaler:

    b_r   budget_left        share of the budget left at the start of tick r (row T: after the day)
    s_r   spend_rate         log(1 + spend of tick r - 1 / (B / T))
    v_T   value_delivered    conversions x C / B after the day

so that the terms are stated in the units a campaign is run in.

Reading the future through the per-tick spend. A plan holds the budget twice: as the share left
(b_r, cumulative) and as each tick's spend (``spend_rate`` = log(1 + spend / (B / T)), row r
holding tick r - 1's). Planned at tick t (rows 0..t realised), the budget path an objective sees is
anchored at the realised row and follows the planned spends:

    b_r = b_r (r <= t),    b_r = b_t - sum_{k = t+1..r} expm1(spend_rate_k) / T (r > t)

so a constraint on the end of the day is a constraint on every planned tick, the next one (tick t,
whose spend row t + 1 the inverse dynamics reads) included, and a tick's spend cannot fall below
zero by more than the saturation of expm1 allows. Read from the cumulative channel, the gradient of
a term on b_T lands on row T alone: mean guidance, which takes no gradient through the
denoiser, then moves that row and leaves the bid as it was (measured on a planner trained 600
steps, at tick 10: the planned final CPA fell by a third while the action moved by < 0.01; read
through the spends, the action fell by 0.06-0.26 in log(alpha / C)). Without a tick (a realised
day, whose two readings agree) b is read as it is. With T ticks:

    term            measure (interpretable)                          log f (higher is better, 0 = met)
    cpa:K           CPA_T / C = (1 - b_T) / v_T                      -beta w relu(log(measure / K))
    util:U          spend share 1 - b_T                              -beta w relu(log(U / measure))
    cap:S@TAU       budget share spent before tick TAU, 1 - b_TAU    -beta w relu(log(measure / S))
    exhaust:F@TAU   budget share left at tick TAU, b_TAU             -beta w relu(log(F / measure))
    smooth          mean squared change of per-tick spend, in        -w measure
                    units of the even pace B / T: s_r = T (b_r - b_{r+1})

beta = 2 is the score's CPA exponent (``aigb.score``), so f of ``cpa:K`` is exactly the score's
penalty min(1, (K C / CPA)^2) at the new target K x C, and every one-sided term is f = min(1,
ratio^2) of its own ratio: one scale for all, composable by adding log f's. The ``violation`` of a
term is how far its measure is on the wrong side, in the measure's units (a plan that spends 60 %
of the budget before tick 24 violates ``cap:0.5@24`` by 0.1 of the budget). ``exhaust`` without a
floor uses 1 / T, one tick's worth at the even pace. Weights (``*W``) multiply a term's log f.

The guide grammar (serving option ``guide=``): terms separated by commas, each
``NAME[:LEVEL][@TICK][*WEIGHT]``, e.g. ``cpa:0.9,util:0.95``, ``cap:0.5@24*2``, ``exhaust@40``,
``smooth*0.5``. Parsing needs no torch; the log objective works on torch tensors and stays
differentiable (clamps keep logs finite on plans with no spend or no conversions).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from aigb.score import DEFAULT_BETA

__all__ = [
    "TERM_KINDS", "ObjectiveTerm", "parse_guide", "format_guide", "PlanObjective", "term_measure",
    "term_log_f", "term_violation", "planned_efficiency", "realised_day", "objective_compliance",
]

TERM_KINDS: dict[str, str] = {
    "cpa": "cpa:K          realised CPA at or under K x C (K > 0)",
    "util": "util:U         budget utilisation at least U (0 < U <= 1)",
    "cap": "cap:S@TAU      at most a share S of the budget spent before tick TAU",
    "exhaust": "exhaust[:F]@TAU a share F (default 1/T) of the budget still left at tick TAU",
    "smooth": "smooth         even per-tick spend (mean squared change, units of B/T)",
}
"""Term name -> its grammar and meaning (for errors and --help)."""

_NEEDS_LEVEL = {"cpa", "util", "cap"}
_TAKES_LEVEL = {"cpa", "util", "cap", "exhaust"}
_NEEDS_TICK = {"cap", "exhaust"}
_TERM = re.compile(r"^(?P<kind>[a-z]+)(?::(?P<level>[^@*]+))?(?:@(?P<tick>[^*]+))?(?:\*(?P<weight>.+))?$")

# Floors that keep the logs finite and differentiable on degenerate plans.
_MIN_SHARE = 1e-6
_MIN_VALUE = 1e-3


@dataclass(frozen=True)
class ObjectiveTerm:
    """One term of a planning objective (see the module docstring)."""

    kind: str
    """cpa, util, cap, exhaust or smooth."""
    level: float | None = None
    """cpa: K (CPA <= K C); util: U; cap: S; exhaust: floor F (None: 1 / T); smooth: None."""
    tick: int | None = None
    """cap and exhaust: the tick TAU (rows before it are ticks 0..TAU-1)."""
    weight: float = 1.0
    """Multiplies the term's log f."""

    @property
    def label(self) -> str:
        """The canonical text of the term (``parse_guide(t.label) == (t,)``)."""
        text = self.kind
        if self.level is not None:
            text += f":{self.level:g}"
        if self.tick is not None:
            text += f"@{self.tick}"
        if self.weight != 1.0:
            text += f"*{self.weight:g}"
        return text


def _positive(text: str, what: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{what} must be a finite number > 0, got {text!r}")
    return value


def parse_guide(text: str) -> tuple[ObjectiveTerm, ...]:
    """``'cpa:0.9,util:0.95'`` -> the terms; ValueError names the bad term and the grammar."""
    terms = []
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ValueError(f"no terms in {text!r}; give e.g. cpa:0.9,util:0.95")
    for item in items:
        if not item:
            raise ValueError(f"empty term in {text!r}")
        m = _TERM.match(item)
        if m is None or m["kind"] not in TERM_KINDS:
            kind = m["kind"] if m else item
            raise ValueError(f"unknown term {kind!r} in {text!r}; terms: {'; '.join(TERM_KINDS.values())}")
        kind, grammar = m["kind"], TERM_KINDS[m["kind"]]
        try:
            level = None if m["level"] is None else _positive(m["level"], "its level")
            tick = None
            if m["tick"] is not None:
                tick = int(m["tick"])
                if tick < 1:
                    raise ValueError(f"its tick must be an integer >= 1, got {m['tick']!r}")
            weight = 1.0 if m["weight"] is None else _positive(m["weight"], "its weight")
            if level is None and kind in _NEEDS_LEVEL:
                raise ValueError("it needs a level")
            if level is not None and kind not in _TAKES_LEVEL:
                raise ValueError("it takes no level")
            if tick is None and kind in _NEEDS_TICK:
                raise ValueError("it needs a tick")
            if tick is not None and kind not in _NEEDS_TICK:
                raise ValueError("it takes no tick")
            if kind in ("util", "cap", "exhaust") and level is not None and level > 1.0:
                raise ValueError(f"its level is a share of the budget, in (0, 1], got {level:g}")
        except ValueError as err:
            raise ValueError(f"term {item!r}: {err} ({grammar})") from None
        terms.append(ObjectiveTerm(kind, level, tick, weight))
    return tuple(terms)


def format_guide(terms: Sequence[ObjectiveTerm]) -> str:
    """The canonical text of ``terms``, in order."""
    return ",".join(t.label for t in terms)


# --- the terms on day quantities (torch tensors; any leading shape) --------------------------------
def term_measure(term: ObjectiveTerm, budget_left, value, n_ticks: int):
    """The term's measure (see the module table) from budget_left, value (..., T + 1) -> (...)."""
    if term.kind == "cpa":
        return (1.0 - budget_left[..., n_ticks]).clamp_min(_MIN_SHARE) / value[..., n_ticks].clamp_min(_MIN_VALUE)
    if term.kind == "util":
        return 1.0 - budget_left[..., n_ticks]
    if term.kind == "cap":
        return 1.0 - budget_left[..., term.tick]
    if term.kind == "exhaust":
        return budget_left[..., term.tick]
    if term.kind == "smooth":
        spend = -n_ticks * budget_left[..., : n_ticks + 1].diff(dim=-1)                  # (..., T) in units of B / T
        return spend.diff(dim=-1).square().mean(dim=-1)
    raise ValueError(f"unknown term kind {term.kind!r}")


def _limit(term: ObjectiveTerm, n_ticks: int) -> float:
    return (1.0 / n_ticks) if term.kind == "exhaust" and term.level is None else float(term.level)


def term_log_f(term: ObjectiveTerm, budget_left, value, n_ticks: int):
    """The term's weighted log f (...) <= 0; 0 where the term is met."""
    m = term_measure(term, budget_left, value, n_ticks)
    if term.kind == "smooth":
        return -term.weight * m
    limit = _limit(term, n_ticks)
    if term.kind in ("cpa", "cap"):          # at most the limit
        excess = m.clamp_min(_MIN_SHARE).log() - math.log(limit)
    else:                                    # util, exhaust: at least the limit
        excess = math.log(limit) - m.clamp_min(_MIN_SHARE).log()
    return -(term.weight * DEFAULT_BETA) * excess.clamp_min(0.0)


def term_violation(term: ObjectiveTerm, budget_left, value, n_ticks: int):
    """How far the measure is on the wrong side of the limit (...) >= 0, in the measure's units."""
    m = term_measure(term, budget_left, value, n_ticks)
    if term.kind == "smooth":
        return m
    limit = _limit(term, n_ticks)
    return (m - limit).clamp_min(0.0) if term.kind in ("cpa", "cap") else (limit - m).clamp_min(0.0)


def planned_efficiency(budget_left, value, n_ticks: int):
    """The score efficiency score x C / B that a plan's last row claims: v_T min(1, (v_T / (1 - b_T))^2)."""
    v = value[..., n_ticks]
    spent = (1.0 - budget_left[..., n_ticks]).clamp_min(_MIN_SHARE)
    return v.clamp_min(0.0) * (v.clamp_min(0.0) / spent).square().clamp_max(1.0)


class PlanObjective:
    """``log f`` of a plan in the planner's scaled units: the weighted sum of its terms.

    terms: from ``parse_guide``; channels: the plan's channel names (needs budget_left and
    value_delivered: the "market" plan); scaler: the checkpoint's plan scaler (``from_unit``);
    n_ticks: T. ``objective(x0)`` maps x0 (B, H, P) scaled -> (B,), differentiably.
    """

    def __init__(self, terms: Sequence[ObjectiveTerm] | str, channels: Sequence[str], scaler, n_ticks: int) -> None:
        self.terms = parse_guide(terms) if isinstance(terms, str) else tuple(terms)
        if not self.terms:
            raise ValueError("guide: an objective needs at least one term")
        missing = [c for c in ("budget_left", "spend_rate", "value_delivered") if c not in channels]
        if missing:
            raise ValueError(f"guide: objectives read the plan's {', '.join(missing)} channel(s); this planner's plan "
                             f"has {', '.join(channels)} (train with plan='market')")
        for t in self.terms:
            if t.tick is not None and t.tick > n_ticks:
                raise ValueError(f"guide: term {t.label!r}: tick {t.tick} is beyond the planner's day of {n_ticks} ticks")
        self.channels, self.scaler, self.n_ticks = tuple(channels), scaler, int(n_ticks)
        self._b, self._v = self.channels.index("budget_left"), self.channels.index("value_delivered")
        self._s = self.channels.index("spend_rate")

    @property
    def text(self) -> str:
        return format_guide(self.terms)

    def quantities(self, x0, tick: int | None = None):
        """x0 (..., H, P) scaled -> (budget_left, value), each (..., H), in plan units. With ``tick``
        t, the budget after row t + 1 is read through the planned per-tick spend (module docstring)."""
        plan = self.scaler.from_unit(x0)
        b, v = plan[..., self._b], plan[..., self._v]
        if tick is not None and tick < self.n_ticks:
            spend = plan[..., tick + 1:, self._s].expm1() / self.n_ticks                   # (..., T - t) ticks t..T-1
            b = b.clone()
            b[..., tick + 1:] = b[..., tick: tick + 1] - spend.cumsum(dim=-1)
        return b, v

    def log_f_of(self, budget_left, value):
        """(...) the objective's log f on day quantities."""
        return sum(term_log_f(t, budget_left, value, self.n_ticks) for t in self.terms)

    def __call__(self, x0, tick: int | None = None):
        return self.log_f_of(*self.quantities(x0, tick))

    def at(self, tick: int):
        """log f of plans made at ``tick``: x0 (B, H, P) -> (B,) (the guidance hook's objective)."""
        return lambda x0: self(x0, tick)

    def report(self, x0, tick: int | None = None) -> dict[str, dict[str, Any]]:
        """term label -> {"measure", "violation", "log_f"} tensors (...) of scaled plans x0."""
        b, v = self.quantities(x0, tick)
        return {t.label: {"measure": term_measure(t, b, v, self.n_ticks), "violation": term_violation(t, b, v, self.n_ticks),
                          "log_f": term_log_f(t, b, v, self.n_ticks)} for t in self.terms}


# --- realised days (evaluation rows) ------------------------------------------------------------
def realised_day(row: Mapping[str, Any], *, expected: bool = False):
    """The day quantities of a completed ``aigb.eval.rollout`` row -> (budget_left, value), each
    (T + 1,) float64 tensors. budget_left comes from the realised remaining budget before each tick
    and the day's spend; value has only its last row (conversions x C / B; ``expected`` takes the
    expected conversions), the others NaN: no term reads them."""
    import torch

    budget, cpa = float(row["budget"]), float(row["target_cpa"])
    remaining = torch.as_tensor(list(row["remaining_budget"]), dtype=torch.float64)
    b = torch.cat([remaining, torch.tensor([budget - float(row["spend"])], dtype=torch.float64)]) / budget
    v = torch.full_like(b, math.nan)
    v[-1] = float(row["expected_conversions" if expected else "conversions"]) * cpa / budget
    return b, v


def objective_compliance(rows: Sequence[Mapping[str, Any]], terms: Sequence[ObjectiveTerm] | str) -> dict[str, dict[str, float]]:
    """Per term, over completed rows: the share of campaigns that meet it, the mean measure and
    the mean violation (in the measure's units); "all" is the share meeting every one-sided term.
    A campaign without conversions has no CPA: it meets every cpa term and is left out of their
    mean measure, as in the evaluation's CPA-violation rate (``aigb.eval.metrics``)."""
    import torch

    terms = parse_guide(terms) if isinstance(terms, str) else tuple(terms)
    days = [realised_day(r) for r in rows if not r.get("error")]
    if not days:
        raise ValueError("objective_compliance: no completed rows")
    n_ticks = days[0][0].shape[0] - 1
    b, v = torch.stack([d[0] for d in days]), torch.stack([d[1] for d in days])
    out, all_met = {}, torch.ones(b.shape[0], dtype=torch.bool)
    for t in terms:
        if t.tick is not None and t.tick > n_ticks:
            raise ValueError(f"term {t.label!r}: tick {t.tick} is beyond these days of {n_ticks} ticks")
        measure, violation = term_measure(t, b, v, n_ticks), term_violation(t, b, v, n_ticks)
        if t.kind == "cpa":
            no_cpa = v[:, -1] <= 0
            measure, violation = measure.masked_fill(no_cpa, math.nan), violation.masked_fill(no_cpa, 0.0)
        met = violation <= 1e-12
        if t.kind != "smooth":
            all_met &= met
        out[t.label] = {"met": float(met.double().mean()) if t.kind != "smooth" else math.nan,
                        "measure": float(measure.nanmean()), "violation": float(violation.mean()), "campaigns": int(b.shape[0])}
    out["all"] = {"met": float(all_met.double().mean()), "campaigns": int(b.shape[0])}
    return out

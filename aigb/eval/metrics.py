"""Summaries of evaluation rows: per strategy means with confidence intervals, % of the oracle,
constraint and delivery statistics, and paired differences against a baseline.

Intervals are t-based over campaigns (rows), 95 % by default; the ratio of sums gets a percentile
bootstrap with a fixed seed, so a summary is a pure function of its rows. Rows of the same
(seed, period) share traffic and competitors, so these intervals treat campaigns as independent
draws: read them as the variation over the evaluated campaigns, and compare strategies through the
paired differences, which cancel what the campaigns share.

Same campaigns for everyone: every statistic is taken over the campaigns (seed, period,
advertiser) that *every* strategy of the table completed. A campaign where one strategy failed (a
row with an ``error``), or that one strategy did not play (results of other seeds combined), is
left out for all of them, so strategies are never compared on different campaigns and a paired
difference equals the difference of the two means. Failed rows are counted per strategy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from aigb.seeding import rng

__all__ = ["MeanCI", "StrategySummary", "PairedDifference", "Summary", "mean_ci", "ratio_of_sums_ci",
           "summarize", "format_summary", "coverage_lines", "name_width", "strategy_label", "NAME_WIDTH", "BOUND_TOLERANCE",
           "BOOTSTRAP_SAMPLES"]

BOUND_TOLERANCE = 1e-6
"""Relative slack allowed in ``expected_score <= bound`` (float rounding of sums over 500k PVs)."""
BOOTSTRAP_SAMPLES = 2000
"""Resamples of the ratio-of-sums bootstrap."""


@dataclass(frozen=True)
class MeanCI:
    """A mean and its confidence interval."""

    mean: float
    """Sample mean (NaN without data)."""
    low: float
    """Lower end of the interval (NaN with fewer than 2 values)."""
    high: float
    """Upper end of the interval."""
    n: int
    """Values the mean is over."""

    def fmt(self, scale: float = 1.0, nd: int = 2) -> str:
        if math.isnan(self.mean):
            return "nan"
        if math.isnan(self.low):
            return f"{self.mean * scale:.{nd}f}"
        half = (self.high - self.low) / 2 * scale
        return f"{self.mean * scale:.{nd}f} ±{half:.{nd}f}"


def mean_ci(values, confidence: float = 0.95) -> MeanCI:
    """Mean with a t-based interval ``mean ± t_{n-1} * sd / sqrt(n)`` (NaNs dropped)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must lie in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if n < 2:
        return MeanCI(m, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return MeanCI(m, m - half, m + half, n)


def ratio_of_sums_ci(num, den, confidence: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> MeanCI:
    """``sum(num) / sum(den)`` with a percentile bootstrap over rows (fixed stream: reproducible)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    ok = np.isfinite(num) & np.isfinite(den)
    num, den = num[ok], den[ok]
    n = num.size
    if n == 0 or den.sum() <= 0:
        return MeanCI(math.nan, math.nan, math.nan, n)
    point = float(num.sum() / den.sum())
    if n < 2:
        return MeanCI(point, math.nan, math.nan, n)
    idx = rng(seed, "bootstrap", n).integers(0, n, size=(samples, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    boot = boot[np.isfinite(boot)]
    lo, hi = np.quantile(boot, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return MeanCI(point, float(lo), float(hi), n)


@dataclass(frozen=True)
class StrategySummary:
    """One strategy over all its rows."""

    strategy: str
    """The strategy's spec."""
    n_rows: int
    """Campaigns evaluated."""
    n_errors: int
    """Campaigns that failed."""
    n_campaigns: int
    """Campaigns the statistics below are over: those every strategy of the table completed."""
    score: MeanCI
    """Realised score per campaign."""
    expected_score: MeanCI
    """Score of expected conversions and expected spend (less noisy)."""
    oracle_score: MeanCI
    """The per-row hindsight bound."""
    pct_oracle: MeanCI
    """Mean over campaigns of score / oracle_score (campaigns with a positive bound)."""
    pct_oracle_expected: MeanCI
    """Mean of expected_score / oracle_score (<= 1 up to the budget slack; see aigb.eval.rollout)."""
    pct_oracle_sum: MeanCI
    """sum(score) / sum(oracle_score), bootstrap interval."""
    cpa_violation_rate: float
    """Share of campaigns with realised CPA above the target."""
    budget_utilisation: MeanCI
    """Spend / budget."""
    exhausted_share: float
    """Share of campaigns whose budget ran out before the period ended."""
    exhaustion_tick: MeanCI
    """Tick of exhaustion, over the campaigns that ran out."""
    spend_oscillation: MeanCI
    """Tick-to-tick total variation of spend over total spend."""
    bound_violations: int
    """Rows with expected_score above bound_score (must be 0)."""
    budget_slack_rows: int
    """Rows with expected_score above oracle_score because expected spend exceeded the budget."""


@dataclass(frozen=True)
class PairedDifference:
    """strategy minus baseline over the campaigns every strategy completed."""

    strategy: str
    """The compared strategy."""
    baseline: str
    """The reference strategy."""
    score: MeanCI
    """Mean difference of realised scores."""
    expected_score: MeanCI
    """Mean difference of expected scores."""
    win_rate: float
    """Share of campaigns where the strategy's score is strictly higher."""


@dataclass(frozen=True)
class Summary:
    strategies: tuple[StrategySummary, ...]
    paired: tuple[PairedDifference, ...]
    confidence: float
    campaigns: int = 0
    """Campaigns every strategy completed (what every statistic is over)."""
    campaigns_played: int = 0
    """Distinct campaigns in the rows, completed or not."""
    notes: tuple[str, ...] = ()
    """Lines printed above the table (e.g. which evaluations were interrupted)."""


def _columns(rows, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``keys`` columns of ``rows`` as 1-D object arrays (scalar columns only)."""
    if hasattr(rows, "column_names"):  # pyarrow.Table
        have = set(rows.column_names)
        get = lambda k: rows.column(k).to_pylist()  # noqa: E731
    elif isinstance(rows, Mapping):
        have = set(rows)
        get = lambda k: list(rows[k])  # noqa: E731
    elif isinstance(rows, Sequence):
        have = set(rows[0]) if rows else set(keys)
        get = lambda k: [r[k] for r in rows]  # noqa: E731
    else:
        raise TypeError(f"rows: expected a pyarrow.Table, a mapping of columns or a list of row dicts, got {type(rows).__name__}")
    missing = [k for k in keys if k not in have]
    if missing:
        raise ValueError(f"rows: missing columns {missing}")
    out = {}
    for k in keys:
        values = get(k)
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        out[k] = arr
    return out


def _f(col) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in col], dtype=np.float64)


def summarize(rows, *, baseline: str | None = None, confidence: float = 0.95) -> Summary:
    """Per-strategy statistics (in order of first appearance) and paired differences vs ``baseline``."""
    cols = _columns(rows, ("strategy", "seed", "period", "advertiser", "score", "expected_score", "oracle_score",
                           "bound_score", "realized_cpa", "target_cpa", "budget_utilisation", "exhaustion_tick",
                           "spend_oscillation", "error"))
    names = list(dict.fromkeys(cols["strategy"].tolist()))
    if baseline is not None and baseline not in names:
        raise ValueError(f"baseline: {baseline!r} is not among the evaluated strategies {names}")
    ok_all = np.array([e is None for e in cols["error"]], dtype=bool)
    key = [tuple(k) for k in zip(cols["seed"].tolist(), cols["period"].tolist(), cols["advertiser"].tolist())]
    completed = [{key[i] for i in np.flatnonzero((cols["strategy"] == name) & ok_all)} for name in names]
    common = set.intersection(*completed) if completed else set()
    in_common = np.array([k in common for k in key], dtype=bool)
    score, exp_score = _f(cols["score"]), _f(cols["expected_score"])
    oracle, bound = _f(cols["oracle_score"]), _f(cols["bound_score"])
    cpa, target = _f(cols["realized_cpa"]), _f(cols["target_cpa"])
    util, osc = _f(cols["budget_utilisation"]), _f(cols["spend_oscillation"])
    ex_tick = _f(cols["exhaustion_tick"])
    out = []
    for name in names:
        sel = cols["strategy"] == name
        ok = sel & ok_all & in_common
        pos = ok & (oracle > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio, ratio_exp = score / oracle, exp_score / oracle
        exhausted = ok & (ex_tick >= 0)
        n_ok = int(ok.sum())
        tol = BOUND_TOLERANCE * np.maximum(np.abs(bound), 1.0)
        out.append(StrategySummary(
            strategy=name, n_rows=int(sel.sum()), n_errors=int((sel & ~ok_all).sum()), n_campaigns=n_ok,
            score=mean_ci(score[ok], confidence), expected_score=mean_ci(exp_score[ok], confidence),
            oracle_score=mean_ci(oracle[ok], confidence),
            pct_oracle=mean_ci(ratio[pos], confidence), pct_oracle_expected=mean_ci(ratio_exp[pos], confidence),
            pct_oracle_sum=ratio_of_sums_ci(score[ok], oracle[ok], confidence),
            cpa_violation_rate=float(np.mean(np.nan_to_num(cpa[ok]) > target[ok])) if n_ok else math.nan,
            budget_utilisation=mean_ci(util[ok], confidence),
            exhausted_share=float(exhausted.sum() / n_ok) if n_ok else math.nan,
            exhaustion_tick=mean_ci(ex_tick[exhausted], confidence),
            spend_oscillation=mean_ci(osc[ok], confidence),
            bound_violations=int((ok & (exp_score > bound + tol)).sum()),
            budget_slack_rows=int((ok & (exp_score > oracle + tol)).sum()),
        ))
    paired = []
    if baseline is not None:
        base_idx = {key[i]: i for i in np.flatnonzero((cols["strategy"] == baseline) & ok_all & in_common)}
        for name in names:
            if name == baseline:
                continue
            pairs = [(i, base_idx[key[i]]) for i in np.flatnonzero((cols["strategy"] == name) & ok_all & in_common)
                     if key[i] in base_idx]
            i, j = (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))
            paired.append(PairedDifference(
                strategy=name, baseline=baseline,
                score=mean_ci(score[i] - score[j], confidence),
                expected_score=mean_ci(exp_score[i] - exp_score[j], confidence),
                win_rate=float(np.mean(score[i] > score[j])) if pairs else math.nan))
    return Summary(tuple(out), tuple(paired), confidence, campaigns=len(common), campaigns_played=len(set(key)))


def _pct(x: float) -> str:
    return "nan" if math.isnan(x) else f"{100 * x:.1f}%"


NAME_WIDTH = (28, 64)
"""A table's strategy column is as wide as its longest name within these bounds."""


def name_width(names) -> int:
    """The strategy column's width for these names (``NAME_WIDTH``)."""
    return min(max([NAME_WIDTH[0], *(len(n) for n in names)]), NAME_WIDTH[1])


def strategy_label(name: str, width: int) -> str:
    """``name`` within ``width`` characters: a longer one keeps its start and its end (a spec's
    serving options), joined by '...'."""
    if len(name) <= width:
        return name
    tail = (width - 3) // 2
    return name[: width - 3 - tail] + "..." + name[len(name) - tail:]


def _covered(summary: Summary) -> str:
    n = len(summary.strategies)
    return f"the {summary.campaigns} campaign(s) {'all ' + str(n) + ' strategies' if n > 1 else 'the strategy'} completed"


def coverage_lines(summary: Summary) -> list[str]:
    """What a table covers: the campaigns every strategy completed, and those left out and why."""
    lines = [f"statistics over {_covered(summary)}"]
    left_out = summary.campaigns_played - summary.campaigns
    if left_out:
        lines.append(f"LEFT OUT: {left_out} of {summary.campaigns_played} campaign(s), where a strategy failed "
                     f"({sum(s.n_errors for s in summary.strategies)} error row(s), column err) or did not play")
    return lines


def format_summary(summary: Summary) -> str:
    """The summary as a plain-text table (means ± half-width of the confidence interval)."""
    c = int(round(summary.confidence * 100))
    w = name_width(s.strategy for s in summary.strategies)
    head = (f"{'strategy':<{w}} {'n':>5} {'err':>4} {'score':>14} {'exp. score':>14} {'oracle':>8} "
            f"{'% oracle':>14} {'% orc (exp)':>14} {'% orc sum':>10} {'CPA viol':>8} {'budget':>7} "
            f"{'exhaust':>7} {'@tick':>6} {'oscill':>7}")
    lines = [f"# {note}" for note in summary.notes]
    lines += [f"per campaign, mean ±{c}% CI half-width over {_covered(summary)}"]
    lines += coverage_lines(summary)[1:]
    lines += [head, "-" * len(head)]
    for s in summary.strategies:
        lines.append(
            f"{strategy_label(s.strategy, w):<{w}} {s.n_campaigns:>5} {s.n_errors:>4} {s.score.fmt():>14} {s.expected_score.fmt():>14} "
            f"{s.oracle_score.fmt(nd=2).split(' ')[0]:>8} {s.pct_oracle.fmt(100, 1):>14} {s.pct_oracle_expected.fmt(100, 1):>14} "
            f"{_pct(s.pct_oracle_sum.mean):>10} {_pct(s.cpa_violation_rate):>8} {_pct(s.budget_utilisation.mean):>7} "
            f"{_pct(s.exhausted_share):>7} {s.exhaustion_tick.fmt(nd=1).split(' ')[0]:>6} {s.spend_oscillation.fmt(nd=2).split(' ')[0]:>7}")
    slack = sum(s.budget_slack_rows for s in summary.strategies)
    viol = sum(s.bound_violations for s in summary.strategies)
    lines.append(f"bound check: {viol} rows with expected score above their bound; {slack} rows above the budget-B "
                 f"oracle only because expected spend exceeded the budget (hard cap acts on realised spend)")
    if summary.paired:
        lines.append("")
        lines.append(f"paired differences vs {summary.paired[0].baseline} (same seed, period, advertiser), mean ±{c}% CI half-width")
        lines.append(f"{'strategy':<{w}} {'pairs':>6} {'d score':>16} {'d exp. score':>16} {'wins':>6}")
        for p in summary.paired:
            lines.append(f"{strategy_label(p.strategy, w):<{w}} {p.score.n:>6} {p.score.fmt():>16} {p.expected_score.fmt():>16} {_pct(p.win_rate):>6}")
    return "\n".join(lines)

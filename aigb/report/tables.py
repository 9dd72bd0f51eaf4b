"""The leaderboard: one record per strategy from the evaluation summary, ranked by mean score.

Every number comes from ``aigb.eval.metrics.summarize`` (through ``ReportInputs.summary``) and is
written with the same formatting as ``aigb.eval.metrics.format_summary``, so the report, ``aigb
evaluate`` and ``aigb compare`` show the same figures for the same rows.
"""

from __future__ import annotations

import math

from aigb.eval.metrics import MeanCI, PairedDifference, StrategySummary
from aigb.report.inputs import ReportInputs

__all__ = ["COLUMNS", "leaderboard", "format_leaderboard"]

COLUMNS = (
    ("rank", "rank"), ("label", "strategy"), ("n", "campaigns"), ("errors", "errors"),
    ("score", "score (mean ±95% CI)"), ("pct_oracle", "% of oracle bound"), ("cpa_violations", "CPA violations"),
    ("budget_used", "budget used"), ("exhausted", "exhausted early"), ("d_score", "Δ score vs baseline (paired)"),
    ("wins", "wins vs baseline"),
)
"""(record key, heading) of the leaderboard's text cells, in display order."""


def _pct(x: float) -> str:
    return "nan" if math.isnan(x) else f"{100 * x:.1f}%"


def _ci(m: MeanCI) -> dict:
    return {"mean": m.mean, "low": m.low, "high": m.high, "n": m.n}


def _record(rank: int, label: str, s: StrategySummary, p: PairedDifference | None, baseline: str) -> dict:
    """Text cells (``COLUMNS``) plus the raw numbers under ``values``."""
    return {
        "rank": str(rank), "label": label, "strategy": s.strategy, "n": str(s.n_campaigns), "errors": str(s.n_errors),
        "score": s.score.fmt(), "pct_oracle": s.pct_oracle.fmt(100, 1), "cpa_violations": _pct(s.cpa_violation_rate),
        "budget_used": _pct(s.budget_utilisation.mean), "exhausted": _pct(s.exhausted_share),
        "d_score": "baseline" if s.strategy == baseline else (p.score.fmt() if p else ""),
        "wins": "" if p is None else _pct(p.win_rate),
        "values": {
            "score": _ci(s.score), "expected_score": _ci(s.expected_score), "oracle_score": _ci(s.oracle_score),
            "pct_oracle": _ci(s.pct_oracle), "cpa_violation_rate": s.cpa_violation_rate,
            "budget_utilisation": _ci(s.budget_utilisation), "exhausted_share": s.exhausted_share,
            "exhaustion_tick": _ci(s.exhaustion_tick), "spend_oscillation": _ci(s.spend_oscillation),
            "d_score": None if p is None else _ci(p.score), "win_rate": None if p is None else p.win_rate,
        },
    }


def leaderboard(inputs: ReportInputs) -> list[dict]:
    """One record per strategy, best mean score first (strategies without a score last)."""
    summary = inputs.summary
    baseline = summary.paired[0].baseline if summary.paired else None
    paired = {p.strategy: p for p in summary.paired}
    order = sorted(summary.strategies, key=lambda s: (math.isnan(s.score.mean), -s.score.mean if not math.isnan(s.score.mean) else 0.0))
    return [_record(rank, inputs.labels[s.strategy], s, paired.get(s.strategy), baseline)
            for rank, s in enumerate(order, start=1)]


def format_leaderboard(records: list[dict], baseline: str | None) -> str:
    """The leaderboard as a plain-text table."""
    keys = [k for k, _ in COLUMNS if k != "errors" or any(r["errors"] != "0" for r in records)]
    heads = {k: h for k, h in COLUMNS}
    heads["d_score"] = f"Δ score vs {baseline}" if baseline else "Δ score"
    heads["score"], heads["pct_oracle"], heads["rank"], heads["n"] = "score ±95% CI", "% oracle", "#", "n"
    heads["cpa_violations"], heads["budget_used"], heads["exhausted"], heads["wins"] = "CPA viol", "budget", "exhaust", "wins"
    width = {k: max(len(heads[k]), *(len(r[k]) for r in records)) for k in keys}
    left = {"label"}
    line = lambda cells: "  ".join(c.ljust(width[k]) if k in left else c.rjust(width[k]) for k, c in cells)  # noqa: E731
    out = [line((k, heads[k]) for k in keys)]
    out.append("-" * len(out[0]))
    out += [line((k, r[k]) for k in keys) for r in records]
    return "\n".join(out)

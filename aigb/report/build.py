"""``build_report``: evaluation directories -> ``report.html``, PNG figures and the leaderboard.

    build_report(["results/rules", "results/learned"], "report/", baseline="fixed")

writes into ``out_dir``:

    report.html        one self-contained page: tables inline, figures as PNG data URIs, no
                       script and no external reference, so it opens offline and can be mailed
    <figure>.png       each figure, as embedded in the page
    leaderboard.json   the leaderboard's numbers (means, interval ends, counts) and text cells
    leaderboard.txt    the leaderboard as printed

The same inputs give byte-identical files: the page holds no time stamp and no absolute path, the
figures no date, and every number is a pure function of the rows (``aigb.eval.metrics``).
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

from aigb.data.parquet import atomic_output
from aigb.eval.metrics import Summary, coverage_lines
from aigb.files import claim_dir
from aigb.report import figures
from aigb.report.inputs import ReportInputs, load_inputs
from aigb.report.tables import COLUMNS, format_leaderboard, leaderboard

__all__ = ["Report", "FIGURES", "build_report"]


@dataclass(frozen=True)
class Report:
    """What ``build_report`` wrote."""

    out_dir: Path
    html: Path
    figures: tuple[Path, ...]
    leaderboard: list[dict]
    leaderboard_text: str
    notes: tuple[str, ...]
    """Figures left out, and why."""
    coverage: tuple[str, ...] = ()
    """What the leaderboard covers: interrupted evaluations, the campaigns every strategy completed,
    those left out (``aigb.eval.metrics.coverage_lines``)."""
    summary: Summary | None = None
    """The statistics the leaderboard shows."""


# (file stem, heading, builder, caption, why it can be missing)
FIGURES = (
    ("leaderboard", "Leaderboard", lambda i, r: figures.fig_leaderboard(i, r),
     "Mean score per campaign, the share of the hindsight oracle bound it reaches (mean of per-campaign "
     "ratios) and the paired difference to the baseline on the same campaigns, each with its 95 % "
     "confidence interval. Hollow diamonds: the mean bound of the same campaigns.", ""),
    ("budget_curves", "Remaining budget over the day", lambda i, r: figures.fig_budget_curves(i),
     "Sample campaigns (the same for every strategy): remaining budget at the start of each tick and after "
     "the last. The dashed black line is the oracle strategy, which bids the best single multiplier in "
     "hindsight.", "no campaign was completed by every strategy"),
    ("plans", "Planned vs realised budget (planning strategies)", lambda i, r: figures.fig_plans(i),
     "Each dotted curve is the remaining-budget plan the strategy made at one tick (the dot marks that "
     "tick; before it the plan is the realised prefix), coloured from early (dark) to late (yellow) "
     "ticks; the thick line is what it realised.",
     "no plans.parquet beside these results (the evaluation writes one when a strategy plans, e.g. DiffBid)"),
    ("delivery", "Delivery smoothness", lambda i, r: figures.fig_delivery(i),
     "Every (campaign, tick) as a point: remaining budget against remaining time, the day running left "
     "to right. Points on the diagonal spend in proportion to time; points reaching 0 % before the right "
     "edge ran out of budget early.", "no completed campaign"),
    ("exhaustion", "Budget exhaustion and spend oscillation", lambda i, r: figures.fig_exhaustion(i),
     "Left: the share of campaigns whose remaining budget has fallen below the market's minimum by each "
     "tick. Right: per campaign, the tick-to-tick total variation of spend over total spend (about 0.1 "
     "for spend that follows the day's traffic, 2 for the whole budget in one tick).", "no completed campaign"),
    ("tick_spend", "Per-tick spend and bid multiplier", lambda i, r: figures.fig_tick_spend(i),
     "Left: spend in each tick as a share of the budget, mean over campaigns. Right (when the evaluation "
     "recorded ticks.parquet): the effective bid multiplier of each tick, bids over p_value summed over the "
     "tick's PVs and divided by the target CPA, median over campaigns (0 once a budget has run out).",
     "no completed campaign"),
    ("sweeps", "Parameter sweeps", lambda i, r: figures.fig_sweeps(i),
     "Strategies evaluated at several values of one parameter (e.g. DiffBid's guidance scale or target "
     "return condition): score and % of the oracle bound with 95 % intervals, CPA violations and budget "
     "used, against the parameter.",
     "no sweep in these results (several specs of one strategy differing in one numeric parameter)"),
)

_CSS = """
body { font-family: -apple-system, 'Segoe UI', 'DejaVu Sans', Arial, sans-serif; margin: 24px auto; max-width: 1140px;
       color: #222; line-height: 1.4; padding: 0 12px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.6em 0; }
th, td { padding: 3px 7px; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; white-space: normal; vertical-align: bottom; } td.l, th.l { text-align: left; }
.scroll { overflow-x: auto; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .note { font-size: 0.88em; color: #555; } code { font-size: 0.95em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; font-size: 0.9em; } dt { color: #555; }
"""


def _fmt_list(values) -> str:
    values = list(values)
    if len(values) > 6 and values == list(range(values[0], values[0] + len(values))):
        return f"{values[0]:,}..{values[-1]:,} ({len(values)})"
    return ", ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in values)


def _inputs_html(inputs: ReportInputs) -> str:
    c, m = inputs.config, inputs.config["market"]
    n = max((s.n_rows for s in inputs.summary.strategies), default=0)
    items = [
        ("evaluations", ", ".join(f"<code>{html.escape(d)}</code>" for d in inputs.dirs)),
        ("market", html.escape(f"replay of the logged periods in {c['replay']['dir']} at budget rate "
                               f"{c['replay']['budget_rate']:g} (aigb.eval.replay)" if c.get("replay") else
                               f"preset {m['preset']}, {m['n_pv']:,} PVs x {m['n_ticks']} ticks, "
                               f"{m['n_advertisers']} advertisers")),
        ("task", html.escape("Max-Return (budget only): score = conversions" if c.get("task") == "max-return"
                             else "Target-CPA: score = conversions x min(1, (C / CPA)^2)")),
        ("campaigns", html.escape(f"up to {n} per strategy: seeds {_fmt_list(inputs.seeds)}; periods "
                                  f"{_fmt_list(c['periods'])}; advertiser slots {_fmt_list(c['slots'])}")),
        ("covers", "<br>".join(html.escape(line) for line in _coverage(inputs))),
        ("aigb", html.escape(str(c.get("aigb_version", "?")))),
    ]
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _leaderboard_html(records: list[dict], baseline: str | None, labels: dict) -> str:
    heads = dict(COLUMNS)
    if baseline:
        heads["d_score"] = f"Δ score vs {labels.get(baseline, baseline)} (paired)"
        heads["wins"] = f"wins vs {labels.get(baseline, baseline)}"
    left = {"label"}
    th = "".join(f'<th class="{"l" if k in left else ""}">{html.escape(heads[k])}</th>' for k, _ in COLUMNS)
    body = "".join("<tr>" + "".join(f'<td class="{"l" if k in left else ""}">{html.escape(r[k])}</td>' for k, _ in COLUMNS)
                   + "</tr>" for r in records)
    legend = "".join(f"<tr><td class='l'>{html.escape(r['label'])}</td><td class='l'><code>{html.escape(r['strategy'])}</code></td></tr>"
                     for r in records if r["label"] != r["strategy"])
    out = f"<div class='scroll'><table><tr>{th}</tr>{body}</table></div>"
    if legend:
        out += f"<p class='note'>Strategy specs:</p><table><tr><th class='l'>label</th><th class='l'>spec</th></tr>{legend}</table>"
    return out


def _checks_html(inputs: ReportInputs) -> str:
    s = inputs.summary.strategies
    viol = sum(x.bound_violations for x in s)
    slack = sum(x.budget_slack_rows for x in s)
    errors = sum(x.n_errors for x in s)
    return (f"<p class='note'>Score: conversions × min(1, (target CPA / realised CPA)²) per campaign. % of oracle "
            f"bound: score over the hindsight bound of the same campaign (the exact optimum of expected score "
            f"given the competitors' recorded bids). CPA violations: share of campaigns whose realised CPA "
            f"exceeds the target. Budget used: spend over budget. Exhausted early: share of campaigns whose "
            f"budget ran out before the period ended. Intervals are 95 % t-intervals over campaigns; paired "
            f"differences compare two strategies on the same seed, period and advertiser. Checks: {viol} rows "
            f"with expected score above their bound (must be 0), {slack} rows above the budget-B bound only "
            f"through expected spend above the budget, {errors} failed rows (counted, left out of every "
            f"statistic and figure).</p>")


def _page(inputs: ReportInputs, records: list[dict], sections: list[str], notes: list[str]) -> str:
    baseline = inputs.summary.paired[0].baseline if inputs.summary.paired else None
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<title>aigb evaluation report</title>"
            f"<style>{_CSS}</style></head><body>\n"
            "<h1>aigb evaluation report</h1>\n" + _inputs_html(inputs) +
            "<h2>Leaderboard</h2>\n" + _leaderboard_html(records, baseline, inputs.labels) + _checks_html(inputs) +
            "\n".join(sections) +
            (f"<h2>Not shown</h2><ul class='note'>{note_html}</ul>" if notes else "") +
            "<p class='note'>Made by <code>aigb report</code> from the evaluation files above alone.</p>"
            "</body></html>\n")


def build_report(dirs, out_dir, *, baseline: str | None = None, progress=None, force: bool = False) -> Report:
    """Write the report of the evaluation directories ``dirs`` into ``out_dir`` (module docstring).

    ``baseline``: the strategy paired differences are taken against (default: the first
    evaluation's ``--baseline``, else its first strategy). ``progress(stem)``, if given, is called
    before each figure is drawn."""
    inputs = load_inputs(dirs, baseline=baseline)
    records = leaderboard(inputs)
    base = inputs.summary.paired[0].baseline if inputs.summary.paired else None
    text = format_leaderboard(records, inputs.labels.get(base, base))
    out = claim_dir(out_dir, "report", force=force,
                    writes=("report.html", "leaderboard.json", "leaderboard.txt", *(f"{stem}.png" for stem, *_ in FIGURES)))
    sections, notes, written = [], [], []
    for stem, heading, builder, caption, missing in FIGURES:
        if progress is not None:
            progress(stem)
        fig = builder(inputs, records)
        if fig is None:
            notes.append(f"{heading}: {missing}.")
            (out / f"{stem}.png").unlink(missing_ok=True)
            continue
        png = figures.png_bytes(fig)
        with atomic_output(out / f"{stem}.png") as tmp:
            tmp.write_bytes(png)
        written.append(out / f"{stem}.png")
        if stem == "tick_spend" and inputs.tick_alpha is None:
            notes.append("Per-tick bid multiplier: this evaluation did not record ticks.parquet.")
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        # The leaderboard figure sits under the leaderboard table, without a heading of its own.
        title = "" if stem == "leaderboard" else f"<h2>{html.escape(heading)}</h2>\n"
        sections.append(f"{title}<figure><img src='{uri}' alt='{html.escape(heading)}'>"
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    page = _page(inputs, records, sections, notes)
    with atomic_output(out / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    with atomic_output(out / "leaderboard.json") as tmp:
        tmp.write_text(json.dumps(_finite({"baseline": base, "confidence": inputs.summary.confidence,
                                           "strategies": records}), indent=2, allow_nan=False) + "\n")
    with atomic_output(out / "leaderboard.txt") as tmp:
        tmp.write_text(text + "\n")
    return Report(out, out / "report.html", tuple(written), records, text, tuple(notes), _coverage(inputs), inputs.summary)


def _coverage(inputs: ReportInputs) -> tuple[str, ...]:
    return (*inputs.summary.notes, *coverage_lines(inputs.summary))


def _finite(value):
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

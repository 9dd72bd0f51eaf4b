"""The report's figures, drawn with matplotlib's object API (no pyplot, no global state).

Each ``fig_*`` takes ``ReportInputs`` (and the leaderboard where it needs the ranking) and returns a
``matplotlib.figure.Figure``, or ``None`` with nothing to draw (no plans, no sweep). Colours follow
the evaluation's strategy order; the hindsight-oracle strategy is always black and dashed. Money is
in the market's money units; ticks are the period's decision steps (48 in the default day).

* ``fig_leaderboard``: mean score, % of the oracle bound and the paired difference against the
  baseline, each with its 95 % interval.
* ``fig_budget_curves``: remaining budget over the day of sample campaigns, every strategy.
* ``fig_plans``: a planning strategy's plans at several ticks against what it realised.
* ``fig_delivery``: remaining budget against remaining time at every tick of every campaign.
* ``fig_exhaustion``: when budgets run out, and the tick-to-tick oscillation of spend.
* ``fig_tick_spend``: per-tick spend and bid multiplier over the day.
* ``fig_sweeps``: metrics against the one parameter that varies among specs of one strategy
  (e.g. DiffBid's guidance scale or return condition).
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from aigb.report.inputs import ReportInputs, spec_params

__all__ = ["colours", "sample_campaigns", "sweeps", "png_bytes", "fig_leaderboard", "fig_budget_curves", "fig_plans",
           "fig_delivery", "fig_exhaustion", "fig_tick_spend", "fig_sweeps"]

DPI = 100
_ORACLE = "oracle"


def is_oracle(spec: str) -> bool:
    return spec.partition(":")[0] == _ORACLE


def colours(inputs: ReportInputs) -> dict[str, tuple]:
    """Strategy spec -> colour: tab10 (then tab20) in evaluation order, black for the oracle."""
    palette = list(colormaps["tab10"].colors) + list(colormaps["tab20"].colors[1::2])
    out, i = {}, 0
    for spec in inputs.strategies:
        if is_oracle(spec):
            out[spec] = (0.0, 0.0, 0.0)
        else:
            out[spec] = palette[i % len(palette)]
            i += 1
    return out


def _style(spec: str) -> dict:
    return {"linestyle": "--", "linewidth": 2.0, "zorder": 5} if is_oracle(spec) else {"linewidth": 1.3}


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes; the same figure gives the same bytes (no timestamp is written)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig


def _legend_below(fig: Figure, handles, labels, ncol: int | None = None) -> None:
    """One legend under the panels, read row by row (matplotlib fills columns first, so reorder)."""
    n = len(labels)
    ncol = ncol or (n if n <= 6 else math.ceil(n / 2))
    rows = math.ceil(n / ncol)
    order = [r * ncol + c for c in range(ncol) for r in range(rows) if r * ncol + c < n]
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center", ncol=ncol,
               frameon=False, fontsize=9)


# ----------------------------------------------------------------------------------------------
# Leaderboard
# ----------------------------------------------------------------------------------------------

def fig_leaderboard(inputs: ReportInputs, records: list[dict]) -> Figure:
    """Three panels sharing the ranked strategy axis: score, % of the oracle bound, paired difference."""
    col = colours(inputs)
    n = len(records)
    fig = _figure(11, 1.2 + 0.38 * n)
    axes = fig.subplots(1, 3, sharey=True)
    y = np.arange(n)[::-1]
    baseline = inputs.summary.paired[0].baseline if inputs.summary.paired else None
    panels = (("score", "score per campaign (conversions × CPA penalty)", 1.0),
              ("pct_oracle", "% of the hindsight oracle bound", 100.0),
              ("d_score", f"Δ score vs {inputs.labels.get(baseline, baseline)} (paired)", 1.0))
    for ax, (key, xlabel, scale) in zip(axes, panels):
        for yi, r in zip(y, records):
            v = r["values"][key]
            if v is None or v["mean"] is None or math.isnan(v["mean"]):
                if key == "d_score" and r["strategy"] == baseline:
                    ax.text(0, yi, "baseline", ha="center", va="center", fontsize=8, color="0.35")
                continue
            m = v["mean"] * scale
            err = None if math.isnan(v["low"]) else [[m - v["low"] * scale], [v["high"] * scale - m]]
            ax.errorbar(m, yi, xerr=err, fmt="o", color=col[r["strategy"]], capsize=3, markersize=5)
            if key == "score":
                orc = r["values"]["oracle_score"]["mean"]
                if orc is not None and not math.isnan(orc):
                    ax.plot(orc, yi, marker="D", markerfacecolor="none", markeredgecolor="0.45", markersize=5)
        if key == "d_score":
            ax.axvline(0.0, color="0.5", linewidth=0.8)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", color="0.9")
    axes[0].set_yticks(y, [r["label"] for r in records])
    axes[0].set_ylim(-0.7, n - 0.3)
    handles = [Line2D([], [], marker="o", color="0.3", linestyle="none"),
               Line2D([], [], marker="D", markerfacecolor="none", markeredgecolor="0.45", linestyle="none")]
    _legend_below(fig, handles, ["mean with 95 % confidence interval over campaigns",
                                 "mean hindsight bound of the same campaigns"])
    return fig


# ----------------------------------------------------------------------------------------------
# Budget over the day
# ----------------------------------------------------------------------------------------------

def sample_campaigns(inputs: ReportInputs, k: int = 4, with_plans: bool = False) -> list[tuple[int, int, int]]:
    """Up to ``k`` (seed, period, advertiser) every strategy completed (with a plan, if asked),
    spread evenly over their sorted keys."""
    r = inputs.rows
    keys_by = [set(zip(r["seed"][i].tolist(), r["period"][i].tolist(), r["advertiser"][i].tolist()))
               for i in (inputs.select(s) for s in inputs.strategies)]
    keys_by = [k_ for k_ in keys_by if k_]
    common = set.intersection(*keys_by) if keys_by else set()
    if with_plans:
        common &= {key[1:] for key in inputs.plans}
    keys = sorted(common)
    if not keys:
        return []
    picks = np.unique(np.round(np.linspace(0, len(keys) - 1, min(k, len(keys)))).astype(int))
    return [keys[i] for i in picks]


def _row(inputs: ReportInputs, spec: str, key: tuple[int, int, int]) -> int | None:
    r = inputs.rows
    hit = np.flatnonzero((r["strategy"] == spec) & (r["seed"] == key[0]) & (r["period"] == key[1]) & (r["advertiser"] == key[2]))
    return int(hit[0]) if hit.size else None


def _remaining_curve(inputs: ReportInputs, i: int) -> np.ndarray:
    """(n_ticks + 1,) remaining budget at the start of each tick and after the last."""
    r = inputs.rows
    return np.append(r["remaining_budget"][i], r["budget"][i] - r["spend"][i])


def _campaign_title(inputs: ReportInputs, key, i: int) -> str:
    r = inputs.rows
    return (f"seed {key[0]}, period {key[1]:,}, advertiser {key[2]}\n"
            f"budget {r['budget'][i]:,.0f}, target CPA {r['target_cpa'][i]:,.0f}")


def fig_budget_curves(inputs: ReportInputs, k: int = 4) -> Figure | None:
    """Remaining budget over the day of ``k`` sample campaigns: every strategy's realised curve."""
    keys = sample_campaigns(inputs, k)
    if not keys:
        return None
    col = colours(inputs)
    ncols = 2 if len(keys) > 1 else 1
    nrows = math.ceil(len(keys) / ncols)
    fig = _figure(11, 0.6 + 3.1 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    ticks = np.arange(inputs.n_ticks + 1)
    for ax, key in zip(axes, keys):
        first = None
        for spec in inputs.strategies:
            i = _row(inputs, spec, key)
            if i is None:
                continue
            first = i if first is None else first
            ax.plot(ticks, _remaining_curve(inputs, i), color=col[spec], label=inputs.labels[spec], **_style(spec))
        ax.set_title(_campaign_title(inputs, key, first), fontsize=9)
        ax.set_xlabel("tick")
        ax.set_ylabel("remaining budget (money units)")
        ax.set_xlim(0, inputs.n_ticks)
        ax.set_ylim(bottom=0)
        ax.grid(color="0.92")
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_below(fig, handles, labels)
    return fig


def _plan_ticks(plans: list[tuple[int, np.ndarray]], k: int = 5) -> list[tuple[int, np.ndarray]]:
    if len(plans) <= k:
        return plans
    idx = np.unique(np.round(np.linspace(0, len(plans) - 1, k)).astype(int))
    return [plans[i] for i in idx]


def fig_plans(inputs: ReportInputs, k: int = 3) -> Figure | None:
    """Planned vs realised remaining budget: one row per planning strategy, ``k`` sample campaigns."""
    planners = [s for s in inputs.strategies if any(key[0] == s for key in inputs.plans)]
    keys = sample_campaigns(inputs, k, with_plans=True)
    if not planners or not keys:
        return None
    col = colours(inputs)
    oracle = next((s for s in inputs.strategies if is_oracle(s)), None)
    cmap = colormaps["viridis"]
    fig = _figure(11, 1.0 + 2.7 * len(planners))
    axes = fig.subplots(len(planners), len(keys), squeeze=False, sharex=True)
    ticks = np.arange(inputs.n_ticks + 1)
    for row, spec in enumerate(planners):
        for ax, key in zip(axes[row], keys):
            i = _row(inputs, spec, key)
            if i is None:
                ax.set_visible(False)
                continue
            if oracle is not None and (j := _row(inputs, oracle, key)) is not None:
                ax.plot(ticks, _remaining_curve(inputs, j), color="black", linestyle="--", linewidth=1.6)
            ax.plot(ticks, _remaining_curve(inputs, i), color=col[spec], linewidth=2.4)
            for plan_tick, curve in _plan_ticks(inputs.plans.get((spec, *key), [])):
                c = cmap(plan_tick / max(inputs.n_ticks, 1))
                t0 = min(plan_tick, inputs.n_ticks)
                ax.plot(ticks[t0:], curve[t0:], color=c, linewidth=1.1, linestyle=":")
                ax.plot(t0, curve[t0], marker="o", color=c, markersize=3.5)
            if row == 0:
                ax.set_title(_campaign_title(inputs, key, i), fontsize=9)
            if row == len(planners) - 1:
                ax.set_xlabel("tick")
            if ax is axes[row][0]:
                ax.set_ylabel(f"{inputs.labels[spec]}\nremaining budget (money units)")
            ax.set_xlim(0, inputs.n_ticks)
            ax.set_ylim(bottom=0)
            ax.grid(color="0.92")
    handles = [Line2D([], [], color="0.3", linewidth=2.4), Line2D([], [], color="black", linestyle="--"),
               Line2D([], [], color=cmap(0.15), linestyle=":", marker="o", markersize=3.5),
               Line2D([], [], color=cmap(0.85), linestyle=":", marker="o", markersize=3.5)]
    labels = ["realised", "oracle strategy (realised)", "plan made at an early tick (dot: where it starts)",
              "plan made at a late tick"]
    if oracle is None:
        handles.pop(1), labels.pop(1)
    _legend_below(fig, handles, labels, ncol=2)
    return fig


# ----------------------------------------------------------------------------------------------
# Delivery smoothness
# ----------------------------------------------------------------------------------------------

def _grid(fig: Figure, n: int, ncols: int = 4):
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n], nrows, ncols


def fig_delivery(inputs: ReportInputs) -> Figure | None:
    """Remaining budget (% of budget) against remaining time (% of the day), one point per
    (campaign, tick), one panel per strategy; the diagonal is spend proportional to time."""
    specs = [s for s in inputs.strategies if inputs.select(s).size]
    if not specs:
        return None
    col = colours(inputs)
    n_ticks = inputs.n_ticks
    ncols = min(4, len(specs))
    fig = _figure(11, 0.5 + 2.7 * math.ceil(len(specs) / ncols))
    axes, nrows, _ = _grid(fig, len(specs), ncols)
    time_left = 100.0 * (1.0 - np.arange(n_ticks + 1) / n_ticks)               # (n_ticks + 1,)
    for idx, (ax, spec) in enumerate(zip(axes, specs)):
        sel = inputs.select(spec)
        r = inputs.rows
        curves = np.column_stack([r["remaining_budget"][sel], r["budget"][sel] - r["spend"][sel]])
        share = 100.0 * curves / r["budget"][sel, None]                          # (n, n_ticks + 1)
        # Faint enough that where many campaigns run shows as density, dark enough for a few.
        alpha = float(np.clip(6.0 / len(sel), 0.04, 0.5))
        ax.plot(time_left, share.T, color=col[spec], alpha=alpha, linewidth=0.8, rasterized=True)
        ax.scatter(np.broadcast_to(time_left, share.shape).ravel(), share.ravel(), s=2.5, alpha=alpha,
                   color=col[spec], linewidths=0, rasterized=True)
        ax.plot(time_left, np.median(share, axis=0), color="black" if is_oracle(spec) else col[spec], linewidth=2.2)
        ax.plot([100, 0], [100, 0], color="0.4", linestyle="--", linewidth=0.9)
        early = np.mean((r["exhaustion_tick"][sel] >= 0) & (r["exhaustion_tick"][sel] < n_ticks - 1))
        ax.set_title(f"{inputs.labels[spec]}\nexhausted before the last tick: {100 * early:.0f}%", fontsize=8.5)
        ax.set_xlim(100, 0)
        ax.set_ylim(0, 102)
        ax.grid(color="0.92")
        if idx % ncols == 0:
            ax.set_ylabel("remaining budget (% of budget)")
        if idx >= len(specs) - ncols:
            ax.set_xlabel("remaining time (% of the day)")
            ax.tick_params(labelbottom=True)
    handles = [Line2D([], [], color="0.3", linewidth=0.8, marker="o", markersize=2.5, alpha=0.6),
               Line2D([], [], color="0.3", linewidth=2.2), Line2D([], [], color="0.4", linestyle="--")]
    _legend_below(fig, handles, ["one campaign (a point per tick)", "median over campaigns",
                                 "spend proportional to time"])
    return fig


def fig_exhaustion(inputs: ReportInputs) -> Figure | None:
    """Left: share of campaigns whose budget has run out by each tick. Right: spend oscillation."""
    specs = [s for s in inputs.strategies if inputs.select(s).size]
    if not specs:
        return None
    col = colours(inputs)
    n_ticks = inputs.n_ticks
    fig = _figure(11, max(3.6, 1.4 + 0.3 * len(specs)))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.1, 1])
    ticks = np.arange(n_ticks + 1)
    r = inputs.rows
    for spec in specs:
        ex = r["exhaustion_tick"][inputs.select(spec)]
        # exhaustion_tick t: the budget ran out during tick t, i.e. by the end of it (time t + 1).
        share = 100.0 * np.array([np.mean((ex >= 0) & (ex < t)) for t in ticks])
        ax1.step(ticks, share, where="post", color=col[spec], label=inputs.labels[spec], **_style(spec))
    ax1.set_xlabel("tick (budget state at its start)")
    ax1.set_ylabel("campaigns with the budget run out (%)")
    ax1.set_xlim(0, n_ticks)
    ax1.set_ylim(0, 100)
    ax1.grid(color="0.92")
    ax1.set_title("share of campaigns exhausted by each tick", fontsize=9)
    data = [r["spend_oscillation"][inputs.select(s)] for s in specs]
    data = [d[np.isfinite(d)] for d in data]
    y = np.arange(len(specs))[::-1]
    parts = ax2.boxplot([d if d.size else np.array([np.nan]) for d in data], positions=y, orientation="horizontal",
                        widths=0.6, patch_artist=True, showfliers=True,
                        flierprops={"markersize": 2.5, "markeredgecolor": "0.5"}, medianprops={"color": "black"})
    for patch, spec in zip(parts["boxes"], specs):
        patch.set_facecolor(col[spec])
        patch.set_alpha(0.55)
    ax2.set_yticks(y, [inputs.labels[s] for s in specs])
    ax2.set_xlabel("spend oscillation: Σ|Δ spend| / Σ spend (dimensionless)")
    ax2.set_title("tick-to-tick oscillation of spend per campaign", fontsize=9)
    ax2.grid(axis="x", color="0.92")
    handles, labels = ax1.get_legend_handles_labels()
    _legend_below(fig, handles, labels)
    return fig


def fig_tick_spend(inputs: ReportInputs) -> Figure | None:
    """Per-tick spend (% of the budget, mean over campaigns) and the bid multiplier alpha / CPA
    (median over campaigns) over the day."""
    specs = [s for s in inputs.strategies if inputs.select(s).size]
    if not specs:
        return None
    col = colours(inputs)
    r = inputs.rows
    with_alpha = inputs.tick_alpha is not None
    fig = _figure(11, 3.9)
    axes = fig.subplots(1, 2 if with_alpha else 1, squeeze=False).ravel()
    ticks = np.arange(inputs.n_ticks)
    for spec in specs:
        sel = inputs.select(spec)
        spend = 100.0 * r["tick_spend"][sel] / r["budget"][sel, None]
        axes[0].plot(ticks, np.nanmean(spend, axis=0), color=col[spec], label=inputs.labels[spec], **_style(spec))
        if with_alpha:
            ratio = inputs.tick_alpha[sel] / r["target_cpa"][sel, None]
            if np.isfinite(ratio).any():
                with np.errstate(all="ignore"):
                    med = np.nanmedian(np.where(np.isfinite(ratio), ratio, np.nan), axis=0)
                axes[1].plot(ticks, med, color=col[spec], **_style(spec))
    axes[0].set_xlabel("tick")
    axes[0].set_ylabel("spend in the tick (% of budget, mean)")
    axes[0].set_title("per-tick spend", fontsize=9)
    if with_alpha:
        axes[1].set_xlabel("tick")
        axes[1].set_ylabel("bid multiplier α / target CPA (median)")
        axes[1].set_title("per-tick bid multiplier (bids / p_value over the tick's PVs)", fontsize=9)
    for ax in axes:
        ax.set_xlim(0, inputs.n_ticks - 1)
        ax.set_ylim(bottom=0)
        ax.grid(color="0.92")
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_below(fig, handles, labels)
    return fig


# ----------------------------------------------------------------------------------------------
# Parameter sweeps
# ----------------------------------------------------------------------------------------------

def sweeps(specs) -> list[tuple[str, str, list[tuple[float, str]]]]:
    """``(name, parameter, [(value, spec), ...])`` for each group of at least two specs of one
    strategy name that differ in exactly one numeric ``key=value`` parameter (and the same checkpoint)."""
    groups: dict[tuple, list[tuple[dict, str]]] = {}
    for spec in specs:
        name, params, path = spec_params(spec)
        groups.setdefault((name, path), []).append((params, spec))
    out = []
    for (name, _), members in groups.items():
        if len(members) < 2:
            continue
        keys = sorted(set().union(*(p.keys() for p, _ in members)))
        varying = [k for k in keys if len({p.get(k) for p, _ in members}) > 1]
        if len(varying) != 1 or any(varying[0] not in p for p, _ in members):
            continue
        try:
            points = sorted((float(p[varying[0]]), spec) for p, spec in members)
        except ValueError:
            continue
        out.append((name, varying[0], points))
    return out


def fig_sweeps(inputs: ReportInputs) -> Figure | None:
    """One row per sweep: score, % of the oracle bound, CPA violations and budget used against the parameter."""
    found = sweeps(inputs.strategies)
    if not found:
        return None
    stats = {s.strategy: s for s in inputs.summary.strategies}
    fig = _figure(11, 0.6 + 2.9 * len(found))
    axes = fig.subplots(len(found), 3, squeeze=False)
    for row, (name, key, points) in enumerate(found):
        x = np.array([v for v, _ in points])
        ss = [stats[spec] for _, spec in points]
        for ax, (attr, scale, ylabel) in zip(axes[row, :2], (("score", 1.0, "score per campaign"),
                                                             ("pct_oracle", 100.0, "% of the oracle bound"))):
            m = np.array([getattr(s, attr).mean for s in ss]) * scale
            lo = np.array([getattr(s, attr).low for s in ss]) * scale
            hi = np.array([getattr(s, attr).high for s in ss]) * scale
            ax.errorbar(x, m, yerr=[np.nan_to_num(m - lo), np.nan_to_num(hi - m)], fmt="o-", capsize=3)
            ax.set_ylabel(ylabel)
        ax = axes[row, 2]
        ax.plot(x, [100 * s.cpa_violation_rate for s in ss], "o-", label="CPA violations")
        ax.plot(x, [100 * s.budget_utilisation.mean for s in ss], "s-", label="budget used")
        ax.set_ylabel("% of campaigns / % of budget")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8, frameon=False)
        axes[row, 0].set_title(f"{name}: sweep of {key}", fontsize=9, loc="left")
        for ax in axes[row]:
            ax.set_xlabel(f"{name}: {key}")
            ax.grid(color="0.92")
    return fig

"""What a report is drawn from: the files of one or more ``aigb evaluate --out`` directories.

``load_inputs(dirs)`` reads ``results.parquet`` and ``config.json`` of each (through
``aigb.eval.evaluate.load_results``, so the same checks apply), the summary and paired differences
through ``aigb.eval.evaluate.combine_results`` (the numbers ``aigb evaluate`` and ``aigb compare``
print), and the optional traces ``ticks.parquet`` and ``plans.parquet`` (``aigb.eval.traces``).
Rows with an error are kept for the leaderboard's counts and left out of every figure, as the
summary leaves them out of its statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aigb.eval.evaluate import combine_results, load_results
from aigb.eval.metrics import Summary
from aigb.eval.traces import PLANS_FILE, PLANS_SCHEMA, TICKS_FILE, TICKS_SCHEMA
from aigb.types import ConfigError

__all__ = ["ReportInputs", "load_inputs", "short_labels", "spec_params"]


@dataclass(frozen=True)
class ReportInputs:
    """Everything the tables and figures read."""

    dirs: tuple[str, ...]
    """The evaluation directories, as given."""
    config: dict
    """The first directory's evaluation config (market, periods, slots; all agree on these)."""
    seeds: tuple[int, ...]
    """Evaluation seeds over all directories."""
    summary: Summary
    """Per-strategy statistics and paired differences (``aigb.eval.metrics.summarize``)."""
    strategies: tuple[str, ...]
    """Strategy specs in table order."""
    labels: dict[str, str]
    """Spec -> short label for figures (checkpoint paths dropped where that stays unambiguous)."""
    rows: dict[str, np.ndarray]
    """Completed rows only: scalar columns (n,), ``tick_spend`` and ``remaining_budget`` (n, n_ticks)."""
    tick_alpha: np.ndarray | None
    """(n, n_ticks) bid multiplier per row of ``rows`` (NaN where not recorded); None without ticks.parquet."""
    plans: dict[tuple, list[tuple[int, np.ndarray]]]
    """(strategy, seed, period, advertiser) -> [(plan_tick, planned remaining budget (n_ticks + 1,))]."""

    @property
    def n_ticks(self) -> int:
        return int(self.config["market"]["n_ticks"])

    def select(self, strategy: str) -> np.ndarray:
        """Indices into ``rows`` of ``strategy``'s completed campaigns, in key order."""
        return np.flatnonzero(self.rows["strategy"] == strategy)


_SCALARS = ("strategy", "seed", "period", "advertiser", "category", "budget", "target_cpa", "spend",
            "conversions", "score", "oracle_score", "realized_cpa", "budget_utilisation", "exhaustion_tick",
            "spend_oscillation")


def spec_params(spec: str) -> tuple[str, dict[str, str], str]:
    """``(name, {key: value}, path)`` of a strategy spec: ``"fixed:rate=0.9"`` ->
    ``("fixed", {"rate": "0.9"}, "")``; ``"bc:runs/bc/best.pt"`` -> ``("bc", {}, "runs/bc/best.pt")``;
    ``"diffbid:runs/d/best.pt?w=1.2&return=0.9"`` -> ``("diffbid", {"w": "1.2", "return": "0.9"}, "runs/d/best.pt")``."""
    name, _, rest = spec.partition(":")
    if "?" in rest:   # a checkpoint with serving options (aigb.strategies.diffbid)
        path, _, query = rest.partition("?")
        tokens, path_parts = query.split("&"), [path]
    else:
        tokens, path_parts = rest.split(","), []
    params = {}
    for token in filter(None, tokens):
        key, eq, value = token.partition("=")
        if eq and "/" not in key:
            params[key.strip()] = value.strip()
        else:
            path_parts.append(token)
    return name, params, ",".join(path_parts)


def short_labels(specs) -> dict[str, str]:
    """Spec -> label: rule specs as they are (``fixed:rate=0.9``), checkpoints by their algorithm and
    options without the path (``bc``, ``diffbid (w=1.2, return=0.9)``); specs whose labels would
    coincide keep their full text."""
    short = {}
    for spec in specs:
        name, params, path = spec_params(spec)
        if not path:
            short[spec] = spec
        else:
            short[spec] = name + (" (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")
    counts = {}
    for label in short.values():
        counts[label] = counts.get(label, 0) + 1
    return {spec: (label if counts[label] == 1 else spec) for spec, label in short.items()}


def _matrix(lists, n_ticks: int) -> np.ndarray:
    """A list column -> (n, n_ticks) float64, NaN-padded."""
    out = np.full((len(lists), n_ticks), math.nan)
    for i, values in enumerate(lists):
        if values:
            v = np.asarray(values[:n_ticks], dtype=np.float64)
            out[i, : v.size] = v
    return out


def _read_optional(path: Path, schema: pa.Schema) -> pa.Table | None:
    if not path.is_file():
        return None
    table = pq.read_table(path)
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return table.select(schema.names).cast(schema)


def load_inputs(dirs, baseline: str | None = None) -> ReportInputs:
    """Read the evaluation directories ``dirs`` (see the module docstring).

    ``baseline``: the strategy paired differences are taken against; None takes the first
    directory's ``--baseline``, or else its first strategy."""
    dirs = tuple(str(d) for d in dirs)
    if not dirs:
        raise ConfigError("results: give at least one evaluation directory")
    tables, ticks, plans = [], [], []
    config = None
    for d in dirs:
        table, cfg = load_results(d)
        config = config or cfg
        tables.append(table)
        ticks.append(_read_optional(Path(d) / TICKS_FILE, TICKS_SCHEMA))
        plans.append(_read_optional(Path(d) / PLANS_FILE, PLANS_SCHEMA))
    table = pa.concat_tables(tables)
    strategies = tuple(dict.fromkeys(table.column("strategy").to_pylist()))
    if baseline is None:
        baseline = config.get("baseline") if config.get("baseline") in strategies else strategies[0]
    summary = combine_results(dirs, baseline=baseline)   # also refuses evaluations that do not pair up

    n_ticks = int(config["market"]["n_ticks"])
    seeds = tuple(sorted(set(table.column("seed").to_pylist())))
    ok = np.array([e is None for e in table.column("error").to_pylist()], dtype=bool)
    table = table.filter(pa.array(ok))
    rows = {k: np.array(table.column(k).to_pylist(), dtype=object if k == "strategy" else np.float64)
            for k in _SCALARS}
    for k in ("seed", "period", "advertiser", "category", "exhaustion_tick"):
        rows[k] = rows[k].astype(np.int64)
    rows["tick_spend"] = _matrix(table.column("tick_spend").to_pylist(), n_ticks)
    rows["remaining_budget"] = _matrix(table.column("remaining_budget").to_pylist(), n_ticks)
    keys = list(zip(rows["strategy"].tolist(), rows["seed"].tolist(), rows["period"].tolist(), rows["advertiser"].tolist()))
    index = {k: i for i, k in enumerate(keys)}

    tick_alpha = None
    present = [t for t in ticks if t is not None]
    if present:
        tick_alpha = np.full((len(keys), n_ticks), math.nan)
        for t in present:
            cols = t.to_pydict()
            for s, se, p, a, values in zip(cols["strategy"], cols["seed"], cols["period"], cols["advertiser"], cols["tick_alpha"]):
                i = index.get((s, se, p, a))
                if i is not None and values:
                    v = np.asarray(values[:n_ticks], dtype=np.float64)
                    tick_alpha[i, : v.size] = v

    plan_map: dict[tuple, list[tuple[int, np.ndarray]]] = {}
    for t in (t for t in plans if t is not None):
        cols = {k: np.asarray(v) for k, v in t.to_pydict().items()}
        key_cols = list(zip(cols["strategy"].tolist(), cols["seed"].tolist(), cols["period"].tolist(),
                            cols["advertiser"].tolist(), cols["plan_tick"].tolist()))
        grouped: dict[tuple, list[tuple[int, float]]] = {}
        for k, tick, value in zip(key_cols, cols["tick"].tolist(), cols["planned_remaining_budget"].tolist()):
            grouped.setdefault(k, []).append((tick, value))
        for (s, se, p, a, plan_tick), points in grouped.items():
            points.sort()
            curve = np.full(n_ticks + 1, math.nan)
            for tick, value in points:
                if 0 <= tick <= n_ticks:
                    curve[tick] = value
            plan_map.setdefault((s, se, p, a), []).append((int(plan_tick), curve))
    for v in plan_map.values():
        v.sort(key=lambda item: item[0])

    return ReportInputs(dirs=dirs, config=config, seeds=seeds, summary=summary, strategies=strategies,
                        labels=short_labels(strategies), rows=rows, tick_alpha=tick_alpha, plans=plan_map)

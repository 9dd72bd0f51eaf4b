"""What hindsight can teach a level bidder: counterfactual level tables of the training
days, two models fitted on them, and each model played on the quick set against CQL.

    python docs/experiments/probes/hindsight_levels.py tables --data data/train --periods 150 --out runs/hindsight/tables [--workers 2]
    python docs/experiments/probes/hindsight_levels.py fit --data data/train --tables runs/hindsight/tables --out runs/hindsight
    python docs/experiments/probes/hindsight_levels.py play --models runs/hindsight --against results/p1_cql \\
        [--planner runs/diffbid_level2/best_s.pt] [--workers 2]

The question: DiffBid's level planner ranks bid levels by what its plans forecast and CQL ranks
them by a Bellman critic; both learn what a level does from one logged level per day. In hindsight
every level of every training day can be scored. ``tables`` re-simulates the dataset's periods
(checking each against the dataset's logged spend) and, with every competitor's bid fixed as
recorded (the oracle's setting, ``aigb.strategies.oracle``), computes for each advertiser, tick and
level a on a grid from -3 to 2 (step 0.05) the expected spend and conversions of bidding exp(a) C x
p_value on every PV of the tick (GSP slots, net exposure, reserve: ``expected_outcome``'s rules).
``fit`` turns them into labels at every live (day, tick t): the score of the day if the bidder held
level a from t on after its logged prefix (budget cut inside the tick it runs out), as score x C / B,
and fits two MLPs (256, 256) on the signed-log, standardised v1 state: a **hold-value critic**
Q(s_t, a) (random levels per sample) and a **hindsight-level regressor** (the argmax level). Every
10th period is held out and reported. ``play`` plays, on the quick set (1 evaluation period x 48
slots, seed 0): the critic's best grid level each tick (``hold``), the level planner's searched levels
ranked by the critic (``hold+planner``, ``select=critic`` with this critic; needs --planner) and the
regressor's level (``level``), each paired against the ``cql:`` rows of --against. Figures are
printed, not asserted; models are saved as plain tensors (loaded with weights_only).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from aigb.data.generate import DEFAULT_MARKET, dataset_campaigns, dataset_identity, read_dataset_file
from aigb.score import score
from aigb.sim.auction import rank_bids
from aigb.sim.period import PeriodSim
from aigb.sim.population import EXPLORE
from aigb.strategies.oracle import uniform_bid_steps

GRID = np.linspace(-3.0, 2.0, 101)
"""Levels log(alpha / C) of the tables, step 0.05 over the action bounds."""
LIVE_BUDGET = 0.1
"""A tick is live while the remaining budget is at least the market's minimum (MarketConfig)."""


# ------------------------------------------------------------------------------ tables
def tick_tables(p_value: np.ndarray, bids: np.ndarray, cpa: np.ndarray, exposure, reserve: float) -> tuple[np.ndarray, np.ndarray]:
    """One tick: p_value, bids (n_pv, n_adv) as recorded, cpa (n_adv,) -> expected spend and
    conversions (n_adv, G) of each advertiser bidding exp(GRID) C p_value against the others' bids.

    The steps are the oracle's (``aigb.strategies.oracle.uniform_bid_steps``, against each advertiser's
    three best competitors): in level units a step happens at g_k = log(alpha_k / C); each PV adds its
    step at the grid index past g_k, and a cumulative sum over the grid gives every level at once."""
    n_pv, n_adv = bids.shape
    who, val = rank_bids(bids, 4)
    is_self = who[:, None, :] == np.arange(n_adv)[None, :, None]                     # (n_pv, n_adv, 4)
    order = np.argsort(is_self, axis=2, kind="stable")[..., :3]                       # the others, best first
    c = np.take_along_axis(np.broadcast_to(val[:, None, :], is_self.shape), order, axis=2)   # (n_pv, n_adv, 3)
    at, dw, dv = uniform_bid_steps(p_value.astype(np.float64).ravel(), c.reshape(-1, 3),
                                   np.asarray(exposure, dtype=np.float64), reserve)
    with np.errstate(divide="ignore"):
        g = np.log(at.reshape(c.shape) / cpa[None, :, None])
    idx = np.searchsorted(GRID, g, side="right")                                      # first level that outbids c_k
    n_levels = GRID.size + 1
    flat = (np.arange(n_adv)[None, :, None] * n_levels + idx).ravel()
    spend = np.bincount(flat, weights=dw.ravel(), minlength=n_adv * n_levels).reshape(n_adv, n_levels).cumsum(1)
    conv = np.bincount(flat, weights=dv.ravel(), minlength=n_adv * n_levels).reshape(n_adv, n_levels).cumsum(1)
    return spend[:, :GRID.size], conv[:, :GRID.size]


def _period_table(job: tuple[str, int, str]) -> str:
    data, period, out = job
    path = Path(out) / f"period={period:05d}.npz"
    if path.exists():
        return f"{period}: kept"
    start = time.perf_counter()
    market = DEFAULT_MARKET
    campaigns = dataset_campaigns(market, 0, period, True)
    sim = PeriodSim(market, 0, period, campaigns=campaigns, population=EXPLORE)
    cpa = np.array([c.target_cpa for c in campaigns])
    spend, conv = [], []
    while not sim.done:
        record = sim.step()
        s, v = tick_tables(record.p_value, record.outcome.bids, cpa, market.net_exposure_probs, market.reserve_price)
        spend.append(s)
        conv.append(v)
    logged = pq.read_table(Path(data) / "trajectories" / f"period={period:05d}.parquet", columns=["advertiser", "tick", "cost"]).to_pydict()
    resim = sim.history["cost"][np.asarray(logged["tick"]), np.asarray(logged["advertiser"])]
    if not np.allclose(resim, logged["cost"], rtol=0, atol=1e-6):
        raise SystemExit(f"period {period}: the re-simulated spend differs from the dataset's; is it the default dataset of seed 0?")
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, spend=np.stack(spend, 1).astype(np.float32), conv=np.stack(conv, 1).astype(np.float32),
             budget=sim.budget, cpa=cpa)
    os.replace(tmp, path)
    return f"{period}: {time.perf_counter() - start:.1f} s"


def tables(args) -> None:
    found = read_dataset_file(args.data)
    expected = dataset_identity(DEFAULT_MARKET, EXPLORE, True)
    if found is None or found.get("seed") != 0 or found.get("config") != expected:
        raise SystemExit(f"{args.data}: tables re-simulate the default dataset (aigb generate --seed 0, default market and population)")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jobs = [(args.data, p, args.out) for p in range(args.periods)]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for line in pool.imap(_period_table, jobs):
            print(line, flush=True)


# ------------------------------------------------------------------------------ labels and models
def hold_scores(spend: np.ndarray, conv: np.ndarray, spent_before: np.ndarray, conv_before: np.ndarray,
                budget: float, cpa: float) -> np.ndarray:
    """spend, conv (T, G) a day's table; spent_before, conv_before (T,) logged before each tick ->
    (T, G) the day's score if level g is held from tick t on (spend stops where the budget runs out,
    inside that tick in proportion)."""
    n_ticks = spend.shape[0]
    cs = np.vstack([np.zeros((1, GRID.size)), np.cumsum(spend, 0)])
    cv = np.vstack([np.zeros((1, GRID.size)), np.cumsum(conv, 0)])
    left = np.maximum(budget - spent_before, 0.0)                                     # (T,)
    total_s, total_v = cs[-1][None] - cs[:-1], cv[-1][None] - cv[:-1]                 # (T, G) from t to the end
    out_s, out_v = total_s.copy(), total_v.copy()
    for t in range(n_ticks):
        run = cs[t + 1:] - cs[t]                                                      # (T - t, G) through each tick
        over = run > left[t]
        hit = over.any(0)
        if not hit.any():
            continue
        u = over.argmax(0)                                                            # the tick the budget runs out
        g = np.flatnonzero(hit)
        before_s = np.where(u[g] > 0, run[np.maximum(u[g] - 1, 0), g], 0.0)
        before_v = np.where(u[g] > 0, (cv[t + 1:] - cv[t])[np.maximum(u[g] - 1, 0), g], 0.0)
        frac = np.clip((left[t] - before_s) / np.maximum(spend[t + u[g], g], 1e-12), 0.0, 1.0)
        out_s[t, g] = before_s + frac * spend[t + u[g], g]
        out_v[t, g] = before_v + frac * conv[t + u[g], g]
    return score(conv_before[:, None] + out_v, spent_before[:, None] + out_s, cpa)


def labelled(data: str, tables_dir: str) -> dict[str, np.ndarray]:
    """Every live (day, tick) of the tabled periods: v1 state, hold scores x C / B over GRID, period."""
    states, values, periods = [], [], []
    for path in sorted(Path(tables_dir).glob("period=*.npz")):
        period = int(path.stem.split("=")[1])
        z = np.load(path)
        d = pq.read_table(Path(data) / "trajectories" / f"period={period:05d}.parquet",
                          columns=["advertiser", "tick", "state", "cost", "conversions", "remaining_budget"]).to_pydict()
        adv, tick = np.asarray(d["advertiser"]), np.asarray(d["tick"])
        obs = np.asarray(d["state"], dtype=np.float32)
        logged_cost, logged_conv, left = (np.asarray(d[k]) for k in ("cost", "conversions", "remaining_budget"))
        n_ticks = z["spend"].shape[1]
        for a in range(z["spend"].shape[0]):
            rows = np.flatnonzero(adv == a)
            rows = rows[np.argsort(tick[rows])]
            cost, conv = np.zeros(n_ticks), np.zeros(n_ticks)
            cost[tick[rows]] = logged_cost[rows]
            conv[tick[rows]] = logged_conv[rows]
            before_s = np.concatenate([[0.0], np.cumsum(cost)[:-1]])
            before_v = np.concatenate([[0.0], np.cumsum(conv)[:-1]])
            budget, cpa = float(z["budget"][a]), float(z["cpa"][a])
            sc = hold_scores(z["spend"][a].astype(np.float64), z["conv"][a].astype(np.float64), before_s, before_v, budget, cpa)
            live = left[rows] >= LIVE_BUDGET
            states.append(obs[rows][live])
            values.append((sc[tick[rows]] * cpa / budget)[live].astype(np.float32))
            periods.append(np.full(int(live.sum()), period))
    return {"state": np.concatenate(states), "value": np.concatenate(values), "period": np.concatenate(periods)}


def signed_log(x):
    return np.sign(x) * np.log1p(np.abs(x))


def _mlp(n_in: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))


def fit(args) -> None:
    torch.manual_seed(0)
    data = labelled(args.data, args.tables)
    x = signed_log(data["state"].astype(np.float64))
    mean, std = x.mean(0), x.std(0) + 1e-6
    xn = torch.tensor((x - mean) / std, dtype=torch.float32)
    value = torch.from_numpy(data["value"])
    best = torch.from_numpy(GRID[data["value"].argmax(1)].astype(np.float32))
    held = data["period"] % 10 == 0
    train_rows, val_rows = np.flatnonzero(~held), np.flatnonzero(held)
    grid = torch.tensor(GRID, dtype=torch.float32)
    print(f"{len(data['state'])} live (day, tick) pairs from {len(np.unique(data['period']))} periods; "
          f"{len(val_rows)} held out; hindsight level mean {float(best.mean()):.3f}, SD {float(best.std()):.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for kind, steps in (("hold", args.critic_steps), ("level", args.level_steps)):
        net = _mlp(xn.shape[1] + (1 if kind == "hold" else 0))
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, 1e-4)
        for step in range(steps):
            b = torch.from_numpy(train_rows[rng.integers(0, train_rows.size, 1024)])
            if kind == "hold":
                g = torch.from_numpy(rng.integers(0, GRID.size, 1024))
                loss = ((net(torch.cat([xn[b], grid[g, None] / 2], 1))[:, 0] - value[b, g]) ** 2).mean()
            else:
                loss = ((net(xn[b])[:, 0] - best[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            v = torch.from_numpy(val_rows[:20000])
            if kind == "hold":
                cols = np.arange(0, GRID.size, 5)
                pred = torch.stack([net(torch.cat([xn[v], grid[j].expand(len(v), 1) / 2], 1))[:, 0] for j in cols], 1)
                truth = value[v][:, cols]
                picked = truth.gather(1, pred.argmax(1, keepdim=True))[:, 0]
                print(f"hold-value critic, {steps} updates: held-out MSE {float(((pred - truth) ** 2).mean()):.4f} "
                      f"(variance {float(truth.var()):.4f}); hindsight best {float(truth.max(1).values.mean()):.4f} x B / C, "
                      f"the critic's pick {float(picked.mean()):.4f}")
            else:
                mse = float(((net(xn[v])[:, 0] - best[v]) ** 2).mean())
                print(f"hindsight-level regressor, {steps} updates: held-out MSE {mse:.4f} (variance {float(best[v].var()):.4f})")
        torch.save({"weights": net.state_dict(), "mean": torch.from_numpy(mean), "std": torch.from_numpy(std)}, out / f"{kind}.pt")
    print(f"wrote {out / 'hold.pt'} and {out / 'level.pt'}")


# ------------------------------------------------------------------------------ play
class _Model:
    def __init__(self, path: Path, n_in: int) -> None:
        payload = torch.load(path, weights_only=True)
        self.net = _mlp(n_in)
        self.net.load_state_dict(payload["weights"])
        self.net.eval()
        self.mean, self.std = payload["mean"].numpy(), payload["std"].numpy()

    def state(self, features) -> torch.Tensor:
        return torch.tensor((signed_log(np.asarray(features, dtype=np.float64)) - self.mean) / self.std, dtype=torch.float32)


class HoldCritic(_Model):
    """The hold-value critic with ``LevelCritic``'s interface, so a level planner can rank by it."""

    source = "hindsight hold-value critic"

    def __init__(self, path: Path) -> None:
        from aigb.features import FEATURE_DIM

        super().__init__(path, FEATURE_DIM + 1)
        self.feature_dim = FEATURE_DIM

    def values(self, state, actions) -> np.ndarray:
        a = torch.as_tensor(np.asarray(actions, dtype=np.float32))[:, None] / 2
        with torch.no_grad():
            return self.net(torch.cat([self.state(state).expand(len(a), -1), a], 1))[:, 0].double().numpy()


def _strategy(kind: str, models: Path, planner: str | None):
    from aigb.features import FEATURE_DIM
    from aigb.strategies.base import AlphaStrategy

    if kind == "hold+planner":
        from aigb.strategies.diffbid import DiffBidStrategy, load_diffbid_strategy

        base = load_diffbid_strategy(f"{planner}?steps=5")
        base.planner.critic, base.planner.select = HoldCritic(models / "hold.pt"), "critic"
        return DiffBidStrategy(base.planner, kind)
    critic = HoldCritic(models / "hold.pt") if kind == "hold" else None
    regressor = _Model(models / "level.pt", FEATURE_DIM) if kind == "level" else None

    class Hindsight(AlphaStrategy):
        name = kind

        def reset(self, campaign, n_ticks, seed) -> None:
            pass

        def alpha(self, obs) -> float:
            if critic is not None:
                a = float(GRID[int(np.argmax(critic.values(obs.features, GRID)))])
            else:
                with torch.no_grad():
                    a = float(regressor.net(regressor.state(obs.features)[None])[0, 0])
            return float(np.exp(np.clip(a, GRID[0], GRID[-1])) * obs.campaign.target_cpa)

    return Hindsight()


def _play(job: tuple[str, str, str | None, int]) -> tuple[str, int, float, float]:
    from aigb.eval.rollout import rollout
    from aigb.sim.population import market_population
    from aigb.types import MarketConfig

    kind, models, planner, advertiser = job
    torch.set_num_threads(1)
    row = rollout(_strategy(kind, Path(models), planner), kind, MarketConfig(), 0, 1_000_000, advertiser, market_population(MarketConfig()))
    return kind, advertiser, float(row["score"]), float(row["expected_score"])


def play(args) -> None:
    ref = pq.read_table(Path(args.against) / "results.parquet").to_pydict()
    cql = {ref["advertiser"][i]: (ref["score"][i], ref["expected_score"][i]) for i in range(len(ref["score"]))
           if ref["strategy"][i].startswith("cql:") and ref["seed"][i] == 0 and ref["period"][i] == 1_000_000}
    if len(cql) != 48:
        raise SystemExit(f"{args.against}: expected the cql: rows of the quick set (1 period x 48 slots, seed 0), found {len(cql)}")
    kinds = ["hold", "level"] + (["hold+planner"] if args.planner else [])
    jobs = [(k, args.models, args.planner, a) for k in kinds for a in range(48)]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        rows = pool.map(_play, jobs)
    print(f"quick set, 48 campaigns paired against {args.against}'s cql rows (mean ±95% CI half-width)")
    print(f"{'strategy':<14} {'score':>7} {'d score vs cql':>16} {'d exp. score':>14}")
    print(f"{'cql':<14} {np.mean([v[0] for v in cql.values()]):>7.2f}")
    summary = {}
    for k in kinds:
        mine = {a: (s, e) for kind, a, s, e in rows if kind == k}
        d = np.array([mine[a][0] - cql[a][0] for a in range(48)])
        de = np.array([mine[a][1] - cql[a][1] for a in range(48)])
        half = lambda x: 1.96 * x.std(ddof=1) / math.sqrt(x.size)
        mean_score = float(np.mean([mine[a][0] for a in range(48)]))
        summary[k] = {"score": round(mean_score, 2), "d": round(float(d.mean()), 2), "d_ci": round(half(d), 2),
                      "d_exp": round(float(de.mean()), 2), "d_exp_ci": round(half(de), 2)}
        print(f"{k:<14} {mean_score:>7.2f} {d.mean():>+9.2f} ±{half(d):.2f} {de.mean():>+7.2f} ±{half(de):.2f}")
    print(json.dumps({"benchmark": "hindsight_levels", "models": args.models, "results": summary}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tables", help="counterfactual level tables of the dataset's first periods")
    t.add_argument("--data", required=True)
    t.add_argument("--periods", type=int, default=150)
    t.add_argument("--out", required=True)
    t.add_argument("--workers", type=int, default=2)
    f = sub.add_parser("fit", help="the hold-value critic and the hindsight-level regressor")
    f.add_argument("--data", required=True)
    f.add_argument("--tables", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--critic-steps", type=int, default=3000)
    f.add_argument("--level-steps", type=int, default=1500)
    p = sub.add_parser("play", help="the models on the quick set, paired against CQL")
    p.add_argument("--models", required=True)
    p.add_argument("--against", required=True, help="an evaluation directory with the quick set's cql: rows")
    p.add_argument("--planner", default=None, help="a level planner checkpoint: also rank its levels by the critic")
    p.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    {"tables": tables, "fit": fit, "play": play}[args.command](args)


if __name__ == "__main__":
    main()

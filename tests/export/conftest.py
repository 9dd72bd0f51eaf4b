"""Tiny trained checkpoints of every learned algorithm on a tiny dataset of the default market (v3, v1 features),
and a small market of the default version."""

import pytest

from aigb.export.exporter import export_neurips2024
from aigb.types import Campaign, MarketConfig

torch = pytest.importorskip("torch")

MARKET = MarketConfig(n_pv=20_000, n_advertisers=8, preset="dense")
"""The golden tests' market: 48 ticks (the planner's day), ~400 PVs a tick, dense enough in
conversions that the CPA features move."""
SEED, PERIOD, SLOT = 5, 1_000_003, 3


def tight_campaign(budget: float = 150.0) -> Campaign:
    """The slot's campaign with a budget that runs out within the day in MARKET (the harness then
    stops asking, and the market caps the tick that overspends)."""
    from aigb.sim.period import PeriodSim

    c = PeriodSim(MARKET, SEED, PERIOD).campaigns[SLOT]
    return Campaign(SLOT, c.category, budget, c.target_cpa)


# Small networks on the v1 features, trained a few updates: enough for actions that move with the
# state. The DT needs a tick table for 48-tick days; DiffBid plans 48-tick days of market plans,
# its transformer predicting the clean plan with the realised-row flags (the defaults), its U-Net
# predicting the noise without them.
TINY = {
    "bc": {"hidden_dims": (32, 32), "batch_size": 32},
    "iql": {"hidden_dims": (32, 32), "batch_size": 32},
    "cql": {"hidden_dims": (32, 32), "batch_size": 32, "n_action_samples": 2},
    "oil": {"hidden_dims": (32, 32), "batch_size": 32},
    "dt": {"context_len": 4, "embed_dim": 16, "n_layers": 1, "n_heads": 2, "max_ticks": 48, "batch_size": 8, "warmup_steps": 2},
    "dt-campaign": {"context_len": 4, "embed_dim": 16, "n_layers": 1, "n_heads": 2, "max_ticks": 48, "batch_size": 8,
                      "warmup_steps": 2, "target_scale": "campaign"},
    "dt-data": {"context_len": 4, "embed_dim": 16, "n_layers": 1, "n_heads": 2, "max_ticks": 48, "batch_size": 8,
                "warmup_steps": 2, "target_scale": "data", "rtg_decrement": "conversions"},
    "diffbid": {"d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16, "diffusion_steps": 20, "sampling_steps": 3,
                "idm_hidden_dims": (32, 32), "warmup_steps": 2, "batch_size": 16},
    "diffbid-oracle": {"condition": "oracle", "guidance": 1.0, "d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16,
                       "diffusion_steps": 20, "sampling_steps": 3, "idm_hidden_dims": (32, 32), "warmup_steps": 2, "batch_size": 16},
    "diffbid-unet": {"denoiser": "unet", "known_input": False, "prediction": "eps", "unet_dim": 4, "emb_dim": 8, "diffusion_steps": 20, "sampling_steps": 1,
                     "idm_hidden_dims": (16, 16), "warmup_steps": 2, "batch_size": 8},
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def realised_plans(algo, data):
    """The labelled states an oracle-form DiffBid learns from, here every tick of the dataset's days
    with the realised rest of the day as the target (the export only needs trained weights)."""
    import numpy as np

    from aigb.workflows.oil import LabelledPlans

    tr = data.trajectories()
    n, t_max = tr["action"].shape
    days = np.repeat(np.concatenate([tr["obs"], tr["terminal"][:, None]], axis=1), t_max, axis=0)   # (n T, T+1, F)
    tick = np.tile(np.arange(t_max), n)
    fields = algo.oracle_fields(days, tick)
    return LabelledPlans({"obs": days[np.arange(tick.size), tick], "action": tr["action"].reshape(-1), "tick": tick,
                          "efficiency": np.repeat(data.campaign_efficiency, t_max), **fields}, "cpa")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name -> path of a tiny checkpoint (bc, iql, cql, oil, dt, diffbid, diffbid-oracle, diffbid-unet)."""
    from aigb.algos.checkpoint import save_checkpoint
    from aigb.algos.registry import make_algorithm
    from aigb.data.dataset import TrajectoryDataset
    from aigb.data.generate import generate_dataset
    from aigb.features import FEATURE_DIM
    from aigb.seeding import rng

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("checkpoints")
        generate_dataset(root / "data", periods=2, seed=11, market=MarketConfig(n_pv=3000, n_advertisers=8), progress=False)
        data = TrajectoryDataset.load(root / "data")
        paths = {}
        for key, overrides in TINY.items():
            algo = make_algorithm(key.split("-")[0], FEATURE_DIM, overrides, seed=0)
            source = realised_plans(algo, data) if key == "diffbid-oracle" else data
            algo.prepare(source, 0)
            g = rng(0, "export-test", len(paths))
            for _ in range(5):
                algo.update(algo.sample_batch(source, algo.config.batch_size, g))
            paths[key] = save_checkpoint(root / f"{key}.pt", algo, with_optimizers=False)
    finally:
        torch.set_num_threads(before)
    return paths


@pytest.fixture(scope="session")
def lp_prior_path(tmp_path_factory):
    """An OnlineLP prior fitted on one period of MARKET (the default prior simulates 8 default periods)."""
    from aigb.strategies.rules import fit_lp_prior

    return fit_lp_prior(MARKET, periods=1).save(tmp_path_factory.mktemp("prior") / "prior.npz")


EXPORT_SEED = 7
SOURCES = {   # key -> source (checkpoint paths and the prior filled in by the fixtures)
    "fixed": "fixed:rate=5",
    "pid": "pid:gain=1.5,rate=2",
    "onlinelp": "onlinelp:cap=1.5,prior=none",
    "onlinelp-prior": "onlinelp:cap=2,prior={prior}",
    "bc": "{bc}",                                    # a bare checkpoint path
    "iql": "iql:{iql}",
    "cql": "{cql}",
    "dt": "dt:{dt}",
    "dt-campaign": "dt:{dt-campaign}?return=0.8",
    "dt-data": "dt:{dt-data}",
    "oil": "oil:{oil}",
    "diffbid": "diffbid:{diffbid}?w=1.5&return=0.7&steps=2&temperature=0.8&eta=0.5",
    "diffbid-oracle": "diffbid:{diffbid-oracle}",
    "diffbid-unet": "{diffbid-unet}",
}
KINDS = {"fixed": "rule", "pid": "rule", "onlinelp": "rule", "onlinelp-prior": "rule", "bc": "state_policy",
         "iql": "state_policy", "cql": "state_policy", "oil": "state_policy", "dt": "dt", "dt-campaign": "dt", "dt-data": "dt",
         "diffbid": "diffbid", "diffbid-oracle": "diffbid", "diffbid-unet": "diffbid"}


@pytest.fixture(scope="session")
def exports(tmp_path_factory, checkpoints, lp_prior_path):
    """key -> (spec of the aigb strategy, exported folder), exported on first use."""
    done = {}
    root = tmp_path_factory.mktemp("exports")

    def get(key):
        if key not in done:
            source = SOURCES[key].format(prior=lp_prior_path, **{k: str(v) for k, v in checkpoints.items()})
            # The prior's row of the slot played, as the aigb OnlineLP picks it there.
            report = export_neurips2024(source, root / key, market=MARKET, seed=EXPORT_SEED,
                                        advertiser=SLOT if key == "onlinelp-prior" else None)
            done[key] = (report.spec, report.out, report)
        return done[key]
    return get

"""Tiny trained checkpoints of every learned algorithm on a tiny v1 dataset, and a small market."""

import pytest

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
# state. The DT needs a tick table for 48-tick days; DiffBid plans 48-tick days of market plans.
TINY = {
    "bc": {"hidden_dims": (32, 32), "batch_size": 32},
    "iql": {"hidden_dims": (32, 32), "batch_size": 32},
    "cql": {"hidden_dims": (32, 32), "batch_size": 32, "n_action_samples": 2},
    "dt": {"context_len": 4, "embed_dim": 16, "n_layers": 1, "n_heads": 2, "max_ticks": 48, "batch_size": 8, "warmup_steps": 2},
    "diffbid": {"d_model": 16, "n_layers": 1, "n_heads": 2, "emb_dim": 16, "diffusion_steps": 20, "sampling_steps": 3,
                "idm_hidden_dims": (32, 32), "warmup_steps": 2, "batch_size": 16},
    "diffbid-unet": {"denoiser": "unet", "unet_dim": 4, "emb_dim": 8, "diffusion_steps": 20, "sampling_steps": 1,
                     "idm_hidden_dims": (16, 16), "warmup_steps": 2, "batch_size": 8},
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name -> path of a tiny checkpoint (bc, iql, cql, dt, diffbid, diffbid-unet)."""
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
            algo.prepare(data, 0)
            g = rng(0, "export-test", len(paths))
            for _ in range(5):
                algo.update(algo.sample_batch(data, algo.config.batch_size, g))
            paths[key] = save_checkpoint(root / f"{key}.pt", algo, with_optimizers=False)
    finally:
        torch.set_num_threads(before)
    return paths


@pytest.fixture(scope="session")
def lp_prior_path(tmp_path_factory):
    """An OnlineLP prior fitted on one period of MARKET (the default prior simulates 8 default periods)."""
    from aigb.strategies.rules import fit_lp_prior

    return fit_lp_prior(MARKET, periods=1).save(tmp_path_factory.mktemp("prior") / "prior.npz")

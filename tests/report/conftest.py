import pytest

from aigb.types import MarketConfig

from tests.report.planner import evaluate_with_traces

MARKET = MarketConfig(n_pv=4000, n_ticks=12, n_advertisers=8)
SPECS = ["fixed", "pid", "oracle", "test-planner:rate=0.8", "test-planner:rate=1.2"]


@pytest.fixture(scope="session")
def evaluation(tmp_path_factory):
    """A tiny deterministic evaluation with its traces: 5 strategies x 2 periods x 3 slots."""
    out = tmp_path_factory.mktemp("evaluation")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIGB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "aigb-cache"))
        evaluate_with_traces(SPECS, out, periods=2, slots=3, market=MARKET, baseline="fixed")
    return out


@pytest.fixture(scope="session")
def report_dir(evaluation, tmp_path_factory):
    from aigb.report import build_report

    out = tmp_path_factory.mktemp("report")
    build_report([evaluation], out)
    return out

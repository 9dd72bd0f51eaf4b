"""The layers stay as drawn: import-linter's contracts (pyproject.toml, [tool.importlinter]), no
import circle between checkpoints and the algorithm registry, and reading, simulating and reporting
without torch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold(capsys):
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert " 0 broken" in report


def test_checkpoints_and_the_registry_import_no_circle():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("aigb", cache_dir=None)
    assert graph.find_shortest_chain(importer="aigb.algos.checkpoint", imported="aigb.algos.registry") is not None
    assert graph.find_shortest_chain(importer="aigb.algos.registry", imported="aigb.algos.checkpoint") is None


def test_simulating_reading_and_reporting_load_no_torch():
    """What a user without torch runs (simulate, generate, evaluate rule strategies, report, parse a
    diffbid spec) imports no torch; a learned strategy loads it when it is built."""
    code = ("import sys\n"
            "import aigb.sim.runs, aigb.data.generate, aigb.eval.evaluate, aigb.report.build, aigb.report.figures\n"
            "import aigb.strategies.registry, aigb.strategies.diffbid, aigb.algos.diffbid.objectives\n"
            "from aigb.strategies.diffbid import serving_config\n"
            "serving_config('b.pt@own?guide=cpa:0.9')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]

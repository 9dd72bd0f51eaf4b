"""The exported folders in a fresh virtual environment: numpy 1.24, torch, and no aigb.

Slow (the first run installs torch into a venv cached under pytest's cache directory, ~2 min and
~1 GB; later runs reuse it): ``pytest -m slow tests/export/test_venv.py``, or ``make test-export``, which
CI runs. Skipped, with the reason, where that environment cannot be built (no package index, no
venv module); under AIGB_REQUIRE_ALL_TESTS=1 (CI) that fails instead.
"""

import os
import subprocess
import sys

import pytest

from tests.conftest import skip_or_fail

NUMPY, TORCH = "1.24.4", "2.13.0"
KEYS = ("fixed", "pid", "onlinelp-prior", "bc", "cql", "dt", "diffbid", "diffbid-unet")

pytestmark = pytest.mark.slow


def _torch_index() -> list[str]:
    """pip options for torch's CPU build (PyPI's Linux wheels are multi-GB CUDA builds): the index
    the Makefile uses, AIGB_TORCH_INDEX, as an extra index ('2.13.0+cpu' sorts above '2.13.0')."""
    index = os.environ.get("AIGB_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")
    return ["--extra-index-url", index] if index else []


def _clean_env() -> dict:
    """This environment without PYTHONPATH: the venv must not see aigb through it."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _run(*args, timeout=900, cwd=None):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_clean_env())


@pytest.fixture(scope="module")
def old_stack(request):
    """Python of a venv with numpy 1.24 and torch only (built once, then reused from the cache)."""
    root = request.config.cache.mkdir("aigb-export-venv")
    python = root / "bin" / "python"
    ready = root / f"ready-numpy{NUMPY}-torch{TORCH}"
    if not (ready.is_file() and python.is_file()):
        made = _run(sys.executable, "-m", "venv", "--clear", str(root))
        if made.returncode != 0:
            skip_or_fail(f"cannot create a virtual environment: {made.stderr.strip()[-300:]}")
        got = _run(str(python), "-m", "pip", "install", "--quiet", *_torch_index(), f"numpy=={NUMPY}", f"torch=={TORCH}",
                   timeout=1800)
        if got.returncode != 0:
            skip_or_fail(f"cannot install numpy {NUMPY} and torch {TORCH} into a fresh venv: {got.stderr.strip()[-300:]}")
        ready.write_text("ok\n")
    return python


def test_the_venv_is_the_old_stack_without_aigb(old_stack, tmp_path):
    versions = _run(str(old_stack), "-c", "import numpy, torch; print(numpy.__version__, torch.__version__)", cwd=tmp_path)
    assert versions.returncode == 0 and versions.stdout.split()[0] == NUMPY, versions.stderr
    assert _run(str(old_stack), "-c", "import aigb", cwd=tmp_path).returncode != 0


@pytest.mark.parametrize("key", KEYS)
def test_exported_folder_replays_its_period_on_numpy_1_24(key, old_stack, exports, tmp_path):
    _, folder, _ = exports(key)
    done = _run(str(old_stack), str(folder / "selftest.py"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
    print(f"{key}: {done.stdout.strip()}")

"""The report as a person sees it: headless Chromium (Debian's ``chromium`` package) screenshots
report.html; the page must show its figures (colour from the plots, not broken-image boxes)."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from tests.conftest import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")



@pytest.fixture(autouse=True)
def _chromium():
    if not CHROMIUM.exists():
        skip_or_fail("headless Chromium is not installed (/usr/bin/chromium; `apt-get install chromium` on Debian, "
                     "`make test-deps`)")


def screenshot(page: Path, out: Path, height: int = 6000) -> np.ndarray:
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size=1280,{height}", f"--screenshot={out}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    return imread(out)[..., :3]


def coloured_pixels(image: np.ndarray) -> int:
    """Pixels with a clear hue (the plots' lines and boxes); text and borders are grey."""
    return int(((image.max(axis=2) - image.min(axis=2)) > 0.3).sum())


def test_report_renders_with_its_figures_in_chromium(report_dir, tmp_path):
    shot = screenshot(report_dir / "report.html", tmp_path / "report.png")
    assert shot.shape[1] == 1280
    # The same page with its images removed is the reference for "no figure rendered".
    bare = tmp_path / "bare.html"
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    bare.write_text(re.sub(r"src='[^']*'", "src=''", page), encoding="utf-8")
    blank = screenshot(bare, tmp_path / "bare.png")
    assert coloured_pixels(blank) < 1000
    assert coloured_pixels(shot) > 20 * max(coloured_pixels(blank), 1000)
    # Nothing runs off the right edge: the page's content ends inside the window.
    rows, cols = np.nonzero((shot < 0.97).any(axis=2))
    assert cols.max() < 1270
    shutil.copy(tmp_path / "report.png", report_dir / "screenshot.png")   # kept for a person to look at

"""Moved to ``aigb.algos.diffbid.plans``; this name stays importable and is that same module."""

import sys

from aigb.algos.diffbid import plans

sys.modules[__name__] = plans

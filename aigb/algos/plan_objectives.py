"""Moved to ``aigb.algos.diffbid.objectives``; this name stays importable and is that same module."""

import sys

from aigb.algos.diffbid import objectives

sys.modules[__name__] = objectives

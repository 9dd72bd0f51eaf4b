"""Moved to ``aigb.algos.diffbid.evaluator``; this name stays importable and is that same module."""

import sys

from aigb.algos.diffbid import evaluator

sys.modules[__name__] = evaluator

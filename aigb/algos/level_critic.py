"""Moved to ``aigb.algos.diffbid.critic``; this name stays importable and is that same module."""

import sys

from aigb.algos.diffbid import critic

sys.modules[__name__] = critic

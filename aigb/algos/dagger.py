"""The DAgger schedule of the learners that imitate the hindsight oracle in the simulator (``oil``
and DiffBid's ``condition="oracle"`` form): which training periods each round rolls out, which
slots, and how the expert's share decays (Ross et al. 2011). No torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aigb.algos.validation import require

__all__ = ["DAggerSchedule"]


@dataclass(frozen=True)
class DAggerSchedule:
    """Rounds of rollouts on training periods, labelled by the oracle and aggregated."""

    rounds: int = 6
    """DAgger rounds; round 0 rolls the oracle itself (expert share 1). Measured for OIL on the
    default market (one period a round): validation score 25.1 after round 0, 28.7, 26.1, 29.9,
    30.5, 30.3 after rounds 1-5; re-running a finished run with more rounds continues it."""
    periods_per_round: int = 1
    """Training periods rolled per round, each with every slot of ``slots``; round i plays periods
    i * periods_per_round onward, so no period is played twice."""
    slots: tuple[int, ...] = ()
    """Advertiser slots the student plays in each period; empty: all of the market's advertisers."""
    expert_decay: float = 0.0
    """Expert share beta_i = expert_decay ** i after round 0: at each tick of round i the oracle acts
    with probability beta_i, the student otherwise (Ross et al.'s mixture). 0: pure DAgger after
    round 0 (what was measured; each round with an expert also pays for its replays)."""
    reference: str = "pid"
    """Rule strategy the expert replays each period with before planning on its hindsight."""

    def _check_schedule(self) -> None:
        for name in ("rounds", "periods_per_round"):
            value = getattr(self, name)
            require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1, name,
                    f"must be an integer >= 1, got {value!r}")
        slots = tuple(self.slots)
        require(all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in slots), "slots",
                f"must be advertiser indices >= 0, got {self.slots!r}")
        require(len(set(slots)) == len(slots), "slots", f"lists an advertiser twice: {self.slots!r}")
        object.__setattr__(self, "slots", tuple(int(s) for s in slots))
        require(0.0 <= self.expert_decay <= 1.0, "expert_decay", f"must lie in [0, 1], got {self.expert_decay}")
        require(isinstance(self.reference, str) and self.reference.split(":")[0] not in ("", "oracle"), "reference",
                f"must be a rule strategy spec (not the oracle), got {self.reference!r}")

    def expert_share(self, round_index: int) -> float:
        """beta_i of round ``round_index`` (1 in round 0)."""
        return float(self.expert_decay ** round_index) if round_index else 1.0

"""An aigb strategy exported for the NeurIPS 2024 auto-bidding competition's harness.

``from <this folder> import PlayerBiddingStrategy``; see README.md beside this file. The code here
imports numpy, torch (learned strategies only) and the standard library, never aigb.
"""

from .strategy import PlayerBiddingStrategy

__all__ = ["PlayerBiddingStrategy"]

"""aigb: AI-Generated Bidding.

A vectorised large-scale auction simulator faithful to the AuctionNet market, datasets stored as
Parquet, rule and learned auto-bidding strategies, and a paired, reproducible evaluation.
"""

__version__ = "0.1.0"

"""Our strategies in the NeurIPS 2024 auto-bidding competition's interface.

* ``export_neurips2024(source, out)`` (``aigb export-neurips2024``) writes a self-contained folder
  with a ``PlayerBiddingStrategy`` that bids as an aigb strategy does (``exporter``);
* ``runtime/`` is the code copied into such a folder: numpy, torch and the standard library only;
* ``harness`` is a minimal competition loop of our own over aigb's market, and the same period
  played through aigb's environment, for comparing the two bid for bid.

The mapping between the competition's names and layouts and aigb's is in docs/neurips2024.md.
"""

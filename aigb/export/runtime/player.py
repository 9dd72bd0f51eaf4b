"""Entry point that works however this folder is loaded.

* As a package member (``from my_export.player import PlayerBiddingStrategy``, or the package's
  own ``__init__``), it is a plain re-export.
* Loaded by file path (aigb's ``neurips2024:DIR/player.py:PlayerBiddingStrategy``, or a harness
  that execs this file), relative imports have no package to resolve against, so the folder is
  imported as a package under a private name derived from its path, once per process.
"""

import hashlib
import importlib.util
import os
import sys

if __package__:
    from .strategy import PlayerBiddingStrategy
else:
    _here = os.path.dirname(os.path.abspath(__file__))
    _name = "_aigb_export_" + hashlib.sha1(_here.encode("utf-8")).hexdigest()[:12]
    if _name not in sys.modules:
        _spec = importlib.util.spec_from_file_location(_name, os.path.join(_here, "__init__.py"), submodule_search_locations=[_here])
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_name] = _module
        try:
            _spec.loader.exec_module(_module)
        except BaseException:
            del sys.modules[_name]
            raise
    PlayerBiddingStrategy = sys.modules[_name].PlayerBiddingStrategy

__all__ = ["PlayerBiddingStrategy"]

"""Reading an exported folder: ``params.json`` and, for learned strategies, ``weights.pt``.

``weights.pt`` is a ``torch.save`` of one flat dict of plain tensors. It is read with
``torch.load(weights_only=True)`` where torch has that argument (1.13 and later); on older torch
(1.12) the same restriction is applied by hand: the unpickler accepts only the few names a dict of
tensors needs (tensor and storage rebuilders, storage types, OrderedDict), so no code stored in a
file can run on load either way.

This file is copied into exported folders: numpy, torch (only for learned strategies) and the
standard library only.
"""

from __future__ import annotations

import json
import os
import pickle

FORMAT = "aigb.export.neurips2024"
FORMAT_VERSION = 1
_CACHE = {}


def load_params(folder: str) -> dict:
    path = os.path.join(folder, "params.json")
    with open(path, encoding="utf-8") as fh:
        params = json.load(fh)
    if params.get("format") != FORMAT or params.get("format_version") != FORMAT_VERSION:
        raise ValueError("%s: not an aigb competition export of format %s version %d (found %r version %r)"
                         % (path, FORMAT, FORMAT_VERSION, params.get("format"), params.get("format_version")))
    return params


class _TensorsOnly(pickle.Unpickler):
    """An unpickler that resolves only what a dict of tensors refers to (for torch without weights_only)."""

    def find_class(self, module, name):
        allowed = module == "collections" and name == "OrderedDict"
        allowed |= module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter")
        allowed |= module == "torch" and name.endswith("Storage")
        allowed |= module == "torch.storage" and name in ("UntypedStorage", "TypedStorage")
        if not allowed:
            raise pickle.UnpicklingError("weights.pt refers to %s.%s, which a file of plain tensors never does" % (module, name))
        return super().find_class(module, name)


class _RestrictedPickle:
    Unpickler = _TensorsOnly
    load = staticmethod(lambda fh, **kw: _TensorsOnly(fh, **kw).load())


def load_tensors(folder: str) -> dict:
    """name -> tensor from ``weights.pt`` (read once per folder and process)."""
    import torch

    path = os.path.join(folder, "weights.pt")
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError as err:            # torch < 1.13: no weights_only argument
            if "weights_only" not in str(err):
                raise
            tensors = torch.load(path, map_location="cpu", pickle_module=_RestrictedPickle)
        if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise ValueError("%s: expected a dict of tensors" % path)
        _CACHE[key] = tensors
    return _CACHE[key]

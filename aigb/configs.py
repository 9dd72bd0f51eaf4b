"""Typed configs from text: the one parser behind ``--set KEY=VALUE`` and strategy-spec options.

    config_from_dict(DiffBidConfig, {"guidance": "1.0", "idm_rows": "[-1, 0, 1]"})
    parse_value("w", "1.2")        -> 1.2

A value is read as JSON ('3e-4', '[64, 64]', 'true', 'null'), else as a number JSON does not spell
('.25', '1.', '+3'); text fields keep their text. The config class then validates the values and
names the field of a bad one (``ConfigError``). Needs no torch.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import fields
from typing import Any, Mapping

import numpy as np

from aigb.types import ConfigError

__all__ = ["parse_value", "text_fields", "config_from_dict"]


def parse_value(key: str, value: Any, *, text: bool = False) -> Any:
    """One value of ``key`` as ``--set`` reads it: text stays text when ``text`` (or when it is not
    a string); otherwise JSON, else a float; lists become tuples. ConfigError names ``key``."""
    if isinstance(value, str) and not text:
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = float(value)  # numbers JSON does not spell: '.25', '1.', '+3'
            except ValueError:
                raise ConfigError(f"{key}: cannot parse {value!r} as a number, list, boolean or null") from None
    if isinstance(value, list):
        value = tuple(value)
    return value


def text_fields(config_class: type) -> set[str]:
    """The fields of ``config_class`` annotated ``str``: their values are kept as text."""
    return {name for name, hint in typing.get_type_hints(config_class).items() if hint is str}


def _describe(hint) -> str:
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "text", type(None): "null"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        return f"a list of {_describe(item).removeprefix('an ').removeprefix('a ')}s"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _typed(key: str, value: Any, hint) -> Any:
    """``value`` checked against the field's type ``hint`` (and made one of it: 64.0 -> 64 for an
    int, a list -> a tuple); ``ConfigError`` naming ``key`` otherwise. A boolean is not a number
    (JSON's true would pass Python's ``isinstance(True, int)``), and no number is NaN or infinite."""
    bad = ConfigError(f"{key}: expected {_describe(hint)}, got {json.dumps(value) if _jsonable(value) else repr(value)}")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _typed(key, value, option)
            except ConfigError:
                continue
        raise bad
    if hint is type(None):
        if value is None:
            return None
        raise bad
    if hint is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise bad
    if hint in (int, float):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise bad
        if not math.isfinite(value):
            raise bad
        if hint is int:
            if float(value) != int(value):
                raise bad
            return int(value)
        return float(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            items = [args[0]] * len(value)
        else:
            items = list(args)
            if len(items) != len(value):
                raise bad
        try:
            return tuple(_typed(key, v, h) for v, h in zip(value, items))
        except ConfigError:
            raise bad from None
    return value


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True


def config_from_dict(config_class: type, values: Mapping[str, Any]):
    """Build a config from plain values; JSON strings ('3e-4', '[64, 64]', 'null') are parsed
    (except for text fields), lists become tuples, each value is checked against its field's type,
    and an unknown key raises ``ConfigError`` listing the known ones."""
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown option for {config_class.__name__}; known options: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(config_class)
    texts = {name for name, hint in hints.items() if hint is str}
    # Each value read as --set reads it, then checked against its field's type: a boolean is not a
    # number, no number is NaN or infinite, a list holds what the field's tuple holds.
    parsed = {key: _typed(key, parse_value(key, value, text=key in texts), hints[key]) for key, value in values.items()}
    try:
        return config_class(**parsed)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a value of the wrong type: find the key it came from
        for key, value in parsed.items():
            try:
                config_class(**{key: value})
            except (TypeError, ValueError):
                raise ConfigError(f"{key}: invalid value {value!r} ({err})") from None
        raise ConfigError(f"{', '.join(parsed)}: invalid together ({err})") from None

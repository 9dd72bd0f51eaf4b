"""Typed configs from text: the one parser behind ``--set KEY=VALUE`` and strategy-spec options.

    config_from_dict(DiffBidConfig, {"guidance": "1.0", "idm_rows": "[-1, 0, 1]"})
    parse_value("w", "1.2")        -> 1.2

A value is read as JSON ('3e-4', '[64, 64]', 'true', 'null'), else as a number JSON does not spell
('.25', '1.', '+3'); text fields keep their text. The config class then validates the values and
names the field of a bad one (``ConfigError``). Needs no torch.
"""

from __future__ import annotations

import json
import typing
from dataclasses import fields
from typing import Any, Mapping

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


def config_from_dict(config_class: type, values: Mapping[str, Any]):
    """Build a config from plain values; JSON strings ('3e-4', '[64, 64]', 'null') are parsed
    (except for text fields), lists become tuples, and an unknown key raises ``ConfigError``
    listing the known ones."""
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown option for {config_class.__name__}; known options: {', '.join(sorted(known))}")
    texts = text_fields(config_class)
    parsed = {key: parse_value(key, value, text=key in texts) for key, value in values.items()}
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

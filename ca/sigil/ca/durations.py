"""Durations as operators write them in settings (``90s``, ``5m``, ``1h30m``, ``7d``) and as Sigil prints them.

Its own module, apart from the CA's settings, so that the node agent and the enforcer can read durations without
importing the CA's datastore (SQLAlchemy and Alembic) that the CA's settings need.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int | float) -> timedelta:
    """``90s``, ``5m``, ``1h30m``, ``7d`` (or a number of seconds) as a timedelta; ValueError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"duration {value!r} must be positive")
        return timedelta(seconds=value)
    text = str(value).strip()
    if text.isdigit():
        return parse_duration(int(text))
    position = 0
    seconds = 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"duration {value!r} is not like 90s, 5m, 1h30m or 7d")
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

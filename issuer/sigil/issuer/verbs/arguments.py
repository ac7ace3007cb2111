"""What every admin verb module shares: the handler signature and the argument types of ``sigil-server``'s flags.

A verb is an ``async`` function of the admin backend (socket or datastore, :func:`sigil.issuer.cli.main` picks)
and the parsed arguments, returning the exit status; the types turn a bad flag into argparse's usage error.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeAlias

from sigil.ca.durations import parse_duration
from sigil.ca.errors import SigilError
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.admin import AdminBackend

__all__ = ["Command", "Subcommands", "duration", "seconds", "spiffe_id"]

Command: TypeAlias = Callable[[AdminBackend, argparse.Namespace], Awaitable[int]]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def duration(value: str) -> timedelta:
    """A flag's lifetime such as ``1h``."""
    try:
        return parse_duration(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def spiffe_id(value: str) -> SpiffeId:
    """A flag's SPIFFE ID, parsed."""
    try:
        return SpiffeId.parse(value)
    except SigilError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def seconds(value: timedelta | None) -> float | None:
    """An optional lifetime as the admin API takes it."""
    return value.total_seconds() if value is not None else None

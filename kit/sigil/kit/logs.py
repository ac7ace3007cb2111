"""One structlog setup for every Sigil process, called once from each console script's ``main``.

structlog's own advice is a single ``structlog.configure()`` at the entry point
(https://www.structlog.org/en/stable/configuration.html); libraries only ask for a logger. Events are short dotted
keys (``svid.rotated``, ``server.started``) with the data in fields. A service that feeds a log pipeline (the
enforcer's proxy runs beside workloads) asks for JSON lines; the others print for a person reading a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

__all__ = ["LOG_LEVELS", "configure_logging", "level_number", "parse_log_level"]

#: The level names the services accept in their settings, lowest first.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def level_number(level: str) -> int:
    """The ``logging`` number of a level name (``"debug"``, ``"INFO"``...); unknown names mean INFO."""
    return logging.getLevelNamesMapping().get(level.upper(), logging.INFO)


def parse_log_level(text: object) -> str:
    """A level name from settings, lower-cased; anything else is a ValueError naming the accepted ones."""
    level = str(text).strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level {text!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def configure_logging(
    level: str = "info", *, json: bool = False, stream: TextIO | None = None
) -> None:
    """Send events at ``level`` and above to ``stream`` (stderr), as JSON lines or for a terminal."""
    # Plain tracebacks: the console renderer's default (rich's, when installed) prints every frame's local
    # variables, and a frame writing a key file holds the private key's PEM.
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="iso"),
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_number(level)),
        logger_factory=structlog.PrintLoggerFactory(stream if stream is not None else sys.stderr),
        cache_logger_on_first_use=False,
    )

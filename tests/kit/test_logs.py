"""The one structlog setup."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator

import pytest
import structlog

from sigil.kit import configure_logging, level_number


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_lines_carry_the_event_level_and_fields() -> None:
    """With json=True each event is one JSON object with event, level, timestamp and the fields."""
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    structlog.get_logger("t").info("svid.rotated", spiffe_id="spiffe://example.org/w")
    line = json.loads(out.getvalue())
    assert line["event"] == "svid.rotated"
    assert line["level"] == "info"
    assert line["spiffe_id"] == "spiffe://example.org/w"
    assert "timestamp" in line


def test_events_below_the_level_are_dropped() -> None:
    """A debug event is not printed when the level is info."""
    out = io.StringIO()
    configure_logging("info", stream=out)
    log = structlog.get_logger("t")
    log.debug("cache.hit")
    log.warning("issuer.unreachable", retry_in=1.0)
    assert "cache.hit" not in out.getvalue()
    assert "issuer.unreachable" in out.getvalue()


def test_level_names_are_case_insensitive_and_unknown_means_info() -> None:
    """``DEBUG`` and ``debug`` agree; a misspelt level falls back to info."""
    assert level_number("DEBUG") == level_number("debug") == 10
    assert level_number("loud") == 20


def _write_secret(secret: bytes) -> None:
    raise OSError(28, "No space left on device")


def test_a_logged_traceback_never_shows_local_variables() -> None:
    """An unexpected exception is logged with its traceback but without the frames' locals, where a private key
    being written may sit (found by the disk drill: a full disk printed the PEM of a new authority key)."""
    out = io.StringIO()
    configure_logging("info", stream=out)
    log = structlog.get_logger("t")
    marker = secrets.token_hex(
        16
    )  # made at run time, so that no source line printed with the traceback holds it
    try:
        _write_secret(b"-----BEGIN PRIVATE KEY-----" + marker.encode())
    except OSError:
        log.exception("request.error", path="/v1/admin/authorities/prepare")
    printed = out.getvalue()
    assert "No space left on device" in printed
    assert "_write_secret" in printed
    assert marker not in printed

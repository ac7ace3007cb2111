"""The server's log level is a setting like any other: from the file or ``SIGIL_LOG_LEVEL``, refused when unknown."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigil.ca.config import ConfigError
from sigil.issuer.settings import load_server_settings


def test_the_log_level_comes_from_the_file_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``server.log_level`` in the file sets it; ``SIGIL_LOG_LEVEL`` overrides the file; the default is info."""
    monkeypatch.delenv("SIGIL_LOG_LEVEL", raising=False)
    assert load_server_settings(None, data_dir=str(tmp_path)).server.log_level == "info"
    config = tmp_path / "sigil.yaml"
    config.write_text("server:\n  log_level: DEBUG\n")
    assert load_server_settings(config, data_dir=str(tmp_path)).server.log_level == "debug"
    monkeypatch.setenv("SIGIL_LOG_LEVEL", "warning")
    assert load_server_settings(config, data_dir=str(tmp_path)).server.log_level == "warning"


def test_an_unknown_log_level_is_refused_naming_the_levels(tmp_path: Path) -> None:
    """A misspelled level stops the server at start instead of logging at some level nobody asked for."""
    config = tmp_path / "sigil.yaml"
    config.write_text("server:\n  log_level: verbose\n")
    with pytest.raises(ConfigError, match="log_level 'verbose' is not one of debug, info"):
        load_server_settings(config, data_dir=str(tmp_path))

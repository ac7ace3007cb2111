"""Fixtures of the enforcer's tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sigil_testing.pki import Domain


@pytest.fixture
def write_policies(tmp_path: Path) -> Callable[[Mapping[str, str]], Path]:
    """Write ``file name -> text`` into one policy directory (the same on every call) and return it."""
    directory = tmp_path / "policies"
    directory.mkdir()

    def write(files: Mapping[str, str]) -> Path:
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
        return directory

    return write


@pytest.fixture
def home() -> Domain:
    """The workloads' own trust domain, dated from the real clock (OpenSSL and ``ssl`` check validity against it)."""
    return Domain("example.org", now=datetime.now(UTC))

"""Fixtures of the enforcer's tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest


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

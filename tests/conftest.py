"""Fixtures shared by every component's tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_sigil_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without SIGIL_* variables: settings must come from what the test itself gives.

    (A developer's shell, or make, may export SIGIL_DATA_DIR and friends; they beat config files by design.)
    """
    for name in list(os.environ):
        # SIGIL_TEST_* configure the test harness itself (e.g. the PostgreSQL admin DSN), not Sigil.
        if name.startswith("SIGIL_") and not name.startswith("SIGIL_TEST_"):
            monkeypatch.delenv(name)

"""Fixtures for the CA's tests: a CA on SQLite under a temporary directory, on a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sigil_testing.ca import open_ca
from sigil_testing.clock import FakeClock

from sigil.ca.service import CertificateAuthority


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def ca(tmp_path: Path, clock: FakeClock) -> AsyncIterator[CertificateAuthority]:
    authority = await open_ca(tmp_path / "data", clock)
    yield authority
    await authority.aclose()

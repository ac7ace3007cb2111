"""Fixtures for the issuer tests that still need the kube-apiserver stand-in: the stand-in, a fake clock, and a
client connected to it. Used by ``test_tokenreview_faults.py`` (token clocks, ``--service-account-lookup=false``, a
server without TokenReview audiences), the one CRD test in ``test_policies.py`` that needs custom resources stored
without schema validation, and ``test_kube_standin.py``; the rest run against the real API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sigil_testing.clock import FakeClock
from sigil_testing.kube import KubeApiServer

from sigil.issuer.kube import KubeApi


@pytest.fixture
def clock() -> FakeClock:
    """One clock for the API server's token checks and the issuer's caches."""
    return FakeClock(1_800_000_000.0)


@pytest.fixture
async def kube(clock: FakeClock) -> AsyncIterator[KubeApiServer]:
    """A running kube-apiserver stand-in with two nodes."""
    async with KubeApiServer(clock=clock.seconds) as server:
        server.add_node("node-a")
        server.add_node("node-b")
        yield server


@pytest.fixture
async def kube_api(kube: KubeApiServer, tmp_path: Path) -> AsyncIterator[KubeApi]:
    """The issuer's client, configured from a kubeconfig file that points at the stand-in."""
    api = KubeApi.from_kubeconfig(kube.write_kubeconfig(tmp_path / "kubeconfig"))
    yield api
    await api.aclose()

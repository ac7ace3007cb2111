"""Fixtures shared by every component's tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sigil_testing.controlplane import ControlPlane, ControlPlaneError, Tools, build_tools
from sigil_testing.issuer import running_issuer
from sigil_testing.operator import apply_crds
from sigil_testing.paths import short_directory
from sigil_testing.peers import PeerTools, build_peer_tools
from sigil_testing.postgres import PostgresUnavailableError, running_postgres, temporary_database
from sigil_testing.realissuer import issuer_on
from sigil_testing.realkube import Namespace, fresh_namespace

from sigil.issuer.edge.listeners import IssuerServer

_TOOLS = pytest.StashKey[Tools | ControlPlaneError]()
_PEERS = pytest.StashKey[PeerTools | RuntimeError]()


@pytest.fixture(autouse=True)
def _no_sigil_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without SIGIL_* variables: settings must come from what the test itself gives.

    (A developer's shell, or make, may export SIGIL_DATA_DIR and friends; they beat config files by design.)
    """
    for name in list(os.environ):
        # SIGIL_TEST_* configure the test harness itself (e.g. the PostgreSQL admin DSN), not Sigil.
        if name.startswith("SIGIL_") and not name.startswith("SIGIL_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private directory with a path short enough for Unix sockets (``tmp_path`` may not be), removed after."""
    with short_directory() as directory:
        yield directory


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    """One throwaway PostgreSQL server for the whole session (or ``SIGIL_TEST_POSTGRES``), started on first use."""
    try:
        with running_postgres() as dsn:
            yield dsn
    except PostgresUnavailableError as err:
        pytest.fail(f"PostgreSQL is needed by this test and could not be started: {err}")


@pytest.fixture
async def postgres_url(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh, empty database on the session's PostgreSQL, dropped after the test."""
    async with temporary_database(postgres_admin_dsn) as url:
        yield url


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries before the first test, outside its timeout: minutes when cold, at once when cached."""
    if session.config.option.collectonly:
        return
    kube = any(item.get_closest_marker("kube") for item in session.items)
    peers = any(item.get_closest_marker("spire") for item in session.items)
    capture = session.config.pluginmanager.getplugin("capturemanager")
    # tools/build reports its progress on stderr, which a cold build should show while it runs.
    with capture.global_and_fixture_disabled():
        if kube:
            try:
                session.config.stash[_TOOLS] = build_tools()
            except ControlPlaneError as err:
                session.config.stash[_TOOLS] = err
        if peers:
            try:
                session.config.stash[_PEERS] = build_peer_tools()
            except RuntimeError as err:
                session.config.stash[_PEERS] = err


@pytest.fixture(scope="session")
def kube_tools(request: pytest.FixtureRequest) -> Tools:
    """The binaries built before the session's first test (or now, if that hook did not run)."""
    tools = request.config.stash.get(_TOOLS, None)
    try:
        if tools is None:
            return build_tools()
        if isinstance(tools, ControlPlaneError):
            raise tools
    except ControlPlaneError as err:
        pytest.fail(str(err), pytrace=False)
    return tools


@pytest.fixture(scope="session")
def peer_tools(request: pytest.FixtureRequest) -> PeerTools:
    """SPIRE and our go-spiffe program, built before the session's first test (or now)."""
    tools = request.config.stash.get(_PEERS, None)
    try:
        if tools is None:
            return build_peer_tools()
        if isinstance(tools, RuntimeError):
            raise tools
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    return tools


@pytest.fixture(scope="session")
def control_plane(
    kube_tools: Tools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """The session's control plane, up and ready; stopped after the last test."""
    yield from _running_plane(tmp_path_factory.mktemp("controlplane"), kube_tools)


@pytest.fixture(scope="session")
def policy_crds(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with deploy/crds applied for real and served."""
    apply_crds(control_plane)
    return control_plane


@pytest.fixture
def kube_namespace(control_plane: ControlPlane) -> Namespace:
    """A fresh namespace on the session's control plane (deleted ones never finish terminating there)."""
    return fresh_namespace(control_plane)


@pytest.fixture
async def kube_issuer(
    control_plane: ControlPlane, kube_namespace: Namespace, tmp_path: Path
) -> AsyncIterator[IssuerServer]:
    """A running issuer on the session's control plane; its agents are ``sigil-agent`` of the test's namespace."""
    settings = issuer_on(control_plane, tmp_path / "data", agent_namespace=kube_namespace.name)
    async with running_issuer(settings) as running:
        yield running


@pytest.fixture
def private_control_plane(kube_tools: Tools, tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of the test's own, for faults the session's shared one must never see (stopping it)."""
    yield from _running_plane(tmp_path / "controlplane", kube_tools)


def _running_plane(directory: Path, tools: Tools) -> Iterator[ControlPlane]:
    """Start a control plane in ``directory``, yield it ready, stop it; a start that fails fails the test."""
    plane = ControlPlane(directory, tools=tools)
    try:
        plane.start()
    except ControlPlaneError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()

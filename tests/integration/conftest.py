"""One real control plane (etcd and kube-apiserver, built by ``tools/build``) for the whole test session."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sigil_testing.controlplane import ControlPlane, ControlPlaneError, Tools, build_tools
from sigil_testing.operator import apply_crds

_TOOLS = pytest.StashKey[Tools | ControlPlaneError]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries before the first test, outside its timeout: minutes when cold, at once when cached."""
    wanted = any(item.get_closest_marker("kube") for item in session.items)
    if not wanted or session.config.option.collectonly:
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    # tools/build reports its progress on stderr, which a cold build should show while it runs.
    with capture.global_and_fixture_disabled():
        try:
            session.config.stash[_TOOLS] = build_tools()
        except ControlPlaneError as err:
            session.config.stash[_TOOLS] = err


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
def control_plane(
    kube_tools: Tools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """The session's control plane, up and ready; stopped after the last test."""
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"), tools=kube_tools)
    try:
        plane.start()
    except ControlPlaneError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def policy_crds(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with deploy/crds applied for real and served."""
    apply_crds(control_plane)
    return control_plane


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    """A namespace of the test's own: without kube-controller-manager a deleted one never finishes terminating."""
    name = f"t-{secrets.token_hex(4)}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    control_plane.request("POST", "/api/v1/namespaces", body)
    return name

"""The server publishes its trust bundle to a ConfigMap on the real API server, and keeps it there."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import running_issuer
from sigil_testing.realissuer import issuer_on
from sigil_testing.realkube import Namespace
from sigil_testing.waiting import eventually

from sigil.ca.authority import AuthorityKind
from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.bundles.configmap import publish_bundle_configmap
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.kube import KubeApi
from sigil.issuer.kube.api import PatchOutcome
from sigil.issuer.settings.sections import resolve_namespace

TD = TrustDomain("example.org")
NAME = "sigil-bundle"
_PLACEHOLDERS = {"bundle.pem": "", "bundle.spiffe": ""}


async def _published(namespace: Namespace, wanted: bytes) -> dict[str, str]:
    def published() -> dict[str, str] | None:
        data = namespace.get_config_map(NAME).get("data") or {}
        return dict(data) if data.get("bundle.pem", "").encode() == wanted else None

    return await eventually(published, what="the bundle in the ConfigMap", interval=0.05)


@pytest.fixture
def server(kube_issuer: IssuerServer) -> IssuerServer:
    """An issuer on the real control plane that does not publish by itself (the test runs the publisher)."""
    return kube_issuer


@contextlib.asynccontextmanager
async def _publisher(
    server: IssuerServer, api: KubeApi, namespace: Namespace
) -> AsyncIterator[None]:
    """The publisher as a task with a short resync, cancelled and awaited on the way out."""
    task = asyncio.create_task(
        publish_bundle_configmap(
            server.issuer.ca, api, namespace=namespace.name, name=NAME, resync=0.2
        )
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.kube
async def test_bundle_reaches_the_configmap_and_follows_rotation(
    control_plane: ControlPlane, kube_namespace: Namespace, tmp_path: Path
) -> None:
    """Both bundle forms land in the manifests' ConfigMap, and a newly prepared authority shows up there."""
    kube_namespace.config_map(NAME, _PLACEHOLDERS)
    settings = issuer_on(
        control_plane,
        tmp_path / "data",
        agent_namespace=kube_namespace.name,
        kube={"bundle_configmap": NAME, "bundle_configmap_namespace": kube_namespace.name},
    )
    async with running_issuer(settings) as server:
        ca = server.issuer.ca
        data = await _published(kube_namespace, ca.bundle().to_pem())
        assert TrustBundle.parse_jwks(TD, data["bundle.spiffe"]).same_content(ca.bundle())
        await ca.prepare(AuthorityKind.X509)
        data = await _published(kube_namespace, ca.bundle().to_pem())
        assert len(TrustBundle.parse_pem(TD, data["bundle.pem"].encode()).x509_authorities) == 2


@pytest.mark.kube
async def test_foreign_edit_is_undone_at_the_next_resync(
    control_plane: ControlPlane, kube_namespace: Namespace, server: IssuerServer
) -> None:
    """A bundle written into the ConfigMap by someone else is replaced by the server's own within a resync."""
    kube_namespace.config_map(NAME, _PLACEHOLDERS)
    ours = server.issuer.ca.bundle().to_pem()
    async with (
        contextlib.aclosing(KubeApi.from_kubeconfig(control_plane.kubeconfig)) as api,
        _publisher(server, api, kube_namespace),
    ):
        await _published(kube_namespace, ours)
        edited = kube_namespace.get_config_map(NAME)
        edited["data"]["bundle.pem"] = "-----BEGIN CERTIFICATE-----\nforeign\n"
        kube_namespace.put_config_map(edited)
        await _published(kube_namespace, ours)


class _ConcurrentWriter(KubeApi):
    """The real client; just before its first patch, another writer changes the ConfigMap on the real server."""

    namespace: Namespace

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: list[PatchOutcome] = []
        #: Set once a patch wrote: the cluster can show the data before this client has its answer.
        self.written = asyncio.Event()

    async def patch_config_map_data(
        self, namespace: str, name: str, data: dict[str, str], *, resource_version: str
    ) -> PatchOutcome:
        if not self.outcomes:
            theirs = self.namespace.get_config_map(name)
            theirs["data"] = {"bundle.pem": "stale", "bundle.spiffe": "{}", "note": "kept"}
            self.namespace.put_config_map(theirs)
        outcome = await super().patch_config_map_data(
            namespace, name, data, resource_version=resource_version
        )
        self.outcomes.append(outcome)
        if outcome == "written":
            self.written.set()
        return outcome


@pytest.mark.kube
async def test_write_between_read_and_patch_is_refused_then_retried(
    control_plane: ControlPlane, kube_namespace: Namespace, server: IssuerServer
) -> None:
    """A change made after the publisher read the ConfigMap makes its patch fail with 409 Conflict; it reads
    again and writes the bundle, keeping the other writer's own keys."""
    kube_namespace.config_map(NAME, _PLACEHOLDERS)
    api = _ConcurrentWriter.from_kubeconfig(control_plane.kubeconfig)
    assert isinstance(api, _ConcurrentWriter)
    api.namespace = kube_namespace
    async with contextlib.aclosing(api), _publisher(server, api, kube_namespace):
        data = await _published(kube_namespace, server.issuer.ca.bundle().to_pem())
        await asyncio.wait_for(api.written.wait(), timeout=10)
    assert api.outcomes == ["conflict", "written"]
    assert data["note"] == "kept"


def test_namespace_comes_from_config_then_env_then_the_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publishing namespace is the configured one, else $SIGIL_POD_NAMESPACE, else the pod's own file."""
    pod_file = tmp_path / "namespace"
    pod_file.write_text("from-file\n")
    monkeypatch.setenv("SIGIL_POD_NAMESPACE", "from-env")
    assert resolve_namespace("configured", namespace_file=pod_file) == "configured"
    assert resolve_namespace(None, namespace_file=pod_file) == "from-env"
    monkeypatch.delenv("SIGIL_POD_NAMESPACE")
    assert resolve_namespace(None, namespace_file=pod_file) == "from-file"
    assert resolve_namespace(None, namespace_file=tmp_path / "missing") is None

"""The ``sigil-bundle`` ConfigMap on the real API server follows every rotation an operator runs.

Consumers outside the mesh (a gateway, a database's client-certificate check) read the bundle from the ConfigMap the
server publishes; a rotation is a non-event for them only if the ConfigMap holds the new anchor before anything is
signed under it and drops the old one only when the operator retires it. Real kube-apiserver and etcd, the real
issuer publishing, the operator's ``sigil-server`` verbs through the admin socket.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509
from sigil_testing.ca import write_upstream_ca
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import running_issuer
from sigil_testing.realissuer import issuer_on
from sigil_testing.realkube import Namespace
from sigil_testing.waiting import eventually

from sigil.ca.authority import AuthorityKind
from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.cli import main
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings import ServerSettings

pytestmark = pytest.mark.kube

TD = TrustDomain("example.org")
NAME = "sigil-bundle"


async def _anchors_become(namespace: Namespace, wanted: set[x509.Certificate]) -> None:
    """Wait until both forms of the ConfigMap's bundle carry exactly ``wanted``."""

    def published() -> bool:
        data = namespace.get_config_map(NAME).get("data") or {}
        if not data.get("bundle.pem") or not data.get("bundle.spiffe"):
            return False
        pem = TrustBundle.parse_pem(TD, data["bundle.pem"].encode()).x509_authorities
        jwks = TrustBundle.parse_jwks(TD, data["bundle.spiffe"]).x509_authorities
        return set(pem) == set(jwks) == wanted

    await eventually(published, what="the ConfigMap's anchors", within=30, interval=0.1)


async def _operator(server: IssuerServer, *args: str) -> None:
    argv = [
        *("--data-dir", str(server.settings.data_dir)),
        *("--admin-socket", str(server.admin_socket)),
        *args,
    ]
    assert await asyncio.to_thread(main, argv) == 0, f"sigil-server {' '.join(args)} failed"


def _settings(
    control_plane: ControlPlane, namespace: Namespace, data_dir: Path, **ca: object
) -> ServerSettings:
    namespace.config_map(NAME, {"bundle.pem": "", "bundle.spiffe": ""})
    return issuer_on(
        control_plane,
        data_dir,
        agent_namespace=namespace.name,
        kube={"bundle_configmap": NAME, "bundle_configmap_namespace": namespace.name},
        ca_options=ca or None,
    )


async def test_the_configmap_follows_an_own_authority_rotation(
    control_plane: ControlPlane, kube_namespace: Namespace, tmp_path: Path
) -> None:
    """Prepare adds the new authority to the ConfigMap; revoke, once the server renewed its own SVID, leaves only
    the new one."""
    settings = _settings(control_plane, kube_namespace, tmp_path / "data")
    async with running_issuer(settings) as server:
        ca = server.issuer.ca
        (old,) = ca.bundle().x509_authorities
        old_id = ca.signer(AuthorityKind.X509).authority.authority_id
        await _anchors_become(kube_namespace, {old})
        await _operator(server, "authority", "prepare")
        new = next(
            a.certificate for a in ca.authorities(AuthorityKind.X509) if a.certificate != old
        )
        assert new is not None
        await _anchors_become(kube_namespace, {old, new})
        await _operator(server, "authority", "activate")
        await _operator(server, "authority", "taint", "--id", old_id)

        async def renewed() -> bool:
            return (await ca.outstanding(old_id)).count == 0

        await eventually(renewed, what="the server to renew its own SVID", within=30)
        await _anchors_become(kube_namespace, {old, new})
        await _operator(server, "authority", "revoke", "--id", old_id)
        await _anchors_become(kube_namespace, {new})


async def test_the_configmap_follows_an_upstream_root_rotation(
    control_plane: ControlPlane, kube_namespace: Namespace, tmp_path: Path
) -> None:
    """``upstream prepare`` puts the new root next to the old one in the ConfigMap; ``retire`` leaves only it."""
    old = write_upstream_ca(tmp_path / "upstream-old")
    new = write_upstream_ca(tmp_path / "upstream-new")
    settings = _settings(
        control_plane, kube_namespace, tmp_path / "data", upstream_dir=old.directory
    )
    async with running_issuer(settings) as server:
        await _anchors_become(kube_namespace, {old.root})
        await _operator(server, "upstream", "prepare", "--dir", str(new.directory))
        await _anchors_become(kube_namespace, {old.root, new.root})
        await _operator(server, "upstream", "activate")
        ca = server.issuer.ca
        tainted = [a.authority_id for a in ca.authorities(AuthorityKind.X509) if a.tainted]

        async def renewed() -> bool:
            counts = [(await ca.outstanding(t)).count for t in tainted]
            return not any(counts)

        await eventually(renewed, what="the server to renew its own SVID", within=30)
        await _anchors_become(kube_namespace, {old.root, new.root})
        await _operator(server, "upstream", "retire")
        await _anchors_become(kube_namespace, {new.root})

"""Federation between two Sigil servers: polling the peer's bundle endpoint and handing its bundle to agents."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sigil_testing.certificates import WebPki, write_web_pki
from sigil_testing.issuer import (
    attested_agent,
    issuer_settings,
    running_issuer,
)

from sigil.ca.authority import AuthorityKind, AuthorityStatus
from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.issuer.bundles.federation import FederationPoller
from sigil.issuer.client import BundleUpdate, IssuerClient
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import FederationError
from sigil.issuer.settings.sections import BundleEndpointSettings, FederationPeer

OTHER = TrustDomain("other.org")


@pytest.fixture
def pki(tmp_path: Path) -> WebPki:
    """A private root CA playing the Web PKI, and the peer's endpoint certificate it signed."""
    return write_web_pki(tmp_path / "webpki")


@pytest.fixture
async def peer_web(tmp_path: Path, pki: WebPki) -> AsyncIterator[IssuerServer]:
    """other.org, serving its bundle endpoint with a Web PKI certificate (``https_web``)."""
    endpoint = BundleEndpointSettings("127.0.0.1", 0, pki.cert_file, pki.key_file)
    settings = issuer_settings(
        tmp_path / "peer", trust_domain="other.org", bundle_endpoint=endpoint
    )
    async with running_issuer(settings) as running:
        yield running


@pytest.fixture
async def peer_spiffe(tmp_path: Path) -> AsyncIterator[IssuerServer]:
    """other.org, serving its bundle endpoint with its own server SVID (``https_spiffe``)."""
    endpoint = BundleEndpointSettings("127.0.0.1", 0, None, None, "https_spiffe")
    settings = issuer_settings(
        tmp_path / "peer", trust_domain="other.org", bundle_endpoint=endpoint
    )
    async with running_issuer(settings) as running:
        yield running


def _endpoint(peer: IssuerServer) -> str:
    return f"https://127.0.0.1:{peer.federation_port}/"


async def _federated(agent: IssuerClient, want: TrustBundle) -> BundleUpdate:
    """Long-poll the agent's bundle until other.org's bundle there has ``want``'s content."""
    update = await agent.bundle()
    async with asyncio.timeout(10):
        while OTHER not in update.federated or not update.federated[OTHER].same_content(want):
            update = await agent.bundle(after_revision=update.revision, wait=5)
    return update


async def test_https_web_peer_bundle_reaches_agents_and_follows_rotation(
    tmp_path: Path, pki: WebPki, peer_web: IssuerServer
) -> None:
    """A peer checked against a configured Web PKI root: its bundle, and then its rotation, reach a waiting agent."""
    peer = FederationPeer(OTHER, _endpoint(peer_web), "https_web", ca_file=pki.ca_file)
    settings = issuer_settings(tmp_path / "home", federates_with=(peer,))
    async with running_issuer(settings) as home, attested_agent(home) as agent:
        update = await _federated(agent, peer_web.issuer.ca.bundle())
        assert update.federated[OTHER].trust_domain == OTHER
        await peer_web.issuer.ca.prepare(AuthorityKind.X509)
        waiting = asyncio.create_task(agent.bundle(after_revision=update.revision, wait=10))
        (poller,) = home.pollers
        poller.poll_now()
        rotated = await asyncio.wait_for(waiting, timeout=5)
    assert rotated.federated[OTHER].same_content(peer_web.issuer.ca.bundle())
    assert len(rotated.federated[OTHER].x509_authorities) == 2


async def test_https_web_refuses_an_endpoint_outside_the_trusted_roots(
    tmp_path: Path, peer_web: IssuerServer
) -> None:
    """Without the private root (system roots only), the peer's certificate is refused and nothing is handed on."""
    settings = issuer_settings(tmp_path / "home")
    async with running_issuer(settings) as home:
        poller = FederationPoller(
            FederationPeer(OTHER, _endpoint(peer_web), "https_web"),
            home.issuer.feed,
            home.issuer.metrics,
        )
        async with aiohttp.ClientSession() as session:
            with pytest.raises(FederationError, match="certificate verify failed"):
                await poller.fetch(session)
        assert OTHER not in home.issuer.feed.federated


async def test_https_spiffe_bootstraps_then_trusts_what_it_fetched(
    tmp_path: Path, peer_spiffe: IssuerServer
) -> None:
    """After the peer rotates and revokes the bootstrap authority, polling still works from the fetched bundle."""
    bootstrap = tmp_path / "other.org.bundle.json"
    bootstrap.write_bytes(peer_spiffe.issuer.ca.bundle().to_json())
    peer = FederationPeer(
        OTHER,
        _endpoint(peer_spiffe),
        "https_spiffe",
        endpoint_spiffe_id=SpiffeId.parse("spiffe://other.org/sigil/server"),
        bootstrap_bundle=bootstrap,
    )
    settings = issuer_settings(tmp_path / "home", federates_with=(peer,))
    async with running_issuer(settings) as home, attested_agent(home) as agent:
        (poller,) = home.pollers
        await _federated(agent, peer_spiffe.issuer.ca.bundle())
        ca = peer_spiffe.issuer.ca
        (old,) = ca.authorities(AuthorityKind.X509)
        prepared = await ca.prepare(AuthorityKind.X509)
        poller.poll_now()
        await _federated(agent, ca.bundle())  # both authorities: the new one is trusted in advance
        await ca.activate(AuthorityKind.X509, prepared.authority_id)
        await (
            peer_spiffe.issuer.serving.renew()
        )  # the endpoint now presents an SVID of the new authority
        await ca.taint(AuthorityKind.X509, old.authority_id)
        await ca.revoke(AuthorityKind.X509, old.authority_id)
        statuses = {a.authority_id: a.status for a in ca.authorities(AuthorityKind.X509)}
        assert statuses[old.authority_id] is AuthorityStatus.REVOKED
        poller.poll_now()
        update = await _federated(agent, ca.bundle())
    (anchor,) = update.federated[OTHER].x509_authorities
    assert anchor == prepared.anchor


async def test_https_spiffe_refuses_an_endpoint_with_another_spiffe_id(
    tmp_path: Path, peer_spiffe: IssuerServer
) -> None:
    """An endpoint whose SVID is not the configured endpoint ID is refused, though it chains to the bundle."""
    bootstrap = tmp_path / "other.org.bundle.json"
    bootstrap.write_bytes(peer_spiffe.issuer.ca.bundle().to_json())
    peer = FederationPeer(
        OTHER,
        _endpoint(peer_spiffe),
        "https_spiffe",
        endpoint_spiffe_id=SpiffeId.parse("spiffe://other.org/bundle-endpoint"),
        bootstrap_bundle=bootstrap,
    )
    settings = issuer_settings(tmp_path / "home")
    async with running_issuer(settings) as home:
        poller = FederationPoller(peer, home.issuer.feed, home.issuer.metrics)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(FederationError, match=re.escape("spiffe://other.org/sigil/server")):
                await poller.fetch(session)


async def test_issuer_client_checks_the_server_id_in_the_handshake(tmp_path: Path) -> None:
    """A client expecting another server ID is refused at the handshake, before any reply is read."""
    settings = issuer_settings(tmp_path / "home")
    async with running_issuer(settings) as home:
        impostor_check = SpiffeId.parse("spiffe://example.org/sigil/other-server")
        async with IssuerClient(
            home.url, bundle=home.issuer.ca.bundle(), server_id=impostor_check
        ) as client:
            with pytest.raises(ssl.SSLCertVerificationError, match="other-server"):
                await client.attest_join_token("not-a-token")


BAD_BOOTSTRAPS = {
    "missing": None,
    "empty": b"",
    "not a bundle": b"[1, 2]",
    "a PEM key, not a certificate": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    "no X.509 authority": b'{"keys": []}',
}


@pytest.mark.parametrize("fault", list(BAD_BOOTSTRAPS))
async def test_a_bad_bootstrap_file_fails_polls_until_it_is_fixed(
    tmp_path: Path, peer_spiffe: IssuerServer, fault: str
) -> None:
    """A bootstrap bundle file that is missing or unusable fails each poll (logged, retried); the poller lives on
    and federates as soon as the file holds the peer's bundle."""
    bootstrap = tmp_path / "other.org.bundle.json"
    content = BAD_BOOTSTRAPS[fault]
    if content is not None:
        bootstrap.write_bytes(content)
    peer = FederationPeer(
        OTHER,
        _endpoint(peer_spiffe),
        "https_spiffe",
        endpoint_spiffe_id=SpiffeId.parse("spiffe://other.org/sigil/server"),
        bootstrap_bundle=bootstrap,
    )
    settings = issuer_settings(tmp_path / "home", federates_with=(peer,))
    async with running_issuer(settings) as home:
        (poller,) = home.pollers
        await asyncio.wait_for(poller.attempted.wait(), timeout=10)
        assert poller.failures >= 1
        assert OTHER not in home.issuer.feed.federated
        bootstrap.write_bytes(peer_spiffe.issuer.ca.bundle().to_json())
        poller.poll_now()
        await asyncio.wait_for(poller.fetched.wait(), timeout=10)
        assert home.issuer.feed.federated[OTHER].same_content(peer_spiffe.issuer.ca.bundle())

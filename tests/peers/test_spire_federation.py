"""Federation both ways between Sigil and a real SPIRE server, and SVIDs of each accepted by the other's side.

SPIRE fetches Sigil's bundle endpoint in both profiles (``spire-server federation create``) with its own strict
parser (pkg/common/bundleutil), Sigil polls SPIRE's endpoint (``https_spiffe``, ``spiffe://spire.test/spire/server``);
a rotation on either side reaches the other. Then identities cross: a SPIRE workload's SVID is accepted by Sigil's
enforcer, with the bundles a Sigil workload gets, as a peer of spire.test (and refused with the local bundle alone),
and a Sigil SVID is accepted by the go-spiffe program through the bundle SPIRE federated to its workload.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sigil_testing.certificates import WebPki, write_web_pki
from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.peers import GoSpiffeError, PeerTools, go_spiffe
from sigil_testing.spire import SpireAgent, SpireServer, my_uid_selector
from sigil_testing.waiting import eventually

from sigil.ca.authority import AuthorityKind
from sigil.ca.keys import generate_key
from sigil.ca.service import X509Request
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.verify import Refusal, SvidVerifier
from sigil.enforcer.workload_source import WorkloadApiSource
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings.sections import BundleEndpointSettings, FederationPeer
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import RotationSettings

pytestmark = [pytest.mark.spire, pytest.mark.slow]

SPIRE_TD = TrustDomain("spire.test")
SIGIL_TD = "spiffe://example.org"
SIGIL_ME = SpiffeId.parse(f"spiffe://example.org/local/uid-{os.getuid()}")
NODE = "spiffe://spire.test/node"
SPIRE_WORKLOAD = "spiffe://spire.test/workload"


@dataclass
class _Both:
    """SPIRE (server with its bundle endpoint) and Sigil federating with it, each with an agent to start."""

    spire: SpireServer
    sigil: IssuerServer
    pki: WebPki
    directory: Path
    tools: PeerTools

    def sigil_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.sigil.federation_port}/"

    def spire_federates_with_sigil(self, profile: str) -> None:
        """``spire-server federation create`` for example.org; https_spiffe is bootstrapped with Sigil's bundle."""
        args = ["-trustDomain", "example.org", "-bundleEndpointURL", self.sigil_endpoint()]
        args += ["-bundleEndpointProfile", profile]
        if profile == "https_spiffe":
            bootstrap = self.directory / "sigil-bootstrap.json"
            bootstrap.write_bytes(self.sigil.issuer.ca.bundle().to_json())
            args += ["-endpointSpiffeID", "spiffe://example.org/sigil/server"]
            args += ["-trustDomainBundlePath", str(bootstrap), "-trustDomainBundleFormat", "spiffe"]
        self.spire.cli("federation create", *args)

    def spire_authorities_of_sigil(self) -> set[bytes]:
        """The X.509 authorities (DER) SPIRE holds for example.org after asking it to refresh now."""
        self.spire.cli("federation refresh", "-id", "example.org")
        stored: Any = self.spire.federated_bundle("example.org")
        if stored is None:
            return set()
        return {base64.b64decode(a["asn1"]) for a in stored["x509_authorities"]}

    def sigil_authorities(self) -> set[bytes]:
        return {
            a.public_bytes(serialization.Encoding.DER)
            for a in self.sigil.issuer.ca.bundle().x509_authorities
        }


def _sigil_endpoint(profile: str, pki: WebPki) -> BundleEndpointSettings:
    if profile == "https_web":
        return BundleEndpointSettings("127.0.0.1", 0, pki.cert_file, pki.key_file, "https_web")
    return BundleEndpointSettings("127.0.0.1", 0, None, None, "https_spiffe")


@asynccontextmanager
async def _federating(profile: str, tools: PeerTools, directory: Path) -> AsyncIterator[_Both]:
    """SPIRE first (its ports are chosen up front), then Sigil serving its endpoint in ``profile`` and polling
    SPIRE's with SPIRE's bundle as the bootstrap."""
    pki = write_web_pki(directory / "webpki")
    spire = SpireServer(
        directory / "spire",
        tools=tools,
        federation=True,
        environment={"SSL_CERT_FILE": str(pki.ca_file)},  # SPIRE's roots for an https_web peer
    )
    await asyncio.to_thread(spire.start)
    try:
        bootstrap = directory / "spire-bootstrap.json"
        bootstrap.write_text(await asyncio.to_thread(spire.bundle, "spiffe"))
        peer = FederationPeer(
            SPIRE_TD,
            f"https://127.0.0.1:{spire.federation_port}/",
            "https_spiffe",
            endpoint_spiffe_id=SpiffeId.parse(spire.endpoint_spiffe_id()),
            bootstrap_bundle=bootstrap,
        )
        settings = issuer_settings(
            directory / "sigil",
            bundle_endpoint=_sigil_endpoint(profile, pki),
            federates_with=(peer,),
        )
        async with running_issuer(settings) as sigil:
            yield _Both(spire, sigil, pki, directory, tools)
    finally:
        await asyncio.to_thread(spire.stop)


@pytest.fixture(params=["https_spiffe", "https_web"])
async def both(
    request: pytest.FixtureRequest, peer_tools: PeerTools, short_tmp: Path
) -> AsyncIterator[_Both]:
    """SPIRE and Sigil federating, Sigil's endpoint in each profile."""
    async with _federating(request.param, peer_tools, short_tmp) as running:
        yield running


@pytest.fixture
async def spiffe_both(peer_tools: PeerTools, short_tmp: Path) -> AsyncIterator[_Both]:
    """SPIRE and Sigil federating, Sigil's endpoint in https_spiffe."""
    async with _federating("https_spiffe", peer_tools, short_tmp) as running:
        yield running


async def test_spire_fetches_sigils_bundle_and_follows_its_rotation(
    both: _Both, request: pytest.FixtureRequest
) -> None:
    """SPIRE's federation client accepts Sigil's endpoint in this profile, and a new Sigil authority reaches it."""
    profile = request.node.callspec.params["both"]
    await asyncio.to_thread(both.spire_federates_with_sigil, profile)
    await eventually(
        lambda: asyncio.to_thread(
            lambda: both.spire_authorities_of_sigil() == both.sigil_authorities()
        ),
        what="SPIRE holding Sigil's bundle",
        within=30,
        interval=0.5,
    )
    await both.sigil.issuer.ca.prepare(AuthorityKind.X509)
    assert len(both.sigil_authorities()) == 2
    await eventually(
        lambda: asyncio.to_thread(
            lambda: both.spire_authorities_of_sigil() == both.sigil_authorities()
        ),
        what="SPIRE holding Sigil's rotated bundle (two authorities)",
        within=30,
        interval=0.5,
    )


def _spire_x509_authorities(both: _Both) -> set[bytes]:
    document = both.spire.cli_json("bundle show")
    return {base64.b64decode(a["asn1"]) for a in document["x509_authorities"]}


async def test_sigil_polls_spires_bundle_and_follows_its_rotation(spiffe_both: _Both) -> None:
    """Sigil fetches SPIRE's https_spiffe endpoint; an authority SPIRE prepares reaches Sigil's feed."""
    both = spiffe_both

    def federated() -> set[bytes]:
        bundle = both.sigil.issuer.feed.federated.get(SPIRE_TD)
        if bundle is None:
            return set()
        return {a.public_bytes(serialization.Encoding.DER) for a in bundle.x509_authorities}

    (poller,) = both.sigil.pollers
    expected = await asyncio.to_thread(_spire_x509_authorities, both)
    await eventually(federated, what="SPIRE's bundle at Sigil", within=20)
    assert federated() == expected
    await asyncio.to_thread(both.spire.cli, "localauthority x509 prepare")
    rotated = await asyncio.to_thread(_spire_x509_authorities, both)
    assert len(rotated) == 2
    poller.poll_now()
    await eventually(
        lambda: federated() == rotated, what="SPIRE's rotated bundle at Sigil", within=20
    )


def _spire_agent(both: _Both, *entry_args: str) -> SpireAgent:
    """A spire-agent whose node may run this uid as SPIRE_WORKLOAD (the entry made with ``entry_args``)."""
    token = both.spire.join_token(NODE)
    selectors = [my_uid_selector()]
    both.spire.create_entry(SPIRE_WORKLOAD, parent_id=NODE, selectors=selectors, args=entry_args)
    return SpireAgent(
        both.directory / "spire-agent", tools=both.tools, server=both.spire, join_token=token
    )


def _verified_through_spire(both: _Both, address: str, chain: Path) -> str | None:
    """The ID go-spiffe verified ``chain`` as, with the bundles SPIRE's agent gave; None while SPIRE still
    syncs the entry or the federated bundle."""
    try:
        return str(go_spiffe(both.tools, "verify", address, f"-chain={chain}")["verified_id"])
    except GoSpiffeError as err:
        if "no identity issued" in str(
            err
        ) or 'no X.509 bundle for trust domain "example.org"' in str(err):
            return None
        raise


async def test_a_spire_svid_is_accepted_by_sigils_enforcer_as_a_spire_test_peer(
    spiffe_both: _Both,
) -> None:
    """With the bundles a Sigil workload gets from its agent, the enforcer accepts the SVID SPIRE issued as
    spiffe://spire.test/workload; with only the local bundle it is refused as of an unknown trust domain."""
    both = spiffe_both
    with await asyncio.to_thread(_spire_agent, both) as spire_agent:
        await eventually(
            lambda: _spire_svid_ready(both, spire_agent),
            what="an SVID from spire-agent",
            within=60,
            interval=0.5,
        )
        async with await WorkloadApiSource.open(spire_agent.address) as spire_source:
            spire_chain = spire_source.current().chain
    settings = await enrol_agent(
        both.sigil,
        both.directory,
        {SIGIL_ME: [my_uid_selector()]},
        rotation=RotationSettings(bundle_wait=timedelta(seconds=1)),
    )
    async with NodeAgent(settings) as agent, await WorkloadApiSource.open(agent.endpoint) as source:
        await eventually(
            lambda: SPIRE_TD in source.current().bundles,
            what="spire.test's bundle at the Sigil workload",
            within=20,
        )
        bundles = source.current().bundles
    verified = SvidVerifier(bundles).verify(spire_chain)
    assert verified.spiffe_id == SpiffeId.parse(SPIRE_WORKLOAD)
    local_only = BundleSet.of(bundles[TrustDomain("example.org")])
    with pytest.raises(SvidVerificationError) as refused:
        SvidVerifier(local_only).verify(spire_chain)
    assert refused.value.reason == Refusal.UNKNOWN_TRUST_DOMAIN


async def _spire_svid_ready(both: _Both, agent: SpireAgent) -> bool:
    try:
        await asyncio.to_thread(go_spiffe, both.tools, "check", agent.address)
    except GoSpiffeError as err:
        if "no identity issued" in str(err):
            return False
        raise
    return True


async def test_a_sigil_svid_is_accepted_by_go_spiffe_through_spires_federated_bundle(
    spiffe_both: _Both,
) -> None:
    """A SPIRE workload whose entry federates with example.org verifies a Sigil SVID with go-spiffe, and again
    after Sigil rotates to a new authority (the new bundle reaches SPIRE's workload through SPIRE)."""
    both = spiffe_both
    await asyncio.to_thread(both.spire_federates_with_sigil, "https_spiffe")
    chain = both.directory / "sigil-svid.pem"
    chain.write_bytes(await _sigil_svid(both))
    with await asyncio.to_thread(_spire_agent, both, "-federatesWith", SIGIL_TD) as spire_agent:
        verified = await eventually(
            lambda: asyncio.to_thread(_verified_through_spire, both, spire_agent.address, chain),
            what="go-spiffe verifying the Sigil SVID through spire-agent",
            within=60,
            interval=0.5,
        )
        assert verified == str(SIGIL_ME)

        ca = both.sigil.issuer.ca
        (old,) = ca.authorities(AuthorityKind.X509)
        new = await ca.prepare(AuthorityKind.X509)
        await ca.activate(AuthorityKind.X509, new.authority_id)
        await ca.taint(AuthorityKind.X509, old.authority_id)
        # Cut at once on purpose (the SVIDs it signed here are minted by hand, never re-issued by an agent).
        await ca.revoke(AuthorityKind.X509, old.authority_id, force=True)
        chain.write_bytes(await _sigil_svid(both))

        def rotated() -> str | None:
            both.spire.cli("federation refresh", "-id", "example.org")
            try:
                return _verified_through_spire(both, spire_agent.address, chain)
            except GoSpiffeError as err:
                if "x509svid.Verify refused" in str(err):
                    return None  # SPIRE's agent still holds the bundle from before the rotation
                raise

        verified = await eventually(
            lambda: asyncio.to_thread(rotated),
            what="the SVID of Sigil's new authority verified through SPIRE",
            within=60,
            interval=1,
        )
        assert verified == str(SIGIL_ME)


async def _sigil_svid(both: _Both) -> bytes:
    (svid,) = await both.sigil.issuer.ca.mint_x509_svids(
        [X509Request(SIGIL_ME, public_key=generate_key().public_key())]
    )
    return svid.chain_pem()

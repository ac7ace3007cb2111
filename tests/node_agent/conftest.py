"""Fixtures for the node agent's tests: a small CA built from the real CA's primitives, an in-memory identity
source, and a Workload API server on a Unix socket under a short temporary directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigil.ca.authority import Signer, new_jwt_authority, new_x509_authority
from sigil.ca.bundle import TrustBundle
from sigil.ca.jwtsvid import mint_jwt_svid
from sigil.ca.keys import generate_key, private_key_der
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.ca.x509svid import mint_x509_svid
from sigil.node_agent.attestation.attestors.unix import UnixAttestor
from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.selectors import Selector
from sigil.node_agent.identity_source import TrustBundles, WorkloadX509Svid
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings

TRUST_DOMAIN = TrustDomain("example.org")
FEDERATED = TrustDomain("partner.test")
WORKLOAD_ID = TRUST_DOMAIN.spiffe_id("ns", "default", "sa", "web")


class SmallCa:
    """One X.509 and one JWT authority of a trust domain, minting SVIDs with the CA's own functions."""

    def __init__(self, trust_domain: TrustDomain) -> None:
        now = datetime.now(UTC)
        self.trust_domain = trust_domain
        x509_key = generate_key()
        self.x509_signer = Signer(
            new_x509_authority(trust_domain, x509_key, now=now, ttl=timedelta(days=1)), x509_key
        )
        jwt_key = generate_key()
        self.jwt_signer = Signer(
            new_jwt_authority(jwt_key, now=now, ttl=timedelta(days=1)), jwt_key
        )

    @property
    def bundle(self) -> TrustBundle:
        """This trust domain's bundle (both authorities)."""
        certificate = self.x509_signer.authority.certificate
        assert certificate is not None
        return TrustBundle(
            self.trust_domain,
            x509_authorities=(certificate,),
            jwt_authorities={
                self.jwt_signer.authority.authority_id: self.jwt_signer.private_key.public_key()
            },
        )

    def x509_svid(
        self,
        spiffe_id: SpiffeId,
        *,
        hint: str = "",
        federates_with: frozenset[TrustDomain] = frozenset(),
    ) -> WorkloadX509Svid:
        """A fresh X509-SVID for ``spiffe_id`` in the Workload API's wire form."""
        key = generate_key()
        svid = mint_x509_svid(
            self.x509_signer,
            spiffe_id=spiffe_id,
            public_key=key.public_key(),
            ttl=timedelta(hours=1),
            now=datetime.now(UTC),
        )
        return WorkloadX509Svid(
            spiffe_id=spiffe_id,
            cert_chain=svid.chain_der(),
            private_key=private_key_der(key),
            hint=hint,
            federates_with=federates_with,
        )

    def mint_jwt(self, spiffe_id: SpiffeId, audiences: Sequence[str]) -> str:
        """A JWT-SVID signed by the JWT authority."""
        return mint_jwt_svid(
            self.jwt_signer,
            spiffe_id=spiffe_id,
            audience=list(audiences),
            ttl=timedelta(minutes=5),
            now=datetime.now(UTC),
        ).token


def trust_bundles(*cas: SmallCa) -> TrustBundles:
    """The bundles of ``cas``; the first CA is the agent's own trust domain."""
    return TrustBundles(
        trust_domain=cas[0].trust_domain, bundles={ca.trust_domain: ca.bundle for ca in cas}
    )


def my_uid() -> Selector:
    """The selector this test process earns from the unix attestor."""
    return Selector("unix", f"uid:{os.getuid()}")


@pytest.fixture(scope="session")
def ca() -> SmallCa:
    return SmallCa(TRUST_DOMAIN)


@pytest.fixture(scope="session")
def partner_ca() -> SmallCa:
    return SmallCa(FEDERATED)


@pytest.fixture
def source(ca: SmallCa, partner_ca: SmallCa) -> InMemoryIdentitySource:
    """A source entitling this process's uid to WORKLOAD_ID, federated with partner.test."""
    memory = InMemoryIdentitySource(trust_bundles(ca, partner_ca), mint_jwt=ca.mint_jwt)
    memory.put(
        ca.x509_svid(WORKLOAD_ID, federates_with=frozenset({FEDERATED})), selectors=[my_uid()]
    )
    return memory


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # AF_UNIX paths stop near 107 bytes; pytest's tmp_path can be longer than that.
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="sg-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def settings(socket_dir: Path) -> WorkloadApiSettings:
    return WorkloadApiSettings(socket_path=socket_dir / "run" / "agent.sock")


@pytest.fixture
async def server(
    settings: WorkloadApiSettings, source: InMemoryIdentitySource
) -> AsyncIterator[WorkloadApiServer]:
    async with WorkloadApiServer(
        settings, source=source, attestor=Attestation([UnixAttestor()])
    ) as running:
        yield running

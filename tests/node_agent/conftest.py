"""Fixtures for the node agent's tests: trust domains of the suite's one in-memory CA, an in-memory identity
source, and a Workload API server on a Unix socket under a short temporary directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sigil_testing.pki import Domain

from sigil.ca.keys import private_key_der
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.node_agent.attestation.attestors.unix import UnixAttestor
from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.selectors import Selector
from sigil.node_agent.identity_source import TrustBundles, WorkloadX509Svid
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings

TRUST_DOMAIN = TrustDomain("example.org")
FEDERATED = TrustDomain("partner.test")
WORKLOAD_ID = TRUST_DOMAIN.spiffe_id("ns", "default", "sa", "web")


def workload_svid(
    ca: Domain,
    spiffe_id: SpiffeId,
    *,
    hint: str = "",
    federates_with: frozenset[TrustDomain] = frozenset(),
) -> WorkloadX509Svid:
    """A fresh X509-SVID of ``ca`` for ``spiffe_id`` in the Workload API's wire form."""
    issued = ca.mint(spiffe_id=spiffe_id)
    return WorkloadX509Svid(
        spiffe_id=spiffe_id,
        cert_chain=issued.svid.chain_der(),
        private_key=private_key_der(issued.key),
        hint=hint,
        federates_with=federates_with,
    )


def trust_bundles(*cas: Domain) -> TrustBundles:
    """Bundles in the Workload API's wire forms; the first CA is the agent's own trust domain."""
    return TrustBundles(
        trust_domain=cas[0].trust_domain, bundles={ca.trust_domain: ca.bundle for ca in cas}
    )


def my_uid() -> Selector:
    """The selector this test process earns from the unix attestor."""
    return Selector("unix", f"uid:{os.getuid()}")


@pytest.fixture(scope="session")
def ca() -> Domain:
    """The agent's own trust domain, on the real clock (py-spiffe checks what it mints against the system's)."""
    return Domain(TRUST_DOMAIN, now=None)


@pytest.fixture(scope="session")
def partner_ca() -> Domain:
    """A federated trust domain, on the real clock."""
    return Domain(FEDERATED, now=None)


@pytest.fixture
def source(ca: Domain, partner_ca: Domain) -> InMemoryIdentitySource:
    """A source entitling this process's uid to WORKLOAD_ID, federated with partner.test."""
    memory = InMemoryIdentitySource(trust_bundles(ca, partner_ca), mint_jwt=ca.mint_jwt)
    memory.put(
        workload_svid(ca, WORKLOAD_ID, federates_with=frozenset({FEDERATED})), selectors=[my_uid()]
    )
    return memory


@pytest.fixture
def settings(short_tmp: Path) -> WorkloadApiSettings:
    return WorkloadApiSettings(socket_path=short_tmp / "run" / "agent.sock")


@pytest.fixture
async def server(
    settings: WorkloadApiSettings, source: InMemoryIdentitySource
) -> AsyncIterator[WorkloadApiServer]:
    async with WorkloadApiServer(
        settings, source=source, attestor=Attestation([UnixAttestor()])
    ) as running:
        yield running

"""Guards on the agent endpoints: only a live agent SVID of this trust domain, only this server's cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import attested_agent, client_for
from sigil_testing.realkube import Namespace, add_node, delete_node

from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.client import (
    AgentSvid,
    IssuedX509Svid,
    IssuerClient,
    X509SvidRequest,
    make_csr,
)
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import (
    AgentNodeGoneError,
    AuthenticationError,
    ClientCertificateRequiredError,
    NotEntitledError,
)

pytestmark = pytest.mark.kube


@pytest.fixture
def server(kube_issuer: IssuerServer) -> IssuerServer:
    """A running issuer for cluster ``test`` on the real control plane."""
    return kube_issuer


@pytest.fixture
def node(control_plane: ControlPlane) -> str:
    """A Node object of the test's own."""
    return add_node(control_plane)


def _csr() -> bytes:
    return make_csr(generate_key())


_AGENT_CALLS: dict[str, Callable[[IssuerClient], Awaitable[Any]]] = {
    "renew": lambda c: c.renew(),
    "batch x509": lambda c: c.batch_x509_svids([X509SvidRequest(_csr(), selectors=("a:b",))]),
    "jwt": lambda c: c.jwt_svid(audience=["db"], selectors=["a:b"]),
    "bundle long poll": lambda c: c.bundle(0, wait=1),
    "policy long poll": lambda c: c.policies(0, wait=1),
}


@pytest.mark.parametrize("call", sorted(_AGENT_CALLS))
async def test_a_workload_svid_is_refused_on_every_agent_endpoint(
    server: IssuerServer, call: str
) -> None:
    """An SVID of this trust domain that is not an agent's gets 401 client_certificate_required, naming why."""
    minted = await server.issuer.ca.mint_x509_svid(SpiffeId.parse("spiffe://example.org/ns/a/sa/b"))
    assert minted.private_key is not None
    svid = IssuedX509Svid(
        minted.spiffe_id, tuple(minted.chain), minted.not_after, frozenset({minted.authority_id})
    )
    bundle = server.issuer.ca.bundle()
    async with IssuerClient(
        server.url, bundle=bundle, agent_svid=AgentSvid(svid, minted.private_key)
    ) as workload:
        with pytest.raises(ClientCertificateRequiredError) as refused:
            await _AGENT_CALLS[call](workload)
    assert refused.value.problem["status"] == 401  # type: ignore[attr-defined]
    assert "is not an agent ID" in str(refused.value)


async def test_a_k8s_agent_claiming_another_cluster_is_refused(
    kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """A valid agent token with a cluster name other than the server's gets 403 not_entitled and no SVID."""
    pod = kube_namespace.pod("agent-a", node=node, service_account="sigil-agent")
    async with client_for(server) as client:
        with pytest.raises(NotEntitledError) as refused:
            await client.attest_k8s(kube_namespace.token(pod, "sigil-server"), "prod")
        assert client.agent_svid is None
    assert "another cluster" in str(refused.value)


async def _k8s_agent(namespace: Namespace, node: str, server: IssuerServer) -> IssuerClient:
    pod = namespace.pod("agent-a", node=node, service_account="sigil-agent")
    client = client_for(server)
    await client.attest_k8s(namespace.token(pod, "sigil-server"), "test")
    return client


async def test_renewal_is_refused_once_the_agents_node_is_deleted(
    control_plane: ControlPlane, kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """After its node object is deleted, a Kubernetes agent's renewal gets 401 agent_node_gone."""
    async with await _k8s_agent(kube_namespace, node, server) as agent:
        await agent.renew()
        delete_node(control_plane, node)
        with pytest.raises(AgentNodeGoneError) as refused:
            await agent.renew()
    assert refused.value.problem["reason"] == "agent_node_gone"  # type: ignore[attr-defined]


async def test_renewal_is_refused_when_the_node_was_replaced_under_the_same_name(
    control_plane: ControlPlane, kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """A node deleted and re-registered under the same name (a new UID) is not the node the agent attested on."""
    async with await _k8s_agent(kube_namespace, node, server) as agent:
        delete_node(control_plane, node)
        add_node(control_plane, node)
        with pytest.raises(AgentNodeGoneError):
            await agent.renew()


async def test_a_join_token_agent_renews_without_kubernetes_checks(server: IssuerServer) -> None:
    """A join-token agent's renewal does not look for a node."""
    async with attested_agent(server) as agent:
        renewed = await agent.renew()
    assert "/sigil/agent/join/" in str(renewed.svid.spiffe_id)


async def test_a_cached_token_review_does_not_outlive_its_pod(
    kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """Once the pod watch has seen a pod deleted, its token (reviewed and cached a moment ago) is refused."""
    ns = kube_namespace.name
    pod = kube_namespace.pod("cart-1", node=node, service_account="cart")
    token = kube_namespace.token(pod, "sigil-workload")
    pods = server.issuer.kube.pods if server.issuer.kube is not None else None
    assert pods is not None
    async with asyncio.timeout(10):
        await pods.wait_for(lambda c: c.pod(ns, "cart-1") is not None)
    async with client_for(server) as client:
        await client.workload_x509_svid(token, _csr())  # reviewed, and the success cached
        kube_namespace.delete_pod("cart-1")
        async with asyncio.timeout(10):
            await pods.wait_for(lambda c: c.pod(ns, "cart-1") is None)
        with pytest.raises(AuthenticationError) as refused:
            await client.workload_x509_svid(token, _csr())
    assert refused.value.problem["status"] == 401  # type: ignore[attr-defined]

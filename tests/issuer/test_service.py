"""The issuance service end to end: real sockets, mutual TLS, the real kube-apiserver, the agent's client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import client_for, running_issuer
from sigil_testing.realissuer import issuer_on
from sigil_testing.realkube import Namespace, add_node
from sigil_testing.waiting import entered

from sigil.ca.authority import AuthorityKind
from sigil.ca.jwtsvid import validate_jwt_svid
from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.admin import LocalAdmin
from sigil.issuer.client import IssuerClient, X509SvidRequest, make_csr
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import (
    ClientCertificateRequiredError,
    JoinTokenInvalidError,
    NotEntitledError,
    PodOnOtherNodeError,
    ServiceAccountNotAllowedError,
)

pytestmark = pytest.mark.kube


@pytest.fixture
def registry() -> CollectorRegistry:
    """The registry the server's metrics go to."""
    return CollectorRegistry()


@pytest.fixture
def nodes(control_plane: ControlPlane) -> tuple[str, str]:
    """Two Node objects of the test's own: the agent's, and another."""
    return add_node(control_plane), add_node(control_plane)


@pytest.fixture
async def server(
    control_plane: ControlPlane,
    kube_namespace: Namespace,
    tmp_path: Path,
    registry: CollectorRegistry,
) -> AsyncIterator[IssuerServer]:
    """A running issuer on the real control plane; agents are ``sigil-agent`` of the test's namespace."""
    settings = issuer_on(control_plane, tmp_path / "data", agent_namespace=kube_namespace.name)
    async with running_issuer(settings, registry=registry) as running:
        yield running


@pytest.fixture
async def agent(
    kube_namespace: Namespace, nodes: tuple[str, str], server: IssuerServer
) -> AsyncIterator[IssuerClient]:
    """The node agent on the first node, attested with its real projected token."""
    pod = kube_namespace.pod("agent-a", node=nodes[0], service_account="sigil-agent")
    async with client_for(server) as client:
        await client.attest_k8s(kube_namespace.token(pod, "sigil-server"), "test")
        yield client


async def _pod_cached(server: IssuerServer, namespace: str, name: str) -> None:
    assert server.issuer.kube is not None
    async with asyncio.timeout(10):
        await server.issuer.kube.pods.wait_for(lambda c: c.pod(namespace, name) is not None)


def _pod_ref(pod: dict[str, Any]) -> Any:
    meta = pod["metadata"]
    return {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}


def _csr() -> bytes:
    return make_csr(generate_key())


async def test_k8s_agent_gets_its_node_id_and_its_pods_svids(
    kube_namespace: Namespace, nodes: tuple[str, str], server: IssuerServer, agent: IssuerClient
) -> None:
    """An attested agent holds spiffe://TD/sigil/agent/k8s/CLUSTER/NODE and gets SVIDs for pods on its node."""
    assert agent.agent_svid is not None
    assert str(agent.agent_svid.svid.spiffe_id) == (
        f"spiffe://example.org/sigil/agent/k8s/test/{nodes[0]}"
    )
    pod = kube_namespace.pod("web-1", node=nodes[0], service_account="web")
    await _pod_cached(server, kube_namespace.name, "web-1")
    (result,) = await agent.batch_x509_svids([X509SvidRequest(_csr(), pod=_pod_ref(pod))])
    assert result.error is None
    (svid,) = result.svids
    assert str(svid.spiffe_id) == f"spiffe://example.org/ns/{kube_namespace.name}/sa/web"


async def test_pod_on_another_node_is_refused_with_403(
    kube_namespace: Namespace, nodes: tuple[str, str], server: IssuerServer, agent: IssuerClient
) -> None:
    """A pod that runs on another node is refused to this node's agent; the rest of the batch is still issued."""
    mine = kube_namespace.pod("web-1", node=nodes[0], service_account="web")
    theirs = kube_namespace.pod("web-2", node=nodes[1], service_account="web")
    await _pod_cached(server, kube_namespace.name, "web-1")
    await _pod_cached(server, kube_namespace.name, "web-2")
    results = await agent.batch_x509_svids(
        [X509SvidRequest(_csr(), pod=_pod_ref(theirs)), X509SvidRequest(_csr(), pod=_pod_ref(mine))]
    )
    assert isinstance(results[0].error, PodOnOtherNodeError)
    assert results[0].error.problem["status"] == 403  # type: ignore[attr-defined]
    assert len(results[1].svids) == 1


async def test_non_agent_service_account_cannot_attest(
    kube_namespace: Namespace, nodes: tuple[str, str], server: IssuerServer
) -> None:
    """A token of a ServiceAccount outside the allow-list is refused with 403 service_account_not_allowed."""
    pod = kube_namespace.pod("web-1", node=nodes[0], service_account="web")
    async with client_for(server) as client:
        with pytest.raises(ServiceAccountNotAllowedError):
            await client.attest_k8s(kube_namespace.token(pod, "sigil-server"), "test")


async def test_workload_without_agent_gets_exactly_its_own_id(
    kube_namespace: Namespace, nodes: tuple[str, str], server: IssuerServer
) -> None:
    """A pod's own token with the workload audience yields spiffe://TD/ns/NS/sa/SA, and nothing else."""
    pod = kube_namespace.pod("cart-1", node=nodes[1], service_account="cart")
    token = kube_namespace.token(pod, "sigil-workload")
    async with client_for(server) as client:
        svid = await client.workload_x509_svid(token, _csr())
    assert str(svid.spiffe_id) == f"spiffe://example.org/ns/{kube_namespace.name}/sa/cart"


async def test_join_token_is_spent_on_first_use_and_entries_apply(server: IssuerServer) -> None:
    """A join token attests once; entries under that agent give SVIDs to matching selectors only."""
    admin = LocalAdmin(server.issuer.ca, server.issuer.registry)
    token = await admin.generate_token(600)
    async with client_for(server) as client:
        agent_svid = await client.attest_join_token(token["token"])
        assert str(agent_svid.svid.spiffe_id) == token["agent_id"]
        async with client_for(server) as second:
            with pytest.raises(JoinTokenInvalidError):
                await second.attest_join_token(token["token"])
        await admin.create_entry(
            "spiffe://example.org/billing", token["agent_id"], ["unix:uid:1000"], []
        )
        granted, refused = await client.batch_x509_svids(
            [
                X509SvidRequest(_csr(), selectors=("unix:uid:1000", "unix:gid:50")),
                X509SvidRequest(_csr(), selectors=("unix:uid:0",)),
            ]
        )
        assert [str(s.spiffe_id) for s in granted.svids] == ["spiffe://example.org/billing"]
        assert isinstance(refused.error, NotEntitledError)
        (jwt_svid,) = await client.jwt_svid(audience=["db"], selectors=["unix:uid:1000"])
    keys = {server.issuer.ca.settings.trust_domain: server.issuer.ca.jwt_keys()}
    checked = validate_jwt_svid(
        jwt_svid.token, audience="db", keys_for=keys, now=server.issuer.ca.now()
    )
    assert checked.spiffe_id == SpiffeId.parse("spiffe://example.org/billing")


async def test_jwt_svid_for_a_pod_on_the_agents_node(
    kube_namespace: Namespace, nodes: tuple[str, str], server: IssuerServer, agent: IssuerClient
) -> None:
    """The agent gets a JWT-SVID for its pod with the asked audience, and verifiers accept it."""
    pod = kube_namespace.pod("web-1", node=nodes[0], service_account="web")
    await _pod_cached(server, kube_namespace.name, "web-1")
    (svid,) = await agent.jwt_svid(audience=["payments"], pod=_pod_ref(pod))
    keys = {server.issuer.ca.settings.trust_domain: server.issuer.ca.jwt_keys()}
    checked = validate_jwt_svid(
        svid.token, audience="payments", keys_for=keys, now=server.issuer.ca.now()
    )
    assert str(checked.spiffe_id) == f"spiffe://example.org/ns/{kube_namespace.name}/sa/web"


async def test_bundle_long_poll_wakes_within_a_second_of_prepare(
    server: IssuerServer, agent: IssuerClient
) -> None:
    """An agent waiting on the bundle hears of a prepared authority well within a second."""
    current = await agent.bundle()
    with entered(server.issuer.feed, "wait") as reached:
        waiting = asyncio.create_task(agent.bundle(current.sequence, wait=30))
        await asyncio.wait_for(reached.wait(), timeout=10)  # the request waits in the server
    started = time.monotonic()
    await server.issuer.ca.prepare(AuthorityKind.X509)
    update = await asyncio.wait_for(waiting, timeout=5)
    assert time.monotonic() - started < 1.0
    assert update.sequence > current.sequence
    assert len(update.bundle.x509_authorities) == len(current.bundle.x509_authorities) + 1


async def test_agent_endpoints_need_the_agent_svid(server: IssuerServer) -> None:
    """Without a client certificate, the batch endpoint answers 401 client_certificate_required."""
    async with client_for(server) as client:
        with pytest.raises(ClientCertificateRequiredError):
            await client.batch_x509_svids([X509SvidRequest(_csr(), selectors=("unix:uid:1",))])


async def test_the_bundle_is_answered_without_a_certificate_but_never_held(
    server: IssuerServer,
) -> None:
    """An agent with no bundle yet (``insecure_bootstrap``) reads the current bundles without a client certificate;
    a long poll without one is refused, since it holds a connection open."""
    async with client_for(server) as anonymous:
        update = await anonymous.bundle()
        assert update.bundle.x509_authorities == server.issuer.ca.bundle().x509_authorities
        with pytest.raises(ClientCertificateRequiredError):
            await anonymous.bundle(update.sequence, wait=5)


async def test_server_presents_its_spiffe_id(server: IssuerServer) -> None:
    """The server's certificate carries spiffe://TD/sigil/server and chains to the bundle."""
    svid = server.issuer.serving.svid
    assert svid is not None
    assert str(svid.spiffe_id) == "spiffe://example.org/sigil/server"
    assert isinstance(svid.private_key, ec.EllipticCurvePrivateKey)

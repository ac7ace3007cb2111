"""Agent attestation and agentless issuance with projected tokens from the real TokenRequest API, checked by the
real issuer through the real TokenReview API."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import client_for, running_issuer
from sigil_testing.realissuer import AGENT_SERVICE_ACCOUNT, issuer_on
from sigil_testing.realkube import Namespace, add_node, fresh_namespace

from sigil.ca.keys import generate_key
from sigil.issuer.agentapi.contract import PodRef
from sigil.issuer.client import IssuerClient, X509SvidRequest, make_csr
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import (
    AuthenticationError,
    KubernetesUnavailableError,
    PodOnOtherNodeError,
    ServiceAccountNotAllowedError,
    TokenNotAuthenticatedError,
)

pytestmark = pytest.mark.kube

AGENT_AUDIENCE = "sigil-server"
WORKLOAD_AUDIENCE = "sigil-workload"


@pytest.fixture
def node(control_plane: ControlPlane) -> str:
    """A Node object of the test's own."""
    return add_node(control_plane)


@pytest.fixture
def server(kube_issuer: IssuerServer) -> IssuerServer:
    """The issuer on the session's control plane; its agents are ``sigil-agent`` of the test's namespace."""
    return kube_issuer


def _agent_token(namespace: Namespace, node: str, name: str = "agent") -> str:
    pod = namespace.pod(name, node=node, service_account=AGENT_SERVICE_ACCOUNT)
    return namespace.token(pod, AGENT_AUDIENCE)


async def _pod_cached(server: IssuerServer, pod: dict[str, Any]) -> None:
    assert server.issuer.kube is not None
    uid = pod["metadata"]["uid"]
    async with asyncio.timeout(10):
        await server.issuer.kube.pods.wait_for(lambda c: c.pod_by_uid(uid) is not None)


def _request(pod: dict[str, Any]) -> X509SvidRequest:
    meta = pod["metadata"]
    ref = PodRef(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])
    return X509SvidRequest(make_csr(generate_key()), pod=ref)


# kube-apiserver checks a bound pod through its own informer, so a TokenReview right after the deletion may still
# pass; the issuer's GET of the pod is what refuses then. Either way the caller sees 401 with one of these reasons.
_DELETED_POD_REASONS = {"token_not_authenticated", "bound_pod_not_found"}


async def _refused_as_deleted(server: IssuerServer, token: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await _attest(server, token)
    assert caught.value.status == HTTPStatus.UNAUTHORIZED
    assert caught.value.reason in _DELETED_POD_REASONS


async def _attest(server: IssuerServer, token: str) -> IssuerClient:
    client = client_for(server)
    try:
        await client.attest_k8s(token, "test")
    except BaseException:
        await client.aclose()
        raise
    return client


# ------------------------------------------------------------------------------------------ accepted
async def test_agent_attests_and_gets_svids_for_its_nodes_pods_only(
    control_plane: ControlPlane, kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """A real agent token names the agent's node; the agent gets its node's pod's SVID and not another node's."""
    agent = await _attest(server, _agent_token(kube_namespace, node))
    async with agent:
        assert agent.agent_svid is not None
        assert str(agent.agent_svid.svid.spiffe_id) == (
            f"spiffe://example.org/sigil/agent/k8s/test/{node}"
        )
        mine = kube_namespace.pod("web-1", node=node, service_account="web")
        theirs = kube_namespace.pod("web-2", node=add_node(control_plane), service_account="web")
        await _pod_cached(server, theirs)
        await _pod_cached(server, mine)
        refused, granted = await agent.batch_x509_svids([_request(theirs), _request(mine)])
    assert isinstance(refused.error, PodOnOtherNodeError)
    assert refused.error.status == HTTPStatus.FORBIDDEN
    (svid,) = granted.svids
    assert str(svid.spiffe_id) == f"spiffe://example.org/ns/{kube_namespace.name}/sa/web"


async def test_workload_without_agent_gets_its_own_id(
    kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """A pod's real token for the workload audience yields spiffe://TD/ns/NS/sa/SA."""
    pod = kube_namespace.pod("cart-1", node=node, service_account="cart")
    async with client_for(server) as client:
        svid = await client.workload_x509_svid(
            kube_namespace.token(pod, WORKLOAD_AUDIENCE), make_csr(generate_key())
        )
    assert str(svid.spiffe_id) == f"spiffe://example.org/ns/{kube_namespace.name}/sa/cart"


# ------------------------------------------------------------------------------------------ refused
async def test_agent_token_for_another_audience_is_refused(
    kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """An agent's token issued for the workload audience does not attest an agent (401)."""
    pod = kube_namespace.pod("agent", node=node, service_account=AGENT_SERVICE_ACCOUNT)
    with pytest.raises(TokenNotAuthenticatedError) as caught:
        await _attest(server, kube_namespace.token(pod, WORKLOAD_AUDIENCE))
    assert caught.value.status == HTTPStatus.UNAUTHORIZED


async def test_workload_token_for_another_audience_is_refused(
    kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """A workload's token issued for the agents' audience gets no agentless SVID (401)."""
    pod = kube_namespace.pod("cart-1", node=node, service_account="cart")
    async with client_for(server) as client:
        with pytest.raises(TokenNotAuthenticatedError):
            await client.workload_x509_svid(
                kube_namespace.token(pod, AGENT_AUDIENCE), make_csr(generate_key())
            )


async def test_token_of_a_deleted_pod_is_refused(
    kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """Once its pod is deleted, a token that was never used attests nothing."""
    token = _agent_token(kube_namespace, node)
    kube_namespace.delete_pod("agent")
    await _refused_as_deleted(server, token)


async def test_token_accepted_before_its_pod_was_deleted_is_refused_after(
    kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """A token the issuer accepted (and cached) stops attesting once the pod watch has seen its pod deleted."""
    token = _agent_token(kube_namespace, node)
    pod = kube_namespace.get_pod("agent")
    await _pod_cached(server, pod)
    async with await _attest(server, token):
        pass
    kube_namespace.delete_pod("agent")
    assert server.issuer.kube is not None
    uid = pod["metadata"]["uid"]
    async with asyncio.timeout(10):
        await server.issuer.kube.pods.wait_for(lambda c: c.pod_by_uid(uid) is None)
    await _refused_as_deleted(server, token)


async def test_service_account_outside_the_allow_list_cannot_attest(
    kube_namespace: Namespace, node: str, server: IssuerServer
) -> None:
    """A real token of a ServiceAccount that is not an agent's is refused with 403."""
    pod = kube_namespace.pod("web-1", node=node, service_account="web")
    with pytest.raises(ServiceAccountNotAllowedError) as caught:
        await _attest(server, kube_namespace.token(pod, AGENT_AUDIENCE))
    assert caught.value.status == HTTPStatus.FORBIDDEN


async def test_agent_service_account_of_another_namespace_cannot_attest(
    control_plane: ControlPlane, node: str, server: IssuerServer
) -> None:
    """``sigil-agent`` of a namespace other than the allowed one is not an agent."""
    elsewhere = fresh_namespace(control_plane)
    with pytest.raises(ServiceAccountNotAllowedError):
        await _attest(server, _agent_token(elsewhere, node))


async def test_api_server_stopped_fails_closed_then_recovers(
    private_control_plane: ControlPlane, tmp_path: Path
) -> None:
    """With kube-apiserver down, attestation and agentless issuance answer 503; once it is back, both work."""
    plane = private_control_plane
    namespace = fresh_namespace(plane)
    node = add_node(plane)
    agent_token = _agent_token(namespace, node)
    workload = namespace.pod("cart-1", node=node, service_account="cart")
    workload_token = namespace.token(workload, WORKLOAD_AUDIENCE)
    settings = issuer_on(plane, tmp_path / "data", agent_namespace=namespace.name)
    async with running_issuer(settings) as server:
        await asyncio.to_thread(plane.stop_apiserver, timeout=1)
        with pytest.raises(KubernetesUnavailableError) as caught:
            await _attest(server, agent_token)
        assert caught.value.status == HTTPStatus.SERVICE_UNAVAILABLE
        async with client_for(server) as client:
            with pytest.raises(KubernetesUnavailableError):
                await client.workload_x509_svid(workload_token, make_csr(generate_key()))
        await asyncio.to_thread(plane.start_apiserver)
        async with await _attest(server, agent_token) as agent:
            assert agent.agent_svid is not None
        async with client_for(server) as client:
            await client.workload_x509_svid(workload_token, make_csr(generate_key()))

"""Authenticating pods by projected ServiceAccount tokens through the real TokenReview API.

Tokens come from the real TokenRequest API, bound to pods on Node objects of the test's own; the authenticator's
clock is a fake one started at the real time, so its cache can age while the API server judges tokens by its own
clock. Faults the real server cannot be made to show are in ``test_tokenreview_faults.py``.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
import types
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import jwt
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import CollectorRegistry
from sigil_testing.clock import FakeClock
from sigil_testing.controlplane import ControlPlane
from sigil_testing.realkube import Namespace, add_node, fresh_namespace

from sigil.ca.reserved_ids import k8s_agent_id
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.issuer.errors import (
    IssuerError,
    KubernetesUnavailableError,
    NodeNotFoundError,
    ServiceAccountNotAllowedError,
    TokenMissingError,
    TokenNotAuthenticatedError,
)
from sigil.issuer.kube import (
    KubeApi,
    TokenReviewAuthenticator,
    TokenReviewMetrics,
    WorkloadIdTemplate,
)

pytestmark = pytest.mark.kube

AGENT_AUDIENCE = "sigil-server"


@pytest.fixture
def registry() -> CollectorRegistry:
    """The registry the service would pass in."""
    return CollectorRegistry()


@pytest.fixture
def clock() -> FakeClock:
    """The authenticator's clock, starting at the real time the API server judges tokens by."""
    return FakeClock(time.time())


@pytest.fixture
async def real_api(control_plane: ControlPlane) -> AsyncIterator[KubeApi]:
    """The issuer's client, from the control plane's admin kubeconfig."""
    api = KubeApi.from_kubeconfig(control_plane.kubeconfig)
    yield api
    await api.aclose()


@pytest.fixture
def node(control_plane: ControlPlane) -> str:
    """A Node object of the test's own."""
    return add_node(control_plane)


@pytest.fixture
def agents(
    real_api: KubeApi, kube_namespace: Namespace, clock: FakeClock, registry: CollectorRegistry
) -> TokenReviewAuthenticator:
    """The node agents' authenticator: audience ``sigil-server``, ``sigil-agent`` of the test's namespace only."""
    return TokenReviewAuthenticator(
        real_api,
        allowed_service_accounts=[f"{kube_namespace.name}:sigil-agent"],
        clock=clock.seconds,
        metrics=TokenReviewMetrics(registry),
    )


def agent_pod(namespace: Namespace, node: str, name: str = "agent") -> dict[str, Any]:
    return namespace.pod(name, node=node, service_account="sigil-agent")


def agent_token(namespace: Namespace, node: str) -> str:
    return namespace.token(agent_pod(namespace, node), AGENT_AUDIENCE)


def reviews(registry: CollectorRegistry) -> float:
    """TokenReview calls made, whatever their outcome."""
    return sum(
        registry.get_sample_value(
            "sigil_tokenreview_requests_total", {"authenticator": "agent", "outcome": outcome}
        )
        or 0.0
        for outcome in ("authenticated", "refused", "unavailable")
    )


async def refusal(authenticator: TokenReviewAuthenticator, token: str) -> IssuerError:
    with pytest.raises(IssuerError) as caught:
        await authenticator.authenticate(token)
    return caught.value


# ------------------------------------------------------------------------------------------ accepted
async def test_agent_token_yields_the_pod_and_its_node(
    control_plane: ControlPlane,
    kube_namespace: Namespace,
    node: str,
    agents: TokenReviewAuthenticator,
) -> None:
    """A real agent token names the agent's namespace, ServiceAccount, pod and node, with their UIDs."""
    pod = agent_pod(kube_namespace, node)
    identity = await agents.authenticate(kube_namespace.token(pod, AGENT_AUDIENCE))
    assert (identity.namespace, identity.service_account) == (kube_namespace.name, "sigil-agent")
    assert (identity.pod_name, identity.pod_uid) == ("agent", pod["metadata"]["uid"])
    node_object = control_plane.request("GET", f"/api/v1/nodes/{node}")
    assert (identity.node_name, identity.node_uid) == (node, node_object["metadata"]["uid"])
    agent_id = k8s_agent_id(TrustDomain("example.org"), cluster="prod", node_name=node)
    assert agent_id == SpiffeId.parse(f"spiffe://example.org/sigil/agent/k8s/prod/{node}")


async def test_workload_without_agent_gets_its_namespace_and_service_account_id(
    kube_namespace: Namespace, node: str, real_api: KubeApi, clock: FakeClock
) -> None:
    """With no allow-list any ServiceAccount authenticates, and the default template gives ns/NS/sa/SA."""
    workloads = TokenReviewAuthenticator(
        real_api, audience="sigil-workload", allowed_service_accounts=None, clock=clock.seconds
    )
    pod = kube_namespace.pod("web-1", node=node, service_account="frontend")
    identity = await workloads.authenticate(kube_namespace.token(pod, "sigil-workload"))
    spiffe_id = WorkloadIdTemplate().render(TrustDomain("example.org"), identity)
    assert str(spiffe_id) == f"spiffe://example.org/ns/{kube_namespace.name}/sa/frontend"


# ------------------------------------------------------------------------------------------ refused
async def test_wrong_audience_is_not_authenticated(
    kube_namespace: Namespace, node: str, agents: TokenReviewAuthenticator
) -> None:
    """A token requested for another audience is refused with 401 and the API server's reason."""
    token = kube_namespace.token(agent_pod(kube_namespace, node), "vault")
    error = await refusal(agents, token)
    assert isinstance(error, TokenNotAuthenticatedError)
    assert error.status == HTTPStatus.UNAUTHORIZED
    assert "audience" in error.detail


async def test_pod_on_a_deleted_node_is_refused(
    control_plane: ControlPlane,
    kube_namespace: Namespace,
    node: str,
    agents: TokenReviewAuthenticator,
) -> None:
    """A pod whose Node object is gone does not authenticate as an agent of that node."""
    token = agent_token(kube_namespace, node)
    control_plane.request("DELETE", f"/api/v1/nodes/{node}")
    error = await refusal(agents, token)
    assert isinstance(error, NodeNotFoundError)
    assert error.node_name == node


async def test_service_account_outside_the_allow_list_is_forbidden(
    kube_namespace: Namespace, node: str, agents: TokenReviewAuthenticator
) -> None:
    """A valid token of a ServiceAccount that is not an agent's is refused with 403."""
    pod = kube_namespace.pod("web-1", node=node, service_account="frontend")
    error = await refusal(agents, kube_namespace.token(pod, AGENT_AUDIENCE))
    assert isinstance(error, ServiceAccountNotAllowedError)
    assert error.status == HTTPStatus.FORBIDDEN
    assert (error.namespace, error.service_account) == (kube_namespace.name, "frontend")


async def test_forged_signature_is_refused(
    kube_namespace: Namespace, node: str, agents: TokenReviewAuthenticator
) -> None:
    """A real token's claims signed again with another key than the API server's are refused."""
    real = agent_token(kube_namespace, node)
    claims = jwt.decode(real, options={"verify_signature": False})
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        claims, forger, algorithm="RS256", headers={"kid": jwt.get_unverified_header(real)["kid"]}
    )
    error = await refusal(agents, forged)
    assert isinstance(error, TokenNotAuthenticatedError)


async def test_empty_token_is_missing(agents: TokenReviewAuthenticator) -> None:
    """An empty token is refused before any request is made."""
    assert isinstance(await refusal(agents, ""), TokenMissingError)


async def test_api_server_down_fails_closed_and_is_not_cached(
    private_control_plane: ControlPlane, clock: FakeClock, registry: CollectorRegistry
) -> None:
    """With kube-apiserver stopped authentication fails with 503, and succeeds as soon as it is back."""
    plane = private_control_plane
    namespace = fresh_namespace(plane)
    token = agent_token(namespace, add_node(plane))
    api = KubeApi.from_kubeconfig(plane.kubeconfig)
    try:
        authenticator = TokenReviewAuthenticator(
            api,
            allowed_service_accounts=[f"{namespace.name}:sigil-agent"],
            clock=clock.seconds,
            metrics=TokenReviewMetrics(registry),
        )
        await asyncio.to_thread(plane.stop_apiserver, timeout=1)
        error = await refusal(authenticator, token)
        assert isinstance(error, KubernetesUnavailableError)
        assert error.status == HTTPStatus.SERVICE_UNAVAILABLE
        assert len(authenticator.cache) == 0
        await asyncio.to_thread(plane.start_apiserver)
        identity = await authenticator.authenticate(token)
    finally:
        await api.aclose()
    assert identity.pod_name == "agent"
    assert (
        registry.get_sample_value(
            "sigil_tokenreview_requests_total", {"authenticator": "agent", "outcome": "unavailable"}
        )
        == 1
    )


# ------------------------------------------------------------------------------------------ cache
async def test_second_authentication_is_a_counted_cache_hit(
    kube_namespace: Namespace,
    node: str,
    agents: TokenReviewAuthenticator,
    registry: CollectorRegistry,
) -> None:
    """The same token twice costs one TokenReview, and the hit is counted."""
    token = agent_token(kube_namespace, node)
    first = await agents.authenticate(token)
    second = await agents.authenticate(token)
    assert first == second
    assert reviews(registry) == 1
    assert (
        registry.get_sample_value("sigil_tokenreview_cache_hits_total", {"authenticator": "agent"})
        == 1
    )


async def test_concurrent_requests_with_one_token_share_one_review(
    kube_namespace: Namespace,
    node: str,
    agents: TokenReviewAuthenticator,
    registry: CollectorRegistry,
) -> None:
    """Ten simultaneous requests with a cold cache make a single TokenReview."""
    token = agent_token(kube_namespace, node)
    identities = await asyncio.gather(*(agents.authenticate(token) for _ in range(10)))
    assert len(set(identities)) == 1
    assert reviews(registry) == 1


async def test_cache_is_keyed_by_digest_and_never_holds_the_token(
    kube_namespace: Namespace, node: str, agents: TokenReviewAuthenticator
) -> None:
    """Cache keys are SHA-256 hex digests, and nothing reachable from the cache, nor the log, holds the token."""
    pod = agent_pod(kube_namespace, node)
    good = kube_namespace.token(pod, AGENT_AUDIENCE)
    bad = kube_namespace.token(pod, "vault")
    with structlog.testing.capture_logs() as logs:
        for _ in range(
            2
        ):  # the second round is answered from the cache and re-raises the cached refusal
            await agents.authenticate(good)
            await refusal(agents, bad)
    entries = list(agents.cache.items())
    assert len(entries) == 2
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for key, _ in entries)
    reachable = _strings_reachable_from(entries) | _strings_reachable_from(logs)
    for token in (good, bad):
        signature = token.split(".")[2]
        assert not any(signature in text for text in reachable)


def _strings_reachable_from(root: object) -> set[str]:
    """Every string reachable by references from ``root``, through containers, exceptions, tracebacks and frames.

    Types, modules and functions are not followed: they lead to the whole interpreter, not to what ``root`` keeps.
    """
    seen: set[int] = set()
    strings: set[str] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(
            obj, type | types.ModuleType | types.FunctionType | types.CodeType
        ):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            strings.add(obj)
            continue
        stack.extend(gc.get_referents(obj))
    return strings


async def test_log_says_which_check_failed(
    kube_namespace: Namespace, node: str, agents: TokenReviewAuthenticator
) -> None:
    """A refusal is logged with the name of the failed check."""
    pod = kube_namespace.pod("web-1", node=node, service_account="frontend")
    with structlog.testing.capture_logs() as logs:
        await refusal(agents, kube_namespace.token(pod, AGENT_AUDIENCE))
    refused = [entry for entry in logs if entry["event"] == "kube_auth.refused"]
    assert [entry["check"] for entry in refused] == ["service_account_not_allowed"]


async def test_success_is_cached_for_sixty_seconds(
    kube_namespace: Namespace,
    node: str,
    real_api: KubeApi,
    clock: FakeClock,
    registry: CollectorRegistry,
) -> None:
    """A long-lived token's verdict is reused for 60 s and asked again after."""
    agents = TokenReviewAuthenticator(
        real_api,
        allowed_service_accounts=[f"{kube_namespace.name}:sigil-agent"],
        clock=clock.seconds,
        metrics=TokenReviewMetrics(registry),
    )
    token = kube_namespace.token(agent_pod(kube_namespace, node), AGENT_AUDIENCE, seconds=3600)
    await agents.authenticate(token)
    clock.advance(59)
    await agents.authenticate(token)
    assert reviews(registry) == 1
    clock.advance(2)
    await agents.authenticate(token)
    assert reviews(registry) == 2


async def test_refusal_is_cached_briefly(
    kube_namespace: Namespace,
    node: str,
    agents: TokenReviewAuthenticator,
    clock: FakeClock,
    registry: CollectorRegistry,
) -> None:
    """A refused token is refused from the cache for 5 s, then asked again."""
    token = kube_namespace.token(agent_pod(kube_namespace, node), "vault")
    await refusal(agents, token)
    await refusal(agents, token)
    assert reviews(registry) == 1
    clock.advance(6)
    await refusal(agents, token)
    assert reviews(registry) == 2


async def test_real_token_of_a_deleted_pod_is_refused(
    kube_namespace: Namespace, node: str, agents: TokenReviewAuthenticator
) -> None:
    """Once its pod is deleted (at once), a bound token stops authenticating, by the API server's check or the
    issuer's own GET of the pod."""
    token = agent_token(kube_namespace, node)
    kube_namespace.delete_pod("agent")
    error = await refusal(agents, token)
    assert error.status == HTTPStatus.UNAUTHORIZED
    assert error.reason in {"token_not_authenticated", "bound_pod_not_found"}

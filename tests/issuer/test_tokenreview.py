"""Authenticating pods by projected ServiceAccount tokens through TokenReview, against the kube-apiserver stand-in."""

from __future__ import annotations

import asyncio
import gc
import re
import types
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import CollectorRegistry
from sigil_testing.kube import FakeClock, KubeApiServer

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.issuer.errors import (
    AudienceMismatchError,
    BoundPodNotFoundError,
    BoundPodUidMismatchError,
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
    agent_spiffe_id,
)

AGENT_SA = "sigil-system:sigil-agent"


@pytest.fixture
def registry() -> CollectorRegistry:
    """The registry the service would pass in."""
    return CollectorRegistry()


@pytest.fixture
def agents(
    kube_api: KubeApi, clock: FakeClock, registry: CollectorRegistry
) -> TokenReviewAuthenticator:
    """The node agents' authenticator: audience ``sigil-server`` and an allow-list of one ServiceAccount."""
    return TokenReviewAuthenticator(
        kube_api,
        allowed_service_accounts=[AGENT_SA],
        clock=clock,
        metrics=TokenReviewMetrics(registry),
    )


def agent_pod(
    kube: KubeApiServer, name: str = "sigil-agent-x1", node: str = "node-a"
) -> dict[str, Any]:
    return kube.add_pod("sigil-system", name, node_name=node, service_account="sigil-agent")


def count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"authenticator": "agent", **labels}) or 0.0


async def refusal(authenticator: TokenReviewAuthenticator, token: str) -> IssuerError:
    with pytest.raises(IssuerError) as caught:
        await authenticator.authenticate(token)
    return caught.value


# ------------------------------------------------------------------------------------------ accepted
async def test_agent_token_yields_the_pod_and_its_node(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A valid agent token names the agent's namespace, ServiceAccount, pod and node, with their UIDs."""
    pod = agent_pod(kube)
    identity = await agents.authenticate(kube.mint_token(pod))
    assert (identity.namespace, identity.service_account) == ("sigil-system", "sigil-agent")
    assert (identity.pod_name, identity.pod_uid) == ("sigil-agent-x1", pod["metadata"]["uid"])
    assert (identity.node_name, identity.node_uid) == (
        "node-a",
        kube.node("node-a")["metadata"]["uid"],
    )
    agent_id = agent_spiffe_id(
        TrustDomain("example.org"), cluster="prod", node_name=identity.node_name
    )
    assert agent_id == SpiffeId.parse("spiffe://example.org/sigil/agent/k8s/prod/node-a")


async def test_workload_without_agent_gets_its_namespace_and_service_account_id(
    kube: KubeApiServer, kube_api: KubeApi, clock: FakeClock
) -> None:
    """With no allow-list any ServiceAccount authenticates, and the default template gives ns/NS/sa/SA."""
    workloads = TokenReviewAuthenticator(
        kube_api, audience="sigil-workload", allowed_service_accounts=None, clock=clock
    )
    pod = kube.add_pod("shop", "web-1", node_name="node-b", service_account="frontend")
    identity = await workloads.authenticate(kube.mint_token(pod, audiences=["sigil-workload"]))
    spiffe_id = WorkloadIdTemplate().render(TrustDomain("example.org"), identity)
    assert str(spiffe_id) == "spiffe://example.org/ns/shop/sa/frontend"


# ------------------------------------------------------------------------------------------ refused
async def test_wrong_audience_is_not_authenticated(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A token minted for another audience is refused with 401 and the API server's reason."""
    error = await refusal(agents, kube.mint_token(agent_pod(kube), audiences=["vault"]))
    assert isinstance(error, TokenNotAuthenticatedError)
    assert error.status == HTTPStatus.UNAUTHORIZED
    assert "audiences" in error.detail


async def test_server_that_ignores_audiences_gives_audience_mismatch(
    clock: FakeClock, tmp_path: Path
) -> None:
    """An API server that does not confirm the audience (Kubernetes < 1.13) is not trusted with it."""
    async with KubeApiServer(clock=clock, supports_audiences=False) as old:
        old.add_node("node-a")
        api = KubeApi.from_kubeconfig(old.write_kubeconfig(tmp_path / "kubeconfig"))
        try:
            agents = TokenReviewAuthenticator(api, allowed_service_accounts=[AGENT_SA], clock=clock)
            pod = old.add_pod(
                "sigil-system", "agent", node_name="node-a", service_account="sigil-agent"
            )
            error = await refusal(agents, old.mint_token(pod, audiences=[old.issuer]))
        finally:
            await api.aclose()
    assert isinstance(error, AudienceMismatchError)
    assert error.reason == "audience_mismatch"


async def test_expired_token_is_refused(
    kube: KubeApiServer, agents: TokenReviewAuthenticator, clock: FakeClock
) -> None:
    """A token past its ``exp`` (and the API server's one-minute leeway) is refused."""
    token = kube.mint_token(agent_pod(kube), ttl=600)
    clock.advance(600 + 61)
    error = await refusal(agents, token)
    assert isinstance(error, TokenNotAuthenticatedError)
    assert "expired" in error.detail


async def test_not_yet_valid_token_is_refused(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A token whose ``nbf`` is beyond the leeway in the future is refused."""
    error = await refusal(agents, kube.mint_token(agent_pod(kube), not_before=300))
    assert isinstance(error, TokenNotAuthenticatedError)
    assert "not valid yet" in error.detail


async def test_deleted_pod_token_is_refused(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """Once its pod is deleted, a bound token stops authenticating."""
    pod = agent_pod(kube)
    token = kube.mint_token(pod)
    kube.remove_pod("sigil-system", "sigil-agent-x1")
    error = await refusal(agents, token)
    assert isinstance(error, TokenNotAuthenticatedError)
    assert "invalidated" in error.detail


async def test_deleted_pod_is_caught_by_the_issuer_when_the_server_does_not_look_up(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """With ``--service-account-lookup=false`` the issuer's own GET of the pod refuses a deleted pod's token."""
    kube.service_account_lookup = False
    token = kube.mint_token(agent_pod(kube))
    kube.remove_pod("sigil-system", "sigil-agent-x1")
    error = await refusal(agents, token)
    assert isinstance(error, BoundPodNotFoundError)
    assert error.status == HTTPStatus.UNAUTHORIZED


async def test_pod_uid_mismatch_is_refused(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A token for a pod that was replaced by a new pod of the same name does not pass as the new pod."""
    kube.service_account_lookup = False
    old_uid = agent_pod(kube)["metadata"]["uid"]
    token = kube.mint_token(kube.pod("sigil-system", "sigil-agent-x1"))
    kube.remove_pod("sigil-system", "sigil-agent-x1")
    new_uid = agent_pod(kube)["metadata"]["uid"]
    error = await refusal(agents, token)
    assert isinstance(error, BoundPodUidMismatchError)
    assert (error.token_uid, error.pod_uid) == (old_uid, new_uid)


async def test_pod_on_an_unknown_node_is_refused(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A pod whose node object is gone does not authenticate as an agent of that node."""
    token = kube.mint_token(agent_pod(kube))
    kube.remove_node("node-a")
    error = await refusal(agents, token)
    assert isinstance(error, NodeNotFoundError)
    assert error.node_name == "node-a"


async def test_service_account_outside_the_allow_list_is_forbidden(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A valid token of a ServiceAccount that is not an agent's is refused with 403."""
    pod = kube.add_pod("shop", "web-1", node_name="node-a", service_account="frontend")
    error = await refusal(agents, kube.mint_token(pod))
    assert isinstance(error, ServiceAccountNotAllowedError)
    assert error.status == HTTPStatus.FORBIDDEN
    assert (error.namespace, error.service_account) == ("shop", "frontend")


async def test_forged_signature_is_refused(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A token signed by another key than the API server's is refused."""
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    error = await refusal(agents, kube.mint_token(agent_pod(kube), signing_key=forger))
    assert isinstance(error, TokenNotAuthenticatedError)


async def test_empty_token_is_missing(agents: TokenReviewAuthenticator) -> None:
    """An empty token is refused before any request is made."""
    assert isinstance(await refusal(agents, ""), TokenMissingError)


async def test_api_server_down_fails_closed_and_is_not_cached(
    kube: KubeApiServer, agents: TokenReviewAuthenticator, registry: CollectorRegistry
) -> None:
    """With the API server unreachable authentication fails with 503, and succeeds as soon as it is back."""
    token = kube.mint_token(agent_pod(kube))
    await kube.go_down()
    error = await refusal(agents, token)
    assert isinstance(error, KubernetesUnavailableError)
    assert error.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert len(agents.cache) == 0
    await kube.start()
    identity = await agents.authenticate(token)
    assert identity.pod_name == "sigil-agent-x1"
    assert count(registry, "sigil_tokenreview_requests_total", outcome="unavailable") == 1


# ------------------------------------------------------------------------------------------ cache
async def test_second_authentication_is_a_counted_cache_hit(
    kube: KubeApiServer, agents: TokenReviewAuthenticator, registry: CollectorRegistry
) -> None:
    """The same token twice costs one TokenReview, and the hit is counted."""
    token = kube.mint_token(agent_pod(kube))
    first = await agents.authenticate(token)
    second = await agents.authenticate(token)
    assert first == second
    assert kube.token_reviews == 1
    assert count(registry, "sigil_tokenreview_requests_total", outcome="authenticated") == 1
    assert count(registry, "sigil_tokenreview_cache_hits_total") == 1


async def test_concurrent_requests_with_one_token_share_one_review(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """Ten simultaneous requests with a cold cache make a single TokenReview."""
    token = kube.mint_token(agent_pod(kube))
    identities = await asyncio.gather(*(agents.authenticate(token) for _ in range(10)))
    assert len(set(identities)) == 1
    assert kube.token_reviews == 1


async def test_cache_is_keyed_by_digest_and_never_holds_the_token(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """Cache keys are SHA-256 hex digests, and nothing reachable from the cache, nor the log, holds the token."""
    good = kube.mint_token(agent_pod(kube))
    bad = kube.mint_token(kube.pod("sigil-system", "sigil-agent-x1"), audiences=["vault"])
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
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A refusal is logged with the name of the failed check."""
    pod = kube.add_pod("shop", "web-1", node_name="node-a", service_account="frontend")
    with structlog.testing.capture_logs() as logs:
        await refusal(agents, kube.mint_token(pod))
    refused = [entry for entry in logs if entry["event"] == "kube_auth.refused"]
    assert [entry["check"] for entry in refused] == ["service_account_not_allowed"]


async def test_success_is_cached_for_sixty_seconds(
    kube: KubeApiServer, agents: TokenReviewAuthenticator, clock: FakeClock
) -> None:
    """A long-lived token's verdict is reused for 60 s and asked again after."""
    token = kube.mint_token(agent_pod(kube), ttl=3600)
    await agents.authenticate(token)
    clock.advance(59)
    await agents.authenticate(token)
    assert kube.token_reviews == 1
    clock.advance(2)
    await agents.authenticate(token)
    assert kube.token_reviews == 2


async def test_success_is_cached_no_longer_than_the_token_lives(
    kube: KubeApiServer, agents: TokenReviewAuthenticator, clock: FakeClock
) -> None:
    """A token expiring in 20 s is reviewed again after 20 s, not after 60 s."""
    token = kube.mint_token(agent_pod(kube), ttl=20)
    await agents.authenticate(token)
    clock.advance(21)
    await agents.authenticate(token)  # still inside the API server's one-minute leeway
    assert kube.token_reviews == 2


async def test_refusal_is_cached_briefly(
    kube: KubeApiServer, agents: TokenReviewAuthenticator, clock: FakeClock
) -> None:
    """A refused token is refused from the cache for 5 s, then asked again."""
    token = kube.mint_token(agent_pod(kube), audiences=["vault"])
    await refusal(agents, token)
    await refusal(agents, token)
    assert kube.token_reviews == 1
    clock.advance(6)
    await refusal(agents, token)
    assert kube.token_reviews == 2

"""Token authentication where the real API server cannot be made to show the case, against the stand-in.

Each needs what a real kube-apiserver will not do on demand: judge tokens by a clock a test moves (expired and
not-yet-valid tokens; TokenRequest's shortest lifetime is ten minutes of real time), run with
``--service-account-lookup=false`` (so that the issuer's own pod checks are what refuses), or answer like a server
from before TokenReview audiences. Everything else is tested against the real API server in ``test_tokenreview.py``.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sigil_testing.clock import FakeClock
from sigil_testing.kube import KubeApiServer

from sigil.issuer.errors import (
    AudienceMismatchError,
    BoundPodNotFoundError,
    BoundPodUidMismatchError,
    IssuerError,
    TokenNotAuthenticatedError,
)
from sigil.issuer.kube import (
    KubeApi,
    TokenReviewAuthenticator,
    TokenReviewMetrics,
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
        clock=clock.seconds,
        metrics=TokenReviewMetrics(registry),
    )


def agent_pod(
    kube: KubeApiServer, name: str = "sigil-agent-x1", node: str = "node-a"
) -> dict[str, Any]:
    return kube.add_pod("sigil-system", name, node_name=node, service_account="sigil-agent")


async def refusal(authenticator: TokenReviewAuthenticator, token: str) -> IssuerError:
    with pytest.raises(IssuerError) as caught:
        await authenticator.authenticate(token)
    return caught.value


async def test_server_that_ignores_audiences_gives_audience_mismatch(
    clock: FakeClock, tmp_path: Path
) -> None:
    """An API server that does not confirm the audience (Kubernetes < 1.13) is not trusted with it (stand-in: no
    such server is built here)."""
    async with KubeApiServer(clock=clock.seconds, supports_audiences=False) as old:
        old.add_node("node-a")
        api = KubeApi.from_kubeconfig(old.write_kubeconfig(tmp_path / "kubeconfig"))
        try:
            agents = TokenReviewAuthenticator(
                api, allowed_service_accounts=[AGENT_SA], clock=clock.seconds
            )
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
    """A token past its ``exp`` (and the API server's one-minute leeway) is refused (stand-in: its clock moves)."""
    token = kube.mint_token(agent_pod(kube), ttl=600)
    clock.advance(600 + 61)
    error = await refusal(agents, token)
    assert isinstance(error, TokenNotAuthenticatedError)
    assert "expired" in error.detail


async def test_not_yet_valid_token_is_refused(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A token whose ``nbf`` is beyond the leeway in the future is refused (stand-in: TokenRequest never mints one)."""
    error = await refusal(agents, kube.mint_token(agent_pod(kube), not_before=300))
    assert isinstance(error, TokenNotAuthenticatedError)
    assert "not valid yet" in error.detail


async def test_deleted_pod_is_caught_by_the_issuer_when_the_server_does_not_look_up(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """With ``--service-account-lookup=false`` the issuer's own GET of the pod refuses a deleted pod's token
    (stand-in: the control plane runs with lookup on)."""
    kube.service_account_lookup = False
    token = kube.mint_token(agent_pod(kube))
    kube.remove_pod("sigil-system", "sigil-agent-x1")
    error = await refusal(agents, token)
    assert isinstance(error, BoundPodNotFoundError)
    assert error.status == HTTPStatus.UNAUTHORIZED


async def test_pod_uid_mismatch_is_refused(
    kube: KubeApiServer, agents: TokenReviewAuthenticator
) -> None:
    """A token for a pod that was replaced by a new pod of the same name does not pass as the new pod (stand-in:
    with lookup on, the real server refuses such a token itself, so the issuer's UID check is not reached)."""
    kube.service_account_lookup = False
    old_uid = agent_pod(kube)["metadata"]["uid"]
    token = kube.mint_token(kube.pod("sigil-system", "sigil-agent-x1"))
    kube.remove_pod("sigil-system", "sigil-agent-x1")
    new_uid = agent_pod(kube)["metadata"]["uid"]
    error = await refusal(agents, token)
    assert isinstance(error, BoundPodUidMismatchError)
    assert (error.token_uid, error.pod_uid) == (old_uid, new_uid)


async def test_success_is_cached_no_longer_than_the_token_lives(
    kube: KubeApiServer, agents: TokenReviewAuthenticator, clock: FakeClock
) -> None:
    """A token expiring in 20 s is reviewed again after 20 s, not after 60 s (stand-in: TokenRequest's shortest
    lifetime is ten minutes)."""
    token = kube.mint_token(agent_pod(kube), ttl=20)
    await agents.authenticate(token)
    clock.advance(21)
    await agents.authenticate(token)  # still inside the API server's one-minute leeway
    assert kube.token_reviews == 2

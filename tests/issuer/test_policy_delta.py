"""The policy feed's deltas: an agent that names its set gets what changed, and ends up holding the issuer's set."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer

from sigil.issuer.admin import SocketAdmin
from sigil.issuer.client import HeldPolicies, IssuerClient, PolicyUpdate
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import MalformedRequestError
from sigil.issuer.policies.history import KEPT
from sigil.issuer.settings import PolicySettings


def _policy(name: str, *, port: int = 5432) -> str:
    return f"""\
apiVersion: authz.sigil.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: {name}
  namespace: shop
spec:
  targetRefs:
    - group: ""
      kind: Pod
      selector:
        matchLabels: {{app: db}}
  action: ALLOW
  enforcementLevel: Network
  rules:
    - sources:
        - type: ServiceAccount
          serviceAccount: {{name: web}}
      networkAttributes:
        ports: [{port}]
"""


def _write(path: Path, text: str) -> None:
    """Write a policy file so that its stamp changes even within one mtime tick (size or inode moves too)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _content(update: PolicyUpdate) -> tuple[object, ...]:
    """What an agent serves from an update: every policy, its origin, the namespaces, revision and digest."""
    return (
        update.revision,
        update.digest,
        sorted(accepted.canonical for accepted in update.accepted),
        sorted(update.origins.items()),
        {ns: dict(labels) for ns, labels in update.namespaces.items()},
    )


def _answers(registry: CollectorRegistry, kind: str) -> float:
    return registry.get_sample_value("sigil_policy_answers_total", {"kind": kind}) or 0.0


async def _next(agent: IssuerClient, after: PolicyUpdate) -> PolicyUpdate:
    """The next set after ``after``, asked for as a delta from it."""
    return await asyncio.wait_for(agent.policies(after.revision, wait=5, held=after), 7)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    _write(directory / "shop.yaml", _policy("db-from-web") + "---\n" + _policy("db-from-api"))
    return directory


@pytest.fixture
async def server(
    tmp_path: Path, policy_dir: Path, registry: CollectorRegistry
) -> AsyncIterator[IssuerServer]:
    """An issuer watching ``policy_dir`` five times a second."""
    policy = PolicySettings(directory=policy_dir, poll_interval=timedelta(seconds=0.2))
    settings = issuer_settings(tmp_path / "data", policy=policy)
    async with running_issuer(settings, registry=registry) as running:
        yield running


async def test_changes_arrive_as_deltas_that_make_the_whole_set(
    server: IssuerServer, policy_dir: Path, registry: CollectorRegistry
) -> None:
    """Each change (an addition, a moved origin, a replacement, a removal, namespace labels) arrives as a delta,
    and the set it makes is the one a fresh agent is answered whole."""
    feed = server.issuer.policies
    async with attested_agent(server) as agent, SocketAdmin(server.admin_socket) as admin:
        held = await agent.policies()
        assert held.held is not None  # its digest checked out: a base for the next request
        three = (
            _policy("db-first")
            + "---\n"
            + _policy("db-from-web")
            + "---\n"
            + _policy("db-from-api")
        )
        steps: list[Callable[[], Awaitable[object]]] = [
            lambda: admin.apply_policies("extra.yaml", _policy("db-from-admin", port=7000)),
            # A document inserted above the file's two: their origins (document index) move, not their text.
            lambda: asyncio.to_thread(_write, policy_dir / "shop.yaml", three),
            lambda: admin.apply_policies("extra.yaml", _policy("db-from-admin", port=7001)),
            lambda: admin.delete_policy("AuthorizationPolicy", "shop", "db-from-admin"),
            lambda: feed.set_namespaces({"shop": {"env": "prod"}, "web": {}}),
            lambda: feed.set_namespaces({"shop": {"env": "test"}}),
        ]
        for step in steps:
            await step()
            update = await _next(agent, held)
            assert update.delta
            assert update.delta_refused is None
            assert _content(update) == _content(await agent.policies())
            held = update
    names = sorted(p.name for p in held.policies)
    assert names == ["db-first", "db-from-api", "db-from-web"]
    assert held.namespaces == {"shop": {"env": "test"}}
    assert _answers(registry, "delta") == len(steps)


async def test_an_agent_naming_no_set_is_answered_the_whole_body_as_before(
    server: IssuerServer, registry: CollectorRegistry
) -> None:
    """An agent older than deltas names no digest and gets exactly the body it always got."""
    feed = server.issuer.policies
    answer = await feed.wait_answer(after_revision=None, held_digest=None, longest=0)
    assert not answer.delta
    assert answer.body == await feed.wait_encoded(after_revision=None, longest=0)
    async with attested_agent(server) as agent:
        whole = await agent.policies(held=None)
    assert not whole.delta
    assert _answers(registry, "full") == 1


async def test_a_set_the_issuer_no_longer_keeps_is_answered_whole(
    server: IssuerServer, registry: CollectorRegistry
) -> None:
    """An agent further behind than the issuer's kept sets is answered the whole set, which it adopts."""
    async with attested_agent(server) as agent, SocketAdmin(server.admin_socket) as admin:
        old = await agent.policies()
        for port in range(KEPT + 1):
            await admin.apply_policies("extra.yaml", _policy("db-from-admin", port=7000 + port))
        update = await agent.policies(old.revision, wait=5, held=old)
        assert not update.delta
        assert update.delta_refused is None
        assert _content(update) == _content(await agent.policies())
    assert _answers(registry, "delta") == 0


async def test_a_delta_that_does_not_add_up_is_dropped_for_the_whole_set(
    server: IssuerServer,
) -> None:
    """When the set held is not what its digest says, the delta's result fails the digest check and the client
    fetches the whole set: it never hands out the set it could not verify."""
    async with attested_agent(server) as agent, SocketAdmin(server.admin_socket) as admin:
        held = await agent.policies()
        assert held.held is not None
        # The agent's copy lost a policy, yet still names the issuer's digest.
        dropped = sorted(held.held.texts)[0]
        damaged = dataclasses.replace(
            held,
            held=HeldPolicies(
                {k: v for k, v in held.held.texts.items() if k != dropped},
                {k: v for k, v in held.held.documents.items() if k != dropped},
                {},
            ),
        )
        await admin.apply_policies("extra.yaml", _policy("db-from-admin"))
        update = await _next(agent, damaged)
        assert not update.delta
        assert update.delta_refused is not None
        assert "digest" in update.delta_refused
        assert _content(update) == _content(await agent.policies())
        assert dropped in {accepted.key for accepted in update.accepted}


async def test_a_malformed_held_digest_is_refused(server: IssuerServer) -> None:
    """``held_digest`` must be a SHA-256 digest as the feed writes it; anything else is a malformed request."""
    async with attested_agent(server) as agent:
        whole = await agent.policies()
        with pytest.raises(MalformedRequestError, match="held_digest"):
            await agent.policies(held=dataclasses.replace(whole, digest="../../etc"))

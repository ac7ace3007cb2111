"""WatchPolicies on the agent socket: the issuer's policies, scoped to the calling workload, streamed without repeats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from enforcer.policy_docs import anyone, ap, cap, dump, rule, sa
from enforcer.policy_world import PodAttestor, PolicyWorld, policy_world, write_policies
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from sigil.enforcer.policy import wire
from sigil.enforcer.policy.receiver import socket_path_of

SHOP = dump(
    ap("db-from-web", match={"app": "db"}, rules=[rule([sa("web")], ports=[5432])]),
    ap("web-from-all", match={"app": "web"}, rules=[rule([anyone()])]),
    ap("shop-wide", match={}, action="DENY", rules=[rule([sa("bad")])]),
)
OTHER = dump(ap("db-elsewhere", namespace="other", match={"app": "db"}, rules=[rule([anyone()])]))
CLUSTER = dump(
    cap(
        "guard-shop",
        namespaces={"kubernetes.io/metadata.name": "shop"},
        rules=[rule([anyone()], action="Deny")],
    ),
    cap(
        "guard-other",
        namespaces={"kubernetes.io/metadata.name": "other"},
        rules=[rule([anyone()], action="Deny")],
    ),
    cap("web-pods", pods={"app": "web"}, rules=[rule([anyone()], action="Allow")]),
    cap("baseline-all", tier="Baseline", rules=[rule([anyone()], action="Allow")]),
)
FILES = {"shop.yaml": SHOP, "other.yaml": OTHER, "cluster.yaml": CLUSTER}
TIMEOUT = 10


@pytest.fixture
async def world() -> AsyncIterator[PolicyWorld]:
    async with policy_world(FILES) as running:
        yield running


@asynccontextmanager
async def watching(
    endpoint: str, *, header: bool = True
) -> AsyncIterator[Stream[wire.WatchPoliciesRequest, wire.PolicySnapshot]]:
    """An open WatchPolicies stream on the agent at ``endpoint``."""
    channel = Channel(path=socket_path_of(endpoint))
    metadata = {"workload.spiffe.io": "true"} if header else None
    try:
        async with channel.request(
            wire.WATCH_POLICIES_PATH,
            Cardinality.UNARY_STREAM,
            wire.WatchPoliciesRequest,
            wire.PolicySnapshot,
            metadata=metadata,
        ) as stream:
            await stream.send_message(wire.WatchPoliciesRequest(), end=True)
            yield stream
            # The stream never ends by itself; leaving without a reset would wait for its end.
            await stream.cancel()
    finally:
        channel.close()


async def receive(
    stream: Stream[wire.WatchPoliciesRequest, wire.PolicySnapshot],
) -> wire.PolicySnapshot:
    """The next snapshot, failing the test when none comes in time."""
    snapshot = await asyncio.wait_for(stream.recv_message(), TIMEOUT)
    assert snapshot is not None
    return snapshot


def names(snapshot: wire.PolicySnapshot) -> list[str]:
    """The names of the snapshot's policies, in the order sent."""
    return [json.loads(document)["metadata"]["name"] for document in snapshot.policies]


async def test_a_pod_gets_only_the_policies_that_can_select_it(world: PolicyWorld) -> None:
    """A pod shop/app=db gets shop's policies selecting it and matching cluster policies, nothing else."""
    async with world.agent(PodAttestor("shop", {"app": "db"})), watching(world.endpoint) as stream:
        snapshot = await receive(stream)
    assert sorted(names(snapshot)) == ["baseline-all", "db-from-web", "guard-shop", "shop-wide"]
    assert snapshot.revision == world.server.issuer.policies.revision
    assert snapshot.digest
    assert (snapshot.namespace, dict(snapshot.pod_labels)) == ("shop", {"app": "db"})
    assert snapshot.namespace_labels["kubernetes.io/metadata.name"] == "shop"


async def test_a_caller_outside_any_pod_gets_only_cluster_policies_for_no_labels(
    world: PolicyWorld,
) -> None:
    """A uid-attested caller gets no namespaced policy, only cluster policies whose selectors match no labels."""
    async with world.agent(PodAttestor(None)), watching(world.endpoint) as stream:
        snapshot = await receive(stream)
    assert names(snapshot) == ["baseline-all"]
    assert (snapshot.namespace, dict(snapshot.namespace_labels)) == ("", {})


async def test_a_call_without_the_security_header_is_invalid_argument(world: PolicyWorld) -> None:
    """Like the Workload API, the policy service refuses a call lacking workload.spiffe.io: true."""
    async with world.agent(PodAttestor("shop", {"app": "db"})):
        with pytest.raises(GRPCError) as refused:
            async with watching(world.endpoint, header=False) as stream:
                await receive(stream)
    assert refused.value.status is Status.INVALID_ARGUMENT


async def test_each_change_is_sent_once_and_a_wakeup_without_one_sends_nothing(
    world: PolicyWorld,
) -> None:
    """A change elsewhere moves only the revision; a wake-up with nothing new sends nothing; a change here is sent."""
    async with (
        world.agent(PodAttestor("shop", {"app": "db"})) as agent,
        watching(world.endpoint) as stream,
    ):
        assert agent.policies is not None
        first = await receive(stream)
        # A change to another namespace's policies: same scoped set, newer revision (enforcers report it).
        write_policies(world.policies, "other.yaml", dump(ap("db-elsewhere", namespace="other")))
        second = await receive(stream)
        assert second.revision > first.revision
        assert second.policies == first.policies
        # Streams rebuild on every notification; an identical snapshot must not go out again.
        agent.policies.changes.notify()
        write_policies(world.policies, "shop.yaml", dump(ap("db-from-web", match={"app": "db"})))
        third = await receive(stream)
    assert third.revision > second.revision
    assert sorted(names(third)) == ["baseline-all", "db-from-web", "guard-shop"]


async def test_a_restarted_agent_serves_its_stored_policies_while_the_issuer_is_away(
    world: PolicyWorld,
) -> None:
    """The last set is stored in the agent's data dir, so a restart serves it before the issuer is back."""
    pod = PodAttestor("shop", {"app": "db"})
    async with world.agent(pod), watching(world.endpoint) as stream:
        before = await receive(stream)
    await world.server.aclose()
    async with world.agent(pod), watching(world.endpoint) as stream:
        after = await receive(stream)
    assert after == before

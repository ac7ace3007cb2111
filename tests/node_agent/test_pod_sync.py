"""This node's pods reach the agent from the issuer (never from the API server), scoped to the node in its SVID."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from sigil_testing.cluster import CLUSTER, Cluster, cluster
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import attested_agent, client_for
from sigil_testing.waiting import entered

from sigil.issuer.agentapi import contract
from sigil.issuer.client import IssuerClient
from sigil.issuer.errors import MalformedRequestError, NotEntitledError
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.attestation.pod_sync import PodSync

pytestmark = pytest.mark.kube


@pytest.fixture
async def world(control_plane: ControlPlane) -> AsyncIterator[Cluster]:
    """Two nodes, a namespace and the issuer, on the session's control plane."""
    async with cluster(control_plane) as running:
        yield running


async def until(pods: PodSync, condition: Callable[[], bool]) -> None:
    """Wait, on the agent's own change notifications, until ``condition`` holds (at most 10 s)."""
    async with asyncio.timeout(10):
        seen = pods.changes.revision
        while not condition():
            seen = await pods.changes.wait_after(seen)


async def agent_client(world: Cluster, node: str) -> IssuerClient:
    """An issuer client attested as the agent of ``node``, with that node's projected token."""
    settings = world.agent_settings(node)
    client = client_for(world.server)
    await client.attest_k8s(settings.attestation.token_path.read_text(), CLUSTER)
    return client


async def test_an_agent_holds_its_own_nodes_pods_and_never_another_nodes(world: Cluster) -> None:
    """Each agent's index has the pods bound to its node, with their labels, and none of the other node's."""
    ns = world.namespace
    web = ns.pod("web", node=world.node_a, service_account="web", labels={"app": "web"})
    db = ns.pod("db", node=world.node_b, service_account="db")
    await world.pod_cached(ns.name, "db")
    async with (
        NodeAgent(world.agent_settings(world.node_a)) as agent_a,
        NodeAgent(world.agent_settings(world.node_b)) as agent_b,
    ):
        assert agent_a.pods is not None
        assert agent_b.pods is not None
        await until(agent_a.pods, lambda: agent_a.pods is not None and agent_a.pods.synced.is_set())
        await until(agent_b.pods, lambda: agent_b.pods is not None and agent_b.pods.synced.is_set())
        on_a = agent_a.pods.index.get_by_uid(web["metadata"]["uid"])
        assert on_a is not None
        assert (on_a.namespace, on_a.name, on_a.service_account, on_a.node_name) == (
            ns.name,
            "web",
            "web",
            world.node_a,
        )
        assert dict(on_a.labels) == {"app": "web"}
        assert agent_a.pods.index.get_by_uid(db["metadata"]["uid"]) is None
        assert agent_b.pods.index.get_by_uid(db["metadata"]["uid"]) is not None
        assert agent_b.pods.index.get_by_uid(web["metadata"]["uid"]) is None


async def test_the_issuer_answers_only_with_the_node_in_the_agents_svid(world: Cluster) -> None:
    """Over the wire, node-a's agent gets node-a and its pods: the DaemonSet pod and the workload, nothing else."""
    ns = world.namespace
    ns.pod("web", node=world.node_a)
    ns.pod("db", node=world.node_b)
    await world.pod_cached(ns.name, "db")
    async with await agent_client(world, world.node_a) as client:
        update = await client.node_pods()
    assert update.node_name == world.node_a
    assert sorted((p.namespace, p.name) for p in update.pods) == sorted(
        [(ns.name, "web"), (world.agents.name, f"agent-{world.node_a}")]
    )


async def test_a_pod_created_then_deleted_on_its_node_reaches_the_agent(world: Cluster) -> None:
    """A new pod on the node appears in the agent's index through the long poll; its deletion removes it."""
    ns = world.namespace
    async with NodeAgent(world.agent_settings(world.node_a)) as agent:
        pods = agent.pods
        assert pods is not None
        await until(pods, pods.synced.is_set)
        uid = ns.pod("web", node=world.node_a)["metadata"]["uid"]
        await until(pods, lambda: pods.index.get_by_uid(uid) is not None)
        ns.pod("elsewhere", node=world.node_b)
        ns.delete_pod("web")
        await until(pods, lambda: pods.index.get_by_uid(uid) is None)


async def test_an_agent_cannot_name_another_node(world: Cluster) -> None:
    """A request naming a node is refused (400); the node only ever comes from the agent's SVID."""
    world.namespace.pod("db", node=world.node_b)
    await world.pod_cached(world.namespace.name, "db")
    async with await agent_client(world, world.node_a) as client:
        other = world.node_b
        for forged in ({"node": other}, {"nodeName": other}, {"fieldSelector": "x"}):
            with pytest.raises(MalformedRequestError, match="the node is the one in the agent"):
                # The client has no way to say this; forge the query the way an attacker would.
                await client._long_poll(contract.PATH_NODE_PODS, dict(forged), None)


async def test_an_agent_without_a_kubernetes_node_gets_no_pods(world: Cluster) -> None:
    """A join-token agent has no node in its ID: the issuer refuses it with 403 not_entitled."""
    world.namespace.pod("web", node=world.node_a)
    async with attested_agent(world.server) as client:
        with pytest.raises(NotEntitledError) as refused:
            await client.node_pods()
    assert refused.value.problem["status"] == 403  # type: ignore[attr-defined]


async def test_a_waiting_poll_is_answered_when_the_issuer_shuts_down(world: Cluster) -> None:
    """A long poll in flight when the issuer drains is answered at once with what there is, not cut off."""
    async with await agent_client(world, world.node_a) as client:
        current = await client.node_pods()
        kube = world.server.issuer.kube
        assert kube is not None
        pods = kube.pods
        with entered(pods, "wait_for") as reached:
            in_flight = asyncio.create_task(client.node_pods(current.revision, wait=60))
            await asyncio.wait_for(reached.wait(), timeout=10)  # the long poll waits in the server
        await world.server.aclose()
        answered = await asyncio.wait_for(in_flight, timeout=10)
    assert answered.revision == current.revision

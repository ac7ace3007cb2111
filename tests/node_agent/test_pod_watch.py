"""The agent's pod watch against the Kubernetes API stand-in: this node's pods in, deleted pods reported."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sigil_testing.agent import WORKLOAD_ID, agent_world
from sigil_testing.kube import KubeApiServer

from sigil.node_agent.attestors.k8s import InMemoryPodIndex
from sigil.node_agent.peer import PeerCredentials
from sigil.node_agent.pod_watch import KubeEndpoint, PodWatch
from sigil.node_agent.rotation import Backoff
from sigil.node_agent.selectors import Selector, WorkloadAttestation
from sigil.node_agent.settings import KubernetesSettings


class Watching:
    """A running watch of node-1, and the UIDs it reported deleted."""

    def __init__(self, kube: KubeApiServer, token: Path) -> None:
        self.index = InMemoryPodIndex()
        self.deleted: list[str] = []
        self.changed = asyncio.Event()
        self.watch = PodWatch(
            KubeEndpoint(url=kube.url, token_path=token),
            "node-1",
            self.index,
            on_delete=self._deleted,
            backoff=Backoff(
                initial=timedelta(milliseconds=20), maximum=timedelta(milliseconds=100)
            ),
        )

    def _deleted(self, uid: str) -> None:
        self.deleted.append(uid)
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait (at most 10 s) until ``condition`` holds."""
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the watch did not get there within 10 s")


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer() as server:
        yield server


@pytest.fixture
async def watching(kube: KubeApiServer, tmp_path: Path) -> AsyncIterator[Watching]:
    token = tmp_path / "token"
    token.write_text(kube.client_token)
    running = Watching(kube, token)
    task = asyncio.create_task(running.watch.run())
    try:
        yield running
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_index_holds_this_nodes_pods_and_learns_new_ones(
    kube: KubeApiServer, watching: Watching
) -> None:
    """Pods bound to node-1 are found by UID (with their labels); pods of other nodes are not."""
    mine = kube.add_pod("default", "web", node_name="node-1", labels={"app": "web"})
    other = kube.add_pod("default", "db", node_name="node-2")
    await watching.until(lambda: watching.index.get_by_uid(mine["metadata"]["uid"]) is not None)
    pod = watching.index.get_by_uid(mine["metadata"]["uid"])
    assert pod is not None
    assert (pod.namespace, pod.name, dict(pod.labels)) == ("default", "web", {"app": "web"})
    assert watching.index.get_by_uid(other["metadata"]["uid"]) is None


async def test_a_deleted_pod_is_removed_and_reported(
    kube: KubeApiServer, watching: Watching
) -> None:
    """DELETED removes the pod from the index and tells the SVID cache its UID."""
    pod = kube.add_pod("default", "web", node_name="node-1")
    uid = pod["metadata"]["uid"]
    await watching.until(lambda: watching.index.get_by_uid(uid) is not None)
    kube.remove_pod("default", "web")
    await watching.until(lambda: uid in watching.deleted)
    assert watching.index.get_by_uid(uid) is None


async def test_after_compaction_a_relist_reports_what_was_missed(
    kube: KubeApiServer, watching: Watching
) -> None:
    """A pod deleted while the watch was away and history compacted (410) is still reported."""
    pod = kube.add_pod("default", "web", node_name="node-1")
    uid = pod["metadata"]["uid"]
    await watching.until(lambda: watching.index.get_by_uid(uid) is not None)
    await kube.go_down()
    kube.remove_pod("default", "web")
    api = kube.add_pod("default", "api", node_name="node-1")["metadata"]["uid"]
    kube.compact()
    await kube.start()
    await watching.until(lambda: uid in watching.deleted)
    await watching.until(lambda: watching.index.get_by_uid(api) is not None)
    assert watching.index.get_by_uid(uid) is None


async def test_an_agent_with_a_node_name_watches_its_pods(kube: KubeApiServer) -> None:
    """`node_name` turns on the pod watch (and the k8s attestor) in the running agent."""
    kube.add_pod("default", "web", node_name="node-1")
    async with agent_world() as world:
        token = world.directory / "kube-token"
        token.write_text(kube.client_token)
        settings = KubernetesSettings(api_url=kube.url, token_path=token)
        async with world.agent(node_name="node-1", kubernetes=settings) as agent:
            assert agent.pod_watch is not None
            await asyncio.wait_for(agent.pod_watch.synced.wait(), timeout=10)
            (fetched,) = await agent.manager.x509_svids(
                WorkloadAttestation(
                    PeerCredentials(os.getpid(), os.getuid(), os.getgid(), 0),
                    frozenset({Selector("unix", f"uid:{os.getuid()}")}),
                )
            )
            assert fetched.spiffe_id == WORKLOAD_ID

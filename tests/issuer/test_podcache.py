"""The watched pod cache and node authorization, against the kube-apiserver stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus

import pytest
from sigil_testing.kube import KubeApiServer

from sigil.issuer.errors import (
    KubernetesUnavailableError,
    PodNotFoundError,
    PodOnOtherNodeError,
    PodUidMismatchError,
)
from sigil.issuer.kube import KubeApi, PodCache, authorize_pod_for_node


@pytest.fixture
async def pods(kube: KubeApiServer, kube_api: KubeApi) -> AsyncIterator[PodCache]:
    """A started pod cache that has listed the cluster once (two pods on node-a, one on node-b)."""
    kube.add_pod("shop", "web-1", node_name="node-a")
    kube.add_pod("shop", "web-2", node_name="node-a")
    kube.add_pod("shop", "db-1", node_name="node-b")
    async with PodCache(kube_api, retry_delay=0.02, max_retry_delay=0.1) as cache:
        await settle(cache, lambda c: c.synced)
        yield cache


async def settle(cache: PodCache, predicate: Callable[[PodCache], bool]) -> None:
    async with asyncio.timeout(10):
        await cache.wait_for(predicate)


def names_on(cache: PodCache, node: str) -> set[str]:
    return {pod.name for pod in cache.pods_on_node(node)}


# ------------------------------------------------------------------------------------------ the cache
async def test_initial_list_fills_the_cache(kube: KubeApiServer, pods: PodCache) -> None:
    """After the first list the cache answers which pods run on a node and which pod has a UID."""
    assert names_on(pods, "node-a") == {"web-1", "web-2"}
    assert names_on(pods, "node-b") == {"db-1"}
    uid = kube.pod("shop", "db-1")["metadata"]["uid"]
    found = pods.pod_by_uid(uid)
    assert found is not None
    assert (found.namespace, found.name, found.node_name) == ("shop", "db-1", "node-b")


async def test_added_pod_reaches_the_cache(kube: KubeApiServer, pods: PodCache) -> None:
    """A pod created after the list shows up through the watch."""
    kube.add_pod("shop", "web-3", node_name="node-b")
    await settle(pods, lambda c: "web-3" in names_on(c, "node-b"))
    assert pods.relists == 1


async def test_deleted_pod_leaves_the_cache(kube: KubeApiServer, pods: PodCache) -> None:
    """A deleted pod is gone from every index."""
    uid = kube.pod("shop", "web-1")["metadata"]["uid"]
    kube.remove_pod("shop", "web-1")
    await settle(pods, lambda c: c.pod("shop", "web-1") is None)
    assert names_on(pods, "node-a") == {"web-2"}
    assert pods.pod_by_uid(uid) is None


async def test_pod_recreated_on_another_node_moves(kube: KubeApiServer, pods: PodCache) -> None:
    """A pod deleted and re-created under the same name elsewhere is found on its new node with its new UID."""
    old_uid = kube.pod("shop", "web-1")["metadata"]["uid"]
    kube.remove_pod("shop", "web-1")
    new_uid = kube.add_pod("shop", "web-1", node_name="node-b")["metadata"]["uid"]
    await settle(pods, lambda c: c.pod_by_uid(new_uid) is not None)
    assert names_on(pods, "node-a") == {"web-2"}
    assert names_on(pods, "node-b") == {"db-1", "web-1"}
    assert pods.pod_by_uid(old_uid) is None


async def test_pending_pod_appears_on_its_node_once_bound(
    kube: KubeApiServer, pods: PodCache
) -> None:
    """A pod scheduled after creation is listed under its node when the binding arrives."""
    kube.add_pod("shop", "job-1", node_name=None)
    await settle(pods, lambda c: c.pod("shop", "job-1") is not None)
    assert "job-1" not in names_on(pods, "node-a")
    kube.modify_pod("shop", "job-1", node_name="node-a", phase="Running")
    await settle(pods, lambda c: "job-1" in names_on(c, "node-a"))


async def test_watch_timeout_resumes_without_relisting(kube: KubeApiServer, pods: PodCache) -> None:
    """When the server ends the watch, the cache resumes from its resourceVersion instead of listing again."""
    kube.expire_watches()
    kube.add_pod("shop", "web-3", node_name="node-a")
    await settle(pods, lambda c: "web-3" in names_on(c, "node-a"))
    assert pods.relists == 1


async def test_changes_while_the_server_was_down_arrive_after(
    kube: KubeApiServer, pods: PodCache
) -> None:
    """Changes made while the API server was unreachable reach the cache once it is back, without a relist."""
    await kube.go_down()
    kube.remove_pod("shop", "web-1")
    kube.add_pod("shop", "web-3", node_name="node-b")
    await kube.start()
    await settle(
        pods, lambda c: c.pod("shop", "web-1") is None and "web-3" in names_on(c, "node-b")
    )
    assert pods.relists == 1


async def test_expired_resource_version_relists(kube: KubeApiServer, pods: PodCache) -> None:
    """When the server has compacted past the cache's resourceVersion (410 Gone), the cache lists again."""
    await kube.go_down()
    kube.remove_pod("shop", "web-1")
    kube.add_pod("shop", "web-3", node_name="node-b")
    kube.compact()
    await kube.start()
    await settle(pods, lambda c: c.relists == 2 and c.synced)
    assert names_on(pods, "node-a") == {"web-2"}
    assert names_on(pods, "node-b") == {"db-1", "web-3"}


async def test_field_selector_drops_pods_that_stop_matching(
    kube: KubeApiServer, kube_api: KubeApi
) -> None:
    """With a phase selector, a pod that completes leaves the cache as the filtered watch reports it deleted."""
    kube.add_pod("batch", "run-1", node_name="node-a")
    selector = "status.phase!=Succeeded,status.phase!=Failed"
    async with PodCache(kube_api, field_selector=selector) as cache:
        await settle(cache, lambda c: c.pod("batch", "run-1") is not None)
        kube.modify_pod("batch", "run-1", phase="Succeeded")
        await settle(cache, lambda c: c.pod("batch", "run-1") is None)


async def test_stop_cancels_and_awaits_the_owner_task(kube_api: KubeApi) -> None:
    """Leaving the cache's context leaves no task of it running."""
    async with PodCache(kube_api) as cache:
        await settle(cache, lambda c: c.synced)
        assert any(t.get_name() == "sigil-pod-cache" for t in asyncio.all_tasks())
    assert not any(t.get_name() == "sigil-pod-cache" for t in asyncio.all_tasks())


# ------------------------------------------------------------------------------------------ node authorization
async def test_agent_may_have_a_pod_on_its_node(kube: KubeApiServer, pods: PodCache) -> None:
    """An agent is allowed the pods that run on its own node."""
    uid = kube.pod("shop", "web-1")["metadata"]["uid"]
    pod = authorize_pod_for_node(pods, "node-a", namespace="shop", pod_name="web-1", pod_uid=uid)
    assert pod.uid == uid


async def test_agent_may_not_have_a_pod_on_another_node(
    kube: KubeApiServer, pods: PodCache
) -> None:
    """Asking for a pod of another node is refused with 403 ``pod_on_other_node``."""
    uid = kube.pod("shop", "db-1")["metadata"]["uid"]
    with pytest.raises(PodOnOtherNodeError) as caught:
        authorize_pod_for_node(pods, "node-a", namespace="shop", pod_name="db-1", pod_uid=uid)
    assert caught.value.status == HTTPStatus.FORBIDDEN
    assert (caught.value.reason, caught.value.node_name) == ("pod_on_other_node", "node-b")


async def test_unknown_pod_is_refused(pods: PodCache) -> None:
    """Asking for a pod the cluster does not have is refused with ``pod_not_found``."""
    with pytest.raises(PodNotFoundError):
        authorize_pod_for_node(pods, "node-a", namespace="shop", pod_name="ghost", pod_uid="0000")


async def test_stale_pod_uid_is_refused(pods: PodCache) -> None:
    """Naming a pod with a UID it no longer has is refused with ``pod_uid_mismatch``."""
    with pytest.raises(PodUidMismatchError):
        authorize_pod_for_node(
            pods, "node-a", namespace="shop", pod_name="web-1", pod_uid="old-uid"
        )


async def test_authorization_fails_closed_before_the_first_list(kube_api: KubeApi) -> None:
    """A cache that has not listed yet refuses with 503 rather than guess."""
    with pytest.raises(KubernetesUnavailableError):
        authorize_pod_for_node(
            PodCache(kube_api), "node-a", namespace="shop", pod_name="web-1", pod_uid="x"
        )

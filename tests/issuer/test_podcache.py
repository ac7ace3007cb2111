"""The watched pod cache and node authorization, against the real kube-apiserver's lists and watches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from http import HTTPStatus
from typing import Any, cast

import pytest
from sigil_testing.controlplane import ControlPlane
from sigil_testing.realkube import Namespace, add_node, fresh_namespace

from sigil.issuer.errors import (
    KubernetesUnavailableError,
    PodNotFoundError,
    PodOnOtherNodeError,
    PodUidMismatchError,
)
from sigil.issuer.kube import KubeApi, PodCache, authorize_pod_for_node
from sigil.issuer.kube.informer import Informer, ObjectKey
from sigil.issuer.kube.payloads import WatchEvent

pytestmark = pytest.mark.kube


class _WatchSpy(KubeApi):
    """The real client, noting the type of every pod watch event the real server sends (nothing is altered)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []
        self._noted = asyncio.Event()

    def _note(self, what: str) -> None:
        self.seen.append(what)
        self._noted.set()

    async def until(self, predicate: Callable[[list[str]], bool]) -> None:
        """Wait until ``predicate(seen)`` holds; bound it with ``asyncio.timeout``."""
        while not predicate(self.seen):
            self._noted.clear()
            await self._noted.wait()

    async def _spied(self, events: AsyncIterator[WatchEvent]) -> AsyncIterator[WatchEvent]:
        # Closed with the spy, as the reflector closes the spy: a stream left to the GC leaks its connection.
        async with contextlib.aclosing(cast(AsyncGenerator[WatchEvent, None], events)) as stream:
            async for event in stream:
                self._note(str(event["type"]))
                yield event

    def watch_pods(
        self,
        resource_version: str,
        *,
        timeout_seconds: int,
        field_selector: str = "",
        label_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        self._note("START")
        events = super().watch_pods(
            resource_version,
            timeout_seconds=timeout_seconds,
            field_selector=field_selector,
            label_selector=label_selector,
        )
        return self._spied(events)


@pytest.fixture
async def kube_api(control_plane: ControlPlane) -> AsyncIterator[KubeApi]:
    """The issuer's client, from the control plane's admin kubeconfig."""
    api = KubeApi.from_kubeconfig(control_plane.kubeconfig)
    yield api
    await api.aclose()


@pytest.fixture
def nodes(control_plane: ControlPlane) -> tuple[str, str]:
    """Two Node objects of the test's own."""
    return add_node(control_plane), add_node(control_plane)


@pytest.fixture
async def pods(
    kube_namespace: Namespace, nodes: tuple[str, str], kube_api: KubeApi
) -> AsyncIterator[PodCache]:
    """A started pod cache of the test's namespace that has listed it once (web-1 and web-2 on the first
    node, db-1 on the second)."""
    node_a, node_b = nodes
    kube_namespace.pod("web-1", node=node_a)
    kube_namespace.pod("web-2", node=node_a)
    kube_namespace.pod("db-1", node=node_b)
    async with _cache(kube_api, kube_namespace) as cache:
        await settle(cache, lambda c: c.synced)
        yield cache


def _cache(api: KubeApi, namespace: Namespace, **options: Any) -> PodCache:
    selector = f"metadata.namespace={namespace.name}"
    if "field_selector" in options:
        selector = f"{selector},{options.pop('field_selector')}"
    return PodCache(api, field_selector=selector, retry_delay=0.05, max_retry_delay=0.2, **options)


async def settle(cache: PodCache, predicate: Callable[[PodCache], bool]) -> None:
    async with asyncio.timeout(20):
        await cache.wait_for(predicate)


def names_on(cache: PodCache, node: str) -> set[str]:
    return {pod.name for pod in cache.pods_on_node(node)}


def uid_of(pod: dict[str, Any]) -> str:
    uid = pod["metadata"]["uid"]
    assert isinstance(uid, str)
    return uid


# ------------------------------------------------------------------------------------------ the cache
async def test_initial_list_fills_the_cache(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """After the first list the cache answers which pods run on a node and which pod has a UID."""
    node_a, node_b = nodes
    assert names_on(pods, node_a) == {"web-1", "web-2"}
    assert names_on(pods, node_b) == {"db-1"}
    found = pods.pod_by_uid(uid_of(kube_namespace.get_pod("db-1")))
    assert found is not None
    assert (found.namespace, found.name, found.node_name) == (kube_namespace.name, "db-1", node_b)


async def test_added_pod_reaches_the_cache(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """A pod created after the list shows up through the watch."""
    kube_namespace.pod("web-3", node=nodes[1])
    await settle(pods, lambda c: "web-3" in names_on(c, nodes[1]))
    assert pods.relists == 1


async def test_deleted_pod_leaves_the_cache(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """A deleted pod is gone from every index."""
    uid = uid_of(kube_namespace.get_pod("web-1"))
    kube_namespace.delete_pod("web-1")
    await settle(pods, lambda c: c.pod(kube_namespace.name, "web-1") is None)
    assert names_on(pods, nodes[0]) == {"web-2"}
    assert pods.pod_by_uid(uid) is None
    assert {pod.name for pod in pods.pods_in_namespace(kube_namespace.name)} == {"web-2", "db-1"}


async def test_pods_by_namespace_with_their_named_ports(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """The cache answers a namespace's pods, each with the ports its containers name (what Linkerd's Servers
    may name); a pod naming none has none."""
    kube_namespace.pod("api-1", node=nodes[0], ports={"http": 8080, "admin": 9990})
    await settle(pods, lambda c: c.pod(kube_namespace.name, "api-1") is not None)
    by_name = {pod.name: pod for pod in pods.pods_in_namespace(kube_namespace.name)}
    assert set(by_name) == {"web-1", "web-2", "db-1", "api-1"}
    assert by_name["api-1"].named_ports == (("admin", 9990), ("http", 8080))
    assert by_name["web-1"].named_ports == ()
    assert pods.pods_in_namespace("no-such-namespace") == ()


async def test_pod_recreated_on_another_node_moves(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """A pod deleted and re-created under the same name elsewhere is found on its new node with its new UID."""
    node_a, node_b = nodes
    old_uid = uid_of(kube_namespace.get_pod("web-1"))
    kube_namespace.delete_pod("web-1")
    new_uid = uid_of(kube_namespace.pod("web-1", node=node_b))
    await settle(pods, lambda c: c.pod_by_uid(new_uid) is not None)
    assert names_on(pods, node_a) == {"web-2"}
    assert names_on(pods, node_b) == {"db-1", "web-1"}
    assert pods.pod_by_uid(old_uid) is None


async def test_pending_pod_appears_on_its_node_once_bound(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """A pod scheduled after creation is listed under its node when the binding arrives."""
    kube_namespace.pod("job-1", node=None)
    await settle(pods, lambda c: c.pod(kube_namespace.name, "job-1") is not None)
    assert "job-1" not in names_on(pods, nodes[0])
    kube_namespace.bind_pod("job-1", nodes[0])
    await settle(pods, lambda c: "job-1" in names_on(c, nodes[0]))


async def test_field_selector_drops_pods_that_stop_matching(
    kube_namespace: Namespace, nodes: tuple[str, str], kube_api: KubeApi
) -> None:
    """With a phase selector, a pod that completes leaves the cache as the filtered watch reports it deleted."""
    kube_namespace.pod("run-1", node=nodes[0])
    selector = "status.phase!=Succeeded,status.phase!=Failed"
    async with _cache(kube_api, kube_namespace, field_selector=selector) as cache:
        await settle(cache, lambda c: c.pod(kube_namespace.name, "run-1") is not None)
        kube_namespace.set_pod_phase("run-1", "Succeeded")
        await settle(cache, lambda c: c.pod(kube_namespace.name, "run-1") is None)


async def test_stop_cancels_and_awaits_the_owner_task(
    kube_namespace: Namespace, kube_api: KubeApi
) -> None:
    """Leaving the cache's context leaves no task of it running."""
    async with _cache(kube_api, kube_namespace) as cache:
        await settle(cache, lambda c: c.synced)
        assert any(t.get_name() == "sigil-pod-cache" for t in asyncio.all_tasks())
    assert not any(t.get_name() == "sigil-pod-cache" for t in asyncio.all_tasks())


# ------------------------------------------------------------------------------------------ the watch's life
async def test_watch_ends_and_resumes_through_bookmarks_without_relisting(
    control_plane: ControlPlane,
    kube_namespace: Namespace,
    nodes: tuple[str, str],
) -> None:
    """Short watches end, bookmarks arrive (allowWatchBookmarks), and the cache resumes from them: no relist,
    no phantom pod from a bookmark's bare object, and a pod created afterwards still arrives."""
    spy = _WatchSpy.from_kubeconfig(control_plane.kubeconfig)
    assert isinstance(spy, _WatchSpy)
    elsewhere = fresh_namespace(control_plane)
    async with contextlib.aclosing(spy), _cache(spy, kube_namespace, watch_timeout=3) as cache:
        await settle(cache, lambda c: c.synced)
        # A change outside the cache's selection moves the server's resourceVersion; the next bookmark (sent
        # two seconds before timeoutSeconds runs out) carries it.
        elsewhere.pod("other", node=nodes[0])
        async with asyncio.timeout(20):
            await spy.until(lambda seen: seen.count("START") >= 3 and "BOOKMARK" in seen)
        assert cache.pod("", "") is None
        kube_namespace.pod("late", node=nodes[0])
        await settle(cache, lambda c: "late" in names_on(c, nodes[0]))
        assert cache.relists == 1


async def test_restarted_api_server_relists_after_410_gone(
    private_control_plane: ControlPlane,
) -> None:
    """After kube-apiserver restarts over etcd compacted past the cache's resourceVersion, the watch answers 410
    Gone and the cache lists again; meanwhile it kept answering from what it had seen."""
    plane = private_control_plane
    namespace = fresh_namespace(plane)
    node = add_node(plane)
    kept = namespace.pod("kept", node=node)
    gone = namespace.pod("gone", node=node)
    api = KubeApi.from_kubeconfig(plane.kubeconfig)
    try:
        async with _cache(api, namespace) as cache:
            await settle(cache, lambda c: c.synced)
            await asyncio.to_thread(plane.stop_apiserver, timeout=1)
            # etcd alone could still serve an old revision; a restarted API server's watch cache cannot, and
            # compaction makes sure neither does.
            await asyncio.to_thread(plane.compact_etcd)
            assert cache.pod_by_uid(uid_of(kept)) is not None
            await asyncio.to_thread(plane.start_apiserver)
            namespace.delete_pod("gone")
            namespace.pod("new", node=node)
            await settle(
                cache,
                lambda c: c.relists == 2 and {"kept", "new"} == names_on(c, node),
            )
            assert cache.pod_by_uid(uid_of(gone)) is None
    finally:
        await api.aclose()


async def test_namespace_informer_follows_creations_and_relists_after_a_restart(
    private_control_plane: ControlPlane,
) -> None:
    """The namespace informer sees a new namespace with its name label, and again after an API server restart."""
    plane = private_control_plane
    seen: list[dict[ObjectKey, dict[str, Any]]] = []
    changed = asyncio.Event()

    async def on_change(objects: Any) -> None:
        seen.append(dict(objects))
        changed.set()

    def labels_of(name: str) -> dict[str, str] | None:
        found = seen[-1].get(("", name)) if seen else None
        return None if found is None else found["metadata"].get("labels", {})

    async def until(predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(20):
            while not predicate():
                changed.clear()
                await changed.wait()

    api = KubeApi.from_kubeconfig(plane.kubeconfig)
    informer = Informer(api, "/api/v1/namespaces", on_change, retry_delay=0.05, max_retry_delay=0.2)
    task = asyncio.create_task(informer.run())
    try:
        first = fresh_namespace(plane)
        await until(lambda: labels_of(first.name) is not None)
        assert labels_of(first.name) == {"kubernetes.io/metadata.name": first.name}
        await asyncio.to_thread(plane.stop_apiserver, timeout=1)
        await asyncio.to_thread(plane.start_apiserver)
        second = fresh_namespace(plane)
        await until(lambda: labels_of(second.name) is not None)
        assert labels_of(first.name) is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.aclose()


# ------------------------------------------------------------------------------------------ node authorization
async def test_agent_may_have_a_pod_on_its_node(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """An agent is allowed the pods that run on its own node."""
    uid = uid_of(kube_namespace.get_pod("web-1"))
    pod = authorize_pod_for_node(
        pods, nodes[0], namespace=kube_namespace.name, pod_name="web-1", pod_uid=uid
    )
    assert pod.uid == uid


async def test_agent_may_not_have_a_pod_on_another_node(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """Asking for a pod of another node is refused with 403 ``pod_on_other_node``."""
    uid = uid_of(kube_namespace.get_pod("db-1"))
    with pytest.raises(PodOnOtherNodeError) as caught:
        authorize_pod_for_node(
            pods, nodes[0], namespace=kube_namespace.name, pod_name="db-1", pod_uid=uid
        )
    assert caught.value.status == HTTPStatus.FORBIDDEN
    assert (caught.value.reason, caught.value.node_name) == ("pod_on_other_node", nodes[1])


async def test_unknown_pod_is_refused(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """Asking for a pod the cluster does not have is refused with ``pod_not_found``."""
    with pytest.raises(PodNotFoundError):
        authorize_pod_for_node(
            pods, nodes[0], namespace=kube_namespace.name, pod_name="ghost", pod_uid="0000"
        )


async def test_stale_pod_uid_is_refused(
    kube_namespace: Namespace, nodes: tuple[str, str], pods: PodCache
) -> None:
    """Naming a pod with a UID it no longer has is refused with ``pod_uid_mismatch``."""
    with pytest.raises(PodUidMismatchError):
        authorize_pod_for_node(
            pods, nodes[0], namespace=kube_namespace.name, pod_name="web-1", pod_uid="old-uid"
        )


async def test_authorization_fails_closed_before_the_first_list(kube_api: KubeApi) -> None:
    """A cache that has not listed yet refuses with 503 rather than guess."""
    with pytest.raises(KubernetesUnavailableError):
        authorize_pod_for_node(
            PodCache(kube_api), "node-a", namespace="shop", pod_name="web-1", pod_uid="x"
        )

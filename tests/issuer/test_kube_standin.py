"""The kube-apiserver stand-in as the official ``kubernetes`` client sees it: the wire shapes must parse."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from sigil_testing.kube import KubeApiServer


def _api(kubeconfig: Path) -> k8s.ApiClient:
    api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


async def test_list_honours_field_and_label_selectors(kube: KubeApiServer, tmp_path: Path) -> None:
    """The real client lists pods by node and by label, and reads nodes, as against kube-apiserver."""
    kube.add_pod("shop", "web-1", node_name="node-a", labels={"app": "web", "tier": "front"})
    kube.add_pod("shop", "web-2", node_name="node-b", labels={"app": "web"})
    kube.add_pod("ops", "probe", node_name="node-a", labels={"app": "probe"})
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

    def query() -> dict[str, Any]:
        with _api(kubeconfig) as api:
            core = k8s.CoreV1Api(api)
            return {
                "on_a": core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-a"),
                "web": core.list_namespaced_pod("shop", label_selector="app in (web),tier!=front"),
                "node": core.read_node("node-b"),
                "nodes": core.list_node(),
            }

    answers = await asyncio.to_thread(query)
    assert sorted(p.metadata.name for p in answers["on_a"].items) == ["probe", "web-1"]
    assert [p.metadata.name for p in answers["web"].items] == ["web-2"]
    assert answers["node"].metadata.name == "node-b"
    assert len(answers["nodes"].items) == 2


async def test_missing_pod_is_a_404_status(kube: KubeApiServer, tmp_path: Path) -> None:
    """Reading a pod that does not exist raises the client's 404 with a NotFound Status body."""
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

    def read() -> None:
        with _api(kubeconfig) as api:
            k8s.CoreV1Api(api).read_namespaced_pod("ghost", "shop")

    with pytest.raises(k8s.ApiException) as caught:
        await asyncio.to_thread(read)
    assert caught.value.status == 404
    assert '"reason": "NotFound"' in (caught.value.body or "")


async def test_watch_streams_changes_after_a_resource_version(
    kube: KubeApiServer, tmp_path: Path
) -> None:
    """The real client's Watch decodes ADDED and MODIFIED namespaces and ADDED and DELETED pods after a list's
    resourceVersion (the policy test's namespace watch and the issuer's pod watch)."""
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    with _api(kubeconfig) as api:
        core = k8s.CoreV1Api(api)
        namespaces = await asyncio.to_thread(core.list_namespace)
        pods = await asyncio.to_thread(core.list_namespaced_pod, "shop")
    assert namespaces.metadata is not None
    assert pods.metadata is not None
    kube.add_namespace("shop")
    kube.add_namespace("shop", labels={"env": "prod"})
    kube.add_pod("shop", "web-1", node_name="node-a", labels={"app": "web"})
    kube.remove_pod("shop", "web-1")

    def watch(lister: str, since: str | None, *args: str) -> list[tuple[str, str, dict[str, str]]]:
        seen: list[tuple[str, str, dict[str, str]]] = []
        with _api(kubeconfig) as api:
            # The client's watch module is untyped; its events are plain dicts around typed models.
            stream = k8s_watch.Watch().stream(  # type: ignore[no-untyped-call]
                getattr(k8s.CoreV1Api(api), lister),
                *args,
                resource_version=since,
                timeout_seconds=30,
            )
            for event in stream:
                obj = event["object"]
                seen.append((event["type"], obj.metadata.name, obj.metadata.labels or {}))
                if len(seen) == 2:
                    stream.close()
        return seen

    shop = {"kubernetes.io/metadata.name": "shop"}
    assert await asyncio.to_thread(
        watch, "list_namespace", namespaces.metadata.resource_version
    ) == [("ADDED", "shop", shop), ("MODIFIED", "shop", shop | {"env": "prod"})]
    assert await asyncio.to_thread(
        watch, "list_namespaced_pod", pods.metadata.resource_version, "shop"
    ) == [("ADDED", "web-1", {"app": "web"}), ("DELETED", "web-1", {"app": "web"})]


async def test_requests_without_the_client_token_are_unauthorized(
    kube: KubeApiServer, tmp_path: Path
) -> None:
    """A caller without the kubeconfig's bearer token gets 401, as from a real API server."""
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    kubeconfig.write_text(kubeconfig.read_text().replace(kube.client_token, "wrong"))

    def read() -> None:
        with _api(kubeconfig) as api:
            k8s.CoreV1Api(api).read_node("node-a")

    with pytest.raises(k8s.ApiException) as caught:
        await asyncio.to_thread(read)
    assert caught.value.status == 401

"""Objects, their history and their watches for the API server stand-in (:mod:`sigil_testing.kube`).

Lists and watches follow kube-apiserver's wire format: list items without ``kind``/``apiVersion``, the list's
``resourceVersion``, watch streams of one JSON event per line from a ``resourceVersion`` (or synthetic ``ADDED``
events for what exists, for ``""``/``"0"``), ended cleanly at ``timeoutSeconds``, and objects entering or leaving a
filtered watch's selection seen as ``ADDED``/``DELETED``, as the watch cache does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sigil_testing.kube_selectors import field_matcher, label_matcher

__all__ = [
    "Event",
    "Obj",
    "Resource",
    "Watcher",
    "collection",
    "get_object",
    "namespace_object",
    "node_object",
    "pod_object",
    "rfc3339",
    "status",
]

Obj = dict[str, Any]


def status(code: int, reason: str, message: str, details: Obj | None = None) -> web.Response:
    """A ``Status`` failure, as every error of the real server is."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=code)


@dataclass(frozen=True, slots=True)
class Event:
    """One change of one object, with the object as it was (for selection changes)."""

    rv: int
    type: str
    obj: Obj
    old: Obj | None


@dataclass(slots=True, eq=False)  # identity, so a set can hold the open watches
class Watcher:
    """One open watch: its namespace (None: all) and selection, and the events queued for it."""

    namespace: str | None
    matches: Callable[[Obj], bool]
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    def translate(self, event: Event) -> Obj | None:
        """The event as this watcher sees it: entering or leaving its selection is ADDED or DELETED."""

        def visible(obj: Obj | None) -> bool:
            if obj is None:
                return False
            ns_ok = self.namespace is None or obj["metadata"].get("namespace") == self.namespace
            return ns_ok and self.matches(obj)

        was, now = visible(event.old), visible(event.obj) and event.type != "DELETED"
        if event.type == "DELETED":
            kind = "DELETED" if was else None
        elif was and now:
            kind = "MODIFIED"
        elif now:
            kind = "ADDED"
        elif was:
            kind = "DELETED"
        else:
            kind = None
        return None if kind is None else {"type": kind, "object": event.obj}


@dataclass(slots=True)
class Resource:
    """One kind's objects by (namespace, name), its recent history and its open watches."""

    kind: str
    plural: str
    fields: Mapping[str, Callable[[Obj], str]]
    objects: dict[tuple[str, str], Obj] = field(default_factory=dict)
    history: deque[Event] = field(default_factory=lambda: deque(maxlen=10_000))
    watchers: set[Watcher] = field(default_factory=set)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_object(resource: Resource, namespace: str, name: str) -> web.Response:
    """``GET`` of one object, or the real server's 404."""
    obj = resource.objects.get((namespace, name))
    if obj is None:
        return status(
            404,
            "NotFound",
            f'{resource.plural} "{name}" not found',
            {"name": name, "kind": resource.plural},
        )
    return web.json_response(obj)


async def collection(
    resource: Resource, request: web.Request, namespace: str | None, current_rv: int
) -> web.StreamResponse:
    """A list (at ``current_rv``) or, with ``?watch=true``, a watch stream of ``resource``."""
    query = request.query
    try:
        labels = label_matcher(query.get("labelSelector", ""))
        fields = field_matcher(query.get("fieldSelector", ""), resource.fields)
    except ValueError as err:
        return status(400, "BadRequest", str(err))
    watcher = Watcher(namespace, lambda o: labels(o["metadata"].get("labels") or {}) and fields(o))
    if query.get("watch") in ("true", "1"):
        return await _watch(resource, request, watcher)
    items = []
    for obj in resource.objects.values():
        if watcher.translate(Event(0, "ADDED", obj, None)) is not None:
            item = dict(obj)
            # List items carry no kind/apiVersion on the wire; the list does.
            item.pop("kind", None)
            item.pop("apiVersion", None)
            items.append(item)
    return web.json_response(
        {
            "kind": f"{resource.kind}List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(current_rv)},
            "items": items,
        }
    )


async def _watch(resource: Resource, request: web.Request, watcher: Watcher) -> web.StreamResponse:
    rv_param = request.query.get("resourceVersion", "")
    timeout = float(request.query.get("timeoutSeconds", "1800"))
    backlog: list[Event] = []
    if rv_param in ("", "0"):
        # "Get State and Start at Most Recent": synthetic ADDED events for what exists now.
        backlog = [Event(0, "ADDED", obj, None) for obj in resource.objects.values()]
    else:
        backlog = [e for e in resource.history if e.rv > int(rv_param)]
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for past in backlog:
        watcher.queue.put_nowait(past)
    resource.watchers.add(watcher)
    try:
        async with asyncio.timeout(timeout):
            while (event := await watcher.queue.get()) is not None:
                line = watcher.translate(event)
                if line is not None:
                    await response.write(json.dumps(line).encode() + b"\n")
    except TimeoutError:
        pass  # timeoutSeconds ran out: the server ends the stream cleanly
    finally:
        resource.watchers.discard(watcher)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def node_object(name: str, *, uid: str | None, labels: Mapping[str, str] | None, now: float) -> Obj:
    """A Node as a kubelet registers it."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": uid or str(uuid.uuid4()),
            "creationTimestamp": rfc3339(now),
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                **(labels or {}),
            },
        },
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "addresses": [{"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": str(uuid.uuid4()),
                "containerRuntimeVersion": "containerd://2.0.0",
                "kernelVersion": "6.8.0",
                "kubeProxyVersion": "v1.33.0",
                "kubeletVersion": "v1.33.0",
                "machineID": uuid.uuid4().hex,
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": str(uuid.uuid4()),
            },
        },
    }


def namespace_object(name: str, *, uid: str | None, labels: Mapping[str, str] | None) -> Obj:
    """A Namespace carrying ``kubernetes.io/metadata.name``, as the API server sets it."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": uid or str(uuid.uuid4()),
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def pod_object(
    namespace: str,
    name: str,
    *,
    node_name: str | None,
    service_account: str,
    labels: Mapping[str, str] | None,
    uid: str | None,
    phase: str,
    now: float,
    ordinal: int,
) -> Obj:
    """A Pod bound to ``node_name`` (or pending when None); ``ordinal`` picks its pod IP."""
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "creationTimestamp": rfc3339(now),
            "labels": dict(labels or {}),
        },
        "spec": {
            "containers": [{"name": "main", "image": "registry.example/app:1"}],
            "serviceAccountName": service_account,
            "serviceAccount": service_account,
            "restartPolicy": "Always",
        },
        "status": {"phase": phase if node_name else "Pending"},
    }
    if node_name:
        pod["spec"]["nodeName"] = node_name
        pod["status"]["hostIP"] = "192.0.2.10"
        pod["status"]["podIP"] = f"10.244.0.{ordinal % 250 + 2}"
    return pod

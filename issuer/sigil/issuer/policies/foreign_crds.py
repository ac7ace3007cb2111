"""Istio's and Linkerd's policy resources in the cluster, followed like Sigil's CRDs and translated as they change.

A mesh moving to Sigil keeps its policy objects: with ``policy.watch_crds`` the issuer asks the API server which
of the kinds below it serves (API discovery, ``/apis/GROUP`` then ``/apis/GROUP/VERSION``, the group's preferred
version first) and follows each served kind by list+watch. It asks again every ``discovery_interval``: a kind
installed later is followed from then on, a kind whose preferred version changed is followed at its new path, and
a kind uninstalled (its CRD deleted, which deletes its objects) leaves with its translations once two discoveries
in a row have not found it: an API server that has just started may not serve its CRDs' groups for a moment, and
that must not read as "every Istio policy was deleted". A discovery that fails changes nothing.
After each change every object of that dialect, of every kind,
goes to its translator in one batch (Linkerd's meaning spans ``Server``, ``AuthorizationPolicy`` and the
authentications), and the Sigil documents that come out replace the source ``kubernetes:<dialect>`` of the
feed, where they are judged like any other. A dialect is published only once every kind of it has been listed,
so a ``Server`` never stands alone for lack of its authorizations. A translation that fails outright keeps the
last good one; refused parts and approximations are logged (``policy.refused``, ``policy.translated``).

Linkerd's meaning also depends on the namespaces: the ``config.linkerd.io/default-inbound-policy`` annotation
sets a namespace's default (``deny`` refuses whatever no policy admits). The issuer's namespace watch hands
:meth:`ForeignPolicyWatch.namespaces_changed` every namespace, and the namespaces carrying that annotation go
with each Linkerd batch, translated while Linkerd's kinds are served even if no Linkerd policy exists. Linkerd's
dialect is first published only after the namespaces have been listed once, so that a namespace's ``deny`` is
never missing from the first translation, and again whenever an annotation changes. A ``Server`` may name its
port (``port: http``); with the issuer's pod cache given, the pods of each namespace holding such a Server go
with the batch (their labels and named container ports, nothing else), so the name resolves to the numbers the
selected pods give it; the dialect then waits for the pod cache's first list, and is translated again when those
pods' labels or named ports change.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import structlog

from sigil.enforcer.policy.dialects.base import (
    Exactness,
    SourcedDocument,
    TranslateOptions,
    takes_context,
)
from sigil.enforcer.policy.dialects.linkerd import DEFAULT_POLICY_ANNOTATION
from sigil.enforcer.policy.foreign import translate_foreign
from sigil.enforcer.policy.origin import Origin, OriginKind
from sigil.issuer.errors import KubernetesUnavailableError
from sigil.issuer.kube.api import KubeApi
from sigil.issuer.kube.informer import Informer, ObjectKey
from sigil.issuer.kube.podcache import PodCache
from sigil.issuer.policies.feed import PolicyFeed
from sigil.kit import Backoff

__all__ = ["FOREIGN_KINDS", "ForeignPolicyWatch"]

_log = structlog.get_logger(__name__)

#: The kinds followed, by API group: what the translators read.
FOREIGN_KINDS: Mapping[str, tuple[str, ...]] = {
    "security.istio.io": ("AuthorizationPolicy",),
    "policy.linkerd.io": (
        "Server",
        "AuthorizationPolicy",
        "MeshTLSAuthentication",
        "NetworkAuthentication",
        "ServerAuthorization",
        "HTTPRoute",
    ),
}


class ForeignPolicyWatch:
    """Discovers the served foreign kinds and follows them into ``feed``; :meth:`run` is a background task."""

    def __init__(
        self,
        api: KubeApi,
        feed: PolicyFeed,
        *,
        translation: TranslateOptions,
        kinds: Mapping[str, tuple[str, ...]] = FOREIGN_KINDS,
        retry_delay: float = 0.5,
        discovery_interval: float = 30.0,
        pods: PodCache | None = None,
    ) -> None:
        self._api = api
        self._pods = pods
        # group -> the pods its last publication passed (what resolves Servers' named ports).
        self._passed_pods: dict[str, tuple[_PodPorts, ...]] = {}
        self._feed = feed
        self._translation = translation
        self._kinds = kinds
        self._retry_delay = retry_delay
        self._discovery_interval = discovery_interval
        # group -> kind -> (apiVersion, objects): filled by each kind's informer.
        self._objects: dict[str, dict[str, tuple[str, Mapping[ObjectKey, dict[str, Any]]]]] = {}
        self._served: dict[str, list[str]] = {}
        # (group, kind) -> (collection path, its informer's task), and the kinds missing from the last discovery.
        self._followed: dict[tuple[str, str], tuple[str, asyncio.Task[None]]] = {}
        self._missing: set[tuple[str, str]] = set()
        self._published: set[str] = set()
        # namespace -> its default-inbound-policy annotation, for the dialects that read namespaces; None until
        # the namespaces have been listed.
        self._namespace_defaults: dict[str, str] | None = None
        self._lock = asyncio.Lock()

    async def namespaces_changed(self, objects: Mapping[ObjectKey, dict[str, Any]]) -> None:
        """The namespace watch's hook: every namespace after each change; the dialects that read namespaces'
        annotations are translated again when one of those annotations changed."""
        defaults = {}
        for (_, name), obj in objects.items():
            value = ((obj.get("metadata") or {}).get("annotations") or {}).get(
                DEFAULT_POLICY_ANNOTATION
            )
            if value is not None:
                defaults[name] = str(value)
        async with self._lock:
            if defaults == self._namespace_defaults:
                return
            self._namespace_defaults = defaults
            for group in self._served:
                if takes_context(group):
                    await self._publish_if_complete(group)

    async def run(self) -> None:
        """Discover and follow every served kind, again every ``discovery_interval``, until cancelled."""
        backoff = Backoff(first=self._retry_delay, longest=30.0)
        first = True
        following_pods = (
            asyncio.create_task(self._follow_pods(), name="sigil-foreign-pods")
            if self._pods is not None
            else None
        )
        try:
            while True:
                try:
                    served = await self._discover()
                except KubernetesUnavailableError as err:
                    _log.warning("policy.foreign_discovery_failed", detail=str(err))
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                await self._follow(served)
                if first and not self._followed:
                    _log.info("policy.foreign_kinds_absent")
                first = False
                await asyncio.sleep(self._discovery_interval)
        finally:
            tasks = [task for _, task in self._followed.values()]
            if following_pods is not None:
                tasks.append(following_pods)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow_pods(self) -> None:
        """Translate a namespace-reading dialect again when the pods its named ports resolve through change."""
        pods = self._pods
        if pods is None:
            return
        seen = -1
        while True:
            await pods.wait_for(functools.partial(_changed_since, seen))
            seen = pods.change_count
            async with self._lock:
                for group in [group for group in self._served if takes_context(group)]:
                    # Not yet published (waiting, perhaps, for this first list), or the pods moved.
                    passed = self._passed_pods.get(group)
                    if passed is None or self._pods_for(group) != passed:
                        await self._publish_if_complete(group)

    async def _discover(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(group, kind) -> (apiVersion, collection path) of every followed kind the API server serves now."""
        served: dict[tuple[str, str], tuple[str, str]] = {}
        for group, kinds in self._kinds.items():
            for kind, (version, plural) in (await self._served_kinds(group, kinds)).items():
                served[(group, kind)] = (f"{group}/{version}", f"/apis/{group}/{version}/{plural}")
        return served

    async def _follow(self, served: Mapping[tuple[str, str], tuple[str, str]]) -> None:
        """Start following what is newly served, move what changed version, drop what is gone twice running."""
        gone = {key for key in self._followed if key not in served}
        dropped = gone & self._missing
        self._missing = gone - dropped
        for key in gone - dropped:
            _log.warning("policy.foreign_kind_missing", group=key[0], kind=key[1])
        moved = {
            key
            for key, (_, path) in served.items()
            if key in self._followed and self._followed[key][0] != path
        }
        for key in sorted(dropped | moved):
            _, task = self._followed.pop(key)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        async with self._lock:
            for group, kinds in self._kinds.items():
                self._served[group] = [
                    kind
                    for kind in kinds
                    if (group, kind) in served or (group, kind) in self._missing
                ]
            for group, kind in sorted(dropped | moved):
                self._objects.get(group, {}).pop(kind, None)
            for group, kind in sorted(dropped):
                _log.warning("policy.foreign_kind_dropped", group=group, kind=kind)
                await self._publish_if_complete(group)
        for key, (api_version, path) in served.items():
            if key in self._followed:
                continue
            group, kind = key

            async def on_change(
                objects: Mapping[ObjectKey, dict[str, Any]],
                group: str = group,
                kind: str = kind,
                api_version: str = api_version,
            ) -> None:
                await self._changed(group, kind, api_version, objects)

            informer = Informer(self._api, path, on_change)
            task = asyncio.create_task(informer.run(), name=f"sigil-foreign-{group}-{kind}")
            self._followed[key] = (path, task)
            _log.info("policy.foreign_kind_followed", group=group, kind=kind, path=path)

    async def _served_kinds(self, group: str, kinds: Sequence[str]) -> dict[str, tuple[str, str]]:
        """kind -> (version, plural) for each of ``kinds`` the group serves, the preferred version first."""
        try:
            described = await self._api.list_collection(f"/apis/{group}")
        except KubernetesUnavailableError as err:
            if "HTTP 404" in err.cause:
                return {}  # the group is not installed
            raise
        preferred = (described.get("preferredVersion") or {}).get("version")
        versions = [v.get("version") for v in described.get("versions") or () if v.get("version")]
        versions.sort(key=lambda v: v != preferred)
        found: dict[str, tuple[str, str]] = {}
        for version in versions:
            resources = await self._api.list_collection(f"/apis/{group}/{version}")
            for resource in resources.get("resources") or ():
                kind, name = resource.get("kind"), str(resource.get("name", ""))
                if kind in kinds and "/" not in name and kind not in found:
                    found[kind] = (version, name)
        return found

    async def _changed(
        self,
        group: str,
        kind: str,
        api_version: str,
        objects: Mapping[ObjectKey, dict[str, Any]],
    ) -> None:
        async with self._lock:
            self._objects.setdefault(group, {})[kind] = (api_version, dict(objects))
            await self._publish_if_complete(group)

    async def _publish_if_complete(self, group: str) -> None:
        """Publish ``group``'s dialect once every served kind of it has been listed; a dialect whose last kind
        left publishes nothing (its source is emptied if it had been published)."""
        listed = set(self._objects.get(group, {}))
        if listed != set(self._served.get(group, ())):
            return  # wait for every kind of the dialect to be listed once
        if takes_context(group) and (
            self._namespace_defaults is None or (self._pods is not None and not self._pods.synced)
        ):
            return  # and for the namespaces (and the pods)
        if not listed:
            if group in self._published:
                self._published.discard(group)
                await self._feed.set_source(f"kubernetes:{group}", [], origins=[])
            return
        await self._publish(group)

    async def _publish(self, group: str) -> None:
        documents = [
            SourcedDocument(_document(kind, api_version, obj), _where(kind, key))
            for kind, (api_version, objects) in sorted(self._objects[group].items())
            for key, obj in sorted(objects.items())
        ]
        if takes_context(group):
            documents.extend(
                SourcedDocument(
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {
                            "name": name,
                            "annotations": {DEFAULT_POLICY_ANNOTATION: value},
                        },
                    },
                    _where("Namespace", ("", name)),
                )
                for name, value in sorted((self._namespace_defaults or {}).items())
            )
            passed = self._pods_for(group)
            self._passed_pods[group] = passed
            documents.extend(_pod_document(pod) for pod in passed)
        translated = translate_foreign(documents, self._translation, installed=(group,))
        for error in translated.errors:
            _log.warning("policy.refused", source="kubernetes", detail=str(error))
        for finding in translated.findings:
            if finding.exactness is Exactness.APPROXIMATE:
                _log.warning("policy.translated", source="kubernetes", detail=str(finding))
        if translated.broken:
            return  # the last good translation stays
        self._published.add(group)
        await self._feed.set_source(
            f"kubernetes:{group}",
            list(translated.documents),
            origins=[
                Origin(kind=OriginKind.CRD, name=where.file) for _, where in translated.documents
            ],
        )

    def _pods_for(self, group: str) -> tuple[_PodPorts, ...]:
        """The pods with named ports in the namespaces where a ``Server`` of ``group`` names its port: only what
        the translator reads of them, so that a pod's phase or node moving translates nothing again."""
        if self._pods is None:
            return ()
        _, servers = self._objects.get(group, {}).get("Server", ("", {}))
        namespaces = sorted(
            {
                namespace
                for (namespace, _), obj in servers.items()
                if isinstance((obj.get("spec") or {}).get("port"), str)
            }
        )
        return tuple(
            _PodPorts(pod.namespace, pod.name, pod.labels, pod.named_ports)
            for namespace in namespaces
            for pod in sorted(self._pods.pods_in_namespace(namespace), key=lambda p: p.name)
            if pod.named_ports
        )


def _changed_since(seen: int, pods: PodCache) -> bool:
    return pods.change_count != seen


class _PodPorts(NamedTuple):
    """What Linkerd's translator reads of a pod."""

    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    named_ports: tuple[tuple[str, int], ...]


def _pod_document(pod: _PodPorts) -> SourcedDocument:
    """What the translator reads of a pod: its labels and named container ports."""
    ports = [{"name": name, "containerPort": number} for name, number in pod.named_ports]
    document = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
        "spec": {"containers": [{"ports": ports}]},
    }
    return SourcedDocument(document, _where("Pod", (pod.namespace, pod.name)))


def _document(kind: str, api_version: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as a file would hold it (list items may lack ``kind`` and ``apiVersion``)."""
    metadata = obj.get("metadata") or {}
    kept = {k: metadata[k] for k in ("name", "namespace", "labels", "annotations") if k in metadata}
    document: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion", api_version),
        "kind": obj.get("kind", kind),
        "metadata": kept,
    }
    if "spec" in obj:
        document["spec"] = obj["spec"]
    return document


def _where(kind: str, key: ObjectKey) -> str:
    namespace, name = key
    return f"kubernetes {kind} {namespace}/{name}" if namespace else f"kubernetes {kind} {name}"

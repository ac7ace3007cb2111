"""Istio's and Linkerd's policy resources in the cluster, followed like Sigil's CRDs and translated as they change.

A mesh moving to Sigil keeps its policy objects: with ``policy.watch_crds`` the issuer asks the API server which
of the kinds below it serves (API discovery, ``/apis/GROUP`` then ``/apis/GROUP/VERSION``, the group's preferred
version first) and follows each served kind by list+watch; a group or kind that is not installed is skipped
(installing it later takes an issuer restart). After each change every object of that dialect, of every kind,
goes to its translator in one batch (Linkerd's meaning spans ``Server``, ``AuthorizationPolicy`` and the
authentications), and the Sigil documents that come out replace the source ``kubernetes:<dialect>`` of the
feed, where they are judged like any other. A dialect is published only once every kind of it has been listed,
so a ``Server`` never stands alone for lack of its authorizations. A translation that fails outright keeps the
last good one; refused parts and approximations are logged (``policy.refused``, ``policy.translated``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from sigil.enforcer.policy.dialects.base import Exactness, SourcedDocument, TranslateOptions
from sigil.enforcer.policy.foreign import translate_foreign
from sigil.enforcer.policy.origin import Origin, OriginKind
from sigil.issuer.errors import KubernetesUnavailableError
from sigil.issuer.kube.api import KubeApi
from sigil.issuer.kube.informer import Informer, ObjectKey
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
    ) -> None:
        self._api = api
        self._feed = feed
        self._translation = translation
        self._kinds = kinds
        self._retry_delay = retry_delay
        # group -> kind -> (apiVersion, objects): filled by each kind's informer.
        self._objects: dict[str, dict[str, tuple[str, Mapping[ObjectKey, dict[str, Any]]]]] = {}
        self._served: dict[str, list[str]] = {}
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Discover, then follow every served kind until cancelled."""
        informers = await self._discover()
        if not informers:
            _log.info("policy.foreign_kinds_absent")
            return
        async with asyncio.TaskGroup() as tasks:
            for informer in informers:
                tasks.create_task(informer.run())

    async def _discover(self) -> list[Informer]:
        backoff = Backoff(first=self._retry_delay, longest=30.0)
        while True:
            try:
                return await self._informers()
            except KubernetesUnavailableError as err:
                _log.warning("policy.foreign_discovery_failed", detail=str(err))
                await backoff.sleep(backoff.next_delay())

    async def _informers(self) -> list[Informer]:
        informers: list[Informer] = []
        for group, kinds in self._kinds.items():
            found = await self._served_kinds(group, kinds)
            self._served[group] = [kind for kind in kinds if kind in found]
            for kind in self._served[group]:
                version, plural = found[kind]
                path = f"/apis/{group}/{version}/{plural}"

                async def on_change(
                    objects: Mapping[ObjectKey, dict[str, Any]],
                    group: str = group,
                    kind: str = kind,
                    api_version: str = f"{group}/{version}",
                ) -> None:
                    await self._changed(group, kind, api_version, objects)

                informers.append(Informer(self._api, path, on_change))
                _log.info("policy.foreign_kind_followed", group=group, kind=kind, path=path)
        return informers

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
            if set(self._objects[group]) != set(self._served[group]):
                return  # wait for every kind of the dialect to be listed once
            await self._publish(group)

    async def _publish(self, group: str) -> None:
        documents = [
            SourcedDocument(_document(kind, api_version, obj), _where(kind, key))
            for kind, (api_version, objects) in sorted(self._objects[group].items())
            for key, obj in sorted(objects.items())
        ]
        translated = translate_foreign(documents, self._translation)
        for error in translated.errors:
            _log.warning("policy.refused", source="kubernetes", detail=str(error))
        for finding in translated.findings:
            if finding.exactness is Exactness.APPROXIMATE:
                _log.warning("policy.translated", source="kubernetes", detail=str(finding))
        if translated.broken:
            return  # the last good translation stays
        await self._feed.set_source(
            f"kubernetes:{group}",
            list(translated.documents),
            origins=[
                Origin(kind=OriginKind.CRD, name=where.file) for _, where in translated.documents
            ],
        )


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

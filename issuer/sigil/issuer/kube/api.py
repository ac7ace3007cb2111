"""The issuer's one door to the Kubernetes API: typed payloads in, :class:`KubernetesUnavailableError` out.

Requests that answer one question (TokenReview, GET pod, GET node) go through the official ``kubernetes`` client,
whose connection handling and credential loading (in-cluster token refresh, kubeconfig exec plugins) we do not
want to re-implement; it is synchronous, so it runs on this object's own small thread pool, never on the event
loop. Long-lived list+watch streams go through aiohttp instead (:mod:`sigil.issuer.kube.listwatch`), with the same
host and credentials, because a thread blocked in a watch read cannot be cancelled on shutdown and an asyncio task
can.

Every foreign failure (``ApiException``, urllib3 and aiohttp errors, ``OSError``, a reply that does not parse)
becomes :class:`~sigil.issuer.errors.KubernetesUnavailableError` here, so callers fail closed on one type.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from sigil.issuer.errors import ConfigError, KubernetesUnavailableError
from sigil.issuer.kube.listwatch import ListWatch
from sigil.issuer.kube.payloads import ConfigMap, Node, Pod, PodList, TokenReviewStatus, WatchEvent

if TYPE_CHECKING:
    from kubernetes import client as k8s

__all__ = ["KubeApi", "PatchOutcome"]

PatchOutcome = Literal["written", "missing", "conflict"]
"""What a conditional patch did: applied; nothing to patch (404); the object changed since it was read (409)."""

_T = TypeVar("_T")


# What the sync client raises when the API cannot be reached or answers nonsense. ValueError covers the
# pydantic ValidationError the generated models raise for a malformed reply.
def _client_errors() -> tuple[type[BaseException], ...]:
    import urllib3

    return (_k8s().ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


def _k8s() -> Any:
    """The Kubernetes client, imported on first use: a server without Kubernetes (and every ``sigil-server`` verb)
    never loads its 350 modules and 19 MB (``bench/memory.py``)."""
    from kubernetes import client

    return client


def _k8s_config() -> Any:
    from kubernetes import config

    return config


_PODS = "/api/v1/pods"


class KubeApi:
    """A connection to one cluster's API server; build it with :meth:`from_kubeconfig` or :meth:`in_cluster`."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        max_workers: int = 8,
    ) -> None:
        self._client = api_client
        self._timeout = (connect_timeout, read_timeout)
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="sigil-kube"
        )
        self._streams = ListWatch(
            api_client.configuration, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        self._auth = _k8s().AuthenticationV1Api(api_client)
        self._core = _k8s().CoreV1Api(api_client)
        self._custom = _k8s().CustomObjectsApi(api_client)

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | Path,
        *,
        context: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> KubeApi:
        """Connect as a kubeconfig file says (reads files and may run its exec plugin: call at startup)."""
        try:
            api_client = _k8s_config().new_client_from_config(
                config_file=str(path), context=context, client_configuration=_configuration()
            )
        except (_k8s_config().ConfigException, OSError, ValueError) as err:
            raise ConfigError("kubeconfig", f"{path}: {err}") from err
        return cls(api_client, connect_timeout=connect_timeout, read_timeout=read_timeout)

    @classmethod
    def in_cluster(cls, *, connect_timeout: float = 5.0, read_timeout: float = 10.0) -> KubeApi:
        """Connect with the pod's own ServiceAccount token and CA, refreshing the token as the kubelet rotates it."""
        configuration = _configuration()
        try:
            _k8s_config().load_incluster_config(client_configuration=configuration)
        except _k8s_config().ConfigException as err:
            raise ConfigError("kubernetes", f"not running in a cluster: {err}") from err
        api_client = _k8s().ApiClient(configuration)
        return cls(api_client, connect_timeout=connect_timeout, read_timeout=read_timeout)

    async def aclose(self) -> None:
        """Close connections and stop the worker threads."""
        await self._streams.aclose()
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._client.close()  # type: ignore[no-untyped-call]

    async def _call(self, operation: str, fn: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except _k8s().ApiException as err:
            raise KubernetesUnavailableError(operation, f"HTTP {err.status} {err.reason}") from err
        except _client_errors() as err:
            raise KubernetesUnavailableError(operation, f"{type(err).__name__}: {err}") from err

    async def _call_unless_absent(self, operation: str, fn: Callable[[], _T]) -> _T | None:
        """As :meth:`_call`, but None when the object ``fn`` asks for does not exist (HTTP 404)."""

        def call() -> _T | None:
            try:
                return fn()
            except _k8s().ApiException as err:
                if err.status == 404:
                    return None
                raise

        return await self._call(operation, call)

    # ------------------------------------------------------------------------- one-shot requests
    async def review_token(self, token: str, audiences: Sequence[str]) -> TokenReviewStatus:
        """POST a TokenReview and return its status (authenticated or not); raise only if the API cannot answer."""
        body = _k8s().V1TokenReview(
            spec=_k8s().V1TokenReviewSpec(token=token, audiences=list(audiences))
        )

        def call() -> TokenReviewStatus:
            reply = self._auth.create_token_review(body, _request_timeout=self._timeout)
            return cast(TokenReviewStatus, _to_json(self._client, reply.status) or {})

        return await self._call("TokenReview", call)

    async def read_pod(self, namespace: str, name: str) -> Pod | None:
        """GET one pod, or None when it does not exist."""

        def call() -> Pod:
            pod = self._core.read_namespaced_pod(name, namespace, _request_timeout=self._timeout)
            return cast(Pod, _to_json(self._client, pod))

        return await self._call_unless_absent("get pod", call)

    async def read_config_map(self, namespace: str, name: str) -> ConfigMap | None:
        """GET one ConfigMap, or None when it does not exist."""

        def call() -> ConfigMap:
            found = self._core.read_namespaced_config_map(
                name, namespace, _request_timeout=self._timeout
            )
            return cast(ConfigMap, _to_json(self._client, found))

        return await self._call_unless_absent("get configmap", call)

    async def patch_config_map_data(
        self, namespace: str, name: str, data: dict[str, str], *, resource_version: str
    ) -> PatchOutcome:
        """Merge ``data`` into an existing ConfigMap if it still has ``resource_version`` (it is never created).

        A ``metadata.resourceVersion`` in a patch is a precondition: the API server refuses the patch with 409
        Conflict when the object changed since it was read
        (https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply).
        """
        body = {"metadata": {"resourceVersion": resource_version}, "data": data}

        def call() -> PatchOutcome:
            try:
                self._core.patch_namespaced_config_map(
                    name, namespace, body, _request_timeout=self._timeout
                )
            except _k8s().ApiException as err:
                if err.status == 404:
                    return "missing"
                if err.status == 409:
                    return "conflict"
                raise
            return "written"

        return await self._call("patch configmap", call)

    async def read_node(self, name: str) -> Node | None:
        """GET one node, or None when it does not exist."""

        def call() -> Node:
            node = self._core.read_node(name, _request_timeout=self._timeout)
            return cast(Node, _to_json(self._client, node))

        return await self._call_unless_absent("get node", call)

    async def patch_custom_status(
        self, resource: tuple[str, str, str], namespace: str, name: str, body: dict[str, Any]
    ) -> bool:
        """Merge-patch the ``status`` subresource of one custom object (``resource`` is group, version, plural).

        False when the object is gone (404) or changed since the ``metadata.resourceVersion`` that ``body``
        carries (409): the caller's watch brings the newer object, judged again.
        """
        group, version, plural = resource
        options: dict[str, Any] = {
            "_request_timeout": self._timeout,
            # RFC 7386: the patch names only the status fields it sets; a resourceVersion in it makes the
            # write conditional, as an update's would be.
            "_content_type": "application/merge-patch+json",
        }

        def call() -> bool:
            try:
                if namespace:
                    self._custom.patch_namespaced_custom_object_status(
                        group, version, namespace, plural, name, body, **options
                    )
                else:
                    self._custom.patch_cluster_custom_object_status(
                        group, version, plural, name, body, **options
                    )
            except _k8s().ApiException as err:
                if err.status in (404, 409):
                    return False
                raise
            return True

        return await self._call(f"patch {plural}/status", call)

    # ------------------------------------------------------------------------- list and watch
    async def list_pods(self, *, field_selector: str = "", label_selector: str = "") -> PodList:
        """List pods in every namespace (one consistent snapshot with its ``resourceVersion``)."""
        params = {"fieldSelector": field_selector, "labelSelector": label_selector}
        return cast(PodList, await self._streams.list(_PODS, operation="list pods", params=params))

    def watch_pods(
        self,
        resource_version: str,
        *,
        timeout_seconds: int,
        field_selector: str = "",
        label_selector: str = "",
    ) -> AsyncIterator[WatchEvent]:
        """Pod watch events after ``resource_version`` until the server ends the stream.

        An expired resource version arrives as an ``ERROR`` event with code 410 (:meth:`ListWatch.watch
        <sigil.issuer.kube.listwatch.ListWatch.watch>` says why), so the caller handles it in one place.
        """
        return self._streams.watch(
            _PODS,
            resource_version,
            operation="watch pods",
            timeout_seconds=timeout_seconds,
            params={"fieldSelector": field_selector, "labelSelector": label_selector},
        )

    # ------------------------------------------------------------------------- any collection
    async def list_collection(self, path: str) -> dict[str, Any]:
        """List a collection by its API path (``/api/v1/namespaces``, ``/apis/GROUP/VERSION/PLURAL``)."""
        return cast(dict[str, Any], await self._streams.list(path, operation=f"list {path}"))

    def watch_collection(
        self, path: str, resource_version: str, *, timeout_seconds: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events of a collection after ``resource_version``, as :meth:`watch_pods` yields them."""
        return self._streams.watch(
            path, resource_version, operation=f"watch {path}", timeout_seconds=timeout_seconds
        )


def _configuration() -> k8s.Configuration:
    configuration: k8s.Configuration = _k8s().Configuration()
    # One retry absorbs a pooled keep-alive connection the server closed; more would only delay failing closed.
    configuration.retries = 1
    return configuration


def _to_json(api_client: k8s.ApiClient, model: object) -> object:
    """A client model back to the JSON the server sent (camelCase keys, empty fields left out)."""
    return api_client.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]

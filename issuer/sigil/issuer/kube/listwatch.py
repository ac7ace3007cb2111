"""Lists and watch streams from the Kubernetes API over aiohttp, with the official client's host and credentials.

:class:`~sigil.issuer.kube.api.KubeApi` sends its one-shot requests through the synchronous ``kubernetes`` client on
a thread pool; a watch cannot go that way, because a thread blocked in a watch read cannot be cancelled on shutdown
and an asyncio task can. So lists and watches come here: one aiohttp session that verifies the server as the client
configuration says, and a bearer token asked for on every request so that a rotated in-cluster token is picked up.

Every failure (aiohttp errors, ``OSError``, a status other than 200, a body that does not parse) becomes
:class:`~sigil.issuer.errors.KubernetesUnavailableError` naming the operation; an expired resource version (410)
comes out of :meth:`ListWatch.watch` as the ``ERROR`` event the API server's watch cache would send.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from sigil.issuer.errors import KubernetesUnavailableError

if TYPE_CHECKING:
    from kubernetes import client as k8s

__all__ = ["ListWatch"]

_HTTP_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, json.JSONDecodeError)
_GONE = 410
#: How long a list may take to arrive, in read timeouts: a full pod list of a large cluster is slow.
_LIST_READ_FACTOR = 6
#: A silent watch is dead once the server's own timeout has passed with this margin (seconds).
_WATCH_MARGIN = 30


class ListWatch:
    """GET lists and watch streams from the API server ``configuration`` names; close with :meth:`aclose`."""

    def __init__(
        self, configuration: k8s.Configuration, *, connect_timeout: float, read_timeout: float
    ) -> None:
        self._configuration = configuration
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def list(
        self, path: str, *, operation: str, params: Mapping[str, str] | None = None
    ) -> Any:
        """The JSON of one GET of ``path`` (one consistent snapshot with its ``resourceVersion``)."""
        session = await self._http()
        timeout = aiohttp.ClientTimeout(
            sock_connect=self._connect_timeout, sock_read=self._read_timeout * _LIST_READ_FACTOR
        )
        try:
            async with session.get(
                self._url(path), params=params, headers=self._headers(), timeout=timeout
            ) as reply:
                if reply.status != 200:
                    raise KubernetesUnavailableError(
                        operation, f"HTTP {reply.status} {await reply.text()}"
                    )
                return await reply.json()
        except _HTTP_ERRORS as err:
            raise KubernetesUnavailableError(operation, f"{type(err).__name__}: {err}") from err

    async def watch(
        self,
        path: str,
        resource_version: str,
        *,
        operation: str,
        timeout_seconds: int,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Any]:
        """Yield the watch events of ``path`` after ``resource_version`` until the server ends the stream.

        An expired resource version arrives as an ``ERROR`` event with code 410, whether the server says so in
        the stream (the watch cache does) or as the HTTP status, so the caller handles it in one place.
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
            "allowWatchBookmarks": "true",
            **(params or {}),
        }
        session = await self._http()
        timeout = aiohttp.ClientTimeout(
            sock_connect=self._connect_timeout, sock_read=timeout_seconds + _WATCH_MARGIN
        )
        try:
            async with session.get(
                self._url(path), params=query, headers=self._headers(), timeout=timeout
            ) as reply:
                if reply.status == _GONE:
                    yield {
                        "type": "ERROR",
                        "object": {"code": _GONE, "message": await reply.text()},
                    }
                    return
                if reply.status != 200:
                    raise KubernetesUnavailableError(
                        operation, f"HTTP {reply.status} {await reply.text()}"
                    )
                buffer = b""
                # Read chunks rather than lines: a pod's JSON can exceed aiohttp's 64 KiB line limit.
                async for chunk in reply.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
        except _HTTP_ERRORS as err:
            raise KubernetesUnavailableError(operation, f"{type(err).__name__}: {err}") from err

    def _url(self, path: str) -> str:
        return f"{self._configuration.host}{path}"

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            context = await asyncio.to_thread(self._ssl_context)
            # Several watches start at once; only the first to get here makes the session, or the others leak.
            if self._session is None:
                connector = aiohttp.TCPConnector(ssl=context)
                self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        return self._session

    def _ssl_context(self) -> ssl.SSLContext | bool:
        cfg = self._configuration
        if not cfg.host.startswith("https:"):
            return False
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        if not cfg.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _headers(self) -> dict[str, str]:
        # Asked per request: the in-cluster loader's refresh hook re-reads a rotated token here.
        bearer = self._configuration.auth_settings().get("BearerToken")
        headers = {"Accept": "application/json"}
        if bearer and bearer.get("value"):
            headers["Authorization"] = str(bearer["value"])
        return headers

"""Faults of the API server's wire that a real kube-apiserver cannot be made to produce, from a tiny fake of it.

The real server never answers a TokenReview with 500 on demand, and never cuts a watch stream in the middle of a
JSON object; a proxy or a crashing server can do both. Everything else about these paths is tested against the
real API server (``test_tokenreview.py``, ``test_podcache.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sigil.issuer.errors import KubernetesUnavailableError
from sigil.issuer.kube import KubeApi, PodCache, TokenReviewAuthenticator

_TOKEN = "fake-admin-token"


def _pod(name: str, uid: str, version: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": name, "uid": uid, "resourceVersion": version},
        "spec": {"nodeName": "node-a", "serviceAccountName": "web"},
        "status": {"phase": "Pending"},
    }


class _FaultyApiServer:
    """Answers TokenReviews with 500, lists one pod, and cuts its first watch stream mid-object."""

    def __init__(self) -> None:
        self.watches = 0

    async def review(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="etcdserver: request timed out")

    async def pods(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            return web.json_response(
                {
                    "kind": "PodList",
                    "metadata": {"resourceVersion": "10"},
                    "items": [_pod("web-1", "u1", "9")],
                }
            )
        self.watches += 1
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        added = json.dumps({"type": "ADDED", "object": _pod("web-2", "u2", "11")}).encode()
        if self.watches == 1:
            await response.write(added[: len(added) // 2])  # and the connection ends mid-object
            return response
        await response.write(added + b"\n")
        await asyncio.sleep(30)
        return response


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[tuple[_FaultyApiServer, KubeApi]]:
    """The fake on a loopback port, and the issuer's client configured for it by a kubeconfig."""
    fake = _FaultyApiServer()
    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", fake.review)
    app.router.add_get("/api/v1/pods", fake.pods)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "f", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "f", "user": {"token": _TOKEN}}],
                "contexts": [{"name": "f", "context": {"cluster": "f", "user": "f"}}],
                "current-context": "f",
            }
        )
    )
    api = KubeApi.from_kubeconfig(kubeconfig)
    try:
        yield fake, api
    finally:
        await api.aclose()
        await runner.cleanup()


async def test_token_review_answering_500_fails_closed_and_is_not_cached(
    faulty: tuple[_FaultyApiServer, KubeApi],
) -> None:
    """A TokenReview the API server answers with 500 refuses the caller with 503, and nothing is cached."""
    _, api = faulty
    agents = TokenReviewAuthenticator(api, allowed_service_accounts=["sigil-system:sigil-agent"])
    with pytest.raises(KubernetesUnavailableError) as caught:
        await agents.authenticate("header.payload.signature")
    assert caught.value.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert "500" in caught.value.detail
    assert len(agents.cache) == 0


async def test_watch_cut_mid_object_resumes_without_losing_the_cache(
    faulty: tuple[_FaultyApiServer, KubeApi],
) -> None:
    """A watch stream that ends inside a JSON object is not half-applied: the cache keeps what it listed, watches
    again from the same resourceVersion, and gets the event whole."""
    fake, api = faulty
    async with PodCache(api, retry_delay=0.02, max_retry_delay=0.1) as cache:
        async with asyncio.timeout(10):
            await cache.wait_for(lambda c: c.pod("shop", "web-2") is not None)
        assert cache.pod("shop", "web-1") is not None
        assert (cache.relists, fake.watches) == (1, 2)

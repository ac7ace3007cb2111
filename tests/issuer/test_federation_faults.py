"""A federated peer that misbehaves: the poller keeps the last good bundle, backs off, and never leaves https.

The peer is a real HTTPS server (aiohttp, TLS with a private Web PKI root) whose answers the test chooses; the home
issuer polls it as it would any ``https_web`` endpoint.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from sigil_testing.certificates import WebPki, write_web_pki
from sigil_testing.issuer import issuer_settings, running_issuer

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.bundles.federation import FederationPoller
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings.sections import FederationPeer

OTHER = TrustDomain("other.org")
Answer = Callable[[web.Request], web.StreamResponse]


@dataclass
class Peer:
    """What the peer's endpoint answers now, and what reached it."""

    answer: Answer
    paths: list[str] = field(default_factory=list)
    url: str = ""


@dataclass
class PlainHttp:
    """A plain-http server that serves a bundle to whoever reaches it (an attacker on the path)."""

    hits: int = 0
    url: str = ""


def _good(pki: WebPki) -> bytes:
    root = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    return TrustBundle(OTHER, (root,), {}, 7, 300).to_json()


@pytest.fixture
def pki(tmp_path: Path) -> WebPki:
    """A private root playing the Web PKI, and a server certificate for 127.0.0.1."""
    return write_web_pki(tmp_path / "webpki")


@pytest.fixture
async def plain_http() -> AsyncIterator[PlainHttp]:
    """An http:// server holding a bundle, counting who comes."""
    state = PlainHttp()

    async def serve(_: web.Request) -> web.Response:
        state.hits += 1
        return web.json_response({"keys": []})

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/bundle"))
    yield state
    await server.close()


@pytest.fixture
async def peer(pki: WebPki) -> AsyncIterator[Peer]:
    """The peer's HTTPS bundle endpoint, answering a good bundle until the test says otherwise."""
    good = _good(pki)
    state = Peer(lambda _: web.Response(body=good, content_type="application/json"))

    async def serve(request: web.Request) -> web.StreamResponse:
        state.paths.append(request.path)
        return state.answer(request)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=context)
    state.url = str(server.make_url("/bundle"))
    yield state
    await server.close()


@pytest.fixture
async def home(tmp_path: Path, pki: WebPki, peer: Peer) -> AsyncIterator[IssuerServer]:
    """The home issuer, federated with the peer over https_web, having fetched the peer's good bundle once."""
    federation = FederationPeer(OTHER, peer.url, "https_web", ca_file=pki.ca_file)
    settings = issuer_settings(tmp_path / "home", federates_with=(federation,))
    async with running_issuer(settings) as running:
        (poller,) = running.pollers
        await asyncio.wait_for(poller.fetched.wait(), timeout=10)
        yield running


async def _poll(poller: FederationPoller) -> None:
    poller.attempted.clear()
    poller.poll_now()
    await asyncio.wait_for(poller.attempted.wait(), timeout=10)


def _body(data: bytes) -> Answer:
    return lambda _: web.Response(body=data, content_type="application/json")


def _jwks(*keys: object) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


FAULTS = {
    "empty body": _body(b""),
    "garbage JSON": _body(b"{'keys': [nope"),
    "deeply nested JSON": _body(b"[" * 200_000),
    "not a bundle": _body(b'{"keys": {"use": "x509-svid"}}'),
    "a JWT key on no curve": _body(
        _jwks({"use": "jwt-svid", "kid": "k", "kty": "EC", "crv": "P-999", "x": "AA", "y": "AA"})
    ),
    "a JWT key off its curve": _body(
        _jwks(
            {
                "use": "jwt-svid",
                "kid": "k",
                "kty": "EC",
                "crv": "P-256",
                "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE",
            }
        )
    ),
    "an x5c that is not base64 text": _body(_jwks({"use": "x509-svid", "kty": "EC", "x5c": [42]})),
    "an x5c that is not a certificate": _body(
        _jwks({"use": "x509-svid", "kty": "EC", "x5c": ["bm90IGEgY2VydA=="]})
    ),
    "a bundle with no keys": _body(_jwks()),
    "HTTP 500": lambda _: web.Response(status=500),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_bad_answer_keeps_the_last_good_bundle_and_backs_off(
    home: IssuerServer, peer: Peer, pki: WebPki, fault: str
) -> None:
    """After a good poll, each bad answer fails the poll: agents keep the last good bundle, the failure is logged,
    retries back off (about 1 s, then about 2 s, each drawn in [½, 1] of that), and the next good answer is taken
    as usual."""
    (poller,) = home.pollers
    good = home.issuer.feed.federated[OTHER]
    peer.answer = FAULTS[fault]
    with structlog.testing.capture_logs() as logs:
        await _poll(poller)
        first_wait = poller.next_wait
        await _poll(poller)
    assert home.issuer.feed.federated[OTHER] is good
    assert poller.failures == 2
    assert 0.5 <= first_wait <= 1.0
    assert 1.0 <= poller.next_wait <= 2.0
    failed = [e for e in logs if e["event"] == "federation.fetch_failed"]
    assert failed
    assert failed[0]["kept_sequence"] == 7
    peer.answer = _body(_good(pki))
    poller.fetched.clear()
    poller.poll_now()
    await asyncio.wait_for(poller.fetched.wait(), timeout=10)
    assert (poller.failures, poller.next_wait) == (0, 300)


@pytest.mark.parametrize("scheme", ["http", "ftp", "file"])
async def test_a_redirect_out_of_https_is_never_followed(
    home: IssuerServer, peer: Peer, plain_http: PlainHttp, scheme: str
) -> None:
    """A 302 to http:// (or another scheme) fails the poll without a request there; the last bundle stays."""
    (poller,) = home.pollers
    good = home.issuer.feed.federated[OTHER]
    target = plain_http.url if scheme == "http" else f"{scheme}://127.0.0.1/bundle"
    peer.answer = lambda _: web.Response(status=302, headers={"Location": target})
    with structlog.testing.capture_logs() as logs:
        await _poll(poller)
    assert plain_http.hits == 0
    assert home.issuer.feed.federated[OTHER] is good
    (failed,) = [e for e in logs if e["event"] == "federation.fetch_failed"]
    assert f"redirect to a '{scheme}' URL refused" in failed["detail"]


async def test_an_https_redirect_is_followed_as_temporary(
    home: IssuerServer, peer: Peer, pki: WebPki
) -> None:
    """A 302 to another https path is followed (checked with the same roots); the next poll asks the configured URL."""
    (poller,) = home.pollers
    moved = _good(pki)
    peer.answer = lambda request: (
        _body(moved)(request)
        if request.path == "/moved"
        else web.Response(status=302, headers={"Location": "/moved"})
    )
    peer.paths.clear()
    await _poll(poller)
    await _poll(poller)
    assert peer.paths == ["/bundle", "/moved", "/bundle", "/moved"]
    assert poller.failures == 0


async def test_endless_redirects_fail_the_poll(home: IssuerServer, peer: Peer) -> None:
    """An endpoint that redirects to itself fails after a few hops instead of looping."""
    (poller,) = home.pollers
    peer.answer = lambda _: web.Response(status=307, headers={"Location": "/bundle"})
    peer.paths.clear()
    await _poll(poller)
    assert poller.failures == 1
    assert len(peer.paths) == 4

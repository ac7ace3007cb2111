"""The aiohttp middleware: requests decided by the TLS peer's SPIFFE ID, 403 problem documents with the reason."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from enforcer.policy_docs import ap, dump, network_rule, rule, spiffe
from enforcer.tlskit import static_source
from prometheus_client import CollectorRegistry
from sigil_testing.pki import Domain, write_svid_files

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.middleware import PEER, PROBLEM_JSON, spiffe_authorization
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.sources import StaticSource
from sigil.enforcer.tls import SpiffeTls
from sigil.enforcer.verify import SvidVerifier

PORT = 8443
ONLY_CLIENT = ap(
    "only-client",
    namespace="shop",
    match={"app": "api"},
    rules=[rule([spiffe("spiffe://example.org/client")], ports=[PORT])],
)


@pytest.fixture
def authorizer_for(
    write_policies: Callable[[Mapping[str, str]], Path],
) -> Callable[..., Authorizer]:
    def build(
        *docs: dict[str, object], default_allow: bool = True, metrics: EnforcerMetrics | None = None
    ) -> Authorizer:
        directory = write_policies({"policies.yaml": dump(*docs)} if docs else {})
        authorizer = Authorizer(
            trust_domain=TrustDomain("example.org"),
            target=Target("shop", {"app": "api"}),
            policies=directory,
            default_allow=default_allow,
            metrics=metrics,
        )
        authorizer.load()
        return authorizer

    return build


async def _whoami(request: web.Request) -> web.Response:
    peer = request.get(PEER)
    return web.Response(text="anonymous" if peer is None else str(peer))


@asynccontextmanager
async def _serve(authorizer: Authorizer, context: ssl.SSLContext | None) -> AsyncIterator[str]:
    app = web.Application(middlewares=[spiffe_authorization(authorizer, port=PORT)])
    app.router.add_get("/", _whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"{'https' if context else 'http'}://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def _get(url: str, context: ssl.SSLContext | bool) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
        return response.status, response.content_type, await response.text()


async def test_an_allowed_peer_reaches_the_handler_with_its_identity(
    home: Domain, short_tmp: Path, authorizer_for: Callable[..., Authorizer]
) -> None:
    """A peer the policy allows gets through, and the handler reads its SPIFFE ID from the request."""
    server = SpiffeTls(static_source(short_tmp / "s", home.mint("api"), home))
    client = SpiffeTls(static_source(short_tmp / "c", home.mint("client"), home))
    async with _serve(authorizer_for(ONLY_CLIENT), server.server_context()) as url:
        status, _, body = await _get(url, client.client_context())
    assert (status, body) == (200, "spiffe://example.org/client")


async def test_a_denied_peer_gets_403_saying_why(
    home: Domain, short_tmp: Path, authorizer_for: Callable[..., Authorizer]
) -> None:
    """A peer no rule allows gets 403 problem+json naming the tier and the policy that left it out."""
    server = SpiffeTls(static_source(short_tmp / "s", home.mint("api"), home))
    client = SpiffeTls(static_source(short_tmp / "c", home.mint("intruder"), home))
    registry = CollectorRegistry()
    metrics = EnforcerMetrics(registry)
    authorizer = authorizer_for(ONLY_CLIENT, metrics=metrics)
    async with _serve(authorizer, server.server_context()) as url:
        status, content_type, body = await _get(url, client.client_context())
    assert (status, content_type) == (403, PROBLEM_JSON)
    denied = registry.get_sample_value(
        "sigil_enforcer_decisions_total", {"decision": "denied", "tier": "namespace"}
    )
    assert denied == 1
    problem = json.loads(body)
    assert problem["status"] == 403
    assert problem["peer"] == "spiffe://example.org/intruder"
    # Deny-if-not-allowed: no single rule denied, so the detail names the ALLOW policy that did not match.
    assert problem["tier"] == "namespace"
    assert "shop/only-client" in problem["detail"]


async def test_a_plaintext_request_meets_the_default_deny(
    authorizer_for: Callable[..., Authorizer],
) -> None:
    """Without TLS there is no peer: with no policy and default deny, the answer is 403 from the default tier."""
    async with _serve(authorizer_for(default_allow=False), None) as url:
        status, _, body = await _get(url, False)
    assert status == 403
    assert json.loads(body)["tier"] == "default"


async def test_a_plaintext_request_passes_a_rule_without_sources(
    authorizer_for: Callable[..., Authorizer],
) -> None:
    """A rule that names no sources allows any peer, even one without an SVID (authz.md part 7)."""
    anyone = ap("anyone", namespace="shop", match={"app": "api"}, rules=[rule(ports=[PORT])])
    async with _serve(authorizer_for(anyone, default_allow=False), None) as url:
        status, _, body = await _get(url, False)
    assert (status, body) == (200, "anonymous")


async def test_a_peer_failing_verification_is_decided_as_no_svid_with_the_reason(
    home: Domain, short_tmp: Path, authorizer_for: Callable[..., Authorizer]
) -> None:
    """Behind a plain TLS context, a chain from the wrong domain's CA is no SVID, and the 403 says why."""
    partner = Domain("partner.net", now=datetime.now(UTC))
    server_source = static_source(short_tmp / "s", home.mint("api"), home, partner)
    material = server_source.current()
    plain = ssl.SSLContext(
        ssl.PROTOCOL_TLS_SERVER
    )  # not from sigil.enforcer.tls: no handshake check
    plain.verify_mode = ssl.CERT_REQUIRED
    plain.load_verify_locations(cadata=material.bundles.union_pem())
    (short_tmp / "s" / "both.pem").write_bytes(material.chain_pem() + material.key_pem())
    plain.load_cert_chain(short_tmp / "s" / "both.pem")
    forged = home.mint(spiffe_id=partner.id("billing"))  # example.org's CA vouching for partner.net
    client = SpiffeTls(static_source(short_tmp / "c", forged, partner, home)).client_context()
    verifier = SvidVerifier(material.bundles)
    app = web.Application(
        middlewares=[
            spiffe_authorization(authorizer_for(ONLY_CLIENT), port=PORT, verifier=verifier)
        ]
    )
    app.router.add_get("/", _whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=plain)
        await site.start()
        status, _, body = await _get(f"https://127.0.0.1:{runner.addresses[0][1]}/", client)
    finally:
        await runner.cleanup()
    problem = json.loads(body)
    assert status == 403
    assert problem["peer"] is None
    assert problem["verification"]["reason"] == "bad_chain"


async def _whoami_on(request: web.Request) -> web.Response:
    """Who the peer is and from which client port: two answers from one port came over one connection."""
    peer = request.get(PEER)
    peername = request.transport.get_extra_info("peername") if request.transport else None
    port = peername[1] if peername else 0
    return web.Response(text=f"{'anonymous' if peer is None else peer} {port}")


@asynccontextmanager
async def _serve_kept_alive(
    authorizer: Authorizer, context: ssl.SSLContext
) -> AsyncIterator[Callable[[ssl.SSLContext | bool], Awaitable[tuple[int, str]]]]:
    """A server, and a GET over one client connection kept alive for every call (aiohttp's pool of one)."""
    app = web.Application(middlewares=[spiffe_authorization(authorizer, port=PORT)])
    app.router.add_get("/", _whoami_on)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/"
    opened: list[object] = []

    async def count(_session: object, _context: object, params: object) -> None:
        opened.append(params)

    tracing = aiohttp.TraceConfig()
    tracing.on_connection_create_end.append(count)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=60), trace_configs=[tracing]
    )

    async def get(client: ssl.SSLContext | bool) -> tuple[int, str]:
        async with session.get(url, ssl=client) as response:
            body = await response.text()
        # Every request of a test goes over the one connection its first request opened.
        assert len(opened) == 1
        return response.status, body

    try:
        yield get
    finally:
        await session.close()
        await runner.cleanup()


async def test_a_kept_alive_connection_is_refused_once_the_peers_svid_expires(
    short_tmp: Path, authorizer_for: Callable[..., Authorizer]
) -> None:
    """The next request on a connection whose client SVID expired meanwhile gets the 403 of a peer without one."""
    now = datetime.now(UTC)
    home = Domain("example.org", now=now - timedelta(minutes=1))
    clock = [now]
    server = SpiffeTls(
        static_source(short_tmp / "s", home.mint("api"), home), clock=lambda: clock[0]
    )
    client = SpiffeTls(
        static_source(short_tmp / "c", home.mint("client", ttl=timedelta(minutes=5)), home)
    ).client_context()
    authorizer = authorizer_for(ONLY_CLIENT, default_allow=False)
    async with _serve_kept_alive(authorizer, server.server_context()) as get:
        status, first = await get(client)
        assert (status, first.split()[0]) == (200, "spiffe://example.org/client")
        clock[0] = now + timedelta(minutes=5)
        status, body = await get(client)
    problem = json.loads(body)
    assert (status, problem["peer"], problem["verification"]["reason"]) == (403, None, "expired")
    clock[0] = now
    async with _serve_kept_alive(authorizer, server.server_context()) as get:
        assert (await get(client))[0] == 200


async def test_a_kept_alive_connection_is_refused_once_its_authority_leaves_the_bundle(
    short_tmp: Path, authorizer_for: Callable[..., Authorizer]
) -> None:
    """A client whose signing authority was removed from the server's bundle is refused on its open connection."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    home, retired = Domain("example.org", now=now), Domain("example.org", now=now)
    svid, key, bundle = write_svid_files(short_tmp / "s", home.mint("api"), home, retired)
    source = StaticSource(svid, key, bundle)
    server = SpiffeTls(source)
    client = SpiffeTls(
        static_source(short_tmp / "c", retired.mint("client"), home, retired)
    ).client_context()
    authorizer = authorizer_for(ONLY_CLIENT, default_allow=False)
    async with _serve_kept_alive(authorizer, server.server_context()) as get:
        status, first = await get(client)
        assert (status, first.split()[0]) == (200, "spiffe://example.org/client")
        bundle.write_bytes(home.bundle_pem())
        await source.refresh()
        status, body = await get(client)
    problem = json.loads(body)
    assert (status, problem["peer"]) == (403, None)
    assert problem["verification"]["reason"] == "bad_chain"


async def test_a_client_without_a_certificate_is_decided_as_no_svid_where_one_is_optional(
    home: Domain, short_tmp: Path, authorizer_for: Callable[..., Authorizer]
) -> None:
    """Behind a context that makes client SVIDs optional, a client with none is served as anonymous."""
    server = SpiffeTls(static_source(short_tmp / "s", home.mint("api"), home))
    anyone = ap("anyone", namespace="shop", match={"app": "api"}, rules=[rule(ports=[PORT])])
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cadata=home.bundle_pem().decode())
    authorizer = authorizer_for(anyone, ONLY_CLIENT, default_allow=False)
    async with _serve_kept_alive(authorizer, server.server_context(peer_required=False)) as get:
        status, body = await get(anonymous)
    assert (status, body.split()[0]) == (200, "anonymous")


@pytest.mark.parametrize(("block", "status"), [("127.0.0.0/8", 200), ("10.0.0.0/8", 403)])
async def test_the_middleware_decides_with_the_connections_real_address(
    authorizer_for: Callable[..., Authorizer], block: str, status: int
) -> None:
    """A rule with sourceCIDRs sees the TCP peer's address (loopback here), never a request header."""
    from_block = ap(
        "from-block",
        namespace="shop",
        match={"app": "api"},
        rules=[network_rule(sourceCIDRs=[block])],
    )
    async with (
        _serve(authorizer_for(from_block, default_allow=False), None) as url,
        aiohttp.ClientSession() as session,
        session.get(url, headers={"X-Forwarded-For": "10.1.1.1"}) as response,
    ):
        assert response.status == status


async def test_a_dry_run_policy_is_counted_by_the_middleware(
    authorizer_for: Callable[..., Authorizer],
) -> None:
    """A dry-run DENY matching a plaintext request leaves it allowed and counts what it would have done."""
    registry = CollectorRegistry()
    trial = ap(
        "trial",
        namespace="shop",
        action="DENY",
        match={"app": "api"},
        dry_run=True,
        rules=[network_rule(sourceCIDRs=["127.0.0.0/8"])],
    )
    authorizer = authorizer_for(trial, metrics=EnforcerMetrics(registry))
    async with _serve(authorizer, None) as url:
        status, _, _ = await _get(url, False)
    assert status == 200
    labels = {"policy": "shop/trial", "would": "denied"}
    assert registry.get_sample_value("sigil_enforcer_dry_run_total", labels) == 1

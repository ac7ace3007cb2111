"""Kubelet probes, dry-run and the peer's address through the real inbound proxy, in front of a real HTTP
application (aiohttp) or a line-echo one, over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import structlog
from aiohttp import web
from enforcer.policy_docs import ap, dump, network_rule, rule, spiffe
from enforcer.test_proxy import Upper, _talk
from enforcer.tlskit import static_source
from prometheus_client import CollectorRegistry
from sigil_testing.pki import Domain

from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.proxy import Address, InboundProxy, refusal_reporter
from sigil.enforcer.tls import SpiffeTls

PORT = 8443
WEB = "spiffe://example.org/web"


@pytest.fixture
async def http_app() -> AsyncIterator[tuple[list[str], int]]:
    """A real HTTP application answering /healthz and /secret; yields the paths it served and its port."""
    served: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        served.append(request.path_qs)
        return web.Response(text=f"ok {request.path}")

    app = web.Application()
    app.router.add_get("/healthz", answer)
    app.router.add_get("/secret", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield served, runner.addresses[0][1]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _proxy(
    home: Domain,
    files: Path,
    app_port: int,
    policies: Path,
    registry: CollectorRegistry,
    *,
    probe_paths: frozenset[str] = frozenset(),
    default: DefaultPolicy = DefaultPolicy.DENY,
) -> AsyncIterator[InboundProxy]:
    metrics = EnforcerMetrics(registry)
    authorizer = Authorizer(
        trust_domain=home.trust_domain,
        target=Target("shop", {"app": "api"}),
        policies=policies,
        default=default,
        metrics=metrics,
    )
    await asyncio.to_thread(authorizer.load)
    tls = SpiffeTls(
        static_source(files / "proxy", home.mint("ns", "shop", "sa", "api"), home),
        on_refused=refusal_reporter(metrics),
    )
    proxy = InboundProxy(
        Address("127.0.0.1", 0),
        Address("127.0.0.1", app_port),
        tls=tls,
        authorizer=authorizer,
        policy_port=PORT,
        probe_paths=probe_paths,
        metrics=metrics,
    )
    async with proxy:
        yield proxy


async def _get(port: int, path: str) -> tuple[int, str] | None:
    """A plaintext GET as a kubelet sends it; None when the proxy hung up instead of answering."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                return response.status, await response.text()
        except aiohttp.ClientError:
            return None


async def _raw(port: int, data: bytes) -> bytes:
    """Send raw bytes on plaintext and read everything until the proxy closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read()
    except ConnectionError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _probes(registry: CollectorRegistry, decision: str) -> float | None:
    labels = {"decision": decision, "tier": "probe"}
    return registry.get_sample_value("sigil_enforcer_decisions_total", labels)


async def test_a_probe_path_is_answered_by_the_application_without_an_svid(
    home: Domain,
    short_tmp: Path,
    http_app: tuple[list[str], int],
    write_policies: Callable[[Mapping[str, str]], Path],
) -> None:
    """A plaintext GET of a configured path reaches the application and its answer comes back, counted as a
    probe decision (the default here is deny: no policy let it through)."""
    served, app_port = http_app
    registry = CollectorRegistry()
    policies = write_policies({})
    async with _proxy(
        home, short_tmp, app_port, policies, registry, probe_paths=frozenset({"/healthz"})
    ) as proxy:
        answer = await _get(proxy.port, "/healthz")
    assert answer == (200, "ok /healthz")
    assert served == ["/healthz"]
    assert _probes(registry, "allowed") == 1


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"hello\n",
    ],
    ids=["other-path", "query", "post", "body", "not-http"],
)
async def test_any_other_plaintext_is_refused(
    home: Domain,
    short_tmp: Path,
    http_app: tuple[list[str], int],
    write_policies: Callable[[Mapping[str, str]], Path],
    request_bytes: bytes,
) -> None:
    """Plaintext that is not exactly a GET of a probe path is closed unanswered; the application sees nothing."""
    served, app_port = http_app
    registry = CollectorRegistry()
    async with _proxy(
        home,
        short_tmp,
        app_port,
        write_policies({}),
        registry,
        probe_paths=frozenset({"/healthz"}),
    ) as proxy:
        answer = await _raw(proxy.port, request_bytes)
    assert answer == b""
    assert served == []
    assert _probes(registry, "denied") == 1


async def test_a_request_pipelined_after_a_probe_never_reaches_the_application(
    home: Domain,
    short_tmp: Path,
    http_app: tuple[list[str], int],
    write_policies: Callable[[Mapping[str, str]], Path],
) -> None:
    """The probe is passed on with Connection: close and nothing more from the client follows it."""
    served, app_port = http_app
    pipelined = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
        b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    async with _proxy(
        home,
        short_tmp,
        app_port,
        write_policies({}),
        CollectorRegistry(),
        probe_paths=frozenset({"/healthz"}),
    ) as proxy:
        answer = await _raw(proxy.port, pipelined)
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"ok /secret" not in answer
    assert served == ["/healthz"]


async def test_mtls_still_decides_by_policy_on_a_port_that_answers_probes(
    home: Domain,
    short_tmp: Path,
    write_policies: Callable[[Mapping[str, str]], Path],
) -> None:
    """With probe paths set, an allowed mTLS peer still reaches the application and a denied one does not."""
    upper = Upper()
    server = await asyncio.start_server(upper.serve, "127.0.0.1", 0)
    app_port = server.sockets[0].getsockname()[1]
    policies = write_policies(
        {"p.yaml": dump(ap("web", match={"app": "api"}, rules=[rule([spiffe(WEB)])]))}
    )
    allowed = SpiffeTls(static_source(short_tmp / "a", home.mint("web"), home)).client_context()
    denied = SpiffeTls(static_source(short_tmp / "d", home.mint("batch"), home)).client_context()
    try:
        async with _proxy(
            home,
            short_tmp,
            app_port,
            policies,
            CollectorRegistry(),
            probe_paths=frozenset({"/healthz"}),
        ) as proxy:
            answers = (await _talk(proxy.port, allowed), await _talk(proxy.port, denied))
    finally:
        server.close()
        await server.wait_closed()
    assert answers == (b"HELLO\n", b"")
    assert upper.connections == 1


async def test_a_dry_run_deny_is_logged_and_counted_but_not_enforced(
    home: Domain,
    short_tmp: Path,
    write_policies: Callable[[Mapping[str, str]], Path],
) -> None:
    """A dry-run DENY matching an allowed peer leaves it allowed, and its would-be verdict is in the decision's
    log line and in sigil_enforcer_dry_run_total."""
    upper = Upper()
    server = await asyncio.start_server(upper.serve, "127.0.0.1", 0)
    app_port = server.sockets[0].getsockname()[1]
    policies = write_policies(
        {
            "p.yaml": dump(
                ap("web", match={"app": "api"}, rules=[rule([spiffe(WEB)])]),
                ap("try", action="DENY", dry_run=True, rules=[rule([spiffe(WEB)])]),
            )
        }
    )
    client = SpiffeTls(static_source(short_tmp / "c", home.mint("web"), home)).client_context()
    registry = CollectorRegistry()
    try:
        async with _proxy(home, short_tmp, app_port, policies, registry) as proxy:
            with structlog.testing.capture_logs() as logs:
                answer = await _talk(proxy.port, client)
    finally:
        server.close()
        await server.wait_closed()
    assert answer == b"HELLO\n"
    (decision,) = [entry for entry in logs if entry["event"] == "decision"]
    assert decision["decision"] == "allowed"
    assert decision["dry_run"]["would"] == "denied"
    assert decision["dry_run"]["policy"] == "shop/try"
    labels = {"policy": "shop/try", "would": "denied"}
    assert registry.get_sample_value("sigil_enforcer_dry_run_total", labels) == 1


@pytest.mark.parametrize(("block", "expected"), [("127.0.0.0/8", b"HELLO\n"), ("10.0.0.0/8", b"")])
async def test_the_proxy_decides_with_the_peers_real_address(
    home: Domain,
    short_tmp: Path,
    write_policies: Callable[[Mapping[str, str]], Path],
    block: str,
    expected: bytes,
) -> None:
    """A rule with sourceCIDRs sees the connection's real source address (loopback here)."""
    upper = Upper()
    server = await asyncio.start_server(upper.serve, "127.0.0.1", 0)
    app_port = server.sockets[0].getsockname()[1]
    policy = ap(
        "net", match={"app": "api"}, rules=[network_rule([spiffe(WEB)], sourceCIDRs=[block])]
    )
    client = SpiffeTls(static_source(short_tmp / "c", home.mint("web"), home)).client_context()
    try:
        async with _proxy(
            home, short_tmp, app_port, write_policies({"p.yaml": dump(policy)}), CollectorRegistry()
        ) as proxy:
            answer = await _talk(proxy.port, client)
    finally:
        server.close()
        await server.wait_closed()
    assert answer == expected


async def test_the_audit_default_allows_and_counts_what_deny_would_refuse(
    home: Domain,
    short_tmp: Path,
    write_policies: Callable[[Mapping[str, str]], Path],
) -> None:
    """With --default audit and no policy, a peer is let through and counted as audited."""
    upper = Upper()
    server = await asyncio.start_server(upper.serve, "127.0.0.1", 0)
    app_port = server.sockets[0].getsockname()[1]
    client = SpiffeTls(static_source(short_tmp / "c", home.mint("web"), home)).client_context()
    registry = CollectorRegistry()
    try:
        async with _proxy(
            home,
            short_tmp,
            app_port,
            write_policies({}),
            registry,
            default=DefaultPolicy.AUDIT,
        ) as proxy:
            answer = await _talk(proxy.port, client)
    finally:
        server.close()
        await server.wait_closed()
    assert answer == b"HELLO\n"
    assert registry.get_sample_value("sigil_enforcer_audited_total") == 1

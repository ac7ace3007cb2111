"""The mTLS proxy end to end over loopback: inbound decides and forwards, outbound originates mTLS."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from enforcer.policy_docs import ap, dump, rule, spiffe
from enforcer.tlskit import static_source, who_am_i_server
from prometheus_client import CollectorRegistry
from sigil_testing.pki import Domain, write_svid_files

from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.proxy import Address, InboundProxy, OutboundProxy, refusal_reporter
from sigil.enforcer.tls import PeerRule, SpiffeTls

PORT = 8443


def _allow(*ids: str) -> str:
    return dump(
        ap(
            "frontends",
            namespace="shop",
            match={"app": "api"},
            rules=[rule([spiffe(i) for i in ids], ports=[PORT])],
        )
    )


class Upper:
    """A plain TCP application that answers each line in upper case (hanging up after "ping")."""

    def __init__(self) -> None:
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
                if line == b"ping\n":
                    break
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
async def app() -> AsyncIterator[tuple[Upper, int]]:
    upper = Upper()
    server = await asyncio.start_server(upper.serve, "127.0.0.1", 0)
    try:
        yield upper, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@asynccontextmanager
async def _inbound(
    home: Domain,
    files: Path,
    app_port: int,
    policies: Path,
    registry: CollectorRegistry,
    *,
    drain_seconds: float = 10.0,
) -> AsyncIterator[InboundProxy]:
    metrics = EnforcerMetrics(registry)
    authorizer = Authorizer(
        trust_domain=home.trust_domain,
        target=Target("shop", {"app": "api"}),
        policies=policies,
        default_allow=False,
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
        metrics=metrics,
        drain_seconds=drain_seconds,
    )
    async with proxy:
        yield proxy


async def _talk(port: int, context: ssl.SSLContext | None, line: bytes = b"hello\n") -> bytes:
    """Send one line; return the answer (b"" when the proxy closed the connection instead)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    except (ConnectionError, ssl.SSLError):
        return b""
    try:
        writer.write(line)
        await writer.drain()
        return await reader.readline()
    except (ConnectionError, ssl.SSLError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def test_an_allowed_peer_reaches_the_local_port(
    home: Domain,
    short_tmp: Path,
    app: tuple[Upper, int],
    write_policies: Callable[[Mapping[str, str]], Path],
    registry: CollectorRegistry,
) -> None:
    """A client the policy allows talks through the proxy to the local application."""
    upper, app_port = app
    policies = write_policies({"p.yaml": _allow("spiffe://example.org/web")})
    client = SpiffeTls(static_source(short_tmp / "c", home.mint("web"), home)).client_context()
    async with _inbound(home, short_tmp, app_port, policies, registry) as proxy:
        answer = await _talk(proxy.port, client)
    assert answer == b"HELLO\n"
    assert upper.connections == 1
    labels = {"decision": "allowed", "tier": "namespace"}
    assert registry.get_sample_value("sigil_enforcer_decisions_total", labels) == 1
    assert registry.get_sample_value("sigil_enforcer_policy_revision") == 1


async def test_a_denied_peer_is_closed_before_the_local_port(
    home: Domain,
    short_tmp: Path,
    app: tuple[Upper, int],
    write_policies: Callable[[Mapping[str, str]], Path],
    registry: CollectorRegistry,
) -> None:
    """A client with a valid SVID that no rule allows is disconnected; the application never sees it."""
    upper, app_port = app
    policies = write_policies({"p.yaml": _allow("spiffe://example.org/web")})
    client = SpiffeTls(static_source(short_tmp / "c", home.mint("batch"), home)).client_context()
    async with _inbound(home, short_tmp, app_port, policies, registry) as proxy:
        answer = await _talk(proxy.port, client)
    assert answer == b""
    assert upper.connections == 0
    labels = {"decision": "denied", "tier": "namespace"}
    assert registry.get_sample_value("sigil_enforcer_decisions_total", labels) == 1


async def test_a_peer_from_another_ca_is_refused_and_counted(
    home: Domain,
    short_tmp: Path,
    app: tuple[Upper, int],
    write_policies: Callable[[Mapping[str, str]], Path],
    registry: CollectorRegistry,
) -> None:
    """A client whose chain fails SPIFFE verification never reaches a decision and is counted by reason."""
    upper, app_port = app
    partner = Domain("partner.net", now=datetime.now(UTC))
    forged = home.mint(spiffe_id=partner.id("web"))  # example.org's CA vouching for partner.net
    policies = write_policies({"p.yaml": _allow("spiffe://partner.net/web")})
    client = SpiffeTls(static_source(short_tmp / "c", forged, partner, home)).client_context()
    async with _inbound(home, short_tmp, app_port, policies, registry) as proxy:
        answer = await _talk(proxy.port, client)
    assert answer == b""
    assert upper.connections == 0
    assert (
        registry.get_sample_value(
            "sigil_enforcer_peer_refusals_total", {"reason": "unknown_trust_domain"}
        )
        == 1
    )


async def test_a_policy_change_is_picked_up_and_a_broken_one_keeps_the_last_good(
    home: Domain,
    short_tmp: Path,
    app: tuple[Upper, int],
    write_policies: Callable[[Mapping[str, str]], Path],
    registry: CollectorRegistry,
) -> None:
    """A new policy file admits a new peer after a reload; a broken file leaves the last good set in force."""
    _, app_port = app
    policies = write_policies({"p.yaml": _allow("spiffe://example.org/web")})
    client = SpiffeTls(static_source(short_tmp / "c", home.mint("batch"), home)).client_context()
    async with _inbound(home, short_tmp, app_port, policies, registry) as proxy:
        denied = await _talk(proxy.port, client)
        write_policies({"p.yaml": _allow("spiffe://example.org/web", "spiffe://example.org/batch")})
        authorizer = proxy._authorizer
        await authorizer.reload()
        allowed = await _talk(proxy.port, client)
        write_policies({"p.yaml": "kind: [unclosed"})
        await authorizer.reload()
        still_allowed = await _talk(proxy.port, client)
    assert (denied, allowed, still_allowed) == (b"", b"HELLO\n", b"HELLO\n")
    assert registry.get_sample_value("sigil_enforcer_policy_revision") == 2
    assert registry.get_sample_value("sigil_enforcer_policy_load_errors_total") == 1


async def test_shutdown_drains_open_connections(
    home: Domain,
    short_tmp: Path,
    app: tuple[Upper, int],
    write_policies: Callable[[Mapping[str, str]], Path],
    registry: CollectorRegistry,
) -> None:
    """On close the proxy stops accepting but lets an open connection finish its exchange."""
    _, app_port = app
    policies = write_policies({"p.yaml": _allow("spiffe://example.org/web")})
    client = SpiffeTls(static_source(short_tmp / "c", home.mint("web"), home)).client_context()
    async with _inbound(home, short_tmp, app_port, policies, registry) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, ssl=client)
        writer.write(b"first\n")
        assert await reader.readline() == b"FIRST\n"
        closing = asyncio.create_task(proxy.aclose())
        await asyncio.sleep(0)  # let close() stop the listener: one loop turn, not a timer
        assert await _talk(proxy.port, client) == b""
        writer.write(b"second\n")
        assert await reader.readline() == b"SECOND\n"
        assert not closing.done()
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
        await closing


async def test_outbound_originates_mtls_as_the_workload(home: Domain, short_tmp: Path) -> None:
    """A plain client of the outbound proxy reaches an mTLS server, which sees the workload's SPIFFE ID."""
    server = SpiffeTls(static_source(short_tmp / "s", home.mint("db"), home)).server_context()
    tls = SpiffeTls(static_source(short_tmp / "w", home.mint("ns", "shop", "sa", "api"), home))
    async with who_am_i_server(server) as upstream_port:
        proxy = OutboundProxy(
            Address("127.0.0.1", 0),
            Address("127.0.0.1", upstream_port),
            tls=tls,
            expect=home.id("db"),
        )
        async with proxy:
            answer = await _talk(proxy.port, None, b"")
    assert answer == b"spiffe://example.org/ns/shop/sa/api\n"


async def test_outbound_refuses_an_unexpected_server(home: Domain, short_tmp: Path) -> None:
    """The outbound proxy drops the local connection when the server is not the expected SPIFFE ID."""
    server = SpiffeTls(static_source(short_tmp / "s", home.mint("impostor"), home)).server_context()
    refused: list[str] = []
    tls = SpiffeTls(
        static_source(short_tmp / "w", home.mint("api"), home),
        on_refused=lambda err: refused.append(err.reason),
    )
    async with who_am_i_server(server) as upstream_port:
        proxy = OutboundProxy(
            Address("127.0.0.1", 0),
            Address("127.0.0.1", upstream_port),
            tls=tls,
            expect=home.id("db"),
        )
        async with proxy:
            answer = await _talk(proxy.port, None, b"")
    assert answer == b""
    assert refused == ["unexpected_peer"]


async def _through_outbound(
    tls: SpiffeTls, upstream: ssl.SSLContext, *, expect: PeerRule | None = None
) -> bytes:
    """What a plain client of an outbound proxy (built with ``expect``) hears from an mTLS upstream."""
    async with who_am_i_server(upstream) as upstream_port:
        proxy = OutboundProxy(
            Address("127.0.0.1", 0), Address("127.0.0.1", upstream_port), tls=tls, expect=expect
        )
        async with proxy:
            return await _talk(proxy.port, None, b"")


async def test_outbound_refuses_a_federated_server_unless_it_is_expected(
    home: Domain, short_tmp: Path
) -> None:
    """With no expectation the outbound proxy accepts only its own trust domain: a federated partner's valid
    SVID is refused as 'unexpected_peer', and accepted once its domain or ID is named."""
    partner = Domain("partner.net", now=datetime.now(UTC))
    upstream = SpiffeTls(
        static_source(short_tmp / "s", partner.mint("ledger"), partner, home)
    ).server_context()
    refused: list[str] = []
    tls = SpiffeTls(
        static_source(short_tmp / "w", home.mint("ns", "shop", "sa", "api"), home, partner),
        on_refused=lambda err: refused.append(err.reason),
    )
    by_default = await _through_outbound(tls, upstream)
    by_domain = await _through_outbound(tls, upstream, expect=partner.trust_domain)
    by_id = await _through_outbound(tls, upstream, expect=partner.id("ledger"))
    assert by_default == b""
    assert refused == ["unexpected_peer"]
    assert by_domain == by_id == b"spiffe://example.org/ns/shop/sa/api\n"


async def test_outbound_without_an_expectation_accepts_its_own_trust_domain(
    home: Domain, short_tmp: Path
) -> None:
    """With no expectation, any valid server of the workload's own trust domain is accepted."""
    upstream = SpiffeTls(static_source(short_tmp / "s", home.mint("db"), home)).server_context()
    tls = SpiffeTls(static_source(short_tmp / "w", home.mint("api"), home))
    assert await _through_outbound(tls, upstream) == b"spiffe://example.org/api\n"


async def test_openssl_through_the_inbound_proxy(
    home: Domain,
    short_tmp: Path,
    app: tuple[Upper, int],
    write_policies: Callable[[Mapping[str, str]], Path],
    registry: CollectorRegistry,
) -> None:
    """openssl s_client with an allowed SVID reaches the application; without a certificate it does not."""
    upper, app_port = app
    policies = write_policies({"p.yaml": _allow("spiffe://example.org/openssl")})
    svid, key, bundle = write_svid_files(short_tmp / "o", home.mint("openssl"), home)
    async with _inbound(home, short_tmp, app_port, policies, registry) as proxy:
        allowed = await _s_client(
            proxy.port, "-cert", str(svid), "-key", str(key), "-CAfile", str(bundle)
        )
        anonymous = await _s_client(proxy.port, "-CAfile", str(bundle))
    assert "PING" in allowed
    assert "PING" not in anonymous
    assert upper.connections == 1


async def _s_client(port: int, *options: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-quiet",
        "-verify_return_error",
        *options,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(b"ping\n")
    return output.decode(errors="replace")


def test_addresses_parse() -> None:
    """HOST:PORT, [V6]:PORT and a bare port (on loopback) are all accepted."""
    assert Address.parse("0.0.0.0:8443") == Address("0.0.0.0", 8443)  # noqa: S104 - a test value
    assert Address.parse("[::1]:80") == Address("::1", 80)
    assert Address.parse("9000") == Address("127.0.0.1", 9000)
    with pytest.raises(ValueError, match="not a TCP port"):
        Address.parse("localhost:70000")

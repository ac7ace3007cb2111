"""Sigil policy enforced by a real Envoy through ``sigil-enforcer ext-authz``, for the network and the HTTP filter.

The server-side Envoy terminates mTLS with the pod's SVID from files and asks a real ``sigil-enforcer ext-authz``
process (over a Unix socket) about each connection or request; callers present real SVIDs of the test PKI.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from enforcer.policy_docs import ap, dump, rule, spiffe
from enforcer.tlskit import static_source
from sigil_testing.envoy import Envoy, run_envoy
from sigil_testing.envoy_authz import (
    ExtAuthzProcess,
    SvidFiles,
    bootstrap,
    http_filters,
    local_cluster,
    network_filters,
    running_ext_authz,
    tls_listener,
)
from sigil_testing.network import echo_server, free_ports
from sigil_testing.pki import Domain, write_svid_files

from sigil.enforcer.tls import SpiffeTls

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Stand:
    """Envoy in front of an echo server (TCP) and a web application (HTTP), both guarded by ext-authz."""

    envoy: Envoy
    authz: ExtAuthzProcess
    tcp_port: int
    http_port: int
    home: Domain
    partner: Domain
    files: Path

    def client(self, name: str) -> ssl.SSLContext:
        """A client context presenting ``spiffe://example.org/NAME``."""
        issued = self.home.mint(name)
        return SpiffeTls(static_source(self.files / name, issued, self.home)).client_context()


@contextlib.asynccontextmanager
async def _web_app() -> AsyncIterator[int]:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello from the app\n")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def stand(
    home: Domain, short_tmp: Path, write_policies: Callable[[Mapping[str, str]], Path]
) -> AsyncIterator[Stand]:
    """The pod ``shop/api`` allows ``web`` and, by an explicit DENY rule, refuses ``batch``; a dry-run DENY
    would refuse ``web``."""
    policies = write_policies(
        {
            "p.yaml": dump(
                ap(
                    "callers",
                    match={"app": "api"},
                    rules=[rule([spiffe("spiffe://example.org/web")])],
                ),
                ap(
                    "no-batch",
                    action="DENY",
                    match={"app": "api"},
                    rules=[rule([spiffe("spiffe://example.org/batch")])],
                ),
                ap(
                    "try-no-web",
                    action="DENY",
                    match={"app": "api"},
                    rules=[rule([spiffe("spiffe://example.org/web")])],
                    dry_run=True,
                ),
            )
        }
    )
    # Envoy trusts a partner domain that ext-authz was not told about: such a peer must still be denied.
    partner = Domain("partner.org", now=home.now)
    chain, key, bundle = write_svid_files(short_tmp / "envoy", home.mint("api"), home, partner)
    files = SvidFiles(chain, key, bundle)
    tcp_port, http_port = free_ports(2)
    socket = short_tmp / "authz.sock"
    arguments = [
        "--policies", str(policies),
        "--namespace", "shop",
        "--labels", "app=api",
        "--trust-domain", "example.org",
        "--default", "deny",
    ]  # fmt: skip
    async with (
        echo_server() as echo_port,
        _web_app() as app_port,
        running_ext_authz(socket, short_tmp / "authz.log", arguments) as authz,
    ):
        config = bootstrap(
            [
                tls_listener("tcp", tcp_port, network_filters("echo"), files),
                tls_listener("http", http_port, http_filters("app"), files),
            ],
            [local_cluster("echo", echo_port), local_cluster("app", app_port)],
            authz_socket=socket,
        )
        async with run_envoy(config, short_tmp) as envoy:
            yield Stand(envoy, authz, tcp_port, http_port, home, partner, short_tmp)


async def _echo_through(port: int, context: ssl.SSLContext) -> bytes:
    """Send one line through Envoy's TCP listener; the answer, empty when Envoy closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(b"ping\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 10)
    except (ConnectionError, ssl.SSLError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


def _decisions(authz: ExtAuthzProcess, peer: str) -> list[dict[str, object]]:
    return [e for e in authz.events() if e.get("event") == "decision" and e.get("peer") == peer]


async def test_the_network_filter_lets_an_allowed_caller_through_and_closes_on_a_denied_one(
    stand: Stand,
) -> None:
    """Through Envoy's TCP listener, ``web`` reaches the echo server; ``batch`` is cut off, and the decision
    log names the DENY rule that refused it."""
    allowed = await _echo_through(stand.tcp_port, stand.client("web"))
    denied = await _echo_through(stand.tcp_port, stand.client("batch"))
    assert allowed == b"ping\n"
    assert denied == b""
    (refusal,) = _decisions(stand.authz, "spiffe://example.org/batch")
    assert (refusal["decision"], refusal["policy"], refusal["rule"]) == (
        "denied",
        "shop/no-batch",
        0,
    )
    stats = await stand.envoy.stats(r"ext_authz\.sigil\.")
    assert stats["ext_authz.sigil.denied"] == 1
    assert stats["ext_authz.sigil.ok"] == 1


async def test_the_http_filter_answers_a_denied_caller_with_a_403_naming_the_rule(
    stand: Stand,
) -> None:
    """Through Envoy's HTTP listener, ``web`` gets the application's page; ``batch`` gets Envoy's 403 whose
    headers name the policy and rule, as our decision log does."""
    url = f"https://127.0.0.1:{stand.http_port}/"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=stand.client("web")) as response:
            allowed = (response.status, await response.text())
            dry_run = response.headers.get("x-sigil-dry-run", "")
        async with session.get(url, ssl=stand.client("batch")) as response:
            denied = (response.status, dict(response.headers), await response.json())
    assert allowed == (200, "hello from the app\n")
    assert dry_run.startswith("denied;")
    status, headers, body = denied
    assert status == 403
    assert headers["x-sigil-policy"] == "shop/no-batch"
    assert headers["x-sigil-rule"] == "0"
    assert body["tier"] == "namespace"
    (refusal,) = _decisions(stand.authz, "spiffe://example.org/batch")
    assert (refusal["policy"], refusal["rule"]) == ("shop/no-batch", 0)


async def test_a_dry_run_denial_is_logged_without_refusing_the_caller(stand: Stand) -> None:
    """``web`` passes the TCP listener although a dry-run DENY matches it; the log says it would be denied."""
    assert await _echo_through(stand.tcp_port, stand.client("web")) == b"ping\n"
    (shadow,) = [e for e in stand.authz.events() if e.get("event") == "decision.dry_run"]
    assert (shadow["decision"], shadow["policy"], shadow["filter"]) == (
        "denied",
        "shop/try-no-web",
        "network",
    )


async def test_a_peer_of_a_domain_ext_authz_does_not_know_is_denied(stand: Stand) -> None:
    """A caller whose SVID Envoy accepts, from a trust domain ext-authz was not given, gets a 403 saying so."""
    issued = stand.partner.mint("web")
    client = SpiffeTls(static_source(stand.files / "partner", issued, stand.partner, stand.home))
    context = client.client_context(expect=stand.home.trust_domain)
    url = f"https://127.0.0.1:{stand.http_port}/"
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
        status = response.status
        headers = dict(response.headers)
    assert status == 403
    assert headers["x-sigil-refusal"] == "unknown_trust_domain"


async def test_a_caller_no_rule_allows_is_denied_under_the_allow_policy(stand: Stand) -> None:
    """A valid SVID that no rule names is refused at the HTTP filter: the ALLOW policy denies the rest."""
    url = f"https://127.0.0.1:{stand.http_port}/"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=stand.client("stranger")) as response,
    ):
        status = response.status
        body = await response.json()
    assert status == 403
    assert body["tier"] == "namespace"
    assert "shop/callers" in body["reason"]

"""SPIFFE TLS contexts over real loopback connections, with SVIDs minted by Sigil's CA and openssl as a peer."""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from enforcer.tlskit import exchange, static_source, who_am_i_server
from sigil_testing.pki import Domain, Issued, write_svid_files

from sigil.enforcer.errors import IdentitySourceError, SvidVerificationError
from sigil.enforcer.tls import SpiffeTls, client_context, server_context
from sigil.enforcer.verify import Refusal


@pytest.fixture
def partner() -> Domain:
    return Domain("partner.net", now=datetime.now(UTC))


async def _hung_up(port: int, context: ssl.SSLContext) -> bool:
    """True when the server refused: the handshake failed, or (TLS 1.3, where the client finishes first)
    the connection closed before a byte of the answer."""
    try:
        said, _ = await exchange(port, context)
    except (ConnectionError, ssl.SSLError):
        return True
    return not said


async def test_mutual_tls_names_both_sides(home: Domain, short_tmp: Path) -> None:
    """Client and server each learn the other's SPIFFE ID from a verified handshake."""
    server = static_source(short_tmp / "s", home.mint("server"), home)
    client = static_source(short_tmp / "c", home.mint("client"), home)
    async with who_am_i_server(server_context(server)) as port:
        said, server_id = await exchange(port, client_context(client))
    assert said == "spiffe://example.org/client"
    assert server_id == "spiffe://example.org/server"


async def test_a_federated_peer_is_accepted_with_its_own_bundle(
    home: Domain, partner: Domain, short_tmp: Path
) -> None:
    """A client of a federated domain is accepted by a server holding that domain's bundle."""
    server = static_source(short_tmp / "s", home.mint("server"), home, partner)
    client = static_source(short_tmp / "c", partner.mint("billing"), partner, home)
    async with who_am_i_server(server_context(server)) as port:
        said, _ = await exchange(port, client_context(client))
    assert said == "spiffe://partner.net/billing"


async def test_a_peer_vouched_for_by_the_wrong_domain_is_refused(
    home: Domain, partner: Domain, short_tmp: Path
) -> None:
    """A partner.net ID signed by example.org's CA passes OpenSSL's pooled gate but not the SPIFFE check."""
    server = static_source(short_tmp / "s", home.mint("server"), home, partner)
    refused: list[SvidVerificationError] = []
    tls = SpiffeTls(server, on_refused=refused.append)
    forged = home.mint(spiffe_id=partner.id("billing"))
    client = static_source(short_tmp / "c", forged, partner, home)
    async with who_am_i_server(tls.server_context()) as port:
        assert await _hung_up(port, client_context(client))
    assert [err.reason for err in refused] == [Refusal.BAD_CHAIN]
    assert refused[0].spiffe_id == "spiffe://partner.net/billing"


async def test_a_server_from_another_ca_is_refused_by_the_client(
    home: Domain, short_tmp: Path
) -> None:
    """A client refuses a server whose chain leads to no anchor it holds."""
    stranger = Domain("example.org", now=datetime.now(UTC))
    server = static_source(short_tmp / "s", stranger.mint("server"), stranger)
    client = static_source(short_tmp / "c", home.mint("client"), home)
    async with who_am_i_server(server_context(server, peer_required=False)) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await exchange(port, client_context(client))


async def test_a_client_refuses_a_server_it_did_not_expect(home: Domain, short_tmp: Path) -> None:
    """A valid server SVID with the wrong SPIFFE ID fails the client's handshake as 'unexpected_peer'."""
    server = static_source(short_tmp / "s", home.mint("impostor"), home)
    client = static_source(short_tmp / "c", home.mint("client"), home)
    async with who_am_i_server(server_context(server)) as port:
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await exchange(port, client_context(client, expect=home.id("server")))
        said, _ = await exchange(port, client_context(client, expect=home.trust_domain))
    assert isinstance(caught.value.__cause__, SvidVerificationError)
    assert caught.value.__cause__.reason == Refusal.UNEXPECTED_PEER
    assert said == "spiffe://example.org/client"


async def test_a_new_handshake_presents_the_rotated_svid(home: Domain, short_tmp: Path) -> None:
    """After the SVID files rotate and the source reloads, the next handshake presents the new SVID."""
    server = static_source(short_tmp / "s", home.mint("server-v1"), home)
    client = static_source(short_tmp / "c", home.mint("client"), home)
    context = client_context(client)
    async with who_am_i_server(server_context(server)) as port:
        _, before = await exchange(port, context)
        write_svid_files(short_tmp / "s", home.mint("server-v2"), home)
        await server.refresh()
        _, after = await exchange(port, context)
    assert (before, after) == ("spiffe://example.org/server-v1", "spiffe://example.org/server-v2")


async def test_a_client_without_a_certificate_is_refused(home: Domain, short_tmp: Path) -> None:
    """A plain TLS client (no certificate) gets no byte from a server that requires an SVID."""
    server = static_source(short_tmp / "s", home.mint("server"), home)
    anonymous = ssl.create_default_context(cadata=home.bundle_pem().decode())
    anonymous.check_hostname = False
    async with who_am_i_server(server_context(server)) as port:
        assert await _hung_up(port, anonymous)


def test_unusable_files_are_an_identity_source_error(home: Domain, short_tmp: Path) -> None:
    """An SVID file that is not PEM is refused with the directory named."""
    source = static_source(short_tmp / "s", home.mint("server"), home)
    (short_tmp / "s" / "svid.pem").write_text("not a certificate")
    with pytest.raises(IdentitySourceError) as caught:
        source.reload()
    assert "unusable SVID files" in str(caught.value)


# --------------------------------------------------------------------------- openssl s_client


async def _s_client(port: int, *options: str) -> str:
    """Run ``openssl s_client`` (an unmodified peer) against ``port``; returns what it printed."""
    process = await asyncio.create_subprocess_exec(
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-quiet",
        "-verify_return_error",
        *options,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return output.decode(errors="replace")


async def test_openssl_with_a_valid_svid_is_accepted(home: Domain, short_tmp: Path) -> None:
    """openssl s_client presenting an SVID from our CA is told its own SPIFFE ID."""
    server = static_source(short_tmp / "s", home.mint("server"), home)
    svid, key, bundle = write_svid_files(short_tmp / "c", home.mint("openssl"), home)
    async with who_am_i_server(server_context(server)) as port:
        output = await _s_client(port, "-cert", str(svid), "-key", str(key), "-CAfile", str(bundle))
    assert "spiffe://example.org/openssl" in output


async def test_openssl_without_a_certificate_is_refused(home: Domain, short_tmp: Path) -> None:
    """openssl s_client with no client certificate is refused by the TLS gate."""
    server = static_source(short_tmp / "s", home.mint("server"), home)
    bundle = short_tmp / "bundle.pem"
    bundle.write_bytes(home.bundle_pem())
    async with who_am_i_server(server_context(server)) as port:
        output = await _s_client(port, "-CAfile", str(bundle))
    assert "spiffe://" not in output
    # asyncio drops the connection without flushing OpenSSL's alert: openssl reports the hang-up.
    assert "unexpected eof" in output or "alert" in output


async def test_openssl_with_a_stranger_certificate_is_refused(
    home: Domain, short_tmp: Path
) -> None:
    """openssl s_client presenting an SVID from another CA of the same name is refused."""
    stranger = Domain("example.org", now=datetime.now(UTC))
    server = static_source(short_tmp / "s", home.mint("server"), home)
    svid, key, _ = write_svid_files(short_tmp / "c", stranger.mint("openssl"), stranger)
    bundle = short_tmp / "bundle.pem"
    bundle.write_bytes(home.bundle_pem())
    async with who_am_i_server(server_context(server)) as port:
        output = await _s_client(port, "-cert", str(svid), "-key", str(key), "-CAfile", str(bundle))
    assert "spiffe://" not in output
    assert "unexpected eof" in output or "alert" in output


def _blocking_exchange(port: int, context: ssl.SSLContext) -> str:
    """A plain blocking-socket client (what a synchronous library does with the context)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return tls.recv(1024).decode().strip()


async def test_blocking_sockets_get_the_same_spiffe_check(home: Domain, short_tmp: Path) -> None:
    """A blocking TLS socket from the client context accepts the expected server and refuses another."""
    server = static_source(short_tmp / "s", home.mint("server"), home)
    tls = SpiffeTls(static_source(short_tmp / "c", home.mint("client"), home))
    async with who_am_i_server(server_context(server)) as port:
        said = await asyncio.to_thread(
            _blocking_exchange, port, tls.client_context(expect=home.id("server"))
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.to_thread(
                _blocking_exchange, port, tls.client_context(expect=home.id("other"))
            )
    assert said == "spiffe://example.org/client"


def _resuming_exchange(
    port: int, context: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[str, ssl.SSLSession | None]:
    """A blocking client offering ``session`` to resume; returns what the server said and the session to keep."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, session=session) as tls,
    ):
        try:
            said = tls.recv(1024).decode().strip()
        except (ConnectionError, ssl.SSLError):
            said = (
                ""  # TLS 1.3: the server's refusal arrives after the client finished its handshake
            )
        return said, tls.session


def _plain_client(files: Path, issued: Issued, version: ssl.TLSVersion) -> ssl.SSLContext:
    """An ordinary Python TLS client presenting ``issued``, as a workload without Sigil would build it."""
    chain, key = files / "client.pem", files / "client.key"
    chain.write_bytes(issued.chain_pem())
    key.write_bytes(issued.key_pem())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only the server's decision about the client is under test
    context.minimum_version = context.maximum_version = version
    context.load_cert_chain(chain, key)
    return context


_VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.mark.parametrize("version", _VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_a_resumed_session_is_served_until_its_svid_expires(
    home: Domain, short_tmp: Path, version: ssl.TLSVersion
) -> None:
    """A client that resumes its TLS session is served while its SVID is valid, and refused as 'expired' after."""
    now = datetime.now(UTC)
    clock = [now]
    refused: list[SvidVerificationError] = []
    server = static_source(short_tmp / "s", home.mint("server"), home)
    tls = SpiffeTls(server, clock=lambda: clock[0], on_refused=refused.append)
    client = _plain_client(
        short_tmp, home.mint("client", ttl=timedelta(minutes=5), now=now), version
    )
    async with who_am_i_server(tls.server_context()) as port:
        first, session = await asyncio.to_thread(_resuming_exchange, port, client, None)
        again, session = await asyncio.to_thread(_resuming_exchange, port, client, session)
        clock[0] = now + timedelta(minutes=6)
        late, _ = await asyncio.to_thread(_resuming_exchange, port, client, session)
    assert (first, again) == ("spiffe://example.org/client", "spiffe://example.org/client")
    assert late == ""
    assert [err.reason for err in refused] == [Refusal.EXPIRED]


@pytest.mark.parametrize("version", _VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_a_resumed_session_is_refused_once_its_authority_left_the_bundle(
    home: Domain, partner: Domain, short_tmp: Path, version: ssl.TLSVersion
) -> None:
    """A federated client resuming after its domain's authority was replaced in the bundle is refused."""
    refused: list[SvidVerificationError] = []
    server = static_source(short_tmp / "s", home.mint("server"), home, partner)
    tls = SpiffeTls(server, on_refused=refused.append)
    client = _plain_client(short_tmp, partner.mint("billing"), version)
    async with who_am_i_server(tls.server_context()) as port:
        first, session = await asyncio.to_thread(_resuming_exchange, port, client, None)
        successor = Domain("partner.net", now=datetime.now(UTC))
        (short_tmp / "s" / "federated-0.pem").write_bytes(successor.bundle_pem())
        await server.refresh()
        late, _ = await asyncio.to_thread(_resuming_exchange, port, client, session)
    assert first == "spiffe://partner.net/billing"
    assert late == ""
    assert [err.reason for err in refused] == [Refusal.BAD_CHAIN]


async def test_a_client_without_a_certificate_is_anonymous_where_a_peer_is_optional(
    home: Domain, short_tmp: Path
) -> None:
    """A server accepting anonymous clients completes the handshake with one and sees no peer, not a crash."""
    server = static_source(short_tmp / "s", home.mint("server"), home)
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cadata=home.bundle_pem().decode())
    async with who_am_i_server(server_context(server, peer_required=False)) as port:
        said, _ = await exchange(port, anonymous)
    assert said == "none"

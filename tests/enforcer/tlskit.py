"""Loopback TLS servers for the enforcer's tests: each tells the client who it thinks the client is."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sigil_testing.pki import Domain, Issued, write_svid_files

from sigil.enforcer.sources import StaticSource
from sigil.enforcer.tls import peer_of

__all__ = ["exchange", "static_source", "who_am_i_server"]


def static_source(directory: Path, issued: Issued, *trusted: Domain) -> StaticSource:
    """A file-backed identity source presenting ``issued`` and trusting ``trusted`` (first: own domain)."""
    svid, key, bundle = write_svid_files(directory, issued, trusted[0])
    federated = {}
    for number, domain in enumerate(trusted[1:]):
        path = directory / f"federated-{number}.pem"
        path.write_bytes(domain.bundle_pem())
        federated[domain.trust_domain] = path
    return StaticSource(svid, key, bundle, federated=federated)


@asynccontextmanager
async def who_am_i_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS server on loopback answering each connection with the peer's SPIFFE ID; yields its port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer.get_extra_info("ssl_object"))
        writer.write(f"{'none' if peer is None else peer.spiffe_id}\n".encode())
        try:
            await writer.drain()
        finally:
            writer.close()
            # The client may hang up first.
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def exchange(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    """Connect with ``context``; returns (what the server said, the server's SPIFFE ID as verified)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        line = (await reader.readline()).decode().strip()
        peer = peer_of(writer.get_extra_info("ssl_object"))
        return line, "none" if peer is None else str(peer.spiffe_id)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):  # the server hung up first
            await writer.wait_closed()

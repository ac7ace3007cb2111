"""Loopback ports and a line-echo server, for tests that start real servers and proxies on 127.0.0.1.

A port chosen here is free when chosen; a process started on it later may lose it to another, which is why tests
prefer port 0 and reading back the port wherever the server under test allows it (this is for the ones that must
be told a port in advance: subprocesses, proxies, the control plane).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["echo_server", "free_port", "free_ports"]


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (held together while chosen, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """One port free on 127.0.0.1 right now."""
    (port,) = free_ports(1)
    return port


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readline())
    try:
        await writer.drain()
    finally:
        writer.close()
        # The client (often a proxy refusing its peer) may hang up first.
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A plain TCP server on loopback that answers each connection's first line with that line; yields its port."""
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()

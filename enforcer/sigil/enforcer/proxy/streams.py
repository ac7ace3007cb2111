"""Byte streams as the proxy moves them: both ways until both ends are done, and closing without surprises.

A TLS stream cannot half-close (``write_eof`` is not supported on SSL transports), so a direction that ends
without passing its EOF on ends both; a plain TCP one passes it on and the other direction keeps flowing.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["STREAM_ERRORS", "Streams", "close_quietly", "pump", "splice"]

_CHUNK = 64 * 1024
#: What a peer going away looks like on a stream (ssl.SSLError is an OSError).
STREAM_ERRORS = (OSError, asyncio.IncompleteReadError)

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def splice(client: Streams, upstream: Streams) -> None:
    """Copy both ways until both ends are done; a side that cannot half-close (TLS) ends both."""
    up = asyncio.ensure_future(pump(client[0], upstream[1]))
    down = asyncio.ensure_future(pump(upstream[0], client[1]))
    try:
        pending: set[asyncio.Future[bool]] = {up, down}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not all(task.result() for task in done):
                break  # a direction ended without a half-close: nothing more can flow cleanly
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        await close_quietly(upstream[1])


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Copy until EOF; True when the EOF was passed on as a half-close."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
            return True
    except STREAM_ERRORS:
        pass
    return False


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close ``writer`` and wait for it, ignoring a peer that already went away."""
    writer.close()
    with contextlib.suppress(*STREAM_ERRORS):
        await writer.wait_closed()

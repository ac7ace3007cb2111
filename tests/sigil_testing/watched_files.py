"""Certificate files as ``sigil-agent api watch --write`` keeps them, and a TLS server and client that use them.

For tests of bundle consumers outside the mesh: the real watch process writes ``svid.pem``, ``svid.key`` and
``bundle.pem``; :class:`FileServer` is a TLS server that reloads its certificate when ``svid.pem`` changes (keeping
the last pair that loaded, as a careful reloader does), and :func:`file_client` connects verifying the server against
``bundle.pem`` read afresh, as a client that reads its roots from a file does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from cryptography import x509

from sigil_testing.waiting import eventually

__all__ = ["FileServer", "file_client", "pem_certs", "watch_files"]


class FileServer:
    """A TLS server serving ``svid.pem``/``svid.key`` from ``directory``, reloaded when ``svid.pem`` changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp: int | None = None
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        stamp = (self.directory / "svid.pem").stat().st_mtime_ns
        if stamp != self._stamp:
            fresh = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                fresh.load_cert_chain(self.directory / "svid.pem", self.directory / "svid.key")
            except ssl.SSLError:  # a pair caught mid-update does not load: the last good one stays
                if self._context is None:
                    raise
            else:
                self._context, self._stamp = fresh, stamp
        assert self._context is not None
        return self._context

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(self.context())
            writer.write(b"ok\n")
            await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await writer.wait_closed()


async def file_client(directory: Path, port: int) -> str:
    """One connection verifying the server against ``directory/bundle.pem``: ``"ok"`` or what went wrong."""
    context = ssl.create_default_context(cafile=str(directory / "bundle.pem"))
    context.check_hostname = False  # a SPIFFE SVID names its workload by URI SAN, not by host name
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context), 5
    )
    try:
        reply = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            await writer.wait_closed()
    return "ok" if reply == b"ok\n" else f"fail reply {reply!r}"


@contextlib.asynccontextmanager
async def watch_files(socket_path: Path, directory: Path) -> AsyncIterator[None]:
    """The real ``sigil-agent api watch --write`` process, until the block ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "sigil.node_agent.cli", "api", "watch", "--socket", str(socket_path)),
        *("--write", str(directory)),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:

        async def written() -> bool:
            assert process.returncode is None, "the watch exited"
            return (directory / "svid.pem").exists()

        await eventually(written, what="the watch to write svid.pem", within=30)
        yield
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


def pem_certs(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file."""
    return x509.load_pem_x509_certificates(path.read_bytes())

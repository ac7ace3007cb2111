"""Kubelet probes through the inbound proxy: exactly one plaintext ``GET`` of a configured path, nothing else.

A kubelet's ``httpGet`` probe cannot present an SVID, so default-deny meshes break probes (linkerd2#8945 calls it
"a large pain point"). Linkerd authorizes an exact-path GET for probes; Sigil does the same on the proxy's own
port (authz.md 7.1): the first byte of a connection says which it is. A TLS connection starts with a handshake
record (content type 22, RFC 8446 §5.1) and goes through mTLS and policy as always; anything else is read as
one HTTP/1.x request head, and only ``GET <path> HTTP/1.x`` for a configured path, without a body, is passed
to the application, with ``Connection: close`` so that no second request can follow on the same connection.
The kernel is asked to *peek* at the first byte (``MSG_PEEK``), so a TLS connection's ClientHello is still
there for the handshake.
"""

from __future__ import annotations

import asyncio
import re
import socket

import structlog

from sigil.enforcer.metrics import PROBE_TIER, EnforcerMetrics
from sigil.enforcer.proxy.streams import STREAM_ERRORS, close_quietly, pump

__all__ = ["TLS_HANDSHAKE", "answer_probe", "first_byte", "judge_probe", "probe_request"]

#: The first byte of every TLS connection: a record of content type handshake (RFC 8446 §5.1).
TLS_HANDSHAKE = 0x16
# A request head is small; a kubelet's is under 200 bytes. More is not a probe.
_HEAD_LIMIT = 8192
_REQUEST_LINE = re.compile(rb"GET (/[\x21-\x7e]*) HTTP/1\.[01]")
_FORBIDDEN_HEADERS = (b"content-length", b"transfer-encoding", b"upgrade")


async def first_byte(sock: socket.socket) -> int | None:
    """The connection's first byte, left unread in the kernel's buffer; None when the peer closed first."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            peeked = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_reader(sock.fileno(), ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_reader(sock.fileno())
            continue
        return peeked[0] if peeked else None


async def probe_request(reader: asyncio.StreamReader, paths: frozenset[str]) -> bytes | None:
    """The request head to send to the application when it is a probe of one of ``paths``, else None.

    The head is rewritten to close the connection after the answer; a body, an upgrade or a path that is not
    configured exactly (query strings included) is not a probe.
    """
    try:
        # The request line first: anything that is not a probe is refused without waiting for more.
        line = await reader.readuntil(b"\n")
        request_line = line[:-2] if line.endswith(b"\r\n") else line
        found = _REQUEST_LINE.fullmatch(request_line)
        if found is None or found.group(1).decode("ascii") not in paths:
            return None
        rest = b"" if reader.at_eof() else await reader.readuntil(b"\r\n")
        if rest != b"\r\n":
            rest += await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    if len(request_line) + len(rest) > _HEAD_LIMIT:
        return None
    headers = rest[:-4].split(b"\r\n") if rest != b"\r\n" else []
    kept = []
    for header in headers:
        name = header.split(b":", 1)[0].strip().lower()
        if name in _FORBIDDEN_HEADERS:
            return None
        if name != b"connection":
            kept.append(header)
    return b"\r\n".join([request_line, *kept, b"Connection: close"]) + b"\r\n\r\n"


_log = structlog.get_logger(__name__)


async def judge_probe(
    reader: asyncio.StreamReader,
    paths: frozenset[str],
    address: str | None,
    *,
    metrics: EnforcerMetrics | None,
    within: float,
) -> bytes | None:
    """The probe's request head when a plaintext connection is one, else None; either way logged and counted
    as a decision of its own kind (``probe``)."""
    try:
        head = await asyncio.wait_for(probe_request(reader, paths), within)
    except TimeoutError:
        head = None
    if metrics is not None:
        metrics.count_probe(allowed=head is not None)
    log = _log.info if head is not None else _log.warning
    log(
        "decision",
        decision="allowed" if head is not None else "denied",
        tier=PROBE_TIER,
        address=address,
        path=None if head is None else head.split(b" ", 2)[1].decode("ascii"),
        reason="a plaintext GET of a probe path"
        if head is not None
        else "plaintext that is not a GET of a probe path (mTLS is required)",
    )
    return head


async def answer_probe(
    head: bytes,
    writer: asyncio.StreamWriter,
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Send the probe's request to the application and only its answer back."""
    try:
        upstream[1].write(head)
        # Only the answer flows back: nothing more from the client reaches the application.
        await pump(upstream[0], writer)
    except STREAM_ERRORS:
        pass
    finally:
        await close_quietly(upstream[1])

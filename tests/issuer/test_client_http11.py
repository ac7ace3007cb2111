"""The issuer client's HTTP/1.1: kept-alive connections, and every way a server can fail to answer as the issuer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.agentapi import contract
from sigil.issuer.client import IssuerClient, UnexpectedAnswerError
from sigil.issuer.client.http11 import ConnectionPool
from sigil.issuer.errors import IssuerError

_BUNDLE = json.dumps(
    {
        "trust_domain": "example.org",
        "sequence": 7,
        "revision": "r7",
        "bundle": {"keys": [], "spiffe_sequence": 7},
        "federated": {},
        "tainted_authority_ids": [],
    }
).encode()


def _answer(
    status: int, body: bytes, *headers: str, content_type: str = "application/json"
) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", *headers]
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class _Server:
    """A plain-HTTP server that answers each request with the next scripted answer (None: close instead)."""

    answers: list[bytes | None]
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.requests.append(head.split(b"\r\n")[0])
                answer = self.answers.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


@asynccontextmanager
async def _serving(answers: Sequence[bytes | None]) -> AsyncIterator[_Server]:
    server = _Server(list(answers))
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


@asynccontextmanager
async def _client(server: _Server) -> AsyncIterator[IssuerClient]:
    async with IssuerClient(
        f"http://127.0.0.1:{server.port}", bundle=TrustBundle(TrustDomain("example.org")), timeout=5
    ) as client:
        yield client


async def test_requests_one_after_another_share_one_kept_alive_connection() -> None:
    """Three bundle calls in a row travel over one connection, and each gets its own answer."""
    async with _serving([_answer(200, _BUNDLE)] * 3) as server, _client(server) as client:
        for _ in range(3):
            assert (await client.bundle(wait=1)).sequence == 7
    assert (server.connections, len(server.requests)) == (1, 3)
    assert server.requests[0] == f"GET {contract.PATH_BUNDLE}?wait=1 HTTP/1.1".encode()


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    """After an answer with ``Connection: close`` the next request opens a new connection and is answered."""
    closing = _answer(200, _BUNDLE, "Connection: close")
    async with _serving([closing, _answer(200, _BUNDLE)]) as server, _client(server) as client:
        await client.bundle()
        await asyncio.sleep(0.05)  # let the server's close arrive
        assert (await client.bundle()).sequence == 7
    assert server.connections == 2


async def test_a_chunked_answer_is_read_whole() -> None:
    """A body sent in chunks is joined before it is parsed."""
    chunked = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (_BUNDLE[:10], _BUNDLE[10:])
    )
    answer = _answer(200, chunked + b"0\r\n\r\n", "Transfer-Encoding: chunked")
    async with _serving([answer]) as server, _client(server) as client:
        assert (await client.bundle()).sequence == 7


async def test_a_server_that_closes_without_answering_is_a_connection_reset() -> None:
    """A connection closed before any answer is ConnectionResetError, which callers treat as the issuer away."""
    async with _serving([None]) as server, _client(server) as client:
        with pytest.raises(ConnectionResetError):
            await client.bundle()


async def test_an_error_status_without_a_problem_is_an_unexpected_answer() -> None:
    """A 502 from something in front of the issuer is an UnexpectedAnswerError (an OSError) carrying the status."""
    page = _answer(502, b"<html>bad gateway</html>", content_type="text/html")
    async with _serving([page]) as server, _client(server) as client:
        with pytest.raises(UnexpectedAnswerError) as raised:
            await client.bundle()
    assert raised.value.status == 502
    assert isinstance(raised.value, OSError)


async def test_a_success_that_is_not_json_is_an_unexpected_answer() -> None:
    """A 200 whose body is not the JSON the contract promises is refused, not parsed."""
    async with _serving([_answer(200, b"{not json")]) as server, _client(server) as client:
        with pytest.raises(UnexpectedAnswerError, match="not JSON"):
            await client.bundle()


async def test_a_problem_is_the_issuers_own_error() -> None:
    """An RFC 9457 answer becomes the issuer error its reason names, with the server's detail."""
    problem = b'{"reason": "agent_not_attested", "detail": "who are you", "status": 401}'
    answer = _answer(401, problem, content_type="application/problem+json")
    async with _serving([answer]) as server, _client(server) as client:
        with pytest.raises(IssuerError, match="who are you") as raised:
            await client.renew()
    assert raised.value.reason == "agent_not_attested"


async def test_a_silent_server_times_out() -> None:
    """A server that accepts and never answers costs the caller the client's timeout, then TimeoutError."""
    gate = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await gate.wait()
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        pool = ConnectionPool(f"http://127.0.0.1:{port}")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await pool.request("GET", "/bundle", context=None)
        await pool.aclose()
    finally:
        gate.set()
        listener.close()
        await listener.wait_closed()


def test_a_url_that_is_not_http_is_refused() -> None:
    """A pool is for http(s) URLs with a host; anything else is a ValueError at construction."""
    with pytest.raises(ValueError, match="not an http"):
        ConnectionPool("unix:///run/issuer.sock")

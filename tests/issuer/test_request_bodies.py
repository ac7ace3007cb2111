"""A request body the issuer cannot hold as Unicode is refused as malformed, however the client encoded it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sigil_testing.issuer import issuer_settings, running_issuer

from sigil.issuer.agentapi import contract
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.tls import client_context


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[IssuerServer]:
    """An issuer without Kubernetes, with room for every request of a test."""
    settings = issuer_settings(tmp_path / "data", rate_per_second=1000.0, rate_burst=1000.0)
    async with running_issuer(settings) as running:
        yield running


async def _post(server: IssuerServer, body: bytes, content_type: str) -> tuple[int, str]:
    context = await asyncio.to_thread(client_context, server.issuer.ca.bundle())
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + contract.PATH_ATTEST_JOIN_TOKEN,
            data=body,
            headers={"Content-Type": content_type},
            ssl=context,
        ) as reply,
    ):
        return reply.status, str((await reply.json(content_type=None))["reason"])


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"token": "\\ud800", "csr": "x"}', "application/json"),
        # The same lone surrogate without a JSON escape, from charsets whose decoders let one through.
        (b'{"token": "+2AA-", "csr": "x"}', "application/json; charset=utf-7"),
        (b'{"token": "\\\\ud800", "csr": "x"}', "application/json; charset=unicode_escape"),
    ],
    ids=["json-escape", "utf-7", "unicode-escape"],
)
async def test_a_lone_surrogate_is_a_malformed_request(
    server: IssuerServer, body: bytes, content_type: str
) -> None:
    """400 ``malformed_request``, not a 500 from a handler that met the surrogate later."""
    assert await _post(server, body, content_type) == (400, "malformed_request")


async def test_a_plain_utf8_body_goes_on_to_the_handler(server: IssuerServer) -> None:
    """A body without escapes is read as it is: here the join token is simply unknown."""
    status, reason = await _post(
        server, b'{"token": "nope", "csr": "x"}', "application/json; charset=UTF-8"
    )
    assert (status, reason) != (400, "malformed_request")

"""schemathesis drives the real issuer from its own OpenAPI document: every operation, with bodies and parameters
generated from the schemas (valid ones and, in negative mode, invalid ones), gets a documented status, a body
that matches its documented schema, and for a refusal a problem document with a stable reason; never a 500.

The agent API is called over mutual TLS with an attested agent's SVID (``requests`` over the TLS context Sigil's
agents use, which verifies the server the SPIFFE way). The admin application is served for this test on a loopback TCP port instead
of its Unix socket, which ``requests`` cannot reach; the handlers, middleware and datastore are the real ones.
Verbs that rotate authorities, ban agents or write upstream directories are left out: they are fuzzed through
the admin socket by ``test_issuer_http.py``, where the state they leave is checked.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from fuzz.budget import FUZZ
from fuzz.issuer_world import Answer, IssuerWorld, issuer_world
from hypothesis import settings
from requests.adapters import HTTPAdapter
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sigil.issuer.admin.contract import ADMIN_PREFIX
from sigil.issuer.edge.assembly import admin_app
from sigil.issuer.edge.openapi import document

_LEFT_OUT = {"authorityStep", "upstreamStep", "agentStep"}
_SCHEMA = schemathesis.openapi.from_dict(document())


@dataclass(frozen=True)
class _Targets:
    agent_url: str
    admin_url: str
    session: requests.Session


@asynccontextmanager
async def _admin_over_tcp(world: IssuerWorld) -> AsyncIterator[str]:
    runner = web.AppRunner(admin_app(world.server.issuer))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class _SpiffeAdapter(HTTPAdapter):
    """``requests`` over the TLS context Sigil's agents use: SPIFFE verification of the server, the agent SVID."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Targets]:
    """The issuer's main listener (as an attested agent) and its admin application on loopback TCP."""
    with (
        issuer_world(tmp_path_factory.mktemp("issuer") / "data") as world,
        requests.Session() as session,
    ):
        admin_url = world.loop.enter(_admin_over_tcp(world))
        session.mount("https://", _SpiffeAdapter(world.agent_tls))
        yield _Targets(f"https://localhost:{world.server.port}", admin_url, session)


@_SCHEMA.exclude(operation_id=sorted(_LEFT_OUT)).parametrize()
@settings(FUZZ, max_examples=min(FUZZ.max_examples, 60))
def test_every_operation_answers_as_documented(
    case: schemathesis.Case[Any], targets: _Targets
) -> None:
    """Generated requests get a documented status and body, and refusals carry a stable reason; no 500."""
    admin = case.path.startswith(ADMIN_PREFIX)
    response = case.call(
        base_url=targets.admin_url if admin else targets.agent_url,
        session=targets.session,
        timeout=30,
    )
    try:
        body = response.json()
    except ValueError:
        body = None
    headers = {name.lower(): values for name, values in response.headers.items()}
    content_type = headers.get("content-type", [""])[0].split(";")[0]
    Answer(response.status_code, content_type, body).assert_refusal_or_success()
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )

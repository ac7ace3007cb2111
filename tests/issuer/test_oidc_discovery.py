"""OIDC discovery: the document's ``issuer`` comes from ``server.oidc_issuer`` only, and is off without it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sigil_testing.issuer import issuer_settings, running_issuer

from sigil.ca.config import ConfigError
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings import load_server_settings
from sigil.issuer.tls import client_context

_ISSUER = "https://oidc.example.org/sigil"
_DISCOVERY = "/.well-known/openid-configuration"


async def _get(
    server: IssuerServer, path: str, *, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    context = await asyncio.to_thread(client_context, server.issuer.ca.bundle())
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + path, ssl=context, headers=headers) as reply,
    ):
        return reply.status, await reply.json(content_type=None)


@pytest.fixture
async def configured(tmp_path: Path) -> AsyncIterator[IssuerServer]:
    """A running issuer whose OIDC issuer is configured."""
    settings = issuer_settings(tmp_path / "data", oidc_issuer=_ISSUER)
    async with running_issuer(settings) as running:
        yield running


@pytest.fixture
async def unconfigured(tmp_path: Path) -> AsyncIterator[IssuerServer]:
    """A running issuer without ``server.oidc_issuer``."""
    async with running_issuer(issuer_settings(tmp_path / "data")) as running:
        yield running


async def test_discovery_names_the_configured_issuer_and_its_keys(
    configured: IssuerServer,
) -> None:
    """The document's issuer and jwks_uri are the configured URL's; /keys holds the CA's JWT keys with use: sig."""
    status, discovery = await _get(configured, _DISCOVERY)
    assert status == 200
    assert discovery["issuer"] == _ISSUER
    assert discovery["jwks_uri"] == _ISSUER + "/keys"
    status, document = await _get(configured, "/keys")
    keys = document["keys"]
    assert isinstance(keys, list)
    assert {k["kid"] for k in keys} == set(configured.issuer.ca.jwt_keys())
    assert {k["use"] for k in keys} == {"sig"}


async def test_a_forged_host_header_does_not_change_the_issuer(configured: IssuerServer) -> None:
    """A client sending Host: attacker.example still reads the configured issuer, not its own host."""
    status, discovery = await _get(
        configured, _DISCOVERY, headers={"Host": "attacker.example", "X-Forwarded-Host": "x"}
    )
    assert status == 200
    assert discovery["issuer"] == _ISSUER
    assert "attacker.example" not in str(discovery)


async def test_discovery_is_off_without_a_configured_issuer(unconfigured: IssuerServer) -> None:
    """Without server.oidc_issuer the document is a 404 problem naming the setting, whatever the Host says."""
    status, body = await _get(unconfigured, _DISCOVERY, headers={"Host": "attacker.example"})
    assert (status, body["reason"]) == (404, "not_found")
    assert "server.oidc_issuer" in str(body["detail"])


@pytest.mark.parametrize(
    "value",
    [
        "http://oidc.example.org",
        "https://oidc.example.org/?x=1",
        "https://u@oidc.example.org",
        "oidc",
    ],
)
def test_an_issuer_that_is_not_a_plain_https_url_is_refused_at_start(
    tmp_path: Path, value: str
) -> None:
    """oidc_issuer must be https with a host and no query, fragment or user: the server does not start."""
    config = tmp_path / "sigil.yaml"
    config.write_text(f"server:\n  oidc_issuer: '{value}'\n")
    with pytest.raises(ConfigError, match="oidc_issuer"):
        load_server_settings(config, data_dir=str(tmp_path))

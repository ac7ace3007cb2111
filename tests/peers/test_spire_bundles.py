"""Sigil's bundle documents, as its federation endpoint serves them, are accepted whole by SPIRE.

SPIRE has two parsers. ``spire-server bundle set -format spiffe`` uses go-spiffe's ``spiffebundle.Parse``, which
refuses a whole bundle when an x509-svid key has other than exactly one ``x5c`` or a jwt-svid key has no ``kid``
(and skips keys of another ``use``). SPIRE's federation client (pkg/server/bundle/client) uses
pkg/common/bundleutil's ``Decode``, which refuses the whole bundle for a key of any other ``use`` as well; a SPIRE
server federating with Sigil would then keep a stale bundle. Here both parsers judge what Sigil serves (the
federation client through an https_web endpoint of the test's own serving the document as is or broken), and the
three rules are pinned on the document itself.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sigil_testing.certificates import WebPki, write_web_pki
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.paths import short_directory
from sigil_testing.peers import PeerTools
from sigil_testing.spire import SpireError, SpireServer

from sigil.ca.authority import AuthorityKind
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings.sections import BundleEndpointSettings

pytestmark = [pytest.mark.spire, pytest.mark.slow]

SIGIL_TD = "spiffe://example.org"


@pytest.fixture(scope="module")
def web_pki(tmp_path_factory: pytest.TempPathFactory) -> WebPki:
    """A private Web PKI: SPIRE trusts its root (``SSL_CERT_FILE``) for https_web endpoints."""
    return write_web_pki(tmp_path_factory.mktemp("webpki"))


@pytest.fixture(scope="module")
def spire(peer_tools: PeerTools, web_pki: WebPki) -> Iterator[SpireServer]:
    """A spire-server of trust domain spire.test, used only through its CLI."""
    roots = {"SSL_CERT_FILE": str(web_pki.ca_file)}
    with (
        short_directory("spb-") as directory,
        SpireServer(directory, tools=peer_tools, environment=roots) as server,
    ):
        yield server


@pytest.fixture
async def sigil(short_tmp: Path) -> AsyncIterator[IssuerServer]:
    """Sigil with its bundle endpoint (``https_spiffe``) and a second X.509 and JWT authority prepared, so that
    the bundle holds every kind of key twice."""
    endpoint = BundleEndpointSettings("127.0.0.1", 0, None, None, "https_spiffe")
    settings = issuer_settings(short_tmp / "server", bundle_endpoint=endpoint)
    async with running_issuer(settings) as server:
        await server.issuer.ca.prepare(AuthorityKind.X509)
        await server.issuer.ca.prepare(AuthorityKind.JWT)
        yield server


async def _served(server: IssuerServer) -> dict[str, Any]:
    """The bundle document at the federation endpoint, fetched as a peer would (TLS checked against the bundle)."""
    context = ssl.create_default_context(cadata=server.issuer.ca.bundle().to_pem().decode())
    context.check_hostname = False  # https_spiffe names the endpoint by SPIFFE ID, not host name
    url = f"https://127.0.0.1:{server.federation_port}/"
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
        assert response.status == 200
        document: dict[str, Any] = json.loads(await response.read())
        return document


def _set(spire: SpireServer, document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document))
    spire.cli("bundle set", "-id", SIGIL_TD, "-format", "spiffe", "-path", str(path))


async def test_spire_stores_every_key_of_the_bundle_sigil_serves(
    sigil: IssuerServer, spire: SpireServer, short_tmp: Path
) -> None:
    """Both X.509 authorities and both JWT keys of Sigil's served bundle come back out of SPIRE's datastore."""
    document = await _served(sigil)
    await asyncio.to_thread(_set, spire, document, short_tmp / "bundle.json")
    stored = await asyncio.to_thread(spire.federated_bundle, "example.org")

    served_x509 = sorted(k["x5c"][0] for k in document["keys"] if k["use"] == "x509-svid")
    served_jwt = sorted(k["kid"] for k in document["keys"] if k["use"] == "jwt-svid")
    assert len(served_x509) == len(served_jwt) == 2
    stored_x509 = sorted(
        base64.b64encode(base64.b64decode(a["asn1"])).decode() for a in stored["x509_authorities"]
    )
    assert stored_x509 == served_x509
    assert sorted(a["key_id"] for a in stored["jwt_authorities"]) == served_jwt
    assert stored["trust_domain"] == "example.org"


async def test_sigil_keys_follow_the_rules_spire_enforces(sigil: IssuerServer) -> None:
    """Every key has a known use; each X.509 key exactly one x5c and no kid; each JWT key a kid."""
    document = await _served(sigil)
    assert document["keys"]
    for key in document["keys"]:
        assert key["use"] in {"x509-svid", "jwt-svid"}, key
        if key["use"] == "x509-svid":
            assert len(key["x5c"]) == 1, key
            assert "kid" not in key, key
        else:
            assert key["kid"], key


BREAKAGES = {
    "two x5c": lambda key: key.update(x5c=[*key["x5c"], *key["x5c"]]),
    "jwt key without kid": lambda key: key.pop("kid"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
async def test_spire_refuses_the_whole_bundle_when_one_key_breaks_a_rule(
    sigil: IssuerServer, spire: SpireServer, short_tmp: Path, breakage: str
) -> None:
    """The same document with one key broken is refused whole by ``bundle set``: the acceptance above is SPIRE
    judging, not SPIRE accepting anything."""
    document = copy.deepcopy(await _served(sigil))
    wanted = "jwt-svid" if breakage == "jwt key without kid" else "x509-svid"
    BREAKAGES[breakage](next(k for k in document["keys"] if k["use"] == wanted))
    with pytest.raises(SpireError, match="failed"):
        await asyncio.to_thread(_set, spire, document, short_tmp / "broken.json")


FEDERATION_BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "unknown use": (lambda key: key.update(use="sig"), 'unrecognized use "sig"'),
    "two x5c": (BREAKAGES["two x5c"], "expected a single certificate in x509-svid entry"),
    "jwt key without kid": (BREAKAGES["jwt key without kid"], "missing key ID in jwt-svid entry"),
}


@asynccontextmanager
async def _endpoint(document: dict[str, Any], pki: WebPki) -> AsyncIterator[str]:
    """An https_web bundle endpoint serving ``document`` as is: the URL."""

    async def bundle(_: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/", bundle)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


def _refresh_from(spire: SpireServer, url: str) -> Any:
    """Federate with example.org at ``url`` (https_web), refresh, return what SPIRE holds; always undone."""
    spire.cli("federation create", "-trustDomain", "example.org", "-bundleEndpointURL", url,
              "-bundleEndpointProfile", "https_web")  # fmt: skip
    try:
        spire.cli("federation refresh", "-id", "example.org")
        return spire.federated_bundle("example.org")
    finally:
        spire.cli("federation delete", "-id", "example.org")


async def test_spires_federation_client_takes_the_document_sigil_serves(
    sigil: IssuerServer, spire: SpireServer, web_pki: WebPki
) -> None:
    """SPIRE's strict parser, fetching the document as Sigil serves it, stores every JWT key of it."""
    document = await _served(sigil)
    async with _endpoint(document, web_pki) as url:
        stored = await asyncio.to_thread(_refresh_from, spire, url)
    served_jwt = sorted(k["kid"] for k in document["keys"] if k["use"] == "jwt-svid")
    assert sorted(a["key_id"] for a in stored["jwt_authorities"]) == served_jwt
    assert len(stored["x509_authorities"]) == 2


@pytest.mark.parametrize("breakage", list(FEDERATION_BREAKAGES))
async def test_spires_federation_client_refuses_the_document_with_one_key_broken(
    sigil: IssuerServer, spire: SpireServer, web_pki: WebPki, breakage: str
) -> None:
    """The same fetch fails for the whole document when one key breaks a rule, an unknown ``use`` included."""
    document = copy.deepcopy(await _served(sigil))
    wanted = "jwt-svid" if breakage == "jwt key without kid" else "x509-svid"
    breaks, message = FEDERATION_BREAKAGES[breakage]
    breaks(next(k for k in document["keys"] if k["use"] == wanted))
    async with _endpoint(document, web_pki) as url:
        with pytest.raises(SpireError, match=re.escape(message)):
            await asyncio.to_thread(_refresh_from, spire, url)

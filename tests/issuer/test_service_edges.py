"""The issuer's edge: problem+json refusals with their status codes, metrics, the admin socket and the CLI through it."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import client_for, running_issuer
from sigil_testing.realissuer import issuer_on
from sigil_testing.realkube import Namespace

from sigil.issuer.agentapi import contract
from sigil.issuer.cli import main
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.tls import client_context

pytestmark = pytest.mark.kube


@pytest.fixture
def registry() -> CollectorRegistry:
    """The registry the server's metrics go to."""
    return CollectorRegistry()


@pytest.fixture
async def server(
    control_plane: ControlPlane,
    kube_namespace: Namespace,
    tmp_path: Path,
    registry: CollectorRegistry,
) -> AsyncIterator[IssuerServer]:
    """A running issuer on the real control plane with a small body limit and a burst of three requests per
    caller."""
    settings = issuer_on(
        control_plane,
        tmp_path / "data",
        agent_namespace=kube_namespace.name,
        client_max_size=64 * 1024,
        rate_per_second=0.001,
        rate_burst=3,
    )
    async with running_issuer(settings, registry=registry) as running:
        yield running


async def _post(server: IssuerServer, path: str, body: bytes) -> tuple[int, str, dict[str, object]]:
    context = await asyncio.to_thread(client_context, server.issuer.ca.bundle())
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + path, data=body, ssl=context) as reply,
    ):
        return reply.status, reply.content_type, await reply.json(content_type=None)


async def test_refusals_are_problem_documents_with_their_status(server: IssuerServer) -> None:
    """401 bad token, 400 malformed CSR, 413 oversized body, 429 over the rate: each a problem+json with a reason."""
    bad_token = json.dumps({"token": "x.y.z", "cluster": "test", "csr": "nope"}).encode()
    status, kind, body = await _post(server, contract.PATH_ATTEST_K8S, bad_token)
    assert (status, kind, body["reason"]) == (
        401,
        contract.PROBLEM_CONTENT_TYPE,
        "token_not_authenticated",
    )
    token = await server.issuer.registry.generate_join_token(
        ttl=timedelta(minutes=5), now=server.issuer.ca.now()
    )
    bad_csr = json.dumps({"token": token.token, "csr": "not a csr"}).encode()
    status, _, body = await _post(server, contract.PATH_ATTEST_JOIN_TOKEN, bad_csr)
    assert (status, body["reason"]) == (400, "malformed_csr")
    status, _, body = await _post(
        server, contract.PATH_ATTEST_JOIN_TOKEN, b"{" + b" " * 70_000 + b"}"
    )
    assert (status, body["reason"]) == (413, "body_too_large")
    status, _, body = await _post(server, contract.PATH_ATTEST_JOIN_TOKEN, b"{}")
    assert (status, body["reason"]) == (429, "rate_limited")
    assert set(body) == {"type", "title", "status", "detail", "reason"}


async def test_metrics_count_issued_svids_and_refusals(
    server: IssuerServer, registry: CollectorRegistry
) -> None:
    """A join-token attestation moves sigil_svids_issued; a spent token moves the refusal counter."""
    token = await server.issuer.registry.generate_join_token(
        ttl=timedelta(minutes=5), now=server.issuer.ca.now()
    )
    async with client_for(server) as client:
        await client.attest_join_token(token.token)
        with pytest.raises(Exception, match="join token"):
            await client.attest_join_token(token.token)
    issued = registry.get_sample_value(
        "sigil_svids_issued_total", {"kind": "x509", "caller": "agent"}
    )
    refused = registry.get_sample_value("sigil_refusals_total", {"reason": "join_token_invalid"})
    assert issued == 1
    assert refused == 1


async def test_admin_socket_is_0600_and_the_cli_goes_through_it(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The admin socket is mode 0600; entry create/list and token generate through the CLI reach the server."""
    socket_path = server.admin_socket
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    base = ["--data-dir", "/nonexistent-sigil", "--admin-socket", str(socket_path)]
    code = await asyncio.to_thread(
        main,
        [
            *base,
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/db",
            "--parent-id",
            "spiffe://example.org/sigil/agent/join/x",
            "--selector",
            "unix:uid:5",
        ],
    )
    assert code == 0
    assert [str(e.spiffe_id) for e in await server.issuer.registry.entries()] == [
        "spiffe://example.org/db"
    ]
    capsys.readouterr()
    assert await asyncio.to_thread(main, [*base, "token", "generate", "--output", "json"]) == 0
    generated = json.loads(capsys.readouterr().out)
    assert generated["agent_id"].startswith("spiffe://example.org/sigil/agent/join/")

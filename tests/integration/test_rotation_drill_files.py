"""The rotation drill for workloads that do not speak the Workload API themselves: Envoy over SDS and watched files.

Same real issuer and node agent as ``test_rotation_drill``, same operator steps (``sigil-server authority prepare``,
``activate``, ``taint``, ``revoke`` for X.509), two more legs counted per step:

- Envoy: requests every 30 ms through a caller-side Envoy to a server-side Envoy to a backend, both Envoys configured
  only by SDS from the agent; the caller opens a new connection per request, so each request is a new handshake
  with whatever certificate and roots Envoy holds at that moment.
- Files: a ``sigil-agent api watch --write DIR`` process keeps ``svid.pem``, ``svid.key`` and ``bundle.pem``; a small
  TLS server reloads its certificate when ``svid.pem`` changes (keeping the last pair that loaded, as a careful
  reloader does) and a client verifies it against ``bundle.pem`` read afresh for every connection.

The figure is failed requests per step on each leg, and it must be zero.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography.exceptions import InvalidSignature
from sigil_testing.drill import Traffic
from sigil_testing.enrolment import enrol_agent
from sigil_testing.envoy_drill import EnvoyLeg, envoy_pair, every
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.waiting import eventually
from sigil_testing.watched_files import FileServer, file_client, pem_certs, watch_files

from sigil.ca.authority import AuthorityKind
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.cli import main
from sigil.issuer.edge.listeners import IssuerServer
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import RotationSettings

pytestmark = pytest.mark.slow

ME = SpiffeId.parse("spiffe://example.org/drill/sidecar")
_ROTATION = RotationSettings(
    backoff_initial=timedelta(milliseconds=50), bundle_wait=timedelta(seconds=1)
)
_DWELL = 30


@pytest.fixture
async def server(short_tmp: Path) -> AsyncIterator[IssuerServer]:
    settings = issuer_settings(short_tmp / "server", refresh_interval=timedelta(seconds=0.2))
    async with running_issuer(settings) as running:
        yield running


async def _operator(server: IssuerServer, *args: str) -> None:
    argv = [
        *("--data-dir", str(server.settings.data_dir)),
        *("--admin-socket", str(server.admin_socket)),
        *args,
    ]
    code = await asyncio.to_thread(main, argv)
    assert code == 0, f"sigil-server {' '.join(args)} failed"


# --- the drill -----------------------------------------------------------------------------------------------------


async def test_envoy_and_watched_files_follow_every_x509_rotation_step(
    server: IssuerServer, short_tmp: Path
) -> None:
    """Zero failed requests per step on both legs; after the taint Envoy's new connections present a certificate
    from the new authority; after revoke the watched files hold only the new chain and bundle."""
    settings = await enrol_agent(
        server, short_tmp, {ME: [f"unix:uid:{os.getuid()}"]}, rotation=_ROTATION
    )
    files = short_tmp / "certs"
    files.mkdir()
    envoy_flow, file_flow = Traffic(), Traffic()
    flows = (envoy_flow, file_flow)

    def step(name: str) -> None:
        for flow in flows:
            flow.step(name)

    async def dwell(n: int = _DWELL) -> None:
        await asyncio.gather(*(flow.pass_requests(n) for flow in flows))

    ca = server.issuer.ca
    kind = AuthorityKind.X509
    file_server = FileServer(files)
    async with (
        NodeAgent(settings),
        envoy_pair(settings.socket_path, short_tmp) as caller_port,
        watch_files(settings.socket_path, files),
        aiohttp.ClientSession() as session,
    ):
        listener = await asyncio.start_server(file_server.handle, "127.0.0.1", 0)
        file_port = listener.sockets[0].getsockname()[1]
        envoy = EnvoyLeg(session, caller_port)
        step("before")
        try:
            async with (
                every(envoy_flow, envoy.request),
                every(file_flow, lambda: file_client(files, file_port)),
            ):
                await dwell()
                old = ca.signer(kind).authority.authority_id
                before = set(ca.bundle().x509_authorities)
                step("x509 prepare")
                await _operator(server, "authority", "prepare", "--kind", kind.value)
                await dwell()
                (new_root,) = set(ca.bundle().x509_authorities) - before
                step("x509 activate")
                await _operator(server, "authority", "activate", "--kind", kind.value)
                await dwell()
                step("x509 taint")
                await _operator(server, "authority", "taint", "--kind", kind.value, "--id", old)
                await dwell()

                async def replaced() -> bool:
                    return (await ca.outstanding(old)).count == 0

                step("x509 re-issue")
                await eventually(replaced, what=f"every SVID of {old} replaced", within=30)
                await dwell()
                presented = envoy.last
                assert presented is not None
                # New connections present a certificate of the new authority (this raises if the old one signed it).
                presented.verify_directly_issued_by(new_root)
                step("x509 revoke")
                await _operator(server, "authority", "revoke", "--kind", kind.value, "--id", old)
                await dwell(_DWELL * 2)
        finally:
            listener.close()
            await listener.wait_closed()

        def only_new() -> bool:
            top = pem_certs(files / "svid.pem")[-1]
            try:
                top.verify_directly_issued_by(new_root)
            except (InvalidSignature, ValueError):
                return False
            return pem_certs(files / "bundle.pem") == [new_root]

        await eventually(only_new, what="the watched files to hold only the new chain and bundle")

    for name, flow in (("envoy", envoy_flow), ("watched files", file_flow)):
        counts = {step: (c.requests, c.failures) for step, c in flow.steps.items()}
        print(f"rotation drill, {name} (requests, failures) per step:", counts)
        failed = {step: dict(c.reasons) for step, c in flow.steps.items() if c.failures}
        assert not failed, (name, failed)
        assert all(c.requests >= _DWELL for c in flow.steps.values()), (name, counts)

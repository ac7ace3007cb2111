"""The rotation drill: traffic between two workloads keeps flowing while the operator rotates each authority.

Real issuer, real node agent, a TLS server workload (the enforcer's SpiffeTls over the Workload API) and a client
workload in its own process (py-spiffe's X509Source, a JWT-SVID in every request, validated by the server through
the agent). A request every 30 ms; the operator runs ``prepare``, ``activate``, ``taint`` and ``revoke`` with
``sigil-server`` as they would, and the same for an upstream root rotation (``upstream prepare``, ``activate``,
``retire``). The figure is failed requests per step, and it must be zero.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sigil_testing.ca import write_upstream_ca
from sigil_testing.drill import CLIENT_GID, Traffic, drill_server, traffic
from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.waiting import eventually

from sigil.ca.authority import AuthorityKind
from sigil.ca.spiffe_id import SpiffeId
from sigil.ca.upstream_verbs import UpstreamVerbs
from sigil.issuer.cli import main
from sigil.issuer.edge.listeners import IssuerServer
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import RotationSettings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.getuid() != 0, reason="the client workload runs with its own gid (needs root)"
    ),
]

SERVER_ID = SpiffeId.parse("spiffe://example.org/drill/server")
CLIENT_ID = SpiffeId.parse("spiffe://example.org/drill/client")
_ENTRIES = {SERVER_ID: ["unix:gid:0"], CLIENT_ID: [f"unix:gid:{CLIENT_GID}"]}
_ROTATION = RotationSettings(
    backoff_initial=timedelta(milliseconds=50), bundle_wait=timedelta(seconds=1)
)
#: Requests that must pass after each step before the next one (at 30 ms apart: about a second of traffic).
_DWELL = 30


@pytest.fixture
async def server(short_tmp: Path) -> AsyncIterator[IssuerServer]:
    settings = issuer_settings(short_tmp / "server", refresh_interval=timedelta(seconds=0.2))
    async with running_issuer(settings) as running:
        yield running


@pytest.fixture
async def upstream_server(short_tmp: Path) -> AsyncIterator[IssuerServer]:
    """A server whose X.509 authority is an intermediate under an operator's upstream CA."""
    old = write_upstream_ca(short_tmp / "upstream-old")
    settings = issuer_settings(
        short_tmp / "server",
        refresh_interval=timedelta(seconds=0.2),
        ca_options={"upstream_dir": old.directory},
    )
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


async def _rotate(server: IssuerServer, flow: Traffic, kind: AuthorityKind) -> None:
    """Each step of one authority's rotation with traffic running, then wait for the re-issue before revoke."""
    ca = server.issuer.ca
    old = ca.signer(kind).authority.authority_id
    flow.step(f"{kind.value} prepare")
    await _operator(server, "authority", "prepare", "--kind", kind.value)
    await flow.pass_requests(_DWELL)
    flow.step(f"{kind.value} activate")
    await _operator(server, "authority", "activate", "--kind", kind.value)
    await flow.pass_requests(_DWELL)
    flow.step(f"{kind.value} taint")
    await _operator(server, "authority", "taint", "--kind", kind.value, "--id", old)
    await flow.pass_requests(_DWELL)

    async def replaced() -> bool:
        return (await ca.outstanding(old)).count == 0

    flow.step(f"{kind.value} re-issue")
    await eventually(replaced, what=f"every SVID of {old} replaced", within=30)
    await flow.pass_requests(_DWELL)
    flow.step(f"{kind.value} revoke")
    await _operator(server, "authority", "revoke", "--kind", kind.value, "--id", old)
    await flow.pass_requests(_DWELL * 2)


async def _rotate_upstream(server: IssuerServer, flow: Traffic, new_dir: Path) -> None:
    """Each step of an upstream root rotation with traffic running; retire once nothing chains to the old root."""
    verbs = UpstreamVerbs(server.issuer.ca)
    flow.step("upstream prepare")
    await _operator(server, "upstream", "prepare", "--dir", str(new_dir))
    await flow.pass_requests(_DWELL)
    flow.step("upstream activate")
    await _operator(server, "upstream", "activate")
    await flow.pass_requests(_DWELL)

    async def replaced() -> bool:
        return all(v.outstanding.count == 0 for v in await verbs.show())

    flow.step("upstream re-issue")
    await eventually(replaced, what="every SVID under the old root replaced", within=30)
    await flow.pass_requests(_DWELL)
    flow.step("upstream retire")
    await _operator(server, "upstream", "retire")
    await flow.pass_requests(_DWELL * 2)


def _report(flow: Traffic) -> None:
    counts = {name: (c.requests, c.failures) for name, c in flow.steps.items()}
    print("rotation drill (requests, failures) per step:", counts)
    failed = {name: dict(c.reasons) for name, c in flow.steps.items() if c.failures}
    assert not failed, failed
    assert all(c.requests >= _DWELL for c in flow.steps.values()), counts


async def test_traffic_flows_through_every_rotation_step(
    server: IssuerServer, short_tmp: Path
) -> None:
    """Zero failed requests in each step of an X.509 and then a JWT authority rotation."""
    settings = await enrol_agent(server, short_tmp, _ENTRIES, rotation=_ROTATION)
    async with (
        NodeAgent(settings),
        drill_server(settings.socket_path, CLIENT_ID) as port,
        traffic(settings.socket_path, port, SERVER_ID) as flow,
    ):
        flow.step("before")
        await flow.pass_requests(_DWELL)
        for kind in (AuthorityKind.X509, AuthorityKind.JWT):
            await _rotate(server, flow, kind)
    _report(flow)


async def test_traffic_flows_through_an_upstream_root_rotation(
    upstream_server: IssuerServer, short_tmp: Path
) -> None:
    """Zero failed requests in each step of moving Sigil's authority to a new upstream root, and at the end
    both workloads hold SVIDs under the new upstream and only the new root is in the bundle."""
    new = write_upstream_ca(short_tmp / "upstream-new")
    settings = await enrol_agent(upstream_server, short_tmp, _ENTRIES, rotation=_ROTATION)
    async with (
        NodeAgent(settings),
        drill_server(settings.socket_path, CLIENT_ID) as port,
        traffic(settings.socket_path, port, SERVER_ID) as flow,
    ):
        flow.step("before")
        await flow.pass_requests(_DWELL)
        await _rotate_upstream(upstream_server, flow, new.directory)
    _report(flow)
    assert upstream_server.issuer.ca.bundle().x509_authorities == (new.root,)

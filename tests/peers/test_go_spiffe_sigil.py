"""go-spiffe, the most used SPIFFE library, against Sigil's node agent and the real issuer behind it.

Our program ``spiffe-peer`` (tools/spiffe-peer) does what a Go workload does with go-spiffe: verifies its X509-SVID
with ``x509svid.Verify`` against the bundle it was given, validates a JWT-SVID with ``jwtsvid.ParseAndValidate``
against the JWT bundles, and watches its X.509 context for rotations. The same program passes against SPIRE's agent
(test_go_spiffe_spire.py), which proves the program and not only our server.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.peers import GoSpiffeError, PeerTools, go_spiffe, go_spiffe_argv

from sigil.ca.authority import AuthorityKind
from sigil.ca.keys import generate_key
from sigil.ca.service import X509Request
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.edge.listeners import IssuerServer
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import RotationSettings

pytestmark = [pytest.mark.spire, pytest.mark.slow]

ME = SpiffeId.parse(f"spiffe://example.org/local/uid-{os.getuid()}")


@dataclass
class _Sigil:
    server: IssuerServer
    agent: NodeAgent


@pytest.fixture
async def sigil(short_tmp: Path) -> AsyncIterator[_Sigil]:
    """The real issuer and a node agent enrolled with a join token; this uid is entitled to ME."""
    async with running_issuer(issuer_settings(short_tmp / "server")) as server:
        rotation = RotationSettings(
            backoff_initial=timedelta(milliseconds=50), bundle_wait=timedelta(seconds=1)
        )
        settings = await enrol_agent(
            server, short_tmp, {ME: [f"unix:uid:{os.getuid()}"]}, rotation=rotation
        )
        async with NodeAgent(settings) as agent:
            yield _Sigil(server, agent)


async def test_go_spiffe_verifies_the_x509_and_jwt_svids_the_sigil_agent_serves(
    peer_tools: PeerTools, sigil: _Sigil
) -> None:
    """x509svid.Verify accepts the SVID against its bundle; jwtsvid.ParseAndValidate accepts the JWT-SVID."""
    report = await asyncio.to_thread(
        go_spiffe, peer_tools, "check", sigil.agent.endpoint, "-audience=db"
    )
    assert report["x509"]["spiffe_id"] == report["x509"]["verified_id"] == str(ME)
    assert report["x509"]["x509_bundles"] == ["example.org"]
    assert report["jwt_id"] == str(ME)
    assert report["jwt_aud"] == ["db"]
    assert report["jwt_bundles"] == ["example.org"]


async def test_go_spiffe_refuses_an_svid_of_a_trust_domain_it_has_no_bundle_for(
    peer_tools: PeerTools, sigil: _Sigil, short_tmp: Path
) -> None:
    """The program can fail: an SVID of another Sigil trust domain is refused with the bundles this agent gives."""
    async with running_issuer(
        issuer_settings(short_tmp / "other", trust_domain="other.test")
    ) as other:
        (svid,) = await other.issuer.ca.mint_x509_svids(
            [
                X509Request(
                    SpiffeId.parse("spiffe://other.test/stranger"),
                    public_key=generate_key().public_key(),
                )
            ]
        )
    chain = short_tmp / "stranger.pem"
    chain.write_bytes(svid.chain_pem())
    with pytest.raises(GoSpiffeError, match=r"no X.509 bundle for trust domain \"other.test\""):
        await asyncio.to_thread(
            go_spiffe, peer_tools, "verify", sigil.agent.endpoint, f"-chain={chain}"
        )


async def test_a_forced_rotation_reaches_a_go_spiffe_watcher(
    peer_tools: PeerTools, sigil: _Sigil
) -> None:
    """Tainting the authority that signed the SVID pushes a new SVID, from the new authority, to the watcher."""
    watcher = await asyncio.create_subprocess_exec(
        *go_spiffe_argv(peer_tools, "watch", sigil.agent.endpoint, "-updates=10", "-timeout=60s"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        first = await _next_update(watcher)
        ca = sigil.server.issuer.ca
        (old,) = [a for a in ca.authorities(AuthorityKind.X509) if a.status.value == "active"]
        new = await ca.prepare(AuthorityKind.X509)
        await ca.activate(AuthorityKind.X509, new.authority_id)
        await ca.taint(AuthorityKind.X509, old.authority_id)
        update = await _next_update(watcher)
        # Bundle changes alone (the new authority published) may come first; wait for the new SVID.
        while update["serial"] == first["serial"]:
            update = await _next_update(watcher)
    finally:
        watcher.kill()
        await watcher.wait()
    assert update["verified_id"] == str(ME)
    assert len(update["authorities"]) == 2
    assert len(first["authorities"]) == 1


async def _next_update(watcher: asyncio.subprocess.Process) -> dict[str, Any]:
    assert watcher.stdout is not None
    line = await asyncio.wait_for(watcher.stdout.readline(), 60)
    if not line:
        assert watcher.stderr is not None
        raise GoSpiffeError((await watcher.stderr.read()).decode())
    document: dict[str, Any] = json.loads(line)
    return document

"""The same go-spiffe program against SPIRE's own agent: what passes against Sigil passes against the reference.

Without this, a program that accepted anything would make test_go_spiffe_sigil.py pass too; SPIRE (SQLite, join
token, the ``unix`` workload attestor, all at its defaults) shows the checks are the ones a Go workload runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sigil_testing.paths import short_directory
from sigil_testing.peers import GoSpiffeError, PeerTools, go_spiffe, go_spiffe_argv
from sigil_testing.spire import SpireAgent, SpireServer, my_uid_selector
from sigil_testing.waiting import eventually_sync

pytestmark = [pytest.mark.spire, pytest.mark.slow]

NODE = "spiffe://spire.test/node"
WORKLOAD = "spiffe://spire.test/workload"


@dataclass
class _Spire:
    server: SpireServer
    agent: SpireAgent


@pytest.fixture(scope="module")
def spire(peer_tools: PeerTools) -> Iterator[_Spire]:
    """spire-server and a join-token spire-agent; this uid is entitled to WORKLOAD before the agent starts."""
    with (
        short_directory("spr-") as directory,
        SpireServer(directory / "server", tools=peer_tools) as server,
    ):
        token = server.join_token(NODE)
        server.create_entry(WORKLOAD, parent_id=NODE, selectors=[my_uid_selector()])
        with SpireAgent(
            directory / "agent", tools=peer_tools, server=server, join_token=token
        ) as agent:
            yield _Spire(server, agent)


def _checked(tools: PeerTools, address: str) -> dict[str, Any]:
    """``check``, retried while the agent has not yet synced the entry (SPIRE answers PermissionDenied then)."""

    def attempt() -> dict[str, Any] | None:
        try:
            return go_spiffe(tools, "check", address, "-audience=db")
        except GoSpiffeError as err:
            if "no identity issued" in str(err):
                return None
            raise

    return eventually_sync(attempt, what="an SVID from spire-agent", within=60, interval=0.5)


def test_go_spiffe_verifies_the_x509_and_jwt_svids_spire_serves(
    peer_tools: PeerTools, spire: _Spire
) -> None:
    """The program's checks pass against spire-agent exactly as against Sigil's agent."""
    report = _checked(peer_tools, spire.agent.address)
    assert report["x509"]["spiffe_id"] == report["x509"]["verified_id"] == WORKLOAD
    assert report["x509"]["x509_bundles"] == ["spire.test"]
    assert report["jwt_id"] == WORKLOAD
    assert report["jwt_aud"] == ["db"]
    assert report["jwt_bundles"] == ["spire.test"]


def test_a_forced_rotation_in_spire_reaches_the_same_watcher(
    peer_tools: PeerTools, spire: _Spire
) -> None:
    """SPIRE's own forced rotation (prepare, activate, taint the old X.509 authority) reaches the watcher too."""
    _checked(peer_tools, spire.agent.address)
    argv = go_spiffe_argv(peer_tools, "watch", spire.agent.address, "-updates=20", "-timeout=90s")
    with subprocess.Popen(  # noqa: S603 - our own program
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as watcher:
        try:
            first = _next_update(watcher)
            server = spire.server
            old = server.cli_json("localauthority x509 show")["active"]["authority_id"]
            prepared = server.cli_json("localauthority x509 prepare")["prepared_authority"]
            server.cli("localauthority x509 activate", "-authorityID", prepared["authority_id"])
            server.cli("localauthority x509 taint", "-authorityID", old)
            update = _next_update(watcher)
            while update["serial"] == first["serial"]:
                update = _next_update(watcher)
        finally:
            watcher.kill()
    assert update["verified_id"] == WORKLOAD
    assert prepared["authority_id"] in update["authorities"]
    assert old in first["authorities"]


def _next_update(watcher: subprocess.Popen[str]) -> dict[str, Any]:
    assert watcher.stdout is not None
    started = time.monotonic()
    line = watcher.stdout.readline()
    if not line:
        assert watcher.stderr is not None
        raise GoSpiffeError(f"after {time.monotonic() - started:.0f} s: {watcher.stderr.read()}")
    document: dict[str, Any] = json.loads(line)
    return document

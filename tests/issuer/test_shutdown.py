"""``sigil-server run`` as a real process: SIGTERM stops new connections, lets the request in flight finish, exits 0.

Also what the process does once it has started: its start-up heap is frozen out of the collector's full passes.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.admin import SocketAdmin
from sigil.issuer.client import IssuerClient

_STARTED = re.compile(rb"server\.started.*url=https://127\.0\.0\.1:(\d+)")


@dataclass
class Running:
    process: asyncio.subprocess.Process
    url: str
    admin_socket: Path


@pytest.fixture
async def running(tmp_path: Path, short_tmp: Path) -> AsyncIterator[Running]:
    """``sigil-server --config FILE run`` on a free port, until its log says it started."""
    socket_dir = short_tmp
    config = tmp_path / "sigil.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "data"),
                "trust_domain": "example.org",
                "server": {"listen": "127.0.0.1:0", "admin_socket": str(socket_dir / "a.sock")},
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sigil.issuer.cli",
        "--config",
        str(config),
        "run",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        seen: list[bytes] = []
        async with asyncio.timeout(30):
            while True:
                line = await process.stdout.readline()
                if not line:
                    # End of output: the server exited without listening. (readline at EOF returns at once, so
                    # looping on it would spin without ever letting the timeout fire.)
                    output = b"".join(seen).decode(errors="replace")
                    pytest.fail(f"sigil-server exited before it listened:\n{output}")
                seen.append(line)
                if (match := _STARTED.search(line)) is not None:
                    break
        yield Running(process, f"https://127.0.0.1:{int(match[1])}", socket_dir / "a.sock")
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0(
    running: Running,
) -> None:
    """A long poll in flight at SIGTERM is answered 200; a new connection is refused; the exit status is 0."""
    async with SocketAdmin(running.admin_socket) as admin:
        token = await admin.generate_token(600)
        bundle_json = await admin.bundle("spiffe")
    bundle = TrustBundle.parse_jwks(TrustDomain("example.org"), bundle_json)
    async with IssuerClient(running.url, bundle=bundle) as agent:
        await agent.attest_join_token(token["token"])
        current = await agent.bundle()
        in_flight = asyncio.create_task(agent.bundle(current.sequence, wait=60))
        await asyncio.sleep(0.3)  # let the long poll reach the server
        running.process.send_signal(signal.SIGTERM)
        answered = await asyncio.wait_for(in_flight, timeout=10)
        assert answered.sequence == current.sequence
    async with IssuerClient(running.url, bundle=bundle) as late:
        with pytest.raises(ConnectionRefusedError):  # refused, not a failed handshake
            await late.attest_join_token("any")
    assert await asyncio.wait_for(running.process.wait(), timeout=15) == 0


async def test_the_started_server_freezes_its_start_up_heap(running: Running) -> None:
    """Once listening, the server logs ``heap.frozen`` with the number of objects it took out of full passes."""
    assert running.process.stdout is not None
    async with asyncio.timeout(30):
        while b"heap.frozen" not in (line := await running.process.stdout.readline()):
            assert line, "sigil-server exited without freezing its heap"
    objects = re.search(rb"objects=(\d+)", line)
    assert objects is not None
    assert (
        int(objects[1]) > 10_000
    )  # modules, the CA, the datastore engine: far more than a bare interpreter's

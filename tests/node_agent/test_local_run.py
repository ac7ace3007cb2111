"""``make run``'s main job (``python dev/local_run.py``) as a user runs it: server and agent come up,
an SVID is fetched through the agent, the endpoint line is printed, and Ctrl-C stops both cleanly; the join token
never appears on a command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sigil_testing.network import free_port
from sigil_testing.pki import Domain

from sigil.ca.keys import write_secret_file

# The orchestrator is a repository script, not part of the wheel (see its docstring).
_LOCAL_RUN = Path(__file__).resolve().parents[2] / "dev" / "local_run.py"


def _every_command_line() -> dict[int, list[str]]:
    """Each process's argv as ``ps`` shows it to every user (``/proc/PID/cmdline``)."""
    found: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:  # gone meanwhile
                continue
            found[int(entry.name)] = raw.decode(errors="replace").split("\0")
    return found


async def _start(data_dir: Path, port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "SIGIL_DATA_DIR": str(data_dir), "SIGIL_LISTEN": f"127.0.0.1:{port}"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(_LOCAL_RUN),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _until_serving(process: asyncio.subprocess.Process) -> list[str]:
    """The job's lines up to its SPIFFE_ENDPOINT_SOCKET line, once it fetched the uid's own SVID."""
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(120):
        while not any(line.startswith("SPIFFE_ENDPOINT_SOCKET=") for line in seen):
            line = (await process.stdout.readline()).decode()
            if not line:
                pytest.fail("make run's job exited early:\n" + "".join(seen))
            seen.append(line)
    output = "".join(seen)
    fetched = re.search(r"fetched an X509-SVID for (\S+) \(expected (\S+)\)", output)
    assert fetched is not None, output
    assert fetched[1] == fetched[2] == f"spiffe://example.org/local/uid-{os.getuid()}"
    return seen


async def _stop(process: asyncio.subprocess.Process) -> str:
    """SIGINT, as Ctrl-C sends; the rest of the output once both exited with status 0."""
    assert process.stdout is not None
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(60):
        rest = await process.stdout.read()
        assert await process.wait() == 0
    return rest.decode()


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_make_run_brings_up_server_and_agent_and_stops_on_ctrl_c(short_tmp: Path) -> None:
    """The printed SPIFFE_ENDPOINT_SOCKET serves the current uid's SVID, the join token is in no process's argv,
    and SIGINT ends both with status 0."""
    data_dir = short_tmp
    port = free_port()
    process = await _start(data_dir, port)
    try:
        seen = await _until_serving(process)
        endpoint = next(line for line in seen if line.startswith("SPIFFE_ENDPOINT_SOCKET="))
        # The join token went to the agent in a 0600 file: no process's argv (what ps shows) holds it.
        token_file = data_dir / "join-token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        command_lines = await asyncio.to_thread(_every_command_line)
        assert token
        assert not [argv for argv in command_lines.values() if any(token in a for a in argv)]
        (agent_argv,) = [
            argv
            for argv in command_lines.values()
            if "sigil.node_agent.cli" in argv and str(data_dir / "bootstrap.pem") in argv
        ]
        assert "--join-token" not in agent_argv
        assert agent_argv[agent_argv.index("--join-token-file") + 1] == str(token_file)
        socket_path = endpoint.strip().removeprefix("SPIFFE_ENDPOINT_SOCKET=unix://")
        assert await asyncio.to_thread(Path(socket_path).is_socket)
        # The server took the address it was given (not its default), so a user can move it off a busy port.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        assert "stopping" in await _stop(process)
        assert not await asyncio.to_thread(Path(socket_path).exists)
        assert not await asyncio.to_thread(token_file.exists)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_make_run_enrols_again_when_the_stored_agent_svid_has_expired(
    short_tmp: Path,
) -> None:
    """A data directory from a run long ago holds an agent SVID that has expired: the job hands the agent a new
    join token (the agent attests with it) instead of failing for want of one."""
    stale = Domain("example.org", now=datetime.now(UTC) - timedelta(hours=3))
    issued = stale.mint("sigil", "agent", "join", "old", ttl=timedelta(hours=1))
    agent_dir = short_tmp / "agent"
    agent_dir.mkdir(mode=0o700)
    # As the agent stores them (0600, or the key is refused as readable by others).
    write_secret_file(agent_dir / "agent-svid.pem", issued.chain_pem())
    write_secret_file(agent_dir / "agent-svid.key", issued.key_pem())
    process = await _start(short_tmp, free_port())
    try:
        seen = await _until_serving(process)
        assert any(
            "--join-token-file" in argv
            for argv in await asyncio.to_thread(
                lambda: [a for a in _every_command_line().values() if "sigil.node_agent.cli" in a]
            )
        ), "".join(seen)
        await _stop(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

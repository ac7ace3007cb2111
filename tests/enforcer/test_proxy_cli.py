"""``sigil-enforcer proxy`` as an operator runs it: a process that forwards, counts, and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import aiohttp
import pytest
from enforcer.policy_docs import ap, dump, rule, spiffe
from enforcer.tlskit import static_source
from sigil_testing.network import echo_server, free_port
from sigil_testing.pki import Domain, write_svid_files

from sigil.enforcer.cli import main
from sigil.enforcer.tls import SpiffeTls

SIGIL_ENFORCER = str(Path(sys.executable).parent / "sigil-enforcer")


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    """A line-echo server standing for the application behind the proxy; its port."""
    async with echo_server() as port:
        yield port


async def _started(process: asyncio.subprocess.Process, lines: list[str]) -> None:
    """Read the proxy's JSON log lines until it says it listens."""
    assert process.stderr is not None
    while line := (await asyncio.wait_for(process.stderr.readline(), 30)).decode():
        lines.append(line)
        if '"proxy listening"' in line:
            return
    raise AssertionError("the proxy exited before listening:\n" + "".join(lines))


async def _start_inbound(
    default: str, home: Domain, files: Path, echo: int, policies: Path
) -> tuple[asyncio.subprocess.Process, int, int]:
    """Start ``proxy inbound`` for namespace ``shop`` as ``api``, forwarding to ``echo``; the process and its ports."""
    write_svid_files(files / "proxy", home.mint("api"), home)
    listen, metrics_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        SIGIL_ENFORCER,
        "proxy",
        "inbound",
        "--svid-dir",
        str(files / "proxy"),
        "--listen",
        f"127.0.0.1:{listen}",
        "--forward",
        str(echo),
        "--policies",
        str(policies),
        "--namespace",
        "shop",
        "--default",
        default,
        "--metrics",
        f"127.0.0.1:{metrics_port}",
        stderr=asyncio.subprocess.PIPE,
    )
    return process, listen, metrics_port


async def test_the_inbound_command_forwards_counts_and_drains(
    home: Domain,
    short_tmp: Path,
    echo: int,
    write_policies: Callable[[Mapping[str, str]], Path],
) -> None:
    """The command forwards an allowed peer, shows its revision and decisions in /metrics, and exits 0 on SIGTERM."""
    policies = write_policies(
        {
            "p.yaml": dump(
                ap("web", namespace="shop", rules=[rule([spiffe("spiffe://example.org/web")])])
            )
        }
    )
    process, listen, metrics_port = await _start_inbound("deny", home, short_tmp, echo, policies)
    lines: list[str] = []
    try:
        await _started(process, lines)
        client = SpiffeTls(static_source(short_tmp / "c", home.mint("web"), home)).client_context()
        reader, writer = await asyncio.open_connection("127.0.0.1", listen, ssl=client)
        writer.write(b"through\n")
        answer = await reader.readline()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response,
        ):
            exposition = await response.text()
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        rest = await asyncio.wait_for(process.stderr.read(), 30)
        code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    logs = [
        json.loads(line) for line in [*lines, *rest.decode().splitlines()] if line.startswith("{")
    ]
    assert answer == b"through\n"
    assert "sigil_enforcer_policy_revision 1.0" in exposition
    assert 'sigil_enforcer_decisions_total{decision="allowed",tier="namespace"} 1.0' in exposition
    assert code == 0
    events = [entry["event"] for entry in logs]
    assert "decision" in events
    assert events[-1] == "proxy closed"


async def _one_connection_through(
    default: str, home: Domain, files: Path, echo: int, policies: Path
) -> tuple[bytes, str]:
    """Run ``proxy inbound --default DEFAULT``, send one line as a valid SVID; the answer and /metrics."""
    process, listen, metrics_port = await _start_inbound(default, home, files, echo, policies)
    try:
        await _started(process, [])
        client = SpiffeTls(static_source(files / "c", home.mint("web"), home)).client_context()
        reader, writer = await asyncio.open_connection("127.0.0.1", listen, ssl=client)
        try:
            writer.write(b"through\n")
            answer = await reader.readline()
        except (ConnectionError, ssl.SSLError):
            answer = b""
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response,
        ):
            exposition = await response.text()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return answer, exposition


@pytest.mark.parametrize(("default", "allowed"), [("deny", False), ("allow", True)])
async def test_the_default_decides_a_connection_no_policy_decides(
    default: str,
    allowed: bool,
    home: Domain,
    short_tmp: Path,
    echo: int,
    write_policies: Callable[[Mapping[str, str]], Path],
) -> None:
    """A valid peer that no policy decides is closed before the application under --default deny, and
    forwarded under --default allow; both are counted as decisions of the default tier."""
    elsewhere = ap("other-pods", namespace="shop", match={"app": "db"}, rules=[])
    policies = write_policies({"p.yaml": dump(elsewhere)})
    answer, exposition = await _one_connection_through(default, home, short_tmp, echo, policies)
    decision = "allowed" if allowed else "denied"
    assert answer == (b"through\n" if allowed else b"")
    assert (
        f'sigil_enforcer_decisions_total{{decision="{decision}",tier="default"}} 1.0' in exposition
    )


def test_inbound_without_a_forward_port_is_bad_input(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Leaving out --forward is refused with exit code 2 and the flag named."""
    code = main(
        [
            "proxy",
            "inbound",
            "--listen",
            "127.0.0.1:1",
            "--svid-dir",
            str(short_tmp),
            "--policies",
            "x",
        ]
    )
    assert code == 2
    assert "--forward" in capsys.readouterr().err


async def test_a_metrics_port_in_use_is_bad_input(home: Domain, short_tmp: Path) -> None:
    """A --metrics port another process holds ends the proxy with exit code 2 and the flag named."""
    write_svid_files(short_tmp / "proxy", home.mint("api"), home)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = await asyncio.create_subprocess_exec(
            SIGIL_ENFORCER,
            "proxy",
            "outbound",
            "--svid-dir",
            str(short_tmp / "proxy"),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--upstream",
            "127.0.0.1:1",
            "--metrics",
            f"127.0.0.1:{taken.getsockname()[1]}",
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "sigil-enforcer: --metrics 127.0.0.1:" in stderr.decode()

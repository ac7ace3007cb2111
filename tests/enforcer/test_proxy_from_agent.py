"""``sigil-enforcer proxy inbound --policies-from-agent``: the process decides on what the issuer holds."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from enforcer.policy_docs import ap, dump, rule, spiffe
from enforcer.policy_world import PodAttestor, policy_world
from enforcer.tlskit import static_source
from sigil_testing.network import echo_server, free_port
from sigil_testing.pki import Domain, write_svid_files

from sigil.enforcer.tls import SpiffeTls

SIGIL_ENFORCER = str(Path(sys.executable).parent / "sigil-enforcer")
ALLOW_WEB = dump(
    ap("db-from-web", match={"app": "db"}, rules=[rule([spiffe("spiffe://example.org/web")])])
)


async def _through(listen: int, client: SpiffeTls) -> bytes:
    """What comes back through the proxy for one line (b"" when the proxy closed the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", listen, ssl=client.client_context())
    writer.write(b"through\n")
    try:
        return await reader.readline()
    except ConnectionError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _started(process: asyncio.subprocess.Process) -> None:
    assert process.stderr is not None
    lines = []
    while line := (await asyncio.wait_for(process.stderr.readline(), 30)).decode():
        lines.append(line)
        if '"proxy listening"' in line:
            return
    raise AssertionError("the proxy exited before listening:\n" + "".join(lines))


async def test_the_proxy_decides_on_the_agents_policies_and_reports_the_issuers_revision(
    short_tmp: Path,
) -> None:
    """A proxy fed by the agent forwards the allowed peer, refuses another, and shows the issuer's revision."""
    home = Domain("example.org", now=datetime.now(UTC))
    files = short_tmp
    async with echo_server() as echo:
        write_svid_files(files / "proxy", home.mint("db"), home)
        async with (
            policy_world({"shop.yaml": ALLOW_WEB}) as world,
            world.agent(PodAttestor("shop", {"app": "db"})),
        ):
            listen, metrics_port = free_port(), free_port()
            process = await asyncio.create_subprocess_exec(
                SIGIL_ENFORCER,
                *("proxy", "inbound", "--svid-dir", str(files / "proxy")),
                *("--listen", f"127.0.0.1:{listen}"),
                *("--forward", str(echo)),
                *("--policies-from-agent", world.endpoint),
                *("--namespace", "shop", "--labels", "app=db", "--default", "allow"),
                *("--metrics", f"127.0.0.1:{metrics_port}"),
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                await _started(process)
                web = await _through(
                    listen, SpiffeTls(static_source(files / "w", home.mint("web"), home))
                )
                api = await _through(
                    listen, SpiffeTls(static_source(files / "a", home.mint("api"), home))
                )
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response,
                ):
                    exposition = await response.text()
                process.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(process.wait(), 30)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            revision = world.server.issuer.policies.revision
    assert (web, api) == (b"through\n", b"")
    assert f"sigil_enforcer_policy_revision {float(revision)}" in exposition
    assert code == 0

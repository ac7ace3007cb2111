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


async def test_the_proxys_policy_page_shows_where_each_rule_came_from(short_tmp: Path) -> None:
    """``/policy`` on the metrics listener shows the issuer's revision, the attested scope, and the effective
    table of the guarded pod, each policy named by its file and document or as applied through the admin API."""
    home = Domain("example.org", now=datetime.now(UTC))
    shop = dump(
        ap("db-from-web", match={"app": "db"}, rules=[rule([spiffe("spiffe://example.org/web")])]),
        ap(
            "not-for-others",
            match={"app": "other"},
            rules=[rule([spiffe("spiffe://example.org/x")])],
        ),
        ap("no-batch", action="DENY", rules=[rule([spiffe("spiffe://example.org/batch")])]),
    )
    admin = dump(ap("api-too", rules=[rule([spiffe("spiffe://example.org/api")], ports=[5432])]))
    write_svid_files(short_tmp / "proxy", home.mint("db"), home)
    async with (
        echo_server() as echo,
        policy_world({"shop.yaml": shop}) as world,
        world.agent(PodAttestor("shop", {"app": "db"})),
    ):
        await world.server.issuer.policies.apply_admin(admin, file="api-too.yaml")
        listen, metrics_port = free_port(), free_port()
        process = await asyncio.create_subprocess_exec(
            SIGIL_ENFORCER,
            *("proxy", "inbound", "--svid-dir", str(short_tmp / "proxy")),
            *("--listen", f"127.0.0.1:{listen}", "--forward", str(echo)),
            *("--policies-from-agent", world.endpoint),
            *("--namespace", "shop", "--labels", "app=db", "--default", "allow"),
            *("--metrics", f"127.0.0.1:{metrics_port}"),
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await _started(process)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{metrics_port}/policy") as response:
                    page = await response.json()
                async with session.get(f"http://127.0.0.1:{metrics_port}/policy?port=0") as bad:
                    refusal = (bad.status, await bad.text())
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        revision = world.server.issuer.policies.revision
        shop_file = str(world.policies / "shop.yaml")
    assert page["revision"] == revision
    assert page["scope"]["source"] == "agent"
    assert (page["scope"]["attested_namespace"], page["scope"]["attested_labels"]) == (
        "shop",
        {"app": "db"},
    )
    view = page["effective"]
    sources = {p["name"]: p["source"] for p in view["policies"]}
    # The agent sends only what can apply to this pod: the policy for app=other never reaches it.
    assert sorted(sources) == ["api-too", "db-from-web", "no-batch"]
    assert {k: sources["db-from-web"][k] for k in ("kind", "name", "document")} == {
        "kind": "file",
        "name": shop_file,
        "document": 0,
    }
    assert sources["no-batch"]["document"] == 2
    assert (sources["api-too"]["kind"], sources["api-too"]["name"]) == ("admin", "admin")
    assert all(len(source["revision"]) == 12 for source in sources.values())
    verdicts = {
        (row["peer"]["name"], v["port"]): (v["decision"], v["policy"])
        for row in view["access"]
        for v in row["verdicts"]
    }
    assert verdicts["spiffe://example.org/web", "other"] == ("allowed", "shop/db-from-web")
    assert verdicts["spiffe://example.org/api", 5432] == ("allowed", "shop/api-too")
    assert verdicts["spiffe://example.org/api", "other"] == ("denied", None)
    assert verdicts["spiffe://example.org/batch", "other"] == ("denied", "shop/no-batch")
    assert refusal[0] == 400
    assert "not a port" in refusal[1]

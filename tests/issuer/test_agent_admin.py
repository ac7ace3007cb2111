"""Operators' controls over attested agents (``sigil-server agent ...``, ``healthcheck``), run as an operator would."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sigil_testing.issuer import attested_agent, client_for, issuer_settings, running_issuer
from sigil_testing.kube import FakeClock, KubeApiServer

from sigil.ca.keys import generate_key
from sigil.issuer.cli import main
from sigil.issuer.client import IssuerClient, X509SvidRequest, make_csr
from sigil.issuer.errors import AgentBannedError, AgentNotAttestedError
from sigil.issuer.server import IssuerServer

NODE_A_AGENT = "spiffe://example.org/sigil/agent/k8s/test/node-a"


@pytest.fixture
async def server(
    kube: KubeApiServer, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[IssuerServer]:
    """A running issuer for cluster ``test``, wired to the kube-apiserver stand-in."""
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    settings = issuer_settings(tmp_path / "data", kubeconfig=kubeconfig)
    async with running_issuer(settings, kube_clock=clock) as running:
        yield running


async def _sigil_server(
    server: IssuerServer, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``sigil-server`` with the running server's admin socket, in a thread (the CLI runs its own loop)."""
    flags = [
        "--data-dir",
        str(server.settings.data_dir),
        "--admin-socket",
        str(server.admin_socket),
    ]
    code = await asyncio.to_thread(main, [*flags, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def _attest(kube: KubeApiServer, server: IssuerServer, client: IssuerClient) -> None:
    pod = kube.pod("sigil-system", "agent-a")
    await client.attest_k8s(kube.mint_token(pod), "test")


@pytest.fixture
async def agent(kube: KubeApiServer, server: IssuerServer) -> AsyncIterator[IssuerClient]:
    """The node agent on node-a, attested with its projected token."""
    kube.add_pod("sigil-system", "agent-a", node_name="node-a", service_account="sigil-agent")
    async with client_for(server) as client:
        await _attest(kube, server, client)
        yield client


async def test_agent_list_and_show_name_the_attested_agent(
    server: IssuerServer, agent: IssuerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """``agent list --output json`` and ``agent show --id`` report the agent, its method and its SVID serial."""
    assert agent.agent_svid is not None
    code, out, _ = await _sigil_server(server, capsys, "agent", "list", "--output", "json")
    assert code == 0
    (listed,) = json.loads(out)
    assert (listed["agent_id"], listed["method"], listed["banned"]) == (NODE_A_AGENT, "k8s", False)
    code, out, _ = await _sigil_server(server, capsys, "agent", "show", "--id", NODE_A_AGENT)
    assert code == 0
    assert f"{agent.agent_svid.svid.chain[0].serial_number:032x}" in out
    code, out, _ = await _sigil_server(server, capsys, "agent", "list")
    assert NODE_A_AGENT in out.splitlines()[1]


async def test_an_evicted_agent_is_refused_until_it_attests_again(
    kube: KubeApiServer,
    server: IssuerServer,
    agent: IssuerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After ``agent evict`` the agent's SVID gets 401 agent_not_attested; a fresh attestation works again."""
    code, out, _ = await _sigil_server(server, capsys, "agent", "evict", "--id", NODE_A_AGENT)
    assert code == 0, out
    with pytest.raises(AgentNotAttestedError) as refused:
        await agent.bundle()
    with pytest.raises(AgentNotAttestedError):
        await agent.renew()
    with pytest.raises(AgentNotAttestedError):  # so its workloads' SVIDs are not renewed either
        await agent.batch_x509_svids(
            [X509SvidRequest(make_csr(generate_key()), selectors=("a:b",))]
        )
    assert refused.value.problem["status"] == 401  # type: ignore[attr-defined]
    await _attest(kube, server, agent)
    await agent.bundle()


async def test_a_banned_agent_cannot_call_or_attest_until_unbanned(
    kube: KubeApiServer,
    server: IssuerServer,
    agent: IssuerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After ``agent ban`` calls and fresh attestations get 403 agent_banned; after ``agent unban`` it attests."""
    assert (await _sigil_server(server, capsys, "agent", "ban", "--id", NODE_A_AGENT))[0] == 0
    with pytest.raises(AgentBannedError) as refused:
        await agent.renew()
    assert refused.value.problem["status"] == 403  # type: ignore[attr-defined]
    async with client_for(server) as fresh:
        with pytest.raises(AgentBannedError):
            await _attest(kube, server, fresh)
    _, out, _ = await _sigil_server(server, capsys, "agent", "show", "--id", NODE_A_AGENT)
    assert "banned:       True" in out
    assert (await _sigil_server(server, capsys, "agent", "unban", "--id", NODE_A_AGENT))[0] == 0
    with pytest.raises(AgentNotAttestedError):
        await agent.bundle()  # unbanning does not bring the old SVID back
    await _attest(kube, server, agent)
    await agent.bundle()


async def test_agent_verbs_on_an_unknown_agent_fail_with_a_reason(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Evicting or banning an agent ID nobody attested exits 1 and says it does not exist."""
    for verb in ("evict", "ban", "show"):
        code, _, err = await _sigil_server(server, capsys, "agent", verb, "--id", NODE_A_AGENT)
        assert code == 1
        assert "does not exist" in err


async def test_healthcheck_follows_the_servers_readiness(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``healthcheck`` exits 0 while the server is ready, 1 naming why while it drains, 1 with no server."""
    assert server.issuer.kube is not None
    async with asyncio.timeout(5):
        await server.issuer.kube.pods.wait_for(lambda c: c.synced)
    code, out, _ = await _sigil_server(server, capsys, "healthcheck")
    assert code == 0
    assert "healthy: the server is ready" in out.splitlines()
    server.issuer.draining = True
    code, _, err = await _sigil_server(server, capsys, "healthcheck")
    assert code == 1
    assert "draining" in err
    await server.stop()
    code, _, err = await _sigil_server(server, capsys, "healthcheck")
    assert code == 1
    assert "no sigil-server listens" in err


@pytest.mark.postgres
async def test_eviction_and_ban_on_one_replica_hold_on_the_other(
    tmp_path: Path, postgres_url: str
) -> None:
    """An agent evicted through replica A is refused by B at once; banned through B, A refuses it too."""
    kek = tmp_path / "kek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    ca_options = {"key_store": "database", "key_encryption_key_file": kek}
    settings_a = issuer_settings(tmp_path / "a", database_url=postgres_url, ca_options=ca_options)
    settings_b = issuer_settings(tmp_path / "b", database_url=postgres_url, ca_options=ca_options)
    async with running_issuer(settings_a) as a, running_issuer(settings_b) as b:
        async with attested_agent(a) as on_a:
            assert on_a.agent_svid is not None
            agent_id = str(on_a.agent_svid.svid.spiffe_id)
            on_b = IssuerClient(b.url, bundle=b.issuer.ca.bundle(), agent_svid=on_a.agent_svid)
            async with on_b:
                await on_b.bundle()
                code = await asyncio.to_thread(
                    main,
                    ["--admin-socket", str(a.admin_socket), "agent", "evict", "--id", agent_id],
                )
                assert code == 0
                with pytest.raises(AgentNotAttestedError):
                    await on_b.bundle()
        async with attested_agent(a) as second:
            assert second.agent_svid is not None
            agent_id = str(second.agent_svid.svid.spiffe_id)
            code = await asyncio.to_thread(
                main, ["--admin-socket", str(b.admin_socket), "agent", "ban", "--id", agent_id]
            )
            assert code == 0
            with pytest.raises(AgentBannedError):
                await second.bundle()

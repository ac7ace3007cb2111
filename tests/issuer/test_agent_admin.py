"""Operators' controls over attested agents (``sigil-server agent ...``, ``healthcheck``), run as an operator would."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import attested_agent, client_for, issuer_settings, running_issuer
from sigil_testing.realkube import Namespace, add_node

from sigil.ca.keys import generate_key
from sigil.issuer.cli import main
from sigil.issuer.client import IssuerClient, X509SvidRequest, make_csr
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import AgentBannedError, AgentNotAttestedError


@pytest.fixture
def node(control_plane: ControlPlane) -> str:
    """The agent's Node object."""
    return add_node(control_plane)


@pytest.fixture
def agent_id(node: str) -> str:
    """The agent's SPIFFE ID, as an operator reads it in ``agent list``."""
    return f"spiffe://example.org/sigil/agent/k8s/test/{node}"


@pytest.fixture
def server(kube_issuer: IssuerServer) -> IssuerServer:
    """A running issuer for cluster ``test`` on the real control plane."""
    return kube_issuer


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


async def _attest(namespace: Namespace, client: IssuerClient) -> None:
    """Attest with a fresh projected token of the agent's pod, as the kubelet rotates it."""
    await client.attest_k8s(namespace.token(namespace.get_pod("agent-a"), "sigil-server"), "test")


@pytest.fixture
async def agent(
    kube_namespace: Namespace, node: str, server: IssuerServer
) -> AsyncIterator[IssuerClient]:
    """The node agent on its node, attested with its projected token."""
    kube_namespace.pod("agent-a", node=node, service_account="sigil-agent")
    async with client_for(server) as client:
        await _attest(kube_namespace, client)
        yield client


@pytest.mark.kube
async def test_agent_list_and_show_name_the_attested_agent(
    agent_id: str, server: IssuerServer, agent: IssuerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """``agent list --output json`` and ``agent show --id`` report the agent, its method and its SVID serial."""
    assert agent.agent_svid is not None
    code, out, _ = await _sigil_server(server, capsys, "agent", "list", "--output", "json")
    assert code == 0
    (listed,) = json.loads(out)
    assert (listed["agent_id"], listed["method"], listed["banned"]) == (agent_id, "k8s", False)
    code, out, _ = await _sigil_server(server, capsys, "agent", "show", "--id", agent_id)
    assert code == 0
    assert f"{agent.agent_svid.svid.chain[0].serial_number:032x}" in out
    code, out, _ = await _sigil_server(server, capsys, "agent", "list")
    assert agent_id in out.splitlines()[1]


@pytest.mark.kube
async def test_an_evicted_agent_is_refused_until_it_attests_again(
    kube_namespace: Namespace,
    agent_id: str,
    server: IssuerServer,
    agent: IssuerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After ``agent evict`` the agent's SVID gets 401 agent_not_attested; a fresh attestation works again."""
    code, out, _ = await _sigil_server(server, capsys, "agent", "evict", "--id", agent_id)
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
    await _attest(kube_namespace, agent)
    await agent.bundle()


@pytest.mark.kube
async def test_a_banned_agent_cannot_call_or_attest_until_unbanned(
    kube_namespace: Namespace,
    agent_id: str,
    server: IssuerServer,
    agent: IssuerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After ``agent ban`` calls and fresh attestations get 403 agent_banned; after ``agent unban`` it attests."""
    assert (await _sigil_server(server, capsys, "agent", "ban", "--id", agent_id))[0] == 0
    with pytest.raises(AgentBannedError) as refused:
        await agent.renew()
    assert refused.value.problem["status"] == 403  # type: ignore[attr-defined]
    async with client_for(server) as fresh:
        with pytest.raises(AgentBannedError):
            await _attest(kube_namespace, fresh)
    _, out, _ = await _sigil_server(server, capsys, "agent", "show", "--id", agent_id)
    assert "banned:       True" in out
    assert (await _sigil_server(server, capsys, "agent", "unban", "--id", agent_id))[0] == 0
    with pytest.raises(AgentNotAttestedError):
        await agent.bundle()  # unbanning does not bring the old SVID back
    await _attest(kube_namespace, agent)
    await agent.bundle()


@pytest.mark.kube
async def test_agent_verbs_on_an_unknown_agent_fail_with_a_reason(
    agent_id: str, server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Evicting or banning an agent ID nobody attested exits 1 and says it does not exist."""
    for verb in ("evict", "ban", "show"):
        code, _, err = await _sigil_server(server, capsys, "agent", verb, "--id", agent_id)
        assert code == 1
        assert "does not exist" in err


@pytest.mark.kube
async def test_healthcheck_follows_the_servers_readiness(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``healthcheck`` exits 0 while the server is ready, 1 naming why while it drains, 1 with no server."""
    assert server.issuer.kube is not None
    async with asyncio.timeout(10):
        await server.issuer.kube.pods.wait_for(lambda c: c.synced)
    code, out, _ = await _sigil_server(server, capsys, "healthcheck")
    assert code == 0
    assert "healthy: the server is ready" in out.splitlines()
    server.issuer.draining = True
    code, _, err = await _sigil_server(server, capsys, "healthcheck")
    assert code == 1
    assert "draining" in err
    await server.aclose()
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

"""An agent the real issuer stops accepting (evicted, superseded by a copy, banned) attests again or says why not.

The issuer runs on the real control plane; the k8s agent attests with a TokenRequest token bound to its pod on a
real Node object, written to its token file as the kubelet writes a projected token.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from sigil_testing.clock import FakeClock
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import client_for, running_issuer
from sigil_testing.realissuer import AGENT_SERVICE_ACCOUNT, CLUSTER, issuer_on
from sigil_testing.realkube import Namespace, add_node, delete_node
from sigil_testing.waiting import eventually
from spiffe import WorkloadApiClient
from structlog.testing import capture_logs

from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.cli import main
from sigil.issuer.client import Refusal
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import AgentSvidSupersededError, IssuerError
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.health import HealthServer, check_ready
from sigil.node_agent.settings import AgentSettings, AttestationSettings, RotationSettings
from sigil.node_agent.upstream.agent_svid import load_stored_identity

pytestmark = pytest.mark.kube

ME = SpiffeId.parse(f"spiffe://example.org/local/uid-{os.getuid()}")


@dataclass
class World:
    """The real issuer on the real control plane, and the files an agent on the test's node would have."""

    server: IssuerServer
    plane: ControlPlane
    namespace: Namespace
    node: str
    directory: Path

    @property
    def k8s_agent(self) -> str:
        """The agent ID a k8s agent on the test's node attests as."""
        return f"spiffe://example.org/sigil/agent/k8s/{CLUSTER}/{self.node}"

    @property
    def token_path(self) -> Path:
        return self.directory / "token"

    def project_token(self) -> None:
        """Write a fresh TokenRequest token bound to the agent's pod, as the kubelet refreshes the file."""
        pod = self.namespace.get_pod("agent-a")
        self.token_path.write_text(self.namespace.token(pod, "sigil-server"))

    def replace_node(self) -> None:
        """Delete the agent's Node object and register it again under the same name (a new UID)."""
        delete_node(self.plane, self.node)
        add_node(self.plane, self.node)

    def settings(self, attestation: AttestationSettings) -> AgentSettings:
        bundle = self.directory / "bootstrap.pem"
        bundle.write_bytes(self.server.issuer.ca.bundle().to_pem())
        return AgentSettings(
            trust_domain=self.server.issuer.ca.settings.trust_domain,
            issuer_url=self.server.url,
            data_dir=self.directory / "agent",
            socket_path=self.directory / "agent.sock",
            trust_bundle_path=bundle,
            attestation=attestation,
            rotation=RotationSettings(
                backoff_initial=timedelta(milliseconds=50),
                backoff_max=timedelta(milliseconds=200),
                bundle_wait=timedelta(milliseconds=200),
            ),
        )

    def k8s_settings(self) -> AgentSettings:
        self.project_token()
        return self.settings(
            AttestationSettings(method="k8s", token_path=self.token_path, cluster=CLUSTER)
        )

    async def entitle(self, agent_id: str) -> None:
        """An entry giving this process's uid ``ME`` under ``agent_id``."""
        issuer = self.server.issuer
        await issuer.registry.create_entry(
            ME, SpiffeId.parse(agent_id), [f"unix:uid:{os.getuid()}"], now=issuer.ca.now()
        )

    async def sigil_server(self, *args: str) -> int:
        """``sigil-server`` on the running server's admin socket, as an operator runs it."""
        flags = ["--admin-socket", str(self.server.admin_socket)]
        return await asyncio.to_thread(main, [*flags, *args])

    async def serial(self, agent_id: str) -> str:
        """The serial of the agent SVID the issuer holds current for ``agent_id`` ("" if none)."""
        record = await self.server.issuer.agent_records.get(agent_id)
        return "" if record is None else record.serial


@asynccontextmanager
async def world(plane: ControlPlane, namespace: Namespace, directory: Path) -> AsyncIterator[World]:
    """A running issuer for cluster ``test`` with a Node object and the agent's pod on it."""
    node = add_node(plane)
    namespace.pod("agent-a", node=node, service_account=AGENT_SERVICE_ACCOUNT)
    settings = issuer_on(plane, directory / "server", agent_namespace=namespace.name)
    async with running_issuer(settings) as server:
        yield World(server, plane, namespace, node, directory)


@asynccontextmanager
async def health(agent: NodeAgent) -> AsyncIterator[Callable[[], tuple[bool, str]]]:
    """The agent's ``/ready`` on a loopback port, asked as ``sigil-agent healthcheck`` asks it."""
    server = HealthServer("127.0.0.1:0", agent.readiness)
    await server.start()
    try:
        yield lambda: check_ready(f"127.0.0.1:{server.port}", timeout=5)
    finally:
        await server.aclose()


def stored_serial(agent: NodeAgent) -> str:
    """The serial of the agent SVID the agent keeps on disk (what it presents to the issuer)."""
    pem = (agent.settings.data_dir / "agent-svid.pem").read_bytes()
    return format(x509.load_pem_x509_certificates(pem)[0].serial_number, "032x")


def fetch_id(endpoint: str) -> str:
    with WorkloadApiClient(socket_path=endpoint, default_timeout=10) as client:
        return str(client.fetch_x509_svid().spiffe_id)


async def test_an_evicted_k8s_agent_attests_again_and_its_workloads_get_svids(
    control_plane: ControlPlane, kube_namespace: Namespace, short_tmp: Path
) -> None:
    """After ``agent evict`` a projected-token agent attests afresh on its own and issues a new workload's SVID."""
    async with world(control_plane, kube_namespace, short_tmp) as w:
        await w.entitle(w.k8s_agent)
        async with NodeAgent(w.k8s_settings()) as agent, health(agent) as ready:
            first = await w.serial(w.k8s_agent)
            assert stored_serial(agent) == first
            w.project_token()  # the kubelet has refreshed the file since
            assert await w.sigil_server("agent", "evict", "--id", w.k8s_agent) == 0
            # The bundle long poll is refused within a round; the agent attests again with the token file.
            await eventually(lambda: agent.identity.attestations == 2, what="a second attestation")
            second = await w.serial(w.k8s_agent)
            assert second not in ("", first)
            assert stored_serial(agent) == second
            # Readiness follows the new attestation on its own schedule (the SVID is stored before the
            # agent's link reports it usable again), so wait for it rather than read it once.

            async def serving() -> bool:
                return await asyncio.to_thread(ready) == (True, "serving")

            await eventually(serving, what="the agent ready again after attesting afresh")
            # A workload new to the agent: issued by the issuer with the new agent SVID.
            assert await asyncio.to_thread(fetch_id, agent.endpoint) == str(ME)


async def test_a_copy_that_superseded_the_agent_is_cut_off_when_the_agent_attests_again(
    control_plane: ControlPlane, kube_namespace: Namespace, short_tmp: Path
) -> None:
    """A stolen agent SVID renewed and used first supersedes the agent, which attests again and retires the copy."""
    async with world(control_plane, kube_namespace, short_tmp) as w:
        await w.entitle(w.k8s_agent)
        async with NodeAgent(w.k8s_settings()) as agent:
            stolen = load_stored_identity(agent.settings.data_dir, agent.settings.trust_domain)
            assert stolen.agent is not None
            async with client_for(w.server) as thief:
                await thief.set_agent_svid(stolen.agent)
                copy = await thief.renew()
                await (
                    thief.bundle()
                )  # presenting the renewed copy makes it current: the agent's is retired
                assert await w.serial(w.k8s_agent) == format(
                    copy.svid.chain[0].serial_number, "032x"
                )
                await eventually(
                    lambda: agent.identity.attestations == 2, what="a second attestation"
                )
                assert stored_serial(agent) == await w.serial(w.k8s_agent)
                with pytest.raises(AgentSvidSupersededError):
                    await thief.bundle()
                with pytest.raises(AgentSvidSupersededError):
                    await thief.renew()
            assert await asyncio.to_thread(fetch_id, agent.endpoint) == str(ME)


async def test_a_late_refusal_of_the_agent_svid_it_replaced_does_not_make_it_attest_again(
    control_plane: ControlPlane, kube_namespace: Namespace, short_tmp: Path
) -> None:
    """A refusal of the SVID the agent held before it attested again (a long poll answered late) is not noted.

    The race (a bundle long poll sent with the old SVID, answered after the new attestation) cannot be timed from
    outside; the real refusal of the old SVID is fetched from the real issuer and handed to the agent as the poll's
    late answer would be.
    """
    async with world(control_plane, kube_namespace, short_tmp) as w:
        await w.entitle(w.k8s_agent)
        async with NodeAgent(w.k8s_settings()) as agent, health(agent) as ready:
            old = load_stored_identity(agent.settings.data_dir, agent.settings.trust_domain).agent
            assert old is not None
            w.project_token()
            assert await w.sigil_server("agent", "evict", "--id", w.k8s_agent) == 0
            await eventually(lambda: agent.identity.attestations == 2, what="a second attestation")

            async def serving() -> bool:
                return await asyncio.to_thread(ready) == (True, "serving")

            await eventually(serving, what="the agent ready after attesting afresh")
            async with client_for(w.server) as late:
                await late.set_agent_svid(old)
                with pytest.raises(IssuerError) as refused:
                    await late.bundle()
            assert refused.value.presented_serial == old.svid.chain[0].serial_number
            assert Refusal.of(refused.value) is not None
            assert agent.identity.refused(refused.value) is False
            agent.svid_cache.wake()
            await asyncio.sleep(0.3)  # a wrongly noted refusal would have made it attest at once
            assert agent.identity.attestations == 2
            assert await asyncio.to_thread(ready) == (True, "serving")
            assert agent.identity.refusal is None
            # The same refusal naming the SVID it holds now is noted.
            refused.value.presented_serial = int(stored_serial(agent), 16)
            assert agent.identity.refused(refused.value) is True
            assert agent.identity.refusal is not None


async def test_an_evicted_join_token_agent_keeps_serving_and_is_not_ready_saying_why(
    control_plane: ControlPlane, kube_namespace: Namespace, short_tmp: Path
) -> None:
    """A join-token agent cannot attest again: after eviction it serves its cached SVID and /ready says why not."""
    async with world(control_plane, kube_namespace, short_tmp) as w:
        issuer = w.server.issuer
        token = await issuer.registry.generate_join_token(
            ttl=timedelta(minutes=10), now=issuer.ca.now()
        )
        agent_id = f"spiffe://example.org/sigil/agent/join/{token.agent_suffix}"
        await w.entitle(agent_id)
        settings = w.settings(AttestationSettings(join_token=token.token))
        with capture_logs() as logs:
            async with NodeAgent(settings) as agent, health(agent) as ready:
                before = await asyncio.to_thread(fetch_id, agent.endpoint)
                assert await asyncio.to_thread(ready) == (True, "serving")
                assert await w.sigil_server("agent", "evict", "--id", agent_id) == 0
                await eventually(lambda: not agent.readiness()[0], what="the agent not ready")
                is_ready, reason = await asyncio.to_thread(ready)
                assert not is_ready
                assert "agent_not_attested" in reason
                assert "cannot attest again" in reason
                # What it holds is still valid, and still served.
                assert await asyncio.to_thread(fetch_id, agent.endpoint) == before
                assert agent.identity.attestations == 1
    errors = [e for e in logs if e["log_level"] == "error" and "join-token" in e["event"]]
    assert [e["reason"] for e in errors] == ["agent_not_attested"]


async def test_a_banned_agent_backs_off_and_attests_once_unbanned(
    control_plane: ControlPlane, kube_namespace: Namespace, short_tmp: Path
) -> None:
    """A banned agent tries to attest again once per backoff, not on every refusal; after unban it attests."""
    clock = FakeClock()
    async with world(control_plane, kube_namespace, short_tmp) as w:
        await w.entitle(w.k8s_agent)
        agent = NodeAgent(w.k8s_settings(), clock=clock)
        with capture_logs() as logs:
            async with agent, health(agent) as ready:
                assert await w.sigil_server("agent", "ban", "--id", w.k8s_agent) == 0

                def refused_attempts() -> int:
                    return sum(1 for e in logs if e["event"].startswith("attesting again was"))

                await eventually(lambda: refused_attempts() == 1, what="one refused attempt")
                is_ready, reason = await asyncio.to_thread(ready)
                assert not is_ready
                assert "agent_banned" in reason
                # The bundle long poll keeps being refused meanwhile; none of that is another attempt.
                polls = len([e for e in logs if e["event"] == "bundle update failed; retrying"])
                await eventually(
                    lambda: (
                        len([e for e in logs if e["event"] == "bundle update failed; retrying"])
                        >= polls + 3
                    ),
                    what="three more refused bundle polls",
                )
                assert refused_attempts() == 1
                assert await w.sigil_server("agent", "unban", "--id", w.k8s_agent) == 0
                w.project_token()
                clock.advance(timedelta(seconds=1))  # past the backoff
                agent.svid_cache.wake()
                await eventually(
                    lambda: agent.identity.attestations == 2, what="a second attestation"
                )
                assert await asyncio.to_thread(ready) == (True, "serving")
                assert stored_serial(agent) == await w.serial(w.k8s_agent)


async def test_an_agent_whose_node_was_replaced_attests_again_at_renewal(
    control_plane: ControlPlane, kube_namespace: Namespace, short_tmp: Path
) -> None:
    """Renewal after the node was replaced (new UID) gets agent_node_gone; the agent attests on the new node."""
    clock = FakeClock()
    async with world(control_plane, kube_namespace, short_tmp) as w:
        agent = NodeAgent(w.k8s_settings(), clock=clock)
        with capture_logs() as logs:
            async with agent, health(agent) as ready:
                first = await w.serial(w.k8s_agent)
                w.replace_node()
                w.project_token()  # the kubelet of the new node gets the agent's pod a token
                renew_at = agent.identity.renew_at
                assert renew_at is not None
                clock.advance(renew_at - clock())
                agent.svid_cache.wake()
                await eventually(
                    lambda: agent.identity.attestations == 2, what="a second attestation"
                )
                assert await w.serial(w.k8s_agent) not in ("", first)
                assert stored_serial(agent) == await w.serial(w.k8s_agent)
                assert await asyncio.to_thread(ready) == (True, "serving")
    assert "agent_node_gone" in [e.get("reason") for e in logs]


def fetch_jwt(endpoint: str) -> str:
    with WorkloadApiClient(socket_path=endpoint, default_timeout=10) as client:
        return str(client.fetch_jwt_svid({"db"}).token)


async def test_a_refused_agent_serves_a_cached_jwt_svid_until_it_expires(
    control_plane: ControlPlane, kube_namespace: Namespace, short_tmp: Path
) -> None:
    """Past its refresh point a JWT-SVID the evicted agent still holds is served, not an error, until expiry."""
    clock = FakeClock()
    async with world(control_plane, kube_namespace, short_tmp) as w:
        issuer = w.server.issuer
        token = await issuer.registry.generate_join_token(
            ttl=timedelta(minutes=10), now=issuer.ca.now()
        )
        await w.entitle(f"spiffe://example.org/sigil/agent/join/{token.agent_suffix}")
        agent = NodeAgent(w.settings(AttestationSettings(join_token=token.token)), clock=clock)
        async with agent:
            first = await asyncio.to_thread(fetch_jwt, agent.endpoint)
            agent_id = f"spiffe://example.org/sigil/agent/join/{token.agent_suffix}"
            assert await w.sigil_server("agent", "evict", "--id", agent_id) == 0
            clock.advance(
                timedelta(minutes=4)
            )  # JWT-SVIDs live 5 minutes; refreshed past half-life
            assert await asyncio.to_thread(fetch_jwt, agent.endpoint) == first
            assert not agent.readiness()[0]

"""A small Kubernetes cluster for the node agent's tests, on the real control plane: two Node objects and a
namespace of the test's own, the real issuer watching their pods, and settings for a real agent attested on either
node with a projected ServiceAccount token from the real TokenRequest API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sigil.issuer.edge.listeners import IssuerServer
from sigil.node_agent.settings import AgentSettings, AttestationSettings, RotationSettings
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import running_issuer
from sigil_testing.paths import short_directory
from sigil_testing.realissuer import AGENT_SERVICE_ACCOUNT, CLUSTER, issuer_on
from sigil_testing.realkube import Namespace, add_node, fresh_namespace

__all__ = ["CLUSTER", "Cluster", "cluster"]


@dataclass
class Cluster:
    """Two nodes, the workloads' namespace and the agents' one, the running issuer, and a short directory for
    sockets and files."""

    node_a: str
    node_b: str
    namespace: Namespace
    agents: Namespace
    server: IssuerServer
    directory: Path

    async def pod_cached(self, namespace: str, name: str) -> None:
        """Wait until the issuer's pod cache holds ``namespace/name``."""
        kube = self.server.issuer.kube
        assert kube is not None
        await kube.pods.wait_for(lambda c: c.pod(namespace, name) is not None)

    def agent_settings(self, node: str, **overrides: Any) -> AgentSettings:
        """A k8s-attested agent on ``node``: its DaemonSet pod, a projected token file, the bootstrap bundle."""
        name = f"agent-{node}"
        pod = self.agents.pod(name, node=node, service_account=AGENT_SERVICE_ACCOUNT)
        home = self.directory / name
        home.mkdir()
        token = home / "token"
        token.write_text(self.agents.token(pod, "sigil-server"))
        bundle = home / "bootstrap.pem"
        bundle.write_bytes(self.server.issuer.ca.bundle().to_pem())
        values: dict[str, Any] = {
            "trust_domain": self.server.issuer.ca.settings.trust_domain,
            "issuer_url": self.server.url,
            "data_dir": home / "state",
            "socket_path": home / "agent.sock",
            "trust_bundle_path": bundle,
            "attestation": AttestationSettings(method="k8s", token_path=token, cluster=CLUSTER),
            "node_name": node,
            "rotation": RotationSettings(
                backoff_initial=timedelta(milliseconds=50),
                backoff_max=timedelta(milliseconds=500),
                bundle_wait=timedelta(seconds=2),
            ),
        }
        values.update(overrides)
        return AgentSettings(**values)


@asynccontextmanager
async def cluster(plane: ControlPlane, *, watch_crds: bool = False) -> AsyncIterator[Cluster]:
    """Two fresh nodes on ``plane`` and an issuer that watches their pods (and the policy CRDs if asked)."""
    with short_directory("sgk-") as directory:
        agents = fresh_namespace(plane, "agents")
        settings = issuer_on(
            plane, directory / "server", agent_namespace=agents.name, watch_crds=watch_crds
        )
        async with running_issuer(settings) as server:
            yield Cluster(
                node_a=add_node(plane),
                node_b=add_node(plane),
                namespace=fresh_namespace(plane),
                agents=agents,
                server=server,
                directory=directory,
            )

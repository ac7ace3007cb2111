"""A small Kubernetes cluster for the node agent's tests: the kube-apiserver stand-in with two nodes, the real issuer
watching it, and settings for a real agent attested on either node with its projected ServiceAccount token."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sigil.issuer.server import IssuerServer
from sigil.node_agent.settings import AgentSettings, AttestationSettings, RotationSettings
from sigil_testing.issuer import AGENT_SA_NAMESPACE, issuer_settings, running_issuer
from sigil_testing.kube import KubeApiServer

__all__ = ["CLUSTER", "Cluster", "cluster"]

#: The cluster name the issuer is configured with (``issuer_settings``).
CLUSTER = "test"


@dataclass
class Cluster:
    """The stand-in API server, the running issuer, and a short directory for sockets and files."""

    kube: KubeApiServer
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
        pod = self.kube.add_pod(
            AGENT_SA_NAMESPACE, name, node_name=node, service_account="sigil-agent"
        )
        home = self.directory / name
        home.mkdir()
        token = home / "token"
        token.write_text(self.kube.mint_token(pod))
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
async def cluster() -> AsyncIterator[Cluster]:
    """Nodes ``node-a`` and ``node-b``, and an issuer that watches their pods."""
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="sgk-"))
    try:
        async with KubeApiServer() as kube:
            kube.add_node("node-a")
            kube.add_node("node-b")
            settings = issuer_settings(
                directory / "server", kubeconfig=kube.write_kubeconfig(directory / "kubeconfig")
            )
            async with running_issuer(settings) as server:
                yield Cluster(kube, server, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

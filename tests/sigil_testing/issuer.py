"""A running issuer for tests: settings on a temporary data dir, the kube stand-in, real sockets on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.app import close_issuer, open_issuer
from sigil.issuer.client import IssuerClient
from sigil.issuer.server import IssuerServer
from sigil.issuer.server_settings import IssuerSettings, KubeSettings
from sigil.issuer.settings import ServerSettings

__all__ = ["AGENT_SA_NAMESPACE", "client_for", "issuer_settings", "running_issuer"]

AGENT_SA_NAMESPACE = "sigil-system"


def issuer_settings(
    data_dir: Path,
    *,
    kubeconfig: Path | None = None,
    database_url: str = "",
    trust_domain: str = "example.org",
    **server: Any,
) -> ServerSettings:
    """Settings for a test server: port 0, a short admin socket path, Kubernetes through ``kubeconfig``."""
    socket_dir = Path(tempfile.mkdtemp(prefix="sg", dir="/tmp"))
    kube = KubeSettings(kubeconfig=kubeconfig, cluster="test") if kubeconfig else None
    base = IssuerSettings(port=0, admin_socket=socket_dir / "admin.sock", kubernetes=kube)
    return ServerSettings(
        data_dir=data_dir,
        ca=CaSettings(
            trust_domain=TrustDomain(trust_domain), data_dir=data_dir, database_url=database_url
        ),
        server=dataclasses.replace(base, **server),
    )


@asynccontextmanager
async def running_issuer(
    settings: ServerSettings,
    *,
    registry: CollectorRegistry | None = None,
    kube_clock: Callable[[], float] | None = None,
    rate_clock: Callable[[], float] | None = None,
) -> AsyncIterator[IssuerServer]:
    """Open the issuer and serve it; everything is closed on the way out."""
    issuer = await open_issuer(
        settings, registry=registry, kube_clock=kube_clock, rate_clock=rate_clock
    )
    try:
        async with IssuerServer(issuer, shutdown_timeout=1.0) as server:
            yield server
    finally:
        await close_issuer(issuer)
        settings.admin_socket.parent.rmdir()


def client_for(server: IssuerServer) -> IssuerClient:
    """A client that trusts the server's bundle, as an agent's bootstrap bundle would."""
    return IssuerClient(server.url, bundle=server.issuer.ca.bundle())

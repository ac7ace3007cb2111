"""A running issuer for tests: settings on a temporary data dir, the kube stand-in, real sockets on 127.0.0.1."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.client import IssuerClient
from sigil.issuer.edge.assembly import close_issuer, open_issuer
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings import PolicySettings, ServerSettings
from sigil.issuer.settings.sections import IssuerSettings, KubeSettings
from sigil_testing.paths import new_short_directory

__all__ = [
    "AGENT_SA_NAMESPACE",
    "attested_agent",
    "client_for",
    "issuer_settings",
    "running_issuer",
]

AGENT_SA_NAMESPACE = "sigil-system"


def issuer_settings(
    data_dir: Path,
    *,
    kubeconfig: Path | None = None,
    database_url: str = "",
    trust_domain: str = "example.org",
    ca_options: Mapping[str, Any] | None = None,
    policy: PolicySettings | None = None,
    **server: Any,
) -> ServerSettings:
    """Settings for a test server: port 0, a short admin socket path, Kubernetes through ``kubeconfig``.

    ``ca_options`` override ``CaSettings`` fields (``key_store``, ``refresh_hint``, ...); ``server`` keywords
    override ``IssuerSettings`` fields.
    """
    socket_dir = new_short_directory()
    kube = KubeSettings(kubeconfig=kubeconfig, cluster="test") if kubeconfig else None
    base = IssuerSettings(port=0, admin_socket=socket_dir / "admin.sock", kubernetes=kube)
    return ServerSettings(
        data_dir=data_dir,
        ca=CaSettings(
            trust_domain=TrustDomain(trust_domain),
            data_dir=data_dir,
            database_url=database_url,
            **dict(ca_options or {}),
        ),
        server=dataclasses.replace(base, **server),
        policy=policy if policy is not None else PolicySettings(),
    )


@asynccontextmanager
async def running_issuer(
    settings: ServerSettings,
    *,
    registry: CollectorRegistry | None = None,
    kube_clock: Callable[[], float] | None = None,
    rate_clock: Callable[[], float] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[IssuerServer]:
    """Open the issuer and serve it (``clock``: the CA's and the issuer's); everything is closed on the way out."""
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    issuer = await open_issuer(
        settings, registry=registry, kube_clock=kube_clock, rate_clock=rate_clock, **extra
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


@asynccontextmanager
async def attested_agent(server: IssuerServer) -> AsyncIterator[IssuerClient]:
    """A client holding an agent SVID, attested with a fresh join token (no Kubernetes needed)."""
    token = await server.issuer.registry.generate_join_token(
        ttl=timedelta(minutes=10), now=server.issuer.ca.now()
    )
    async with client_for(server) as client:
        await client.attest_join_token(token.token)
        yield client

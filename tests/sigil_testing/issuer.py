"""A running issuer for tests: settings on a temporary data dir, the kube stand-in, real sockets on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import ipaddress
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry

from sigil.ca.keys import write_private_key
from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.client import IssuerClient
from sigil.issuer.edge.assembly import close_issuer, open_issuer
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings import PolicySettings, ServerSettings
from sigil.issuer.settings.sections import IssuerSettings, KubeSettings

__all__ = [
    "AGENT_SA_NAMESPACE",
    "WebPki",
    "attested_agent",
    "client_for",
    "issuer_settings",
    "running_issuer",
    "write_web_pki",
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
    socket_dir = Path(tempfile.mkdtemp(prefix="sg", dir="/tmp"))
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


@dataclass(frozen=True, slots=True)
class WebPki:
    """A private Web PKI: its root (``ca_file``) and a server certificate for 127.0.0.1 and localhost."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def write_web_pki(directory: Path) -> WebPki:
    """A root CA playing the public Web PKI, and a TLS server certificate it signed, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Web Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pki = WebPki(directory / "web-root.pem", directory / "server.pem", directory / "server.key")
    pki.ca_file.write_bytes(root.public_bytes(pem))
    pki.cert_file.write_bytes(leaf.public_bytes(pem))
    write_private_key(pki.key_file, leaf_key)
    return pki

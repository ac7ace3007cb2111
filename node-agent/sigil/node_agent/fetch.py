"""``sigil-agent api fetch``: what a workload on this node would get, fetched with the unmodified py-spiffe client.

It mirrors ``spire-agent api fetch`` so that the commands people already know work: ``x509`` prints the SVIDs and,
with ``--write DIR``, writes ``svid.N.pem`` (the chain), ``svid.N.key`` (PKCS#8, mode 0600), ``bundle.N.pem`` (its
trust domain's authorities) and ``federated_bundle.N.M.pem``; ``jwt`` prints the token; ``bundle`` prints the X.509
authorities as PEM, or every trust domain's JWT keys as JSON. Using py-spiffe rather than our own stubs makes every
run of this command a conformance check of the agent.

These calls block (py-spiffe is a grpcio client); they run in the CLI process, never inside the agent's loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from spiffe import SpiffeId as PySpiffeId
from spiffe import WorkloadApiClient

from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import write_secret_file
from sigil.ca.spiffe_id import TrustDomain

__all__ = ["FetchRequest", "endpoint_of", "fetch"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchRequest:
    """One ``api fetch`` invocation."""

    kind: str
    socket: str | None = None
    audiences: tuple[str, ...] = ()
    spiffe_id: str | None = None
    write: Path | None = None
    output: str = "text"
    timeout: float = 10.0


def endpoint_of(socket: str | None) -> str | None:
    """``unix://`` plus an absolute path, as py-spiffe wants it; None defers to ``SPIFFE_ENDPOINT_SOCKET``."""
    if socket is None:
        return None
    if socket.startswith(("unix:", "tcp:")):
        return socket
    return f"unix://{Path(socket).absolute()}"


def _pem(certificates: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _stamp(certificate: x509.Certificate) -> str:
    before = certificate.not_valid_before_utc.isoformat()
    return f"{before} .. {certificate.not_valid_after_utc.isoformat()}"


def _fetch_x509(client: WorkloadApiClient, request: FetchRequest, out: TextIO) -> int:
    started = time.monotonic()
    context = client.fetch_x509_context(timeout=request.timeout)
    elapsed = (time.monotonic() - started) * 1000
    svids = context.x509_svids
    print(f"Received {len(svids)} svid(s) after {elapsed:.1f}ms", file=out)
    for index, svid in enumerate(svids):
        own = context.x509_bundle_set.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        authorities = sorted(own.x509_authorities if own else (), key=lambda c: c.serial_number)
        print(f"\nSPIFFE ID:\t\t{svid.spiffe_id}", file=out)
        print(f"SVID valid:\t\t{_stamp(svid.leaf)}", file=out)
        for number, authority in enumerate(authorities, start=1):
            print(f"CA #{number} valid:\t\t{_stamp(authority)}", file=out)
        if request.write is None:
            continue
        directory = request.write
        directory.mkdir(parents=True, exist_ok=True)
        key = svid.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / f"svid.{index}.pem").write_bytes(_pem(svid.cert_chain))
        write_secret_file(directory / f"svid.{index}.key", key)
        (directory / f"bundle.{index}.pem").write_bytes(_pem(authorities))
        others = [
            b
            for b in context.x509_bundle_set.bundles
            if b.trust_domain != svid.spiffe_id.trust_domain
        ]
        for number, bundle in enumerate(sorted(others, key=lambda b: b.trust_domain.name)):
            path = directory / f"federated_bundle.{index}.{number}.pem"
            path.write_bytes(_pem(bundle.x509_authorities))
        print(
            f"Wrote svid.{index}.pem, svid.{index}.key, bundle.{index}.pem to {directory}", file=out
        )
    return 0


def _fetch_jwt(client: WorkloadApiClient, request: FetchRequest, out: TextIO) -> int:
    subject = PySpiffeId(request.spiffe_id) if request.spiffe_id else None
    svid = client.fetch_jwt_svid(set(request.audiences), subject, timeout=request.timeout)
    if request.output == "json":
        document = {
            "spiffe_id": str(svid.spiffe_id),
            "audience": sorted(svid.audience),
            "expiry": svid.expiry,
            "token": svid.token,
        }
        print(json.dumps(document, indent=2), file=out)
    else:
        print(svid.token, file=out)
    return 0


def _fetch_bundle(client: WorkloadApiClient, request: FetchRequest, out: TextIO) -> int:
    if request.output == "json":
        jwt_bundles = client.fetch_jwt_bundles(timeout=request.timeout)
        document: dict[str, Any] = {}
        for jwt_bundle in sorted(jwt_bundles.bundles, key=lambda b: b.trust_domain.name):
            name = jwt_bundle.trust_domain.name
            usable = {
                kid: key
                for kid, key in jwt_bundle.jwt_authorities.items()
                if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
            }
            keys = TrustBundle(TrustDomain(name), jwt_authorities=usable)
            document[name] = {"keys": keys.to_jwks()["keys"]}
        print(json.dumps(document, indent=2), file=out)
        return 0
    x509_bundles = client.fetch_x509_bundles(timeout=request.timeout)
    for index, bundle in enumerate(sorted(x509_bundles.bundles, key=lambda b: b.trust_domain.name)):
        pem = _pem(sorted(bundle.x509_authorities, key=lambda c: c.serial_number))
        print(f"# {bundle.trust_domain.name}", file=out)
        print(pem.decode(), end="", file=out)
        if request.write is not None:
            request.write.mkdir(parents=True, exist_ok=True)
            (request.write / f"bundle.{index}.pem").write_bytes(pem)
    return 0


_KINDS = {"x509": _fetch_x509, "jwt": _fetch_jwt, "bundle": _fetch_bundle}


def fetch(request: FetchRequest, out: TextIO) -> int:
    """Run one fetch and print its result to ``out``; returns the exit status. Blocks."""
    action = _KINDS[request.kind]
    with WorkloadApiClient(socket_path=endpoint_of(request.socket)) as client:
        return action(client, request, out)

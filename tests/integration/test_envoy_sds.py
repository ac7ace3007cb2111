"""Two real Envoys configured only with SDS from the real agent (fed by the real issuer) speak SPIFFE mTLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sigil_testing.envoy_mesh import ME, envoy_mesh
from sigil_testing.pki import Domain, write_svid_files
from sigil_testing.waiting import eventually
from spiffe import WorkloadApiClient

pytestmark = [pytest.mark.slow]


def _uri(cert: x509.Certificate) -> str:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(san.get_values_for_type(x509.UniformResourceIdentifier)[0])


def _signer(cert: x509.Certificate) -> bytes | None:
    return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


def _get_with(port: int, certificate: Path, key: Path, trusted: Path) -> bytes:
    """One HTTP request to the server-side Envoy over TLS with this client certificate; what came back."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # An X509-SVID names a SPIFFE ID, not a host: the chain is checked, the name is not.
    context.check_hostname = False
    context.load_verify_locations(cafile=str(trusted))
    context.load_cert_chain(str(certificate), str(key))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := tls.recv(65536):
            received += chunk
        return received


async def test_mtls_through_two_envoys_and_rotation_without_restart(short_tmp: Path) -> None:
    """The caller's Envoy presents the agent's SVID; after a forced rotation a new connection shows the new serial."""
    async with envoy_mesh(short_tmp) as mesh:
        first = await mesh.presented()
        assert _uri(first) == str(ME)

        await mesh.force_rotation()

        async def rotated() -> x509.Certificate | None:
            presented = await mesh.presented()
            return presented if presented.serial_number != first.serial_number else None

        second = await eventually(rotated, what="the new SVID presented by Envoy", within=20)
        assert _uri(second) == str(ME)
        assert second.not_valid_before_utc >= first.not_valid_before_utc
        # Signed by the new authority: the old one is tainted.
        assert _signer(second) != _signer(first)
        # Same Envoy processes: they took the new certificate from SDS, no restart or reload.
        updates = await mesh.caller.stats(r"sds\.default\.update_success")
        assert max(updates.values()) >= 2


def _fetch_own_svid(endpoint: str, directory: Path) -> tuple[Path, Path, Path]:
    """This uid's SVID and bundle from the agent with py-spiffe, saved as PEM files."""
    with WorkloadApiClient(socket_path=endpoint, default_timeout=10) as client:
        context = client.fetch_x509_context()
    directory.mkdir()
    svid = context.default_svid
    paths = directory / "svid.pem", directory / "svid.key", directory / "bundle.pem"
    svid.save(str(paths[0]), str(paths[1]), Encoding.PEM)
    own = context.x509_bundle_set.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
    assert own is not None
    own.save(str(paths[2]), Encoding.PEM)
    return paths


def _refused(port: int, certificate: Path, key: Path, trusted: Path) -> bool:
    try:
        answer = _get_with(port, certificate, key, trusted)
    except (ssl.SSLError, ConnectionResetError):
        return True
    # TLS 1.3 refuses a client certificate after the handshake: the connection closes with no answer.
    return answer == b""


async def test_a_caller_of_a_foreign_trust_domain_is_refused(short_tmp: Path) -> None:
    """The server-side Envoy refuses a client certificate of another trust domain and accepts this uid's SVID."""
    stranger = Domain("stranger.test", now=None)
    async with envoy_mesh(short_tmp) as mesh:
        own, own_key, bundle = await asyncio.to_thread(
            _fetch_own_svid, mesh.local.agent.endpoint, short_tmp / "own"
        )
        answer = await asyncio.to_thread(_get_with, mesh.server_port, own, own_key, bundle)
        assert answer.startswith(b"HTTP/1.1 200")
        assert str(ME).encode() in answer

        foreign, foreign_key, _ = write_svid_files(
            short_tmp / "foreign", stranger.mint("workload"), stranger
        )
        assert await asyncio.to_thread(_refused, mesh.server_port, foreign, foreign_key, bundle)
        refusals = await mesh.server.stats(r"listener\..*ssl\.fail_verify")
        assert sum(refusals.values()) >= 1
        # What refused it: ROOTCA, as Envoy holds it from SDS, is the SPIFFE validator for example.org alone.
        secrets = await mesh.server.config_dump("dynamic_active_secrets")
        (rootca,) = [c for c in secrets["configs"] if c["name"] == "ROOTCA"]
        validator = rootca["secret"]["validation_context"]["custom_validator_config"]
        assert validator["name"] == "envoy.tls.cert_validator.spiffe"
        assert [td["name"] for td in validator["typed_config"]["trust_domains"]] == ["example.org"]

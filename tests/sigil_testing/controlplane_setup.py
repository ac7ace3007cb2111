"""What the control plane (:mod:`sigil_testing.controlplane`) writes before it starts, and the flags it starts with.

Everything lives in the control plane's directory: ``ca.crt`` (the CA of the API server's serving certificate),
``serving.crt``/``serving.key``, the ServiceAccount signing key pair ``sa.key``/``sa.pub`` (RSA, as kubeadm makes
it, so tokens are RS256 like a real cluster's), the admin token file ``tokens.csv`` and the admin ``kubeconfig``.
Secrets are written 0600.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sigil_testing.certificates import ca_certificate, server_certificate

__all__ = ["ISSUER", "apiserver_flags", "etcd_flags", "write_credentials", "write_kubeconfig"]

ISSUER = "https://kubernetes.default.svc.cluster.local"


def write_credentials(directory: Path, token: str) -> None:
    """The serving CA and certificate, the ServiceAccount key pair and the admin ``token`` file."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = ca_certificate("sigil control plane CA", ca_key)
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving = server_certificate("kube-apiserver", serving_key, issuer=(ca, ca_key), days=365)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "serving.crt").write_bytes(serving.public_bytes(pem))
    _write_secret(directory / "serving.key", _private_pem(serving_key))
    _write_secret(directory / "sa.key", _private_pem(sa_key))
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    _write_secret(directory / "tokens.csv", f"{token},admin,admin-uid,system:masters\n".encode())


def write_kubeconfig(directory: Path, url: str, token: str) -> None:
    """The admin kubeconfig (``system:masters``) for the API server at ``url``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sigil",
                "cluster": {"server": url, "certificate-authority": str(directory / "ca.crt")},
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "sigil", "context": {"cluster": "sigil", "user": "admin"}}],
        "current-context": "sigil",
    }
    _write_secret(directory / "kubeconfig", yaml.safe_dump(config, sort_keys=False).encode())


def etcd_flags(directory: Path, client: int, peer: int) -> list[str]:
    """etcd on loopback with a fresh data directory (the previous one is wiped)."""
    data = directory / "etcd"
    shutil.rmtree(data, ignore_errors=True)
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    return [
        "--name=controlplane",
        f"--data-dir={data}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=controlplane={peer_url}",
        # A test's etcd need not survive a power cut; fsync dominates its write latency otherwise.
        "--unsafe-no-fsync",
    ]


def apiserver_flags(directory: Path, etcd_client: int, secure: int) -> list[str]:
    """kube-apiserver on loopback over that etcd, with RBAC, the token file and ServiceAccount tokens."""
    d = directory
    return [
        f"--etcd-servers=http://127.0.0.1:{etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={secure}",
        f"--cert-dir={d / 'certs'}",
        f"--tls-cert-file={d / 'serving.crt'}",
        f"--tls-private-key-file={d / 'serving.key'}",
        "--authorization-mode=RBAC",
        f"--token-auth-file={d / 'tokens.csv'}",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-signing-key-file={d / 'sa.key'}",
        f"--service-account-key-file={d / 'sa.pub'}",
        "--service-cluster-ip-range=10.0.0.0/24",
        # The `kubernetes` Service's endpoints would be 127.0.0.1, which endpoint validation refuses.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


def _private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_secret(path: Path, content: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)

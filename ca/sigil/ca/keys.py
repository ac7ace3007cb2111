"""Private keys: generation, the signature they make, and their files at rest.

A key file is written to a temporary file in the same directory, fsynced, then renamed over the target, and the
directory fsynced, so a crash leaves either the old key or the new one, never half of one. Files are created mode
0600 from the start (never chmod-ed after the bytes are on disk). Errors name the file, never the key.
"""

from __future__ import annotations

import enum
import os
import tempfile
from pathlib import Path
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sigil.ca.errors import KeyStoreError

__all__ = [
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "generate_key",
    "jwt_algorithm",
    "key_type_of",
    "load_private_key",
    "private_key_der",
    "public_key_der",
    "signature_hash",
    "verify_signature",
    "write_file_atomically",
    "write_private_key",
    "write_secret_file",
]

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

KEY_FILE_MODE = 0o600


class KeyType(enum.StrEnum):
    """The key types Sigil signs with, named as SPIRE names them (``ca_key_type``)."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"

    @classmethod
    def parse(cls, value: str) -> KeyType:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(k.value for k in cls)
            raise ValueError(f"unknown key type {value!r}; choose one of {choices}") from None


def generate_key(key_type: KeyType = KeyType.EC_P256) -> PrivateKey:
    """A fresh private key of ``key_type``."""
    if key_type is KeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_type_of(key: object) -> KeyType:
    """The :class:`KeyType` of a key, or ValueError for one Sigil does not sign with.

    Takes any object because it guards input: a CSR may carry an Ed25519, DSA or P-521 key.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return KeyType.EC_P256
        if isinstance(key.curve, ec.SECP384R1):
            return KeyType.EC_P384
        raise ValueError(f"unsupported elliptic curve {key.curve.name}")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size >= 2048:
        return KeyType.RSA_2048
    raise ValueError(
        "unsupported key: Sigil signs with EC P-256, EC P-384 or RSA of 2048 bits or more"
    )


def signature_hash(key: PrivateKey | PublicKey) -> hashes.SHA256 | hashes.SHA384:
    """The hash that goes with the key: SHA-384 for P-384, SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP384R1
    ):
        return hashes.SHA384()
    return hashes.SHA256()


def jwt_algorithm(key: PrivateKey | PublicKey) -> str:
    """The JWS ``alg`` for a key: ES256, ES384 or RS256 (all on the JWT-SVID allow-list)."""
    return {KeyType.EC_P256: "ES256", KeyType.EC_P384: "ES384", KeyType.RSA_2048: "RS256"}[
        key_type_of(key)
    ]


def verify_signature(
    key: PublicKey, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None = None
) -> None:
    """Verify ``signature`` over ``data`` with ``key``; raises cryptography's InvalidSignature.

    ``algorithm`` is the hash the signer named (a CSR's or certificate's); by default, the key's own.
    """
    chosen = algorithm if algorithm is not None else signature_hash(key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(chosen))
    else:
        key.verify(signature, data, padding.PKCS1v15(), chosen)


def private_key_der(key: PrivateKey) -> bytes:
    """PKCS#8 DER, unencrypted, as the Workload API carries keys."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_der(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER: how keys are compared and stored."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_secret_file(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (temporary file, fsync, rename)."""
    write_file_atomically(path, data, mode=KEY_FILE_MODE, durable=durable)


def write_file_atomically(path: Path, data: bytes, *, mode: int, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one, never half of one.

    A temporary file in the same directory (a missing directory is made 0700) gets ``mode``, the data and an fsync,
    then is renamed over ``path``, and the directory is synced so that the rename survives a crash.

    ``durable=False`` leaves out both fsyncs, for a file whose loss with the machine's power loses nothing that
    the machine's restart does not lose anyway: a process that stops (or is killed) still leaves the old file or
    the new one, whole, since the kernel keeps what was written; after a power loss the file may be the old one,
    or empty, and its reader must take that as having none.
    """
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as err:
        raise KeyStoreError(str(path), f"cannot create a file there ({err.strerror})") from err
    try:
        # mkstemp creates 0600; the explicit chmod sets the mode asked for whatever the umask.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        if durable:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as err:
        Path(tmp_name).unlink(missing_ok=True)
        raise KeyStoreError(str(path), f"cannot write ({err.strerror})") from err


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Store ``key`` as PKCS#8 PEM in ``path``, atomically, mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret_file(path, pem)


def load_private_key(path: Path) -> PrivateKey:
    """Load a PEM private key written by :func:`write_private_key` (or an operator's upstream key).

    A key file readable by group or others is refused: whoever could read it could mint any identity.
    """
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise KeyStoreError(str(path), "no such file") from err
    except OSError as err:
        raise KeyStoreError(str(path), f"cannot read ({err.strerror})") from err
    if mode & 0o077:
        raise KeyStoreError(str(path), f"mode {mode:04o} lets others read it; it must be 0600")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        # The library's message may quote the data it choked on; never pass it on.
        raise KeyStoreError(str(path), "not an unencrypted PEM private key") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyStoreError(str(path), "only EC and RSA keys are supported")
    try:
        key_type_of(key)
    except ValueError as err:
        raise KeyStoreError(str(path), str(err)) from err
    return key

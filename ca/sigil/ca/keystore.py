"""Where authority private keys live at rest.

Two stores, one interface:

- ``DiskKeyStore`` (the default): one PEM file per authority, mode 0600 in a 0700 directory, written atomically.
  Replicas sharing a database must share the directory too.
- ``SealedDatabaseKeyStore``: keys sealed with AES-256-GCM under a key-encryption key read from a 0600 file (in
  Kubernetes, a mounted Secret) and kept in the datastore beside the authorities. Replicas on one PostgreSQL then
  share keys without a shared volume; the database alone never holds a usable key.
"""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sigil.ca.authority import AuthorityKind
from sigil.ca.datastore.models import AuthorityKeyRow
from sigil.ca.datastore.transaction import Transaction
from sigil.ca.errors import KeyStoreError
from sigil.ca.keys import (
    PrivateKey,
    load_private_key,
    private_key_der,
    write_private_key,
)

__all__ = [
    "NO_SEALED_KEY",
    "DiskKeyStore",
    "KeyStore",
    "SealedDatabaseKeyStore",
    "load_key_encryption_key",
]

_NONCE_BYTES = 12
#: The reason of the error for an authority with no sealed key at all (as opposed to one that does not open).
NO_SEALED_KEY = "no sealed key in the datastore"


class KeyStore(Protocol):
    """Authority private keys by kind and authority ID.

    ``put`` and ``delete`` get the rotation transaction, so that a store inside the datastore writes in it: on
    SQLite a second connection would wait forever for the lock that transaction holds.
    """

    async def put(
        self, kind: AuthorityKind, authority_id: str, key: PrivateKey, *, tx: Transaction
    ) -> None: ...
    async def get(self, kind: AuthorityKind, authority_id: str) -> PrivateKey: ...
    async def delete(
        self, kind: AuthorityKind, authority_id: str, *, tx: Transaction | None = None
    ) -> None: ...


#: A temporary key file this old was left by a process that died writing it (a write takes milliseconds).
_PARTIAL_WRITE_AGE = 600.0


class DiskKeyStore:
    """Authority keys as files ``<kind>-<authority_id>.pem`` under one directory (mode 0700)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._cache: dict[str, PrivateKey] = {}

    async def remove_partial_writes(self, *, older_than: float = _PARTIAL_WRITE_AGE) -> int:
        """Delete what a process killed inside :func:`~sigil.ca.keys.write_file_atomically` left: its temporary
        files (part of a private key). Only those older than ``older_than`` seconds, since replicas sharing the
        directory may be writing theirs right now. Returns how many were removed."""
        return await asyncio.to_thread(_remove_partial_writes, self._directory, older_than)

    def _path(self, kind: AuthorityKind, authority_id: str) -> Path:
        if not authority_id or "/" in authority_id or authority_id.startswith("."):
            raise KeyStoreError(authority_id, "not a usable authority id for a key file name")
        return self._directory / f"{kind.value}-{authority_id}.pem"

    async def put(
        self, kind: AuthorityKind, authority_id: str, key: PrivateKey, *, tx: Transaction
    ) -> None:
        # The file reaches disk before the row that points at it is committed.
        await asyncio.to_thread(write_private_key, self._path(kind, authority_id), key)
        self._cache[authority_id] = key

    async def get(self, kind: AuthorityKind, authority_id: str) -> PrivateKey:
        key = self._cache.get(authority_id)
        if key is None:
            key = await asyncio.to_thread(load_private_key, self._path(kind, authority_id))
            self._cache[authority_id] = key
        return key

    async def delete(
        self, kind: AuthorityKind, authority_id: str, *, tx: Transaction | None = None
    ) -> None:
        self._cache.pop(authority_id, None)
        path = self._path(kind, authority_id)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as err:
            raise KeyStoreError(str(path), f"cannot delete ({err.strerror})") from err


def _remove_partial_writes(directory: Path, older_than: float) -> int:
    # write_file_atomically names its temporary files ".<final name>.<random>" in the same directory.
    removed = 0
    now = datetime.now(UTC).timestamp()
    try:
        candidates = list(directory.glob(".*.pem.*"))
    except OSError:
        return 0
    for path in candidates:
        try:
            if now - path.stat().st_mtime > older_than:
                path.unlink()
                removed += 1
        except OSError:
            continue  # gone already, or not ours to remove: the next start tries again
    return removed


def load_key_encryption_key(path: Path) -> bytes:
    """A 32-byte key-encryption key from a file: raw bytes, or base64 text (as a Kubernetes Secret holds it)."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as err:
        raise KeyStoreError(
            str(path), f"cannot read the key-encryption key ({err.strerror})"
        ) from err
    # Kubernetes mounts Secret files as root:fsGroup, so a non-root server reads the key through its group
    # (defaultMode 0440). What is refused is a key anyone on the machine could read.
    if mode & 0o007:
        raise KeyStoreError(
            str(path), f"mode {mode:04o} lets anyone read it; use 0400, 0440 or 0600"
        )
    if len(data) == 32:
        return data
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except ValueError as err:
        raise KeyStoreError(str(path), "must hold 32 raw bytes or their base64") from err
    if len(decoded) != 32:
        raise KeyStoreError(str(path), "must hold 32 raw bytes or their base64")
    return decoded


class SealedDatabaseKeyStore:
    """Authority keys sealed with AES-256-GCM and kept in the datastore's ``authority_keys`` table."""

    def __init__(self, engine: AsyncEngine, key_encryption_key: bytes) -> None:
        if len(key_encryption_key) != 32:
            raise ValueError("the key-encryption key must be 32 bytes")
        self._engine = engine
        self._aead = AESGCM(key_encryption_key)
        self._cache: dict[str, PrivateKey] = {}

    @staticmethod
    def _aad(kind: AuthorityKind, authority_id: str) -> bytes:
        # Binding the ciphertext to its authority stops a sealed key from being swapped onto another row.
        return f"sigil-authority-key:{kind.value}:{authority_id}".encode()

    async def put(
        self, kind: AuthorityKind, authority_id: str, key: PrivateKey, *, tx: Transaction
    ) -> None:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(
            nonce, private_key_der(key), self._aad(kind, authority_id)
        )
        await tx.execute(
            insert(AuthorityKeyRow).values(
                authority_id=authority_id,
                kind=kind.value,
                sealed_key=sealed,
                created_at=datetime.now(UTC),
            )
        )
        self._cache[authority_id] = key

    async def get(self, kind: AuthorityKind, authority_id: str) -> PrivateKey:
        key = self._cache.get(authority_id)
        if key is not None:
            return key
        async with self._engine.connect() as connection:
            sealed = (
                await connection.execute(
                    select(AuthorityKeyRow.sealed_key).where(
                        AuthorityKeyRow.authority_id == authority_id,
                        AuthorityKeyRow.kind == kind.value,
                    )
                )
            ).scalar_one_or_none()
        if sealed is None:
            raise KeyStoreError(f"{kind.value} authority {authority_id}", NO_SEALED_KEY)
        try:
            der = self._aead.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], self._aad(kind, authority_id)
            )
        except InvalidTag as err:
            raise KeyStoreError(
                f"{kind.value} authority {authority_id}",
                "the sealed key does not open with this key-encryption key",
            ) from err
        loaded = serialization.load_der_private_key(der, password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyStoreError(
                f"{kind.value} authority {authority_id}", "the sealed key is of an unknown type"
            )
        self._cache[authority_id] = loaded
        return loaded

    async def delete(
        self, kind: AuthorityKind, authority_id: str, *, tx: Transaction | None = None
    ) -> None:
        self._cache.pop(authority_id, None)
        statement = delete(AuthorityKeyRow).where(
            AuthorityKeyRow.authority_id == authority_id, AuthorityKeyRow.kind == kind.value
        )
        if tx is not None:
            await tx.execute(statement)
            return
        async with self._engine.begin() as connection:
            await connection.execute(statement)

"""Where authority private keys live at rest: one PEM file per authority, mode 0600, written atomically.

Replicas that share one PostgreSQL datastore must share this directory too (a volume both mount), since the
database holds only public material.
"""

from __future__ import annotations

from pathlib import Path

from sigil.ca.authority import AuthorityKind
from sigil.ca.errors import KeyStoreError
from sigil.ca.keys import PrivateKey, load_private_key, write_private_key

__all__ = ["DiskKeyStore"]


class DiskKeyStore:
    """Authority keys as files ``<kind>-<authority_id>.pem`` under one directory (mode 0700)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._cache: dict[str, PrivateKey] = {}

    @property
    def directory(self) -> Path:
        return self._directory

    def _path(self, kind: AuthorityKind, authority_id: str) -> Path:
        if not authority_id or "/" in authority_id or authority_id.startswith("."):
            raise KeyStoreError(authority_id, "not a usable authority id for a key file name")
        return self._directory / f"{kind.value}-{authority_id}.pem"

    def put(self, kind: AuthorityKind, authority_id: str, key: PrivateKey) -> None:
        write_private_key(self._path(kind, authority_id), key)
        self._cache[authority_id] = key

    def get(self, kind: AuthorityKind, authority_id: str) -> PrivateKey:
        key = self._cache.get(authority_id)
        if key is None:
            key = load_private_key(self._path(kind, authority_id))
            self._cache[authority_id] = key
        return key

    def delete(self, kind: AuthorityKind, authority_id: str) -> None:
        self._cache.pop(authority_id, None)
        try:
            self._path(kind, authority_id).unlink(missing_ok=True)
        except OSError as err:
            raise KeyStoreError(
                str(self._path(kind, authority_id)), f"cannot delete ({err.strerror})"
            ) from err

"""Authority rows authenticated with the key-encryption key, so the datastore alone cannot add a trust anchor.

With ``ca.key_store: database`` the database holds everything the bundle is built from. Whoever can write to it
could otherwise insert an authority of their own, or set a revoked one back to active, and every replica would
publish it. Each row therefore carries an HMAC-SHA256 tag over what makes it an authority: its ID, kind, status,
taint, validity, public key and certificates. The MAC key is derived from the key-encryption key with HKDF
(RFC 5869) under its own label, so it is never the key that seals private keys. A row whose tag is missing or wrong
is refused: kept out of the bundle and never used to sign.

``updated_at`` and ``created_at`` are left out: they order rows and say when, and no decision depends on them.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SEALED_FIELDS", "AuthoritySeal"]

#: The columns a tag covers, in the order they are encoded.
SEALED_FIELDS = (
    "authority_id",
    "kind",
    "status",
    "tainted",
    "not_before",
    "not_after",
    "public_key_der",
    "certificate_chain_der",
    "upstream_root_der",
)
_LABEL = b"sigil authority row seal v1"


def _encode(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, datetime):
        # Microseconds since the epoch: both SQLite and PostgreSQL keep exactly this much.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
        return str(delta // delta.resolution).encode()
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _message(values: Mapping[str, Any]) -> bytes:
    # Each field length-prefixed, so that no two different rows encode to the same bytes.
    parts = [_LABEL]
    for name in SEALED_FIELDS:
        data = _encode(values[name])
        parts.append(len(data).to_bytes(4, "big") + data)
    return b"".join(parts)


class AuthoritySeal:
    """Tags authority rows and checks them, with a key derived from the key-encryption key."""

    def __init__(self, key_encryption_key: bytes) -> None:
        if len(key_encryption_key) != 32:
            raise ValueError("the key-encryption key must be 32 bytes")
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL).derive(
            key_encryption_key
        )

    def tag(self, values: Mapping[str, Any]) -> bytes:
        """The tag of a row given as its column values (at least :data:`SEALED_FIELDS`)."""
        return hmac.digest(self._key, _message(values), "sha256")

    def verifies(self, values: Mapping[str, Any], tag: bytes | None) -> bool:
        return tag is not None and hmac.compare_digest(self.tag(values), tag)

"""Adopting a database's authority rows from before rows were sealed: once, and only rows provably the CA's own.

With ``ca.key_store: database`` every authority row carries a seal under the key-encryption key
(``datastore/rowseal.py``). A database from before that (migration 0003) holds rows with no seal at all; the first
start seals those that the CA can prove are its own and leaves the rest refused, logged as
``authority.unsealed_row_refused``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidSignature

from sigil.ca.authority import Authority, AuthorityKind, AuthorityStatus
from sigil.ca.datastore.store import Datastore
from sigil.ca.errors import KeyStoreError
from sigil.ca.keys import public_key_der
from sigil.ca.keystore import NO_SEALED_KEY, KeyStore
from sigil.ca.upstream import UpstreamCa

__all__ = ["seal_unsealed_rows"]

_log = structlog.get_logger(__name__)


async def seal_unsealed_rows(
    store: Datastore,
    keys: KeyStore,
    *,
    upstream: UpstreamCa | None,
    key_encryption_key_file: Path | None,
    now: datetime,
    holder: str,
) -> None:
    """Seal the rows of a database from before rows were sealed, once, and only those provably the CA's own.

    This runs only while no row of the database verifies (the first start after migration 0003): once one
    does, an unsealed row can only have been written by someone without the key-encryption key. Even then a
    row is sealed only if it is revoked (never published nor used, whatever it claims) or its key is sealed
    under the key-encryption key and matches it, and its certificate is that key's, self-signed or under the
    configured upstream CA; anything else stays refused.
    """
    if not store.sealed:
        return
    async with store.transaction(now=now, holder=holder) as tx:
        rows = await tx.read_authorities(report=False)
        if rows.trusted:
            return
        if any(r.sealed for r in rows.refused):
            # Sealed rows and none verifies: this is not their key. Going on would bootstrap new authorities
            # beside the real ones, so the start stops, as it does when a sealed private key does not open.
            raise KeyStoreError(
                str(key_encryption_key_file),
                "the datastore's authority rows were sealed with another key: their seal does not open with "
                "this key-encryption key",
            )
        for authority in await tx.unsealed_authorities():
            why = await _why_not_ours(authority, keys, upstream)
            if why is not None:
                _log.error(
                    "authority.unsealed_row_refused",
                    authority_id=authority.authority_id,
                    kind=authority.kind.value,
                    claimed_status=authority.status.value,
                    reason=why,
                )
                continue
            await tx.put_authority(authority)
            _log.warning(
                "authority.unsealed_row_sealed",
                authority_id=authority.authority_id,
                kind=authority.kind.value,
                status=authority.status.value,
            )


async def _why_not_ours(
    authority: Authority, keys: KeyStore, upstream: UpstreamCa | None
) -> str | None:
    """None when ``authority`` is provably the CA's own; else why not."""
    if authority.status is AuthorityStatus.REVOKED:
        return None
    try:
        key = await keys.get(authority.kind, authority.authority_id)
    except KeyStoreError as err:
        if err.reason != NO_SEALED_KEY:
            raise  # a sealed key that does not open: the wrong key-encryption key, which must stop the start
        return "no private key sealed under the key-encryption key belongs to it"
    if public_key_der(key.public_key()) != public_key_der(authority.public_key):
        return "its public key is not the one of its sealed private key"
    if authority.kind is AuthorityKind.JWT:
        return None
    certificate = authority.certificate
    if certificate is None or public_key_der(certificate.public_key()) != public_key_der(  # type: ignore[arg-type]
        authority.public_key
    ):
        return "its certificate does not certify its key"
    if authority.upstream_root is None:
        issuer, chain_ok = certificate, not authority.upstream_chain
    else:
        chain_ok = (
            upstream is not None
            and authority.upstream_root == upstream.root
            and authority.upstream_chain == upstream.chain_below_root
        )
        issuer = (
            authority.upstream_chain[0] if authority.upstream_chain else authority.upstream_root
        )
    if not chain_ok:
        return "its certificate chain is not self-signed nor the configured upstream CA's"
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return "its certificate is not signed by the issuer its chain names"
    return None

"""Opening what the CA keeps: its datastore (migrated), its key store and the upstream CA it signs under.

The choices are all the settings': ``ca.key_store`` ``disk`` (key files under the key directory) or ``database``
(keys sealed under the key-encryption key, the rows sealed too, :mod:`sigil.ca.datastore.rowseal`), and
``ca.upstream_dir`` for an authority under an operator's upstream CA. :meth:`CertificateAuthority.open` starts here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from sigil.ca.datastore.rowseal import AuthoritySeal
from sigil.ca.datastore.store import Datastore
from sigil.ca.errors import KeyStoreError
from sigil.ca.keystore import (
    DiskKeyStore,
    KeyStore,
    SealedDatabaseKeyStore,
    load_key_encryption_key,
)
from sigil.ca.settings import CaSettings
from sigil.ca.upstream import UpstreamCa, load_upstream_ca

__all__ = ["open_storage"]


async def open_storage(
    settings: CaSettings, *, extra_migrations: Sequence[Path] = ()
) -> tuple[Datastore, KeyStore, UpstreamCa | None]:
    """The datastore (with ``extra_migrations`` applied beside the CA's), the key store and the upstream CA."""
    upstream = load_upstream_ca(settings.upstream_dir) if settings.upstream_dir else None
    kek = None
    if settings.key_store == "database":
        if settings.key_encryption_key_file is None:
            raise KeyStoreError("key_store", "'database' needs key_encryption_key_file")
        kek = await asyncio.to_thread(load_key_encryption_key, settings.key_encryption_key_file)
    store = await Datastore.open(
        settings.effective_database_url,
        extra_migrations=extra_migrations,
        seal=AuthoritySeal(kek) if kek is not None else None,
    )
    keys: KeyStore
    if kek is not None:
        keys = SealedDatabaseKeyStore(store.engine, kek)
    else:
        keys = disk = DiskKeyStore(settings.effective_key_dir)
        await disk.remove_partial_writes()
    return store, keys, upstream
